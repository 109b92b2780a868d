"""Folders of per-object binary masks as a runner dataset.

Mask files are matched to images by the rules of :mod:`samrefiner.io.binary_folder`; one
key per image with masks, plus one per mask file that matches no image (passed through
with ``image_missing``). Refined masks are written as 0/255 PNGs at the same relative
path under the output folder; every mask that is not refined is copied there unchanged.
The input folders may be URIs that fsspec reads (:mod:`samrefiner.io.uri`); the output
folder is a local path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.io.binary_folder import group_masks, index_images, list_mask_files
from samrefiner.io.errors import InputError
from samrefiner.io.images import read_mask, write_mask_png
from samrefiner.io.uri import as_location, join_location
from samrefiner.runner.dataset import CroppedResult, Job
from samrefiner.runner.formats.label_folders import copy_unchanged, find_image, inside_of
from samrefiner.runner.journal.records import ImageRecord, ObjectRecord, passthrough
from samrefiner.runner.journal.status import EMPTY, IMAGE_MISSING, MASK_UNREADABLE, SIZE_MISMATCH

#: Key prefix of a mask file that matches no image.
_UNMATCHED = "unmatched:"


class MaskFolderDataset:
    """Runner dataset over an images folder and a binary-mask folder.

    Args:
        images_dir: the images (a path, or a URI that fsspec reads).
        masks_dir: the coarse masks (0/255 or 0/1 PNGs, one per object; a path or a URI).
        output_dir: where refined masks are written (same relative paths).
        allow_outside_images: read image files that resolve outside ``images_dir``
            (symbolic links; only local folders have them); by default they are
            ``unsafe_path``.
    """

    name = "masks"

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        masks_dir: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        allow_outside_images: bool = False,
    ) -> None:
        self.inside = inside_of(as_location(images_dir), allow_outside_images)
        self.masks_dir = as_location(masks_dir)
        self.output_dir = Path(output_dir)
        self._images = index_images(images_dir)
        grouped = group_masks(list_mask_files(self.masks_dir), self._images)
        self._files: dict[str, list[Path]] = dict(sorted(grouped.by_image.items()))
        for rel in grouped.unmatched:
            self._files[_UNMATCHED + rel.as_posix()] = [rel]

    def keys(self) -> list[str]:
        return list(self._files)

    def orphans(self) -> list[ObjectRecord]:
        return []

    def load(self, key: str) -> Job:
        files = self._files[key]
        names = [rel.as_posix() for rel in files]
        if key.startswith(_UNMATCHED):
            message = f"{join_location(self.masks_dir, files[0])}: no image matches this mask file"
            return Job(
                key,
                None,
                np.zeros((0, 1, 1), dtype=bool),
                passthrough=[passthrough(names[0], IMAGE_MISSING, message, file=names[0])],
                image_status=IMAGE_MISSING,
                message=message,
            )
        image, status, message = find_image(
            self._images, key, join_location(self.masks_dir, files[0]), self.inside
        )
        if image is None:
            return Job(
                key,
                None,
                np.zeros((0, 1, 1), dtype=bool),
                passthrough=[passthrough(n, status, message, file=n) for n in names],
                image_status=status,
                message=message,
            )
        masks = MaskCrops(image.shape[:2])  # one full-frame mask at a time, kept as its crop
        ids: list[str] = []
        skipped: list[ObjectRecord] = []
        for rel, name in zip(files, names, strict=True):
            path = join_location(self.masks_dir, rel)
            try:
                mask = read_mask(path)
            except InputError as exc:
                skipped.append(passthrough(name, MASK_UNREADABLE, str(exc), file=name))
                continue
            if mask.shape != image.shape[:2]:
                skipped.append(
                    passthrough(
                        name,
                        SIZE_MISMATCH,
                        (
                            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                            f"{image.shape[1]}x{image.shape[0]} (W x H)"
                        ),
                        file=name,
                    )
                )
            elif not mask.any():
                skipped.append(passthrough(name, EMPTY, f"{path}: empty mask", file=name))
            else:
                masks.append(mask)
                ids.append(name)
        extras: list[dict[str, Any]] = [{"file": n} for n in ids]
        return Job(key, image, masks, ids, extras=extras, passthrough=skipped)

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        objects = job.records(result)
        for obj in objects:
            rel = obj.extra["file"]
            if obj.refined:
                assert result is not None
                write_mask_png(self.output_dir / rel, result.masks.full(job.ids.index(obj.id)))
            else:
                copy_unchanged(join_location(self.masks_dir, rel), self.output_dir / rel)
        objects.sort(key=lambda o: o.extra["file"])
        return job.image_record(result, objects)

    def finish(self, records: Iterator[ImageRecord]) -> None:
        """Nothing to do: every output was written as its image finished."""
