"""Label Studio regions and the masks they hold, both ways.

A region is one item of an annotation's or prediction's ``result`` list. Coordinates of
polygons and rectangles are percentages of the image's width and height (``x = 100``
is the right edge of the last pixel column); brush regions hold :mod:`brush` RLE.
Pixel coordinates follow :mod:`samrefiner.io.polygons`: pixel ``(r, c)`` is the square
``[c, c + 1] x [r, r + 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from samrefiner.integrations.labelstudio import brush
from samrefiner.integrations.labelstudio.config import REGION_TYPES
from samrefiner.io.polygons import Polygons, mask_to_polygons

__all__ = [
    "CoarseRegion",
    "RegionError",
    "brush_result",
    "parse_region",
    "polygon_results",
    "polygon_to_mask",
    "rectangle_to_box",
]


class RegionError(ValueError):
    """A region that cannot be refined; the message names the region and the problem."""


@dataclass(frozen=True)
class CoarseRegion:
    """One region to refine, read from a task.

    Attributes:
        id: the region's ``id``.
        from_name, to_name: its control and image tag names.
        type: its result type (``brushlabels``, ``polygonlabels``, ``rectanglelabels``,
            or the label-less ``brush`` / ``polygon`` / ``rectangle``).
        labels: its labels (the value's list under its type), possibly empty.
        mask: ``H x W`` bool coarse mask, or None for a rectangle.
        box: ``4`` float XYXY pixel box (``x2, y2`` inclusive) of a rectangle, else None.
    """

    id: str
    from_name: str
    to_name: str
    type: str
    labels: tuple[str, ...]
    mask: np.ndarray | None
    box: np.ndarray | None

    def __post_init__(self) -> None:
        if (self.mask is None) == (self.box is None):
            raise ValueError("a region has a mask or a box, exactly one")
        if self.box is not None and self.box.shape != (4,):
            raise ValueError(f"a box is 4 numbers, got shape {self.box.shape}")


def _number(value: Mapping[str, Any], key: str, where: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise RegionError(f"{where}: value.{key} must be a number, got {number!r}")
    if not math.isfinite(number):
        raise RegionError(f"{where}: value.{key} must be finite, got {number!r}")
    return float(number)


def polygon_to_mask(points: Any, height: int, width: int, where: str = "polygon") -> np.ndarray:
    """The ``height x width`` bool mask of a polygon given as ``[[x%, y%], ...]``."""
    try:
        ring = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RegionError(f"{where}: value.points must be [[x, y], ...] numbers") from exc
    if ring.ndim != 2 or ring.shape[1] != 2 or len(ring) < 3 or not np.isfinite(ring).all():
        raise RegionError(f"{where}: value.points must be 3 or more finite [x, y] pairs")
    pixels = ring * np.array([width / 100.0, height / 100.0])
    return Polygons((pixels,), (), height, width).to_mask()


def rectangle_to_box(
    value: Mapping[str, Any], height: int, width: int, where: str = "rectangle"
) -> np.ndarray:
    """The XYXY pixel box (``x2, y2`` inclusive) of a rectangle's value (percentages,
    rotated by ``rotation`` degrees clockwise about its top-left corner: its bounding
    box)."""
    x = _number(value, "x", where) * width / 100.0
    y = _number(value, "y", where) * height / 100.0
    w = _number(value, "width", where) * width / 100.0
    h = _number(value, "height", where) * height / 100.0
    angle = math.radians(_number(value, "rotation", where) if "rotation" in value else 0.0)
    corners = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    cos, sin = math.cos(angle), math.sin(angle)
    xs = x + corners[:, 0] * cos - corners[:, 1] * sin
    ys = y + corners[:, 0] * sin + corners[:, 1] * cos
    if xs.max() - xs.min() <= 0 or ys.max() - ys.min() <= 0:
        raise RegionError(f"{where}: the rectangle has no area")
    # Edges to inclusive pixel indices: [x0, x1) covers columns x0 .. x1 - 1.
    return np.array([xs.min(), ys.min(), xs.max() - 1.0, ys.max() - 1.0], dtype=np.float64)


def parse_region(result: Mapping[str, Any], height: int, width: int) -> CoarseRegion:
    """Read one ``result`` item of a region type in :data:`REGION_TYPES` on an image of
    ``height x width`` pixels.

    Raises:
        RegionError: a missing or malformed value, a brush RLE of another image size.
    """
    kind = str(result.get("type", "")).lower()
    region_id = str(result.get("id", ""))
    where = f"region {region_id or '?'} ({kind})"
    if kind not in REGION_TYPES:
        raise RegionError(f"{where}: not a region type the backend refines")
    value = result.get("value")
    if not isinstance(value, Mapping):
        raise RegionError(f"{where}: no value")
    labels = value.get(kind, []) if kind.endswith("labels") else []
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise RegionError(f"{where}: value.{kind} must be a list of label names")
    mask = box = None
    if kind in ("brushlabels", "brush"):
        size = (result.get("original_height", height), result.get("original_width", width))
        if tuple(size) != (height, width):
            raise RegionError(
                f"{where}: drawn on a {size[1]} x {size[0]} image, the task's image is "
                f"{width} x {height}"
            )
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise RegionError(f"{where}: a brush region needs value.rle (format 'rle')")
        try:
            mask = brush.decode_mask(value["rle"], height, width)
        except brush.BrushRLEError as exc:
            raise RegionError(f"{where}: {exc}") from exc
    elif kind in ("polygonlabels", "polygon"):
        mask = polygon_to_mask(value.get("points"), height, width, where)
    else:
        box = rectangle_to_box(value, height, width, where)
    return CoarseRegion(
        id=region_id,
        from_name=str(result.get("from_name", "")),
        to_name=str(result.get("to_name", "")),
        type=kind,
        labels=tuple(labels),
        mask=mask,
        box=box,
    )


def _base(
    region: CoarseRegion, region_id: str, from_name: str, kind: str, shape: tuple[int, int]
) -> dict[str, Any]:
    return {
        "id": region_id,
        "from_name": from_name,
        "to_name": region.to_name,
        "type": kind,
        "original_height": int(shape[0]),
        "original_width": int(shape[1]),
        "image_rotation": 0,
    }


def _with_labels(value: dict[str, Any], kind: str, region: CoarseRegion) -> dict[str, Any]:
    if kind.endswith("labels"):
        value[kind] = list(region.labels)
    return value


def brush_result(
    region: CoarseRegion, mask: np.ndarray, score: float, from_name: str, kind: str
) -> dict[str, Any]:
    """The ``result`` item of a refined mask as a brush region of control ``from_name``
    (of type ``kind``: ``brushlabels`` or ``brush``), keeping the region's id, image and
    labels."""
    out = _base(region, region.id, from_name, kind, mask.shape)
    out["value"] = _with_labels({"format": "rle", "rle": brush.encode_mask(mask)}, kind, region)
    out["score"] = score
    return out


def polygon_results(
    region: CoarseRegion,
    mask: np.ndarray,
    score: float,
    from_name: str,
    kind: str,
    *,
    tolerance: float = 0.0,
    polygons: Polygons | None = None,
) -> list[dict[str, Any]]:
    """The ``result`` items of a refined mask as polygons of control ``from_name`` (of
    type ``kind``): one region per part (its exterior ring; a Label Studio polygon has no
    holes), the first keeping the region's id, the others ``<id>_2``, ``<id>_3``, ...
    An empty mask gives no region.

    Args:
        tolerance: Douglas-Peucker tolerance in pixels (0: exact pixel outlines).
        polygons: ``mask_to_polygons(mask, tolerance=tolerance)`` when already traced.
    """
    height, width = mask.shape
    if polygons is None:
        polygons = mask_to_polygons(mask, tolerance=tolerance)
    out = []
    scale = np.array([100.0 / width, 100.0 / height])
    for k, ring in enumerate(polygons.exteriors):
        region_id = region.id if k == 0 else f"{region.id}_{k + 1}"
        item = _base(region, region_id, from_name, kind, (height, width))
        points = [[float(x), float(y)] for x, y in ring * scale]
        item["value"] = _with_labels({"points": points, "closed": True}, kind, region)
        item["score"] = score
        out.append(item)
    return out
