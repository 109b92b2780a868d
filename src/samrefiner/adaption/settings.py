"""Training settings of SAMRefiner++ IoU adaption.

The defaults are the reference's (``SAMRefiner_plus/iou_adaption_davis585.py``): one
round of box-only prompts with three candidates, a margin ranking loss (0.02) between the
target candidate and each other one, gradients accumulated over 5 objects, SGD (lr 1e-2,
momentum 0.9, weight decay 5e-4) with the learning rate x0.1 at optimiser steps 60 and
100, one epoch, one object per forward pass, seed 0; the LoRA has rank 4.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from samrefiner.config import DTYPES, Dtype, RefineConfig, check_finite

#: Training prompts of the reference: one round, the tight box only.
BOX_ONLY = RefineConfig(
    iterations=1, use_points=False, negative_point=False, use_box=True, use_mask=False
)


@dataclass(frozen=True)
class AdaptConfig:
    """How an IoU adapter is trained.

    Every number must be finite: a NaN or an infinity is a ValueError naming the field.

    Attributes:
        prompts: prompts of the training round (only the first round's prompt parts and
            their excavation settings are used): the reference's tight box by default.
        rank: LoRA rank r (> 0).
        alpha: LoRA alpha; the update is scaled by ``alpha / rank`` (peft's default 8).
        loss_margin: margin of the ranking loss (>= 0).
        accumulate: objects whose losses are summed (each divided by ``accumulate``)
            before one optimiser step (>= 1); an epoch's last, smaller group still steps.
        lr: SGD learning rate (> 0).
        momentum: SGD momentum in [0, 1).
        weight_decay: SGD weight decay (>= 0).
        milestones: optimiser steps after which the learning rate is multiplied by
            ``lr_decay`` (increasing, >= 1).
        lr_decay: factor in (0, 1] applied at each milestone.
        epochs: passes over the training objects (>= 1); the order is shuffled per epoch.
        seed: seed of the LoRA initialisation, the held-out split and the shuffles.
        held_out: share of the images kept out of training for the report, in [0, 1).
        dtype: ``"float32"`` or ``"bfloat16"`` (autocast) for encoding and decoding.
    """

    prompts: RefineConfig = field(default=BOX_ONLY)
    rank: int = 4
    alpha: float = 8.0
    loss_margin: float = 0.02
    accumulate: int = 5
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (60, 100)
    lr_decay: float = 0.1
    epochs: int = 1
    seed: int = 0
    held_out: float = 0.1
    dtype: Dtype = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.prompts, RefineConfig):
            raise TypeError(f"prompts must be a RefineConfig, got {type(self.prompts).__name__}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        check_finite(self)
        for name in ("rank", "accumulate", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if not self.loss_margin >= 0:
            raise ValueError(f"loss_margin must be >= 0, got {self.loss_margin!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(
            set(self.milestones)
        ):
            raise ValueError(
                f"milestones must be increasing integers >= 1, got {list(self.milestones)}"
            )
        if not 0 <= self.held_out < 1:
            raise ValueError(f"held_out must be in [0, 1), got {self.held_out!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON): ``prompts`` as the fields that change results."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["prompts"] = self.prompts.result_settings()
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown adaption settings: {', '.join(unknown)}")
        values = dict(data)
        if "prompts" in values:
            values["prompts"] = RefineConfig(**values["prompts"])
        if "milestones" in values:
            values["milestones"] = tuple(values["milestones"])
        return cls(**values)

    def result_settings(self) -> dict[str, Any]:
        """Everything that changes the trained weights (all fields: JSON form)."""
        return self.to_dict()
