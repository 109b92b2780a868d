"""Masks as box-local crops, and the runner's per-image step that uses them."""

from __future__ import annotations

import numpy as np
import pytest

from samrefiner import RefineConfig, Refiner
from samrefiner.crops import MaskCrops, as_crops
from samrefiner.io.masks import mask_iou
from samrefiner.runner.dataset import Job
from samrefiner.runner.engines.steps import prepare_prompts, refine_job
from samrefiner.split_merge import kept_shares, merge_back, paint_by_score


@pytest.fixture
def stack(rng) -> np.ndarray:
    masks = np.zeros((5, 30, 40), bool)
    masks[0, 2:10, 3:20] = True
    masks[1, 5:25, 15:35] = True
    masks[2, 0:30, 39] = True  # touches the right border
    masks[3] = rng.random((30, 40)) > 0.7  # scattered
    return masks  # masks[4] empty


def test_crops_round_trip_and_hold_only_boxes(stack) -> None:
    crops = as_crops(stack)
    assert len(crops) == 5 and crops.shape == (30, 40)
    assert np.array_equal(crops.stack(), stack)
    assert all(np.array_equal(crops.full(k), stack[k]) for k in range(5))
    assert crops.crops[0].shape == (8, 17) and crops.offsets[0] == (2, 3)
    assert crops.crops[4].shape == (0, 0) and not crops.any(4)
    assert crops.nbytes < stack.nbytes
    assert np.array_equal(crops.subset([3, 1]).stack(), stack[[3, 1]])


def test_crop_iou_equals_full_frame_iou(stack) -> None:
    crops = as_crops(stack)
    shifted = as_crops(np.roll(stack, 3, axis=2))
    for k in range(5):
        for j in range(5):
            assert crops.iou(k, shifted, j) == pytest.approx(
                mask_iou(stack[k], np.roll(stack, 3, axis=2)[j])
            )


def test_painting_crops_equals_painting_stacks(stack, rng) -> None:
    scores = rng.random(5)
    values = [1, 2, 3, 4, 5]
    crops = as_crops(stack)
    assert np.array_equal(
        paint_by_score((30, 40), values, crops, scores),
        paint_by_score((30, 40), values, stack, scores),
    )
    original = np.zeros((30, 40), np.uint8)
    original[0:3] = 255
    for refine_ignore in (False, True):
        a = merge_back(original, values, crops, scores, ignore=255, refine_ignore=refine_ignore)
        b = merge_back(original, values, stack, scores, ignore=255, refine_ignore=refine_ignore)
        assert np.array_equal(a, b)
    painted = merge_back(original, values, stack, scores, ignore=255)
    np.testing.assert_array_equal(
        kept_shares(painted, values, crops), kept_shares(painted, values, stack)
    )


def test_refining_in_small_batches_equals_refining_all_at_once(tiny_backend, rng) -> None:
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    masks = np.zeros((5, 60, 80), bool)
    for k in range(5):
        masks[k, 5 + 8 * k : 20 + 8 * k, 4 + 12 * k : 24 + 12 * k] = True
    refiner = Refiner(tiny_backend, RefineConfig(iterations=2))
    whole = refiner.refine(image, masks)
    job = Job("k", image, masks, list(range(5)))
    one_frame = 60 * 80  # one full-frame mask per batch: five batches
    job.first_prompts = prepare_prompts(refiner, job, one_frame)
    assert job.first_prompts is not None and len(job.first_prompts) == 5
    cropped = refine_job(refiner, job, frame_bytes=one_frame)
    assert cropped is not None
    assert np.array_equal(cropped.masks.stack(), whole.masks)
    np.testing.assert_allclose(cropped.scores, whole.scores, atol=1e-5)  # float rounding
    assert cropped.status == whole.status
    np.testing.assert_array_equal(cropped.iterations, whole.iterations)


def test_job_takes_crops_or_a_stack(stack) -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    from_stack = Job("k", image, stack, list(range(5)))
    assert isinstance(from_stack.masks, MaskCrops)
    with pytest.raises(ValueError, match="masks are 30x40"):
        Job("k", np.zeros((10, 10, 3), np.uint8), stack, list(range(5)))
