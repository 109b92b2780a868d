"""Masks of one image held as box-local crops: memory follows the objects, not the frame.

An ``N x H x W`` bool stack costs ``N * H * W`` bytes whatever the objects' sizes: 200
objects of a 4000 x 3000 image take 2.4 GB. :class:`MaskCrops` keeps each mask as the
crop of its tight box plus the box's offset, so it costs about the objects' area. Full
frames are made one mask (or one small batch) at a time, when a consumer needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from samrefiner.io.masks import mask_bbox


@dataclass
class MaskCrops:
    """``N`` bool masks of an ``H x W`` frame, each stored as its box-local crop.

    Attributes:
        shape: ``(H, W)`` of the frame.
        crops: ``N`` bool arrays, ``crops[k]`` covering rows ``y0 .. y0 + h - 1`` and
            columns ``x0 .. x0 + w - 1`` of the frame (an empty mask has a ``0 x 0`` crop).
        offsets: ``N`` ``(y0, x0)`` top-left corners.
    """

    shape: tuple[int, int]
    crops: list[np.ndarray] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        if len(self.crops) != len(self.offsets):
            raise ValueError(f"{len(self.crops)} crops but {len(self.offsets)} offsets")
        h, w = self.shape
        for k, (crop, (y0, x0)) in enumerate(zip(self.crops, self.offsets, strict=True)):
            if crop.ndim != 2 or crop.dtype != bool:
                raise ValueError(
                    f"crop {k} must be a 2-D bool array, got {crop.dtype} {crop.shape}"
                )
            if y0 < 0 or x0 < 0 or y0 + crop.shape[0] > h or x0 + crop.shape[1] > w:
                raise ValueError(
                    f"crop {k} at {(y0, x0)} of shape {crop.shape} leaves the {h}x{w} frame"
                )

    # ------------------------------------------------------------------ building

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> MaskCrops:
        """No masks, in a frame of ``shape``."""
        return cls(shape)

    @classmethod
    def from_masks(
        cls, masks: np.ndarray | Iterable[np.ndarray], shape: tuple[int, int]
    ) -> MaskCrops:
        """Crops of ``H x W`` masks (an ``N x H x W`` stack or any iterable of masks)."""
        out = cls(shape)
        for mask in masks:
            out.append(mask)
        return out

    def append(self, mask: np.ndarray) -> None:
        """Add one ``H x W`` mask (stored as its tight crop)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape:
            raise ValueError(f"mask is {mask.shape}, the frame is {self.shape}")
        self.append_crop(mask, (0, 0))

    def append_crop(self, crop: np.ndarray, offset: tuple[int, int]) -> None:
        """Add a mask given as a crop at ``offset`` (``(y0, x0)``); it is trimmed to its box."""
        crop = np.asarray(crop, dtype=bool)
        box = mask_bbox(crop)
        if box is None:
            self.crops.append(np.zeros((0, 0), dtype=bool))
            self.offsets.append((0, 0))
            return
        x0, y0, x1, y1 = box[0], box[1], box[2] + 1, box[3] + 1
        self.crops.append(np.ascontiguousarray(crop[y0:y1, x0:x1]))
        self.offsets.append((offset[0] + y0, offset[1] + x0))

    def subset(self, indices: Sequence[int]) -> MaskCrops:
        """The masks at ``indices`` (the crops are shared, not copied)."""
        return MaskCrops(
            self.shape, [self.crops[k] for k in indices], [self.offsets[k] for k in indices]
        )

    @classmethod
    def concat(cls, parts: Sequence[MaskCrops]) -> MaskCrops:
        """The masks of ``parts`` (same frame) one after the other (crops shared)."""
        if not parts:
            raise ValueError("concat needs at least one MaskCrops")
        shape = parts[0].shape
        for part in parts:
            if part.shape != shape:
                raise ValueError(f"masks of a {part.shape} frame joined to a {shape} frame")
        return cls(
            shape,
            [crop for part in parts for crop in part.crops],
            [offset for part in parts for offset in part.offsets],
        )

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self.crops)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Full ``H x W`` masks, one at a time."""
        for k in range(len(self)):
            yield self.full(k)

    def __getitem__(self, k: int) -> np.ndarray:
        return self.full(k)

    def box(self, k: int) -> tuple[slice, slice]:
        """Row and column slices of mask ``k``'s crop in the frame."""
        (y0, x0), crop = self.offsets[k], self.crops[k]
        return slice(y0, y0 + crop.shape[0]), slice(x0, x0 + crop.shape[1])

    def bbox(self, k: int) -> tuple[int, int, int, int] | None:
        """Tight inclusive ``(x1, y1, x2, y2)`` box of mask ``k`` in the frame (None when
        it is empty), as :func:`~samrefiner.io.masks.mask_bbox` of its full frame."""
        box = mask_bbox(self.crops[k])
        if box is None:
            return None
        y0, x0 = self.offsets[k]
        return box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0

    def full(self, k: int) -> np.ndarray:
        """Mask ``k`` as an ``H x W`` bool array."""
        out = np.zeros(self.shape, dtype=bool)
        out[self.box(k)] = self.crops[k]
        return out

    def stack(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """``len(indices) x H x W`` bool stack (all masks by default): keep it small."""
        indices = range(len(self)) if indices is None else indices
        out = np.zeros((len(indices), *self.shape), dtype=bool)
        for row, k in enumerate(indices):
            out[row][self.box(k)] = self.crops[k]
        return out

    def area(self, k: int) -> int:
        """Pixels of mask ``k``."""
        return int(self.crops[k].sum())

    def any(self, k: int) -> bool:
        return bool(self.crops[k].any())

    def iou(self, k: int, other: MaskCrops, j: int) -> float:
        """IoU of mask ``k`` with ``other``'s mask ``j`` (1 when both are empty)."""
        a, b = self.area(k), other.area(j)
        if a == 0 and b == 0:
            return 1.0
        (ar, ac), (br, bc) = self.box(k), other.box(j)
        r0, r1 = max(ar.start, br.start), min(ar.stop, br.stop)
        c0, c1 = max(ac.start, bc.start), min(ac.stop, bc.stop)
        inter = 0
        if r0 < r1 and c0 < c1:
            pa = self.crops[k][r0 - ar.start : r1 - ar.start, c0 - ac.start : c1 - ac.start]
            pb = other.crops[j][r0 - br.start : r1 - br.start, c0 - bc.start : c1 - bc.start]
            inter = int(np.logical_and(pa, pb).sum())
        return inter / (a + b - inter)

    @property
    def nbytes(self) -> int:
        """Bytes held by the crops."""
        return sum(c.nbytes for c in self.crops)


def as_crops(masks: np.ndarray | MaskCrops, shape: tuple[int, int] | None = None) -> MaskCrops:
    """``masks`` as :class:`MaskCrops` (an ``N x H x W`` stack is cropped)."""
    if isinstance(masks, MaskCrops):
        return masks
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be N x H x W, got shape {masks.shape}")
    return MaskCrops.from_masks(masks, shape or (masks.shape[1], masks.shape[2]))
