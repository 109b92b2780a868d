"""labelme JSON files: shapes to masks and boxes, refined objects back to shapes.

A labelme file (one per image) holds ``shapes``, each with a ``label``, ``points``, a
``shape_type``, ``group_id``, ``flags``, ``description`` and, for ``mask`` shapes, a
base64 PNG of the mask inside its box. Shapes that share a ``label`` and a (non-null)
``group_id`` are one object, as labelme's own ``shapes_to_label`` reads them.

Coordinates are read and written along pixel edges, as :mod:`samrefiner.io.polygons`
traces masks (a polygon fills the pixels pycocotools' rasterisation gives it); a
``rectangle`` ``(x0, y0), (x1, y1)`` spans ``|x1 - x0|`` pixels (the COCO box rule); a
``circle`` (centre, a point on it) fills the pixels whose centres lie inside; a ``mask``
shape's PNG covers pixels ``x1..x2`` by ``y1..y2`` of its two points (labelme's rule).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from samrefiner.io.coco import SegmentationError, bbox_xyxy
from samrefiner.io.errors import InputError
from samrefiner.io.polygons import Polygons

__all__ = [
    "REFINABLE",
    "LabelmeFile",
    "mask_shape",
    "polygon_shape",
    "read_labelme",
    "shape_box",
    "shape_mask",
]

#: Shape types refined (the others -- point, line, linestrip, points -- are kept as they are).
REFINABLE = frozenset({"polygon", "rectangle", "circle", "mask"})

_INVALID_RECORD = "invalid_record"
_INVALID_POLYGON = "invalid_polygon"
_INVALID_BBOX = "invalid_bbox"
_INVALID_SEGMENTATION = "invalid_segmentation"


@dataclass
class LabelmeFile:
    """One labelme JSON file as read.

    Attributes:
        raw: the whole JSON object, key order kept (written back with only ``shapes``
            changed).
        shapes: ``raw["shapes"]`` (a list; each entry is checked when it is used).
        image_path: ``imagePath`` with Windows separators made ``/`` (as labelme does).
        image_data: the decoded ``imageData`` bytes, or None when the file has none.
        height, width: ``imageHeight`` / ``imageWidth``, or None when absent.
    """

    raw: dict[str, Any]
    shapes: list[Any]
    image_path: str
    image_data: bytes | None = None
    height: int | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if self.raw.get("shapes") is not self.shapes:
            raise ValueError("shapes must be raw['shapes']")

    def groups(self) -> list[list[int]]:
        """The objects: indices of the refinable shapes of each, in order of their first
        shape (shapes sharing a label and a non-null group_id are one object)."""
        objects: dict[Any, list[int]] = {}
        for k, shape in enumerate(self.shapes):
            if not isinstance(shape, dict) or shape.get("shape_type", "polygon") not in REFINABLE:
                continue
            group = shape.get("group_id")
            key = ("group", str(shape.get("label")), group) if group is not None else ("one", k)
            objects.setdefault(key, []).append(k)
        return list(objects.values())


def read_labelme(path: str | os.PathLike[str]) -> LabelmeFile:
    """Read a labelme JSON file.

    Raises:
        InputError: naming the file: not JSON, not an object with ``shapes`` (a list)
            and ``imagePath`` (a string), or ``imageData`` that is not base64.
    """
    where = Path(path)
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: cannot read the labelme file: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("shapes"), list):
        raise InputError(f"{where}: not a labelme file (no 'shapes' list)")
    if not isinstance(raw.get("imagePath"), str):
        raise InputError(f"{where}: 'imagePath' must be a string")
    data = raw.get("imageData")
    image_data = None
    if data is not None:
        try:
            image_data = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{where}: 'imageData' is not base64: {exc}") from exc
        if image_data is None:
            raise InputError(f"{where}: 'imageData' must be a base64 string or null")
    sizes = [raw.get("imageHeight"), raw.get("imageWidth")]
    height, width = (v if isinstance(v, int) and not isinstance(v, bool) else None for v in sizes)
    return LabelmeFile(
        raw,
        raw["shapes"],
        PureWindowsPath(raw["imagePath"]).as_posix(),
        image_data,
        height,
        width,
    )


def _points(shape: Any, count: int | None = None) -> np.ndarray:
    """A shape's ``points`` as ``K x 2`` floats (``count`` of them when given)."""
    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
        raise SegmentationError(_INVALID_RECORD, "a shape must be an object with a string label")
    points = shape.get("points")
    ok = isinstance(points, list) and all(
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
        for p in points
    )
    if not ok:
        raise SegmentationError(_INVALID_RECORD, "points must be a list of [x, y] numbers")
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(arr).all():
        raise SegmentationError(_INVALID_RECORD, "a point is not finite")
    if count is not None and len(arr) != count:
        kind = shape.get("shape_type")
        raise SegmentationError(
            _INVALID_BBOX if kind == "rectangle" else _INVALID_RECORD,
            f"a {kind} needs {count} points, got {len(arr)}",
        )
    return arr


def shape_box(shape: Any) -> list[float]:
    """The inclusive-pixel ``[x1, y1, x2, y2]`` of a ``rectangle`` shape.

    Raises:
        SegmentationError: ``invalid_record`` / ``invalid_bbox`` (not 2 points, no area).
    """
    (x0, y0), (x1, y1) = _points(shape, 2)
    return bbox_xyxy([min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)])


def shape_mask(shape: Any, height: int, width: int) -> tuple[np.ndarray, bool]:
    """The ``H x W`` bool mask of a polygon, rectangle, circle or mask shape, and whether
    it reached outside the image (that part is clipped).

    Raises:
        SegmentationError: with the status of a shape that cannot be used.
    """
    kind = shape.get("shape_type", "polygon") if isinstance(shape, dict) else None
    if kind == "polygon":
        ring = _points(shape)
        if len(ring) < 3:
            raise SegmentationError(
                _INVALID_POLYGON, f"a polygon needs 3 points or more, got {len(ring)}"
            )
        clipped = np.clip(ring, 0, [width, height])
        mask = Polygons((clipped,), (), height, width).to_mask()
        return mask, bool((clipped != ring).any())
    if kind == "rectangle":
        x1, y1, x2, y2 = shape_box(shape)
        corners = np.floor(np.array([x1, y1, x2, y2]) + 0.5).astype(int)
        mask = np.zeros((height, width), dtype=bool)
        mask[max(corners[1], 0) : corners[3] + 1, max(corners[0], 0) : corners[2] + 1] = True
        outside = corners[0] < 0 or corners[1] < 0 or corners[2] >= width or corners[3] >= height
        return mask, bool(outside)
    if kind == "circle":
        (cx, cy), (px, py) = _points(shape, 2)
        radius = math.hypot(px - cx, py - cy)
        rows, cols = np.ogrid[:height, :width]
        mask = (cols + 0.5 - cx) ** 2 + (rows + 0.5 - cy) ** 2 <= radius**2
        outside = cx - radius < 0 or cy - radius < 0 or cx + radius > width or cy + radius > height
        return mask, bool(outside)
    if kind == "mask":
        return _mask_of(shape, height, width)
    raise SegmentationError(_INVALID_RECORD, f"shape_type {kind!r} is not refined")


def _mask_of(shape: dict[str, Any], height: int, width: int) -> tuple[np.ndarray, bool]:
    (x1, y1), (x2, y2) = _points(shape, 2).astype(int)
    data = shape.get("mask")
    if not isinstance(data, str):
        raise SegmentationError(_INVALID_SEGMENTATION, "a mask shape needs a base64 PNG 'mask'")
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as img:
            crop = np.asarray(img.convert("L")) > 0
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as exc:
        raise SegmentationError(
            _INVALID_SEGMENTATION, f"'mask' is not a base64 PNG: {exc}"
        ) from exc
    if crop.shape != (y2 - y1 + 1, x2 - x1 + 1):
        raise SegmentationError(
            _INVALID_SEGMENTATION,
            f"the mask PNG is {crop.shape[1]}x{crop.shape[0]} but its points span "
            f"{x2 - x1 + 1}x{y2 - y1 + 1} pixels (W x H)",
        )
    mask = np.zeros((height, width), dtype=bool)
    top, left = max(y1, 0), max(x1, 0)
    bottom, right = min(y2 + 1, height), min(x2 + 1, width)
    if bottom > top and right > left:
        mask[top:bottom, left:right] = crop[top - y1 : bottom - y1, left - x1 : right - x1]
    outside = x1 < 0 or y1 < 0 or x2 >= width or y2 >= height
    return mask, bool(outside)


def _like(base: dict[str, Any], shape_type: str, points: list[list[float]]) -> dict[str, Any]:
    shape = dict(base)
    shape["points"] = points
    shape["shape_type"] = shape_type
    if "mask" in shape:
        shape["mask"] = None
    return shape


def polygon_shape(base: dict[str, Any], ring: np.ndarray) -> dict[str, Any]:
    """``base`` (a shape: label, group_id, flags, description, any other field) as a
    polygon of the ``K x 2`` pixel ring."""
    return _like(base, "polygon", [[float(x), float(y)] for x, y in np.asarray(ring)])


def mask_shape(base: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """``base`` as a ``mask`` shape of the ``H x W`` mask (non-empty): its two points are
    the corner pixels of its box, its ``mask`` the box's 0/1 PNG, base64 (as labelme
    writes them)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        raise ValueError("an empty mask has no mask shape")
    y1, y2, x1, x2 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    buffer = io.BytesIO()
    Image.fromarray(mask[y1 : y2 + 1, x1 : x2 + 1].astype(np.uint8)).save(buffer, format="PNG")
    shape = _like(base, "mask", [[float(x1), float(y1)], [float(x2), float(y2)]])
    shape["mask"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return shape
