"""Training input: images with their coarse masks (and, optionally, ground truth)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from samrefiner.io.masks import as_mask_stack, as_rgb_image


@dataclass
class Sample:
    """One image's objects.

    Attributes:
        key: the image's name (stable between runs; the held-out split is drawn over keys).
        image: ``H x W x 3`` uint8 RGB.
        masks: ``N x H x W`` bool coarse masks.
        gt: ``N`` ground-truth masks (``H x W`` bool) paired with ``masks``, None for an
            object without one; None altogether when there is no ground truth.
    """

    key: str
    image: np.ndarray
    masks: np.ndarray
    gt: list[np.ndarray | None] | None = None

    def __post_init__(self) -> None:
        self.image = as_rgb_image(self.image)
        self.masks = as_mask_stack(self.masks, self.image.shape[:2])
        if self.gt is not None:
            if len(self.gt) != len(self.masks):
                raise ValueError(
                    f"{self.key}: {len(self.gt)} ground-truth entries for {len(self.masks)} masks"
                )
            for g in self.gt:
                if g is not None and g.shape != self.image.shape[:2]:
                    raise ValueError(
                        f"{self.key}: ground truth is {g.shape[1]}x{g.shape[0]}, the image "
                        f"{self.image.shape[1]}x{self.image.shape[0]} (W x H)"
                    )


class Source(Protocol):
    """Where samples come from: stable keys, and one sample per key (None: unusable)."""

    def keys(self) -> list[str]: ...

    def load(self, key: str) -> Sample | None: ...


@dataclass
class ListSource:
    """Samples held in memory (Python use and tests)."""

    samples: Sequence[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_key = {s.key: s for s in self.samples}
        if len(self._by_key) != len(self.samples):
            raise ValueError("sample keys must be unique")

    def keys(self) -> list[str]:
        return list(self._by_key)

    def load(self, key: str) -> Sample | None:
        return self._by_key[key]


def pair_ground_truth(
    ids: Sequence[Any], masks: np.ndarray, gt_ids: Sequence[Any], gt_masks: np.ndarray
) -> list[np.ndarray | None]:
    """The ground-truth mask of each coarse mask: by object id when every coarse id is a
    ground-truth id, else by the one-to-one assignment with the largest total IoU (pairs
    that do not overlap are left unpaired).

    Args:
        ids / masks: the coarse objects (``N x H x W`` bool).
        gt_ids / gt_masks: the ground-truth objects (``M x H x W`` bool).
    """
    by_id = {i: k for k, i in enumerate(gt_ids)}
    if ids and all(i in by_id for i in ids):
        return [gt_masks[by_id[i]] for i in ids]
    out: list[np.ndarray | None] = [None] * len(masks)
    if not len(masks) or not len(gt_masks):
        return out
    a = masks.reshape(len(masks), -1).astype(np.float32)
    b = gt_masks.reshape(len(gt_masks), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    rows, cols = linear_sum_assignment(-iou)
    for r, c in zip(rows, cols, strict=True):
        if iou[r, c] > 0:
            out[r] = gt_masks[c]
    return out
