"""Mask quality metrics: arrays in, numbers out.

Per object:

* :func:`mask_iou` — intersection over union (two empty masks: 1).
* :func:`boundary_iou` — Boundary IoU (Cheng et al., CVPR 2021): IoU restricted to the
  band of each mask lying within ``d = round(dilation_ratio x image diagonal)`` pixels
  (chessboard distance, at least 1) of its contour, pixels outside the image counting as
  background, so objects cut by the image border have a boundary there too.
* :func:`boundary_accuracy` — mBA as defined by CascadePSP (Cheng et al., CVPR 2020):
  pixel accuracy inside the band ``dilate(gt) - erode(gt)`` around the ground-truth
  contour, averaged over five disk radii from 1 to ``(H + W) / 300``. As in the
  reference (OpenCV's default borders) the image border is not a contour for mBA.

Per dataset, :func:`aggregate` reports each metric both as the mean of per-object values
and, for the IoUs, as total intersection / total union, overall and by COCO object size
of the ground truth (small < 32², medium < 96², large otherwise).

All masks are ``H x W`` arrays (bool, or values that are zero / non-zero).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from samrefiner.io.masks import mask_bbox, mask_iou

__all__ = [
    "SIZE_BUCKETS",
    "ObjectScores",
    "aggregate",
    "boundary_accuracy",
    "boundary_iou",
    "boundary_width",
    "mask_boundary",
    "mask_iou",
    "mba_radii",
    "score_object",
    "size_bucket",
]

#: COCO area ranges of the ground-truth mask, in pixels: [lo, hi).
SIZE_BUCKETS: dict[str, tuple[float, float]] = {
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, math.inf),
}


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a).astype(bool, copy=False)
    b = np.asarray(b).astype(bool, copy=False)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two H x W masks of the same shape, got {a.shape} and {b.shape}")
    return a, b


def _union_crop(*masks: np.ndarray, pad: int = 0) -> tuple[slice, slice] | None:
    """Slices of the union bounding box of ``masks`` grown by ``pad`` (None: all empty)."""
    box = mask_bbox(np.logical_or.reduce(masks))
    if box is None:
        return None
    h, w = masks[0].shape
    x1, y1, x2, y2 = box
    return (
        slice(max(y1 - pad, 0), min(y2 + pad + 1, h)),
        slice(max(x1 - pad, 0), min(x2 + pad + 1, w)),
    )


def boundary_width(shape: tuple[int, int], dilation_ratio: float = 0.02) -> int:
    """Boundary IoU band width in pixels for an image of ``shape`` = ``(H, W)``: >= 1."""
    if not dilation_ratio > 0:
        raise ValueError(f"dilation_ratio must be > 0, got {dilation_ratio!r}")
    h, w = shape[:2]
    return max(1, round(dilation_ratio * math.hypot(h, w)))


def mask_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within chessboard distance ``width`` of the background.

    Pixels outside the image count as background. Returns an ``H x W`` bool array.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    u8 = mask.astype(np.uint8)
    # A (2w+1)-square kernel equals w passes of the 3x3 one; the constant-0 border makes
    # the image edge a contour, as in the Boundary IoU reference.
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    eroded = cv2.erode(u8, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & (eroded == 0)


def _boundary_counts(a: np.ndarray, b: np.ndarray, width: int) -> tuple[int, int]:
    """(intersection, union) of the boundary bands of ``a`` and ``b``."""
    # Cropping to the union box is exact: outside it both masks are background, which is
    # also what the constant-0 border assumes.
    crop = _union_crop(a, b)
    if crop is None:
        return 0, 0
    ba = mask_boundary(a[crop], width)
    bb = mask_boundary(b[crop], width)
    return int(np.count_nonzero(ba & bb)), int(np.count_nonzero(ba | bb))


def boundary_iou(a: np.ndarray, b: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two ``H x W`` masks; two empty masks have Boundary IoU 1."""
    a, b = _pair(a, b)
    inter, union = _boundary_counts(a, b, boundary_width(a.shape, dilation_ratio))
    return 1.0 if union == 0 else inter / union


def mba_radii(shape: tuple[int, int]) -> list[int]:
    """The five disk radii mBA averages over, for an image of ``shape`` = ``(H, W)``."""
    h, w = shape[:2]
    steps, lo, hi = 5, 1, (h + w) / 300.0
    return [lo + int((hi - lo) / steps * i) for i in range(steps)]


def boundary_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """mBA of ``pred`` against ``gt`` (both ``H x W``), in [0, 1].

    At each radius r the band is the morphological gradient of ``gt`` with a disk of
    radius r; the score is the share of band pixels where ``pred`` equals ``gt``. Where the
    band is empty (``gt`` empty or covering the whole image) the score at that radius is 1
    when ``pred`` equals ``gt`` everywhere and 0 otherwise.
    """
    pred, gt = _pair(pred, gt)
    radii = mba_radii(gt.shape)
    # Outside gt's box grown by the largest radius the band is empty, so the crop is exact.
    crop = _union_crop(gt, pad=max(radii) + 1)
    equal = bool(np.array_equal(pred, gt))
    if crop is None:
        return 1.0 if equal else 0.0
    g = gt[crop].astype(np.uint8)
    p = pred[crop]
    scores = []
    for r in radii:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        band = cv2.morphologyEx(g, cv2.MORPH_GRADIENT, kernel) > 0
        n = int(np.count_nonzero(band))
        if n == 0:
            scores.append(1.0 if equal else 0.0)
        else:
            scores.append(np.count_nonzero(p[band] == g.astype(bool)[band]) / n)
    return float(np.mean(scores))


def size_bucket(area: float) -> str:
    """COCO size name (``small`` / ``medium`` / ``large``) of a ground-truth area in px."""
    for name, (lo, hi) in SIZE_BUCKETS.items():
        if lo <= area < hi:
            return name
    raise ValueError(f"area must be >= 0, got {area!r}")


@dataclass(frozen=True)
class ObjectScores:
    """Metrics of one predicted mask against its ground truth.

    Attributes:
        iou: Mask IoU.
        boundary_iou: Boundary IoU (dilation ratio 0.02 unless said otherwise).
        mba: CascadePSP mean boundary accuracy.
        intersection, union: Pixel counts behind ``iou``.
        boundary_intersection, boundary_union: Pixel counts behind ``boundary_iou``.
        gt_area: Ground-truth area in pixels (decides the size bucket).
    """

    iou: float
    boundary_iou: float
    mba: float
    intersection: int
    union: int
    boundary_intersection: int
    boundary_union: int
    gt_area: int

    def __post_init__(self) -> None:
        for name in ("iou", "boundary_iou", "mba"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        counts = (self.intersection, self.union, self.boundary_intersection)
        if min(*counts, self.boundary_union, self.gt_area) < 0:
            raise ValueError("pixel counts must be >= 0")
        if self.intersection > self.union or self.boundary_intersection > self.boundary_union:
            raise ValueError("an intersection cannot exceed its union")

    @property
    def size(self) -> str:
        """COCO size bucket of the ground truth."""
        return size_bucket(self.gt_area)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with the size bucket."""
        return {**asdict(self), "size": self.size}


def score_object(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02) -> ObjectScores:
    """All per-object metrics of ``pred`` against ``gt`` (``H x W`` masks)."""
    pred, gt = _pair(pred, gt)
    crop = _union_crop(pred, gt)
    if crop is None:
        inter = union = 0
    else:
        inter = int(np.count_nonzero(pred[crop] & gt[crop]))
        union = int(np.count_nonzero(pred[crop] | gt[crop]))
    b_inter, b_union = _boundary_counts(pred, gt, boundary_width(gt.shape, dilation_ratio))
    return ObjectScores(
        iou=1.0 if union == 0 else inter / union,
        boundary_iou=1.0 if b_union == 0 else b_inter / b_union,
        mba=boundary_accuracy(pred, gt),
        intersection=inter,
        union=union,
        boundary_intersection=b_inter,
        boundary_union=b_union,
        gt_area=int(np.count_nonzero(gt)),
    )


def _summarise(scores: Sequence[ObjectScores]) -> dict[str, float | int | None]:
    if not scores:
        return {
            "count": 0,
            "mean_iou": None,
            "total_iou": None,
            "mean_boundary_iou": None,
            "total_boundary_iou": None,
            "mean_mba": None,
        }
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    b_inter = sum(s.boundary_intersection for s in scores)
    b_union = sum(s.boundary_union for s in scores)
    return {
        "count": len(scores),
        "mean_iou": float(np.mean([s.iou for s in scores])),
        # All-empty sets follow the per-object rule: nothing to get wrong scores 1.
        "total_iou": 1.0 if union == 0 else inter / union,
        "mean_boundary_iou": float(np.mean([s.boundary_iou for s in scores])),
        "total_boundary_iou": 1.0 if b_union == 0 else b_inter / b_union,
        "mean_mba": float(np.mean([s.mba for s in scores])),
    }


def aggregate(scores: Iterable[ObjectScores]) -> dict[str, dict[str, float | int | None]]:
    """Dataset figures: ``{"all" | "small" | "medium" | "large": summary}``.

    Each summary holds ``count``, ``mean_iou`` (mean of per-object IoU), ``total_iou``
    (sum of intersections / sum of unions), the same two for Boundary IoU, and
    ``mean_mba``; the figures are None for an empty group.
    """
    items = list(scores)
    out = {"all": _summarise(items)}
    for name in SIZE_BUCKETS:
        out[name] = _summarise([s for s in items if s.size == name])
    return out
