"""Detections against coarse objects: which detections a coarse set misses, which coarse
objects no detection supports, and which class names a class-agnostic object.

The rules (class-agnostic: a detection of another class on the same object still counts,
so a misnamed object is never added twice):

* a detection and a coarse object **match** when the detection's box and the coarse
  mask's bounding box have an IoU of at least ``box_iou``, or when at least ``overlap``
  of the detection's region (its mask when the detector gives one, else its filled box)
  lies on the coarse mask;
* a detection that matches no coarse object is **missed** (``complete`` adds it);
* a coarse object that matches no detection is **unsupported** (flagged, never removed);
* a coarse object is **named** after the matching detection with the highest box IoU
  (then score); one that matches none gets no name, and the score and box IoU of the
  detection overlapping it most are recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from samrefiner.crops import MaskCrops, as_crops
from samrefiner.detectors.base import Detections
from samrefiner.io.masks import box_masks


@dataclass(frozen=True)
class MatchSettings:
    """The thresholds of a match (see the module).

    Attributes:
        box_iou: box IoU at or above which a detection matches a coarse object (0..1).
        overlap: share of the detection's region on the coarse mask at or above which
            they match (0..1; above 1 turns the rule off).
    """

    box_iou: float = 0.5
    overlap: float = 0.5

    def __post_init__(self) -> None:
        for name in ("box_iou", "overlap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


class Naming(NamedTuple):
    """A coarse object's name: ``cls`` (None: no detection matches it), the score of the
    detection it comes from (or of the one overlapping it most) and their box IoU."""

    cls: str | None
    score: float
    box_iou: float


@dataclass
class Matching:
    """How ``D`` detections and ``N`` coarse objects of one image match.

    Attributes:
        matches: ``N x D`` bool, True where object and detection match.
        box_iou: ``N x D`` float32 box IoUs.
    """

    matches: np.ndarray
    box_iou: np.ndarray

    @property
    def missed(self) -> np.ndarray:
        """``D`` bool: detections that match no coarse object."""
        return ~self.matches.any(axis=0)

    @property
    def unsupported(self) -> np.ndarray:
        """``N`` bool: coarse objects that no detection matches."""
        return ~self.matches.any(axis=1)

    def names(self, detections: Detections) -> list[Naming]:
        """``N`` :class:`Naming`: each object's best matching detection (highest box IoU,
        then score); for an object without one, no class, and the score and box IoU of
        the detection whose box overlaps it most (0 and 0 when none does)."""
        out: list[Naming] = []
        for n in range(len(self.matches)):
            hits = np.flatnonzero(self.matches[n])
            named = len(hits) > 0
            pool = hits if named else np.flatnonzero(self.box_iou[n] > 0)
            if len(pool) == 0:
                out.append(Naming(None, 0.0, 0.0))
                continue
            d = min(pool, key=lambda d: (-self.box_iou[n, d], -detections.scores[d], d))
            cls = detections.classes[int(detections.labels[d])] if named else None
            out.append(
                Naming(
                    cls, round(float(detections.scores[d]), 6), round(float(self.box_iou[n, d]), 6)
                )
            )
        return out


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``len(a) x len(b)`` IoUs of inclusive-pixel XYXY boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, np.float64).reshape(1, -1, 4)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih

    def area(x: np.ndarray) -> np.ndarray:
        return (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)

    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def match(
    coarse: MaskCrops | np.ndarray,
    detections: Detections,
    settings: MatchSettings | None = None,
) -> Matching:
    """Match ``coarse`` (``N`` masks: crops or ``N x H x W`` bool) and ``detections``."""
    settings = settings or MatchSettings()
    crops = as_crops(coarse)
    n, d = len(crops), len(detections)
    boxes = np.array([_mask_box(crops.full(k)) for k in range(n)], dtype=np.float32).reshape(-1, 4)
    ious = box_iou_matrix(boxes, detections.boxes) if n and d else np.zeros((n, d), np.float32)
    matches = ious >= settings.box_iou
    if n and d and settings.overlap <= 1:
        regions = (
            detections.masks
            if detections.masks is not None
            else box_masks(detections.boxes, crops.shape)
        )
        sizes = regions.reshape(d, -1).sum(axis=1)
        for k in range(n):
            mask = crops.full(k).reshape(-1)
            on = regions.reshape(d, -1)[:, mask].sum(axis=1)
            matches[k] |= (sizes > 0) & (on >= settings.overlap * np.maximum(sizes, 1))
    return Matching(matches, ious)


def _mask_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0.0, 0.0, -1.0, -1.0]  # empty: no IoU with anything
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
