"""The dataset runner with a fake refiner: every format, every bad input, nothing lost."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from helpers_runner import (
    COCO_EXPECTED,
    COCO_MIN_SCORE,
    MASKS_EXPECTED,
    FakeRefiner,
    build_coco,
    build_instances,
    build_masks,
    build_semantic,
    fake_refine,
    tree_bytes,
)
from samrefiner.io.coco import decode_segmentation, load_coco
from samrefiner.io.label_maps import read_label_map
from samrefiner.runner import (
    CocoDataset,
    InstanceDataset,
    MaskFolderDataset,
    RunOptions,
    RunState,
    SemanticDataset,
    run_dataset,
)

QUIET = RunOptions(workers=2, prefetch=2, progress=False)


def run_coco(tmp_path, refiner=None, options=QUIET, **kwargs):
    ann_path, images = build_coco(tmp_path)
    out = tmp_path / "out" / "refined.json"
    state = RunState(out)
    state.start({"case": "coco"}, resume=False)
    dataset = CocoDataset(load_coco(ann_path), images, out, min_score=COCO_MIN_SCORE, **kwargs)
    summary = run_dataset(dataset, refiner or FakeRefiner(), state, options)
    return ann_path, out, summary


def test_coco_every_annotation_gets_its_exact_status(tmp_path) -> None:
    ann_path, out, summary = run_coco(tmp_path)
    original = json.loads(ann_path.read_text())
    refined = json.loads(out.read_text())
    assert [a["id"] for a in refined["annotations"]] == [a["id"] for a in original["annotations"]]
    assert {k: v for k, v in refined.items() if k != "annotations"} == {
        k: v for k, v in original.items() if k != "annotations"
    }
    for before, after in zip(original["annotations"], refined["annotations"], strict=True):
        entry = after.pop("samrefiner")
        assert entry["status"] == COCO_EXPECTED[before["id"]], before["id"]
        if entry["status"] != "refined":
            # Passed through: every field exactly as it came in (NaN compares unequal).
            assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
            if entry["status"] not in ("iscrowd", "below_min_score"):
                assert entry["message"]
            continue
        coarse, _ = decode_segmentation(before["segmentation"], 40, 60)
        grown, score = fake_refine(coarse[None])
        mask, _ = decode_segmentation(after["segmentation"], 40, 60)
        assert isinstance(after["segmentation"]["counts"], str)
        assert np.array_equal(mask, grown[0])
        assert after["area"] == int(grown[0].sum())
        ys, xs = np.nonzero(mask)
        assert after["bbox"] == [
            xs.min(),
            ys.min(),
            xs.max() - xs.min() + 1,
            ys.max() - ys.min() + 1,
        ]
        assert entry["predicted_iou"] == pytest.approx(float(score[0]), abs=1e-6)
        assert entry["coarse_iou"] == pytest.approx(coarse.sum() / grown[0].sum(), abs=1e-6)
        assert entry["iterations"] == 1
        for key in set(before) - {"segmentation", "area", "bbox"}:
            assert after[key] == before[key]
        assert entry.get("warnings", []) == (["clipped"] if before["id"] == 6 else [])
    assert summary.images_total == 6
    assert summary.images_processed == 3
    assert dict(summary.images_skipped) == {
        "image_missing": 1,
        "image_unreadable": 1,
        "size_mismatch": 1,
    }
    assert summary.masks_total == len(original["annotations"])
    assert summary.masks_refined == 6
    assert summary.masks_skipped["duplicate_id"] == 2
    assert dict(summary.warnings) == {"clipped": 1}
    assert summary.mean_predicted_iou is not None and summary.mean_coarse_iou < 1


def test_coco_crowd_refined_on_request_and_results_file(tmp_path) -> None:
    ann_path, images = build_coco(tmp_path)
    data = json.loads(ann_path.read_text())
    results = [a for a in data["annotations"] if a["id"] in (1, 3, 11)]
    for a in results:
        a.pop("id")
        a.setdefault("score", 0.8)
    res_path = tmp_path / "results.json"
    res_path.write_text(json.dumps(results))
    out = tmp_path / "res_out.json"
    state = RunState(out)
    state.start({}, resume=False)
    coco = load_coco(res_path, image_info=ann_path)
    summary = run_dataset(
        CocoDataset(coco, images, out, refine_crowd=True), FakeRefiner(), state, QUIET
    )
    written = json.loads(out.read_text())
    assert isinstance(written, list) and len(written) == 3
    assert [a["samrefiner"]["status"] for a in written] == ["refined"] * 3
    assert [a["score"] for a in written] == [0.8, 0.9, 0.1]
    assert summary.masks_refined == 3


def test_refiner_value_error_is_reported_not_fatal(tmp_path) -> None:
    _, out, summary = run_coco(tmp_path, refiner=FakeRefiner(fail_on_size=(40, 60)))
    statuses = {
        a["id"]: a["samrefiner"]["status"] for a in json.loads(out.read_text())["annotations"]
    }
    assert statuses[1] == statuses[50] == "refine_error"
    assert summary.images_processed == 0
    assert summary.images_skipped["refine_error"] == 3


def test_workers_zero_gives_the_same_output(tmp_path) -> None:
    _, out_a, _ = run_coco(tmp_path / "a")
    _, out_b, _ = run_coco(tmp_path / "b", options=RunOptions(workers=0, progress=False))
    # Messages name the files, whose folders differ ("a" and "b").
    text_a = out_a.read_text().replace(str(tmp_path / "a"), "ROOT")
    assert text_a == out_b.read_text().replace(str(tmp_path / "b"), "ROOT")


class Crash(BaseException):
    """Stands for the process being killed."""


def crash_after(n: int):
    seen = []

    def hook(record) -> None:
        seen.append(record.key)
        if len(seen) >= n:
            raise Crash

    return hook


def _coco_run(root, resume: bool, hook=None, refiner=None):
    ann_path, images = root / "coarse.json", root / "images"
    out = root / "refined.json"
    state = RunState(out)
    state.start({"case": "coco"}, resume=resume)
    dataset = CocoDataset(load_coco(ann_path), images, out, min_score=COCO_MIN_SCORE)
    return out, run_dataset(dataset, refiner or FakeRefiner(), state, QUIET, on_record=hook)


def test_coco_resume_after_crash_is_byte_identical(tmp_path) -> None:
    build_coco(tmp_path)
    out, _ = _coco_run(tmp_path, resume=False)
    uninterrupted = out.read_bytes()
    out.unlink()
    with pytest.raises(Crash):
        _coco_run(tmp_path, resume=False, hook=crash_after(2))
    assert not out.exists()
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(list((tmp_path / "refined.json.samrefiner-state" / "done").iterdir())) >= 2
    refiner = FakeRefiner()
    out, summary = _coco_run(tmp_path, resume=True, refiner=refiner)
    assert out.read_bytes() == uninterrupted
    assert summary.images_resumed >= 2
    assert summary.images_processed == 3
    assert refiner.calls <= 2  # one of the three usable images was done before the crash


def test_resume_refuses_other_settings(tmp_path) -> None:
    out = tmp_path / "o.json"
    RunState(out).start({"a": 1}, resume=False)
    from samrefiner.runner import StateError

    with pytest.raises(StateError, match="other settings"):
        RunState(out).start({"a": 2}, resume=True)
    assert RunState(out).start({"a": 1}, resume=True) is True
    assert RunState(out).start({"a": 2}, resume=False) is False


def test_instances_overlap_ignore_palette_and_bad_files(tmp_path) -> None:
    images, labels = build_instances(tmp_path)
    out = tmp_path / "out"
    state = RunState(out)
    state.start({}, resume=False)
    summary = run_dataset(
        InstanceDataset(images, labels, out, ignore=255), FakeRefiner(), state, QUIET
    )
    src, dst = read_label_map(labels / "a.png"), read_label_map(out / "a.png")
    assert dst.mode == "P" and dst.palette == src.palette
    expected = np.zeros((40, 60), dtype=np.uint8)
    expected[4:26, 4:36] = 1  # object 1 grown by 1 px
    expected[4:26, 36:46] = 2  # object 2 grown, minus the column object 1 (higher IoU) took
    expected[30:32, :] = 255  # ignore band kept
    assert np.array_equal(dst.labels, expected)
    b = read_label_map(out / "seq" / "b.png")
    assert b.mode == "I;16" and set(np.unique(b.labels)) == {0, 300, 7000}
    c_in, c_out = read_label_map(labels / "c.png"), read_label_map(out / "c.png")
    assert np.array_equal(c_out.labels == 5, c_in.labels == 5)  # outside the palette: kept
    assert c_out.palette[:9] == c_in.palette
    for name in ("orphan.png", "d.png", "e.png", "f.png"):  # copied byte for byte
        assert (out / name).read_bytes() == (labels / name).read_bytes()
    assert summary.images_processed == 3
    assert dict(summary.images_skipped) == {
        "image_missing": 1,
        "size_mismatch": 1,
        "mask_unreadable": 1,
        "nothing_to_refine": 1,
    }
    # Id 5 has no colour in c.png, orphan.png and d.png; their id 1 takes the image's status.
    assert summary.masks_by_status["value_outside_palette"] == 3
    assert summary.masks_by_status["image_missing"] == 1
    assert summary.masks_by_status["size_mismatch"] == 1


def test_instances_refine_ignore_lets_objects_take_ignore_pixels(tmp_path) -> None:
    images, labels = build_instances(tmp_path)
    out = tmp_path / "out"
    state = RunState(out)
    state.start({}, resume=False)
    run_dataset(
        InstanceDataset(images, labels, out, ignore=255, refine_ignore=True),
        FakeRefiner(),
        state,
        QUIET,
    )
    assert (read_label_map(out / "a.png").labels[30:32] == 255).all()  # nothing reaches it
    ignore_none = tmp_path / "none"
    state = RunState(ignore_none)
    state.start({}, resume=False)
    run_dataset(
        InstanceDataset(images, labels, ignore_none, ignore=None), FakeRefiner(), state, QUIET
    )
    # With no ignore value the band is object 255, refined (grown) like the others.
    assert (read_label_map(ignore_none / "a.png").labels[29:33] == 255).all()


def test_semantic_split_refine_merge_back(tmp_path) -> None:
    images, labels = build_semantic(tmp_path)
    out = tmp_path / "out"
    state = RunState(out)
    state.start({}, resume=False)
    summary = run_dataset(
        SemanticDataset(images, labels, out, ignore=255), FakeRefiner(), state, QUIET
    )
    src, dst = read_label_map(labels / "s.png"), read_label_map(out / "s.png")
    assert dst.palette == src.palette
    assert dst.labels[0, 59] == 0  # the speck was dropped
    assert (dst.labels[14:16, 30:60] == 255).all()  # ignore kept
    assert set(np.unique(dst.labels)) == {0, 9, 15, 255}
    assert (dst.labels[src.labels == 15] == 15).mean() > 0.9
    # s.png: class 15 in 2 regions (the two near parts merge), class 9 in 1; t.png: class 1.
    assert summary.masks_by_status["refined"] == 4
    t_in, t_out = read_label_map(labels / "t.png"), read_label_map(out / "t.png")
    assert np.array_equal(t_out.labels == 3, t_in.labels == 3)
    assert summary.masks_by_status["value_outside_palette"] == 1


def test_binary_masks_each_rule_and_bad_file(tmp_path) -> None:
    images, masks = build_masks(tmp_path)
    out = tmp_path / "out"
    state = RunState(out)
    state.start({}, resume=False)
    summary = run_dataset(MaskFolderDataset(images, masks, out), FakeRefiner(), state, QUIET)
    written = tree_bytes(out)
    assert sorted(written) == sorted(MASKS_EXPECTED)
    seen = {}
    for key in ("w", "x", "y", "unmatched:z-1.png"):
        for obj in state.read(key).objects:
            seen[obj.id] = obj.status
    assert seen == MASKS_EXPECTED
    for name, status in MASKS_EXPECTED.items():
        if status == "refined":
            coarse = np.asarray(Image.open(masks / name)) > 0
            assert np.array_equal(
                np.asarray(Image.open(out / name)) > 0, fake_refine(coarse[None])[0][0]
            )
        else:
            assert written[name] == (masks / name).read_bytes()
    assert summary.images_processed == 3
    assert summary.images_skipped["image_missing"] == 1


@pytest.mark.parametrize("fmt", ["instances", "semantic", "masks"])
def test_folder_resume_after_crash_is_byte_identical(tmp_path, fmt: str) -> None:
    builders = {
        "instances": (build_instances, InstanceDataset),
        "semantic": (build_semantic, SemanticDataset),
        "masks": (build_masks, MaskFolderDataset),
    }
    build, cls = builders[fmt]
    images, inputs = build(tmp_path)
    out = tmp_path / "out"
    state = RunState(out)
    state.start({"fmt": fmt}, resume=False)
    run_dataset(cls(images, inputs, out), FakeRefiner(), state, QUIET)
    uninterrupted = tree_bytes(out)
    shutil.rmtree(out)
    state = RunState(out)
    state.start({"fmt": fmt}, resume=False)
    with pytest.raises(Crash):
        run_dataset(cls(images, inputs, out), FakeRefiner(), state, QUIET, on_record=crash_after(1))
    assert not list(out.rglob("*.tmp"))
    assert tree_bytes(out) != uninterrupted
    state = RunState(out)
    assert state.start({"fmt": fmt}, resume=True)
    run_dataset(cls(images, inputs, out), FakeRefiner(), state, QUIET)
    assert tree_bytes(out) == uninterrupted


def test_summary_dict_and_text() -> None:
    from samrefiner.runner.journal.records import ImageRecord, ObjectRecord, RunSummary

    summary = RunSummary(images_total=2)
    summary.add(
        ImageRecord(
            "a", [ObjectRecord(1, "refined", 0.9, 0.8, 3), ObjectRecord(2, "empty", message="x")]
        )
    )
    summary.add(ImageRecord("b", [ObjectRecord(3, "image_missing")], "image_missing", "gone"))
    data = summary.to_json()
    assert RunSummary.from_json(json.loads(json.dumps(data))) == summary
    assert data["images_processed"] == 1
    assert data["images_skipped"] == {"image_missing": 1}
    assert data["masks_skipped"] == {"empty": 1, "image_missing": 1}
    assert data["mean_predicted_iou"] == 0.9 and data["mean_coarse_vs_refined_iou"] == 0.8
    assert summary.bad_input == 3
    text = summary.format()
    assert "1 processed of 2" in text and "empty 1" in text and "0.9000" in text
    with pytest.raises(ValueError, match="unknown object status"):
        ObjectRecord(1, "fine")
