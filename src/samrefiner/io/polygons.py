"""Masks as polygons and back: one module for every polygon format (COCO, YOLO, labelme).

Coordinates are ``(x, y)`` in pixels with the pixel at row ``r``, column ``c`` the square
``[c, c + 1] x [r, r + 1]``: an outline runs along pixel *edges*, not through pixel
centres, so a mask traced at tolerance 0 decodes back to exactly the same pixels (with
pycocotools' rasterisation, which COCO readers use). Tracing through pixel centres, as
``cv2.findContours`` does, loses half a pixel all round: a 3 x 4 box comes back as 2 x 3.

An object is a set of rings: **exteriors** (outer boundaries, one per 4-connected part)
and **holes** (inner boundaries). Pixels touching only at a corner belong to separate
rings. Each ring is a ``K x 2`` float array of its corners, without the closing repeat.

    >>> import numpy as np
    >>> mask = np.zeros((6, 8), dtype=bool)
    >>> mask[1:5, 2:7] = True
    >>> mask[2:3, 4:5] = False  # a hole
    >>> polygons = mask_to_polygons(mask)
    >>> len(polygons.exteriors), len(polygons.holes)
    (1, 1)
    >>> polygons.exteriors[0].tolist()
    [[2.0, 1.0], [7.0, 1.0], [7.0, 5.0], [2.0, 5.0]]
    >>> bool((polygons.to_mask() == mask).all())
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from scipy.spatial import cKDTree

from samrefiner.io.masks import as_binary_mask

__all__ = ["Polygons", "joined_ring", "mask_to_polygons", "ring_area"]

# Directions of a unit step along a pixel edge, (dx, dy), and the index of each.
_RIGHT, _DOWN, _LEFT, _UP = 0, 1, 2, 3
_STEP = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])


def ring_area(ring: np.ndarray) -> float:
    """Signed area (shoelace) of a ``K x 2`` ring: positive for an exterior as traced here
    (clockwise on screen, y down), negative for a hole."""
    x, y = ring[:, 0], ring[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0


@dataclass(frozen=True)
class Polygons:
    """One object's outline.

    Attributes:
        exteriors: outer rings, each ``K x 2`` ``(x, y)`` pixel-corner coordinates.
        holes: inner rings, the same way.
        height, width: the size of the image the mask had.
    """

    exteriors: tuple[np.ndarray, ...]
    holes: tuple[np.ndarray, ...]
    height: int
    width: int

    def __post_init__(self) -> None:
        for ring in (*self.exteriors, *self.holes):
            if ring.ndim != 2 or ring.shape[1] != 2 or len(ring) < 3:
                raise ValueError(f"a ring must be K x 2 with K >= 3, got {ring.shape}")

    @property
    def has_holes(self) -> bool:
        return bool(self.holes)

    def to_mask(self) -> np.ndarray:
        """``H x W`` bool: the exteriors' pixels without the holes' (pycocotools' fill)."""
        rings = [[float(v) for v in ring.ravel()] for ring in (*self.exteriors, *self.holes)]
        if not rings:
            return np.zeros((self.height, self.width), dtype=bool)
        fills = mask_utils.decode(mask_utils.frPyObjects(rings, self.height, self.width))
        # Rings nest without overlapping, so each ring flips the pixels it encloses.
        return np.logical_xor.reduce(fills.astype(bool), axis=2)

    def coco(self) -> list[list[float]]:
        """The exteriors as COCO polygon lists ``[x1, y1, x2, y2, ...]`` (COCO polygons
        cannot hold a hole: a caller that must keep holes writes RLE instead)."""
        return [[float(v) for v in ring.ravel()] for ring in self.exteriors]


def mask_to_polygons(
    mask: np.ndarray, *, tolerance: float = 0.0, min_area: float = 0.0
) -> Polygons:
    """Trace ``mask`` (``H x W``, bool or 0 / non-zero) as rings along pixel edges.

    Args:
        mask: the object's pixels.
        tolerance: Douglas-Peucker tolerance in pixels; 0 keeps every corner (the rings
            then decode to exactly ``mask``). A ring the tolerance would flatten to a
            line (an object a few pixels wide) keeps its exact corners instead.
        min_area: rings enclosing fewer pixels are dropped (specks, pin holes).
    """
    pixels = as_binary_mask(mask)
    height, width = pixels.shape
    smallest = max(min_area, 1e-9)  # a ring of no area is never kept
    exteriors: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    for ring in _trace(pixels):
        area = ring_area(ring)
        if abs(area) < smallest:
            continue
        if tolerance > 0:
            simple = cv2.approxPolyDP(ring.astype(np.float32).reshape(-1, 1, 2), tolerance, True)
            simple = simple.reshape(-1, 2).astype(np.float64)
            # A ring the tolerance would flatten (a small object) keeps its exact corners.
            if len(simple) >= 3 and abs(ring_area(simple)) >= smallest:
                ring = simple
        (exteriors if area > 0 else holes).append(ring)
    return Polygons(tuple(exteriors), tuple(holes), height, width)


def mask_to_polygons_or_largest(
    mask: np.ndarray, *, tolerance: float = 0.0, min_area: float = 0.0
) -> Polygons:
    """:func:`mask_to_polygons`, but when every part of ``mask`` (``H x W``, not empty)
    is below ``min_area`` the largest part alone (no holes) instead of nothing."""
    h, w = mask.shape
    polygons = mask_to_polygons(mask, tolerance=tolerance, min_area=min_area)
    if not polygons.exteriors:  # every part below min_area: keep the largest
        everything = mask_to_polygons(mask, tolerance=tolerance)
        largest = max(everything.exteriors, key=lambda r: abs(ring_area(r)))
        polygons = Polygons((largest,), (), h, w)
    return polygons


def _trace(pixels: np.ndarray) -> list[np.ndarray]:
    """Every boundary ring of ``pixels`` along pixel edges, corners only, the object on
    the right of the direction of travel (exteriors clockwise on screen)."""
    padded = np.pad(pixels, 1)  # so every pixel has four neighbours
    # Unit edges, each as its start corner and direction: the object is on the right.
    starts, directions = [], []
    for direction, (dy, dx), corner in (
        (_RIGHT, (-1, 0), (0, 0)),  # top edge: (x, y) -> (x + 1, y)
        (_DOWN, (0, 1), (1, 0)),  # right edge: (x + 1, y) -> (x + 1, y + 1)
        (_LEFT, (1, 0), (1, 1)),  # bottom edge: (x + 1, y + 1) -> (x, y + 1)
        (_UP, (0, -1), (0, 1)),  # left edge: (x, y + 1) -> (x, y)
    ):
        neighbour = padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
        ys, xs = np.nonzero(pixels & ~neighbour)
        starts.append(np.stack([xs + corner[0], ys + corner[1]], axis=1))
        directions.append(np.full(len(xs), direction))
    start = np.concatenate(starts)
    direction = np.concatenate(directions)
    if not len(start):
        return []
    # Outgoing edges of each corner (at most two: where parts touch at a corner).
    stride = pixels.shape[1] + 2
    keys = start[:, 1] * stride + start[:, 0]
    outgoing: dict[int, list[int]] = {}
    for edge, key in enumerate(keys.tolist()):
        outgoing.setdefault(key, []).append(edge)
    used = np.zeros(len(start), dtype=bool)
    rings = []
    for first in range(len(start)):
        if used[first]:
            continue
        corners, edge = [], first
        while not used[edge]:
            used[edge] = True
            turn = direction[edge]
            corners.append((start[edge], turn))
            end = start[edge] + _STEP[turn]
            choices = [e for e in outgoing[int(end[1] * stride + end[0])] if not used[e]]
            if not choices:
                break
            # Two ways on: turn right (towards the object), so that parts touching at a
            # corner stay separate rings.
            right = (turn + 1) % 4
            edge = next((e for e in choices if direction[e] == right), choices[0])
        # Keep the corners where the direction changes.
        ring = [point for k, (point, d) in enumerate(corners) if d != corners[k - 1][1]]
        rings.append(np.asarray(ring, dtype=np.float64))
    return rings


def joined_ring(polygons: Polygons) -> np.ndarray:
    """All rings of ``polygons`` as one ``K x 2`` ring, for formats with one polygon per
    object (YOLO segmentation).

    Each further ring (exteriors, then holes) is spliced in at the vertex pair nearest the
    ring built so far, with a zero-width bridge walked there and back (as Ultralytics'
    converter merges the parts of a COCO object). Under the even-odd fill rule a bridge
    walked twice encloses nothing, so with pycocotools' rasterisation the joined ring
    fills exactly the pixels of ``polygons.to_mask()``.

    Raises:
        ValueError: ``polygons`` has no exterior.
    """
    if not polygons.exteriors:
        raise ValueError("an object without an exterior ring cannot be joined into one ring")
    joined = np.asarray(polygons.exteriors[0], dtype=np.float64)
    for ring in (*polygons.exteriors[1:], *polygons.holes):
        ring = np.asarray(ring, dtype=np.float64)
        # Nearest pair: each vertex of ``ring`` queried against the joined ring's.
        distance, nearest = cKDTree(joined).query(ring)
        j = int(np.argmin(distance))
        i = int(nearest[j])
        spliced = np.roll(ring, -j, axis=0)
        joined = np.concatenate([joined[: i + 1], spliced, spliced[:1], joined[i:]])
    return joined
