"""Refinement settings.

:class:`RefineConfig` is a frozen dataclass: building one has no side effects and every
field is validated in ``__post_init__``. The defaults reproduce the reference
implementation of SAMRefiner (``sam_refiner.py``); the two options that go beyond it
(``early_stop_iou`` and ``dtype``) are off by default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

Dtype = Literal["float32", "bfloat16"]

#: Automatic decoder batch sizes (``RefineConfig.max_batch=None``).
CPU_BATCH = 2
ACCELERATOR_BATCH = 64
DTYPES: tuple[str, ...] = ("float32", "bfloat16")
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
    "max_batch": "most prompts decoded at once; bounds decoder memory (None: automatic, "
    f"{CPU_BATCH} on the CPU, where small batches run fastest, {ACCELERATOR_BATCH} on "
    "accelerators)",
    "threads": "threads mining prompts from several masks at once (None: automatic, one per "
    "CPU core this process may use)",
}


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class RefineConfig:
    """How coarse masks are turned into prompts and refined.

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
        max_batch: Largest number of prompts decoded together (memory bound). None picks
            it for the device: :data:`CPU_BATCH` on the CPU (the decoder's per-prompt
            tensors then stay in cache: 1.5x faster than 16 on a 2-core machine),
            :data:`ACCELERATOR_BATCH` elsewhere. Results do not depend on it.
        threads: Threads that excavate prompts of different masks in parallel (the
            distance transforms release the GIL). None: one per CPU core available to
            the process. Results do not depend on it.
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
    max_batch: int | None = dataclasses.field(default=None, metadata=SPEED_ONLY)
    threads: int | None = dataclasses.field(default=None, metadata=SPEED_ONLY)

    def __post_init__(self) -> None:
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
        for name in ("max_batch", "threads"):  # None: automatic
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")

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
