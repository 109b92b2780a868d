"""The adapter folder: what it holds, writing it, reading it, applying it to a model.

An adapter folder holds two files:

* ``adapter.safetensors``: the LoRA weights of the IoU head's last linear layer
  (``lora_A``: ``rank x in``, ``lora_B``: ``out x rank``); kilobytes.
* ``adapter.json``: :class:`AdapterInfo`: format version, the base model's name and the
  SHA-256 fingerprint of its weights, the training settings and the training report.

Applying it to another model than the one it was trained on is an error naming both.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from samrefiner.adaption.fingerprint import model_fingerprint
from samrefiner.adaption.lora import (
    AdaptionError,
    attach_lora,
    extra,
    last_linear_name,
    load_lora_state,
    lora_layer,
    lora_state,
    require_head,
)
from samrefiner.adaption.settings import AdaptConfig
from samrefiner.io.atomic import atomic_write_bytes, atomic_write_json
from samrefiner.models.base import Backend

#: Version of the adapter folder layout this code writes and reads.
ADAPTER_FORMAT = 1
INFO_FILE = "adapter.json"
WEIGHTS_FILE = "adapter.safetensors"


@dataclass
class AdapterInfo:
    """The JSON half of an adapter folder.

    Attributes:
        base_model: name of the model it was trained on (``Backend.name``).
        base_fingerprint: :func:`~samrefiner.adaption.fingerprint.model_fingerprint`
            of that model's weights.
        settings: how it was trained.
        report: before / after figures of the training run (free-form JSON).
        format: :data:`ADAPTER_FORMAT` of the writer.
    """

    base_model: str
    base_fingerprint: str
    settings: AdaptConfig
    report: dict[str, Any] = field(default_factory=dict)
    format: int = ADAPTER_FORMAT

    def __post_init__(self) -> None:
        if not self.base_model:
            raise ValueError("base_model must not be empty")
        if len(self.base_fingerprint) != 64:
            raise ValueError(
                f"base_fingerprint must be a SHA-256 hex digest, got {self.base_fingerprint!r}"
            )
        if not isinstance(self.settings, AdaptConfig):
            raise TypeError(f"settings must be an AdaptConfig, got {type(self.settings).__name__}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "base_model": self.base_model,
            "base_fingerprint": self.base_fingerprint,
            "settings": self.settings.to_dict(),
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: Any, where: str | os.PathLike[str] = "adapter") -> AdapterInfo:
        """Parse :meth:`to_json`'s output; problems raise :class:`AdaptionError` naming
        ``where``."""
        if not isinstance(data, dict):
            raise AdaptionError(f"{where}: expected a JSON object")
        version = data.get("format")
        if not isinstance(version, int) or version < 1:
            raise AdaptionError(f"{where}: no adapter format version")
        if version > ADAPTER_FORMAT:
            raise AdaptionError(
                f"{where}: adapter format {version} is newer than this samrefiner reads "
                f"({ADAPTER_FORMAT}); upgrade samrefiner"
            )
        try:
            return cls(
                base_model=str(data["base_model"]),
                base_fingerprint=str(data["base_fingerprint"]),
                settings=AdaptConfig.from_dict(data["settings"]),
                report=dict(data.get("report") or {}),
                format=version,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise AdaptionError(f"{where}: invalid adapter description: {exc}") from exc


def check_weights(
    tensors: dict[str, torch.Tensor], rank: int, where: str | os.PathLike[str]
) -> None:
    """Raise :class:`AdaptionError` naming ``where`` unless ``tensors`` is a LoRA of rank
    ``rank`` with finite weights: ``lora_A`` (``rank x in``) and ``lora_B`` (``out x rank``),
    floating point, no NaN or infinity.

    This is checked before anything is allocated from a description (``rank`` comes from
    ``adapter.json`` or the training settings), and before weights are written.
    """
    missing = {"lora_A", "lora_B"} - set(tensors)
    if missing:
        raise AdaptionError(f"{where}: missing tensors {', '.join(sorted(missing))}")
    a, b = tensors["lora_A"], tensors["lora_B"]
    for key, value in (("lora_A", a), ("lora_B", b)):
        if not isinstance(value, torch.Tensor):
            raise AdaptionError(f"{where}: {key} must be a tensor, got {type(value).__name__}")
        if value.ndim != 2 or not value.is_floating_point():
            raise AdaptionError(
                f"{where}: {key} must be a 2-D floating-point matrix, got {value.dtype} of "
                f"shape {tuple(value.shape)}"
            )
    if a.shape[0] != rank or b.shape[1] != rank:
        raise AdaptionError(
            f"{where}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not have the "
            f"rank {rank} of the settings (rank x in, out x rank)"
        )
    for key, value in (("lora_A", a), ("lora_B", b)):
        if not bool(torch.isfinite(value).all()):
            raise AdaptionError(
                f"{where}: {key} holds NaN or infinite weights (training diverged); "
                "this adapter cannot be used"
            )


def _folder(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.parent if p.name == INFO_FILE else p


def save_adapter(path: str | os.PathLike[str], info: AdapterInfo, backend: Backend) -> Path:
    """Write the adapter ``backend`` carries, with ``info``, to the folder ``path``.

    The weights are written first and the JSON last, each atomically.
    """
    save = extra("safetensors.torch").save
    layer = lora_layer(require_head(backend))
    if layer is None:
        raise AdaptionError(f"model {backend.name!r} carries no IoU adapter to save")
    folder = _folder(path)
    tensors = {k: v.contiguous() for k, v in lora_state(layer).items()}
    check_weights(tensors, info.settings.rank, folder)  # never write a diverged adapter
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / WEIGHTS_FILE, save(tensors, metadata={"format": "1"}))
    atomic_write_json(folder / INFO_FILE, info.to_json())
    return folder


def read_adapter(path: str | os.PathLike[str]) -> tuple[AdapterInfo, dict[str, torch.Tensor]]:
    """The description and the weights of an adapter folder, checked against each other:
    the weights have the rank the description gives, and are finite."""
    unreadable = extra("safetensors").SafetensorError
    load_file = extra("safetensors.torch").load_file

    folder = _folder(path)
    info_path, weights_path = folder / INFO_FILE, folder / WEIGHTS_FILE
    if not info_path.is_file():
        raise AdaptionError(f"{folder}: not an adapter folder (no {INFO_FILE})")
    try:
        data = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdaptionError(f"{info_path}: unreadable: {exc}") from exc
    info = AdapterInfo.from_json(data, info_path)
    if not weights_path.is_file():
        raise AdaptionError(f"{folder}: the weights file {WEIGHTS_FILE} is missing")
    try:
        tensors = load_file(str(weights_path))
    except (OSError, unreadable) as exc:
        raise AdaptionError(f"{weights_path}: unreadable: {exc}") from exc
    check_weights(tensors, info.settings.rank, weights_path)
    return info, tensors


def check_base(info: AdapterInfo, backend: Backend, where: str, fingerprint: str | None) -> None:
    """Raise unless ``backend`` has the weights the adapter was trained on."""
    fingerprint = fingerprint or model_fingerprint(backend)
    if fingerprint != info.base_fingerprint:
        raise AdaptionError(
            f"{where}: adapter was trained on model {info.base_model!r} (weights "
            f"{info.base_fingerprint[:12]}), but the model is {backend.name!r} (weights "
            f"{fingerprint[:12]}): load the model the adapter was trained on"
        )


def apply_adapter(
    backend: Backend, path: str | os.PathLike[str], *, fingerprint: str | None = None
) -> AdapterInfo:
    """Put the adapter at ``path`` on ``backend``'s IoU head (in place).

    Only the predicted IoUs change (hence which candidate the refiner keeps); the
    candidates' masks stay bit-identical.

    Args:
        backend: the base model the adapter was trained on.
        path: the adapter folder (or its ``adapter.json``).
        fingerprint: the model's fingerprint when already known (skips hashing it).

    Raises:
        AdaptionError: unreadable adapter, weights that do not match its description or
            the model's layer, NaN or infinite weights, other base model, or a model that
            already carries an adapter.
    """
    info, tensors = read_adapter(path)
    check_base(info, backend, str(_folder(path)), fingerprint)
    head = require_head(backend)
    out_layer = head.get_submodule(last_linear_name(head))
    a, b = tensors["lora_A"], tensors["lora_B"]
    size, needed = (a.shape[1], b.shape[0]), (out_layer.in_features, out_layer.out_features)
    if size != needed:
        raise AdaptionError(
            f"{_folder(path) / WEIGHTS_FILE}: a LoRA of a {size[0]} -> {size[1]} layer, but "
            f"the model's IoU output layer is {needed[0]} -> {needed[1]}"
        )
    settings = info.settings
    layer = attach_lora(backend, settings.rank, settings.alpha, settings.seed)
    load_lora_state(layer, tensors)
    for param in layer.parameters():
        param.requires_grad_(False)
    return info
