"""Distance-guided points: exact Euclidean distance transforms on a mask's crop.

Only the mask's bounding box (plus a one-pixel ring of background where the box does not
touch the image border) is transformed: every pixel outside the box is background, so the
nearest background pixel of any mask pixel lies inside that ring, and the nearest mask
pixel of any box pixel lies inside the box. The results equal a transform of the whole
image, at a cost that depends on the object, not on the image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

# Side of the cells the negative-point search first samples (see negative_point).
_CELL = 8
# The search pays off on large boxes with a short boundary (smooth objects); below these
# sizes, or for ragged masks, the distance transform is cheaper. Both are exact.
_SEARCH_MIN_PIXELS = 50_000
_SEARCH_MIN_RATIO = 32


@dataclass
class InteriorDistance:
    """Distance of each mask pixel to the nearest background pixel, on the mask's crop.

    Attributes:
        distance: ``h x w`` float64 map over the crop (0 on background).
        origin: ``(y, x)`` of the crop's top-left pixel in the image.
        peak: ``(x, y)`` image pixel of the largest distance (first in row-major order).
        peak_value: the largest distance, ``d_max``.
    """

    distance: np.ndarray
    origin: tuple[int, int]
    peak: tuple[int, int]
    peak_value: float


def interior_distance(mask: np.ndarray, box: tuple[int, int, int, int]) -> InteriorDistance:
    """Exact EDT of ``mask`` (``H x W`` bool) to its background, computed on its crop.

    The image border is not background (as in the reference). A mask covering the whole
    image has no background at all; then the border is taken as background so that the
    peak is the image centre rather than an arbitrary corner.
    """
    H, W = mask.shape
    x1, y1, x2, y2 = box
    top, left = max(y1 - 1, 0), max(x1 - 1, 0)
    bottom, right = min(y2 + 2, H), min(x2 + 2, W)
    crop = mask[top:bottom, left:right]
    if crop.all():
        # No background pixel anywhere: measure to just outside the image instead.
        dist = distance_transform_edt(np.pad(crop, 1, constant_values=False))[1:-1, 1:-1]
    else:
        dist = distance_transform_edt(crop)
    py, px = _first_peak(dist)
    return InteriorDistance(
        distance=dist,
        origin=(top, left),
        peak=(left + px, top + py),
        peak_value=float(dist[py, px]),
    )


def negative_point(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int] | None:
    """``(x, y)`` of the pixel in the inclusive box farthest from the mask, or None.

    None when the box holds no background pixel (a full rectangle): there is then no
    sensible negative point, and the reference's (0, 0) would mislead SAM. Ties go to the
    first pixel in row-major order.

    Only the maximum is needed, so instead of a distance transform of the whole box this
    searches exactly by branch and bound: distances to the mask are measured with a k-d
    tree of the mask's boundary pixels (the nearest mask pixel of a background pixel of
    the box is always one of them), first at one pixel per ``_CELL x _CELL`` cell, which
    bounds every cell (a pixel is at most the cell's half-diagonal farther than its
    sample); then every pixel of the cells that could hold the maximum is measured. Small
    boxes and ragged masks (long boundaries) use the distance transform instead, which
    is cheaper there; both give the same, exact answer.
    """
    x1, y1, x2, y2 = box
    crop = mask[y1 : y2 + 1, x1 : x2 + 1]
    background = ~crop
    if not background.any():
        return None
    # Mask pixels next to a background pixel of the box: the only possible nearest ones.
    edge = np.zeros_like(crop)
    edge[1:] |= background[:-1]
    edge[:-1] |= background[1:]
    edge[:, 1:] |= background[:, :-1]
    edge[:, :-1] |= background[:, 1:]
    boundary = np.argwhere(crop & edge)
    if crop.size < _SEARCH_MIN_PIXELS or len(boundary) * _SEARCH_MIN_RATIO > crop.size:
        # Small boxes and ragged masks: the transform is the cheaper exact method.
        return _farthest_by_transform(background, x1, y1)
    tree = cKDTree(boundary)

    h, w = crop.shape
    cell = _CELL
    sy = np.minimum(np.arange(cell // 2, h + cell // 2, cell), h - 1)
    sx = np.minimum(np.arange(cell // 2, w + cell // 2, cell), w - 1)
    sampled_bg = background[np.ix_(sy, sx)]
    # Mask samples are at distance 0: only background samples need a query.
    sample_dist = np.zeros(sampled_bg.shape)
    rows, cols = np.nonzero(sampled_bg)
    if rows.size:
        sample_dist[rows, cols] = tree.query(np.column_stack([sy[rows], sx[cols]]))[0]
    # A lower bound of the maximum: the farthest sampled background pixel (if any).
    lower = sample_dist.max() if rows.size else 0.0
    # Every pixel of a cell lies within this distance of the cell's sample pixel.
    reach = np.hypot(cell, cell)
    promising = sample_dist + reach >= lower
    # Measure every background pixel of the promising cells, in one query.
    cells = np.repeat(np.repeat(promising, cell, axis=0), cell, axis=1)[:h, :w]
    ys, xs = np.nonzero(cells & background)
    if ys.size * _SEARCH_MIN_RATIO > crop.size:
        return _farthest_by_transform(background, x1, y1)  # bounds pruned too little
    dist = tree.query(np.column_stack([ys, xs]))[0]
    top = dist.max()
    hit = np.flatnonzero(dist == top)[0]  # np.nonzero is row-major: first maximum
    best_flat = int(ys[hit]) * w + int(xs[hit])
    py, px = divmod(best_flat, w)
    return x1 + px, y1 + py


def _farthest_by_transform(background: np.ndarray, x1: int, y1: int) -> tuple[int, int]:
    """First maximum of the distance transform of ``background`` (a box crop)."""
    py, px = _first_peak(distance_transform_edt(background))
    return x1 + px, y1 + py


def _first_peak(dist: np.ndarray) -> tuple[int, int]:
    """``(y, x)`` of the largest value of a 2-D map, the first in row-major order on ties."""
    return divmod(int(np.argmax(dist)), dist.shape[1])
