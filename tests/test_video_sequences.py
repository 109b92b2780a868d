"""Synthetic video sequences (samrefiner.measure.sequences): exact ground truth, coarse maps,
the DAVIS layout on disk, and the .mp4 writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samrefiner.io import InputError
from samrefiner.io.label_maps import read_label_map
from samrefiner.io.masks import mask_iou
from samrefiner.measure.sequences import (
    DatasetLayout,
    SequencesManifest,
    SequenceSpec,
    _Cutout,
    _paste,
    build_sequence,
    davis_palette,
    frame_name,
    write_dataset,
    write_video,
)

SPEC = SequenceSpec(name="seq", frames=10, height=64, width=96, seed=3)


@pytest.fixture(scope="module")
def built(shared_data):
    return build_sequence(SPEC, shared_data)


def test_palette_is_the_davis_colours():
    pal = davis_palette()
    assert len(pal) == 768
    # Hand-checked DAVIS colours: background black, object 1 dark red, 2 dark green, 3 olive,
    # 4 dark blue, 8 a darker-bit red (64, 0, 0).
    assert pal[0:3] == [0, 0, 0]
    assert pal[3:6] == [128, 0, 0]
    assert pal[6:9] == [0, 128, 0]
    assert pal[9:12] == [128, 128, 0]
    assert pal[12:15] == [0, 0, 128]
    assert pal[24:27] == [64, 0, 0]


def test_same_spec_same_sequence_other_seed_differs(shared_data, built):
    again = build_sequence(SPEC, shared_data)
    assert np.array_equal(again.frames, built.frames)
    assert np.array_equal(again.gt, built.gt)
    assert np.array_equal(again.coarse, built.coarse)
    other = build_sequence(
        SequenceSpec(name="seq", frames=10, height=64, width=96, seed=4), shared_data
    )
    assert not np.array_equal(other.gt, built.gt)


def test_objects_move_leave_and_appear(built):
    spec = built.spec
    kinds = {o.kind: o for o in built.objects}
    assert sorted(o.id for o in built.objects) == [1, 2, 3]
    assert kinds["late"].id == 3  # the late object has the highest id
    # The late object is absent before its frame and visible from it on.
    late = kinds["late"]
    assert not any(late.visible[: spec.late_frame])
    assert all(late.visible[spec.late_frame :])
    # The exiting object is visible at both ends and wholly outside in between.
    ex = kinds["exits"]
    a, b = spec.exit_frames
    assert ex.visible[0] and ex.visible[-1]
    assert not any(ex.visible[a : b + 1])
    # The steady object moves: its mask is not the same on every frame.
    steady = kinds["steady"]
    masks = built.gt == steady.id
    assert all(steady.visible)
    assert any(not np.array_equal(masks[0], m) for m in masks[1:])
    assert len(set(steady.area)) > 1  # it scales (and may be occluded)
    for obj in built.objects:
        assert obj.area == [int((built.gt[t] == obj.id).sum()) for t in range(spec.frames)]


def test_paste_marks_exactly_the_painted_pixels():
    # A 20 x 10 cut-out whose mask is its left half, pasted half outside the left edge.
    rgb = np.full((20, 10, 3), 200, np.uint8)
    mask = np.zeros((20, 10), bool)
    mask[:, :5] = True
    cut = _Cutout("x", rgb, mask)
    canvas = np.zeros((40, 40, 3), np.uint8)
    ids = np.zeros((40, 40), np.uint8)
    # Height 20 (s = 0.5 of 40), width 10; centre x = 0.05 * 40 = 2 -> columns -3..6.
    _paste(canvas, ids, cut, 7, (0.05, 0.5, 0.5))
    want = np.zeros((40, 40), bool)
    want[10:30, 0:2] = True  # mask columns 3, 4 land on frame columns 0, 1
    assert np.array_equal(ids == 7, want)
    assert np.array_equal(canvas.any(axis=2), want)
    assert (canvas[want] == 200).all()
    # Wholly outside: nothing painted.
    _paste(canvas, ids, cut, 8, (-0.5, 0.5, 0.5))
    assert not (ids == 8).any()


def test_ground_truth_ids_are_the_visible_objects(built):
    for t in range(built.spec.frames):
        present = set(np.unique(built.gt[t]).tolist()) - {0}
        assert present == {o.id for o in built.objects if o.visible[t]}


def test_coarse_maps_degrade_each_visible_object(built):
    for t in range(built.spec.frames):
        gt_ids = set(np.unique(built.gt[t]).tolist()) - {0}
        coarse_ids = set(np.unique(built.coarse[t]).tolist()) - {0}
        assert coarse_ids <= gt_ids
        assert set(built.coarse_iou[t]) == gt_ids
        for oid, iou in built.coarse_iou[t].items():
            assert iou == pytest.approx(
                mask_iou(built.coarse[t] == oid, built.gt[t] == oid), abs=1e-6
            )
    ious = [v for d in built.coarse_iou for v in d.values()]
    assert 0.3 < float(np.mean(ious)) < 0.95  # coarse, not ground truth, not garbage
    assert not np.array_equal(built.coarse, built.gt)


def test_write_dataset_davis_layout(shared_data, tmp_path):
    specs = [SPEC, SequenceSpec(name="two", frames=7, height=48, width=64, seed=1, late_objects=0)]
    layout = write_dataset(tmp_path / "ds", specs, shared_data, label_every=3)
    assert layout == DatasetLayout(tmp_path / "ds", ("seq", "two"))
    seq = build_sequence(SPEC, shared_data)
    for t in range(SPEC.frames):
        stem = frame_name(t)
        gt = read_label_map(layout.gt / "seq" / f"{stem}.png")
        assert gt.mode == "P" and gt.palette[:12] == davis_palette()[:12]
        assert np.array_equal(gt.labels, seq.gt[t])
        coarse = read_label_map(layout.coarse / "seq" / f"{stem}.png")
        assert np.array_equal(coarse.labels, seq.coarse[t])
        sparse = layout.sparse / "seq" / f"{stem}.png"
        assert sparse.is_file() == (t % 3 == 0)
        jpg = layout.frames / "seq" / f"{stem}.jpg"
        from samrefiner.io.images import read_image

        decoded = read_image(jpg).astype(int)
        assert np.abs(decoded - seq.frames[t]).mean() < 6  # JPEG quality 95
    assert sorted(p.name for p in (layout.frames / "two").iterdir()) == [
        f"{frame_name(t)}.jpg" for t in range(7)
    ]
    manifest = layout.read_manifest()
    assert manifest.label_every == 3
    assert manifest.sequences["seq"].sparse_frames == ["00000", "00003", "00006", "00009"]
    assert [o.id for o in manifest.sequences["two"].objects] == [1, 2]
    assert manifest.sequences["seq"].objects == seq.objects


def test_manifest_rejects_malformed(tmp_path):
    with pytest.raises(InputError, match="manifest"):
        SequencesManifest.from_json({"version": 1, "label_every": 0, "sequences": {}})
    with pytest.raises(InputError, match="manifest"):
        SequencesManifest.from_json({"version": 1})
    bad = tmp_path / "sequences.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"sequences\.json"):
        DatasetLayout(tmp_path, ()).read_manifest()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frames": 5},
        {"height": 33},
        {"width": 16},
        {"objects": 0},
        {"exit_objects": 3},
        {"scale_range": (0.7, 0.5)},
        {"name": "a/b"},
    ],
)
def test_spec_validation(kwargs):
    with pytest.raises(ValueError):
        SequenceSpec(**kwargs)


def test_missing_shared_data_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="davis2016"):
        build_sequence(SPEC, tmp_path)


def test_write_video_round_trip(built, tmp_path):
    import cv2

    path = tmp_path / "clip" / "seq.mp4"
    write_video(path, built.frames, fps=10)
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(bgr[..., ::-1])
    cap.release()
    assert len(decoded) == SPEC.frames
    for got, want in zip(decoded, built.frames, strict=True):
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want).mean() < 20  # lossy mp4v
    assert [p.name for p in path.parent.iterdir()] == ["seq.mp4"]  # no temporary left
    with pytest.raises(ValueError, match=r"\.mp4"):
        write_video(tmp_path / "x.avi", built.frames)
    with pytest.raises(ValueError, match="T x H x W x 3"):
        write_video(tmp_path / "x.mp4", built.frames[..., 0])


def test_manifest_json_is_plain(shared_data, tmp_path):
    layout = write_dataset(tmp_path, [SPEC], shared_data, label_every=2)
    data = json.loads(layout.manifest.read_text())
    assert data["version"] == 1 and data["label_every"] == 2
    assert data["sequences"]["seq"]["spec"]["seed"] == 3


def test_written_video_reads_back_as_the_video_commands_frame_source(built, tmp_path):
    from samrefiner.video.frames import VideoFileFrames

    path = tmp_path / "seq.mp4"
    write_video(path, built.frames)
    source = VideoFileFrames(path)
    assert len(source) == SPEC.frames and source.size == (SPEC.height, SPEC.width)
    last = source.read(SPEC.frames - 1)
    assert np.abs(last.astype(int) - built.frames[-1]).mean() < 20
