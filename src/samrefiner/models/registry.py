"""Model names, builders and :func:`load_model`."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from segment_anything import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l
from segment_anything.modeling import Sam

from samrefiner.models.base import Backend
from samrefiner.models.download import CheckpointSpec, ensure_checkpoint
from samrefiner.models.sam import SamBackend

_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class ModelEntry:
    """A named architecture with its official checkpoint."""

    build: Callable[[], Sam]
    checkpoint: CheckpointSpec
    embed_dim: int  # image-encoder width, used to recognise bare checkpoint files


MODELS: dict[str, ModelEntry] = {
    "sam_vit_b": ModelEntry(
        build=build_sam_vit_b,
        checkpoint=CheckpointSpec(
            "sam_vit_b_01ec64.pth",
            _BASE_URL + "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375042383,
        ),
        embed_dim=768,
    ),
    "sam_vit_l": ModelEntry(
        build=build_sam_vit_l,
        checkpoint=CheckpointSpec(
            "sam_vit_l_0b3195.pth",
            _BASE_URL + "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        embed_dim=1024,
    ),
    "sam_vit_h": ModelEntry(
        build=build_sam_vit_h,
        checkpoint=CheckpointSpec(
            "sam_vit_h_4b8939.pth",
            _BASE_URL + "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
        embed_dim=1280,
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded on the CPU with ``weights_only=True``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; report them all alike
        raise ValueError(f"{p}: not a readable PyTorch checkpoint: {exc}") from exc
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(state).__name__}")
    return state


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
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]

    def show(items: list[str]) -> str:
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
    module.load_state_dict(state, strict=True)


def _guess_architecture(state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> str:
    weight = state.get("image_encoder.patch_embed.proj.weight")
    if weight is not None:
        for name, entry in MODELS.items():
            if weight.shape[0] == entry.embed_dim:
                return name
    raise ValueError(
        f"{path}: cannot tell which SAM architecture this checkpoint is for; "
        f"pass the model name ({', '.join(MODEL_NAMES)}) with checkpoint=PATH"
    )


def _import_builder(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import model builder {spec!r}: {exc}") from exc


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    adapter: str | os.PathLike[str] | None = None,
) -> Backend:
    """Build a SAM model and wrap it in a :class:`Backend`.

    Args:
        name_or_path: a name from :data:`MODEL_NAMES`; a checkpoint file (architecture
            recognised from its weights); or ``"package.module:function"``, a builder
            returning a ``Sam`` module or a :class:`Backend` (custom or test models).
        checkpoint: weights file loaded strictly (missing / unexpected keys are errors).
        pretrained: with a name and no ``checkpoint``, load the official weights from the
            cache (``$SAMREFINER_HOME``, default ``~/.cache/samrefiner``), downloading and
            verifying them once. ``False`` keeps random weights (tests, benchmarks).
        device: torch device; default CUDA when available, else CPU.
        adapter: an IoU adapter folder (``samrefiner adapt``) to apply; it must have been
            trained on these weights (see :func:`samrefiner.adaption.apply_adapter`).

    Returns:
        The backend; the official ``Sam`` module is its attribute ``sam``.
    """
    if adapter is not None:
        from samrefiner.adaption import apply_adapter

        backend = load_model(
            name_or_path, checkpoint=checkpoint, pretrained=pretrained, device=device
        )
        apply_adapter(backend, adapter)
        return backend
    spec = os.fspath(name_or_path)
    device = device or default_device()
    state = None
    if spec in MODELS:
        entry = MODELS[spec]
        if checkpoint is None and pretrained:
            # Fetch first: a failed download should not cost building the model.
            checkpoint = ensure_checkpoint(entry.checkpoint)
        sam = entry.build()
        label = spec
    elif ":" in spec and not Path(spec).exists():
        built = _import_builder(spec)()
        if isinstance(built, Backend):
            if checkpoint is not None:
                load_weights(built.sam, checkpoint, spec)  # type: ignore[attr-defined]
            return built.to(device) if hasattr(built, "to") else built
        sam, label = built, spec
    elif Path(spec).is_file():
        # Read once: the weights tell the architecture, then fill it.
        state = read_state_dict(spec)
        label = _guess_architecture(state, spec)
        sam, checkpoint = MODELS[label].build(), spec
    else:
        raise ValueError(
            f"unknown model {spec!r}: use one of {', '.join(MODEL_NAMES)}, a checkpoint "
            "file, or a 'package.module:function' builder"
        )
    if checkpoint is not None:
        load_weights(sam, checkpoint, label, state=state)
    return SamBackend(sam.to(device).eval(), name=label)
