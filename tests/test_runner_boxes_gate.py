"""Dataset runs with box inputs (COCO bbox) and the quality gate."""

from __future__ import annotations

import json

import numpy as np

from helpers_fake_backend import FakeBackend, fixed
from samrefiner import RefineConfig, Refiner
from samrefiner.io.coco import bbox_xyxy, has_segmentation, load_coco
from samrefiner.runner import CocoDataset, MaskFolderDataset, RunOptions, RunState, run_dataset
from test_runner_data import box_mask, build_masks, polygon, write_image

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
    assert summary.to_dict()["kept_coarse_by_reason"] == {"low_score": 3}
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
