"""Distance-guided points: exact Euclidean distance transforms on a mask's crop.

Only the mask's bounding box (plus a one-pixel ring of background where the box does not
touch the image border) is transformed: every pixel outside the box is background, so the
nearest background pixel of any mask pixel lies inside that ring, and the nearest mask
pixel of any box pixel lies inside the box. The results equal a transform of the whole
image, at a cost that depends on the object, not on the image size.

Distances are kept squared, as exact integers (scipy's feature transform gives the
nearest background pixel of each pixel): the maxima and their row-major ties are then
decided without rounding, and no float64 map of the crop is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

# Cell sides of the negative-point search, coarse to fine (see negative_point).
_CELLS = (32, 8)
# The search pays off on large boxes with a short boundary (smooth objects); below these
# sizes, or for ragged masks, the distance transform is cheaper. Both are exact.
_SEARCH_MIN_PIXELS = 50_000
_SEARCH_MIN_RATIO = 32


@dataclass
class InteriorDistance:
    """Distance of each mask pixel to the nearest background pixel, on the mask's crop.

    Attributes:
        squared: ``h x w`` int32 map of squared distances over the crop (0 on background).
        origin: ``(y, x)`` of the crop's top-left pixel in the image.
        peak: ``(x, y)`` image pixel of the largest distance (first in row-major order).
        peak_value: the largest distance, ``d_max``.
    """

    squared: np.ndarray
    origin: tuple[int, int]
    peak: tuple[int, int]
    peak_value: float

    @property
    def distance(self) -> np.ndarray:
        """``h x w`` float64 distances (what ``scipy.ndimage.distance_transform_edt`` gives)."""
        return np.sqrt(self.squared, dtype=np.float64)


def squared_distance_transform(binary: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance of each non-zero pixel to the nearest zero pixel.

    Args:
        binary: ``h x w`` bool array.

    Returns:
        ``h x w`` int32 array; its square root is ``distance_transform_edt(binary)``.
    """
    nearest = distance_transform_edt(binary, return_distances=False, return_indices=True)
    dy, dx = nearest  # int32 row / column of the nearest zero pixel, reused in place
    dy -= np.arange(binary.shape[0], dtype=np.int32)[:, None]
    dx -= np.arange(binary.shape[1], dtype=np.int32)[None, :]
    np.multiply(dy, dy, out=dy)
    np.multiply(dx, dx, out=dx)
    dy += dx
    return dy


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
        padded = squared_distance_transform(np.pad(crop, 1, constant_values=False))
        squared = np.ascontiguousarray(padded[1:-1, 1:-1])
    else:
        squared = squared_distance_transform(crop)
    py, px = _first_peak(squared)
    return InteriorDistance(
        squared=squared,
        origin=(top, left),
        peak=(left + px, top + py),
        peak_value=math.sqrt(int(squared[py, px])),
    )


def negative_point(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int] | None:
    """``(x, y)`` of the pixel in the inclusive box farthest from the mask, or None.

    None when the box holds no background pixel (a full rectangle): there is then no
    sensible negative point, and the reference's (0, 0) would mislead SAM. Ties go to the
    first pixel in row-major order.

    Only the maximum is needed, so instead of a distance transform of the whole box this
    searches exactly by branch and bound: distances to the mask are measured with a k-d
    tree of the mask's boundary pixels (the nearest mask pixel of a background pixel of
    the box is always one of them). The box is cut into cells, coarse to fine
    (``_CELLS``); one pixel per cell is measured, which bounds the whole cell (no pixel
    is more than half the cell's diagonal farther than it), and only the cells that could
    hold the maximum are cut further; at the end every pixel of the remaining cells is
    measured. Small boxes and ragged masks (long boundaries) use the distance transform
    instead, which is cheaper there; both give the same, exact answer.
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
        return _farthest_by_transform(background, x1, y1)
    tree = cKDTree(boundary)
    h, w = crop.shape

    # Top-left (y, x) corners of the cells still in the running; first the coarsest grid.
    side = _CELLS[0]
    grid = np.mgrid[0:h:side, 0:w:side].reshape(2, -1).T
    lower = 0.0  # distance of the farthest background pixel measured so far
    for k, side in enumerate(_CELLS):
        samples = np.minimum(grid + side // 2, (h - 1, w - 1))
        dist = np.zeros(len(samples))  # mask samples are at distance 0
        bg = background[samples[:, 0], samples[:, 1]]
        if bg.any():
            dist[bg] = tree.query(samples[bg])[0]
            lower = max(lower, float(dist.max()))
        # Every pixel of a cell is within half its diagonal of the sample (per axis at
        # most side / 2 away); a little slack covers rounding in the tree's distances.
        reach = math.hypot(side / 2, side / 2) + 1e-6
        grid = grid[dist + reach >= lower]
        finer = _CELLS[k + 1] if k + 1 < len(_CELLS) else 1
        offsets = np.mgrid[0:side:finer, 0:side:finer].reshape(2, -1).T
        grid = (grid[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
        grid = grid[(grid[:, 0] < h) & (grid[:, 1] < w)]
    pixels = grid[background[grid[:, 0], grid[:, 1]]]
    if len(pixels) * _SEARCH_MIN_RATIO > crop.size:
        return _farthest_by_transform(background, x1, y1)  # bounds pruned too little
    dist = tree.query(pixels)[0]
    best = pixels[dist == dist.max()]
    py, px = best[np.lexsort((best[:, 1], best[:, 0]))[0]]  # first in row-major order
    return x1 + int(px), y1 + int(py)


def _farthest_by_transform(background: np.ndarray, x1: int, y1: int) -> tuple[int, int]:
    """First maximum of the distance transform of ``background`` (a box crop)."""
    py, px = _first_peak(squared_distance_transform(background))
    return x1 + px, y1 + py


def _first_peak(values: np.ndarray) -> tuple[int, int]:
    """``(y, x)`` of the largest value of a 2-D map, the first in row-major order on ties."""
    return divmod(int(np.argmax(values)), values.shape[1])
