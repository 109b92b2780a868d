"""Reading images and binary masks, and writing masks as PNG."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from samrefiner.io.atomic import atomic_write_bytes
from samrefiner.io.errors import InputError, said  # InputError re-exported from here
from samrefiner.io.masks import as_binary_mask, as_rgb_image

log = logging.getLogger("samrefiner.io")

#: EXIF tag of the orientation (1: the stored pixel grid is upright).
_EXIF_ORIENTATION = 0x0112


class ImageTooLargeError(InputError):
    """An image with more pixels than the limit (PIL's decompression-bomb guard).

    The limit is the one of :func:`image_pixel_limit` where a run set it
    (``RunOptions.max_image_pixels``, ``--max-image-pixels`` on the command line), else
    PIL's :data:`PIL.Image.MAX_IMAGE_PIXELS`; ``None`` lifts it.
    """

    def __init__(self, path: Path, pixels: int, limit: int) -> None:
        super().__init__(
            f"{path}: image has {pixels} pixels, more than the limit of {limit} "
            "(a decompression-bomb guard; raise it with "
            f"{said('RunOptions.max_image_pixels', '--max-image-pixels')})"
        )
        self.pixels = pixels
        self.limit = limit


#: PIL's own default of :data:`PIL.Image.MAX_IMAGE_PIXELS`, the runner's default limit.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

_UNSET = object()
#: The limit :func:`image_pixel_limit` set in this thread (``_UNSET``: none was).
_scope = threading.local()
#: Held while PIL's own guard is lifted for one image (see :func:`_pil_guard_lifted`).
_guard_lock = threading.Lock()


@contextlib.contextmanager
def image_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, in this thread, refuse images, masks and label maps with more
    than ``max_pixels`` pixels (None: no limit) as :class:`ImageTooLargeError`.

    A run's limit is its own (``RunOptions.max_image_pixels``: each engine reads the
    run's images inside this block), not a process setting: outside any block, PIL's
    process-wide :data:`PIL.Image.MAX_IMAGE_PIXELS` is the limit, as for PIL itself.
    """
    before = getattr(_scope, "limit", _UNSET)
    _scope.limit = max_pixels
    try:
        yield
    finally:
        _scope.limit = before


def _pixel_limit() -> int | None:
    """The limit of the innermost :func:`image_pixel_limit` of this thread, else PIL's."""
    limit = getattr(_scope, "limit", _UNSET)
    return Image.MAX_IMAGE_PIXELS if limit is _UNSET else limit  # type: ignore[return-value]


@contextlib.contextmanager
def _pil_guard_lifted() -> Iterator[None]:
    """PIL's own process-wide guard off for one open: only where this read's limit
    (checked by :func:`_check_size` before any pixel is decoded) admits an image the
    guard refuses."""
    with _guard_lock:
        before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def _check_size(p: Path, img: Image.Image, limit: int | None) -> None:
    pixels = img.size[0] * img.size[1]
    if limit is not None and pixels > limit:
        raise ImageTooLargeError(p, pixels, int(limit))


def _decode(source: Path | io.BytesIO, p: Any, limit: int | None) -> Image.Image:
    """The image of ``source``, its size checked against ``limit`` before decoding."""
    with warnings.catch_warnings():
        # Our own check below turns an image above the limit into an error; PIL only
        # warns between the limit and twice the limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(source)
    _check_size(p, img, limit)
    img.load()
    return img


def _open(path: str | os.PathLike[str], what: str, data: bytes | None = None) -> Image.Image:
    from samrefiner.io.uri import is_uri, read_uri

    source: Path | io.BytesIO
    p: Any
    if data is not None:  # the file's bytes, read elsewhere; ``path`` names them
        p, source = str(path), io.BytesIO(data)
    elif is_uri(path):  # s3://, gs://, memory://: see samrefiner.io.uri
        p = str(path)  # names it in messages
        source = io.BytesIO(read_uri(p, what))
    else:
        p = source = Path(path)
        if not p.exists():
            raise InputError(f"{p}: {what} file not found")
        if not p.is_file():
            raise InputError(f"{p}: {what} path is not a file")
    limit = _pixel_limit()
    try:
        try:
            img = _decode(source, p, limit)
        except Image.DecompressionBombError as exc:
            # PIL's own guard (twice its process-wide limit) refused the image: this
            # read's limit decides whether it is too large.
            if limit == Image.MAX_IMAGE_PIXELS or (
                limit is not None and _pixels_in(str(exc)) > limit
            ):
                raise
            with _pil_guard_lifted():
                if isinstance(source, io.BytesIO):
                    source.seek(0)
                img = _decode(source, p, limit)
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(p, _pixels_in(str(exc)), int(limit or 0)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        why = str(exc).replace(repr(source), repr(p))  # PIL names the stream it was given
        raise InputError(f"{p}: cannot read {what}: {why}") from exc
    return img


def _pixels_in(message: str) -> int:
    """The pixel count in PIL's decompression-bomb message (0 when it has none)."""
    numbers = [int(n) for n in re.findall(r"\d+", message)]
    return numbers[0] if numbers else 0


_orientation_warned: set[str] = set()
_orientation_lock = threading.Lock()


def _warn_orientation(p: Path, img: Image.Image) -> None:
    """Warn once per file about an EXIF orientation other than 1 (it is not applied)."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):  # a broken EXIF block: nothing to say
        return
    if orientation in (None, 1):
        return
    key = str(p.resolve())
    with _orientation_lock:
        if key in _orientation_warned:
            return
        _orientation_warned.add(key)
    log.warning(
        "%s: EXIF orientation %s is not applied: samrefiner uses the stored pixel grid, as "
        "COCO annotations do (masks must match the stored grid)",
        p,
        orientation,
    )


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an ``H x W x 3`` uint8 RGB array.

    Grey, palette, RGBA and 16-bit images are converted to RGB. The EXIF orientation is
    not applied (the COCO convention: annotations refer to the stored pixel grid); an
    orientation other than 1 is logged once per file.

    Raises:
        ImageTooLargeError: more pixels than the limit (:func:`image_pixel_limit`, else
            :data:`PIL.Image.MAX_IMAGE_PIXELS`).
        InputError: a file that is missing or cannot be decoded.
    """
    img = _open(path, "image")
    _warn_orientation(Path(path), img)
    try:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            peak = arr.max() if arr.size and arr.max() > 0 else 1.0
            arr = np.round(arr / peak * 255.0).astype(np.uint8)
            return as_rgb_image(arr)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc


def read_image_bytes(data: bytes, name: str) -> np.ndarray:
    """An image file's ``data`` (an image embedded in an annotation file) as an
    ``H x W x 3`` uint8 RGB array, with :func:`read_image`'s checks and conversions;
    ``name`` names it in errors."""
    img = _open(name, "image", data)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


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
