"""Metrics against values computed by hand on small arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from samrefiner.io import masks as masks_module
from samrefiner.measure.metrics import (
    ObjectScores,
    aggregate,
    boundary_accuracy,
    boundary_iou,
    boundary_width,
    mask_boundary,
    mask_iou,
    mba_radii,
    score_object,
    size_bucket,
)


def square(shape, y1, x1, y2, x2):
    """Bool mask with rows y1..y2 and columns x1..x2 (inclusive) set."""
    m = np.zeros(shape, dtype=bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def test_mask_iou_is_the_single_rule_of_the_package():
    assert mask_iou is masks_module.mask_iou


def test_mask_iou_hand_values():
    a = square((10, 10), 2, 2, 7, 7)  # 36 px
    b = square((10, 10), 2, 3, 7, 8)  # shifted right by one: overlap 30
    assert mask_iou(a, b) == pytest.approx(30 / 42)
    assert mask_iou(a, np.zeros_like(a)) == 0.0
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    with pytest.raises(ValueError, match="shapes"):
        mask_iou(np.zeros((4, 4)), np.zeros((4, 5)))


def test_boundary_width_rounds_the_diagonal_and_is_at_least_one():
    assert boundary_width((100, 100)) == 3  # 0.02 * 141.4 = 2.83
    assert boundary_width((10, 10)) == 1  # 0.28 rounds to 0, clamped to 1
    assert boundary_width((480, 854)) == 20  # 0.02 * 979.6 = 19.6
    with pytest.raises(ValueError, match="dilation_ratio"):
        boundary_width((10, 10), 0.0)


def test_mask_boundary_rings():
    m = square((10, 10), 2, 2, 7, 7)
    assert mask_boundary(m, 1).sum() == 20  # 6x6 minus the 4x4 inside
    assert mask_boundary(m, 2).sum() == 32  # 6x6 minus 2x2
    assert mask_boundary(m, 3).sum() == 36
    # The image border is background: a full mask has the outer ring as boundary.
    full = np.ones((10, 10), dtype=bool)
    assert mask_boundary(full, 1).sum() == 36
    dot = square((10, 10), 0, 0, 0, 0)
    assert mask_boundary(dot, 1).sum() == 1


def test_boundary_iou_hand_value():
    a = square((10, 10), 2, 2, 7, 7)
    b = square((10, 10), 2, 3, 7, 8)
    # Rings of 20 px each share rows 2 and 7 over columns 3..7: 10 px; union 30.
    assert boundary_iou(a, b) == pytest.approx(1 / 3)
    assert boundary_iou(a, a) == 1.0
    assert boundary_iou(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    assert boundary_iou(a, np.zeros_like(a)) == 0.0


def test_boundary_iou_of_objects_at_the_border():
    # Two left halves differing by one column: with the border as background their
    # boundaries include column 0 and rows 0 / 9, so Boundary IoU is not zero.
    a = square((10, 10), 0, 0, 9, 4)
    b = square((10, 10), 0, 0, 9, 3)
    ba, bb = mask_boundary(a, 1), mask_boundary(b, 1)
    assert ba[:, 0].all() and bb[:, 0].all()
    assert boundary_iou(a, b) == pytest.approx((ba & bb).sum() / (ba | bb).sum())
    assert (ba & bb).sum() == 10 + 2 * 3  # column 0, and rows 0 / 9 over columns 1..3


def test_one_pixel_objects():
    a = square((20, 20), 5, 5, 5, 5)
    b = square((20, 20), 5, 6, 5, 6)
    assert mask_iou(a, a) == 1.0 and boundary_iou(a, a) == 1.0
    assert mask_iou(a, b) == 0.0 and boundary_iou(a, b) == 0.0
    # mBA: the cross-shaped band of a lone pixel holds 5 px; missing it gets 4 right.
    dot = square((30, 30), 15, 15, 15, 15)
    assert boundary_accuracy(np.zeros_like(dot), dot) == pytest.approx(4 / 5)
    assert boundary_accuracy(dot, dot) == 1.0


def test_mba_radii_follow_cascadepsp():
    assert mba_radii((480, 854)) == [1, 1, 2, 3, 3]
    assert mba_radii((1080, 1920)) == [1, 2, 4, 6, 8]
    assert mba_radii((30, 30)) == [1, 1, 1, 1, 1]


def test_boundary_accuracy_hand_values():
    gt = square((30, 30), 10, 10, 19, 19)  # 10 x 10; radius 1 (a 3x3 cross) at this size
    # Band: dilation adds 40 px (no corners with a cross), erosion removes the 36-px ring.
    assert boundary_accuracy(gt, gt) == 1.0
    assert boundary_accuracy(np.zeros_like(gt), gt) == pytest.approx(40 / 76)
    assert boundary_accuracy(np.ones_like(gt), gt) == pytest.approx(36 / 76)


def test_boundary_accuracy_border_is_not_a_contour():
    gt = square((30, 30), 0, 0, 29, 14)  # left half
    # Band: column 15 (dilation) and column 14 (erosion); nothing along the image edge.
    assert boundary_accuracy(np.zeros_like(gt), gt) == pytest.approx(0.5)


def test_boundary_accuracy_empty_ground_truth():
    empty = np.zeros((30, 30), dtype=bool)
    assert boundary_accuracy(empty, empty) == 1.0
    assert boundary_accuracy(square((30, 30), 1, 1, 2, 2), empty) == 0.0


def _naive_boundary_iou(a, b, d):
    def band(m):
        eroded = ndimage.binary_erosion(m, np.ones((3, 3)), iterations=d, border_value=0)
        return m & ~eroded

    ba, bb = band(a), band(b)
    union = (ba | bb).sum()
    return 1.0 if union == 0 else (ba & bb).sum() / union


def _naive_mba(pred, gt):
    accs = []
    for r in mba_radii(gt.shape):
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        band = cv2.morphologyEx(gt.astype(np.uint8), cv2.MORPH_GRADIENT, k) > 0
        accs.append((pred[band] == gt[band]).mean())
    return float(np.mean(accs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cropped_metrics_equal_full_image_definitions(seed):
    rng = np.random.default_rng(seed)
    shape = (300, 420)
    gt = ndimage.gaussian_filter(rng.random(shape), 6) > 0.5
    gt[:, :40] |= rng.random((300, 40)) > 0.3  # rough blob touching the border
    pred = ndimage.binary_dilation(gt, iterations=3) & (rng.random(shape) > 0.05)
    d = boundary_width(shape)
    assert boundary_iou(pred, gt) == pytest.approx(_naive_boundary_iou(pred, gt, d))
    assert boundary_accuracy(pred, gt) == pytest.approx(_naive_mba(pred, gt))


def test_score_object_matches_the_functions():
    gt = square((64, 64), 10, 10, 40, 30)
    pred = square((64, 64), 12, 8, 44, 30)
    s = score_object(pred, gt)
    assert s.iou == pytest.approx(mask_iou(pred, gt))
    assert s.boundary_iou == pytest.approx(boundary_iou(pred, gt))
    assert s.mba == pytest.approx(boundary_accuracy(pred, gt))
    assert s.gt_area == 31 * 21
    assert s.intersection == (pred & gt).sum() and s.union == (pred | gt).sum()
    assert s.size == "small"
    with pytest.raises(ValueError, match="same shape"):
        score_object(pred, gt[:10])


def test_size_buckets_follow_coco():
    assert size_bucket(0) == "small"
    assert size_bucket(1023) == "small"
    assert size_bucket(1024) == "medium"
    assert size_bucket(9215) == "medium"
    assert size_bucket(9216) == "large"


def _scores(iou, inter, union, area):
    return ObjectScores(iou, iou, iou, inter, union, inter, union, area)


def test_aggregate_mean_versus_total():
    small = _scores(1.0, 100, 100, 100)
    large = _scores(0.5, 5000, 10000, 10000)
    out = aggregate([small, large])
    assert out["all"]["count"] == 2
    assert out["all"]["mean_iou"] == pytest.approx(0.75)
    assert out["all"]["total_iou"] == pytest.approx(5100 / 10100)
    assert out["all"]["mean_boundary_iou"] == pytest.approx(0.75)
    assert out["small"]["total_iou"] == 1.0 and out["large"]["mean_iou"] == 0.5
    assert out["medium"] == {
        "count": 0,
        "mean_iou": None,
        "total_iou": None,
        "mean_boundary_iou": None,
        "total_boundary_iou": None,
        "mean_mba": None,
    }
    assert aggregate([])["all"]["count"] == 0


def test_object_scores_validation():
    with pytest.raises(ValueError, match="iou"):
        _scores(1.5, 1, 1, 1)
    with pytest.raises(ValueError, match="exceed"):
        _scores(1.0, 5, 4, 1)
