"""Completing and naming coarse objects with a detector: the matching rules on arrays,
and ``samrefiner coco --complete`` / ``--name-classes`` with a detector whose boxes the
test knows (:class:`helpers_text.KnownDetector`), scored with pycocotools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import helpers_text
from helpers_runner import run_interrupted
from helpers_text import VOC_CLASSES, image_key, voc_ground_truth
from samrefiner.cli import main
from samrefiner.detectors import Detections
from samrefiner.detectors.matching import MatchSettings, box_iou_matrix, match
from samrefiner.io.coco import segmentation_fields
from samrefiner.io.images import read_image

CLASSES = ["cat", "dog"]


def _box_mask(x1: int, y1: int, x2: int, y2: int, shape=(60, 80)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y1 : y2 + 1, x1 : x2 + 1] = True
    return mask


def _detections(boxes, labels, scores=None) -> Detections:
    scores = [0.9] * len(boxes) if scores is None else scores
    return Detections(np.array(boxes, float).reshape(-1, 4), scores, labels, CLASSES)


def test_box_iou_of_inclusive_pixel_boxes() -> None:
    iou = box_iou_matrix([[0, 0, 9, 9]], [[0, 0, 9, 9], [5, 0, 14, 9], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_missed_detection_is_added_a_duplicate_is_not_an_unsupported_object_flagged() -> None:
    coarse = np.stack([_box_mask(0, 0, 19, 19), _box_mask(50, 30, 69, 49)])
    found = _detections(
        [
            [1, 1, 20, 20],  # the first object again (box IoU 0.82): a duplicate
            [30, 0, 45, 15],  # nothing there: missed
        ],
        [0, 1],
    )
    matching = match(coarse, found)
    assert matching.missed.tolist() == [False, True]
    assert matching.unsupported.tolist() == [False, True]
    first, second = matching.names(found)
    assert first == ("cat", pytest.approx(0.9), pytest.approx(0.82, abs=0.01))
    assert second == (None, 0.0, 0.0)


def test_overlap_rule_and_thresholds() -> None:
    # A thin object: its box IoU with a loose detection box is low, but the detection's
    # box lies mostly on the coarse mask... only when the mask fills it.
    coarse = _box_mask(10, 10, 29, 29)[None]
    loose = _detections([[5, 5, 34, 34]], [0])  # box IoU 400 / 900
    assert match(coarse, loose).missed.tolist() == [True]  # overlap 400 / 900 < 0.5 too
    assert match(coarse, loose, MatchSettings(box_iou=0.4)).missed.tolist() == [False]
    assert match(coarse, loose, MatchSettings(overlap=0.4)).missed.tolist() == [False]
    inner = _detections([[12, 12, 20, 20]], [1])  # inside the object: overlap 1
    assert match(coarse, inner).missed.tolist() == [False]
    assert match(coarse, inner, MatchSettings(overlap=2)).missed.tolist() == [True]
    with pytest.raises(ValueError, match="box_iou"):
        MatchSettings(box_iou=-1)


def test_naming_takes_the_best_box_iou_then_the_score() -> None:
    coarse = np.stack([_box_mask(0, 0, 19, 19), _box_mask(40, 0, 59, 19)])
    found = _detections(
        [[0, 0, 19, 19], [0, 0, 18, 19], [40, 0, 59, 19], [40, 0, 59, 19]],
        [1, 0, 0, 1],
        [0.5, 0.99, 0.6, 0.7],
    )
    names = match(coarse, found).names(found)
    assert names == [("dog", 0.5, 1.0), ("dog", 0.7, 1.0)]
    # Unmatched: no class, and the most overlapping detection's score and box IoU.
    strict = match(coarse, found, MatchSettings(box_iou=1.1, overlap=2)).names(found)
    assert strict == [(None, 0.5, 1.0), (None, 0.7, 1.0)]


def test_detector_masks_are_the_region_of_the_overlap_rule() -> None:
    coarse = _box_mask(0, 0, 9, 9)[None]
    region = _box_mask(0, 0, 9, 2)  # a strip on the object, in a box that leaves it
    found = Detections(np.array([[0, 0, 60, 40]], float), [0.9], [0], CLASSES, masks=region[None])
    assert match(coarse, found).missed.tolist() == [False]


# ------------------------------------------------------------------- coco --complete


@pytest.fixture
def voc(shared_data, tmp_path):
    """The VOC photos' ground truth, a coarse file that misses one object per image and
    holds one object that is not there, and a detector that finds every real object."""
    gt_path, objects = voc_ground_truth(shared_data, tmp_path / "gt.json")
    gt = json.loads(gt_path.read_text())
    images = shared_data / "labelme_voc2011" / "images"
    coarse = {**gt, "annotations": []}
    missing, phantom = {}, {}
    cats = [c["id"] for c in gt["categories"]]
    helpers_text.KNOWN.clear()
    for entry in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == entry["id"]]
        missing[entry["id"]] = anns[-1]["id"]
        coarse["annotations"].extend(anns[:-1])
        ghost = _box_mask(0, 0, 14, 14, (entry["height"], entry["width"]))
        ghost_id = 1000 + entry["id"]
        phantom[entry["id"]] = ghost_id
        coarse["annotations"].append(
            {"id": ghost_id, "image_id": entry["id"], "category_id": cats[0], "iscrowd": 0}
            | segmentation_fields(ghost)
        )
        found = objects[entry["file_name"]]
        scores = np.zeros((len(found), len(cats)))
        for k, obj in enumerate(found):
            scores[k, cats.index(obj["category_id"])] = 0.8
        image = read_image(images / entry["file_name"])
        helpers_text.KNOWN[image_key(image)] = ([o["box"] for o in found], scores.tolist())
    path = tmp_path / "coarse.json"
    path.write_text(json.dumps(coarse))
    yield {"gt": gt_path, "coarse": path, "images": images, "missing": missing, "phantom": phantom}
    helpers_text.KNOWN.clear()


def counts_line(counts: dict[str, int]) -> str:
    per = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return f"{sum(counts.values())} ({per})"


def _coco(voc, out: Path, *extra: str) -> int:
    return main(
        [
            "coco",
            str(voc["coarse"]),
            "--images",
            str(voc["images"]),
            "-o",
            str(out),
            "--model",
            "samrefiner.testing:tiny_sam",
            "--detector",
            "helpers_text:known_detector",
            "--no-progress",
            "--workers",
            "1",
            *extra,
        ]
    )


def test_complete_adds_missed_objects_and_flags_unsupported(voc, tmp_path, capsys) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, summary = tmp_path / "out.json", tmp_path / "summary.json"
    assert _coco(voc, out, "--complete", "--summary", str(summary)) == 0
    data = json.loads(out.read_text())
    gt = json.loads(voc["gt"].read_text())
    added = [a for a in data["annotations"] if a["samrefiner"].get("added")]
    # One added per image: the object the coarse file missed, with its category.
    assert len(added) == len(voc["missing"])
    gt_by_id = {a["id"]: a for a in gt["annotations"]}
    for ann in added:
        missed = gt_by_id[voc["missing"][ann["image_id"]]]
        assert ann["category_id"] == missed["category_id"]
        assert ann["score"] == pytest.approx(0.8) and ann["samrefiner"]["status"] == "refined"
        x, y, w, h = missed["bbox"]
        np.testing.assert_allclose(ann["samrefiner"]["detector"]["box"], [x, y, w, h], atol=1e-4)
    flagged = {a["id"] for a in data["annotations"] if a["samrefiner"].get("unsupported")}
    assert flagged == set(voc["phantom"].values())
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    # Counts per category, printed and in the summary file.
    counts = json.loads(summary.read_text())["completion"]
    assert sum(counts["added"].values()) == len(added)
    assert counts["unsupported"] == {VOC_CLASSES[gt["categories"][0]["id"] - 1]: 3}
    assert f"objects added: {len(added)}" in capsys.readouterr().out
    from samrefiner.report.load import load_report_data

    facts = dict(load_report_data(summary).facts)
    assert facts["objects added (--complete)"].startswith(f"{len(added)} (")
    assert facts["objects unsupported (--complete)"] == counts_line(counts["unsupported"])
    # pycocotools reads the output and scores it against the ground truth.
    truth = COCO(str(voc["gt"]))
    results = truth.loadRes(
        [
            {k: a[k] for k in ("image_id", "category_id", "segmentation")} | {"score": 1.0}
            for a in data["annotations"]
        ]
    )
    evaluation = COCOeval(truth, results, "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    assert evaluation.eval["precision"].shape[0] == 10
    assert COCO(str(out)).getAnnIds() == [a["id"] for a in data["annotations"]]


def test_name_classes_assigns_the_detected_class(voc, tmp_path) -> None:
    gt = json.loads(voc["gt"].read_text())
    # Class-agnostic masks: every object of category 'object'.
    coarse = json.loads(voc["coarse"].read_text())
    coarse["categories"] = [{"id": 1, "name": "object"}]
    for ann in coarse["annotations"]:
        ann["category_id"] = 1
    voc["coarse"].write_text(json.dumps(coarse))
    names = ",".join(c["name"] for c in gt["categories"])
    out = tmp_path / "named.json"
    assert _coco(voc, out, "--name-classes", names) == 0
    data = json.loads(out.read_text())
    ids = {c["name"]: c["id"] for c in data["categories"]}
    assert set(ids) == {"object", *names.split(",")}
    gt_by_id = {a["id"]: a for a in gt["annotations"]}
    voc_name = {c["id"]: c["name"] for c in gt["categories"]}
    for ann in data["annotations"]:
        named = ann["samrefiner"]["named"]
        if ann["id"] in gt_by_id:
            want = voc_name[gt_by_id[ann["id"]]["category_id"]]
            assert named == {"class": want, "score": pytest.approx(0.8), "box_iou": 1.0}
            assert ann["category_id"] == ids[want]
        else:  # the phantom: nothing there, no name
            assert named == {"class": None, "score": 0.0, "box_iou": 0.0}
            assert ann["category_id"] == 1
    assert not any(a["samrefiner"].get("added") for a in data["annotations"])


def test_completion_options_are_checked(voc, tmp_path, capsys) -> None:
    out = tmp_path / "o.json"
    assert (
        main(
            [
                "coco",
                str(voc["coarse"]),
                "--images",
                str(voc["images"]),
                "-o",
                str(out),
                "--complete",
            ]
        )
        == 2
    )
    assert "need a --detector" in capsys.readouterr().err
    assert _coco(voc, out) == 2
    assert "--detector is used with --complete" in capsys.readouterr().err
    assert _coco(voc, out, "--complete", "--detector", "nowhere.module:builder") == 2
    assert "cannot import detector builder" in capsys.readouterr().err


def test_eval_scores_the_completion(voc, tmp_path, capsys) -> None:
    """A completed file built by hand: per image the missed object added back exactly
    (found), an added square where nothing is (spurious), the phantom flagged (spurious)
    and one real object flagged (real)."""
    gt = json.loads(voc["gt"].read_text())
    pred = json.loads(voc["coarse"].read_text())
    by_id = {a["id"]: a for a in gt["annotations"]}
    next_id = 5000
    for entry in gt["images"]:
        back = dict(by_id[voc["missing"][entry["id"]]])
        back["id"] = next_id
        back["samrefiner"] = {"status": "refined", "added": True}
        ghost = _box_mask(
            entry["width"] - 20, 0, entry["width"] - 1, 19, (entry["height"], entry["width"])
        )
        pred["annotations"].append(back)
        pred["annotations"].append(
            {"id": next_id + 1, "image_id": entry["id"], "category_id": back["category_id"]}
            | segmentation_fields(ghost)
            | {"samrefiner": {"status": "refined", "added": True}}
        )
        next_id += 2
    flag_real = next(a for a in pred["annotations"] if a["id"] in by_id)
    for ann in pred["annotations"]:
        if ann["id"] in voc["phantom"].values() or ann is flag_real:
            ann["samrefiner"] = {"status": "refined", "unsupported": True}
    path = tmp_path / "completed.json"
    path.write_text(json.dumps(pred))
    report = tmp_path / "eval.json"
    assert main(["eval", str(path), str(voc["gt"]), "--json", str(report), "--no-progress"]) == 0
    score = json.loads(report.read_text())["completion"]
    n = len(gt["images"])
    assert score == {
        "added": 2 * n,
        "added_found": n,
        "added_spurious": n,
        "missing_before": n,
        "still_missing": 0,
        "unsupported": n + 1,
        "unsupported_real": 1,
        "unsupported_spurious": n,
        "iou": 0.5,
    }
    assert f"{2 * n} added, {n} found a missing object" in capsys.readouterr().out


def test_eval_of_a_run_of_coco_complete(voc, tmp_path) -> None:
    out = tmp_path / "out.json"
    assert _coco(voc, out, "--complete") == 0
    report = tmp_path / "eval.json"
    assert main(["eval", str(out), str(voc["gt"]), "--json", str(report), "--no-progress"]) == 0
    score = json.loads(report.read_text())["completion"]
    n = len(voc["missing"])
    assert score["added"] == n and score["unsupported"] == n and score["unsupported_real"] == 0
    # A random SAM refines the coarse objects away from the truth: all may be missing.
    assert n <= score["missing_before"] <= 4 * n
    assert score["still_missing"] == score["missing_before"] - score["added_found"]


def test_library_calls_over_arrays() -> None:
    import samrefiner
    from samrefiner import RefineConfig, Refiner
    from samrefiner.testing import tiny_sam

    image = np.random.default_rng(3).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    helpers_text.KNOWN.clear()
    helpers_text.KNOWN[image_key(image)] = (
        [[0, 0, 19, 19], [40, 10, 59, 29], [60, 40, 75, 55]],
        [[0.9, 0.0], [0.0, 0.8], [0.1, 0.2]],  # the last one is below the threshold
    )
    try:
        found = samrefiner.detect(image, CLASSES, "helpers_text:known_detector")
        assert found.names == ["cat", "dog"] and len(found) == 2
        refiner = Refiner(tiny_sam(), RefineConfig(iterations=1))
        labelled = samrefiner.label_image(image, CLASSES, helpers_text.KnownDetector(), refiner)
        assert labelled.result.masks.shape == (2, 60, 80)
        coarse = np.stack([_box_mask(0, 0, 19, 19), _box_mask(60, 40, 75, 55)])
        done = samrefiner.complete_image(
            image, coarse, CLASSES, helpers_text.KnownDetector(), refiner
        )
        assert done.added.tolist() == [1]  # the dog; the cat is covered
        assert done.matching.unsupported.tolist() == [False, True]
        assert done.result is not None and done.result.masks.shape == (1, 60, 80)
        assert [n.cls for n in done.matching.names(done.detections)] == ["cat", None]
    finally:
        helpers_text.KNOWN.clear()


def _instance_labels(shared_data, tmp_path) -> tuple[Path, dict[str, int]]:
    """The shared VOC id maps with each map's largest id removed (a missed object) and a
    phantom id 50 where nothing is; returns the folder and the removed id per map."""
    from PIL import Image

    src = shared_data / "labelme_voc2011" / "masks"
    labels = tmp_path / "labels"
    labels.mkdir()
    removed = {}
    for path in sorted(src.glob("*.png")):
        with Image.open(path) as im:
            ids = np.array(im)
            palette = im.getpalette()
        last = int(ids.max())
        removed[path.stem] = last
        ids[ids == last] = 0
        ids[:15, :15] = 50  # a phantom object: nothing is there
        out = Image.fromarray(ids.astype(np.uint8), mode="P")
        out.putpalette(palette)
        out.save(labels / path.name)
    return labels, removed


def test_instances_complete_paints_missed_objects_with_new_ids(voc, shared_data, tmp_path, capsys):
    from PIL import Image

    labels, removed = _instance_labels(shared_data, tmp_path)
    out_dir, summary = tmp_path / "out", tmp_path / "summary.json"
    args = ["instances", "--images", str(voc["images"]), "--labels", str(labels)]
    args += ["-o", str(out_dir), "--model", "samrefiner.testing:tiny_sam", "--no-progress"]
    args += ["--detector", "helpers_text:known_detector", "--summary", str(summary)]
    names = ",".join(c["name"] for c in json.loads(voc["gt"].read_text())["categories"])
    assert main([*args, "--complete"]) == 2
    assert "needs the names to detect: --classes" in capsys.readouterr().err
    assert main([*args, "--complete", "--classes", names]) == 0
    for stem in removed:
        with Image.open(out_dir / f"{stem}.png") as im:
            written = np.array(im)
        assert im.mode == "P"
        # The missed object is back under a new id: the map's largest was the phantom's 50.
        assert (written == 51).any() and not (written > 51).any()
    counts = json.loads(summary.read_text())["completion"]
    assert sum(counts["added"].values()) == len(removed)
    assert counts["unsupported"] == {"(no class)": len(removed)}


def test_complete_resumes_after_a_crash_to_identical_bytes(voc, tmp_path, monkeypatch) -> None:
    """The added objects live in the run's records: a run killed after its first image
    and resumed writes what an uninterrupted run writes; other detector settings are
    refused on resume."""
    out = tmp_path / "out.json"
    assert _coco(voc, out, "--complete") == 0
    uninterrupted = out.read_bytes()
    out.unlink()
    run_interrupted(monkeypatch, lambda: _coco(voc, out, "--complete"), after="1")
    assert not out.exists()
    assert _coco(voc, out, "--complete", "--box-threshold", "0.5", "--resume") == 2
    assert _coco(voc, out, "--complete", "--resume") == 0
    assert out.read_bytes() == uninterrupted


def _instances(voc, labels: Path, out_dir: Path, summary: Path, *extra: str) -> int:
    args = ["instances", "--images", str(voc["images"]), "--labels", str(labels)]
    args += ["-o", str(out_dir), "--model", "samrefiner.testing:tiny_sam", "--no-progress"]
    args += ["--detector", "helpers_text:known_detector", "--summary", str(summary)]
    return main([*args, "--workers", "1", *extra])


@pytest.mark.parametrize(
    ("options", "named", "added"),
    [
        ([], True, False),  # every real id named, the phantom not
        (["--complete"], True, True),  # ... and the missed object added with its class
        (["--match-box-iou", "1.1", "--match-overlap", "2"], False, False),  # none matches
    ],
)
def test_instances_name_classes_writes_a_class_sidecar_per_map(
    voc, shared_data, tmp_path, capsys, monkeypatch, options, named, added
) -> None:
    from PIL import Image

    from samrefiner.io.instance_classes import read_instance_classes
    from samrefiner.runner.journal.records import RunSummary

    labels, removed = _instance_labels(shared_data, tmp_path)
    gt = json.loads(voc["gt"].read_text())
    names = ",".join(c["name"] for c in gt["categories"])
    _, objects = voc_ground_truth(shared_data, tmp_path / "gt2.json")
    out_dir, summary = tmp_path / "out", tmp_path / "summary.json"
    import samrefiner.io.atomic

    written: list[Path] = []
    real_write = samrefiner.io.atomic.atomic_write

    def counted(path, *args, **kwargs):
        written.append(Path(path))
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(samrefiner.io.atomic, "atomic_write", counted)
    assert _instances(voc, labels, out_dir, summary, "--name-classes", names, *options) == 0
    assert written.count(summary) == 1  # the counts are in the summary's one write
    want_named: dict[str, int] = {}
    want_added: dict[str, int] = {}
    unnamed = 0
    for stem in removed:
        sidecar = read_instance_classes(out_dir / f"{stem}.classes.json")
        assert sidecar.map == f"{stem}.png"
        with Image.open(shared_data / "labelme_voc2011" / "masks" / f"{stem}.png") as im:
            ids = sorted(set(np.unique(np.array(im)).tolist()) - {0})
        truth = [VOC_CLASSES[o["category_id"] - 1] for o in objects[f"{stem}.jpg"]]
        coarse = [(k, truth[n] if named else None, 0.8, 1.0, False) for n, k in enumerate(ids)]
        want = [*coarse[:-1], (50, None, 0.0, 0.0, False)]
        if added:
            want.append((51, truth[-1], 0.8, None, True))
            want_added[truth[-1]] = want_added.get(truth[-1], 0) + 1
        got = [(i.id, i.cls, i.score, i.box_iou, i.added) for i in sidecar.instances]
        assert got == [(i, c, pytest.approx(s), b, a) for i, c, s, b, a in want]
        for _, cls, *_ in want[: len(ids)]:  # the coarse ids, the phantom's last
            if cls is None:
                unnamed += 1
            else:
                want_named[cls] = want_named.get(cls, 0) + 1
    data = json.loads(summary.read_text())
    RunSummary.from_json(data)  # the summary is one file of its own schema, counts inside
    n_named = sum(want_named.values())
    assert data["completion"]["named"] == want_named
    assert data["completion"]["unnamed"] == unnamed
    assert data["completion"]["added"] == want_added
    assert data["completion"]["unsupported"] == ({"(no class)": len(removed)} if added else {})
    printed = capsys.readouterr().out
    assert f"objects named: {n_named}" in printed and f"left unnamed: {unnamed}" in printed
    assert printed.rstrip().endswith(f"left unnamed: {unnamed}")  # the summary's last line


def test_instances_name_classes_resumes_to_identical_bytes(voc, shared_data, tmp_path, monkeypatch):
    labels, removed = _instance_labels(shared_data, tmp_path)
    names = ",".join(c["name"] for c in json.loads(voc["gt"].read_text())["categories"])
    out_dir, summary = tmp_path / "out", tmp_path / "summary.json"
    naming = ["--name-classes", names, "--complete"]
    assert _instances(voc, labels, out_dir, summary, *naming) == 0
    uninterrupted = {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}
    counts = json.loads(summary.read_text())["completion"]
    assert len(uninterrupted) == 2 * len(removed)  # a map and its sidecar each
    shutil.rmtree(out_dir)
    summary.unlink()
    run_interrupted(
        monkeypatch,
        lambda: _instances(voc, labels, out_dir, summary, *naming),
        after=sorted(removed)[0],
    )
    assert not summary.exists()
    assert _instances(voc, labels, out_dir, summary, *naming, "--resume") == 0
    assert {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())} == uninterrupted
    assert json.loads(summary.read_text())["completion"] == counts


def test_summary_parts_and_the_class_sidecar_refuse_bad_values(tmp_path) -> None:
    from samrefiner.io.errors import InputError
    from samrefiner.io.instance_classes import (
        InstanceClass,
        InstanceClasses,
        classes_path,
        read_instance_classes,
    )
    from samrefiner.runner.journal.records import RunSummary, SummaryPart

    part = SummaryPart("completion", {"added": {"dog": 1}}, "objects added: 1 (dog 1)")
    summary = RunSummary(images_total=1, parts=[part])
    assert summary.to_json()["completion"] == {"added": {"dog": 1}}
    assert summary.format().endswith("\nobjects added: 1 (dog 1)")
    with pytest.raises(ValueError, match="summary field"):
        SummaryPart("masks_total", {})
    with pytest.raises(ValueError, match="id must be an integer > 0"):
        InstanceClass(0, "dog", 0.5, 1.0)
    with pytest.raises(ValueError, match="score must be in"):
        InstanceClass(1, "dog", 1.5, 1.0)
    with pytest.raises(ValueError, match="added object has its detection's class"):
        InstanceClass(1, None, 0.5, None, added=True)
    with pytest.raises(ValueError, match="ids repeat"):
        InstanceClasses("a.png", [InstanceClass(1, "dog", 0.5, 1.0)] * 2)
    path = classes_path(tmp_path / "sub" / "a.png")
    assert path == tmp_path / "sub" / "a.classes.json"
    written = InstanceClasses("sub/a.png", [InstanceClass(3, None, 0.25, 0.5)])
    written.write(path)
    assert read_instance_classes(path) == written
    path.write_text(json.dumps({**written.to_json(), "instances": [{"id": -1}]}))
    with pytest.raises(InputError, match=r"a\.classes\.json: cannot be read as instance classes"):
        read_instance_classes(path)
