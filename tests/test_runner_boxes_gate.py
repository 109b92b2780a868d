"""Dataset runs with box inputs (COCO bbox) and the quality gate."""

from __future__ import annotations

import json

import numpy as np

from helpers_fake_backend import FakeBackend, fixed
from helpers_runner import box_mask, build_masks, polygon, write_image
from samrefiner import RefineConfig, Refiner
from samrefiner.io.coco import bbox_xyxy, has_segmentation, load_coco
from samrefiner.runner import CocoDataset, MaskFolderDataset, RunOptions, RunState, run_dataset
from samrefiner.runner.journal.records import RunSummary

QUIET = RunOptions(workers=1, prefetch=1, progress=False)


def build(root):
    write_image(root / "images" / "one.png", 1)  # 60 x 40
    base = {"image_id": 1, "category_id": 1, "area": 1.0, "iscrowd": 0}
    anns = [
        {"id": 1, **base, "segmentation": polygon(5, 5, 20, 15), "bbox": [4, 4, 18, 13]},
        {"id": 2, **base, "bbox": [30, 5, 15, 10]},  # no segmentation: from its box
        {"id": 3, **base, "segmentation": [], "bbox": [30, 20, 20, 15]},  # empty: box
        {"id": 4, **base, "segmentation": None, "bbox": [1, 1, 0, 5]},  # zero width
        {"id": 5, **base, "bbox": [100, 100, 5, 5]},  # outside the image
    ]
    data = {
        "images": [{"id": 1, "file_name": "one.png", "width": 60, "height": 40}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "c"}],
    }
    path = root / "coarse.json"
    path.write_text(json.dumps(data))
    return path


def run(root, refiner, **kwargs):
    out = root / "out" / "refined.json"
    state = RunState(out)
    state.start({"case": "boxes"}, resume=False)
    dataset = CocoDataset(load_coco(build(root)), root / "images", out, **kwargs)
    summary = run_dataset(dataset, refiner, state, QUIET)
    return json.loads(out.read_text())["annotations"], summary


def test_coco_annotations_without_segmentation_are_refined_from_their_bbox(tmp_path, tiny_backend):
    anns, summary = run(tmp_path, Refiner(tiny_backend, RefineConfig(iterations=1)))
    entries = {a["id"]: a["samrefiner"] for a in anns}
    assert [entries[i]["status"] for i in (4, 5)] == ["invalid_bbox", "invalid_bbox"]
    assert "outside" in entries[5]["message"] and "width and height" in entries[4]["message"]
    for i in (2, 3):
        assert entries[i].get("from_box") is True and entries[i]["iterations"] >= 1
    assert "from_box" not in entries[1]
    assert summary.masks_from_box == 2


def test_from_boxes_uses_the_box_where_a_segmentation_exists(tmp_path):
    backend = FakeBackend()
    anns, summary = run(tmp_path, Refiner(backend, RefineConfig(iterations=1)), from_boxes=True)
    assert all(a["samrefiner"].get("from_box") for a in anns if a["id"] in (1, 2, 3))
    assert summary.masks_from_box == 3
    # One encoder pass; the first decode gets the three boxes alone (inclusive XYXY).
    assert len(backend.encoded) == 1
    box_rows = np.concatenate([c.boxes for c in backend.calls if c.box_only])
    np.testing.assert_array_equal(box_rows, [[4, 4, 21, 16], [30, 5, 44, 14], [30, 20, 49, 34]])


def test_mixed_masks_and_boxes_share_one_encoder_pass(tmp_path):
    backend = FakeBackend()
    anns, _ = run(tmp_path, Refiner(backend, RefineConfig(iterations=1)))
    assert len(backend.encoded) == 1
    statuses = {a["id"]: a["samrefiner"]["status"] for a in anns}
    assert statuses[1] in ("refined", "collapsed") and statuses[2] in ("refined", "collapsed")


def test_gate_keeps_the_input_and_reports_reasons(tmp_path):
    original = json.loads(build(tmp_path).read_text())["annotations"]
    refiner = Refiner(
        FakeBackend(fixed(np.ones((64, 64), bool), 0.2)),
        RefineConfig(iterations=1, gate_min_score=0.5),
    )
    anns, summary = run(tmp_path, refiner)
    for before, after in zip(original, anns, strict=True):
        entry = after.pop("samrefiner")
        if before["id"] in (1, 2, 3):
            assert entry["status"] == "kept_coarse" and entry["gate_reason"] == "low_score"
            assert entry["predicted_iou"] == 0.2
            assert after == before  # written back exactly as it came in
    assert summary.kept_coarse_by_reason == {"low_score": 3}
    assert summary.images_processed == 1  # every mask kept coarse, yet the image was refined
    data = json.loads(json.dumps(summary.to_json()))
    assert data["kept_coarse_by_reason"] == {"low_score": 3}
    again = RunSummary.from_json(data)
    assert again.kept_coarse_by_reason == {"low_score": 3}
    assert again.masks_by_status["kept_coarse"] == 3
    assert "kept coarse by the quality gate: 3 (low_score 3)" in summary.format()


def test_gate_in_a_mask_folder_copies_the_input(tmp_path):
    images, masks_dir = build_masks(tmp_path)
    out = tmp_path / "out"
    state = RunState(out)
    state.start({"case": "masks"}, resume=False)
    refiner = Refiner(  # every refined mask covers the whole image: all are kept
        FakeBackend(fixed(np.ones((64, 64), bool), 0.9)),
        RefineConfig(iterations=1, gate_max_area_ratio=1.5),
    )
    summary = run_dataset(MaskFolderDataset(images, masks_dir, out), refiner, state, QUIET)
    assert summary.masks_refined == 0
    assert summary.kept_coarse_by_reason == {"area_change": summary.masks_by_status["kept_coarse"]}
    assert summary.masks_by_status["kept_coarse"] >= 2
    for path in masks_dir.rglob("*.png"):
        assert (out / path.relative_to(masks_dir)).read_bytes() == path.read_bytes()


def test_bbox_helpers():
    assert bbox_xyxy([4, 4, 18, 13]) == [4, 4, 21, 16]
    assert bbox_xyxy([2.5, 3, 0.5, 1]) == [2.5, 3, 2.5, 3]
    assert not has_segmentation({"segmentation": [[], []]})
    assert not has_segmentation({}) and has_segmentation({"segmentation": [[1, 2, 3]]})
    assert box_mask(1, 1, 2, 2).sum() == 4


def test_boxes_and_masks_in_small_batches_equal_one_call_each(tiny_backend, rng):
    from samrefiner.runner import Job
    from samrefiner.runner.engines.steps import prepare_prompts, refine_job
    from samrefiner.types import RefineResult

    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    masks = np.zeros((5, 60, 80), bool)
    for k in range(5):
        masks[k, 5 + 8 * k : 20 + 8 * k, 4 + 12 * k : 24 + 12 * k] = True
    boxes = np.full((5, 4), np.nan, np.float32)
    boxes[[1, 3]] = [[10, 12, 30, 28], [40, 30, 70, 50]]  # objects 1 and 3 come as boxes
    config = RefineConfig(iterations=2, gate_min_score=0.3, zoom_below=80)
    refiner = Refiner(tiny_backend, config)
    embedding = refiner.encode(image)
    by_mask = refiner.refine(image, masks[[0, 2, 4]], embedding=embedding)
    by_box = refiner.refine(image, boxes=boxes[[1, 3]], embedding=embedding)
    expected = RefineResult.gather(5, [([0, 2, 4], by_mask), ([1, 3], by_box)])
    # Some objects are zoomed and some not, some kept coarse and some not.
    assert 0 < expected.zoomed.sum() < 5
    assert 0 < expected.status.count("kept_coarse") < 5
    for k in (1, 3):  # a box object's coarse mask is its filled box
        x1, y1, x2, y2 = boxes[k].astype(int)
        masks[k] = False
        masks[k, y1 : y2 + 1, x1 : x2 + 1] = True
    two_frames = 2 * 60 * 80  # batches {0, 1}, {2, 3}, {4}: each mixes masks and boxes
    for frame_bytes in (two_frames, 64 * 2**20):
        job = Job("k", image, masks, list(range(5)), boxes=boxes)
        assert job.from_box == [False, True, False, True, False]
        job.first_prompts = prepare_prompts(refiner, job, frame_bytes)
        assert job.first_prompts is not None
        assert [p is None for p in job.first_prompts] == job.from_box
        got = refine_job(refiner, job, frame_bytes)
        assert got is not None
        assert np.array_equal(got.masks.stack(), expected.masks)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
        assert got.status == expected.status
        assert got.gate_reasons == expected.gate_reasons
        np.testing.assert_array_equal(got.zoomed, expected.zoomed)
        np.testing.assert_array_equal(got.iterations, expected.iterations)
        records = job.records(got)
        assert [r.from_box for r in records] == job.from_box
        assert [r.gate_reason for r in records] == expected.gate_reasons


def test_report_of_a_gated_run_shows_kept_coarse_with_reasons(tmp_path):
    from samrefiner.report.load import load_report_data

    refiner = Refiner(
        FakeBackend(fixed(np.ones((64, 64), bool), 0.2)),
        RefineConfig(iterations=1, gate_min_score=0.5),
    )
    _, summary = run(tmp_path, refiner)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary.to_json()))
    data = load_report_data(path)
    rows = {row[0]: row for row in data.summary_rows}
    assert rows["kept_coarse"][1] == 3
    assert "quality gate" in rows["kept_coarse"][2] and "low_score 3" in rows["kept_coarse"][2]
    facts = dict(data.facts)
    assert facts["kept coarse by the quality gate"] == "low_score 3"
    assert facts["refined from a box"] == "2"
