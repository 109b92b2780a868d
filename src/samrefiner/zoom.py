"""Crop-zoom: plan crops that let small objects be refined at native resolution.

A model sees the whole image resized to its input size, so a small object covers only a
few cells of its low-res mask grid. An object whose box's longest side, once resized as the
model resizes the image, is below ``zoom_below`` pixels is refined on a square crop
``zoom_context`` times its box side (clamped to the image) instead: the crop is encoded at
the model's input size, the whole refinement runs in the crop's frame (prompts, elastic box
from the crop's embedding) and the result is pasted back at full resolution.

Nearby small objects share a crop: an object joins the first crop whose objects' joint box,
with it added, is still small by the same rule. Crops are made for the smallest objects
first, at most ``max_crops`` per image; the objects beyond are refined on the whole image.
A crop no smaller than the image would gain nothing and is not made.

Everything model-specific comes from the backend's :class:`~samrefiner.geometry.Frame`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samrefiner.config import RefineConfig
from samrefiner.geometry import Frame
from samrefiner.types import MaskPrompt

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Crop:
    """A window of the image where some objects are refined.

    Attributes:
        y0, x0, y1, x1: rows ``y0:y1`` and columns ``x0:x1`` of the image (end exclusive).
        members: indices of the objects refined in it, in increasing order.
    """

    y0: int
    x0: int
    y1: int
    x1: int
    members: tuple[int, ...]

    @property
    def window(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the crop in the image."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def size(self) -> tuple[int, int]:
        """``(h, w)`` of the crop."""
        return self.y1 - self.y0, self.x1 - self.x0


def model_scale(frame: Frame) -> float:
    """Factor from image pixels to the model frame's pixels (resized / original)."""
    return max(frame.resized_size) / max(frame.original_size)


def _long_side(box: Box) -> int:
    x1, y1, x2, y2 = box
    return max(x2 - x1 + 1, y2 - y1 + 1)


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _span(lo: int, hi: int, side: int, n: int) -> tuple[int, int]:
    """``[start, stop)`` of length ``min(side, n)`` holding ``lo..hi``, centred, inside ``0..n``."""
    if side >= n:
        return 0, n
    start = lo - (side - (hi - lo + 1)) // 2
    start = min(max(start, 0), n - side)
    return start, start + side


def crop_window(box: Box, context: float, image_size: tuple[int, int]) -> tuple[int, ...]:
    """``(y0, x0, y1, x1)`` of the square crop ``context`` x the box's longest side, centred
    on the inclusive XYXY ``box`` and moved (then clipped) to lie inside the image."""
    H, W = image_size
    side = max(1, math.ceil(context * _long_side(box)))
    x0, x1 = _span(box[0], box[2], side, W)
    y0, y1 = _span(box[1], box[3], side, H)
    return y0, x0, y1, x1


def plan_crops(boxes: Sequence[Box | None], frame: Frame, config: RefineConfig) -> list[Crop]:
    """The crops of one image (empty when ``config.zoom_below`` is None).

    Args:
        boxes: per object, its tight inclusive XYXY box in image pixels, or None (empty).
        frame: the whole image's geometry in the model (``backend.frame(image size)``).
        config: ``zoom_below``, ``zoom_context`` and ``max_crops``.

    Returns:
        Crops in the order they should be refined; every object is in at most one.
    """
    if config.zoom_below is None:
        return []
    scale = model_scale(frame)

    def small(box: Box) -> bool:
        return _long_side(box) * scale < config.zoom_below

    candidates = sorted(
        (i for i, b in enumerate(boxes) if b is not None and small(b)),
        key=lambda i: (_long_side(boxes[i]), i),  # type: ignore[arg-type]
    )
    groups: list[tuple[Box, list[int]]] = []
    for i in candidates:
        box = boxes[i]
        assert box is not None
        for g, (joint, members) in enumerate(groups):
            merged = _union(joint, box)
            if small(merged):
                groups[g] = (merged, [*members, i])
                break
        else:
            groups.append((box, [i]))

    image_long = max(frame.original_size)
    crops: list[Crop] = []
    for joint, members in groups:
        if len(crops) == config.max_crops:
            break
        y0, x0, y1, x1 = crop_window(joint, config.zoom_context, frame.original_size)
        if max(y1 - y0, x1 - x0) >= image_long:
            continue  # the model would see it no larger than in the whole image
        crops.append(Crop(y0, x0, y1, x1, tuple(sorted(members))))
    return crops


def shift_prompt(prompt: MaskPrompt | None, crop: Crop) -> MaskPrompt | None:
    """A prompt mined in ``crop``'s frame with its points and box in image pixels.

    The mask logits stay in the crop's low-res frame.
    """
    if prompt is None:
        return None
    offset = np.array([crop.x0, crop.y0], dtype=np.float32)
    return MaskPrompt(
        points=prompt.points + offset,
        point_labels=prompt.point_labels,
        box=None if prompt.box is None else prompt.box + np.tile(offset, 2),
        box_expanded=prompt.box_expanded,
        mask_logits=prompt.mask_logits,
    )
