"""Ground-truth and coarse mask PNGs as ``eval``, ``make-coarse`` and ``bench`` see them.

Reading and writing PNGs is :mod:`samrefiner.io.label_maps`; this module only decides
what the values mean. A mask PNG is one of:

* **binary**: 8-bit grey (or 1-bit) holding only {0, 255} or only {0, 1}: one object,
  id 1;
* **instance ids**: palette, 16-bit grey, or 8-bit grey with other values: each value
  other than 0 (background) and ``ignore`` (255 by default, VOC's boundary band)
  is one object.

A *dataset folder* holds ``images/`` and ``masks/`` side by side, an image and its mask
at the same key (relative path without extension, :mod:`samrefiner.io.binary_folder`);
a folder whose sub-folders are dataset folders (such as ``../shared/data``) is read as
their union, keys then being ``subfolder/key``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samrefiner.io import InputError
from samrefiner.io.binary_folder import file_key, index_images, list_mask_files
from samrefiner.io.label_maps import LabelMap, instance_masks, read_label_map, write_label_map

DEFAULT_IGNORE = 255


@dataclass
class MaskFile:
    """A decoded mask PNG.

    Attributes:
        stored: The label map as read (mode and palette are kept when writing back).
        binary_value: Foreground value of a binary mask (255 or 1); None for id maps.
    """

    stored: LabelMap
    binary_value: int | None = None

    def __post_init__(self) -> None:
        if self.binary_value not in (None, 1, 255):
            raise ValueError(f"binary_value must be None, 1 or 255, got {self.binary_value!r}")

    @property
    def kind(self) -> str:
        """``"binary"`` or ``"ids"``."""
        return "ids" if self.binary_value is None else "binary"

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.stored.shape

    @property
    def ids(self) -> np.ndarray:
        """``H x W`` int64 object ids (a binary mask's object is 1)."""
        labels = self.stored.labels.astype(np.int64)
        return labels if self.binary_value is None else (labels > 0).astype(np.int64)

    def objects(self, ignore: int | None = DEFAULT_IGNORE) -> tuple[list[int], np.ndarray]:
        """Object ids (ascending) and their ``N x H x W`` bool masks."""
        binary = self.binary_value is not None
        return instance_masks(self.ids, ignore=None if binary else ignore)

    def ignore_mask(self, ignore: int | None = DEFAULT_IGNORE) -> np.ndarray:
        """``H x W`` bool: pixels no metric counts (none for binary masks)."""
        if self.binary_value is not None or ignore is None:
            return np.zeros(self.shape, dtype=bool)
        return self.stored.labels == ignore

    def with_ids(self, ids: np.ndarray) -> LabelMap:
        """A label map of ``ids`` (``H x W``) stored like this file, ready to write."""
        ids = np.asarray(ids)
        if self.binary_value is not None:
            ids = (ids > 0).astype(np.int64) * self.binary_value
        return self.stored.with_labels(ids)


def read_mask_file(path: str | os.PathLike[str]) -> MaskFile:
    """Read a binary or instance-id mask PNG (see the module docstring)."""
    stored = read_label_map(path)
    if stored.mode == "L":
        values = set(np.unique(stored.labels).tolist())
        if values <= {0, 1}:
            return MaskFile(stored, binary_value=1)
        if values <= {0, 255}:
            return MaskFile(stored, binary_value=255)
    return MaskFile(stored)


def write_mask_file(path: str | os.PathLike[str], ids: np.ndarray, like: MaskFile) -> None:
    """Write ``ids`` (``H x W``) as a PNG of the same kind, mode and palette as ``like``."""
    write_label_map(path, like.with_ids(ids))


def list_masks(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Mask PNGs under ``folder`` by key. Raises InputError when it has none."""
    root = Path(folder)
    found = {file_key(rel): root / rel for rel in list_mask_files(root)}
    if not found:
        raise InputError(f"{root}: no .png masks in this folder")
    return found


@dataclass(frozen=True)
class Item:
    """One image of a dataset folder: ``key`` (unique name), image and mask paths."""

    key: str
    image: Path
    mask: Path


def _pairs(folder: Path, prefix: str) -> list[Item]:
    images = index_images(folder / "images")
    masks = {file_key(rel): folder / "masks" / rel for rel in list_mask_files(folder / "masks")}
    return [
        Item(prefix + key, Path(images[key][0]), mask)
        for key, mask in sorted(masks.items())
        if key in images
    ]


def find_items(root: str | os.PathLike[str]) -> list[Item]:
    """Image / ground-truth pairs of a dataset folder or of a folder of dataset folders.

    Raises:
        InputError: naming ``root`` when it holds no pair.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: dataset folder not found")
    if (base / "images").is_dir() and (base / "masks").is_dir():
        items = _pairs(base, "")
    else:
        items = []
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            if (sub / "images").is_dir() and (sub / "masks").is_dir():
                items.extend(_pairs(sub, sub.name + "/"))
    if not items:
        raise InputError(
            f"{base}: no image / mask pairs (expected images/ and masks/ with matching "
            "file names, here or in its sub-folders)"
        )
    return items
