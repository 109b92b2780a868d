"""Split-then-merge (STM): semantic class maps to instances and back, on arrays.

SAM is prompted per object, but a semantic map only says "these pixels are class c".
STM turns each class into object-like regions, which are refined one by one, and then
paints the refined regions back into a class map.

**Split** (per class ``c``, background and ignore excluded):

1. label the 8-connected components of ``labels == c``. Their order matters to the
   greedy merge; it is the numbering of OpenCV's default 8-connected labelling, which
   the reference uses: components are ordered by their first 2 x 2 pixel block, blocks
   being scanned pair of rows by pair of rows (rows 0-1, then 2-3, ...), left to right
   (all set pixels of a 2 x 2 block are 8-connected, so no two components share one);
2. drop components of fewer than ``min_area`` pixels (default 5);
3. merge greedily, as SAMRefiner's ``sem2ins_mask.py`` does: for each component ``i`` in
   order, take the region it currently belongs to (``R``) and compare it with the
   region of each later component ``j`` (``S``, skipped when it is ``R``); merge ``S``
   into ``R`` -- updating ``R``'s box and area before the next ``j`` -- when

   ``box(R) + box(S) > 0.5 * merged``  and
   ``(area(R) + area(S)) / merged > min(0.5, min(occ(R), occ(S)) - 0.1)``

   with inclusive box areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, ``occ = area / box``, and
   ``merged = (X2 - X1) * (Y2 - Y1)`` over the union of the two boxes (note: *not*
   inclusive, as in the reference). When ``merged`` is 0 (both regions on one row or
   column) the regions are merged, as the reference's division by zero does.

   A merged region keeps the number of the component it was merged into; regions are
   returned sorted by that number.

The reference keeps a class with a single component even below ``min_area``; here every
component below ``min_area`` is dropped.

**Merge back** (:func:`merge_back`): the new class map is the union of the refined
regions; a pixel claimed by regions of different classes goes to the region with the
higher predicted IoU; a pixel no region claims becomes background; ignore pixels keep
their value (with ``refine_ignore``, only those no region claims). The same painting
rule, :func:`paint_by_score`, writes refined instance-id maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from samrefiner.crops import MaskCrops, as_crops
from samrefiner.io.masks import mask_bbox

#: Components smaller than this (pixels) are dropped by default.
DEFAULT_MIN_AREA = 5


@dataclass
class _Region:
    x1: int
    y1: int
    x2: int
    y2: int
    area: int

    @property
    def box_area(self) -> int:
        return (self.x2 - self.x1 + 1) * (self.y2 - self.y1 + 1)


def _should_merge(a: _Region, b: _Region) -> bool:
    """The STM merge test for two regions (see the module docstring)."""
    merged = (max(a.x2, b.x2) - min(a.x1, b.x1)) * (max(a.y2, b.y2) - min(a.y1, b.y1))
    if merged == 0:
        return True
    if not a.box_area + b.box_area > merged * 0.5:
        return False
    occupancy = min(a.area / a.box_area, b.area / b.box_area)
    return (a.area + b.area) / merged > min(0.5, occupancy - 0.1)


def merge_components(boxes: np.ndarray, areas: np.ndarray) -> list[int]:
    """Greedy STM merge of components given by their boxes and areas.

    Args:
        boxes: ``K x 4`` inclusive ``XYXY`` boxes, in component order.
        areas: ``K`` pixel counts.

    Returns:
        ``K`` ints: for each component, the index of the component whose region it
        ended in (its own index when it was not merged into another).
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    areas = np.asarray(areas, dtype=np.int64).reshape(-1)
    if len(boxes) != len(areas):
        raise ValueError(f"boxes has {len(boxes)} rows but areas has {len(areas)} entries")
    n = len(areas)
    owner = list(range(n))
    regions = {k: _Region(*(int(v) for v in boxes[k]), int(areas[k])) for k in range(n)}
    members = {k: [k] for k in range(n)}
    for i in range(n):
        r = owner[i]
        for j in range(i + 1, n):
            s = owner[j]
            if s == r or not _should_merge(regions[r], regions[s]):
                continue
            a, b = regions[r], regions.pop(s)
            regions[r] = _Region(
                min(a.x1, b.x1), min(a.y1, b.y1), max(a.x2, b.x2), max(a.y2, b.y2), a.area + b.area
            )
            for m in members[s]:
                owner[m] = r
            members[r].extend(members.pop(s))
    return owner


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of an ``H x W`` bool mask.

    Returns:
        ``(labels, boxes, areas)``: an ``H x W`` int32 map (0 = outside, ``k + 1`` =
        component ``k``, in the order described in the module docstring), ``K x 4``
        inclusive ``XYXY`` boxes and ``K`` areas.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    stats = stats[1:count].astype(np.int64)
    boxes = np.stack(
        [stats[:, 0], stats[:, 1], stats[:, 0] + stats[:, 2] - 1, stats[:, 1] + stats[:, 3] - 1],
        axis=1,
    ).reshape(-1, 4)
    return labels, boxes, stats[:, 4].copy()


def split_class_mask(mask: np.ndarray, *, min_area: int = DEFAULT_MIN_AREA) -> np.ndarray:
    """Split one class's ``H x W`` mask into STM regions: ``N x H x W`` bool, in order."""
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    box = mask_bbox(mask)
    if box is None:
        return np.zeros((0, *mask.shape), dtype=bool)
    # Labelling only the class's box is much faster on large images. The crop starts on
    # an even row and column so that its 2 x 2 blocks, and hence the component order,
    # are those of the whole image.
    x1, y1, x2, y2 = box
    x1, y1 = x1 - x1 % 2, y1 - y1 % 2
    labels, boxes, areas = connected_components(mask[y1 : y2 + 1, x1 : x2 + 1])
    kept = np.flatnonzero(areas >= min_area)
    owner = merge_components(boxes[kept], areas[kept])
    # Lookup table: component label -> output region number (0 = dropped).
    lut = np.zeros(len(areas) + 1, dtype=np.int32)
    reps = sorted(set(owner))
    number = {rep: k + 1 for k, rep in enumerate(reps)}
    for pos, comp in enumerate(kept):
        lut[comp + 1] = number[owner[pos]]
    region_map = lut[labels]
    regions = np.zeros((len(reps), *mask.shape), dtype=bool)
    for k in range(len(reps)):
        regions[k, y1 : y2 + 1, x1 : x2 + 1] = region_map == k + 1
    return regions


@dataclass
class SplitResult:
    """The STM regions of a class map.

    Attributes:
        class_ids: ``N`` class values, one per region (ascending class, then region order).
        masks: ``N x H x W`` bool regions, disjoint.
    """

    class_ids: list[int]
    masks: np.ndarray

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be N x H x W, got shape {self.masks.shape}")
        if len(self.class_ids) != len(self.masks):
            raise ValueError(
                f"class_ids has {len(self.class_ids)} entries for {len(self.masks)} masks"
            )

    def __len__(self) -> int:
        return len(self.class_ids)

    def region_numbers(self) -> list[int]:
        """1-based number of each region within its class (``2007_000032-15-1``: 1)."""
        seen: dict[int, int] = {}
        numbers = []
        for c in self.class_ids:
            seen[c] = seen.get(c, 0) + 1
            numbers.append(seen[c])
        return numbers


def split_label_map(
    labels: np.ndarray,
    *,
    ignore: int | None = None,
    min_area: int = DEFAULT_MIN_AREA,
    classes: list[int] | None = None,
) -> SplitResult:
    """STM split of an ``H x W`` class map (0 = background).

    Args:
        labels: class values per pixel.
        ignore: value of pixels that belong to no class (e.g. 255), or None.
        min_area: smallest component kept, in pixels.
        classes: the classes to split (default: every value present but 0 and ``ignore``).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be H x W, got shape {labels.shape}")
    if classes is None:
        classes = [int(v) for v in np.unique(labels) if v != 0 and v != ignore]
    class_ids: list[int] = []
    parts: list[np.ndarray] = []
    for c in classes:
        regions = split_class_mask(labels == c, min_area=min_area)
        class_ids.extend([c] * len(regions))
        parts.append(regions)
    masks = np.concatenate(parts) if parts else np.zeros((0, *labels.shape), dtype=bool)
    return SplitResult(class_ids, masks)


def paint_by_score(
    shape: tuple[int, int],
    values: list[int],
    masks: np.ndarray,
    scores: np.ndarray,
    *,
    dtype: np.dtype | type = np.uint16,
) -> np.ndarray:
    """Paint ``values[k]`` where ``masks[k]``; overlaps go to the higher score.

    Args:
        shape: ``(H, W)`` of the map.
        values: ``N`` label values.
        masks: ``N x H x W`` bool, or :class:`~samrefiner.crops.MaskCrops`.
        scores: ``N`` predicted IoUs; NaN ranks below every number. Ties go to the
            earlier mask.
        dtype: dtype of the returned map.

    Returns:
        ``H x W`` map, 0 where no mask claims the pixel.
    """
    crops = _crops(masks, shape)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(values) == len(crops) == len(scores):
        raise ValueError(
            f"values, masks and scores must have one entry per mask, got "
            f"{len(values)}, {len(crops)}, {len(scores)}"
        )
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    out = np.zeros(shape, dtype=dtype)
    # Paint from the lowest score up so the highest lands last; for equal scores the
    # earlier mask is painted last.
    for k in sorted(range(len(values)), key=lambda k: (ranked[k], -k)):
        out[crops.box(k)][crops.crops[k]] = values[k]
    return out


def _crops(masks: np.ndarray | MaskCrops, shape: tuple[int, int]) -> MaskCrops:
    if isinstance(masks, MaskCrops):
        if masks.shape != shape:
            raise ValueError(f"masks are for a {masks.shape} frame, not {shape}")
        return masks
    return as_crops(np.asarray(masks, dtype=bool).reshape(-1, *shape), shape)


def kept_shares(
    painted: np.ndarray, values: list[int], masks: np.ndarray | MaskCrops
) -> np.ndarray:
    """Share of each refined region that the painted map still gives its value.

    Args:
        painted: the ``H x W`` composed map (:func:`merge_back`'s output).
        values: ``N`` label value of each region.
        masks: ``N x H x W`` bool refined regions, or :class:`~samrefiner.crops.MaskCrops`.

    Returns:
        ``N`` float64 in [0, 1]: pixels of ``masks[k]`` labelled ``values[k]`` in
        ``painted``, over the pixels of ``masks[k]`` (NaN for an empty mask). A share
        below 1 means neighbours (higher predicted IoU, kept objects, ignore pixels)
        took part of the region.
    """
    crops = _crops(masks, (int(painted.shape[0]), int(painted.shape[1])))
    shares = np.full(len(crops), np.nan)
    for k, value in enumerate(values):
        crop = crops.crops[k]
        area = int(crop.sum())
        if area:
            shares[k] = int((painted[crops.box(k)][crop] == value).sum()) / area
    return shares


def merge_back(
    original: np.ndarray,
    values: list[int],
    masks: np.ndarray,
    scores: np.ndarray,
    *,
    ignore: int | None = None,
    refine_ignore: bool = False,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Compose refined regions into a label map shaped and typed like ``original``.

    Args:
        original: the ``H x W`` input label map (class or instance ids).
        values: ``N`` label value of each refined region.
        masks: ``N x H x W`` bool refined regions, or :class:`~samrefiner.crops.MaskCrops`.
        scores: ``N`` predicted IoUs (overlaps go to the higher one).
        ignore: the ignore value; its pixels keep it (all of them, or with
            ``refine_ignore`` those no region claims).
        refine_ignore: let refined regions take ignore pixels.
        keep: optional ``H x W`` bool of pixels that keep their original value whatever
            the regions say (objects passed through unrefined).
    """
    original = np.asarray(original)
    if original.ndim != 2:
        raise ValueError(f"original must be H x W, got shape {original.shape}")
    shape = (int(original.shape[0]), int(original.shape[1]))
    crops = _crops(masks, shape)
    out = paint_by_score(shape, values, crops, scores, dtype=original.dtype)
    if ignore is not None:
        ignored = original == ignore
        if refine_ignore:
            for k in range(len(crops)):
                ignored[crops.box(k)] &= ~crops.crops[k]
        out[ignored] = ignore
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != shape:
            raise ValueError(f"keep must be {shape}, got shape {keep.shape}")
        out[keep] = original[keep]
    return out


__all__ = [
    "DEFAULT_MIN_AREA",
    "SplitResult",
    "connected_components",
    "merge_back",
    "merge_components",
    "paint_by_score",
    "split_class_mask",
    "split_label_map",
]
