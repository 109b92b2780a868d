"""Coarse-mask synthesis: deterministic, each family does what it says, IoU in range."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from samrefiner.io.masks import mask_iou
from samrefiner.measure import perturb
from samrefiner.measure.perturb import FAMILIES, CoarseSpec, apply, object_rng, synthesize


def disk(shape=(160, 200), center=(80, 100), radius=40):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def contour_distance(mask):
    """Distance of every pixel to the contour of ``mask`` (both sides)."""
    return np.maximum(ndimage.distance_transform_edt(mask), ndimage.distance_transform_edt(~mask))


def run(name, mask, strength, seed=0):
    return apply(mask, [(name, strength)], np.random.default_rng(seed))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_is_deterministic_and_seed_dependent(name):
    m = disk()
    a, b = run(name, m, 0.8, seed=3), run(name, m, 0.8, seed=3)
    assert a.dtype == bool and a.shape == m.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, m), f"{name} at strength 0.8 left the mask unchanged"


@pytest.mark.parametrize(
    "name", ["boundary_noise", "dilate", "erode", "missing_part", "spurious_blobs", "holes"]
)
def test_strength_zero_is_identity(name):
    m = disk()
    np.testing.assert_array_equal(run(name, m, 0.0), m)


def test_random_families_change_with_the_seed():
    m = disk()
    for name in ("boundary_noise", "polygon", "mask_head", "missing_part", "spurious_blobs"):
        assert not np.array_equal(run(name, m, 0.8, seed=1), run(name, m, 0.8, seed=2)), name


def test_dilate_and_erode_are_global_and_monotone():
    m = disk()
    grown, shrunk = run("dilate", m, 1.0), run("erode", m, 1.0)
    assert (grown >= m).all() and grown.sum() > m.sum()
    assert (shrunk <= m).all() and shrunk.sum() < m.sum()
    # Radius round(0.12 x sqrt(area)) = 9 px everywhere along the contour.
    r = round(0.12 * np.sqrt(m.sum()))
    assert grown.sum() == pytest.approx(np.pi * (40 + r) ** 2, rel=0.03)
    assert shrunk.sum() == pytest.approx(np.pi * (40 - r) ** 2, rel=0.03)
    # The crop is exact: same as dilating the whole image.
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    np.testing.assert_array_equal(grown, cv2.dilate(m.astype(np.uint8), k).astype(bool))


def test_boundary_noise_moves_the_contour_both_ways_and_only_near_it():
    m = disk()
    out = run("boundary_noise", m, 1.0)
    changed = out != m
    assert (out & ~m).any() and (m & ~out).any()
    # Amplitude 0.15 x scale (~10.6 px) times a unit-variance field: stays near the contour.
    assert contour_distance(m)[changed].max() < 0.15 * np.sqrt(m.sum()) * 5


def test_polygon_fills_holes_and_simplifies():
    m = disk()
    m[75:85, 95:105] = False  # a hole: polygon annotations are outer contours only
    out = run("polygon", m, 0.0)
    assert out[80, 100] and mask_iou(out, m) > 0.95
    coarse = run("polygon", m, 1.0)
    assert 0.6 < mask_iou(coarse, m) < 0.98
    contours, _ = cv2.findContours(coarse.astype(np.uint8), cv2.RETR_EXTERNAL, 1)
    assert len(cv2.approxPolyDP(contours[0], 1.0, True)) < 20  # a handful of vertices


def test_lowres_errs_only_within_a_low_res_cell_of_the_contour():
    m = disk()
    for strength, factor in ((0.0, 4), (0.5, 8), (1.0, 16)):
        out = run("lowres", m, strength)
        changed = out != m
        assert changed.any()
        assert contour_distance(m)[changed].max() <= factor


def test_mask_head_stays_near_the_box():
    m = disk()
    out = run("mask_head", m, 0.0)
    assert mask_iou(out, m) > 0.9  # 28 x 28 of an 81-px disk: small steps only
    out = run("mask_head", m, 1.0, seed=5)
    assert 0.3 < mask_iou(out, m) < 0.99


def test_missing_part_cuts_one_chunk_at_the_contour():
    m = disk()
    out = run("missing_part", m, 1.0)
    removed = m & ~out
    assert (out <= m).all()
    assert removed.sum() == int(0.35 * m.sum())
    _, n = ndimage.label(removed)
    assert n == 1
    assert (removed & ~ndimage.binary_erosion(m)).any()  # reaches the contour


def test_spurious_blobs_add_pixels_outside_only():
    m = disk()
    out = run("spurious_blobs", m, 1.0)
    added = out & ~m
    assert (out >= m).all() and added.any()
    assert added.sum() <= 0.3 * m.sum() * 1.2
    # Blobs are centred within 25% of the scale (+2 px) of the object, and each is an
    # ellipse of at most the whole budget with axis ratio >= 0.5.
    reach = 0.25 * np.sqrt(m.sum()) + 2
    longest_axis = np.sqrt(0.3 * m.sum() / (np.pi * 0.5))
    assert ndimage.distance_transform_edt(~m)[added].max() <= reach + longest_axis + 1


def test_holes_are_inside():
    m = disk()
    out = run("holes", m, 1.0)
    removed = m & ~out
    assert (out <= m).all() and removed.any()
    assert removed.sum() <= 0.2 * m.sum() * 1.3
    assert ndimage.distance_transform_edt(m)[removed].min() > 1  # the outline is intact


def test_apply_validates_and_keeps_empty_masks():
    m = disk()
    with pytest.raises(ValueError, match="unknown perturbation family"):
        apply(m, [("blur", 0.5)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="strength"):
        apply(m, [("dilate", 1.5)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="H x W"):
        apply(m[None], [("dilate", 0.5)], np.random.default_rng(0))
    empty = np.zeros((20, 20), dtype=bool)
    np.testing.assert_array_equal(apply(empty, [("dilate", 1.0)], np.random.default_rng(0)), empty)


def test_objects_at_the_border_and_single_pixels():
    edge = np.zeros((50, 60), dtype=bool)
    edge[:, :12] = True
    dot = np.zeros((50, 60), dtype=bool)
    dot[25, 30] = True
    for name in FAMILIES:
        for m in (edge, dot):
            out = run(name, m, 1.0)
            assert out.shape == m.shape and out.dtype == bool


def test_synthesize_reaches_its_target_and_reports_truthfully():
    m = disk()
    misses = []
    for i in range(8):
        coarse, rec = synthesize(m, object_rng(7, "disk", i))
        assert rec["iou"] == pytest.approx(mask_iou(coarse, m))
        assert 0.5 <= rec["target_iou"] <= 0.9
        # Up to max_families drawn, plus one top-up family when they cannot go low enough.
        assert 1 <= len(rec["steps"]) <= 3
        assert all(0 <= s <= 1 for _, s in rec["steps"])
        misses.append(abs(rec["iou"] - rec["target_iou"]))
    assert np.median(misses) < 0.02 and max(misses) < 0.1
    uncalibrated, rec = synthesize(m, object_rng(7, "disk", 0), CoarseSpec(iou_range=None))
    assert rec["target_iou"] is None and rec["iou"] == pytest.approx(mask_iou(uncalibrated, m))


def test_synthesize_stack_is_order_independent_and_seeded():
    masks = np.stack([disk(), disk(center=(60, 60), radius=25)])
    a, _ = perturb.synthesize_stack(masks, seed=1, key="img")
    b, _ = perturb.synthesize_stack(masks, seed=1, key="img")
    c, _ = perturb.synthesize_stack(masks, seed=2, key="img")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    alone, _ = synthesize(masks[1], object_rng(1, "img", 1))
    np.testing.assert_array_equal(a[1], alone)


def test_coarse_spec_validation():
    with pytest.raises(ValueError, match="unknown"):
        CoarseSpec(weights={"nope": 1.0})
    with pytest.raises(ValueError, match="iou_range"):
        CoarseSpec(iou_range=(0.9, 0.5))
    with pytest.raises(ValueError, match="max_families"):
        CoarseSpec(max_families=0)


@pytest.mark.shared_data
def test_default_mix_spreads_over_the_intended_range_on_davis(shared_data):
    files = sorted((shared_data / "davis2016" / "masks").glob("*.png"))[::7]
    assert len(files) >= 12
    ious = []
    for path in files:
        gt = np.asarray(Image.open(path)) > 0
        coarse, rec = synthesize(gt, object_rng(0, path.stem, 0))
        assert rec["iou"] == pytest.approx(mask_iou(coarse, gt))
        ious.append(rec["iou"])
    ious = np.array(ious)
    assert ious.min() > 0.35 and ious.max() < 0.98
    assert np.mean((ious >= 0.45) & (ious <= 0.95)) >= 0.8
    lo, hi = np.percentile(ious, [15, 85])
    assert lo < 0.7 and hi > 0.8, ious.round(3)


def test_cli_iou_range_default_is_the_spec_default():
    from samrefiner.cli.common import DEFAULT_IOU_RANGE

    assert CoarseSpec().iou_range == DEFAULT_IOU_RANGE
