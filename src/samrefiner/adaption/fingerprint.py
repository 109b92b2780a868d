"""Content fingerprints: of a model's weights (without any adapter) and of an image."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from samrefiner.adaption.lora import AdaptionError
from samrefiner.models.base import Backend

_CHUNK = 1 << 24  # elements hashed at a time (bounds the host copy of GPU tensors)


def model_modules(backend: Backend) -> dict[str, torch.nn.Module]:
    """The ``nn.Module`` attributes of a backend (e.g. ``SamBackend.sam``), by name.

    A wrapper backend that keeps the model as its attribute ``backend`` is looked through.
    """
    while isinstance(getattr(backend, "backend", None), Backend):
        backend = backend.backend  # type: ignore[attr-defined]
    modules = {k: v for k, v in sorted(vars(backend).items()) if isinstance(v, torch.nn.Module)}
    if not modules:
        raise AdaptionError(
            f"model {backend.name!r} ({type(backend).__name__}) holds no torch module to "
            "fingerprint"
        )
    return modules


def _base_key(key: str) -> str | None:
    """State-dict key of the base model: None for LoRA tensors, peft's wrapper removed."""
    parts = key.split(".")
    if any(p.startswith("lora_") for p in parts):
        return None
    return ".".join(p for p in parts if p != "base_layer")


def model_fingerprint(backend: Backend) -> str:
    """SHA-256 (hex) of the model's weights and buffers: names, dtypes, shapes and values.

    An attached IoU adapter is left out, so a model has the same fingerprint with and
    without one.
    """
    digest = hashlib.sha256()
    for attr, module in model_modules(backend).items():
        state = module.state_dict()
        keys = sorted((k2, k) for k in state if (k2 := _base_key(k)) is not None)
        for base_key, key in keys:
            tensor = state[key].detach()
            digest.update(f"{attr}.{base_key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
            flat = tensor.reshape(-1)
            for start in range(0, flat.numel(), _CHUNK):
                part = flat[start : start + _CHUNK].cpu().contiguous()
                digest.update(part.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def image_digest(image: np.ndarray) -> str:
    """SHA-256 (hex) of an image array's shape, dtype and pixels."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{array.shape}|{array.dtype}\n".encode())
    digest.update(array.data)
    return digest.hexdigest()
