"""Prompt excavation on shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from samrefiner import RefineConfig, excavate_prompts
from samrefiner.excavation.distance import interior_distance, negative_point
from samrefiner.excavation.mask_prompt import gaussian_weights
from samrefiner.io.masks import mask_bbox

NO_MASK = RefineConfig(use_mask=False)


def one(mask: np.ndarray, config: RefineConfig = NO_MASK, **kw):
    (prompt,) = excavate_prompts(mask, config, **kw)
    return prompt


def test_rectangle_points_box_and_no_negative():
    m = np.zeros((20, 30), bool)
    m[4:9, 10:21] = True  # rows 4..8, cols 10..20: a 5 x 11 full rectangle
    p = one(m)
    # d = 3 along the middle row (y = 6) from x = 12 to 18; ties go to the first one.
    assert p.points.tolist() == [[12.0, 6.0]]
    assert p.point_labels.tolist() == [1]  # full box: no background, so no negative point
    assert p.box.tolist() == [10.0, 4.0, 20.0, 8.0]  # inclusive XYXY
    assert p.box_expanded is False
    assert p.mask_logits is None


def test_ring_with_hole_positive_in_ring_negative_in_hole():
    yy, xx = np.mgrid[:41, :41]
    r = np.hypot(yy - 20, xx - 20)
    ring = (r <= 15) & (r >= 8)  # hole centre is 8 px from the ring, box corners ~6.2
    p = one(ring)
    px, py = p.points[0].astype(int)
    assert ring[py, px]
    assert p.points[1].tolist() == [20.0, 20.0]  # the hole's centre is farthest from the mask
    assert p.point_labels.tolist() == [1, 0]


def test_l_shape_negative_in_the_missing_quadrant():
    m = np.zeros((30, 30), bool)
    m[5:25, 5:10] = True  # vertical bar
    m[20:25, 5:25] = True  # horizontal bar
    p = one(m)
    nx, ny = p.points[1]
    assert not m[int(ny), int(nx)]
    # The farthest background pixel of the box is the far top-right corner (24, 5).
    assert (nx, ny) == (24.0, 5.0)
    assert p.box.tolist() == [5.0, 5.0, 24.0, 24.0]


def test_negative_point_box_includes_last_row_and_column():
    # Background only in the last row / column of the box: the reference's exclusive box
    # would miss it and fall back to (0, 0).
    m = np.zeros((10, 10), bool)
    m[2:7, 2:7] = True
    m[6, 6] = False  # the only background pixel of the box is its bottom-right corner
    assert negative_point(m, mask_bbox(m)) == (6, 6)


def test_mask_touching_border_border_is_not_background():
    m = np.zeros((10, 12), bool)
    m[:, :4] = True  # touches top, bottom and left borders
    info = interior_distance(m, mask_bbox(m))
    full = distance_transform_edt(np.pad(m, ((0, 0), (0, 1)), constant_values=False))[:, :-1]
    # Only column 4 is background: distances grow toward the left border.
    assert info.peak == (0, 0)
    assert info.peak_value == pytest.approx(4.0)
    top, left = info.origin
    np.testing.assert_allclose(info.distance, full[top:, left : left + info.distance.shape[1]])


def test_crop_transform_equals_whole_image_transform(rng):
    for _ in range(20):
        m = rng.random((40, 50)) < 0.35
        m[0, :] = m[:, 0] = False
        if not m.any():
            continue
        box = mask_bbox(m)
        info = interior_distance(m, box)
        whole = distance_transform_edt(m)
        top, left = info.origin
        h, w = info.distance.shape
        np.testing.assert_allclose(info.distance, whole[top : top + h, left : left + w])
        flat = int(np.argmax(whole))  # first maximum in row-major order
        assert info.peak == (flat % 50, flat // 50)


def test_one_pixel_mask():
    m = np.zeros((9, 9), bool)
    m[4, 5] = True
    p = one(m, RefineConfig())
    assert p.points.tolist() == [[5.0, 4.0]]
    assert p.box.tolist() == [5.0, 4.0, 5.0, 4.0]
    assert p.mask_logits.shape == (256, 256)


def test_full_image_mask_peaks_at_centre():
    m = np.ones((7, 7), bool)
    p = one(m)
    assert p.points.tolist() == [[3.0, 3.0]]
    assert p.point_labels.tolist() == [1]


def test_empty_mask_gives_none():
    assert excavate_prompts(np.zeros((5, 5), bool)) == [None]


def test_rejects_non_binary_values():
    with pytest.raises(ValueError, match="found values"):
        excavate_prompts(np.arange(25).reshape(5, 5))


def test_config_switches_prompts_off():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:12] = True
    p = one(m, RefineConfig(use_points=False, use_box=False))
    assert p.points.shape == (0, 2) and p.box is None and p.mask_logits is not None
    p = one(m, RefineConfig(negative_point=False, use_mask=False))
    assert p.point_labels.tolist() == [1]


def test_gaussian_weights_at_chosen_pixels():
    m = np.zeros((11, 11), bool)
    m[1:10, 1:10] = True  # 9 x 9 square, area 81, centre (5, 5) with d = 5
    info = interior_distance(m, mask_bbox(m))
    g = gaussian_weights(info, area=81, gamma=4.0)
    top, left = info.origin
    variance = 81 / 4.0
    assert g[5 - top, 5 - left] == pytest.approx(1.0)
    # Pixel (1, 5) on the edge has d = 1: exp(-(1 - 5)^2 / variance).
    assert g[5 - top, 1 - left] == pytest.approx(np.exp(-16 / variance))
    assert g[0 - top, 0 - left] == 0.0  # background
    # A tiny mask uses variance 1 (area / gamma < 1).
    small = np.zeros((5, 5), bool)
    small[2, 2] = True
    info = interior_distance(small, mask_bbox(small))
    assert gaussian_weights(info, area=1, gamma=4.0).max() == pytest.approx(1.0)


def test_mask_prompt_sign_amplitude_and_frame():
    # A 64 x 64 image maps 1:16 onto the 1024 input, i.e. 4 image px per low-res cell.
    m = np.zeros((64, 64), bool)
    m[16:48, 16:48] = True
    p = one(m, RefineConfig(strength=30.0))
    logits = p.mask_logits
    assert logits.shape == (256, 256)
    assert logits[128, 128] == pytest.approx(30.0, rel=1e-3)  # centre: G ~ 1
    assert logits[10, 10] == pytest.approx(-30.0)  # background: -strength
    assert logits[200, 200] == pytest.approx(-30.0)
    inside = logits > 0
    rows = np.flatnonzero(inside.any(axis=1))
    assert rows[0] == 64 and rows[-1] == 191
    # Inside, the amplitude decays away from the peak.
    assert 0 < logits[70, 128] < logits[128, 128]


def test_custom_model_sizes():
    m = np.zeros((30, 40), bool)
    m[5:20, 10:30] = True
    (p,) = excavate_prompts(m, RefineConfig(), input_size=256, low_res_size=64)
    assert p.mask_logits.shape == (64, 64)


def test_elastic_box_needs_embedding():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    with pytest.raises(ValueError, match="image_embedding"):
        excavate_prompts(m, RefineConfig(margin=0.1))


@pytest.mark.parametrize("shape", [(120, 200), (200, 90)])
def test_mask_prompt_equals_full_image_formulation(shape, rng):
    """Crop-wise prompt == the spec computed on whole images with F.interpolate."""
    import torch
    import torch.nn.functional as F

    H, W = shape
    m = np.zeros(shape, bool)
    m[H // 5 : H // 2, W // 4 : W // 2] = True
    m[H // 3 : H * 3 // 4, W // 3 : W * 2 // 3] |= (
        rng.random((H * 3 // 4 - H // 3, W * 2 // 3 - W // 3)) < 0.9
    )
    cfg = RefineConfig(strength=30.0, gamma=4.0)
    (p,) = excavate_prompts(m, cfg)

    d = distance_transform_edt(m)
    g = np.where(m, np.exp(-((d - d.max()) ** 2) / max(m.sum() / 4.0, 1.0)), 0.0)
    scale = 1024 / max(H, W)
    rh, rw = int(H * scale + 0.5), int(W * scale + 0.5)

    def to_low(x: np.ndarray, pad_value: float) -> np.ndarray:
        t = F.interpolate(torch.from_numpy(x)[None, None].float(), (rh, rw), mode="bilinear")
        t = F.pad(t, (0, 1024 - rw, 0, 1024 - rh), value=pad_value)
        return F.interpolate(t, (256, 256), mode="bilinear")[0, 0].numpy()

    sign = np.where(to_low(np.where(m, 1.0, -1.0), -1.0) > 0, 30.0, -30.0)
    weight = to_low(g, 0.0)
    weight[weight <= 0] = 1.0
    expected = sign * weight
    assert (np.sign(p.mask_logits) != np.sign(expected)).mean() < 1e-3
    same_sign = np.sign(p.mask_logits) == np.sign(expected)
    np.testing.assert_allclose(p.mask_logits[same_sign], expected[same_sign], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("force_search", [True, False])
def test_negative_point_search_equals_distance_transform(rng, monkeypatch, force_search):
    """The branch-and-bound search finds the distance transform's first maximum."""
    from scipy.ndimage import binary_dilation

    from samrefiner.excavation import distance

    if force_search:  # take the k-d tree search even where the transform is cheaper
        monkeypatch.setattr(distance, "_SEARCH_MIN_PIXELS", 0)
        monkeypatch.setattr(distance, "_SEARCH_MIN_RATIO", 0)

    checked = 0
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(3, 90, 2))
        m = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if trial % 3 == 0:
            m = binary_dilation(m, iterations=int(rng.integers(1, 4)))
        box = mask_bbox(m)
        if box is None:
            continue
        x1, y1, x2, y2 = box
        crop = m[y1 : y2 + 1, x1 : x2 + 1]
        if crop.all():
            assert negative_point(m, box) is None
            continue
        dist = distance_transform_edt(~crop)
        py, px = divmod(int(np.argmax(dist)), dist.shape[1])
        assert negative_point(m, box) == (x1 + px, y1 + py)
        checked += 1
    assert checked > 100


def test_negative_point_on_large_smooth_masks(rng):
    """Large smooth objects take the search path by default; same answer as the EDT."""
    from scipy.ndimage import zoom

    for _ in range(4):
        blobs = zoom(rng.random((12, 16)), 25, order=1) > 0.55  # 300 x 400, smooth edges
        box = mask_bbox(blobs)
        x1, y1, x2, y2 = box
        crop = blobs[y1 : y2 + 1, x1 : x2 + 1]
        dist = distance_transform_edt(~crop)
        py, px = divmod(int(np.argmax(dist)), dist.shape[1])
        assert negative_point(blobs, box) == (x1 + px, y1 + py)


def test_threads_give_the_same_prompts(rng):
    masks = np.zeros((6, 60, 80), bool)
    for k, m in enumerate(masks):
        y, x = (int(v) for v in rng.integers(0, 30, 2))
        m[y : y + 10 + 4 * k, x : x + 20 + 3 * k] = True
        m[y + 2, x + 3] = False  # a hole, so that every box has background
    masks[3] = False  # an empty mask keeps its place in the output
    serial = excavate_prompts(masks, RefineConfig(threads=1))
    threaded = excavate_prompts(masks, RefineConfig(threads=4))
    assert serial[3] is None and threaded[3] is None
    for a, b in zip(serial, threaded, strict=True):
        if a is None:
            continue
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.mask_logits, b.mask_logits)
