"""What the runner needs from a dataset format, and from a refiner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from samrefiner.crops import MaskCrops, as_crops
from samrefiner.io.masks import box_masks
from samrefiner.runner.journal.records import (
    ImageRecord,
    ObjectRecord,
    SummaryPart,
    refined_records,
)
from samrefiner.runner.journal.status import NOTHING_TO_REFINE
from samrefiner.types import RefineResult


@runtime_checkable
class RefinerLike(Protocol):
    """Anything with ``refine(image, masks) -> RefineResult`` (:class:`samrefiner.Refiner`).

    A refiner that also has ``first_round_prompts(masks)`` and accepts
    ``refine(..., first_prompts=...)`` gets its first round's prompts mined by the
    background workers; one with ``encode(image)`` and ``refine(..., embedding=...)``
    has the image encoded once when its objects take several calls. One with
    ``plan_crops(boxes, size)`` and ``refine(..., crops=...)`` has crop-zoom's crops
    planned once per image (:meth:`samrefiner.Refiner.plan_crops`). Jobs with boxes
    (:attr:`Job.boxes`) need ``refine(image, boxes=...)``.
    """

    def refine(self, image: np.ndarray, masks: np.ndarray) -> RefineResult: ...


@dataclass
class CroppedResult(RefineResult):
    """A :class:`~samrefiner.types.RefineResult` whose masks are box-local crops.

    What the runner hands to :meth:`Dataset.save`: the refiner's full-frame masks are
    cropped as soon as each batch of objects is refined, so an image with many objects
    never holds ``N x H x W`` masks.

    Attributes:
        masks: ``N`` refined masks (:class:`~samrefiner.crops.MaskCrops`).
        The other fields are ``RefineResult``'s (the same per-object container,
        :mod:`samrefiner.objects`).
    """

    @classmethod
    def from_results(cls, shape: tuple[int, int], results: list[RefineResult]) -> CroppedResult:
        """Concatenate the results of consecutive batches of one image, cropping masks."""
        if not results:
            return cls(MaskCrops(shape), np.zeros(0, np.float32), [], [], np.zeros(0, np.int64))
        return cls.concat(
            [cls.like(r, masks=MaskCrops.from_masks(r.masks, shape)) for r in results]
        )


@dataclass
class Job:
    """One image's work, built by :meth:`Dataset.load` in a background worker.

    Attributes:
        key: the image's key (see :meth:`Dataset.keys`).
        image: ``H x W x 3`` uint8 RGB, or None when the image cannot be used.
        masks: the ``N`` coarse masks to refine (``N`` may be 0), as box-local crops
            (:class:`~samrefiner.crops.MaskCrops`; an ``N x H x W`` bool stack given
            here is cropped).
        ids: ``N`` object ids of ``masks``.
        warnings: ``N`` lists of warnings of ``masks`` (empty lists when omitted).
        extras: ``N`` dicts of format data for the records of ``masks`` (empty when
            omitted).
        passthrough: records of the image's objects that are not refined.
        payload: whatever the dataset needs to write the outputs.
        image_status: None, or the bad-input status that makes the image unusable.
        message: what was wrong with the image.
        first_prompts: prompts of the refiner's first round, mined in the background
            worker (None when not prepared).
        boxes: ``N x 4`` float XYXY boxes (inclusive pixels) of the objects refined from
            their box (``refine(image, boxes=...)``), NaN rows for those refined from
            their mask; None when every object is a mask. A box object's row of
            ``masks`` is its filled box (the coarse mask kept by the quality gate).
    """

    key: str
    image: np.ndarray | None
    masks: MaskCrops
    ids: list[Any] = field(default_factory=list)
    warnings: list[list[str]] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)
    passthrough: list[ObjectRecord] = field(default_factory=list)
    payload: Any = None
    image_status: str | None = None
    message: str = ""
    first_prompts: list[Any] | None = None
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.masks = as_crops(self.masks)
        n = len(self.masks)
        self.warnings = self.warnings or [[] for _ in range(n)]
        self.extras = self.extras or [{} for _ in range(n)]
        for name, value in (
            ("ids", self.ids),
            ("warnings", self.warnings),
            ("extras", self.extras),
        ):
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} masks")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
            if len(self.boxes) != n:
                raise ValueError(f"boxes has {len(self.boxes)} entries for {n} masks")
        if self.image is not None:
            if self.image.ndim != 3 or self.image.shape[2] != 3:
                raise ValueError(f"image must be H x W x 3, got shape {self.image.shape}")
            if n and self.masks.shape != self.image.shape[:2]:
                raise ValueError(
                    f"masks are {self.masks.shape[0]}x{self.masks.shape[1]} but the image is "
                    f"{self.image.shape[0]}x{self.image.shape[1]} (H x W)"
                )

    @property
    def from_box(self) -> list[bool]:
        """``N`` flags: True for the objects refined from their box."""
        if self.boxes is None:
            return [False] * len(self.masks)
        return [bool(v) for v in ~np.isnan(self.boxes).any(axis=1)]

    @property
    def refinable(self) -> bool:
        """True when there is an image and at least one mask to refine."""
        return self.image is not None and self.image_status is None and len(self.masks) > 0

    def records(self, result: CroppedResult | None) -> list[ObjectRecord]:
        """Records of all the image's objects: pass-through ones, then ``masks``'.

        With ``result`` None the ``masks`` were not refined (the image was unusable):
        they are passed through with ``image_status``.
        """
        if result is None:
            if len(self.masks) and self.image_status is None:
                raise ValueError(f"{self.key}: masks to refine but no result and no image status")
            return self.passthrough + [
                ObjectRecord(i, self.image_status, message=self.message, extra=e)
                for i, e in zip(self.ids, self.extras, strict=True)
                if self.image_status is not None
            ]
        return self.passthrough + refined_records(
            self.ids,
            self.masks,
            result,
            warnings=self.warnings,
            extras=self.extras,
            from_box=self.from_box,
        )

    def image_record(
        self, result: CroppedResult | None, objects: list[ObjectRecord]
    ) -> ImageRecord:
        """The image's record with ``objects`` (see :meth:`records`)."""
        status = self.image_status
        if status is None and result is None:
            status = NOTHING_TO_REFINE
        return ImageRecord(self.key, objects, status, self.message)


@dataclass
class JobObjects:
    """The coarse objects of one image, gathered one at a time by a dataset's
    :meth:`Dataset.load` (each refined from its mask or from its box), then its
    :class:`Job`.

    Attributes:
        masks: the ``N`` coarse masks (a box object's: its filled box).
        ids, warnings, extras: ``N`` of each, as :class:`Job`'s.
        boxes: ``N`` XYXY rows, NaN for the objects refined from their mask.
    """

    masks: MaskCrops
    ids: list[Any] = field(default_factory=list)
    warnings: list[list[str]] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)

    def add_box(self, obj_id: Any, box: np.ndarray, extra: dict[str, Any]) -> None:
        """Add an object refined from its ``1 x 4`` XYXY ``box`` (as
        :func:`~samrefiner.io.masks.as_box_array` gives it)."""
        self.masks.append(box_masks(box, self.masks.shape)[0])
        self.boxes.append(box[0].tolist())
        self.ids.append(obj_id)
        self.warnings.append([])
        self.extras.append(extra)

    def add_mask(
        self, obj_id: Any, mask: np.ndarray, warnings: list[str], extra: dict[str, Any]
    ) -> None:
        """Add an object refined from its ``H x W`` bool ``mask``."""
        self.masks.append(mask)
        self.boxes.append([np.nan] * 4)
        self.ids.append(obj_id)
        self.warnings.append(warnings)
        self.extras.append(extra)

    def job(
        self, key: str, image: np.ndarray, passthrough: list[ObjectRecord], payload: Any
    ) -> Job:
        """The image's job: these objects, and the ``passthrough`` records of those that
        are not refined (boxes: None when no object is a box)."""
        any_box = any(not np.isnan(b[0]) for b in self.boxes)
        return Job(
            key,
            image,
            self.masks,
            self.ids,
            self.warnings,
            self.extras,
            passthrough=passthrough,
            payload=payload,
            boxes=np.array(self.boxes, dtype=np.float32) if any_box else None,
        )


class Dataset(Protocol):
    """A dataset format as the runner drives it.

    The runner calls :meth:`keys` once, :meth:`load` for each key not yet done (in
    background workers, several at a time: it must be thread-safe and not write
    anything), :meth:`save` for each loaded key in order (in one writer thread), and
    :meth:`finish` once at the end. A dataset that adds fields to the run's summary
    also implements :class:`SummaryContributor`.
    """

    #: Name used in logs.
    name: str

    def keys(self) -> list[str]:
        """The image keys, in processing order (stable between runs)."""
        ...

    def load(self, key: str) -> Job:
        """Decode the image and the coarse masks of ``key`` (bad input becomes statuses)."""
        ...

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        """Write the outputs of one image (atomically) and return its record.

        ``result`` is None when nothing was refined (``job.refinable`` false, or the
        refiner rejected the input -- then ``job.image_status`` says so).
        """
        ...

    def orphans(self) -> list[ObjectRecord]:
        """Records of objects that belong to no image (passed through by :meth:`finish`)."""
        ...

    def finish(self, records: Iterator[ImageRecord]) -> None:
        """Write what can only be written at the end, given an iterator over all records."""
        ...


@runtime_checkable
class SummaryContributor(Protocol):
    """A :class:`Dataset` that adds fields to its run's summary.

    The engines call :meth:`summary_parts` once, after :meth:`Dataset.finish`, and put
    what it returns in the :class:`~samrefiner.runner.journal.records.RunSummary` they
    return (its ``parts``): the ``--summary`` file holds them under their keys and the
    printed summary ends with their text, both written once with the rest.
    """

    def summary_parts(self) -> list[SummaryPart]:
        """The dataset's summary fields (resumed images included)."""
        ...
