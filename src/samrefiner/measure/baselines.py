"""Classical refinement baseline that needs no weights: mask-initialised GrabCut."""

from __future__ import annotations

import math

import cv2
import numpy as np

from samrefiner.io.masks import mask_bbox


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grabcut_refine(image: np.ndarray, mask: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Refine one coarse mask with OpenCV's GrabCut, initialised from the mask.

    The trimap is drawn from the coarse mask, in a crop around it: its core (eroded by
    10% of the object scale) is sure foreground, the rest of it probable foreground, a
    band of the same width around it probable background, and everything farther sure
    background. An empty mask, or one GrabCut cannot model (too few pixels of one
    side), is returned unchanged.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        mask: ``H x W`` bool coarse mask.
        iterations: GrabCut iterations.

    Returns:
        ``H x W`` bool refined mask.
    """
    image = np.asarray(image)
    mask = np.asarray(mask).astype(bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != mask.shape:
        raise ValueError(
            f"expected an H x W x 3 image and an H x W mask, got {image.shape}, {mask.shape}"
        )
    box = mask_bbox(mask)
    if box is None:
        return mask.copy()
    h, w = mask.shape
    band = max(2, round(0.1 * math.sqrt(mask.sum())))
    pad = 2 * band + 4
    x1, y1, x2, y2 = box
    ys = slice(max(0, y1 - pad), min(h, y2 + pad + 1))
    xs = slice(max(0, x1 - pad), min(w, x2 + pad + 1))
    part = mask[ys, xs].astype(np.uint8)
    trimap = np.full(part.shape, cv2.GC_BGD, np.uint8)
    trimap[cv2.dilate(part, _disk(band)) > 0] = cv2.GC_PR_BGD
    trimap[part > 0] = cv2.GC_PR_FGD
    trimap[cv2.erode(part, _disk(band)) > 0] = cv2.GC_FGD
    fg = np.isin(trimap, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if fg.sum() < 2 or (~fg).sum() < 2:
        return mask.copy()
    bgr = np.ascontiguousarray(image[ys, xs, ::-1])
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(bgr, trimap, None, bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        # GrabCut's GMM fit fails on degenerate colour sets (e.g. a flat crop).
        return mask.copy()
    out = np.zeros_like(mask)
    out[ys, xs] = np.isin(trimap, (cv2.GC_FGD, cv2.GC_PR_FGD))
    return out
