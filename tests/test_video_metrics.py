"""DAVIS measures (region J, boundary F, J&F) and temporal stability (samrefiner.measure.video):
hand-computed tables, a cross-check against a direct transcription of the DAVIS formulas,
and folder scoring on synthetic sequences."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from samrefiner.io import InputError
from samrefiner.measure.video import (
    VideoEvalReport,
    boundary_f,
    boundary_map,
    boundary_tolerance,
    disk,
    evaluate_video_folders,
    list_sequences,
    region_j,
    score_sequence,
    temporal_stability,
)


def box(shape, y0, x0, y1, x1):
    """Mask of rows y0..y1-1, columns x0..x1-1."""
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


# --- boundary map, disk, tolerance ------------------------------------------------------


def test_boundary_map_hand_values():
    m = box((4, 4), 1, 1, 3, 3)
    want = np.array(
        [
            [1, 1, 1, 0],
            [1, 0, 1, 0],
            [1, 1, 1, 0],
            [0, 0, 0, 0],
        ],
        bool,
    )
    assert np.array_equal(boundary_map(m), want)
    # On the last row only the east neighbour counts, on the last column only the south:
    # a mask filling the frame has no boundary; one in the bottom-right corner has none
    # along the image edges.
    assert not boundary_map(np.ones((3, 3), bool)).any()
    corner = box((4, 4), 2, 2, 4, 4)
    want = np.array(
        [
            [0, 0, 0, 0],
            [0, 1, 1, 1],
            [0, 1, 0, 0],
            [0, 1, 0, 0],
        ],
        bool,
    )
    assert np.array_equal(boundary_map(corner), want)
    assert not boundary_map(np.zeros((5, 6), bool)).any()


def test_disk_and_tolerance():
    assert np.array_equal(disk(1), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))
    assert disk(2).tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ]
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.65)
    assert boundary_tolerance((40, 40)) == 1  # ceil(0.45)
    assert boundary_tolerance((40, 40), 3) == 3  # >= 1: pixels


# --- region J and boundary F: hand tables ---------------------------------------------------

SQ = box((40, 40), 10, 10, 20, 20)  # 10 x 10
SQ_RIGHT2 = box((40, 40), 10, 12, 20, 22)  # shifted 2 columns right
EMPTY = np.zeros((40, 40), bool)


@pytest.mark.parametrize(
    ("pred", "gt", "void", "want"),
    [
        (EMPTY, EMPTY, None, 1.0),  # absent and predicted absent
        (SQ, EMPTY, None, 0.0),
        (EMPTY, SQ, None, 0.0),
        (SQ, SQ, None, 1.0),
        (SQ_RIGHT2, SQ, None, 80 / 120),  # 10 x 8 shared, 10 x 12 union
        (SQ_RIGHT2, SQ, box((40, 40), 0, 20, 40, 22), 80 / 100),  # the right strip is void
        (SQ, SQ, SQ, 1.0),  # all void: union empty
    ],
)
def test_region_j_table(pred, gt, void, want):
    assert region_j(pred, gt, void) == pytest.approx(want)


@pytest.mark.parametrize(
    ("pred", "gt", "bound_th", "want"),
    [
        (EMPTY, EMPTY, 1, 1.0),  # no boundary on either side: P = R = 1
        (SQ, EMPTY, 1, 0.0),  # P = 0, R = 1
        (EMPTY, SQ, 1, 0.0),  # P = 1, R = 0
        (SQ, SQ, 1, 1.0),
        # 40-pixel rings 2 columns apart: with a radius-1 disk the top and bottom rows
        # match (10 of 11 pixels each) and of the inner side column only its two ends
        # (next to the other ring's top and bottom rows): P = R = 22 / 40.
        (SQ_RIGHT2, SQ, 1, 0.55),
        (SQ_RIGHT2, SQ, 0.008, 0.55),  # ceil(0.008 * 56.6) = 1 pixel
        (SQ_RIGHT2, SQ, 2, 1.0),  # radius 2 reaches the side columns too
    ],
)
def test_boundary_f_table(pred, gt, bound_th, want):
    assert boundary_f(pred, gt, bound_th=bound_th) == pytest.approx(want)


def test_boundary_f_void_clears_both_masks():
    # Void over the predicted extra strip: both masks become the same square.
    void = box((40, 40), 0, 20, 40, 40)
    pred = box((40, 40), 10, 10, 20, 30)
    assert boundary_f(pred, SQ, bound_th=1) < 1.0
    assert boundary_f(pred, SQ, void, bound_th=1) == pytest.approx(1.0)


# --- cross-check: a direct transcription of the DAVIS formulas -------------------------------


def davis_bmap(seg):
    """seg2bmap, pixel by pixel as the DAVIS code states it."""
    h, w = seg.shape
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = np.zeros_like(seg)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                b[y, x] = False
            elif y == h - 1:
                b[y, x] = seg[y, x] ^ e[y, x]
            elif x == w - 1:
                b[y, x] = seg[y, x] ^ s[y, x]
            else:
                b[y, x] = (seg[y, x] ^ e[y, x]) | (seg[y, x] ^ s[y, x]) | (seg[y, x] ^ se[y, x])
    return b


def davis_f(pred, gt, void, bound_th):
    pred = pred & ~void
    gt = gt & ~void
    r = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt.shape))
    pb, gb = davis_bmap(pred), davis_bmap(gt)
    n_p, n_g = pb.sum(), gb.sum()
    if n_p == 0 and n_g > 0:
        prec, rec = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        prec, rec = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        prec, rec = 1.0, 1.0
    else:
        pp, gp = np.argwhere(pb), np.argwhere(gb)
        d2 = ((pp[:, None, :] - gp[None, :, :]) ** 2).sum(-1)  # all pairwise distances²
        prec = (d2.min(axis=1) <= r * r).sum() / n_p
        rec = (d2.min(axis=0) <= r * r).sum() / n_g
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def davis_j(pred, gt, void):
    inter = (pred & gt & ~void).sum()
    union = ((pred | gt) & ~void).sum()
    return 1.0 if union == 0 else inter / union


def blob(rng, shape):
    """A random union of rectangles and a disk, sometimes touching the image edges."""
    m = np.zeros(shape, bool)
    h, w = shape
    for _ in range(rng.integers(0, 4)):
        y0, x0 = rng.integers(-3, h), rng.integers(-3, w)
        m[max(y0, 0) : y0 + rng.integers(1, 15), max(x0, 0) : x0 + rng.integers(1, 15)] = True
    yy, xx = np.mgrid[:h, :w]
    cy, cx, rad = rng.integers(0, h), rng.integers(0, w), rng.integers(1, 8)
    if rng.random() < 0.7:
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rad * rad
    return m


@pytest.mark.parametrize("seed", range(12))
def test_cross_check_against_direct_davis_formulas(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 40)), int(rng.integers(20, 50)))
    gt, pred = blob(rng, shape), blob(rng, shape)
    if seed % 3 == 0:
        pred = gt.copy()
        pred[rng.integers(0, shape[0]), :] ^= True  # a one-row error
    void = blob(rng, shape) if seed % 2 else np.zeros(shape, bool)
    for bound_th in (0.008, 0.05, 1, 3):
        got = boundary_f(pred, gt, void, bound_th)
        assert got == pytest.approx(davis_f(pred, gt, void, bound_th), abs=1e-12)
    assert region_j(pred, gt, void) == pytest.approx(davis_j(pred, gt, void), abs=1e-12)
    assert np.array_equal(boundary_map(gt), davis_bmap(gt))


# --- temporal stability --------------------------------------------------------------------

S4 = box((12, 12), 2, 2, 6, 6)  # 16 pixels
S4_WIDE = box((12, 12), 2, 2, 6, 7)  # + a 4-pixel column


@pytest.mark.parametrize(
    ("pred", "gt", "want"),
    [
        ([S4, S4, S4], [S4, S4, S4], 1.0),
        ([S4, S4_WIDE, S4], [S4, S4, S4], 0.75),  # 4 of 16 pixels flicker on each pair
        ([S4_WIDE, S4_WIDE, S4_WIDE], [S4, S4, S4], 1.0),  # consistently wrong is stable
        # The truth moves one column per frame (8 pixels change); a still prediction
        # changes 0: flicker 8 / 20 per pair.
        (
            [S4, S4, S4],
            [S4, box((12, 12), 2, 3, 6, 7), box((12, 12), 2, 4, 6, 8)],
            1 - 8 / 20,
        ),
        ([S4, S4], [np.zeros((12, 12), bool)] * 2, None),  # never in the truth: undefined
        ([S4], [S4], None),  # one frame: no pair
        # Leaves the truth on the second frame: |G_a ∪ G_b| = 16, truth changes 16,
        # the prediction keeps it (changes 0): flicker 1.
        ([S4, S4], [S4, np.zeros((12, 12), bool)], 0.0),
    ],
)
def test_temporal_stability_table(pred, gt, want):
    got = temporal_stability(pred, gt)
    assert got == (None if want is None else pytest.approx(want))


# --- sequences and folders ------------------------------------------------------------------


def test_score_sequence_objects_absent_late_and_missing():
    g = np.zeros((3, 20, 20), np.int64)
    g[:, 2:8, 2:8] = 1
    g[2, 10:16, 10:16] = 2  # object 2 only on the last frame
    p = g.copy()
    p[0, 15:18, 15:18] = 2  # predicted on frame 0 where it is absent
    p[1, 0:2, 0:2] = 9  # an id without ground truth: not an object
    frames = [("00000", g[0], p[0]), ("00001", g[1], None), ("00002", g[2], p[2])]
    seq = score_sequence("s", frames, bound_th=1)
    assert [o.id for o in seq.objects] == [1, 2]
    o1, o2 = seq.objects
    assert o1.j == [1.0, 0.0, 1.0] and o1.f == [1.0, 0.0, 1.0]
    assert o2.j == [0.0, 1.0, 1.0]  # absent and predicted absent on the missing frame
    assert seq.missing == ["00001"]
    assert seq.j == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert seq.jf == pytest.approx((seq.j + seq.f) / 2)


def write_maps(folder, maps):
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in maps.items():
        Image.fromarray(ids.astype(np.uint8), mode="L").save(folder / f"{name}.png")


def test_folders_perfect_coarse_and_sparse(shared_data, tmp_path):
    from samrefiner.measure.sequences import SequenceSpec, write_dataset

    specs = [SequenceSpec(name="a", frames=8, height=48, width=80, seed=1)]
    layout = write_dataset(tmp_path / "ds", specs, shared_data, label_every=3)
    gt = evaluate_video_folders(layout.gt, layout.gt, "gt")
    assert gt.summary() == {"J": 1.0, "F": 1.0, "J&F": 1.0, "stability": 1.0}
    coarse = evaluate_video_folders(layout.coarse, layout.gt, "coarse")
    sparse = evaluate_video_folders(layout.sparse, layout.gt, "sparse")
    assert 0.3 < coarse.j < 0.95 and coarse.f < 1.0 and coarse.stability < 1.0
    assert sparse.sequences[0].missing == ["00001", "00002", "00004", "00005", "00007"]
    assert sparse.j < coarse.j
    # One sequence folder alone is one sequence.
    single = evaluate_video_folders(layout.coarse / "a", layout.gt / "a", "coarse")
    assert single.summary() == coarse.summary()
    report = VideoEvalReport(1, str(layout.gt), 0.008, 255, [coarse, sparse])
    back = VideoEvalReport.from_json(json.loads(json.dumps(report.to_json())))
    assert back == report
    assert back.predictions[1].sequences[0].missing == sparse.sequences[0].missing


def test_folder_errors(tmp_path):
    write_maps(tmp_path / "gt" / "s", {"00000": np.zeros((8, 8))})
    write_maps(tmp_path / "pred" / "s", {"00000": np.zeros((8, 9))})
    with pytest.raises(InputError, match=r"00000\.png: size 9x8 differs"):
        evaluate_video_folders(tmp_path / "pred", tmp_path / "gt", "p")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="no label maps"):
        list_sequences(tmp_path / "empty")
    with pytest.raises(InputError, match="folder not found"):
        list_sequences(tmp_path / "absent")
    with pytest.raises(InputError, match="not a video evaluation report"):
        VideoEvalReport.from_json({"version": 1, "gt": "g"})


def test_report_validation():
    with pytest.raises(ValueError, match="version"):
        VideoEvalReport(2, "g", 0.008, None, [])


def test_frames_in_numeric_order(tmp_path):
    # Stability pairs consecutive frames: "10" must come after "9", not after "1".
    for name in ("0", "1", "2", "9", "10"):
        write_maps(tmp_path / "gt" / "s", {name: np.zeros((4, 4))})
    assert list(list_sequences(tmp_path / "gt")["s"]) == ["0", "1", "2", "9", "10"]
    write_maps(tmp_path / "gt" / "t", {"b": np.zeros((4, 4)), "a10": np.zeros((4, 4))})
    assert list(list_sequences(tmp_path / "gt")["t"]) == ["a10", "b"]
