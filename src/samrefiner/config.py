"""Refinement settings.

:class:`RefineConfig` is a frozen dataclass: building one has no side effects and every
field is validated in ``__post_init__``. The defaults reproduce the reference
implementation of SAMRefiner (``sam_refiner.py``); the options that go beyond it
(``early_stop_iou``, ``dtype``, crop-zoom ``zoom_below`` and the quality gate ``gate_*``)
are off by default.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Literal

Dtype = Literal["float32", "bfloat16"]
Selection = Literal["iou", "stability"]

#: Automatic decoder batch sizes (``RefineConfig.max_batch=None``).
CPU_BATCH = 2
ACCELERATOR_BATCH = 64
DTYPES: tuple[str, ...] = ("float32", "bfloat16")
SELECTIONS: tuple[str, ...] = ("iou", "stability")
#: Field metadata of a setting that changes speed and memory, never results: declare a
#: field with ``field(default=..., metadata=SPEED_ONLY)``. A resumed run may change it,
#: and the CLI lists it among the speed options.
SPEED_ONLY: dict[str, bool] = {"speed_only": True}

# One line of help per field, shared by the CLI and the README so they cannot drift apart.
FIELD_HELP: dict[str, str] = {
    "iterations": "refinement rounds; each feeds the previous result back as the coarse mask",
    "use_points": "give SAM the distance-guided points",
    "negative_point": "add the negative point (pixel in the box farthest from the mask)",
    "use_box": "give SAM the (elastic) box",
    "use_mask": "give SAM the Gaussian-weighted mask prompt",
    "margin": "elastic-box margin λ: grow a side when the share of similar pixels in the "
    "strip beyond it exceeds λ; 0 keeps the tight box",
    "gamma": "γ, span of the Gaussian weighting: variance = max(area / γ, 1)",
    "strength": "amplitude of the mask-prompt logits (1 for masks whose box grew)",
    "early_stop_iou": "stop iterating a mask once its new result has at least this IoU "
    "with the previous one (None: always run every iteration)",
    "dtype": "model compute precision: float32, or bfloat16 autocast (faster on recent CPUs/GPUs)",
    "selection": "how the kept candidate is chosen: iou (highest predicted IoU, the "
    "reference's) or stability (highest stability score, for models whose IoU head is "
    "unreliable)",
    "max_batch": "most prompts decoded at once; bounds decoder memory (None: automatic, "
    f"{CPU_BATCH} on the CPU, where small batches run fastest, {ACCELERATOR_BATCH} on "
    "accelerators)",
    "threads": "threads mining prompts from several masks at once (None: automatic, one per "
    "CPU core this process may use)",
    "zoom_below": "crop-zoom: refine an object on a crop of its surroundings, encoded at the "
    "model's input size, when its box's longest side is below this many pixels in the model "
    "frame (None: off)",
    "zoom_context": "crop-zoom: side of the square crop as a multiple of the (grouped) "
    "objects' box side, clamped to the image",
    "max_crops": "crop-zoom: most crops (extra encoder passes) per image; the smallest objects "
    "are zoomed first, the others are refined on the whole image",
    "gate_min_score": "quality gate: keep the coarse mask when the refined mask's predicted "
    "IoU is below this (None: off)",
    "gate_min_coarse_iou": "quality gate: keep the coarse mask when the refined mask's IoU "
    "with it is below this (None: off)",
    "gate_max_area_ratio": "quality gate: keep the coarse mask when refinement grew or shrank "
    "its area by more than this factor (None: off)",
}


def check_finite(settings: Any) -> None:
    """Raise a ValueError naming the first field of the dataclass ``settings`` that holds a
    NaN or an infinity (every numeric setting must be a finite number)."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and not math.isfinite(value)
        ):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class RefineConfig:
    """How coarse masks are turned into prompts and refined.

    Every number must be finite: a NaN or an infinity is a ValueError naming the field.

    Attributes:
        iterations: Number of refinement rounds (>= 1).
        use_points: Whether the distance-guided points are given to SAM.
        negative_point: Whether the negative point is added (needs ``use_points``).
        use_box: Whether the box prompt is given to SAM.
        use_mask: Whether the Gaussian mask prompt is given to SAM.
        margin: Elastic-box margin λ in [0, 1). 0 disables the elastic box.
        gamma: Gaussian span γ (> 0).
        strength: Mask-prompt logit amplitude (> 0).
        early_stop_iou: Optional IoU in (0, 1] between two successive results at which
            a mask stops iterating.
        dtype: ``"float32"`` or ``"bfloat16"`` (autocast).
        selection: which of the three candidates is kept: ``"iou"``, the highest predicted
            IoU (the reference's rule), or ``"stability"``, the highest stability score
            (IoU of the candidate thresholded at -1 and +1 logits, SAM's measure), for
            models whose IoU head is unreliable (EdgeSAM / EdgeTAM: see docs/models.md).
        max_batch: Largest number of prompts decoded together (memory bound). None picks
            it for the device: :data:`CPU_BATCH` on the CPU (the decoder's per-prompt
            tensors then stay in cache: 1.5x faster than 16 on a 2-core machine),
            :data:`ACCELERATOR_BATCH` elsewhere. Results do not depend on it.
        threads: Threads that excavate prompts of different masks in parallel (the
            distance transforms release the GIL). None: one per CPU core available to
            the process. Results do not depend on it.
        zoom_below: Crop-zoom threshold in model-frame pixels (>= 1), or None (off). An
            object whose box's longest side, resized as the model resizes the image, is
            below it is refined on a crop (see :mod:`samrefiner.zoom`).
        zoom_context: Crop side as a multiple (>= 1) of the box side of the objects in it.
        max_crops: Most crops per image (>= 1); each costs one encoder pass.
        gate_min_score: Quality gate (see :mod:`samrefiner.gate`): smallest predicted IoU
            in (0, 1] a refined mask needs, or None.
        gate_min_coarse_iou: Smallest IoU in (0, 1] between the refined and the coarse
            mask, or None.
        gate_max_area_ratio: Largest factor (> 1) by which refinement may change the
            mask's area, or None.
    """

    iterations: int = 5
    use_points: bool = True
    negative_point: bool = True
    use_box: bool = True
    use_mask: bool = True
    margin: float = 0.0
    gamma: float = 4.0
    strength: float = 30.0
    early_stop_iou: float | None = None
    dtype: Dtype = "float32"
    selection: Selection = "iou"
    max_batch: int | None = dataclasses.field(default=None, metadata=SPEED_ONLY)
    threads: int | None = dataclasses.field(default=None, metadata=SPEED_ONLY)
    zoom_below: int | None = None
    zoom_context: float = 2.0
    max_crops: int = 8
    gate_min_score: float | None = None
    gate_min_coarse_iou: float | None = None
    gate_max_area_ratio: float | None = None

    def __post_init__(self) -> None:
        check_finite(self)
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {self.iterations!r}")
        if not (self.use_points or self.use_box or self.use_mask):
            raise ValueError("at least one of use_points, use_box, use_mask must be True")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin!r}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma!r}")
        if not self.strength > 0:
            raise ValueError(f"strength must be > 0, got {self.strength!r}")
        if self.early_stop_iou is not None and not 0.0 < self.early_stop_iou <= 1.0:
            raise ValueError(
                f"early_stop_iou must be in (0, 1] or None, got {self.early_stop_iou!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        for name in ("max_batch", "threads"):  # None: automatic
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        self._check_zoom()
        self._check_gate()

    def _check_zoom(self) -> None:
        if self.zoom_below is not None and (
            isinstance(self.zoom_below, bool)
            or not isinstance(self.zoom_below, int)
            or self.zoom_below < 1
        ):
            raise ValueError(f"zoom_below must be an integer >= 1 or None, got {self.zoom_below!r}")
        if not (isinstance(self.zoom_context, (int, float)) and self.zoom_context >= 1.0):
            raise ValueError(f"zoom_context must be a number >= 1, got {self.zoom_context!r}")
        if isinstance(self.max_crops, bool) or not isinstance(self.max_crops, int):
            raise ValueError(f"max_crops must be an integer >= 1, got {self.max_crops!r}")
        if self.max_crops < 1:
            raise ValueError(f"max_crops must be an integer >= 1, got {self.max_crops!r}")

    def _check_gate(self) -> None:
        for name in ("gate_min_score", "gate_min_coarse_iou"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1] or None, got {value!r}")
        ratio = self.gate_max_area_ratio
        if ratio is not None and not ratio > 1.0:
            raise ValueError(f"gate_max_area_ratio must be > 1 or None, got {ratio!r}")

    @property
    def zooms(self) -> bool:
        """True when crop-zoom is on."""
        return self.zoom_below is not None

    @property
    def gates(self) -> bool:
        """True when at least one quality-gate rule is on."""
        return any(
            v is not None
            for v in (self.gate_min_score, self.gate_min_coarse_iou, self.gate_max_area_ratio)
        )

    @property
    def prompt_kinds(self) -> tuple[str, ...]:
        """The prompt kinds this configuration gives the model (``models.PROMPT_KINDS``)."""
        used = (("points", self.use_points), ("box", self.use_box), ("mask", self.use_mask))
        return tuple(kind for kind, on in used if on)

    @property
    def uses_negative_point(self) -> bool:
        """True when a negative point slot is part of every point prompt."""
        return self.use_points and self.negative_point

    @property
    def uses_elastic_box(self) -> bool:
        """True when the box prompt may grow (elastic box: ``use_box`` and ``margin > 0``).

        The elastic rule compares pixel embeddings, so prompts then need the image's
        embedding.
        """
        return self.use_box and self.margin > 0

    def batch_size(self, device_type: str) -> int:
        """Prompts decoded at once on a device of ``device_type`` (``"cpu"``, ``"cuda"``)."""
        if self.max_batch is not None:
            return self.max_batch
        return CPU_BATCH if device_type == "cpu" else ACCELERATOR_BATCH

    def thread_count(self) -> int:
        """Excavation threads: ``threads``, or the CPU cores this process may use."""
        return self.threads if self.threads is not None else available_cores()

    def replace(self, **changes: Any) -> RefineConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, for JSON sidecars and reports."""
        return dataclasses.asdict(self)

    @staticmethod
    def is_speed_only(name: str) -> bool:
        """True when field ``name`` changes speed and memory only (see :data:`SPEED_ONLY`)."""
        fields = {f.name: f for f in dataclasses.fields(RefineConfig)}
        return bool(fields[name].metadata.get("speed_only", False))

    def result_settings(self) -> dict[str, Any]:
        """The fields that can change results: every field not marked :data:`SPEED_ONLY`."""
        return {k: v for k, v in self.to_dict().items() if not self.is_speed_only(k)}

    def speed_settings(self) -> dict[str, Any]:
        """The fields that change speed and memory only (marked :data:`SPEED_ONLY`)."""
        return {k: v for k, v in self.to_dict().items() if self.is_speed_only(k)}
