"""Checkpoint files: reading tensors safely, loading them strictly, and recognising the
architecture a bare file is for."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from samrefiner.models.families import FAMILIES


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """``path``, or a FileNotFoundError naming it when it is not a file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint file not found")
    return p


#: Why a file holding pickled Python objects other than tensors is refused: the one
#: wording for model checkpoints and adapt's training checkpoint.
NOT_PLAIN_TENSORS = (
    "not a plain tensor checkpoint: it holds Python objects other than tensors, which are "
    "not unpickled (that could run code)"
)


def refused_pickle(path: str | os.PathLike[str]) -> str:
    """The one-line error of a weights file that holds Python objects other than tensors
    (``torch.load(weights_only=True)`` refuses to unpickle them)."""
    return f"{path}: {NOT_PLAIN_TENSORS}"


def load_tensor_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` of a file on the CPU with ``weights_only=True``: tensors and plain
    containers only, no code runs.

    Raises:
        ValueError: naming the file, in one line: it holds other Python objects
            (:data:`NOT_PLAIN_TENSORS`; the cause is torch's ``UnpicklingError``), or it
            is not a readable PyTorch file.
    """
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only loader refused an object
        raise ValueError(refused_pickle(p)) from exc
    except Exception as exc:  # torch raises many types for a bad file; report them all alike
        raise ValueError(f"{p}: not a readable PyTorch checkpoint: {exc}") from exc


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded by :func:`load_tensor_file`."""
    p = checkpoint_file(path)
    state = load_tensor_file(p)
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(state).__name__}")
    return state


def check_keys(
    path: str | os.PathLike[str],
    label: str,
    *,
    missing: Sequence[str],
    unexpected: Sequence[str],
    mismatched: Sequence[str],
) -> None:
    """Raise a ValueError naming the keys when weights do not fit ``label`` exactly.

    Args:
        path: the weights (file or folder), named first in the message.
        label: the model they were loaded into.
        missing / unexpected: keys the model has and the weights lack, and the reverse.
        mismatched: tensors of another shape, each as ``"key (file shape) != (model shape)"``.
    """

    def show(items: Sequence[str]) -> str:
        return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} tensors of another shape: {show(mismatched)}")
    if parts:
        raise ValueError(f"{path}: checkpoint does not fit {label}: " + "; ".join(parts))


def load_weights(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    label: str,
    *,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Load ``path`` into ``module`` strictly; mismatches raise a ValueError naming keys.

    ``state`` is the file's content when it was already read (it is then not read again).
    """
    if state is None:
        state = read_state_dict(path)
    expected = module.state_dict()
    check_keys(
        path,
        label,
        missing=[k for k in expected if k not in state],
        unexpected=[k for k in state if k not in expected],
        mismatched=[
            f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ],
    )
    module.load_state_dict(state, strict=True)


_TINY_VIT_WIDTH = "image_encoder.patch_embed.seq.2.c.weight"
_VIT_WIDTH = "image_encoder.patch_embed.proj.weight"
_HIERA_WIDTH = "image_encoder.trunk.patch_embed.proj.weight"
_HIERA_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")


def recognise_family(state: dict[str, torch.Tensor]) -> str | None:
    """The model family a state dict's keys belong to, or None."""
    if _HIERA_WIDTH in state:
        return "sam2"
    hq = "mask_decoder.hf_token.weight" in state
    if _TINY_VIT_WIDTH in state:
        return "sam_hq" if hq else "mobile_sam"
    if _VIT_WIDTH in state:
        return "sam_hq" if hq else "sam"
    return None


def _signature(state: dict[str, torch.Tensor], family: str) -> tuple[int, int | None]:
    if family == "sam2":
        blocks = {int(m.group(1)) for k in state if (m := _HIERA_BLOCK.match(k))}
        return int(state[_HIERA_WIDTH].shape[0]), len(blocks)
    key = _TINY_VIT_WIDTH if _TINY_VIT_WIDTH in state else _VIT_WIDTH
    return int(state[key].shape[0]), None


def guess_architecture(
    state: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    models: Mapping[str, Any],
    names: Sequence[str],
) -> str:
    """The name in ``models`` whose family, width and depth the state dict's keys show.

    Args:
        state: a checkpoint's tensors (:func:`read_state_dict`).
        path: the file, named in the error.
        models: name -> entry with ``family``, ``embed_dim`` and ``depth`` (the registry's
            ``MODELS``), searched in order.
        names: the official names the error lists.

    Raises:
        ValueError: naming the file and what its keys show, when no entry fits.
    """
    family = recognise_family(state)
    if family is not None:
        width, depth = _signature(state, family)
        for name, entry in models.items():
            if entry.family == family and entry.embed_dim == width and entry.depth in (None, depth):
                return name
        found = f"a {FAMILIES[family].label} checkpoint of width {width}"
        found += f" and {depth} blocks" if depth is not None else ""
    else:
        found = "no known model family's keys"
    raise ValueError(
        f"{path}: cannot tell which architecture this checkpoint is for ({found}); "
        f"pass the model name ({', '.join(names)}) with checkpoint=PATH"
    )
