"""Completing and naming coarse objects with a detector: runner datasets for COCO files
and instance-id maps.

:class:`CompletingCocoDataset` is :class:`~samrefiner.runner.formats.coco.CocoDataset`
plus a detector run on every image (images without annotations included) with class
names, matched to the image's coarse objects by the rules of
:mod:`samrefiner.detectors.matching`:

* ``complete``: each detection that no coarse object covers becomes a new annotation,
  refined like the others (from its box, or its mask with SAM 3), marked
  ``"samrefiner": {"added": true, "detector": {...}}`` with ``score`` = the detector's;
  each coarse object that no detection supports is marked ``"unsupported": true`` (never
  removed);
* ``name``: each coarse object gets ``"named": {"class", "score", "box_iou"}`` and, when a detection
  names it, that class's ``category_id`` (categories the file lacks are added).

:class:`CompletingInstanceDataset` does the same for instance-id maps: an added
object is painted with a new id (the smallest ids above the map's largest that its
palette has a colour for), an unsupported one is flagged in the run's records only, and
the names go to a class sidecar per map (:mod:`samrefiner.io.instance_classes`).

The counts per category (:class:`CompletionCounts`) are kept as :attr:`counts` when the
run finishes, and given to the run's summary (:meth:`summary_parts`, the runner's
:class:`~samrefiner.runner.dataset.SummaryContributor` hook).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.detectors.base import Detections
from samrefiner.detectors.loading import DetectorSpec, LoadedDetector
from samrefiner.detectors.matching import Matching, MatchSettings, match
from samrefiner.io.classes import ClassList
from samrefiner.io.coco import CocoFile, segmentation_fields
from samrefiner.io.instance_classes import InstanceClass, InstanceClasses, classes_path
from samrefiner.runner.dataset import CroppedResult, Job
from samrefiner.runner.formats.coco import CocoDataset
from samrefiner.runner.formats.label import detection_extras, detection_job_parts
from samrefiner.runner.formats.label_folders import InstanceDataset
from samrefiner.runner.journal.records import ImageRecord, SummaryPart

log = logging.getLogger("samrefiner.runner")

#: Prefix of an added object's id in the run's records (its COCO id is given at the end).
ADDED_PREFIX = "added:"

COMPLETION_KIND, COMPLETION_VERSION = "completion", 1


@dataclass
class CompletionCounts:
    """Added, unsupported and named objects per category name (a file written next to
    the summary, kind ``completion``)."""

    added: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)
    named: Counter[str] = field(default_factory=Counter)
    unnamed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": COMPLETION_KIND,
            "version": COMPLETION_VERSION,
            "added": dict(sorted(self.added.items())),
            "unsupported": dict(sorted(self.unsupported.items())),
            "named": dict(sorted(self.named.items())),
            "unnamed": self.unnamed,
        }

    def format(self) -> str:
        """The counts as summary lines."""

        def line(what: str, counts: Counter[str]) -> str:
            per = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            return f"{what}: {sum(counts.values())}" + (f" ({per})" if per else "")

        lines = [line("objects added", self.added), line("objects unsupported", self.unsupported)]
        if self.named or self.unnamed:
            lines.append(line("objects named", self.named) + f"; left unnamed: {self.unnamed}")
        return "\n".join(lines)

    def part(self) -> SummaryPart:
        """The counts as the run summary's ``completion`` field and printed lines."""
        return SummaryPart("completion", self.to_json(), self.format())


def file_classes(coco: CocoFile) -> ClassList:
    """The categories of a COCO dataset file as a :class:`ClassList` (ValueError when it
    lists none)."""
    cats = coco.data.get("categories") if isinstance(coco.data, dict) else None
    if not cats:
        raise ValueError(
            "the COCO file lists no categories to detect: give the class names (--classes)"
        )
    try:
        return ClassList(
            tuple(str(c["name"]).strip() for c in cats), tuple(int(c["id"]) for c in cats)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"the COCO file's categories cannot be used as class names: {exc}"
        ) from exc


def _category_name(names: dict[Any, str], ann: dict[str, Any]) -> str:
    """The class name of ``ann``'s ``category_id``, else the id as text."""
    category = ann.get("category_id")
    if isinstance(category, (int, str)) and category in names:
        return names[category]
    return str(category)


def _detections_at(found: Detections, picked: np.ndarray) -> Detections:
    """The detections of ``found`` at the indices ``picked``."""
    return Detections(
        found.boxes[picked],
        found.scores[picked],
        found.labels[picked],
        found.classes,
        None if found.masks is None else found.masks[picked],
    )


def _job_with_added(
    job: Job, added: Detections, extras: list[dict[str, Any]], ids: list[Any], payload: Any
) -> Job:
    """``job`` followed by the ``added`` detections as objects to refine, with their
    ``ids`` and ``extras`` (boxes: NaN rows for the objects without one, None when no
    object has one)."""
    masks, boxes = detection_job_parts(added, job.masks.shape)
    n_old = len(job.masks)
    old_boxes = job.boxes if job.boxes is not None else np.full((n_old, 4), np.nan)
    new_boxes = boxes if boxes is not None else np.full((len(added), 4), np.nan)
    all_boxes = np.concatenate([old_boxes, new_boxes]).astype(np.float32)
    return Job(
        job.key,
        job.image,
        MaskCrops.concat([job.masks, masks]),
        [*job.ids, *ids],
        [*job.warnings, *([] for _ in ids)],
        [*job.extras, *extras],
        passthrough=job.passthrough,
        payload=payload,
        boxes=None if np.isnan(all_boxes).all() else all_boxes,
    )


class _DetectorCompletion:
    """What the completing datasets share: the detector and its settings, the marking of
    each loaded job's coarse objects, and the counts."""

    classes: ClassList

    def _start_completion(
        self,
        detector: DetectorSpec,
        classes: ClassList | None,
        complete: bool,
        name: bool,
        matching: MatchSettings | None,
    ) -> None:
        if not (complete or name):
            raise ValueError("nothing to do: complete, name or both")
        self.classes = classes if classes is not None else self._default_classes()
        self.complete = complete
        self.naming = name
        self.matching = matching or MatchSettings()
        self.detector = LoadedDetector(detector)
        self.counts = CompletionCounts()

    def _default_classes(self) -> ClassList:
        """The names to detect when none are given."""
        raise ValueError("no class names given")

    def _detect_and_mark(self, job: Job) -> tuple[Detections, Matching]:
        """Detect the classes in ``job``'s image and match them to its coarse objects,
        marking their extras ``unsupported`` (with ``complete``) and ``named`` (with
        ``name``)."""
        found = self.detector.detect(job.image, list(self.classes.names))
        matching = match(job.masks, found, self.matching)
        for k, extra in enumerate(job.extras):
            if self.complete and matching.unsupported[k]:
                extra["unsupported"] = True
        if self.naming:
            for extra, naming in zip(job.extras, matching.names(found), strict=True):
                extra["named"] = {
                    "class": naming.cls,
                    "score": naming.score,
                    "box_iou": naming.box_iou,
                }
        return found, matching

    def summary_parts(self) -> list[SummaryPart]:
        """The counts, as the summary's ``completion`` field."""
        return [self.counts.part()]


class CompletingCocoDataset(_DetectorCompletion, CocoDataset):
    """A :class:`CocoDataset` whose images are also searched by a detector.

    Args:
        coco, images_dir, output: as :class:`CocoDataset`.
        detector: the detector and its thresholds.
        classes: the names to detect (None: the file's categories).
        complete: add missed detections and flag unsupported objects.
        name: name each coarse object after its best matching detection.
        matching: when a detection and a coarse object match.
        options: :class:`CocoDataset`'s keyword options.
    """

    def __init__(
        self,
        coco: CocoFile,
        images_dir: str | os.PathLike[str],
        output: str | os.PathLike[str],
        *,
        detector: DetectorSpec,
        classes: ClassList | None = None,
        complete: bool = True,
        name: bool = False,
        matching: MatchSettings | None = None,
        **options: Any,
    ) -> None:
        super().__init__(coco, images_dir, output, **options)
        self._start_completion(detector, classes, complete, name, matching)
        # Every image is searched, those without annotations too (in the file's order).
        positions: dict[str, list[int]] = {}
        for key in self._all_keys():
            positions[key] = self._positions.get(key, [])
        self._positions = positions
        if name:  # the names' ids in the file, which gains the categories it lacks
            ids = self._add_categories()
            self.classes = ClassList(self.classes.names, tuple(ids[n] for n in self.classes.names))

    def _default_classes(self) -> ClassList:
        """The file's categories."""
        return file_classes(self.coco)

    def _all_keys(self) -> Iterator[str]:
        for image_id in self.coco.images:
            key = json.dumps(image_id)
            self._key_to_image[key] = image_id
            yield key

    def _add_categories(self) -> dict[str, Any]:
        """Category id per class name, adding the names a dataset file lacks."""
        if not isinstance(self.coco.data, dict):
            return dict(zip(self.classes.names, self.classes.ids, strict=True))
        cats = self.coco.data.setdefault("categories", [])
        ids = {c.get("name"): c.get("id") for c in cats if isinstance(c, dict)}
        numbers = [i for i in ids.values() if isinstance(i, int)]
        for name in self.classes.names:
            if name not in ids:
                ids[name] = max(numbers, default=0) + 1
                numbers.append(ids[name])
                cats.append({"id": ids[name], "name": name})
        return {n: ids[n] for n in self.classes.names}

    def load(self, key: str) -> Job:
        job = super().load(key)
        if job.image is None:
            return job
        found, matching = self._detect_and_mark(job)
        if not self.complete:
            return job
        return self._with_added(job, found, np.flatnonzero(matching.missed))

    def _with_added(self, job: Job, found: Detections, missed: np.ndarray) -> Job:
        """``job`` with the ``missed`` detections of ``found`` as objects to refine."""
        if len(missed) == 0:
            return job
        added = _detections_at(found, missed)
        extras = detection_extras(added, self.classes)
        base = len(self.coco.annotations)
        for n, extra in enumerate(extras):
            extra.update(added=True, index=base + n)
        ids = [f"{ADDED_PREFIX}{n}" for n in range(len(added))]
        return _job_with_added(job, added, extras, ids, job.payload)

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        record = super().save(job, result)
        for obj in record.objects:
            if obj.extra.get("added"):
                obj.extra["image_id"] = self._key_to_image[job.key]
                if "fields" not in obj.extra:  # not refined: its coarse mask is written
                    obj.extra["fields"] = segmentation_fields(job.masks.full(job.ids.index(obj.id)))
        return record

    def finish(self, records: Iterator[ImageRecord]) -> None:
        super().finish(self._marked(records))

    def _marked(self, records: Iterator[ImageRecord]) -> Iterator[ImageRecord]:
        """``records`` without their added objects, as :meth:`CocoDataset.finish` writes
        them; each record's coarse objects are marked once it has written their entries,
        and the added annotations join the file before it is written."""
        anns = self.coco.annotations
        categories = {i: n for n, i in zip(self.classes.names, self.classes.ids, strict=True)}
        categories_by_name = {n: i for i, n in categories.items()}
        added = []
        for record in records:
            kept = [o for o in record.objects if not o.extra.get("added")]
            added.extend(o for o in record.objects if o.extra.get("added"))
            yield ImageRecord(record.key, kept, record.image_status, record.message)
            for obj in kept:  # CocoDataset.finish has written their entries by now
                ann = anns[obj.extra["index"]]
                if obj.extra.get("unsupported"):
                    ann["samrefiner"]["unsupported"] = True
                    self.counts.unsupported[_category_name(categories, ann)] += 1
                if "named" in obj.extra:
                    named = obj.extra["named"]
                    ann["samrefiner"]["named"] = named
                    if named["class"] is None:
                        self.counts.unnamed += 1
                    else:
                        ann["category_id"] = categories_by_name[named["class"]]
                        self.counts.named[named["class"]] += 1
        numbers = [a["id"] for a in anns if isinstance(a.get("id"), int)]
        next_id = max(numbers, default=0) + 1
        for n, obj in enumerate(added):
            detector = obj.extra["detector"]
            anns.append(
                {
                    "id": next_id + n,
                    "image_id": obj.extra["image_id"],
                    "category_id": obj.extra["category_id"],
                    **obj.extra["fields"],
                    "iscrowd": 0,
                    "score": detector["score"],
                    "samrefiner": {**obj.entry(), "added": True, "detector": detector},
                }
            )
            self.counts.added[detector["class"]] += 1


#: Category of coarse objects without a class (instance ids), in the counts.
NO_CLASS = "(no class)"


def _id_limit(label_map: Any) -> int:
    """One above the largest id a map can hold (its palette's colours for mode ``P``)."""
    if label_map.palette_size is not None:
        return int(label_map.palette_size)
    return 65536 if label_map.mode == "I;16" else 256


class CompletingInstanceDataset(_DetectorCompletion, InstanceDataset):
    """An :class:`InstanceDataset` completed and / or named by a detector (see the module).

    With ``name``, each refined map gets a class sidecar next to it
    (:mod:`samrefiner.io.instance_classes`, written atomically as the map is): each
    coarse id's best matching class (None when no detection matches it) with the
    detection's score and box IoU, and each added id's detected class.

    Args:
        images_dir, labels_dir, output_dir: as :class:`InstanceDataset`.
        detector: the detector and its thresholds.
        classes: the names to detect (instance maps have none of their own).
        complete: add missed detections and flag unsupported objects.
        name: name each coarse id after its best matching detection.
        matching: when a detection and a coarse object match.
        options: :class:`InstanceDataset`'s keyword options.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        labels_dir: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        detector: DetectorSpec,
        classes: ClassList,
        complete: bool = True,
        name: bool = False,
        matching: MatchSettings | None = None,
        **options: Any,
    ) -> None:
        super().__init__(images_dir, labels_dir, output_dir, **options)
        self._start_completion(detector, classes, complete, name, matching)

    def load(self, key: str) -> Job:
        job = super().load(key)
        if job.image is None:
            return job
        found, matching = self._detect_and_mark(job)
        if not self.complete:
            return job
        label_map = job.payload["label_map"]
        free = [
            v
            for v in range(int(label_map.labels.max()) + 1, _id_limit(label_map))
            if v != self.ignore
        ]
        missed = np.flatnonzero(matching.missed)
        if len(missed) > len(free):
            log.warning(
                "%s: %d missed objects found but the map has ids for %d more: the "
                "lowest-scored are not added",
                key,
                len(missed),
                len(free),
            )
            missed = missed[: len(free)]
        if len(missed) == 0:
            return job
        added = _detections_at(found, missed)
        extras = detection_extras(added, self.classes)
        new_ids = free[: len(added)]
        for extra in extras:
            extra["added"] = True
        payload = {**job.payload, "values": [*job.payload["values"], *new_ids]}
        return _job_with_added(job, added, extras, new_ids, payload)

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        """Write the map (:class:`InstanceDataset`), then, with ``name`` and an image the
        detector saw, its class sidecar."""
        record = super().save(job, result)
        if self.naming and job.image is not None:
            rel = self._files[job.key]
            entries = []
            for value, extra in zip(job.ids, job.extras, strict=True):
                if "named" in extra:
                    named = extra["named"]
                    entries.append(
                        InstanceClass(int(value), named["class"], named["score"], named["box_iou"])
                    )
                elif extra.get("added") and result is not None:  # painted only when refined
                    found = extra["detector"]
                    entries.append(
                        InstanceClass(int(value), found["class"], found["score"], None, True)
                    )
            InstanceClasses(Path(rel).as_posix(), entries).write(
                classes_path(self.output_dir / rel)
            )
        return record

    def finish(self, records: Iterator[ImageRecord]) -> None:
        """Count the added, unsupported and named objects (the maps are written already)."""
        for record in records:
            for obj in record.objects:
                if obj.extra.get("added"):
                    self.counts.added[obj.extra["detector"]["class"]] += 1
                    continue
                if obj.extra.get("unsupported"):
                    self.counts.unsupported[NO_CLASS] += 1
                if "named" in obj.extra:
                    named = obj.extra["named"]["class"]
                    if named is None:
                        self.counts.unnamed += 1
                    else:
                        self.counts.named[named] += 1
