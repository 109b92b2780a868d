"""What a run records per image and object (the journal entries), and the run summary.

Both are files that are written and read back, with versioned schemas: a state record
(``done/<hash>.json``) is :meth:`ImageRecord.to_json` (kind ``image_record``), the
``--summary`` file is :meth:`RunSummary.to_json` (kind ``summary``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops, as_crops
from samrefiner.io.schema import SchemaError, check_header
from samrefiner.runner.journal.status import (
    INPUT_WARNINGS,
    KEPT_COARSE,
    NOTHING_TO_REFINE,
    WARNINGS,
    check_status,
    is_bad_input,
    is_lost,
    is_refined,
)

#: Digits kept for IoUs in records and outputs (keeps JSON outputs byte-stable).
IOU_DIGITS = 6

RECORD_KIND, RECORD_VERSION = "image_record", 1
SUMMARY_KIND, SUMMARY_VERSION = "summary", 1


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), IOU_DIGITS)


@dataclass
class ObjectRecord:
    """The outcome of one object.

    Attributes:
        id: the object's name in its format (COCO annotation id, instance id, class
            region ``"<class>-<k>"``, mask file path), or None when it has none.
        status: a status of :mod:`samrefiner.runner.journal.status`.
        predicted_iou: SAM's predicted IoU of the refined mask (None when not refined
            or when SAM gave none).
        coarse_iou: IoU between the coarse and the refined mask (None when not refined).
        iterations: refinement iterations run (None when not refined).
        warnings: e.g. ``["clipped"]``.
        message: what was wrong, naming the file and id (bad input only).
        extra: format-specific data the writer needs (JSON-serialisable).
        gate_reason: the quality-gate rule that kept the coarse mask (``kept_coarse``
            objects only; their ``predicted_iou`` and ``iterations`` are the rejected
            refinement's).
        zoomed: True when the object was refined on a crop (crop-zoom).
        from_box: True when the object was refined from its box, not its mask.
        kept_share: for refined objects of a label map, the share of the refined mask
            that the written map still gives the object (None elsewhere).
    """

    id: Any
    status: str
    predicted_iou: float | None = None
    coarse_iou: float | None = None
    iterations: int | None = None
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    gate_reason: str | None = None
    zoomed: bool = False
    from_box: bool = False
    kept_share: float | None = None

    def __post_init__(self) -> None:
        check_status(self.status)
        if (self.status == KEPT_COARSE) != (self.gate_reason is not None):
            raise ValueError(
                f"object {self.id!r}: status {self.status!r} with gate reason "
                f"{self.gate_reason!r} (a reason goes with {KEPT_COARSE!r} only)"
            )
        unknown = sorted(set(self.warnings) - WARNINGS)
        if unknown:
            raise ValueError(f"unknown warnings {unknown}; expected some of {sorted(WARNINGS)}")
        self.predicted_iou = _round(self.predicted_iou)
        self.coarse_iou = _round(self.coarse_iou)
        self.kept_share = _round(self.kept_share)

    @property
    def refined(self) -> bool:
        return is_refined(self.status)

    def entry(self) -> dict[str, Any]:
        """The ``samrefiner`` entry written next to an object (COCO) -- no ``extra``."""
        out: dict[str, Any] = {"status": self.status}
        if self.refined:
            out["predicted_iou"] = self.predicted_iou
            out["coarse_iou"] = self.coarse_iou
            out["iterations"] = self.iterations
        if self.gate_reason is not None:
            out["gate_reason"] = self.gate_reason
            out["predicted_iou"] = self.predicted_iou
            out["iterations"] = self.iterations
        if self.zoomed:
            out["zoomed"] = True
        if self.from_box:
            out["from_box"] = True
        if self.kept_share is not None:
            out["kept_share"] = self.kept_share
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.message:
            out["message"] = self.message
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.entry(), "extra": self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectRecord:
        return cls(
            id=data.get("id"),
            status=data["status"],
            predicted_iou=data.get("predicted_iou"),
            coarse_iou=data.get("coarse_iou"),
            iterations=data.get("iterations"),
            warnings=list(data.get("warnings", [])),
            message=data.get("message", ""),
            extra=dict(data.get("extra", {})),
            gate_reason=data.get("gate_reason"),
            zoomed=bool(data.get("zoomed", False)),
            from_box=bool(data.get("from_box", False)),
            kept_share=data.get("kept_share"),
        )


def passthrough(obj_id: Any, status: str, message: str = "", **extra: Any) -> ObjectRecord:
    """Record of an object that is written back unchanged, for ``status``."""
    return ObjectRecord(obj_id, status, message=message, extra=dict(extra))


def refined_records(
    ids: list[Any],
    coarse: MaskCrops | np.ndarray,
    result: Any,
    *,
    warnings: list[list[str]] | None = None,
    extras: list[dict[str, Any]] | None = None,
    from_box: list[bool] | None = None,
) -> list[ObjectRecord]:
    """Records of refined objects.

    Args:
        ids: ``N`` object ids.
        coarse: the ``N`` masks given to the refiner (crops, or ``N x H x W`` bool).
        result: its result for them, same order (a :class:`~samrefiner.types.RefineResult`,
            or the runner's ``CroppedResult``; read through its rows, ``outcome(k)``).
        warnings: optional per-object warnings.
        extras: optional per-object ``extra`` dicts.
        from_box: optional per-object flags: refined from a box.
    """
    if not len(ids) == len(coarse) == len(result):
        raise ValueError(
            f"ids, coarse masks and result must match: {len(ids)}, {len(coarse)}, {len(result)}"
        )
    coarse = as_crops(coarse)
    refined = as_crops(result.masks)
    records = []
    for k, obj_id in enumerate(ids):
        outcome = result.outcome(k)
        done = is_refined(outcome.status)
        ran = done or outcome.status == KEPT_COARSE
        records.append(
            ObjectRecord(
                obj_id,
                outcome.status,
                predicted_iou=outcome.score if ran else None,
                coarse_iou=coarse.iou(k, refined, k) if done else None,
                iterations=outcome.iterations if ran else None,
                warnings=list(warnings[k]) if warnings else [],
                extra=dict(extras[k]) if extras else {},
                gate_reason=outcome.gate_reason,
                zoomed=outcome.zoomed,
                from_box=bool(from_box[k]) if from_box else False,
            )
        )
    return records


@dataclass
class ImageRecord:
    """The outcome of one image: the journal entry a resumed run reads back.

    Attributes:
        key: the image's key in its dataset.
        objects: one record per object of the image, in the dataset's order.
        image_status: None when the image was usable, else why not (a bad-input status),
            or :data:`NOTHING_TO_REFINE`.
        message: what was wrong with the image.
    """

    key: str
    objects: list[ObjectRecord]
    image_status: str | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.image_status not in (None, NOTHING_TO_REFINE):
            check_status(self.image_status)

    @property
    def processed(self) -> bool:
        """True when at least one object went through the refiner (refined, or refined
        and then kept coarse by the quality gate)."""
        return any(o.refined or o.status == KEPT_COARSE for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "image_status": self.image_status,
            "message": self.message,
            "objects": [o.to_dict() for o in self.objects],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(
            key=data["key"],
            objects=[ObjectRecord.from_dict(o) for o in data["objects"]],
            image_status=data.get("image_status"),
            message=data.get("message", ""),
        )

    def to_json(self) -> dict[str, Any]:
        """The state record file: kind ``image_record``, version, then :meth:`to_dict`."""
        return {"kind": RECORD_KIND, "version": RECORD_VERSION, **self.to_dict()}

    @classmethod
    def from_json(cls, data: Any) -> ImageRecord:
        """Parse a state record; raises :class:`~samrefiner.io.schema.SchemaError`."""
        check_header(data, RECORD_KIND, RECORD_VERSION, legacy=True)
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"state record does not follow its schema: {exc!r}") from exc


@dataclass(frozen=True)
class SummaryPart:
    """Fields a dataset adds to its run's summary (see
    :class:`~samrefiner.runner.dataset.SummaryContributor`).

    Attributes:
        key: the field of the ``--summary`` file that holds ``data`` (not one of the
            summary's own fields).
        data: JSON-ready values (a dict).
        text: lines appended to the printed summary ("" for none).
    """

    key: str
    data: dict[str, Any]
    text: str = ""

    def __post_init__(self) -> None:
        if not self.key or self.key in summary_fields():
            raise ValueError(f"summary part key {self.key!r} is empty or a summary field")
        if not isinstance(self.data, dict):
            raise ValueError(f"summary part {self.key!r}: data must be a dict")


def summary_fields() -> frozenset[str]:
    """The summary's own fields (:meth:`RunSummary.to_json`), which no part may replace."""
    return frozenset(RunSummary().to_json())


@dataclass
class RunSummary:
    """Running totals of a dataset run (kept as sums: memory does not grow with images),
    plus the :class:`SummaryPart` s its dataset adds at the end (:attr:`parts`)."""

    images_total: int = 0
    images_processed: int = 0
    images_resumed: int = 0
    images_skipped: Counter[str] = field(default_factory=Counter)
    masks_total: int = 0
    masks_refined: int = 0
    masks_by_status: Counter[str] = field(default_factory=Counter)
    kept_coarse_by_reason: Counter[str] = field(default_factory=Counter)
    masks_zoomed: int = 0
    masks_from_box: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    predicted_iou_sum: float = 0.0
    predicted_iou_count: int = 0
    coarse_iou_sum: float = 0.0
    coarse_iou_count: int = 0
    wall_time_s: float = 0.0
    parts: list[SummaryPart] = field(default_factory=list)

    def add(
        self, record: ImageRecord, *, resumed: bool = False, counts_as_image: bool = True
    ) -> None:
        """Fold one image's record into the totals."""
        if counts_as_image:
            if record.processed:
                self.images_processed += 1
            else:
                self.images_skipped[record.image_status or NOTHING_TO_REFINE] += 1
            self.images_resumed += int(resumed)
        for obj in record.objects:
            self.masks_total += 1
            self.masks_by_status[obj.status] += 1
            self.warnings.update(obj.warnings)
            if obj.gate_reason is not None:
                self.kept_coarse_by_reason[obj.gate_reason] += 1
            self.masks_zoomed += int(obj.zoomed)
            self.masks_from_box += int(obj.from_box)
            if obj.refined:
                self.masks_refined += 1
                if obj.predicted_iou is not None:
                    self.predicted_iou_sum += obj.predicted_iou
                    self.predicted_iou_count += 1
                if obj.coarse_iou is not None:
                    self.coarse_iou_sum += obj.coarse_iou
                    self.coarse_iou_count += 1

    @property
    def masks_skipped(self) -> dict[str, int]:
        """Pass-through reason -> number of objects."""
        return {s: n for s, n in sorted(self.masks_by_status.items()) if not is_refined(s)}

    @property
    def bad_input(self) -> int:
        """Objects and images with bad input, plus objects with input warnings
        (:data:`~samrefiner.runner.journal.status.INPUT_WARNINGS`)."""
        objects = sum(n for s, n in self.masks_by_status.items() if is_bad_input(s))
        images = sum(n for s, n in self.images_skipped.items() if is_bad_input(s))
        warned = sum(n for w, n in self.warnings.items() if w in INPUT_WARNINGS)
        return objects + images + warned

    @property
    def lost(self) -> int:
        """Refined objects that the output lost (mostly) to neighbours (``occluded``)."""
        return sum(n for s, n in self.masks_by_status.items() if is_lost(s))

    @property
    def mean_predicted_iou(self) -> float | None:
        return _mean(self.predicted_iou_sum, self.predicted_iou_count)

    @property
    def mean_coarse_iou(self) -> float | None:
        return _mean(self.coarse_iou_sum, self.coarse_iou_count)

    def to_json(self) -> dict[str, Any]:
        """The ``--summary`` file: totals, per-status counts and means (kind ``summary``)."""
        return {
            "kind": SUMMARY_KIND,
            "version": SUMMARY_VERSION,
            "images_total": self.images_total,
            "images_processed": self.images_processed,
            "images_resumed": self.images_resumed,
            "images_skipped": dict(sorted(self.images_skipped.items())),
            "masks_total": self.masks_total,
            "masks_refined": self.masks_refined,
            "masks_by_status": dict(sorted(self.masks_by_status.items())),
            "masks_skipped": self.masks_skipped,
            "kept_coarse_by_reason": dict(sorted(self.kept_coarse_by_reason.items())),
            "masks_zoomed": self.masks_zoomed,
            "masks_from_box": self.masks_from_box,
            "warnings": dict(sorted(self.warnings.items())),
            "mean_predicted_iou": _round(self.mean_predicted_iou),
            "mean_coarse_vs_refined_iou": _round(self.mean_coarse_iou),
            "masks_lost": self.lost,
            "bad_input": self.bad_input,
            "sums": {
                "predicted_iou": self.predicted_iou_sum,
                "predicted_iou_count": self.predicted_iou_count,
                "coarse_iou": self.coarse_iou_sum,
                "coarse_iou_count": self.coarse_iou_count,
            },
            "wall_time_s": round(self.wall_time_s, 3),
            **{part.key: part.data for part in self.parts},
        }

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        """Read a ``--summary`` file back (its dataset's parts are not read: see
        :attr:`parts`); raises :class:`~samrefiner.io.schema.SchemaError`."""
        check_header(data, SUMMARY_KIND, SUMMARY_VERSION)
        try:
            sums = data["sums"]
            return cls(
                images_total=int(data["images_total"]),
                images_processed=int(data["images_processed"]),
                images_resumed=int(data["images_resumed"]),
                images_skipped=Counter(data["images_skipped"]),
                masks_total=int(data["masks_total"]),
                masks_refined=int(data["masks_refined"]),
                masks_by_status=Counter(data["masks_by_status"]),
                kept_coarse_by_reason=Counter(data.get("kept_coarse_by_reason", {})),
                masks_zoomed=int(data.get("masks_zoomed", 0)),
                masks_from_box=int(data.get("masks_from_box", 0)),
                warnings=Counter(data["warnings"]),
                predicted_iou_sum=float(sums["predicted_iou"]),
                predicted_iou_count=int(sums["predicted_iou_count"]),
                coarse_iou_sum=float(sums["coarse_iou"]),
                coarse_iou_count=int(sums["coarse_iou_count"]),
                wall_time_s=float(data["wall_time_s"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"run summary does not follow its schema: {exc!r}") from exc

    def format(self) -> str:
        """Multi-line human summary."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        def reasons(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"

        lines = [
            f"images: {self.images_processed} processed of {self.images_total}"
            + (f" ({self.images_resumed} from the resumed run)" if self.images_resumed else ""),
            f"images skipped: {reasons(dict(sorted(self.images_skipped.items())))}",
            f"masks: {self.masks_refined} refined of {self.masks_total}",
            f"masks passed through: {reasons(self.masks_skipped)}",
        ]
        if self.kept_coarse_by_reason:
            kept = dict(sorted(self.kept_coarse_by_reason.items()))
            lines.append(
                f"masks kept coarse by the quality gate: {sum(kept.values())} ({reasons(kept)})"
            )
        if self.masks_zoomed:
            lines.append(f"masks refined on a crop (crop-zoom): {self.masks_zoomed}")
        if self.masks_from_box:
            lines.append(f"masks refined from a box: {self.masks_from_box}")
        if self.masks_by_status:
            lines.append("masks by status:")
            width = max(map(len, self.masks_by_status))
            lines += [
                f"  {status:<{width}}  {n:>7}"
                + ("  (lost to neighbours)" if is_lost(status) else "")
                for status, n in sorted(self.masks_by_status.items())
            ]
        if self.warnings:
            lines.append(f"warnings: {reasons(dict(sorted(self.warnings.items())))}")
        lines += [
            f"mean predicted IoU: {fmt(self.mean_predicted_iou)}",
            f"mean coarse-vs-refined IoU: {fmt(self.mean_coarse_iou)}",
            f"wall time: {self.wall_time_s:.1f} s",
        ]
        lines += [part.text for part in self.parts if part.text]
        return "\n".join(lines)


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None
