"""Validation and normalisation of the arrays users hand in, and small mask helpers."""

from __future__ import annotations

import numpy as np


def as_rgb_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as an ``H x W x 3`` uint8 RGB array.

    Accepts ``H x W`` grey, ``H x W x 1``, ``H x W x 3`` RGB and ``H x W x 4`` RGBA (alpha
    dropped). Floating-point images must lie in [0, 1] or [0, 255].
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image must be H x W, H x W x 1, H x W x 3 or H x W x 4, got shape {arr.shape}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image has no pixels: shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return np.ascontiguousarray(arr.astype(np.uint8) * 255)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("image contains NaN or infinite values")
        peak = float(arr.max()) if arr.size else 0.0
        scale = 255.0 if peak <= 1.0 else 1.0
        if arr.min() < 0 or peak * scale > 255.0 + 1e-6:
            raise ValueError(
                f"float image values must lie in [0, 1] or [0, 255], got [{arr.min()}, {peak}]"
            )
        return np.ascontiguousarray(np.round(arr * scale).astype(np.uint8))
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(
                f"integer image values must lie in [0, 255], got [{arr.min()}, {arr.max()}]"
            )
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise ValueError(f"unsupported image dtype {arr.dtype}")


def as_binary_mask(mask: np.ndarray, *, name: str = "mask") -> np.ndarray:
    """Return a bool copy of ``mask``; values must be bool, {0, 1} or {0, 255}.

    Raises:
        ValueError: naming the unexpected values, e.g. a soft mask or a label map.
    """
    arr = np.asarray(mask)
    if arr.dtype == bool:
        return arr.copy()
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: unsupported dtype {arr.dtype}")
    # Only {0, 1} or only {0, 255}: the maximum says which, and every non-zero value must
    # equal it (np.unique would sort every value: ~0.6 s for 40 full-HD masks).
    binary = arr != 0
    peak = arr.max() if arr.size else 0
    on = np.count_nonzero(binary)
    if peak in (0, 1, 255) and on == (np.count_nonzero(arr == peak) if peak else 0):
        return binary
    values = np.unique(arr)  # only to name the offending values
    shown = values[:8].tolist()
    more = "" if len(values) <= 8 else f" and {len(values) - 8} more"
    raise ValueError(
        f"{name}: binary masks must contain only 0/1 or 0/255 (or be bool), "
        f"found values {shown}{more}"
    )


def as_mask_stack(masks: np.ndarray, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Return masks as an ``N x H x W`` bool array.

    Args:
        masks: one ``H x W`` mask or an ``N x H x W`` stack (bool, 0/1 or 0/255), or a
            list of ``H x W`` masks.
        image_shape: ``(H, W)`` the masks must match, if given.
    """
    if isinstance(masks, (list, tuple)):
        if len(masks) == 0:
            if image_shape is None:
                raise ValueError("an empty list of masks needs image_shape")
            return np.zeros((0, *image_shape), dtype=bool)
        masks = np.stack([np.asarray(m) for m in masks])
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"masks must be H x W or N x H x W, got shape {arr.shape}")
    stack = as_binary_mask(arr, name="masks")
    if image_shape is not None and stack.shape[1:] != tuple(image_shape):
        raise ValueError(
            f"masks are {stack.shape[1]}x{stack.shape[2]} (H x W) but the image is "
            f"{image_shape[0]}x{image_shape[1]}"
        )
    return stack


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight inclusive ``(x1, y1, x2, y2)`` box of a 2-D mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape; two empty masks have IoU 1."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks have different shapes {a.shape} and {b.shape}")
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def as_box_array(boxes: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Return boxes as an ``N x 4`` float32 XYXY array clipped to the image.

    Args:
        boxes: ``N x 4`` (or one ``(4,)``) XYXY pixel boxes, ``x2, y2`` inclusive.
        image_shape: ``(H, W)`` of the image.

    Raises:
        ValueError: naming the box that is not finite, has ``x2 < x1`` or ``y2 < y1``, or
            lies entirely outside the image.
    """
    arr = np.asarray(boxes)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"boxes must be numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size == 0:  # no objects (e.g. a detector found none)
        arr = arr.reshape(0, 4)
    elif arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be N x 4 (XYXY), got shape {arr.shape}")
    H, W = image_shape
    for k, (x1, y1, x2, y2) in enumerate(arr):
        if not np.isfinite(arr[k]).all():
            raise ValueError(f"box {k} has a NaN or infinite coordinate: {arr[k].tolist()}")
        if x2 < x1 or y2 < y1:
            raise ValueError(f"box {k} must satisfy x2 >= x1 and y2 >= y1, got {arr[k].tolist()}")
        if x2 < 0 or y2 < 0 or x1 > W - 1 or y1 > H - 1:
            raise ValueError(f"box {k} {arr[k].tolist()} lies outside the {H}x{W} (H x W) image")
    out = arr.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, W - 1)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, H - 1)
    return out.astype(np.float32)


def box_masks(boxes: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """``N x H x W`` bool masks filling each box of :func:`as_box_array` (corners rounded)."""
    corners = np.floor(np.asarray(boxes, dtype=np.float64) + 0.5).astype(np.int64)
    out = np.zeros((len(corners), *image_shape), dtype=bool)
    for k, (x1, y1, x2, y2) in enumerate(corners):
        out[k, y1 : y2 + 1, x1 : x2 + 1] = True
    return out
