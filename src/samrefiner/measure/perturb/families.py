"""Degradation families: each turns a ground-truth mask into a coarse one in one way.

Every family is a function ``(mask, strength, rng) -> mask`` on ``H x W`` bool masks,
``strength`` in [0, 1] (0 leaves the mask unchanged, 1 is the strongest degradation the
family models), sizes relative to the object's scale ``sqrt(area)``:

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

:func:`apply` chains families on a crop around the object.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from scipy import ndimage

from samrefiner.io.masks import mask_bbox

Family = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def object_rng(seed: int, key: str = "", index: int = 0) -> np.random.Generator:
    """Random stream for object ``index`` of item ``key`` (e.g. a file name) under ``seed``."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(key.encode()), index])
    )


def _scale(mask: np.ndarray) -> float:
    return math.sqrt(max(int(np.count_nonzero(mask)), 1))


def _edt(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest False pixel (0 on False pixels)."""
    # OpenCV's exact transform equals scipy's distance_transform_edt, several times faster.
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside (distance to background), negative outside (minus distance to mask)."""
    inside = _edt(mask)
    outside = _edt(~mask)
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
    dist = _edt(~mask)
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
    inside = _edt(mask)
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
