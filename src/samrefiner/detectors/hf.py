"""``transformers`` detectors: loading them by Hub name or ``save_pretrained`` folder.

:func:`load_hf_detector` reads the folder's config, picks the detector class of its
architecture (:data:`HF_DETECTORS`), loads the weights strictly (as
:mod:`samrefiner.models.hf` loads SAM-family models: a missing, unexpected or reshaped
tensor is an error naming it) and the folder's processor (image processor and
tokenizer). ``hf:`` names resolve offline from the local Hugging Face cache with the
models' rules (:func:`samrefiner.models.hf.model_folder`): a repository absent from the
cache is a one-line error naming it and the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from samrefiner.detectors.base import Detector
from samrefiner.extras import import_extra
from samrefiner.models.base import writable
from samrefiner.models.families import import_object
from samrefiner.models.hf import _load_strictly, _model_class_name, _one_line, model_folder

#: What needs the ``hf`` extra, in its error.
_WHAT = "Hugging Face detectors"

#: ``transformers`` architectures samrefiner drives as detectors -> their
#: :class:`~samrefiner.detectors.base.Detector` class (``"package.module:Class"``).
HF_DETECTORS: dict[str, str] = {
    "GroundingDinoForObjectDetection": "samrefiner.detectors.grounding_dino:GroundingDinoDetector",
    "MMGroundingDinoForObjectDetection": (
        "samrefiner.detectors.grounding_dino:GroundingDinoDetector"
    ),
    "Owlv2ForObjectDetection": "samrefiner.detectors.owl:OwlDetector",
    "OwlViTForObjectDetection": "samrefiner.detectors.owl:OwlDetector",
    "OmDetTurboForObjectDetection": "samrefiner.detectors.omdet:OmDetTurboDetector",
    "Sam3Model": "samrefiner.detectors.sam3:Sam3Detector",
}


class HfDetector(Detector):
    """A ``transformers`` detector: the model, its processor and the device.

    Args:
        model: the ``transformers`` model (kept as ``model``).
        processor: its processor (image processor and tokenizer; kept as ``processor``).
        name: label for logs and records.
    """

    def __init__(self, model: torch.nn.Module, processor: Any, *, name: str) -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> HfDetector:
        self.model.to(device)
        return self

    def _inputs(self, **kwargs: Any) -> dict[str, Any]:
        """The processor's tensors for ``kwargs``, on the model's device."""
        if "images" in kwargs:  # the runner's decoded images are read-only
            kwargs["images"] = writable(kwargs["images"])
        batch = self.processor(return_tensors="pt", **kwargs)
        return {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }


def cxcywh_to_xyxy(boxes: torch.Tensor, width: float, height: float) -> np.ndarray:
    """``Q x 4`` normalised centre boxes -> ``Q x 4`` float32 XYXY pixels of a
    ``width x height`` frame."""
    cx, cy, w, h = boxes.float().cpu().unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return (xyxy * scale).numpy().astype(np.float32)


def _architecture(transformers: Any, config: Any, repo: str) -> str:
    names = [*(config.architectures or []), _model_class_name(transformers, config)]
    mapping = transformers.models.auto.modeling_auto
    zero_shot = mapping.MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES.get(config.model_type)
    for name in [*names, zero_shot]:
        if name in HF_DETECTORS:
            return str(name)
    raise ValueError(
        f"{repo}: model type {config.model_type!r} is not a detector samrefiner can drive "
        f"({', '.join(HF_DETECTORS)})"
    )


def load_hf_detector(
    repo: str, *, pretrained: bool = True, device: str | torch.device = "cpu"
) -> HfDetector:
    """Load a ``transformers`` detector by Hub name (offline, from the cache) or folder.

    Args:
        repo: ``ORG/NAME`` in the Hugging Face cache, or a ``save_pretrained`` folder
            holding the model and its processor.
        pretrained: False builds the architecture from its config with random weights.
        device: torch device.

    Raises:
        ValueError: the model cannot be found or read, it is no detector samrefiner
            drives, or its weights do not fit it exactly. MissingExtra: ``transformers``
            is not installed.
    """
    transformers = import_extra("transformers", "hf", _WHAT)
    folder = model_folder(repo)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}: cannot read the model's config: {_one_line(exc)}") from exc
    name = _architecture(transformers, config, repo)
    model_cls = getattr(transformers, name)
    if pretrained:
        model = _load_strictly(transformers, model_cls, Path(folder), config)
    else:
        model = model_cls(config)
    try:
        processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(
            f"{folder}: cannot read the model's processor (image processor and tokenizer): "
            f"{_one_line(exc)}"
        ) from exc
    detector_cls = import_object(HF_DETECTORS[name])
    detector: HfDetector = detector_cls(model.to(device), processor, name=f"hf:{repo}")
    return detector
