"""Gaussian-weighted mask prompt in the model's low-res frame."""

from __future__ import annotations

import numpy as np

from samrefiner.excavation.distance import InteriorDistance
from samrefiner.geometry import Frame

# Low-res cells whose interpolated mask value is exactly one half (half object, half
# background) go to background, as the reference's "<= 0" on ±1 logits does; the epsilon
# absorbs float rounding of the composed resize so such ties do not flip at random.
_HALF = 0.5 + 1e-6


def gaussian_weights(interior: InteriorDistance, area: int, gamma: float) -> np.ndarray:
    """``G = exp(-(d - d_max)^2 / max(area / gamma, 1))`` inside the mask, 0 outside.

    Returned on the crop of ``interior`` (same shape and origin as its distance map).
    """
    squared = interior.squared
    variance = max(area / gamma, 1.0)
    # float32 is ample for weights in [0, 1] and halves the work on large crops.
    g = np.sqrt(squared, dtype=np.float32)
    g -= np.float32(interior.peak_value)
    np.square(g, out=g)
    g *= np.float32(-1.0 / variance)
    np.exp(g, out=g)
    g[squared == 0] = 0.0
    return g


def mask_prompt_logits(
    mask: np.ndarray,
    box: tuple[int, int, int, int],
    interior: InteriorDistance,
    frame: Frame,
    *,
    gamma: float,
    amplitude: float,
) -> np.ndarray:
    """The coarse mask as SAM mask-prompt logits, ``low_h x low_w`` float32.

    The mask (as ±1) and its Gaussian weights are carried to the low-res frame by the
    model's own resize / pad chain; the sign of the resized mask decides ±``amplitude``,
    scaled by the resized weights (weights <= 0, i.e. background, count as 1).
    """
    x1, y1, x2, y2 = box
    crop = mask[y1 : y2 + 1, x1 : x2 + 1]
    inside = _to_low_res(crop, (y1, x1), frame) > _HALF

    g = gaussian_weights(interior, int(np.count_nonzero(crop)), gamma)
    weights = _to_low_res(g, interior.origin, frame)
    weights[weights <= 0] = 1.0
    return np.where(inside, amplitude, -amplitude).astype(np.float32) * weights


def _to_low_res(crop: np.ndarray, origin: tuple[int, int], frame: Frame) -> np.ndarray:
    """Carry an image crop (zero outside it) at ``origin`` ``(y, x)`` to the low-res grid."""
    top, left = origin
    rows, cols = frame.rows_to_low_res, frame.cols_to_low_res
    out = np.zeros((rows.n_out, cols.n_out), dtype=np.float32)
    row_win = rows.reach(top, top + crop.shape[0])
    col_win = cols.reach(left, left + crop.shape[1])
    if row_win.stop == row_win.start or col_win.stop == col_win.start:
        return out
    part = rows.apply(crop, 0, src_start=top, out=row_win)
    part = cols.apply(part, 1, src_start=left, out=col_win)
    out[row_win.start : row_win.stop, col_win.start : col_win.stop] = part
    return out
