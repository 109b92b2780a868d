"""Split-then-merge: components, the greedy merge rule, and merging refined regions back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from samrefiner.io.label_maps import read_label_map
from samrefiner.split_merge import (
    connected_components,
    merge_back,
    merge_components,
    paint_by_score,
    split_class_mask,
    split_label_map,
)


def block_ordered_labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components (scipy), renumbered by first 2 x 2 block, block-row major."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    ys, xs = np.nonzero(labels)
    first = np.full(n + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, labels[ys, xs], (ys // 2).astype(np.int64) * 1_000_000 + xs // 2)
    renumber = np.zeros(n + 1, dtype=np.int64)
    renumber[np.argsort(first[1:], kind="stable") + 1] = np.arange(1, n + 1)
    return renumber[labels], n


def naive_split(mask: np.ndarray, min_area: int = 5) -> list[np.ndarray]:
    """The issue's rule applied literally on pixels (stats recomputed from pixels)."""
    labels, n = block_ordered_labels(mask)
    region = labels.copy()
    for k in range(1, n + 1):
        if (region == k).sum() < min_area:
            region[region == k] = 0
    kept = [k for k in range(1, n + 1) if (region == k).any()]
    owner = {k: k for k in kept}

    def stats(r: int) -> tuple[int, int, int, int, int]:
        ys, xs = np.nonzero(region == r)
        return xs.min(), ys.min(), xs.max(), ys.max(), len(xs)

    for a, i in enumerate(kept):
        r = owner[i]
        for j in kept[a + 1 :]:
            s = owner[j]
            if r == s:
                continue
            x1, y1, x2, y2, area_r = stats(r)
            u1, v1, u2, v2, area_s = stats(s)
            box_r = (x2 - x1 + 1) * (y2 - y1 + 1)
            box_s = (u2 - u1 + 1) * (v2 - v1 + 1)
            merged = (max(x2, u2) - min(x1, u1)) * (max(y2, v2) - min(y1, v1))
            if merged == 0:
                ok = True
            else:
                ok = box_r + box_s > 0.5 * merged and (area_r + area_s) / merged > min(
                    0.5, min(area_r / box_r, area_s / box_s) - 0.1
                )
            if ok:
                region[region == s] = r
                for k, v in owner.items():
                    if v == s:
                        owner[k] = r
    return [region == r for r in sorted(set(owner.values()))]


def squares(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for x1, y1, x2, y2 in boxes:
        mask[y1 : y2 + 1, x1 : x2 + 1] = True
    return mask


def test_component_order_is_by_first_2x2_block() -> None:
    mask = np.zeros((4, 8), dtype=bool)
    mask[1, 1] = mask[1, 2] = mask[0, 2] = True  # first pixel (0, 2), block (0, 1)
    mask[0, 6] = mask[0, 7] = mask[1, 7] = True  # first pixel (0, 6), block (0, 3)
    mask[1, 4] = True  # first pixel (1, 4), block (0, 2): numbered second
    labels, _, _ = connected_components(mask)
    assert (labels[0, 2], labels[1, 4], labels[0, 6]) == (1, 2, 3)
    assert np.array_equal(labels, block_ordered_labels(mask)[0])


def test_components_are_8_connected() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[[0, 1, 2, 3, 4], [4, 5, 6, 7, 7]] = True  # a diagonal: one component
    mask[6:8, 0:2] = True
    labels, boxes, areas = connected_components(mask)
    assert areas.tolist() == [5, 4]
    assert boxes.tolist() == [[4, 0, 7, 4], [0, 6, 1, 7]]
    assert labels[0, 4] == 1 and labels[7, 1] == 2


def test_small_components_are_dropped_even_when_alone() -> None:
    mask = squares((20, 20), (2, 2, 3, 3), (10, 10, 10, 10))  # 4 px and 1 px
    assert split_class_mask(mask, min_area=5).shape == (0, 20, 20)
    assert split_class_mask(mask, min_area=4).sum() == 4
    assert len(split_class_mask(mask, min_area=0)) == 2


def test_near_regions_merge_and_far_regions_do_not() -> None:
    near = squares((50, 50), (0, 0, 2, 2), (4, 0, 6, 2))  # merged box 6 x 2 = 12
    regions = split_class_mask(near)
    assert len(regions) == 1 and np.array_equal(regions[0], near)
    far = squares((50, 50), (0, 0, 2, 2), (40, 40, 42, 42))
    regions = split_class_mask(far)
    assert len(regions) == 2
    assert regions[0][0, 0] and regions[1][40, 40]


def test_zero_area_merged_box_merges() -> None:
    # Two runs on one row: (x2 - x1) * (y2 - y1) = 0, which the reference treats as a merge.
    mask = squares((10, 40), (0, 5, 9, 5), (20, 5, 29, 5))
    assert len(split_class_mask(mask)) == 1


def test_greedy_merge_updates_the_growing_region() -> None:
    a, b, c = (0, 0, 3, 3), (6, 0, 9, 3), (20, 0, 23, 3)
    # A and C alone: box sum 32 is not > 0.5 x merged (23 x 3 = 69): no merge.
    assert len(split_class_mask(squares((4, 30), a, c))) == 2
    # With B: A absorbs B first, and A+B (box 40) then passes the test with C.
    assert len(split_class_mask(squares((4, 30), a, b, c))) == 1


def test_merge_components_reports_owners() -> None:
    boxes = np.array([[0, 0, 3, 3], [6, 0, 9, 3], [40, 40, 43, 43]])
    areas = np.array([16, 16, 16])
    assert merge_components(boxes, areas) == [0, 0, 2]
    with pytest.raises(ValueError, match="areas has 2"):
        merge_components(boxes, areas[:2])


def test_low_occupancy_lowers_the_merge_threshold() -> None:
    # Hollow 10 x 10 frames (area 36, occupancy 0.36): the threshold is min(0.5, 0.26).
    frame = squares((10, 40), (0, 0, 9, 9)) & ~squares((10, 40), (1, 1, 8, 8))
    merges = frame | np.roll(frame, 20, axis=1)  # 72 / (29 x 9) = 0.276 > 0.26
    assert len(split_class_mask(merges)) == 1
    apart = frame | np.roll(frame, 22, axis=1)  # 72 / (31 x 9) = 0.258 < 0.26
    assert len(split_class_mask(apart)) == 2
    assert len(naive_split(merges)) == 1 and len(naive_split(apart)) == 2


@pytest.mark.parametrize("seed", range(12))
def test_split_matches_the_literal_rule_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((40, 56)) < 0.45 + 0.02 * seed)
    mask |= rng.random((40, 56)) < 0.02  # specks below min_area
    if seed % 2:
        # An odd offset: the class box then starts on an odd row and column.
        mask = np.pad(mask, ((3, 2), (5, 1)))
    ours = split_class_mask(mask)
    expected = naive_split(mask)
    assert len(ours) == len(expected)
    for got, want in zip(ours, expected, strict=True):
        assert np.array_equal(got, want)


def test_split_label_map_orders_by_class_and_skips_ignore() -> None:
    labels = np.zeros((20, 40), dtype=np.uint8)
    labels[0:5, 0:5] = 7
    labels[15:20, 30:35] = 7
    labels[8:12, 10:14] = 3
    labels[0:2, 20:40] = 255
    split = split_label_map(labels, ignore=255)
    assert split.class_ids == [3, 7, 7]
    assert split.region_numbers() == [1, 1, 2]
    assert np.array_equal(split.masks[0], labels == 3)
    assert not split.masks.any(axis=0)[labels == 255].any()
    assert len(split_label_map(labels, ignore=255, classes=[7])) == 2


def test_paint_by_score_higher_wins_nan_lowest_ties_to_first() -> None:
    masks = np.zeros((3, 1, 4), dtype=bool)
    masks[0, 0, :3] = True
    masks[1, 0, 1:] = True
    masks[2, 0, 2:] = True
    out = paint_by_score((1, 4), [1, 2, 3], masks, np.array([0.5, 0.9, np.nan]))
    assert out.tolist() == [[1, 2, 2, 2]]
    out = paint_by_score((1, 4), [1, 2, 3], masks, np.array([0.7, 0.7, 0.7]))
    assert out.tolist() == [[1, 1, 1, 2]]
    with pytest.raises(ValueError, match="one entry per mask"):
        paint_by_score((1, 4), [1, 2], masks, np.zeros(3))


def test_merge_back_rules() -> None:
    original = np.array([[1, 1, 2, 255, 0, 3]], dtype=np.uint8)
    masks = np.zeros((3, 1, 6), dtype=bool)
    masks[0, 0, 0:3] = True  # class 1 grows into class 2's pixel and the ignore pixel
    masks[0, 0, 3] = True
    masks[1, 0, 2] = True  # class 2 keeps its pixel: higher IoU
    masks[2, 0, 0] = True  # another class-1 region overlapping: same class, union
    values, scores = [1, 2, 1], np.array([0.6, 0.8, 0.1])
    out = merge_back(original, values, masks, scores, ignore=255)
    # pixel 5 (class 3) was claimed by nothing: background; ignore stays ignore.
    assert out.tolist() == [[1, 1, 2, 255, 0, 0]]
    assert out.dtype == original.dtype
    out = merge_back(original, values, masks, scores, ignore=255, refine_ignore=True)
    assert out.tolist() == [[1, 1, 2, 1, 0, 0]]
    keep = original == 3
    out = merge_back(original, values, masks, scores, ignore=255, keep=keep)
    assert out.tolist() == [[1, 1, 2, 255, 0, 3]]


def test_merge_back_keeps_unclaimed_ignore_with_refine_ignore() -> None:
    original = np.array([[255, 255, 1]], dtype=np.uint8)
    masks = np.array([[[False, True, True]]])
    out = merge_back(original, [1], masks, np.array([0.9]), ignore=255, refine_ignore=True)
    assert out.tolist() == [[255, 1, 1]]


@pytest.mark.shared_data
def test_voc_class_maps_split_and_merge_back(shared_data) -> None:
    paths = sorted((shared_data / "labelme_voc2011" / "masks_class").glob("*.png"))
    assert paths
    for path in paths:
        labels = read_label_map(path).labels
        split = split_label_map(labels, ignore=255)
        assert len(split) >= 1
        covered = split.masks.sum(axis=0)
        assert covered.max() <= 1  # regions are disjoint
        for c, region in zip(split.class_ids, split.masks, strict=True):
            assert (labels[region] == c).all()
        for c in set(split.class_ids):
            mine = np.asarray(split.class_ids) == c
            expected = naive_split(labels == c)
            assert mine.sum() == len(expected)
            for got, want in zip(split.masks[mine], expected, strict=True):
                assert np.array_equal(got, want)
        # With the regions themselves as "refined" masks the map comes back, minus the
        # components STM dropped, which become background.
        back = merge_back(labels, split.class_ids, split.masks, np.ones(len(split)), ignore=255)
        expected = np.where(covered.astype(bool) | (labels == 255), labels, 0)
        assert np.array_equal(back, expected)
