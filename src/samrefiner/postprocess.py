"""Low-res logits to image-size masks, one object's window at a time."""

from __future__ import annotations

import numpy as np

from samrefiner.geometry import Frame


def paste_mask(low_res_logits: np.ndarray, frame: Frame, out: np.ndarray) -> bool:
    """Write ``logits > 0`` at image size into ``out`` (``H x W`` bool, overwritten).

    Upsampling is linear with non-negative weights, so an image pixel can be positive
    only if one of the low-res cells it reads is positive. Only the image window reached
    from the positive cells is computed, reading every low-res cell that window depends
    on, so the result equals upsampling the whole map and thresholding it.

    Args:
        low_res_logits: ``h x w`` float32 logits of one mask in the low-res frame.
        frame: geometry of the image.
        out: ``H x W`` bool array that receives the mask.

    Returns:
        True when the mask is not empty.
    """
    out[:] = False
    positive = low_res_logits > 0
    rows_any = np.flatnonzero(positive.any(axis=1))
    if rows_any.size == 0:
        return False
    cols_any = np.flatnonzero(positive[rows_any[0] : rows_any[-1] + 1].any(axis=0))
    rows_op, cols_op = frame.rows_to_image, frame.cols_to_image
    img_rows = rows_op.reach(int(rows_any[0]), int(rows_any[-1]) + 1)
    img_cols = cols_op.reach(int(cols_any[0]), int(cols_any[-1]) + 1)
    # Every low-res cell these image rows / columns read, positive or not.
    low_rows = rows_op.window(img_rows.start, img_rows.stop)
    low_cols = cols_op.window(img_cols.start, img_cols.stop)
    block = low_res_logits[low_rows.start : low_rows.stop, low_cols.start : low_cols.stop]
    values = rows_op.apply(block, 0, src_start=low_rows.start, out=img_rows)
    values = cols_op.apply(values, 1, src_start=low_cols.start, out=img_cols)
    window = values > 0
    out[img_rows.start : img_rows.stop, img_cols.start : img_cols.stop] = window
    return bool(window.any())
