"""Labelling a folder of images from class names: a runner dataset.

One key per image of the folder. :meth:`LabelDataset.load` reads the image and runs the
detector (loaded once per process from its :class:`~samrefiner.detectors.DetectorSpec`)
with the class names; each detection becomes an object refined through the box path, or
from its own mask when the detector gives masks (SAM 3). When the run completes the
output COCO file is assembled from the journal: one image entry per readable image, one
category per class, one annotation per detection (``score`` = the detector's score, the
refined mask as compressed RLE, and a ``samrefiner`` entry with the refinement's status
and predicted IoU and the detection's ``detector`` score, box and class).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.detectors.base import Detections
from samrefiner.detectors.loading import DetectorSpec, LoadedDetector
from samrefiner.io.atomic import atomic_write_json
from samrefiner.io.binary_folder import index_images
from samrefiner.io.classes import ClassList
from samrefiner.io.coco import segmentation_fields
from samrefiner.io.images import read_image
from samrefiner.io.masks import box_masks
from samrefiner.io.uri import as_location
from samrefiner.runner.dataset import CroppedResult, Job
from samrefiner.runner.formats.label_folders import find_image, inside_of
from samrefiner.runner.journal.records import ImageRecord, ObjectRecord
from samrefiner.runner.journal.status import is_bad_input

#: Digits kept for detector scores and boxes in records and outputs.
DETECTION_DIGITS = 6


def coco_box(xyxy: np.ndarray) -> list[float]:
    """An inclusive-pixel XYXY box as COCO ``[x, y, width, height]``, rounded."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [round(v, DETECTION_DIGITS) for v in (x1, y1, x2 - x1 + 1, y2 - y1 + 1)]


def detection_extras(found: Detections, classes: ClassList) -> list[dict[str, Any]]:
    """Per detection, what its record keeps: ``category_id`` and the ``detector`` entry
    (``score``, ``box`` as COCO XYWH, ``class``)."""
    return [
        {
            "category_id": classes.ids[int(label)],
            "detector": {
                "score": round(float(score), DETECTION_DIGITS),
                "box": coco_box(box),
                "class": classes.names[int(label)],
            },
        }
        for box, score, label in zip(found.boxes, found.scores, found.labels, strict=True)
    ]


def detection_job_parts(
    found: Detections, shape: tuple[int, int]
) -> tuple[MaskCrops, np.ndarray | None]:
    """The coarse masks of ``found`` and the runner's boxes: with detector masks, those
    masks and no boxes (refined from the mask); else the filled boxes and the boxes
    (refined through the box path)."""
    if found.masks is not None:
        return MaskCrops.from_masks(found.masks, shape), None
    return MaskCrops.from_masks(box_masks(found.boxes, shape), shape), found.boxes


class LabelDataset:
    """Runner dataset: a folder of images, labelled with class names by a detector.

    Args:
        images_dir: the images (a path, or a URI that fsspec reads).
        output: the COCO JSON file to write.
        classes: the class names (and their category ids).
        detector: the detector and its thresholds.
        allow_outside_images: read image files that resolve outside ``images_dir``.
    """

    name = "label"

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        output: str | os.PathLike[str],
        classes: ClassList,
        detector: DetectorSpec,
        *,
        allow_outside_images: bool = False,
    ) -> None:
        self.images_dir = as_location(images_dir)
        self.inside = inside_of(self.images_dir, allow_outside_images)
        self.output = Path(output)
        self.classes = classes
        self.detector = LoadedDetector(detector)
        self._images = dict(sorted(index_images(images_dir).items()))

    def keys(self) -> list[str]:
        return list(self._images)

    def orphans(self) -> list[ObjectRecord]:
        return []

    def file_name(self, key: str) -> str:
        """The image's COCO ``file_name``: its path under the images folder."""
        return key + PurePath(str(self._images[key][0])).suffix

    def load(self, key: str) -> Job:
        image, status, message = find_image(self._images, key, key, self.inside)
        if image is None:
            return Job(key, None, np.zeros((0, 1, 1), bool), image_status=status, message=message)
        found = self.detector.detect(image, list(self.classes.names))
        masks, boxes = detection_job_parts(found, image.shape[:2])
        extras = detection_extras(found, self.classes)
        h, w = image.shape[:2]
        for extra in extras:
            extra["size"] = [h, w]
        ids = list(range(len(found)))
        return Job(key, image, masks, ids, extras=extras, boxes=boxes)

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        objects = job.records(result)
        for k, obj in enumerate(objects):
            mask = result.masks.full(k) if result is not None and obj.refined else None
            obj.extra["fields"] = segmentation_fields(job.masks.full(k) if mask is None else mask)
        return job.image_record(result, objects)

    def finish(self, records: Iterator[ImageRecord]) -> None:
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_id, record in enumerate(records, start=1):
            if record.image_status is not None and is_bad_input(record.image_status):
                continue
            if record.objects:
                h, w = record.objects[0].extra["size"]
            else:  # no detection: the size from the file itself
                h, w = read_image(self._images[record.key][0]).shape[:2]
            images.append(
                {"id": image_id, "file_name": self.file_name(record.key), "width": w, "height": h}
            )
            for obj in record.objects:
                annotations.append(labelled_annotation(len(annotations) + 1, image_id, obj))
        atomic_write_json(
            self.output,
            {"images": images, "annotations": annotations, "categories": self.classes.categories()},
        )


def labelled_annotation(ann_id: int, image_id: int, obj: ObjectRecord) -> dict[str, Any]:
    """The COCO annotation of a detected object's record (see :class:`LabelDataset`)."""
    detector = obj.extra["detector"]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.extra["category_id"],
        **obj.extra["fields"],
        "iscrowd": 0,
        "score": detector["score"],
        "samrefiner": {**obj.entry(), "detector": detector},
    }
