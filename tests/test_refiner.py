"""End-to-end refinement with a tiny random SAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samrefiner import RefineConfig, Refiner
from samrefiner.geometry import Frame
from samrefiner.postprocess import paste_mask
from samrefiner.types import STATUS_EMPTY


@pytest.fixture
def scene(rng):
    image = rng.integers(0, 256, (90, 140, 3), dtype=np.uint8)
    masks = np.zeros((4, 90, 140), bool)
    masks[0, 10:40, 10:60] = True
    masks[1, 50:85, 70:130] = True
    masks[2, 20:70, 80:100] = True
    masks[2, 60:70, 60:100] = True
    masks[3, 5:8, 5:8] = True
    return image, masks


def test_shapes_statuses_and_prompts(tiny_backend, scene):
    image, masks = scene
    masks = np.concatenate([masks, np.zeros((1, 90, 140), bool)])
    result = Refiner(tiny_backend, RefineConfig(iterations=2)).refine(image, masks)
    assert result.masks.shape == masks.shape and result.masks.dtype == bool
    assert result.scores.shape == (5,)
    assert result.status[4] == STATUS_EMPTY and not result.masks[4].any()
    assert result.prompts[4] is None and np.isnan(result.scores[4])
    for prompt in result.prompts[:4]:
        assert prompt.mask_logits.shape == tiny_backend.low_res_size
    assert set(result.timings) == {"encoder", "excavation", "decoder", "postprocess"}
    assert all(1 <= it <= 2 for it in result.iterations[:4])


def test_deterministic(tiny_backend, scene):
    image, masks = scene
    refiner = Refiner(tiny_backend, RefineConfig(iterations=3, margin=0.1))
    a, b = refiner.refine(image, masks), refiner.refine(image, masks)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("config", [RefineConfig(iterations=3), RefineConfig(margin=0.2)])
def test_batch_equals_one_by_one(tiny_backend, scene, config):
    image, masks = scene
    batched = Refiner(tiny_backend, config).refine(image, masks)
    capped = Refiner(tiny_backend, config.replace(max_batch=1)).refine(image, masks)
    for i in range(len(masks)):
        single = Refiner(tiny_backend, config).refine(image, masks[i])
        for other in (single.masks[0], capped.masks[i]):
            # Identical up to float rounding at the threshold.
            assert (other != batched.masks[i]).mean() < 1e-3
        assert single.scores[0] == pytest.approx(batched.scores[i], abs=1e-4)


def test_reuse_embedding_across_configs(tiny_backend, scene):
    image, masks = scene
    refiner = Refiner(tiny_backend)
    emb = refiner.encode(image)
    fresh = refiner.with_config(RefineConfig(iterations=1)).refine(image, masks)
    reused = refiner.with_config(RefineConfig(iterations=1)).refine(image, masks, embedding=emb)
    np.testing.assert_array_equal(fresh.masks, reused.masks)
    assert reused.timings["encoder"] == 0.0
    with pytest.raises(ValueError, match="embedding is for"):
        refiner.refine(image[:50], masks[:, :50], embedding=emb)


def test_input_conversions(tiny_backend, scene):
    image, masks = scene
    refiner = Refiner(tiny_backend, RefineConfig(iterations=1))
    ref = refiner.refine(image, masks[0])
    grey = refiner.refine(image.mean(axis=2).astype(np.uint8), masks[0] * 255)
    assert grey.masks.shape == (1, 90, 140)
    rgba = np.concatenate([image, np.full((90, 140, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(refiner.refine(rgba, masks[0].astype(np.uint8)).masks, ref.masks)
    with pytest.raises(ValueError, match="found values"):
        refiner.refine(image, masks[0].astype(np.uint8) * 3)
    with pytest.raises(ValueError, match="but the image is"):
        refiner.refine(image, masks[:, :80])


def test_early_stop_and_fixed_point(tiny_backend, scene):
    image, masks = scene
    loose = Refiner(tiny_backend, RefineConfig(iterations=5, early_stop_iou=0.01))
    result = loose.refine(image, masks)
    # Any two successive results of a non-collapsed mask overlap >= 1% or are equal,
    # so every mask that ran twice stopped after its second round at the latest.
    assert all(it <= 2 for it in result.iterations)
    assert {"converged", "refined", "collapsed"} >= set(result.status)


def test_bfloat16_runs(tiny_backend, scene):
    image, masks = scene
    result = Refiner(tiny_backend, RefineConfig(iterations=1, dtype="bfloat16")).refine(
        image, masks
    )
    assert result.masks.shape == masks.shape


@pytest.mark.parametrize("size", [(90, 140), (1080, 1920), (333, 500)])
def test_paste_mask_equals_sam_postprocess(size, rng):
    """Windowed upsampling equals SAM's full postprocess (upsample, crop, upsample)."""
    frame = Frame.resize_longest_side(size)
    low = rng.standard_normal((256, 256)).astype(np.float32) - 2.0
    low[100:130, 40:90] += 4.0
    full = F.interpolate(torch.from_numpy(low)[None, None], (1024, 1024), mode="bilinear")
    full = full[..., : frame.resized_size[0], : frame.resized_size[1]]
    full = F.interpolate(full, size, mode="bilinear")[0, 0].numpy() > 0
    out = np.zeros(size, bool)
    assert paste_mask(low, frame, out) == bool(full.any())
    assert (out != full).sum() <= 2  # rounding at the threshold only


def test_first_round_prompts_mined_ahead_give_the_same_result(tiny_backend, scene):
    image, masks = scene
    refiner = Refiner(tiny_backend, RefineConfig(iterations=2))
    ahead = refiner.first_round_prompts(masks)
    assert len(ahead) == len(masks)
    direct = refiner.refine(image, masks)
    prepared = refiner.refine(image, masks, first_prompts=ahead)
    np.testing.assert_array_equal(direct.masks, prepared.masks)
    with pytest.raises(ValueError, match="first_prompts has 1 entries"):
        refiner.refine(image, masks, first_prompts=ahead[:1])
    # The elastic box needs the embedding, so nothing can be mined ahead.
    assert refiner.with_config(RefineConfig(margin=0.1)).first_round_prompts(masks) is None


def test_automatic_batch_size_per_device():
    from samrefiner.config import ACCELERATOR_BATCH, CPU_BATCH

    auto = RefineConfig()
    assert auto.max_batch is None
    assert auto.batch_size("cpu") == CPU_BATCH and auto.batch_size("cuda") == ACCELERATOR_BATCH
    assert RefineConfig(max_batch=7).batch_size("cpu") == 7
    with pytest.raises(ValueError, match="max_batch"):
        RefineConfig(max_batch=0)


@pytest.mark.parametrize("margin", [0.0, 0.2])
def test_excavation_threads_do_not_change_results(tiny_backend, scene, margin):
    image, masks = scene
    config = RefineConfig(iterations=3, margin=margin)
    serial = Refiner(tiny_backend, config.replace(threads=1)).refine(image, masks)
    threaded = Refiner(tiny_backend, config.replace(threads=3)).refine(image, masks)
    np.testing.assert_array_equal(serial.masks, threaded.masks)
    np.testing.assert_array_equal(serial.scores, threaded.scores)
    assert serial.status == threaded.status
    for a, b in zip(serial.prompts, threaded.prompts, strict=True):
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.mask_logits, b.mask_logits)


def test_thread_count_setting():
    assert RefineConfig(threads=3).thread_count() == 3
    assert RefineConfig().thread_count() >= 1
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="threads"):
            RefineConfig(threads=bad)
