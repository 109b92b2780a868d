"""``load_model`` with an IoU adapter: the facade's :func:`samrefiner.load_model`.

The core's :func:`samrefiner.models.load_model` builds the model; applying an adapter
belongs to adaption, one floor up, so the facade's ``load_model`` is this one.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from samrefiner.models.base import Backend
from samrefiner.models.registry import load_model as load_base_model


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    adapter: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Backend:
    """:func:`samrefiner.models.load_model`, then the adapter applied when one is given.

    Args:
        name_or_path, checkpoint, pretrained, device, options: as
            :func:`samrefiner.models.load_model` (a model name, checkpoint file,
            ``"hf:ORG/NAME"``, ``save_pretrained`` folder or ``"package.module:function"``).
        adapter: an IoU adapter folder (``samrefiner adapt``) to apply; it must have been
            trained on these weights (see :func:`samrefiner.adaption.apply_adapter`).

    Returns:
        The backend; its torch module is :attr:`Backend.module`.
    """
    backend = load_base_model(
        name_or_path, checkpoint=checkpoint, pretrained=pretrained, device=device, **options
    )
    if adapter is not None:
        from samrefiner.adaption.adapter import apply_adapter  # its modules only when used

        apply_adapter(backend, adapter)
    return backend
