"""Quality gate: keep the coarse mask when the refined one looks worse, without ground truth.

Three rules, each off unless its threshold is set in :class:`~samrefiner.RefineConfig`,
checked in this order (the first that fires is the recorded reason):

* ``low_score``: the refined mask's predicted IoU is below ``gate_min_score``;
* ``moved``: its IoU with the coarse mask is below ``gate_min_coarse_iou`` (the model
  segmented something else: a part, a neighbour, the background);
* ``area_change``: its area is more than ``gate_max_area_ratio`` times larger or smaller
  than the coarse mask's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from samrefiner.config import RefineConfig
from samrefiner.io.masks import mask_iou

GATE_LOW_SCORE = "low_score"
GATE_MOVED = "moved"
GATE_AREA_CHANGE = "area_change"
#: Reasons a gated mask can carry, in the order the rules are checked.
GATE_REASONS: tuple[str, ...] = (GATE_LOW_SCORE, GATE_MOVED, GATE_AREA_CHANGE)


def gate_reason(
    coarse: np.ndarray, refined: np.ndarray, score: float, config: RefineConfig
) -> str | None:
    """The first gate rule that rejects ``refined``, or None to keep it.

    Args:
        coarse: ``H x W`` bool coarse mask (not empty).
        refined: ``H x W`` bool refined mask.
        score: the refined mask's predicted IoU (NaN when the model gave none: that rule
            then does not fire).
        config: the thresholds (``gate_*`` fields); rules whose threshold is None are off.
    """
    min_score, min_iou = config.gate_min_score, config.gate_min_coarse_iou
    if min_score is not None and math.isfinite(score) and score < min_score:
        return GATE_LOW_SCORE
    if min_iou is not None and mask_iou(refined, coarse) < min_iou:
        return GATE_MOVED
    if config.gate_max_area_ratio is not None:
        before, after = np.count_nonzero(coarse), np.count_nonzero(refined)
        if min(before, after) == 0 or (
            max(before, after) > config.gate_max_area_ratio * min(before, after)
        ):
            return GATE_AREA_CHANGE
    return None


@dataclass(frozen=True)
class GateScore:
    """How well the gate's decisions match ground truth (see :func:`score_gate`).

    Attributes:
        kept: masks the gate kept coarse.
        worse: masks refinement made worse (refined IoU with the truth below the coarse).
        kept_worse: masks both kept and made worse.
        total: masks scored.
    """

    kept: int
    worse: int
    kept_worse: int
    total: int

    @property
    def precision(self) -> float | None:
        """Of the masks kept, the share refinement made worse (None when none was kept)."""
        return self.kept_worse / self.kept if self.kept else None

    @property
    def recall(self) -> float | None:
        """Of the masks made worse, the share the gate kept (None when none was worse)."""
        return self.kept_worse / self.worse if self.worse else None

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "kept": self.kept,
            "worse": self.worse,
            "kept_worse": self.kept_worse,
            "total": self.total,
            "precision": self.precision,
            "recall": self.recall,
        }


def score_gate(kept: np.ndarray, coarse_iou: np.ndarray, refined_iou: np.ndarray) -> GateScore:
    """Score gate decisions against ground truth.

    Args:
        kept: ``N`` bool, True where the gate kept the coarse mask.
        coarse_iou: ``N`` IoU of each coarse mask with its ground truth.
        refined_iou: ``N`` IoU of each (ungated) refined mask with its ground truth.
    """
    kept = np.asarray(kept, dtype=bool).reshape(-1)
    coarse_iou = np.asarray(coarse_iou, dtype=np.float64).reshape(-1)
    refined_iou = np.asarray(refined_iou, dtype=np.float64).reshape(-1)
    if not len(kept) == len(coarse_iou) == len(refined_iou):
        raise ValueError(
            f"kept, coarse_iou and refined_iou have {len(kept)}, {len(coarse_iou)} and "
            f"{len(refined_iou)} entries; they must match"
        )
    worse = refined_iou < coarse_iou
    return GateScore(
        kept=int(kept.sum()),
        worse=int(worse.sum()),
        kept_worse=int((kept & worse).sum()),
        total=len(kept),
    )
