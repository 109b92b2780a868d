"""Reading images and binary masks, and writing masks as PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samrefiner.io.atomic import atomic_write_bytes
from samrefiner.masks import as_binary_mask, as_rgb_image


class InputError(ValueError):
    """A file that cannot be used; the message names the file and the problem."""


def _open(path: str | os.PathLike[str], what: str) -> Image.Image:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {what} file not found")
    if not p.is_file():
        raise InputError(f"{p}: {what} path is not a file")
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"{p}: cannot read {what}: {exc}") from exc
    return img


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an ``H x W x 3`` uint8 RGB array (EXIF orientation ignored).

    Grey, palette, RGBA and 16-bit images are converted to RGB.
    """
    img = _open(path, "image")
    try:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            peak = arr.max() if arr.size and arr.max() > 0 else 1.0
            arr = np.round(arr / peak * 255.0).astype(np.uint8)
            return as_rgb_image(arr)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a binary mask file (0/1 or 0/255, grey or palette) as an ``H x W`` bool array."""
    img = _open(path, "mask")
    arr = np.asarray(img.convert("L")) if img.mode in ("RGB", "RGBA") else np.asarray(img)
    try:
        return as_binary_mask(arr, name=str(path))
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a 2-D uint8 / uint16 array, or of an ``H x W x 3`` uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_mask_png(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write an ``H x W`` bool mask as a 0/255 greyscale PNG, atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    atomic_write_bytes(path, encode_png(mask.astype(bool).astype(np.uint8) * 255))
