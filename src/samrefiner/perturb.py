"""Synthetic coarse masks: degrade a ground-truth mask the ways real coarse masks are wrong.

Every family is a function ``(mask, strength, rng) -> mask`` on ``H x W`` bool masks,
``strength`` in [0, 1] (0 leaves the mask unchanged, 1 is the strongest degradation the
family models) and sizes relative to the object's scale ``sqrt(area)``:

========================  ===============================================================
``boundary_noise``        random local dilation / erosion along the contour (smooth noise
                          added to the signed distance)
``dilate`` / ``erode``    global dilation / erosion by up to 12% of the object scale
``polygon``               coarse polygon annotation: simplified, jittered outer contour
``lowres``                semantic-segmentation output at 1/4 (0) to 1/16 (1) resolution
``mask_head``             detector mask head: 28 x 28 mask in a jittered box, upsampled
``missing_part``          a chunk of up to 35% of the area cut away at the contour
``spurious_blobs``        false-positive blobs near the object, up to 30% of its area
``holes``                 holes inside the object, up to 20% of its area
========================  ===============================================================

:func:`synthesize` draws one or two families and, by default, tunes their strengths so
that the coarse-vs-GT IoU hits a target drawn uniformly from ``iou_range`` (0.5 to 0.9).
Everything is deterministic given the seed: :func:`object_rng` derives an independent
stream per ``(seed, key, object index)``, so one object's coarse mask does not depend on
which other objects were synthesized before it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from samrefiner.masks import mask_bbox, mask_iou

Family = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def object_rng(seed: int, key: str = "", index: int = 0) -> np.random.Generator:
    """Random stream for object ``index`` of item ``key`` (e.g. a file name) under ``seed``."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(key.encode()), index])
    )


def _scale(mask: np.ndarray) -> float:
    return math.sqrt(max(int(np.count_nonzero(mask)), 1))


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside (distance to background), negative outside (minus distance to mask)."""
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    # Half a pixel either side of the contour, so zero noise reproduces the mask exactly.
    return np.where(mask, inside - 0.5, 0.5 - outside)


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise smooth over about ``sigma`` px, ``shape`` = ``(H, W)``."""
    # Filtering white noise on a grid 4x coarser than sigma, then upsampling, gives the
    # same kind of field as filtering at full resolution for a fraction of the cost.
    step = max(1.0, sigma / 4.0)
    h, w = shape
    coarse = rng.standard_normal((math.ceil(h / step) + 1, math.ceil(w / step) + 1))
    coarse = ndimage.gaussian_filter(coarse, sigma / step, mode="wrap")
    noise = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    std = float(noise.std())
    return noise / std if std > 0 else noise


def boundary_noise(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Move the contour in and out by smooth noise of amplitude ``strength`` x 15% scale."""
    scale = _scale(mask)
    noise = _smooth_noise(mask.shape, max(2.0, 0.08 * scale), rng)
    return _signed_distance(mask) + strength * 0.15 * scale * noise > 0


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _morph_radius(mask: np.ndarray, strength: float) -> int:
    return round(strength * 0.12 * _scale(mask))


def dilate(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Grow the mask by a disk of radius ``strength`` x 12% of the object scale."""
    r = _morph_radius(mask, strength)
    if r < 1:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), _disk(r)).astype(bool)


def erode(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Shrink the mask by a disk of radius ``strength`` x 12% of the object scale.

    The image border is not treated as background: an object cut by the border keeps it.
    """
    r = _morph_radius(mask, strength)
    if r < 1:
        return mask.copy()
    return cv2.erode(mask.astype(np.uint8), _disk(r)).astype(bool)


def polygon(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Outer contours simplified (Douglas-Peucker, tolerance up to 8% scale) and jittered.

    Holes are lost, as in click-by-click polygon annotation.
    """
    scale = _scale(mask)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.zeros(mask.shape, np.uint8)
    polys = []
    for contour in contours:
        poly = cv2.approxPolyDP(contour, max(0.5, strength * 0.08 * scale), True)
        pts = poly.reshape(-1, 2).astype(np.float64)
        pts += rng.normal(0.0, strength * 0.02 * scale, pts.shape)
        polys.append(np.round(pts).astype(np.int32))
    cv2.fillPoly(out, polys, 1)
    return out.astype(bool)


def lowres(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Down-sample by 4 (strength 0) to 16 (strength 1), up-sample bilinearly, threshold."""
    factor = 2.0 ** (2.0 + 2.0 * strength)
    h, w = mask.shape
    small = cv2.resize(
        mask.astype(np.float32),
        (max(1, math.ceil(w / factor)), max(1, math.ceil(h / factor))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5


def mask_head(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A 28 x 28 soft mask in a jittered box (as Mask R-CNN predicts), pasted back."""
    box = mask_bbox(mask)
    if box is None:
        return mask.copy()
    h, w = mask.shape
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    jitter = rng.normal(0.0, strength * 0.08, 4) * np.array([bw, bh, bw, bh])
    nx1, ny1 = round(x1 + jitter[0]), round(y1 + jitter[1])
    nx2 = max(nx1, round(x2 + jitter[2]))
    ny2 = max(ny1, round(y2 + jitter[3]))
    # The box may leave the image: read the mask through a zero-padded window.
    pad = max(0, -nx1, -ny1, nx2 - w + 1, ny2 - h + 1)
    padded = np.pad(mask.astype(np.float32), pad)
    window = padded[ny1 + pad : ny2 + pad + 1, nx1 + pad : nx2 + pad + 1]
    head = cv2.resize(window, (28, 28), interpolation=cv2.INTER_AREA)
    head = cv2.GaussianBlur(head, (0, 0), 0.5 + 1.5 * strength)
    up = cv2.resize(head, (window.shape[1], window.shape[0]), interpolation=cv2.INTER_LINEAR)
    out = np.zeros_like(padded, dtype=bool)
    out[ny1 + pad : ny2 + pad + 1, nx1 + pad : nx2 + pad + 1] = up >= 0.5
    return out[pad : pad + h, pad : pad + w]


def missing_part(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Cut away the ``strength`` x 35% of the area closest to a random contour pixel."""
    ys, xs = np.nonzero(mask)
    count = int(strength * 0.35 * len(ys))
    if count < 1:
        return mask.copy()
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ey, ex = np.nonzero(edge if edge.any() else mask)
    i = rng.integers(len(ey))
    dist = (ys - ey[i]) ** 2 + (xs - ex[i]) ** 2
    cut = np.argpartition(dist, count - 1)[:count]
    out = mask.copy()
    out[ys[cut], xs[cut]] = False
    return out


def _ellipse(
    shape: tuple[int, int], center: tuple[int, int], area: float, rng: np.random.Generator
) -> np.ndarray:
    ratio = rng.uniform(0.5, 1.0)
    a = math.sqrt(area / (math.pi * ratio))
    axes = (max(1, round(a)), max(1, round(a * ratio)))
    out = np.zeros(shape, np.uint8)
    cv2.ellipse(out, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return out.astype(bool)


def spurious_blobs(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Add 1 to 3 blobs, ``strength`` x 30% of the area in all, within 25% scale of it."""
    area = int(np.count_nonzero(mask))
    total = strength * 0.3 * area
    if total < 1:
        return mask.copy()
    reach = 0.25 * _scale(mask) + 2
    dist = ndimage.distance_transform_edt(~mask)
    ring_y, ring_x = np.nonzero((dist > 0) & (dist <= reach))
    if len(ring_y) == 0:
        return mask.copy()
    out = mask.copy()
    k = int(rng.integers(1, 4))
    for _ in range(k):
        i = rng.integers(len(ring_y))
        out |= _ellipse(mask.shape, (int(ring_x[i]), int(ring_y[i])), total / k, rng)
    return out


def holes(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Punch 1 to 3 holes inside the object, ``strength`` x 20% of its area in all."""
    area = int(np.count_nonzero(mask))
    total = strength * 0.2 * area
    if total < 1:
        return mask.copy()
    inside = ndimage.distance_transform_edt(mask)
    out = mask.copy()
    k = int(rng.integers(1, 4))
    for _ in range(k):
        radius = math.sqrt(total / k / math.pi)
        ys, xs = np.nonzero(inside > radius + 1)
        if len(ys) == 0:
            # Too thin for a hole this big: make the largest that still fits inside.
            radius = float(inside.max()) - 1.5
            if radius < 1:
                break
            ys, xs = np.nonzero(inside >= inside.max())
        i = rng.integers(len(ys))
        out &= ~_ellipse(mask.shape, (int(xs[i]), int(ys[i])), math.pi * radius**2, rng)
    return out


#: Every family by name.
FAMILIES: dict[str, Family] = {
    "boundary_noise": boundary_noise,
    "dilate": dilate,
    "erode": erode,
    "polygon": polygon,
    "lowres": lowres,
    "mask_head": mask_head,
    "missing_part": missing_part,
    "spurious_blobs": spurious_blobs,
    "holes": holes,
}


def _crop_slices(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The object's box grown by 60% of its scale + 8 px: room for every family to act."""
    box = mask_bbox(mask)
    if box is None:
        return None
    margin = math.ceil(0.6 * _scale(mask)) + 8
    h, w = mask.shape
    x1, y1, x2, y2 = box
    return (
        slice(max(0, y1 - margin), min(h, y2 + margin + 1)),
        slice(max(0, x1 - margin), min(w, x2 + margin + 1)),
    )


def apply(
    mask: np.ndarray, steps: Sequence[tuple[str, float]], rng: np.random.Generator
) -> np.ndarray:
    """Apply families ``steps`` = ``[(name, strength), ...]`` in order to an ``H x W`` mask.

    Work happens in a crop around the object (large images stay cheap); an empty mask is
    returned unchanged. Returns a new ``H x W`` bool mask.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    for name, strength in steps:
        if name not in FAMILIES:
            raise ValueError(f"unknown perturbation family {name!r}; known: {sorted(FAMILIES)}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength of {name} must be in [0, 1], got {strength!r}")
    crop = _crop_slices(mask)
    if crop is None:
        return mask.copy()
    part = mask[crop]
    for name, strength in steps:
        if part.any():
            part = FAMILIES[name](part, float(strength), rng)
    out = np.zeros_like(mask)
    out[crop] = part
    return out


#: How often :func:`synthesize` draws each family by default: contour errors most often.
DEFAULT_WEIGHTS: dict[str, float] = {
    **dict.fromkeys(FAMILIES, 1.0),
    **{"boundary_noise": 3.0, "polygon": 2.0, "lowres": 2.0, "mask_head": 2.0},
}


@dataclass(frozen=True)
class CoarseSpec:
    """How :func:`synthesize` degrades a mask.

    Attributes:
        weights: Family name -> probability weight of being drawn.
        max_families: Most families combined on one object (1 or more).
        iou_range: ``(lo, hi)`` coarse-vs-GT IoU targets are drawn from; None draws the
            strengths uniformly instead and leaves the IoU where it falls.
    """

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    max_families: int = 2
    iou_range: tuple[float, float] | None = (0.5, 0.9)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown perturbation families {unknown}; known: {sorted(FAMILIES)}")
        if not self.weights or min(self.weights.values()) < 0 or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        if self.max_families < 1:
            raise ValueError(f"max_families must be >= 1, got {self.max_families}")
        if self.iou_range is not None:
            lo, hi = self.iou_range
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"iou_range must satisfy 0 <= lo <= hi <= 1, got {self.iou_range}")


#: Families that can lower the IoU of any object as far as needed; one of them is
#: appended when the drawn families, at full strength, stay above the target.
TOP_UP_FAMILIES: tuple[str, ...] = ("boundary_noise", "dilate", "erode")

_Trial = tuple[np.ndarray, list[list[Any]], float]

#: Calibration stops once the IoU is this close to its target.
IOU_TOLERANCE = 0.005


def _bisect(run: Callable[[float], _Trial], hi: float, target: float, best: _Trial) -> _Trial:
    """The trial of ``run(x)``, x in [0, hi], whose IoU is closest to ``target``.

    Assumes the IoU falls (roughly) as x grows and ``best`` (a trial at ``hi``) is
    below the target; at most 10 halvings, stopping within :data:`IOU_TOLERANCE`.
    """
    lo = 0.0
    for _ in range(10):
        mid = 0.5 * (lo + hi)
        trial = run(mid)
        if abs(trial[2] - target) < abs(best[2] - target):
            best = trial
        if abs(best[2] - target) <= IOU_TOLERANCE:
            break
        lo, hi = (mid, hi) if trial[2] > target else (lo, mid)
    return best


def synthesize(
    mask: np.ndarray, rng: np.random.Generator, spec: CoarseSpec | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One coarse version of an ``H x W`` ground-truth mask.

    Returns the coarse mask and a record ``{"steps": [[name, strength], ...], "iou": x,
    "target_iou": t}`` (``target_iou`` None without calibration). With ``spec.iou_range``
    the drawn families' strengths are scaled together by bisection toward the target;
    when even full strength stays above it (a low-resolution mask of a big, simple object
    is still good), a family of :data:`TOP_UP_FAMILIES` is appended and its strength
    bisected in turn. Objects too small to reach the target get the closest IoU found.
    """
    spec = spec or CoarseSpec()
    mask = np.asarray(mask).astype(bool)
    names = sorted(spec.weights)
    p = np.array([spec.weights[n] for n in names], dtype=np.float64)
    k = min(int(rng.integers(1, spec.max_families + 1)), int(np.count_nonzero(p)))
    chosen = [str(n) for n in rng.choice(names, size=k, replace=False, p=p / p.sum())]
    base = rng.uniform(0.5, 1.0, k)
    top_up = str(rng.choice(TOP_UP_FAMILIES))
    free = float(rng.uniform(0.0, 1.0))
    target = float(rng.uniform(*spec.iou_range)) if spec.iou_range is not None else None
    # Every trial replays the same random draws, so the IoU varies (almost) monotonically
    # with the strengths alone.
    state = int(rng.integers(2**63))

    def run(t: float, extra: float = 0.0) -> _Trial:
        steps = [[n, float(min(1.0, t * b))] for n, b in zip(chosen, base, strict=True)]
        if extra > 0:
            steps.append([top_up, float(extra)])
        out = apply(mask, [(n, st) for n, st in steps], np.random.default_rng(state))
        return out, steps, mask_iou(out, mask)

    if target is None:
        out, steps, iou = run(free / float(base.max()))
    else:
        full = 1.0 / float(base.min())
        out, steps, iou = trial = run(full)
        if iou < target:
            out, steps, iou = _bisect(run, full, target, trial)
        elif iou > target + 0.02:
            top = run(full, 1.0)
            out, steps, iou = _bisect(lambda e: run(full, e), 1.0, target, top)
    return out, {"steps": steps, "iou": iou, "target_iou": target}


def synthesize_stack(
    masks: np.ndarray, seed: int, key: str = "", spec: CoarseSpec | None = None
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Coarse versions of an ``N x H x W`` stack; object ``i`` uses ``object_rng(seed, key, i)``."""
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be N x H x W, got shape {masks.shape}")
    out = np.zeros_like(masks)
    records = []
    for i, m in enumerate(masks):
        out[i], rec = synthesize(m, object_rng(seed, key, i), spec)
        records.append(rec)
    return out, records
