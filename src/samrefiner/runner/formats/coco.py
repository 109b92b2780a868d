"""COCO files as a runner dataset: one key per image that has annotations.

Outputs: the input file with each refined annotation's ``segmentation`` (compressed
RLE, or polygons: :class:`~samrefiner.io.coco.SegmentationOutput`), ``area`` and ``bbox``
replaced, every other field kept, and a ``samrefiner`` entry
added to *every* annotation (``status``; for refined ones ``predicted_iou``,
``coarse_iou`` and ``iterations``; ``warnings`` and ``message`` when there are any).
Per-image results go to the run's journal as each image finishes; the output file is
assembled from them, in the input's order, when the run completes.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.io.coco import (
    ANNOTATION_SCHEMA,
    CocoFile,
    SegmentationError,
    SegmentationOutput,
    bbox_xyxy,
    decode_segmentation,
    has_segmentation,
    is_number,
    schema_problem,
    segmentation_fields,
    write_coco,
)
from samrefiner.io.errors import InputError
from samrefiner.io.images import read_image
from samrefiner.io.masks import as_box_array, box_masks
from samrefiner.io.paths import safe_join
from samrefiner.io.uri import as_location, is_uri, uri_is_file
from samrefiner.runner.dataset import CroppedResult, Job
from samrefiner.runner.journal.records import ImageRecord, ObjectRecord, passthrough
from samrefiner.runner.journal.status import (
    BELOW_MIN_SCORE,
    DUPLICATE_ID,
    EMPTY,
    IMAGE_MISSING,
    INVALID_BBOX,
    INVALID_RECORD,
    ISCROWD,
    SIZE_MISMATCH,
    UNKNOWN_IMAGE,
    WARNING_HOLES_FILLED,
    image_error_status,
)

log = logging.getLogger("samrefiner.runner")


def _hashable(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


class CocoDataset:
    """Runner dataset over a :class:`~samrefiner.io.coco.CocoFile`.

    Args:
        coco: the loaded file (its annotation dicts are updated by :meth:`finish`).
        images_dir: folder the images' ``file_name`` are relative to (a path, or a URI
            that fsspec reads, see :mod:`samrefiner.io.uri`).
        output: the output JSON path.
        min_score: annotations with a ``score`` below it pass through (None: all refined).
        refine_crowd: refine ``iscrowd`` annotations too (they pass through by default).
        from_boxes: refine every annotation that has a ``bbox`` from its box, even where
            it has a segmentation. Without it only annotations with no (or an empty)
            segmentation are refined from their box.
        allow_outside_images: let ``file_name`` lead outside ``images_dir`` (absolute,
            ``..``, symbolic links); by default such images are ``unsafe_path`` and are
            not opened.
        segmentation: how refined masks are written (None: compressed RLE).
    """

    name = "coco"

    def __init__(
        self,
        coco: CocoFile,
        images_dir: str | os.PathLike[str],
        output: str | os.PathLike[str],
        *,
        min_score: float | None = None,
        refine_crowd: bool = False,
        from_boxes: bool = False,
        allow_outside_images: bool = False,
        segmentation: SegmentationOutput | None = None,
    ) -> None:
        self.coco = coco
        self.segmentation = segmentation or SegmentationOutput()
        self.from_boxes = from_boxes
        self.images_dir = as_location(images_dir)  # a path or a URI: samrefiner.io.uri
        self.allow_outside_images = allow_outside_images
        self.output = Path(output)
        anns = coco.annotations
        ids = Counter(a["id"] for a in anns if _hashable(a.get("id")))
        unknown_categories: set[Any] = set()
        self._key_to_image: dict[str, Any] = {}
        self._positions: dict[str, list[int]] = {}
        self._decided: dict[int, tuple[str, str]] = {}
        self._orphans: list[ObjectRecord] = []
        by_image: dict[Any, list[int]] = {}
        for pos, ann in enumerate(anns):
            image_id = ann.get("image_id")
            where = f"annotation {ann.get('id')!r:.40} (#{pos})"
            problem = schema_problem(ann, ANNOTATION_SCHEMA, where)
            if problem is not None and not _hashable(image_id):
                self._orphans.append(
                    passthrough(ann.get("id"), problem.status, problem.message, index=pos)
                )
                continue
            if not _hashable(image_id) or image_id not in coco.images:
                self._orphans.append(
                    passthrough(
                        ann.get("id"),
                        UNKNOWN_IMAGE,
                        f"{where}: image_id {image_id!r} is not in the image list",
                        index=pos,
                    )
                )
                continue
            by_image.setdefault(image_id, []).append(pos)
            category = ann.get("category_id")
            if (
                coco.category_ids is not None
                and _hashable(category)
                and category not in coco.category_ids
                and category not in unknown_categories
            ):
                unknown_categories.add(category)
                log.warning(
                    "category_id %r (first in %s) is not in the file's categories; its "
                    "annotations are refined all the same",
                    category,
                    where,
                )
            if problem is not None:
                self._decided[pos] = (problem.status, problem.message)
            elif image_id in coco.invalid_images:
                self._decided[pos] = (INVALID_RECORD, coco.invalid_images[image_id])
            elif _hashable(ann.get("id")) and ids[ann["id"]] > 1:
                self._decided[pos] = (DUPLICATE_ID, f"{where}: id used {ids[ann['id']]} times")
            elif ann.get("iscrowd") and not refine_crowd:
                self._decided[pos] = (ISCROWD, "")
            elif min_score is not None and is_number(ann.get("score")) and ann["score"] < min_score:
                self._decided[pos] = (BELOW_MIN_SCORE, "")
        if coco.duplicate_image_ids:
            log.warning(
                "image ids listed more than once (their first entry is used): %s",
                ", ".join(map(str, coco.duplicate_image_ids[:20])),
            )
        for image_id in coco.images:
            if image_id in by_image:
                key = json.dumps(image_id)
                self._key_to_image[key] = image_id
                self._positions[key] = by_image[image_id]

    def keys(self) -> list[str]:
        return list(self._positions)

    def orphans(self) -> list[ObjectRecord]:
        return list(self._orphans)

    def _image_problem(
        self, entry: dict[str, Any]
    ) -> tuple[np.ndarray | None, tuple[int, int] | None, str | None, str]:
        """Read the image: ``(image, (H, W), status, message)``."""
        try:
            path = safe_join(
                self.images_dir, entry["file_name"], allow_outside=self.allow_outside_images
            )
        except InputError as exc:
            return None, None, image_error_status(exc), str(exc)
        try:
            found = uri_is_file(path) if is_uri(path) else path.is_file()
        except InputError as exc:
            return None, None, image_error_status(exc), str(exc)
        if not found:
            return None, None, IMAGE_MISSING, f"{path}: image file not found"
        try:
            image = read_image(path)
        except InputError as exc:
            return None, None, image_error_status(exc), str(exc)
        h, w = image.shape[:2]
        want_h, want_w = entry.get("height"), entry.get("width")
        if is_number(want_h) and is_number(want_w) and (int(want_h), int(want_w)) != (h, w):
            return (
                None,
                (h, w),
                SIZE_MISMATCH,
                (f"{path}: image is {w}x{h} (W x H) but the COCO entry says {want_w}x{want_h}"),
            )
        return image, (h, w), None, ""

    def load(self, key: str) -> Job:
        entry = self.coco.images[self._key_to_image[key]]
        image_id = self._key_to_image[key]
        if image_id in self.coco.invalid_images:  # its annotations are invalid_record too
            image, size, status, message = (
                None,
                None,
                INVALID_RECORD,
                self.coco.invalid_images[image_id],
            )
        else:
            image, size, status, message = self._image_problem(entry)
        where_file = Path(str(entry["file_name"])).name
        decided: list[ObjectRecord] = []
        todo: list[int] = []
        for pos in self._positions[key]:
            ann = self.coco.annotations[pos]
            if pos in self._decided:
                reason, why = self._decided[pos]
                decided.append(passthrough(ann.get("id"), reason, why, index=pos))
            else:
                todo.append(pos)
        if image is None or size is None:
            return Job(
                key,
                None,
                np.zeros((0, 1, 1), dtype=bool),
                passthrough=decided,
                payload=todo,
                image_status=status,
                message=message,
            )
        h, w = size
        masks = MaskCrops((h, w))  # one full-frame mask at a time, kept as its crop
        ids: list[Any] = []
        warnings: list[list[str]] = []
        extras: list[dict[str, Any]] = []
        boxes: list[list[float]] = []
        for pos in todo:
            ann = self.coco.annotations[pos]
            where = f"{where_file}: annotation {ann.get('id')} (#{pos})"
            if self._use_box(ann):
                try:
                    box = as_box_array(bbox_xyxy(ann["bbox"]), (h, w))
                except SegmentationError as exc:
                    decided.append(
                        passthrough(ann.get("id"), exc.status, f"{where}: {exc}", index=pos)
                    )
                    continue
                except ValueError as exc:  # the box lies outside the image
                    decided.append(
                        passthrough(ann.get("id"), INVALID_BBOX, f"{where}: {exc}", index=pos)
                    )
                    continue
                masks.append(box_masks(box, (h, w))[0])
                boxes.append(box[0].tolist())
                ids.append(ann.get("id"))
                warnings.append([])
                extras.append({"index": pos})
                continue
            try:
                mask, warn = decode_segmentation(ann.get("segmentation"), h, w)
            except SegmentationError as exc:
                decided.append(passthrough(ann.get("id"), exc.status, f"{where}: {exc}", index=pos))
                continue
            if not mask.any():
                decided.append(passthrough(ann.get("id"), EMPTY, f"{where}: empty mask", index=pos))
                continue
            masks.append(mask)
            boxes.append([np.nan] * 4)
            ids.append(ann.get("id"))
            warnings.append(warn)
            extras.append({"index": pos})
        any_box = any(not np.isnan(b[0]) for b in boxes)
        return Job(
            key,
            image,
            masks,
            ids,
            warnings,
            extras,
            passthrough=decided,
            boxes=np.array(boxes, dtype=np.float32) if any_box else None,
        )

    def _use_box(self, ann: dict[str, Any]) -> bool:
        """True when ``ann`` is refined from its ``bbox`` (see ``from_boxes``)."""
        if ann.get("bbox") is None:
            return False
        return self.from_boxes or not has_segmentation(ann)

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        if result is None and job.image_status is not None and job.payload:
            # The image was unusable before its segmentations were decoded.
            job.passthrough = job.passthrough + [
                passthrough(
                    self.coco.annotations[pos].get("id"), job.image_status, job.message, index=pos
                )
                for pos in job.payload
            ]
        objects = job.records(result)
        if result is not None:
            for obj, k in zip(objects[len(job.passthrough) :], range(len(result)), strict=True):
                if obj.refined:
                    obj.extra["fields"] = self._fields(obj, result.masks.full(k))
        objects.sort(key=lambda o: o.extra["index"])
        return job.image_record(result, objects)

    def _fields(self, obj: ObjectRecord, mask: np.ndarray) -> dict[str, Any]:
        """The written ``segmentation``, ``area`` and ``bbox`` of refined ``obj``; a
        ``holes_filled`` warning on it where polygons could not hold its holes."""
        if self.segmentation.kind == "rle":  # the default, exactly as before
            return segmentation_fields(mask)
        segm = self.coco.annotations[obj.extra["index"]].get("segmentation")
        fields, filled = self.segmentation.fields(mask, segm)
        if filled:
            obj.warnings.append(WARNING_HOLES_FILLED)
        return fields

    def finish(self, records: Iterator[ImageRecord]) -> None:
        anns = self.coco.annotations
        for record in records:
            for obj in record.objects:
                ann = anns[obj.extra["index"]]
                if obj.refined:
                    ann.update(obj.extra["fields"])
                ann["samrefiner"] = obj.entry()
        for obj in self._orphans:
            anns[obj.extra["index"]]["samrefiner"] = obj.entry()
        write_coco(self.output, self.coco)
