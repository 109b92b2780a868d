"""Crop-zoom: small objects refined on a crop, pasted back at full resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_fake_backend import FakeBackend
from samrefiner import RefineConfig, Refiner
from samrefiner.geometry import Frame
from samrefiner.zoom import crop_window, plan_crops

H = W = 256


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bright small square A, a bright large square B; coarse masks inside each."""
    image = np.zeros((H, W, 3), np.uint8)
    truth = np.zeros((2, H, W), bool)
    truth[0, 100:120, 150:170] = True  # 20 px: 5 px in the fake model's 64 px frame
    truth[1, 10:90, 10:110] = True  # 100 px: 25 px in the model frame
    image[truth.any(axis=0)] = 255
    coarse = np.zeros_like(truth)
    coarse[0, 102:118, 152:168] = True  # 16 px box
    coarse[1, 15:85, 15:105] = True
    return image, coarse, truth


def test_small_object_zoomed_large_not_and_pasted_to_the_pixel(scene):
    image, coarse, truth = scene
    backend = FakeBackend()
    # Crop side = 4 x 16 px = 64 px = the fake model's input: a crop pixel is a low-res
    # cell, so the result of the crop is exact.
    config = RefineConfig(iterations=2, zoom_below=16, zoom_context=4.0)
    result = Refiner(backend, config).refine(image, coarse)
    assert result.zoomed.tolist() == [True, False] and result.crops == 1
    assert [e.shape for e in backend.encoded] == [(H, W, 3), (64, 64, 3)]
    # The crop is centred on the box: rows 102 - 24 = 78 ..142, columns 128..192.
    np.testing.assert_array_equal(backend.encoded[1], image[78:142, 128:192])
    np.testing.assert_array_equal(result.masks[0], truth[0])
    # Prompts were mined in the crop's frame, reported in the image's.
    crop_calls = [c for c in backend.calls if c.embedding.original_size == (64, 64)]
    assert crop_calls and all(len(c.boxes) == 1 for c in crop_calls)
    first = crop_calls[0]
    np.testing.assert_array_equal(first.boxes, [[152 - 128, 102 - 78, 167 - 128, 117 - 78]])
    prompt = result.prompts[0]
    assert (prompt.points[0] >= [150, 100]).all() and (prompt.points[0] < [170, 120]).all()
    records = result.to_records()
    assert records[0]["zoomed"] is True and "zoomed" not in records[1]


def test_zoom_off_by_default_and_threshold(scene):
    image, coarse, _ = scene
    for config in (RefineConfig(iterations=1), RefineConfig(iterations=1, zoom_below=4)):
        backend = FakeBackend()
        result = Refiner(backend, config).refine(image, coarse)
        assert not result.zoomed.any() and result.crops == 0 and len(backend.encoded) == 1


def test_all_objects_zoomed_skip_the_whole_image_encoder(scene):
    image, coarse, truth = scene
    backend = FakeBackend()
    config = RefineConfig(iterations=1, zoom_below=16, zoom_context=4.0)
    result = Refiner(backend, config).refine(image, coarse[:1])
    assert [e.shape for e in backend.encoded] == [(64, 64, 3)]
    np.testing.assert_array_equal(result.masks[0], truth[0])


def test_zoom_with_boxes_prompts_the_box_in_the_crop_frame(scene):
    image, _, truth = scene
    backend = FakeBackend()
    config = RefineConfig(iterations=1, zoom_below=16, zoom_context=4.0)
    result = Refiner(backend, config).refine(image, boxes=np.array([[152, 102, 167, 117]]))
    assert result.zoomed.tolist() == [True]
    assert backend.calls[0].box_only
    np.testing.assert_array_equal(backend.calls[0].boxes, [[24, 24, 39, 39]])
    np.testing.assert_array_equal(result.masks[0], truth[0])


def test_elastic_box_uses_the_crop_embedding(scene, monkeypatch):
    import samrefiner.refiner as refiner_module

    built = []

    class Recording(refiner_module.Excavator):
        def __init__(self, frame, config, image_embedding=None):
            built.append((frame.original_size, image_embedding))
            super().__init__(frame, config, image_embedding)

    monkeypatch.setattr(refiner_module, "Excavator", Recording)
    image, coarse, _ = scene
    backend = FakeBackend()
    config = RefineConfig(iterations=1, zoom_below=16, zoom_context=4.0, margin=0.1)
    result = Refiner(backend, config).refine(image, coarse)
    assert [size for size, _ in built] == [(H, W), (64, 64)]
    assert built[1][1] is backend.embeddings[1].features  # the crop's own embedding
    # Every cell of the fake embedding is alike, so each side grows by its step
    # (floor(0.1 x 15 px) beyond the tight box 152..167 x 102..117).
    assert result.prompts[0].box_expanded and result.zoomed.tolist() == [True, False]
    np.testing.assert_array_equal(result.prompts[0].box, [150, 100, 168, 118])


def test_first_prompts_mined_ahead_with_zoom(scene):
    image, coarse, _ = scene
    refiner = Refiner(FakeBackend(), RefineConfig(iterations=2, zoom_below=16, zoom_context=4.0))
    ahead = refiner.first_round_prompts(coarse)
    direct = refiner.refine(image, coarse)
    prepared = refiner.refine(image, coarse, first_prompts=ahead)
    np.testing.assert_array_equal(direct.masks, prepared.masks)
    assert prepared.zoomed.tolist() == [True, False]


FRAME = Frame.resize_longest_side((1000, 2000), 1024, (256, 256))  # scale 0.512


def test_plan_groups_neighbours_and_respects_the_budget():
    boxes = [
        (100, 100, 119, 119),  # 20 px -> 10.2 in the model frame
        (130, 100, 149, 119),  # next to it: joint box 50 px -> 25.6
        (1500, 800, 1509, 809),  # far away, 10 px
        None,  # empty mask
        (0, 0, 999, 999),  # large
    ]
    config = RefineConfig(zoom_below=32)
    crops = plan_crops(boxes, FRAME, config)
    assert [c.members for c in crops] == [(2,), (0, 1)]  # smallest object first
    assert crops[1].size == (100, 100)  # 2 x the joint box's 50 px
    assert plan_crops(boxes, FRAME, config.replace(max_crops=1))[0].members == (2,)
    # Too far apart to share a crop below the threshold: one crop each.
    assert len(plan_crops(boxes, FRAME, config.replace(zoom_below=20))) == 3
    assert plan_crops(boxes, FRAME, RefineConfig()) == []


def test_crop_window_is_clamped_inside_the_image():
    assert crop_window((0, 0, 9, 9), 2.0, (100, 200)) == (0, 0, 20, 20)
    assert crop_window((190, 95, 199, 99), 3.0, (100, 200)) == (70, 170, 100, 200)
    assert crop_window((10, 10, 59, 59), 4.0, (100, 80)) == (0, 0, 100, 80)


def test_no_crop_when_it_would_not_enlarge():
    frame = Frame.resize_longest_side((100, 100), 1024, (256, 256))  # upscaled 10x
    assert len(plan_crops([(10, 10, 19, 19)], frame, RefineConfig(zoom_below=200))) == 1
    crops = plan_crops([(10, 10, 59, 59)], frame, RefineConfig(zoom_below=1000))
    assert crops == []  # 2 x 50 px = the whole 100 px image


def test_zoom_config_validation():
    for bad in (
        {"zoom_below": 0},
        {"zoom_below": 1.5},
        {"zoom_context": 0.5},
        {"max_crops": 0},
        {"max_crops": True},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RefineConfig(**bad)


def test_zoom_with_tiny_sam(tiny_backend, rng):
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    masks = np.zeros((3, 300, 400), bool)
    masks[0, 100:110, 100:112] = True
    masks[1, 105:115, 120:130] = True
    masks[2, 20:280, 20:380] = True
    config = RefineConfig(iterations=2, zoom_below=32, margin=0.1)
    result = Refiner(tiny_backend, config).refine(image, masks)
    assert result.zoomed.tolist() == [True, True, False] and result.crops == 1
    # Joint box x 100..129, y 100..114 (30 px): the 60 px crop is rows 78:138, cols 85:145.
    outside = result.masks[:2].copy()
    outside[:, 78:138, 85:145] = False
    assert not outside.any()


# issue 17: crop-zoom budget per image in dataset commands


def _small_objects(h: int, w: int, count: int, side: int) -> np.ndarray:
    """``count`` squares of growing sides from ``side`` px, far apart on a grid (none
    shares a crop with another), as ``count x h x w`` masks."""
    masks = np.zeros((count, h, w), bool)
    columns = 5
    for k in range(count):
        y = 40 + (k // columns) * (h // 4)
        x = 40 + (k % columns) * (w // columns)
        masks[k, y : y + side + k, x : x + side + k] = True
    return masks


def test_refine_job_in_batches_zooms_as_one_refine_call(tiny_backend, rng):
    from samrefiner.runner import Job
    from samrefiner.runner.engines.steps import refine_job

    image = rng.integers(0, 256, (400, 1000, 3), dtype=np.uint8)
    masks = _small_objects(400, 1000, 6, 8)
    refiner = Refiner(tiny_backend, RefineConfig(iterations=1, zoom_below=32, max_crops=2))
    expected = refiner.refine(image, masks)
    assert expected.crops == 2 and 2 <= expected.zoomed.sum() < 6
    for frame_bytes in (400 * 1000, 2 * 400 * 1000, 64 * 2**20):  # 1, 2 or all per call
        got = refine_job(refiner, Job("k", image, masks, list(range(6))), frame_bytes)
        assert got is not None
        np.testing.assert_array_equal(got.zoomed, expected.zoomed)
        assert np.array_equal(got.masks.stack(), expected.masks)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
        assert got.status == list(expected.status)


def test_refine_rejects_crops_that_do_not_fit_its_objects(tiny_backend, rng):
    from samrefiner.zoom import Crop

    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    masks = _small_objects(100, 120, 1, 8)
    refiner = Refiner(tiny_backend, RefineConfig(iterations=1, zoom_below=32))
    with pytest.raises(ValueError, match="crop 0 has member 1"):
        refiner.refine(image, masks, crops=[Crop(0, 0, 50, 50, (1,))])
    with pytest.raises(ValueError, match="leaves the 100x120 image"):
        refiner.refine(image, masks, crops=[Crop(0, 0, 150, 50, (0,))])
    assert not refiner.refine(image, masks, crops=[]).zoomed.any()


def test_coco_command_zooms_as_refine_does_with_one_budget_per_image(tmp_path):
    """20 objects of a 2400 x 1600 image go to the refiner in two batches (64 MiB of
    frames: 17 masks); ``--max-crops 2`` is still 2 crops for the image, as in refine."""
    from PIL import Image

    from samrefiner.cli import main
    from samrefiner.io.coco import decode_segmentation, encode_rle
    from samrefiner.testing import tiny_sam

    h, w = 1600, 2400
    masks = _small_objects(h, w, 20, 30)
    image = np.full((h, w, 3), 40, np.uint8)
    image[masks.any(axis=0)] = 220
    (tmp_path / "images").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "big.png")
    coco = {
        "images": [{"id": 1, "file_name": "big.png", "width": w, "height": h}],
        "annotations": [
            {"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(m)}
            for k, m in enumerate(masks)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "coarse.json").write_text(json.dumps(coco))
    out = tmp_path / "refined.json"
    zoom = ["--zoom-below", "64", "--max-crops", "2", "--iterations", "1"]
    args = ["coco", str(tmp_path / "coarse.json"), "--images", str(tmp_path / "images")]
    model = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--no-progress"]
    assert main([*args, "-o", str(out), *model, *zoom]) == 0

    config = RefineConfig(iterations=1, zoom_below=64, max_crops=2)
    expected = Refiner(tiny_sam(), config).refine(image, masks)
    assert expected.crops == 2
    refined = json.loads(out.read_text())["annotations"]
    zoomed = [bool(a["samrefiner"].get("zoomed")) for a in refined]
    assert zoomed == expected.zoomed.tolist()
    for a, mask in zip(refined, expected.masks, strict=True):
        assert np.array_equal(decode_segmentation(a["segmentation"], h, w)[0], mask)
