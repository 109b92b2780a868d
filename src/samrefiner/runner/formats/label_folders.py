"""Folders of label maps (instance ids, semantic classes) as runner datasets.

One key per label-map file (its path under the labels folder without ``.png``), matched
to the image with the same key (see :mod:`samrefiner.io.binary_folder`). The refined map
is written at the same relative path under the output folder, in the input's mode and
palette. A map that cannot be refined at all (no image, unreadable, other size, nothing
to refine) is copied to the output byte for byte. The input folders may be URIs that
fsspec reads (:mod:`samrefiner.io.uri`); the output folder is a local path.

* **instances**: each id (but 0 and the ignore value) is one object; refined objects are
  painted back with :func:`samrefiner.split_merge.paint_by_score` (overlaps go to the higher
  predicted IoU, unclaimed pixels become 0).
* **semantic**: each class is split into regions by :func:`samrefiner.split_merge.split_label_map`
  and painted back with :func:`samrefiner.split_merge.merge_back`.

Ids / classes with no colour in the palette are passed through: their pixels keep their
value in the output whatever the refined objects claim.
"""

from __future__ import annotations

import abc
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from samrefiner.crops import MaskCrops
from samrefiner.io.atomic import atomic_write_bytes
from samrefiner.io.binary_folder import file_key, index_images, list_mask_files
from samrefiner.io.errors import InputError
from samrefiner.io.images import read_image
from samrefiner.io.label_maps import (
    LabelMap,
    label_values,
    read_label_map,
    values_outside_palette,
    write_label_map,
)
from samrefiner.io.paths import check_inside
from samrefiner.io.uri import as_location, is_uri, join_location, read_uri
from samrefiner.runner.dataset import CroppedResult, Job
from samrefiner.runner.journal.records import IOU_DIGITS, ImageRecord, ObjectRecord, passthrough
from samrefiner.runner.journal.status import (
    AMBIGUOUS_IMAGE,
    IMAGE_MISSING,
    MASK_UNREADABLE,
    OCCLUDED,
    OCCLUDED_SHARE,
    SIZE_MISMATCH,
    VALUE_OUTSIDE_PALETTE,
    image_error_status,
)
from samrefiner.split_merge import DEFAULT_MIN_AREA, kept_shares, merge_back, split_label_map

log = logging.getLogger("samrefiner.runner")


def copy_unchanged(src: Path | str, dst: Path) -> None:
    """Copy ``src`` (a path or a URI) to ``dst`` byte for byte, atomically; an unreadable
    ``src`` is logged."""
    try:
        data = read_uri(str(src), "input") if is_uri(src) else Path(src).read_bytes()
    except (OSError, InputError) as exc:
        log.warning("%s: cannot be read, so it cannot be copied to %s: %s", src, dst, exc)
        return
    atomic_write_bytes(dst, data)


def inside_of(images_dir: Path | str, allow_outside_images: bool) -> Path | None:
    """The folder image files must resolve inside (symbolic links followed), or None
    where nothing is checked: ``allow_outside_images``, or a URI (object stores have no
    symbolic links, and a listed name has no ``..``)."""
    return None if allow_outside_images or is_uri(images_dir) else Path(images_dir)


def find_image(
    index: dict[str, list[Path | str]], key: str, what: Path | str, inside: Path | None = None
) -> tuple[np.ndarray | None, str | None, str]:
    """Read the image of ``key``: ``(image, status, message)``; ``what`` names the mask.

    With ``inside`` (the images folder), an image file that resolves outside it (a
    symbolic link) is ``unsafe_path`` and is not opened.
    """
    paths = index.get(key, [])
    if not paths:
        return None, IMAGE_MISSING, f"{what}: no image named {key}.* in the images folder"
    if len(paths) > 1:
        names = ", ".join(Path(p).name for p in paths)
        return None, AMBIGUOUS_IMAGE, f"{what}: several images share its name: {names}"
    try:
        if inside is not None:
            check_inside(inside, paths[0])
        return read_image(paths[0]), None, ""
    except InputError as exc:
        return None, image_error_status(exc), str(exc)


def mark_occluded(refined: list[ObjectRecord], shares: np.ndarray) -> None:
    """Record each refined object's kept share; below :data:`OCCLUDED_SHARE` it is
    ``occluded`` (neighbours took most of it)."""
    for obj, share in zip(refined, shares, strict=True):
        if not obj.refined or np.isnan(share):
            continue
        obj.kept_share = round(float(share), IOU_DIGITS)
        if share < OCCLUDED_SHARE:
            obj.status = OCCLUDED


def instance_crops(labels: np.ndarray, ids: list[int]) -> MaskCrops:
    """The objects ``labels == ids[k]`` of an ``H x W`` id map, as box-local crops
    (found with one pass over the map, never as ``N x H x W``)."""
    crops = MaskCrops((int(labels.shape[0]), int(labels.shape[1])))
    if not ids:
        return crops
    boxes = ndimage.find_objects(labels, max_label=max(ids))
    for value in ids:
        box = boxes[value - 1]
        crops.append_crop(labels[box] == value, (box[0].start, box[1].start))
    return crops


class _LabelFolderDataset(abc.ABC):
    """Shared flow of the instance and semantic datasets (subclasses define the objects)."""

    name = "labels"

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        labels_dir: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        ignore: int | None = 255,
        refine_ignore: bool = False,
        allow_outside_images: bool = False,
    ) -> None:
        self.images_dir = as_location(images_dir)
        self.inside = inside_of(self.images_dir, allow_outside_images)
        self.labels_dir = as_location(labels_dir)
        self.output_dir = Path(output_dir)
        self.ignore = ignore
        self.refine_ignore = refine_ignore
        self._images = index_images(images_dir)
        self._files = {file_key(rel): rel for rel in list_mask_files(self.labels_dir)}

    def keys(self) -> list[str]:
        return list(self._files)

    def orphans(self) -> list[ObjectRecord]:
        return []

    @abc.abstractmethod
    def _objects(
        self, label_map: LabelMap, where: Path | str
    ) -> tuple[list[Any], MaskCrops, list[ObjectRecord], list[int]]:
        """The objects of a map: ``(ids, masks as crops, pass-through records, values)``.

        ``values[k]`` is the label painted for ``masks[k]``; each pass-through record
        carries ``extra["value"]``, the label whose pixels are kept as they are.
        """

    def load(self, key: str) -> Job:
        rel = self._files[key]
        src = join_location(self.labels_dir, rel)
        empty = MaskCrops((1, 1))
        try:
            label_map = read_label_map(src)
        except InputError as exc:
            return Job(key, None, empty, image_status=MASK_UNREADABLE, message=str(exc))
        ids, masks, skipped, values = self._objects(label_map, src)
        payload = {"label_map": label_map, "values": values}
        image, status, message = find_image(self._images, key, src, self.inside)
        if image is not None and image.shape[:2] != label_map.shape:
            status, message = (
                SIZE_MISMATCH,
                (
                    f"{src}: label map is {label_map.shape[1]}x{label_map.shape[0]} but the image "
                    f"is {image.shape[1]}x{image.shape[0]} (W x H)"
                ),
            )
            image = None
        if image is None:
            return Job(
                key,
                None,
                MaskCrops(label_map.shape),
                passthrough=skipped + [passthrough(i, status, message) for i in ids],
                payload=payload,
                image_status=status,
                message=message,
            )
        return Job(key, image, masks, ids, passthrough=skipped, payload=payload)

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        rel = self._files[job.key]
        out = self.output_dir / rel
        objects = job.records(result)
        if result is None:
            copy_unchanged(join_location(self.labels_dir, rel), out)
        else:
            label_map: LabelMap = job.payload["label_map"]
            keep = np.zeros(label_map.shape, dtype=bool)
            for obj in job.passthrough:
                keep |= label_map.labels == obj.extra["value"]
            values = job.payload["values"]
            labels = merge_back(
                label_map.labels,
                values,
                result.masks,
                result.scores,
                ignore=self.ignore,
                refine_ignore=self.refine_ignore,
                keep=keep,
            )
            write_label_map(out, label_map.with_labels(labels))
            mark_occluded(
                objects[len(job.passthrough) :], kept_shares(labels, values, result.masks)
            )
        return job.image_record(result, objects)

    def finish(self, records: Any) -> None:  # noqa: B027 - deliberately nothing to do
        """Nothing to do: every output was written as its image finished."""


class InstanceDataset(_LabelFolderDataset):
    """Instance-id maps (DAVIS, VOC SegmentationObject): one object per id."""

    name = "instances"

    def _objects(
        self, label_map: LabelMap, where: Path | str
    ) -> tuple[list[Any], MaskCrops, list[ObjectRecord], list[int]]:
        ids = label_values(label_map.labels, ignore=self.ignore)
        outside = set(values_outside_palette(label_map))
        skipped = [
            passthrough(
                v,
                VALUE_OUTSIDE_PALETTE,
                f"{where}: id {v} has no colour in the {label_map.palette_size}-colour palette",
                value=v,
            )
            for v in ids
            if v in outside
        ]
        kept_ids = [v for v in ids if v not in outside]
        return kept_ids, instance_crops(label_map.labels, kept_ids), skipped, kept_ids


class SemanticDataset(_LabelFolderDataset):
    """Semantic class maps (VOC SegmentationClass), refined with split-then-merge."""

    name = "semantic"

    def __init__(self, *args: Any, min_area: int = DEFAULT_MIN_AREA, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        self.min_area = min_area

    def _objects(
        self, label_map: LabelMap, where: Path | str
    ) -> tuple[list[Any], MaskCrops, list[ObjectRecord], list[int]]:
        labels = label_map.labels
        outside = set(values_outside_palette(label_map))
        classes = [int(v) for v in np.unique(labels) if v != 0 and v != self.ignore]
        skipped = [
            passthrough(
                f"{c}",
                VALUE_OUTSIDE_PALETTE,
                f"{where}: class {c} has no colour in the {label_map.palette_size}-colour palette",
                value=c,
            )
            for c in classes
            if c in outside
        ]
        ids: list[Any] = []
        values: list[int] = []
        masks = MaskCrops(label_map.shape)
        # One class at a time, cropped at once: never all regions as full frames.
        for c in classes:
            if c in outside:
                continue
            split = split_label_map(labels, ignore=self.ignore, min_area=self.min_area, classes=[c])
            ids += [f"{c}-{k}" for k in split.region_numbers()]
            values += split.class_ids
            for mask in split.masks:
                masks.append(mask)
            del split
        return ids, masks, skipped, values
