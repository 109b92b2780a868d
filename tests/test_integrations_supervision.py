"""samrefiner.integrations.supervision: Detections and DetectionDataset adapters."""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

from conftest import import_extra

sv = import_extra("supervision", "supervision")

from helpers_integrations import coarse_scene, voc_paths  # noqa: E402
from samrefiner import RefineConfig, Refiner  # noqa: E402
from samrefiner.integrations.supervision import refine_dataset, refine_detections  # noqa: E402
from samrefiner.io.masks import mask_bbox  # noqa: E402


@pytest.fixture(scope="module")
def refiner(tiny_backend) -> Refiner:
    return Refiner(tiny_backend, RefineConfig(iterations=2))


@pytest.fixture(scope="module")
def scene(shared_data):
    """RGB image, coarse masks (last one empty) and the refiner's own result on RGB."""
    return coarse_scene(shared_data)


def _detections(coarse: np.ndarray) -> sv.Detections:
    n = len(coarse)
    boxes = [mask_bbox(m) or (5, 6, 40, 50) for m in coarse]
    xyxy = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return sv.Detections(
        xyxy=xyxy,
        mask=coarse.copy(),
        confidence=np.linspace(0.9, 0.3, n).astype(np.float32),
        class_id=np.arange(n) % 2,
        tracker_id=np.arange(100, 100 + n),
        data={"class_name": np.array(["a", "b"] * n)[:n], "note": [f"n{k}" for k in range(n)]},
        metadata={"source": "test"},
    )


def _assert_refined(out: sv.Detections, given: sv.Detections, expected) -> None:
    """``out`` carries ``expected`` (a RefineResult) and every field of ``given``."""
    np.testing.assert_array_equal(out.mask, expected.masks)
    for i, mask in enumerate(expected.masks):
        box = mask_bbox(mask)
        np.testing.assert_array_equal(out.xyxy[i], given.xyxy[i] if box is None else box)
    np.testing.assert_array_equal(out.confidence, given.confidence)
    np.testing.assert_array_equal(out.class_id, given.class_id)
    np.testing.assert_array_equal(out.tracker_id, given.tracker_id)
    for key, value in given.data.items():
        np.testing.assert_array_equal(out.data[key], value)
    np.testing.assert_array_equal(out.data["samrefiner_iou"], expected.scores)
    assert list(out.data["samrefiner_status"]) == expected.status
    assert out.metadata == given.metadata


@pytest.mark.shared_data
def test_bgr_detections_give_the_refiners_masks_for_the_rgb_image(refiner, scene) -> None:
    rgb, coarse = scene
    given = _detections(coarse)
    before = copy.deepcopy(given)
    expected = refiner.refine(rgb, coarse)
    assert expected.status[-1] == "empty" and "refined" in expected.status

    out = refine_detections(refiner, np.ascontiguousarray(rgb[:, :, ::-1]), given)

    _assert_refined(out, given, expected)
    assert given == before  # the input is not modified


@pytest.mark.shared_data
def test_colour_order_is_the_callers_word(refiner, scene) -> None:
    rgb, coarse = scene
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    expected = refiner.refine(rgb, coarse)
    # The tiny random SAM is colour-sensitive: swapped channels give other masks, so a
    # colour order that was ignored or guessed would fail one of the two checks below.
    swapped = refiner.refine(bgr, coarse)
    assert not np.array_equal(swapped.masks, expected.masks)

    as_rgb = refine_detections(refiner, rgb, _detections(coarse), color="rgb")
    np.testing.assert_array_equal(as_rgb.mask, expected.masks)
    wrong = refine_detections(refiner, bgr, _detections(coarse), color="rgb")
    np.testing.assert_array_equal(wrong.mask, swapped.masks)
    bgra = np.dstack([bgr, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(
        refine_detections(refiner, bgra, _detections(coarse)).mask, expected.masks
    )
    with pytest.raises(ValueError, match="color must be one of"):
        refine_detections(refiner, rgb, _detections(coarse), color="RGB")


def test_empty_detections_give_empty_detections(refiner) -> None:
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    for given in (sv.Detections.empty(), _detections(np.zeros((0, 40, 60), dtype=bool))):
        out = refine_detections(refiner, image, given)
        assert len(out) == 0
        assert out.mask.shape == (0, 40, 60)
        assert out.xyxy.shape == (0, 4)
        assert len(out.data["samrefiner_iou"]) == len(out.data["samrefiner_status"]) == 0


def test_masks_must_match_the_image(refiner) -> None:
    given = _detections(np.ones((1, 30, 30), dtype=bool))
    with pytest.raises(ValueError, match="30x30"):
        refine_detections(refiner, np.zeros((40, 60, 3), dtype=np.uint8), given)


@pytest.mark.shared_data
def test_detections_without_masks_are_refined_from_their_boxes(refiner, scene) -> None:
    rgb, coarse = scene
    given = _detections(coarse)
    given.mask = None
    expected = refiner.refine(rgb, boxes=given.xyxy)
    out = refine_detections(refiner, np.ascontiguousarray(rgb[:, :, ::-1]), given)
    _assert_refined(out, given, expected)


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore:Skipping COCO polygon segmentation:UserWarning")
def test_refine_dataset_refines_each_image_and_exports(refiner, shared_data, tmp_path) -> None:
    keys = ["2011_000003", "2011_000025"]
    paths = [str(voc_paths(shared_data, key)[0]) for key in keys]
    scenes = {p: coarse_scene(shared_data, k)[1] for p, k in zip(paths, keys, strict=True)}
    annotations = {path: _detections(coarse) for path, coarse in scenes.items()}
    dataset = sv.DetectionDataset(classes=["a", "b"], images=paths, annotations=annotations)
    before = copy.deepcopy(dataset.annotations)

    refined = refine_dataset(refiner, dataset, progress=False)

    assert refined.image_paths == paths and refined.classes == ["a", "b"]
    for path in paths:
        # The dataset gives cv2.imread's BGR; the refiner sees it as RGB.
        rgb = cv2.imread(path)[:, :, ::-1]
        expected = refiner.refine(rgb, scenes[path])
        _assert_refined(refined.annotations[path], dataset.annotations[path], expected)
    assert dataset.annotations == before

    refined.as_coco(annotations_path=str(tmp_path / "coco.json"))
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert len(coco["images"]) == 2
    # Empty masks (one per image) have no polygon to export.
    assert len(coco["annotations"]) >= sum(len(c) - 1 for c in scenes.values())
    refined.as_yolo(annotations_directory_path=str(tmp_path / "yolo"))
    assert len(list((tmp_path / "yolo").glob("*.txt"))) == 2
