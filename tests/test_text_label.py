"""Detectors and ``samrefiner label``: the detector interface's rules, tiny random
``transformers`` detectors loaded offline (folders and ``hf:`` names), class lists, and
label's COCO output read back and scored by pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers_text import voc_ground_truth
from samrefiner.cli import main
from samrefiner.detectors import Candidates, DetectSettings, check_classes, select
from samrefiner.io.classes import ClassList, read_classes
from samrefiner.io.errors import InputError

CLASSES = ["person", "dog", "traffic light"]


def test_select_keeps_thresholded_class_wise_nms_and_caps() -> None:
    boxes = [
        [0, 0, 10, 10],  # person 0.9
        [1, 1, 10, 10],  # person 0.8: overlaps the first (IoU 0.83) -> suppressed
        [1, 1, 10, 10],  # dog 0.7: same place, another class -> kept
        [50, 50, 60, 60],  # person 0.2: below the threshold
        [30, 30, 40, 40],  # traffic light 0.6
    ]
    scores = np.zeros((5, 3), np.float32)
    scores[[0, 1, 2, 3, 4], [0, 0, 1, 0, 2]] = [0.9, 0.8, 0.7, 0.2, 0.6]
    scores[0, 1] = 0.1  # a weaker class of the same query does not count
    found = select(Candidates(boxes, scores), CLASSES, DetectSettings(box_threshold=0.3))
    assert found.names == ["person", "dog", "traffic light"]
    np.testing.assert_allclose(found.scores, [0.9, 0.7, 0.6])
    np.testing.assert_array_equal(found.boxes[1], [1, 1, 10, 10])
    every = select(Candidates(boxes, scores), CLASSES, DetectSettings(0.3, nms_iou=1.0))
    assert len(every) == 4
    capped = select(Candidates(boxes, scores), CLASSES, DetectSettings(0.0, max_detections=2))
    np.testing.assert_allclose(capped.scores, [0.9, 0.7])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"box_threshold": 1.5},
        {"text_threshold": -0.1},
        {"nms_iou": float("nan")},
        {"max_detections": 0},
    ],
)
def test_detect_settings_refuse_values_out_of_range(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DetectSettings(**kwargs)


def test_class_names_are_checked() -> None:
    assert check_classes([" person", "dog "]) == ["person", "dog"]
    for bad, why in (([], "no class"), (["a", ""], "empty"), (["a", "a"], "twice")):
        with pytest.raises(ValueError, match=why):
            check_classes(bad)


def test_classes_from_a_list_a_file_or_coco_categories(tmp_path) -> None:
    assert read_classes("person, dog,traffic light") == ClassList.of(CLASSES)
    names = tmp_path / "names.txt"
    names.write_text("# classes\nperson\n\ndog\ntraffic light\n")
    assert read_classes(str(names)) == ClassList.of(CLASSES)
    coco = tmp_path / "gt.json"
    coco.write_text(
        json.dumps({"categories": [{"id": 7, "name": "car"}, {"id": 3, "name": "cat"}]})
    )
    got = read_classes(str(coco))
    assert got.names == ("car", "cat") and got.ids == (7, 3)
    assert got.categories() == [{"id": 7, "name": "car"}, {"id": 3, "name": "cat"}]
    names.write_text("dog\ndog\n")
    with pytest.raises(InputError, match=f"{names}.*given twice"):
        read_classes(str(names))
    coco.write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="categories"):
        read_classes(str(coco))


# --------------------------------------------------------------- transformers detectors

TINY_KINDS = ["grounding_dino", "mm_grounding_dino", "owlv2", "omdet_turbo", "sam3"]


@pytest.mark.extra("hf")
@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_detector_loads_from_its_folder_and_detects_the_same(kind, tmp_path) -> None:
    from samrefiner.detectors import load_detector
    from samrefiner.testing import save_tiny_detector, tiny_detector

    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    settings = DetectSettings(box_threshold=0.0, text_threshold=0.0, max_detections=5)
    direct = tiny_detector(kind).detect(image, CLASSES, settings)
    loaded = load_detector(save_tiny_detector(kind, str(tmp_path / kind)), device="cpu")
    again = loaded.detect(image, CLASSES, settings)
    assert 1 <= len(direct) <= 5 and loaded.name == f"hf:{tmp_path / kind}"
    assert (direct.masks is not None) == (kind == "sam3") == loaded.gives_masks
    if direct.masks is not None:  # SAM 3: an instance mask per detection, image-sized
        assert direct.masks.shape == (len(direct), 120, 160)
        np.testing.assert_array_equal(again.masks, direct.masks)
    np.testing.assert_allclose(again.boxes, direct.boxes, atol=1e-4)
    np.testing.assert_allclose(again.scores, direct.scores, atol=1e-5)
    assert again.names == direct.names and set(again.names) <= set(CLASSES)
    assert (again.boxes[:, 2] >= again.boxes[:, 0]).all()
    assert (again.boxes[:, [0, 2]] <= 159).all() and (again.boxes[:, [1, 3]] <= 119).all()


@pytest.mark.extra("hf")
def test_detector_missing_weights_is_refused(tmp_path) -> None:
    from samrefiner.detectors import load_detector
    from samrefiner.testing import save_tiny_detector

    folder = Path(save_tiny_detector("grounding_dino", str(tmp_path / "gd")))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="gd"):
        load_detector(folder, device="cpu")
    with pytest.raises(ValueError, match="unknown detector 'nothing'"):
        load_detector("nothing")
    with pytest.raises(ValueError, match="cannot import detector builder"):
        load_detector("samrefiner.testing:no_such_builder")


@pytest.mark.extra("hf")
def test_hf_detector_names_resolve_offline_from_the_cache(tmp_path, monkeypatch) -> None:
    import huggingface_hub

    from samrefiner.detectors import detect, load_detector
    from samrefiner.testing import save_tiny_detector

    cache = tmp_path / "hub"
    revision = "1" * 40
    repo = cache / "models--samrefiner-test--tiny-owlv2"
    save_tiny_detector("owlv2", str(repo / "snapshots" / revision))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    detector = load_detector("hf:samrefiner-test/tiny-owlv2", device="cpu")
    assert type(detector.model).__name__ == "Owlv2ForObjectDetection"
    image = np.full((40, 60, 3), 128, np.uint8)
    found = detect(image, ["cat"], detector, DetectSettings(box_threshold=0.0, max_detections=3))
    assert found.names == ["cat"] * 3
    with pytest.raises(ValueError) as info:
        load_detector("hf:samrefiner-test/absent", device="cpu")
    message = str(info.value)
    assert "samrefiner-test/absent" in message and str(cache) in message
    assert "\n" not in message


# ------------------------------------------------------------------------ label command


def _label(tmp_path: Path, images: Path, classes: str, *extra: str) -> Path:
    out = tmp_path / "labels.json"
    code = main(
        [
            "label",
            str(images),
            "--classes",
            classes,
            "-o",
            str(out),
            "--detector",
            "samrefiner.testing:tiny_grounding_dino",
            "--model",
            "samrefiner.testing:tiny_sam",
            "--box-threshold",
            "0",
            "--text-threshold",
            "0",
            "--max-detections",
            "4",
            "--no-progress",
            "--workers",
            "1",
            *extra,
        ]
    )
    assert code == 0
    return out


@pytest.mark.extra("hf")
def test_label_writes_coco_that_pycocotools_reads_and_scores(shared_data, tmp_path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_path, objects = voc_ground_truth(shared_data, tmp_path / "gt.json")
    images = shared_data / "labelme_voc2011" / "images"
    out = _label(tmp_path, images, str(gt_path))  # the classes: the GT file's categories
    data = json.loads(out.read_text())
    gt_data = json.loads(gt_path.read_text())
    assert data["categories"] == gt_data["categories"]
    assert [i["file_name"] for i in data["images"]] == sorted(objects)
    assert len(data["annotations"]) == 4 * len(objects)
    names = {c["id"]: c["name"] for c in data["categories"]}
    for ann in data["annotations"]:
        entry = ann["samrefiner"]
        assert entry["status"] == "refined" and entry["from_box"] is True
        assert ann["score"] == entry["detector"]["score"] and 0 <= ann["score"] <= 1
        assert names[ann["category_id"]] == entry["detector"]["class"]
        assert ann["segmentation"]["size"] == [
            next(i["height"] for i in data["images"] if i["id"] == ann["image_id"]),
            next(i["width"] for i in data["images"] if i["id"] == ann["image_id"]),
        ]
    gt = COCO(str(gt_path))
    results = gt.loadRes(
        [
            {k: a[k] for k in ("image_id", "category_id", "segmentation", "score")}
            for a in data["annotations"]
        ]
    )
    evaluation = COCOeval(gt, results, "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    # A random detector finds nothing real: its AP is computed, and is about zero.
    assert 0 <= evaluation.stats[0] < 0.05
    reread = COCO(str(out))
    assert len(reread.getAnnIds()) == len(data["annotations"])


@pytest.mark.extra("hf")
def test_label_passes_bad_images_through_and_resumes_byte_identical(tmp_path) -> None:
    from helpers_runner import write_image

    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", seed=1)
    write_image(images / "b.png", seed=2)
    (images / "broken.png").write_bytes(b"not an image")
    out = _label(tmp_path, images, "person,dog", "--summary", str(tmp_path / "summary.json"))
    data = json.loads(out.read_text())
    assert [i["file_name"] for i in data["images"]] == ["a.png", "b.png"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["images_skipped"] == {"image_unreadable": 1}
    first = out.read_bytes()
    out.unlink()
    assert _label(tmp_path, images, "person,dog").read_bytes() == first


@pytest.mark.extra("hf")
@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_detector_class_labels_and_completes_the_shared_images(
    kind, shared_data, tmp_path
) -> None:
    """Each tiny ``transformers`` detector, from its folder, through ``label`` and ``coco
    --complete`` on the shared photos; both outputs read back with pycocotools."""
    from pycocotools.coco import COCO

    from samrefiner.testing import save_tiny_detector

    gt_path, objects = voc_ground_truth(shared_data, tmp_path / "gt.json")
    folder = save_tiny_detector(kind, str(tmp_path / kind))
    images = shared_data / "labelme_voc2011" / "images"
    low = ["--box-threshold", "0", "--text-threshold", "0", "--max-detections", "2"]
    common = ["--model", "samrefiner.testing:tiny_sam", "--no-progress", "--workers", "1"]
    out = tmp_path / "labels.json"
    code = main(
        [
            "label",
            str(images),
            "--classes",
            str(gt_path),
            "-o",
            str(out),
            "--detector",
            folder,
            *low,
            *common,
        ]
    )
    assert code == 0
    labels = COCO(str(out))
    anns = labels.loadAnns(labels.getAnnIds())
    assert len(anns) == 2 * len(objects)
    # SAM 3's own masks are the coarse masks (refined from the mask), the others' boxes.
    assert {a["samrefiner"].get("from_box", False) for a in anns} == {kind != "sam3"}
    completed = tmp_path / "completed.json"
    code = main(
        [
            "coco",
            str(gt_path),
            "--images",
            str(images),
            "-o",
            str(completed),
            "--complete",
            "--detector",
            folder,
            "--match-box-iou",
            "1",
            "--match-overlap",
            "2",
            *low,
            *common,
        ]
    )
    assert code == 0
    data = COCO(str(completed))
    added = [a for a in data.loadAnns(data.getAnnIds()) if a["samrefiner"].get("added")]
    # Nothing matches (the match rules are off): every detection is added.
    assert len(added) == 2 * len(objects)
    assert all(a["samrefiner"]["status"] in ("refined", "kept_coarse") for a in added)


def test_docs_list_every_detector_class_and_the_real_threshold_defaults() -> None:
    from samrefiner.cli import build_parser
    from samrefiner.detectors.hf import HF_DETECTORS

    docs = (Path(__file__).resolve().parents[1] / "docs" / "text.md").read_text()
    for cls in HF_DETECTORS:
        assert f"`{cls}`" in docs, f"docs/text.md lacks {cls}"
    label = build_parser()._subparsers._group_actions[0].choices["label"]
    defaults = {a.option_strings[0]: a.default for a in label._actions if a.option_strings}
    settings = DetectSettings()
    for flag, field in (
        ("--box-threshold", "box_threshold"),
        ("--text-threshold", "text_threshold"),
        ("--nms-iou", "nms_iou"),
        ("--max-detections", "max_detections"),
    ):
        assert defaults[flag] == getattr(settings, field), flag
        assert f"| `{flag} " in docs and f" | {defaults[flag]:g} |" in docs, flag
