"""Ground-truth and coarse masks on disk, as used by ``eval``, ``make-coarse`` and ``bench``.

Mask PNGs come in two kinds, told apart by their content:

* **binary**: greyscale (or 1-bit) with values {0, 255} or {0, 1}: one object, id 1;
* **instance ids**: palette (``P``) or 8/16-bit greyscale with other values: each
  non-zero value is one object, 0 is background and ``ignore_value`` (255 by default,
  as in VOC) marks pixels no metric counts.

A *dataset folder* holds ``images/`` and ``masks/`` side by side, an image and its mask
sharing a stem (``images/bear_00000.jpg`` <-> ``masks/bear_00000.png``); a folder whose
sub-folders are dataset folders (such as ``../shared/data``) is read as their union,
keys then being ``subfolder/stem``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samrefiner.io import InputError, atomic_write

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_IGNORE = 255


@dataclass
class LabelMap:
    """One mask PNG, decoded.

    Attributes:
        ids: ``H x W`` int64 object ids, 0 = background (a binary mask's object is 1).
        kind: ``"binary"`` or ``"ids"``.
        mode: PIL mode of the file (kept when writing back).
        palette: The file's palette (``P`` mode), else None.
        binary_value: Foreground value of a binary file (255 or 1).
    """

    ids: np.ndarray
    kind: str
    mode: str
    palette: list[int] | None = None
    binary_value: int = 255

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        if self.ids.ndim != 2:
            raise ValueError(f"ids must be H x W, got shape {self.ids.shape}")
        if self.kind not in ("binary", "ids"):
            raise ValueError(f"kind must be 'binary' or 'ids', got {self.kind!r}")

    def objects(self, ignore_value: int | None = DEFAULT_IGNORE) -> tuple[list[int], np.ndarray]:
        """Object ids (ascending) and their ``N x H x W`` bool masks.

        For an id map, ``ignore_value`` is not an object; for a binary map it is unused.
        """
        values = np.unique(self.ids)
        skip = {0} if self.kind == "binary" or ignore_value is None else {0, ignore_value}
        ids = [int(v) for v in values if int(v) not in skip]
        if not ids:
            return [], np.zeros((0, *self.ids.shape), dtype=bool)
        return ids, self.ids[None] == np.asarray(ids)[:, None, None]

    def ignore_mask(self, ignore_value: int | None = DEFAULT_IGNORE) -> np.ndarray:
        """``H x W`` bool: pixels to leave out of every metric (none for binary maps)."""
        if self.kind == "binary" or ignore_value is None:
            return np.zeros(self.ids.shape, dtype=bool)
        return self.ids == ignore_value


def read_label_map(path: str | os.PathLike[str]) -> LabelMap:
    """Read a binary or instance-id mask PNG (see the module docstring)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: mask file not found")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot read mask: {exc}") from exc
    mode = img.mode
    if mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "F"):
        raise InputError(
            f"{path}: mask PNG must be greyscale, 1-bit, palette or 16-bit ids, got mode {mode}"
        )
    arr = np.asarray(img).astype(np.int64)
    if mode == "P":
        raw = img.getpalette()
        return LabelMap(arr, "ids", mode, palette=list(raw) if raw else None)
    if arr.min(initial=0) < 0:
        raise InputError(f"{path}: negative values in a mask")
    values = set(np.unique(arr).tolist())
    if mode == "1" or values <= {0, 1}:
        return LabelMap((arr > 0).astype(np.int64), "binary", mode, binary_value=1)
    if mode == "L" and values <= {0, 255}:
        return LabelMap((arr > 0).astype(np.int64), "binary", mode, binary_value=255)
    return LabelMap(arr, "ids", mode)


def write_label_map(path: str | os.PathLike[str], ids: np.ndarray, like: LabelMap) -> None:
    """Write ``ids`` (``H x W`` ints) as a PNG of the same kind, mode and palette as ``like``."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"ids must be H x W, got shape {ids.shape}")
    if like.kind == "binary":
        value = 255 if like.binary_value == 255 else 1
        img = Image.fromarray((ids > 0).astype(np.uint8) * value, mode="L")
        if like.mode == "1":
            img = img.convert("1")
    elif like.mode in ("P", "L"):
        if ids.max(initial=0) > 255:
            raise ValueError(f"{path}: ids above 255 do not fit mode {like.mode}")
        img = Image.fromarray(ids.astype(np.uint8))
        if like.mode == "P" and like.palette is not None:
            # putpalette turns the L image into P with the same indices.
            img.putpalette(like.palette)
    else:
        img = Image.fromarray(ids.astype(np.uint16))
    with atomic_write(path, "wb") as handle:
        img.save(handle, format="PNG")


def list_masks(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Mask PNGs directly in ``folder`` by stem. Raises InputError when it has none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    found = {p.stem: p for p in sorted(root.iterdir()) if p.suffix.lower() == ".png"}
    if not found:
        raise InputError(f"{root}: no .png masks in this folder")
    return found


@dataclass(frozen=True)
class Item:
    """One image of a dataset folder: ``key`` (unique name), image and mask paths."""

    key: str
    image: Path
    mask: Path


def _pairs(folder: Path, prefix: str) -> Iterator[Item]:
    images = {
        p.stem: p
        for p in sorted((folder / "images").iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    }
    for stem, mask in sorted(list_masks(folder / "masks").items()):
        if stem in images:
            yield Item(prefix + stem, images[stem], mask)


def find_items(root: str | os.PathLike[str]) -> list[Item]:
    """Image / ground-truth pairs of a dataset folder or of a folder of dataset folders.

    Raises:
        InputError: naming ``root`` when it holds no pair.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: dataset folder not found")
    if (base / "images").is_dir() and (base / "masks").is_dir():
        items = list(_pairs(base, ""))
    else:
        items = []
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            if (sub / "images").is_dir() and (sub / "masks").is_dir():
                items.extend(_pairs(sub, sub.name + "/"))
    if not items:
        raise InputError(
            f"{base}: no image / mask pairs (expected images/ and masks/ with matching "
            "file stems, here or in its sub-folders)"
        )
    return items
