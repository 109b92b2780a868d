"""Typed records passed between excavation, the refiner and callers.

Conventions used throughout the package:

* masks are ``N x H x W`` bool arrays at the image's own resolution;
* points are ``K x 2`` float arrays of ``(X, Y)`` pixel coordinates;
* boxes are ``XYXY`` in pixel coordinates, ``x2, y2`` being the last column / row
  that belongs to the object (inclusive);
* low-resolution logits live in the model's low-res frame (``256 x 256`` for SAM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.objects import PerObject, column, total

#: Statuses a refined mask can have.
STATUS_REFINED = "refined"  # every iteration ran
STATUS_CONVERGED = "converged"  # stopped early: successive results agreed (early_stop_iou)
STATUS_EMPTY = "empty"  # the coarse mask was empty; returned unchanged
STATUS_COLLAPSED = "collapsed"  # SAM returned an empty mask; the last non-empty one is kept
STATUS_KEPT_COARSE = "kept_coarse"  # the quality gate rejected the refined mask (gate_reason)
STATUSES: tuple[str, ...] = (
    STATUS_REFINED,
    STATUS_CONVERGED,
    STATUS_EMPTY,
    STATUS_COLLAPSED,
    STATUS_KEPT_COARSE,
)

POINT_POSITIVE = 1
POINT_NEGATIVE = 0
#: SAM's label for a padding point ("not a point").
POINT_PADDING = -1


@dataclass
class MaskPrompt:
    """The prompts mined from one coarse mask, as given to SAM.

    Attributes:
        points: ``K x 2`` float32 array of ``(X, Y)`` pixels (K = 0, 1 or 2).
        point_labels: ``K`` int array, 1 = positive, 0 = negative.
        box: ``(4,)`` float32 ``XYXY`` box in pixels, or None when no box is used.
        box_expanded: True when the elastic box grew at least one side.
        mask_logits: ``h x w`` float32 mask prompt in the model's low-res frame, or None
            when no mask prompt is used.
    """

    points: np.ndarray
    point_labels: np.ndarray
    box: np.ndarray | None
    box_expanded: bool
    mask_logits: np.ndarray | None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        self.point_labels = np.asarray(self.point_labels, dtype=np.int64).reshape(-1)
        if len(self.points) != len(self.point_labels):
            raise ValueError(
                f"points has {len(self.points)} rows but point_labels has "
                f"{len(self.point_labels)} entries"
            )
        if not np.isin(self.point_labels, (POINT_POSITIVE, POINT_NEGATIVE)).all():
            raise ValueError(f"point_labels must be 0 or 1, got {self.point_labels.tolist()}")
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float32).reshape(-1)
            if self.box.shape != (4,):
                raise ValueError(f"box must have 4 values (XYXY), got shape {self.box.shape}")
            if self.box[2] < self.box[0] or self.box[3] < self.box[1]:
                raise ValueError(f"box must satisfy x2 >= x1 and y2 >= y1, got {self.box.tolist()}")
        if self.mask_logits is not None:
            self.mask_logits = np.asarray(self.mask_logits, dtype=np.float32)
            if self.mask_logits.ndim != 2:
                raise ValueError(
                    f"mask_logits must be 2-D (h x w), got shape {self.mask_logits.shape}"
                )
        self.box_expanded = bool(self.box_expanded)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the mask logits are left out: they are large)."""
        return {
            "points": self.points.round(2).tolist(),
            "point_labels": self.point_labels.tolist(),
            "box": None if self.box is None else self.box.round(2).tolist(),
            "box_expanded": self.box_expanded,
        }


@dataclass(frozen=True)
class ObjectOutcome:
    """What the refiner did to one object: a row of :class:`RefineResult`.

    Attributes:
        score: predicted IoU of the kept candidate (None where SAM gave nothing kept).
        status: one of :data:`STATUSES`.
        iterations: rounds run.
        prompt: the last round's prompts (None for an empty coarse mask).
        zoomed: True when the object was refined on a crop (crop-zoom).
        gate_reason: the quality-gate rule that kept the coarse mask (``kept_coarse``
            only), else None.
    """

    score: float | None
    status: str
    iterations: int
    prompt: MaskPrompt | None
    zoomed: bool = False
    gate_reason: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON-friendly record (:meth:`RefineResult.to_records`): score (6 digits),
        status, iterations and prompts, then ``zoomed: true`` for an object refined on
        a crop and ``gate_reason`` for a ``kept_coarse`` one (absent otherwise, so
        default runs write what they always did)."""
        record: dict[str, Any] = {
            "score": None if self.score is None else round(self.score, 6),
            "status": self.status,
            "iterations": self.iterations,
            "prompts": None if self.prompt is None else self.prompt.to_dict(),
        }
        if self.zoomed:
            record["zoomed"] = True
        if self.gate_reason is not None:
            record["gate_reason"] = self.gate_reason
        return record


@dataclass
class RefineResult(PerObject):
    """Refined masks of one image: a per-object container (:mod:`samrefiner.objects`).

    Attributes:
        masks: ``N x H x W`` bool refined masks, in the order of the input masks (or,
            in the dataset runner, their box-local crops: :class:`~samrefiner.crops.MaskCrops`).
        scores: ``N`` float32 predicted IoU of each kept candidate (NaN where SAM gave
            nothing that was kept: empty or collapsed at the first iteration).
        prompts: ``N`` :class:`MaskPrompt`, those of the last iteration each mask ran
            (None for an empty coarse mask).
        status: ``N`` strings from :data:`STATUSES`.
        iterations: ``N`` ints, the rounds each mask actually ran. A mask that comes back
            unchanged from a round has reached a fixed point (the same mask gives the same
            prompts and the same output), so its remaining rounds are skipped: its result
            equals that of running them all.
        timings: seconds spent per stage for this call: ``encoder`` (0 when a computed
            embedding was reused), ``excavation``, ``decoder`` and ``postprocess``.
        zoomed: ``N`` bool, True for the masks refined on a crop (crop-zoom).
        gate_reasons: ``N`` entries, the quality-gate rule that kept the coarse mask
            (:data:`samrefiner.gate.GATE_REASONS`) where the status is ``kept_coarse``,
            else None. ``scores`` then holds the rejected mask's predicted IoU.
        crops: encoder passes spent on crops (crop-zoom), beyond the whole image's.

    The per-object fields are declared once here (:func:`~samrefiner.objects.column`);
    :meth:`take`, :meth:`concat`, :meth:`scatter` (alias :meth:`gather`) and
    :meth:`put` follow from the declaration, and :meth:`outcomes` gives the rows.
    """

    masks: Any = field(metadata=column(masks=True))
    scores: np.ndarray = field(metadata=column(dtype=np.float32))
    prompts: list[MaskPrompt | None] = field(metadata=column())
    status: list[str] = field(metadata=column())
    iterations: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64),
        metadata=column(dtype=np.int64, fill=0),
    )
    timings: dict[str, float] = field(default_factory=dict, metadata=total())
    zoomed: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=bool), metadata=column(dtype=bool, fill=False)
    )
    gate_reasons: list[str | None] = field(default_factory=list, metadata=column(fill=None))
    crops: int = field(default=0, metadata=total())

    def __post_init__(self) -> None:
        if not isinstance(self.masks, MaskCrops):
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.ndim != 3:
                raise ValueError(f"masks must be N x H x W, got shape {self.masks.shape}")
        self._settle_columns(len(self.masks))
        bad = sorted({s for s in self.status if s not in STATUSES})
        if bad:
            raise ValueError(f"unknown status {bad}; expected one of {STATUSES}")
        for status, reason in zip(self.status, self.gate_reasons, strict=True):
            if (status == STATUS_KEPT_COARSE) != (reason is not None):
                raise ValueError(
                    f"a {status!r} mask with gate reason {reason!r}: a reason is given "
                    f"exactly for {STATUS_KEPT_COARSE!r} masks"
                )

    def __len__(self) -> int:
        return len(self.masks)

    @classmethod
    def start(cls, coarse: np.ndarray) -> RefineResult:
        """The result before any round: each mask its coarse mask (a copy), status
        ``refined``, no score, no prompt, no iteration."""
        n = len(coarse)
        return cls(
            masks=coarse.copy(),
            scores=np.full(n, np.nan, dtype=np.float32),
            prompts=[None] * n,
            status=[STATUS_REFINED] * n,
        )

    @classmethod
    def gather(cls, n: int, parts: list[tuple[list[int], RefineResult]]) -> RefineResult:
        """One result for ``n`` masks from results of subsets of them
        (:meth:`~samrefiner.objects.PerObject.scatter`).

        Args:
            n: number of masks.
            parts: ``(indices, result)`` pairs: ``result``'s entry ``k`` is mask
                ``indices[k]``; together the indices name every mask once. All results
                are for the same image. Timings and crops are summed.
        """
        return cls.scatter(n, parts)

    def outcome(self, k: int) -> ObjectOutcome:
        """Object ``k``'s row (score None where it is NaN)."""
        score = float(self.scores[k])
        return ObjectOutcome(
            score=None if np.isnan(score) else score,
            status=self.status[k],
            iterations=int(self.iterations[k]),
            prompt=self.prompts[k],
            zoomed=bool(self.zoomed[k]),
            gate_reason=self.gate_reasons[k],
        )

    def outcomes(self) -> list[ObjectOutcome]:
        """One :class:`ObjectOutcome` per object, in order."""
        return [self.outcome(k) for k in range(len(self))]

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-friendly dict per mask (:meth:`ObjectOutcome.to_record`): score,
        status, iterations and prompts.

        ``zoomed: true`` is added for a mask refined on a crop and ``gate_reason`` for a
        ``kept_coarse`` one (absent otherwise, so default runs write what they always did).
        """
        return [outcome.to_record() for outcome in self.outcomes()]
