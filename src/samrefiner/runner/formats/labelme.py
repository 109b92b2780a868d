"""Folders of labelme JSON files as a runner dataset (:mod:`samrefiner.io.labelme`).

One key per JSON file under the folder (its relative path). Each object -- a polygon,
rectangle, circle or mask shape, or the shapes sharing a label and a group_id -- is
refined (a lone rectangle from its box, ``Refiner.refine(..., boxes=...)``) and written
back in the object's place with the first shape's fields (label, group_id, flags,
description, any other key):

* as a ``polygon`` when the refined mask is one part without holes;
* as several polygons sharing the group_id when it has several parts and a group_id;
* as a ``mask`` shape (a base64 PNG) where a polygon cannot hold it: holes, several
  parts without a group_id, or an object that came as a mask shape.

Every other shape (points, lines, line strips) and field is kept as it is, ``imageData``
too (kept or absent as the input had it). An object that is not refined keeps its shapes
unchanged; a file whose image cannot be used (or that is no labelme file) is copied byte
for byte. The image file named by ``imagePath`` is hard-linked (else copied) to the same
place beside the output JSON when it lies inside the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.io.atomic import atomic_write_bytes
from samrefiner.io.coco import SegmentationError
from samrefiner.io.errors import InputError
from samrefiner.io.images import read_image, read_image_bytes
from samrefiner.io.labelme import (
    LabelmeFile,
    mask_shape,
    polygon_shape,
    read_labelme,
    shape_box,
    shape_mask,
)
from samrefiner.io.masks import as_box_array
from samrefiner.io.paths import UnsafePathError, check_inside
from samrefiner.io.polygons import mask_to_polygons_or_largest
from samrefiner.runner.dataset import CroppedResult, Job, JobObjects
from samrefiner.runner.formats.label_folders import copy_unchanged
from samrefiner.runner.formats.yolo import place_file
from samrefiner.runner.journal.records import ImageRecord, ObjectRecord, passthrough
from samrefiner.runner.journal.status import (
    EMPTY,
    IMAGE_MISSING,
    INVALID_BBOX,
    MASK_UNREADABLE,
    SIZE_MISMATCH,
    WARNING_CLIPPED,
    image_error_status,
)


class _MissingImage(InputError):
    """The image file an ``imagePath`` names does not exist (and there is no imageData)."""


class LabelmeDataset:
    """Runner dataset over a folder of labelme JSON files.

    Args:
        folder: the folder (JSON files anywhere below it).
        output_dir: where the refined JSON files (and their images) are written.
        tolerance: Douglas-Peucker tolerance of the written polygons, pixels.
        min_area: parts and holes of fewer pixels are left out (the largest part is kept).
        link_images: hard-link the images (copy where that fails); False copies them.
        allow_outside_images: read an ``imagePath`` that leads outside ``folder``
            (absolute, ``..``, symbolic links; it is relative to the JSON file's
            folder and may use ``..`` inside ``folder``); by default it is ``unsafe_path``.
    """

    name = "labelme"

    def __init__(
        self,
        folder: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        tolerance: float = 0.0,
        min_area: float = 0.0,
        link_images: bool = True,
        allow_outside_images: bool = False,
    ) -> None:
        if tolerance < 0 or min_area < 0:
            raise ValueError(f"tolerance and min_area must be >= 0, got {tolerance}, {min_area}")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: no such folder")
        self.output_dir = Path(output_dir)
        self.tolerance = tolerance
        self.min_area = min_area
        self.link_images = link_images
        self.allow_outside_images = allow_outside_images
        self._files = sorted(
            p.relative_to(self.folder).as_posix()
            for p in self.folder.rglob("*.json")
            if p.is_file()
        )

    def keys(self) -> list[str]:
        return list(self._files)

    def orphans(self) -> list[ObjectRecord]:
        return []

    def _image(self, key: str, file: LabelmeFile) -> tuple[np.ndarray, Path | None]:
        """The image (``imageData`` first, as labelme reads it) and the image file to
        put beside the output, if it lies inside the folder; raises InputError."""
        where = self.folder / key
        path = Path(os.path.normpath(os.path.abspath(where.parent / file.image_path)))
        unsafe: UnsafePathError | None = None
        if not self.allow_outside_images:
            try:
                check_inside(self.folder, path)
            except UnsafePathError as exc:
                unsafe = exc
        if file.image_data is not None:
            image = read_image_bytes(file.image_data, f"{where}: imageData")
        elif unsafe is not None:
            raise unsafe
        elif not path.is_file():
            raise _MissingImage(f"{path}: image file not found (imagePath of {where})")
        else:
            image = read_image(path)
        inside = path.is_relative_to(os.path.abspath(self.folder))
        return image, path if inside and unsafe is None and path.is_file() else None

    def load(self, key: str) -> Job:
        empty = MaskCrops((1, 1))
        where = self.folder / key
        try:
            file = read_labelme(where)
        except InputError as exc:
            return Job(
                key,
                None,
                empty,
                passthrough=[passthrough(key, MASK_UNREADABLE, str(exc), shapes=[])],
                payload={"image": None},
                image_status=MASK_UNREADABLE,
                message=str(exc),
            )
        groups = file.groups()
        try:
            image, image_file = self._image(key, file)
        except InputError as exc:
            status = IMAGE_MISSING if isinstance(exc, _MissingImage) else image_error_status(exc)
            return Job(
                key,
                None,
                empty,
                passthrough=[passthrough(g[0], status, str(exc), shapes=g) for g in groups],
                payload={"image": None},
                image_status=status,
                message=str(exc),
            )
        payload = {"image": None if image_file is None else str(image_file)}
        h, w = image.shape[:2]
        if (file.height, file.width) != (None, None) and (file.height, file.width) != (h, w):
            message = (
                f"{where}: image is {w}x{h} (W x H) but imageWidth x imageHeight say "
                f"{file.width}x{file.height}"
            )
            return Job(
                key,
                None,
                empty,
                passthrough=[passthrough(g[0], SIZE_MISMATCH, message, shapes=g) for g in groups],
                payload=payload,
                image_status=SIZE_MISMATCH,
                message=message,
            )
        objects = JobObjects(MaskCrops((h, w)))
        decided: list[ObjectRecord] = []
        for group in groups:
            first = file.shapes[group[0]]
            message = f"{where}: shapes {group}"
            try:
                if len(group) == 1 and first.get("shape_type") == "rectangle":
                    box = as_box_array(shape_box(first), (h, w))
                    objects.add_box(group[0], box, {"shapes": group})
                else:
                    union = np.zeros((h, w), dtype=bool)
                    clipped = False
                    for k in group:
                        mask, outside = shape_mask(file.shapes[k], h, w)
                        union |= mask
                        clipped |= outside
                    if not union.any():
                        decided.append(
                            passthrough(group[0], EMPTY, f"{message}: empty", shapes=group)
                        )
                        continue
                    warnings = [WARNING_CLIPPED] if clipped else []
                    objects.add_mask(group[0], union, warnings, {"shapes": group})
            except SegmentationError as exc:
                decided.append(passthrough(group[0], exc.status, f"{message}: {exc}", shapes=group))
                continue
            except ValueError as exc:  # a rectangle outside the image
                decided.append(
                    passthrough(group[0], INVALID_BBOX, f"{message}: {exc}", shapes=group)
                )
                continue
        return objects.job(key, image, decided, payload)

    def _shapes(self, file: LabelmeFile, group: list[int], mask: np.ndarray) -> list[dict]:
        """The shapes a refined object is written as (see the module's rules)."""
        base = file.shapes[group[0]]
        polygons = mask_to_polygons_or_largest(
            mask, tolerance=self.tolerance, min_area=self.min_area
        )
        as_mask = (
            polygons.has_holes
            or (len(group) == 1 and base.get("shape_type") == "mask")
            or (len(polygons.exteriors) > 1 and base.get("group_id") is None)
        )
        if as_mask:
            return [mask_shape(base, polygons.to_mask())]
        return [polygon_shape(base, ring) for ring in polygons.exteriors]

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        where = self.folder / job.key
        out = self.output_dir / job.key
        if job.payload and job.payload.get("image"):
            image = Path(job.payload["image"])
            rel = image.relative_to(os.path.abspath(self.folder))
            place_file(image, self.output_dir / rel, self.link_images)
        objects = job.records(result)
        if result is None:
            copy_unchanged(where, out)
        else:
            file = read_labelme(where)
            replaced: dict[int, list[dict]] = {}
            dropped: set[int] = set()
            for k, obj in enumerate(objects[len(job.passthrough) :]):
                if obj.refined:
                    group = obj.extra["shapes"]
                    replaced[group[0]] = self._shapes(file, group, result.masks.full(k))
                    dropped.update(group[1:])
            shapes: list[Any] = []
            for k, shape in enumerate(file.shapes):
                if k in replaced:
                    shapes.extend(replaced[k])
                elif k not in dropped:
                    shapes.append(shape)
            written = dict(file.raw)
            written["shapes"] = shapes
            text = json.dumps(written, ensure_ascii=False, indent=2)
            atomic_write_bytes(out, text.encode("utf-8"))
        objects.sort(key=lambda o: o.extra["shapes"][0] if o.extra["shapes"] else -1)
        return job.image_record(result, objects)

    def finish(self, records: Iterator[ImageRecord]) -> None:
        """Nothing to do: every output was written as its file finished."""
