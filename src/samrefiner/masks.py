"""Old import path of :mod:`samrefiner.io.masks`, kept for callers: it re-exports it."""

from samrefiner.io.masks import (
    as_binary_mask,
    as_box_array,
    as_mask_stack,
    as_rgb_image,
    box_masks,
    mask_bbox,
    mask_iou,
)

__all__ = [
    "as_binary_mask",
    "as_box_array",
    "as_mask_stack",
    "as_rgb_image",
    "box_masks",
    "mask_bbox",
    "mask_iou",
]
