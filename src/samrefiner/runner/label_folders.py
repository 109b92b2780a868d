"""Folders of label maps (instance ids, semantic classes) as runner datasets.

One key per label-map file (its path under the labels folder without ``.png``), matched
to the image with the same key (see :mod:`samrefiner.io.binary_folder`). The refined map
is written at the same relative path under the output folder, in the input's mode and
palette. A map that cannot be refined at all (no image, unreadable, other size, nothing
to refine) is copied to the output byte for byte.

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

from samrefiner.io.atomic import atomic_write_bytes
from samrefiner.io.binary_folder import file_key, index_images, list_mask_files
from samrefiner.io.images import InputError, read_image
from samrefiner.io.label_maps import (
    LabelMap,
    instance_masks,
    read_label_map,
    values_outside_palette,
    write_label_map,
)
from samrefiner.runner.base import Job
from samrefiner.runner.records import ImageRecord, ObjectRecord, passthrough
from samrefiner.runner.status import (
    AMBIGUOUS_IMAGE,
    IMAGE_MISSING,
    IMAGE_UNREADABLE,
    MASK_UNREADABLE,
    SIZE_MISMATCH,
    VALUE_OUTSIDE_PALETTE,
)
from samrefiner.split_merge import DEFAULT_MIN_AREA, merge_back, split_label_map
from samrefiner.types import RefineResult

log = logging.getLogger("samrefiner.runner")


def copy_unchanged(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` byte for byte, atomically; an unreadable ``src`` is logged."""
    try:
        data = src.read_bytes()
    except OSError as exc:
        log.warning("%s: cannot be read, so it cannot be copied to %s: %s", src, dst, exc)
        return
    atomic_write_bytes(dst, data)


def find_image(
    index: dict[str, list[Path]], key: str, what: Path
) -> tuple[np.ndarray | None, str | None, str]:
    """Read the image of ``key``: ``(image, status, message)``; ``what`` names the mask."""
    paths = index.get(key, [])
    if not paths:
        return None, IMAGE_MISSING, f"{what}: no image named {key}.* in the images folder"
    if len(paths) > 1:
        names = ", ".join(p.name for p in paths)
        return None, AMBIGUOUS_IMAGE, f"{what}: several images share its name: {names}"
    try:
        return read_image(paths[0]), None, ""
    except InputError as exc:
        return None, IMAGE_UNREADABLE, str(exc)


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
    ) -> None:
        self.labels_dir = Path(labels_dir)
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
        self, label_map: LabelMap, where: Path
    ) -> tuple[list[Any], np.ndarray, list[ObjectRecord], list[int]]:
        """The objects of a map: ``(ids, N x H x W masks, pass-through records, values)``.

        ``values[k]`` is the label painted for ``masks[k]``; each pass-through record
        carries ``extra["value"]``, the label whose pixels are kept as they are.
        """

    def load(self, key: str) -> Job:
        rel = self._files[key]
        src = self.labels_dir / rel
        empty = np.zeros((0, 1, 1), dtype=bool)
        try:
            label_map = read_label_map(src)
        except InputError as exc:
            return Job(key, None, empty, image_status=MASK_UNREADABLE, message=str(exc))
        ids, masks, skipped, values = self._objects(label_map, src)
        payload = {"label_map": label_map, "values": values}
        image, status, message = find_image(self._images, key, src)
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
                np.zeros((0, *label_map.shape), dtype=bool),
                passthrough=skipped + [passthrough(i, status, message) for i in ids],
                payload=payload,
                image_status=status,
                message=message,
            )
        return Job(key, image, masks, ids, passthrough=skipped, payload=payload)

    def save(self, job: Job, result: RefineResult | None) -> ImageRecord:
        rel = self._files[job.key]
        out = self.output_dir / rel
        objects = job.records(result)
        if result is None:
            copy_unchanged(self.labels_dir / rel, out)
        else:
            label_map: LabelMap = job.payload["label_map"]
            keep = np.zeros(label_map.shape, dtype=bool)
            for obj in job.passthrough:
                keep |= label_map.labels == obj.extra["value"]
            labels = merge_back(
                label_map.labels,
                job.payload["values"],
                result.masks,
                result.scores,
                ignore=self.ignore,
                refine_ignore=self.refine_ignore,
                keep=keep,
            )
            write_label_map(out, label_map.with_labels(labels))
        return job.image_record(result, objects)

    def finish(self, records: Any) -> None:  # noqa: B027 - deliberately nothing to do
        """Nothing to do: every output was written as its image finished."""


class InstanceDataset(_LabelFolderDataset):
    """Instance-id maps (DAVIS, VOC SegmentationObject): one object per id."""

    name = "instances"

    def _objects(
        self, label_map: LabelMap, where: Path
    ) -> tuple[list[Any], np.ndarray, list[ObjectRecord], list[int]]:
        ids, masks = instance_masks(label_map.labels, ignore=self.ignore)
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
        keep = [k for k, v in enumerate(ids) if v not in outside]
        kept_ids = [ids[k] for k in keep]
        return kept_ids, masks[keep], skipped, kept_ids


class SemanticDataset(_LabelFolderDataset):
    """Semantic class maps (VOC SegmentationClass), refined with split-then-merge."""

    name = "semantic"

    def __init__(self, *args: Any, min_area: int = DEFAULT_MIN_AREA, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        self.min_area = min_area

    def _objects(
        self, label_map: LabelMap, where: Path
    ) -> tuple[list[Any], np.ndarray, list[ObjectRecord], list[int]]:
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
        split = split_label_map(
            labels,
            ignore=self.ignore,
            min_area=self.min_area,
            classes=[c for c in classes if c not in outside],
        )
        ids = [f"{c}-{k}" for c, k in zip(split.class_ids, split.region_numbers(), strict=True)]
        return ids, split.masks, skipped, split.class_ids
