"""Refiner.refine_batch: tensors in and out, equal to Refiner.refine object for object."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrefiner import STATUSES, BatchStatus, RefineConfig, Refiner
from samrefiner.batch import STATUS_NAMES, BatchRefineResult

H, W = 40, 52


@pytest.fixture(scope="module")
def refiner() -> Refiner:
    from samrefiner.testing import tiny_sam

    return Refiner(tiny_sam(seed=0), RefineConfig(iterations=2))


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``2 x H x W x 3`` uint8 images and ``2 x 3 x H x W`` bool masks, all refinable."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2, H, W, 3), dtype=np.uint8)
    masks = np.stack(
        [
            np.stack([box(5, 5, 20, 30), box(22, 10, 38, 25), box(3, 35, 30, 50)]),
            np.stack([box(10, 10, 30, 40), box(0, 0, 12, 12), box(25, 30, 40, 52)]),
        ]
    )
    return images, masks


def tensors(images: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(masks)


def test_status_codes_extend_the_string_statuses() -> None:
    assert STATUS_NAMES[: len(STATUSES)] == STATUSES
    assert STATUS_NAMES[BatchStatus.FULL] == "full"
    assert STATUS_NAMES[BatchStatus.PADDING] == "padding"
    assert [int(s) for s in BatchStatus] == list(range(len(STATUS_NAMES)))


def test_equals_refine_pixel_for_pixel(refiner) -> None:
    images, masks = batch()
    result = refiner.refine_batch(*tensors(images, masks))
    assert isinstance(result, BatchRefineResult)
    assert result.masks.shape == (2, 3, H, W) and result.masks.dtype == torch.bool
    assert result.scores.shape == (2, 3) and result.scores.dtype == torch.float32
    assert result.status.dtype == torch.int64 and result.soft is None
    for b in range(2):
        alone = refiner.refine(images[b], masks[b])
        np.testing.assert_array_equal(result.masks[b].numpy(), alone.masks)
        # A batched encoder pass may differ from a single one in the last bits.
        np.testing.assert_allclose(result.scores[b].numpy(), alone.scores, rtol=1e-5)
        assert result.status_names()[b] == alone.status
        np.testing.assert_array_equal(result.iterations[b].numpy(), alone.iterations)
    assert not torch.equal(result.masks, torch.from_numpy(masks))  # the model did something
    assert set(result.timings) == {"encoder", "excavation", "decoder", "postprocess", "transfer"}
    assert result.timings["excavation"] > 0


def test_images_are_encoded_in_one_batch(refiner) -> None:
    images, masks = batch()
    calls: list[int] = []

    class Counting(Refiner):
        def encode_batch(self, images):
            calls.append(len(images))
            return super().encode_batch(images)

    Counting(refiner.model, refiner.config).refine_batch(*tensors(images, masks))
    assert calls == [2]


def test_padded_and_bad_objects_get_their_status_and_coarse_mask(refiner) -> None:
    images, masks = batch()
    masks[0, 1] = False  # empty
    masks[1, 0] = True  # all ones
    valid = torch.tensor([[True, True, False], [True, True, True]])
    result = refiner.refine_batch(*tensors(images, masks), valid)
    codes = result.status.tolist()
    assert codes[0][1] == BatchStatus.EMPTY
    assert codes[0][2] == BatchStatus.PADDING
    assert codes[1][0] == BatchStatus.FULL
    for b, k in ((0, 1), (0, 2), (1, 0)):
        np.testing.assert_array_equal(result.masks[b, k].numpy(), masks[b, k])
        assert torch.isnan(result.scores[b, k])
        assert result.iterations[b, k] == 0
    # The others are refined as refine refines them.
    first = refiner.refine(images[0], masks[0, [0]])
    np.testing.assert_array_equal(result.masks[0, 0].numpy(), first.masks[0])
    second = refiner.refine(images[1], masks[1, [1, 2]])
    np.testing.assert_array_equal(result.masks[1, 1:].numpy(), second.masks)


def test_a_batch_of_nothing_refinable_encodes_nothing(refiner) -> None:
    images, masks = batch()
    masks[:] = False
    result = refiner.refine_batch(*tensors(images, masks))
    assert (result.status == BatchStatus.EMPTY).all()
    assert result.timings["encoder"] < 0.05
    none = refiner.refine_batch(*tensors(images, masks[:, :0]))
    assert none.masks.shape == (2, 0, H, W)


def test_float_images_and_probabilities(refiner) -> None:
    images, masks = batch()
    image_t, mask_t = tensors(images, masks)
    expected = refiner.refine_batch(image_t, mask_t)
    # Probabilities: a coarse pixel is one above the threshold.
    probabilities = torch.where(mask_t, 0.8, 0.3)
    for floats in (image_t.float() / 255, image_t.double() / 255):
        got = refiner.refine_batch(floats, probabilities)
        assert torch.equal(got.masks, expected.masks)
        assert torch.equal(got.status, expected.status)
    # At a threshold above 0.8 every mask is empty.
    high = refiner.refine_batch(image_t, probabilities, threshold=0.9)
    assert (high.status == BatchStatus.EMPTY).all()
    np.testing.assert_array_equal(high.masks.numpy(), np.zeros_like(masks))


def test_alpha_blends_with_the_input_probabilities(refiner) -> None:
    images, masks = batch()
    image_t, mask_t = tensors(images, masks)
    probabilities = torch.where(mask_t, 0.9, 0.2)
    result = refiner.refine_batch(image_t, probabilities, alpha=0.25)
    assert result.soft is not None and result.soft.dtype == torch.float32
    expected = 0.25 * result.masks.float() + 0.75 * probabilities
    torch.testing.assert_close(result.soft, expected)
    hard = refiner.refine_batch(image_t, mask_t, alpha=1.0)
    assert torch.equal(hard.soft, hard.masks.float())
    keep = refiner.refine_batch(image_t, probabilities, alpha=0.0)
    assert torch.equal(keep.soft, probabilities)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i, m: (i[:, :2], m), "B x 3 x H x W"),
        (lambda i, m: (i.float() * 2, m), r"\[0, 1\]"),
        (lambda i, m: (i.to(torch.int32), m), "uint8 or float"),
        (lambda i, m: (i, m[:, :, :10]), "B x K x H x W"),
        (lambda i, m: (i, m.float() * 2), "probabilities"),
        (lambda i, m: (i, m.to(torch.int64)), "bool or float"),
        (lambda i, m: (i.numpy(), m), "torch.Tensor"),
    ],
)
def test_bad_tensors_are_refused(refiner, change, message) -> None:
    images, masks = batch()
    with pytest.raises((ValueError, TypeError), match=message):
        refiner.refine_batch(*change(*tensors(images, masks)))


def test_bad_arguments_are_refused(refiner) -> None:
    image_t, mask_t = tensors(*batch())
    with pytest.raises(ValueError, match="valid"):
        refiner.refine_batch(image_t, mask_t, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="alpha"):
        refiner.refine_batch(image_t, mask_t, alpha=1.5)
    with pytest.raises(ValueError, match="threshold"):
        refiner.refine_batch(image_t, mask_t, threshold=1.0)


def test_a_backend_that_loops_gives_the_same_masks(refiner) -> None:
    """A backend without a batched encoder (the Backend default) refines the same."""
    from samrefiner.models.base import Backend

    class Looping(Refiner):
        def encode_batch(self, images):
            return Backend.encode_batch(self.model, images, self.config.dtype)

    images, masks = batch(1)
    looped = Looping(refiner.model, refiner.config).refine_batch(*tensors(images, masks))
    for b in range(2):
        alone = refiner.refine(images[b], masks[b])
        np.testing.assert_array_equal(looped.masks[b].numpy(), alone.masks)
        np.testing.assert_array_equal(looped.scores[b].numpy(), alone.scores)  # same encoder


def test_cpu_round_trip_keeps_the_device(refiner) -> None:
    image_t, mask_t = tensors(*batch())
    result = refiner.refine_batch(image_t, mask_t, alpha=0.5)
    for tensor in (result.masks, result.scores, result.status, result.iterations, result.soft):
        assert tensor.device == mask_t.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_in_cuda_out() -> None:
    from samrefiner.testing import tiny_sam

    on_gpu = Refiner(tiny_sam(seed=0, device="cuda"), RefineConfig(iterations=2))
    images, masks = batch()
    image_t, mask_t = tensors(images, masks)
    result = on_gpu.refine_batch(image_t.cuda(), mask_t.float().cuda(), alpha=0.5)
    for tensor in (result.masks, result.scores, result.status, result.soft):
        assert tensor.device.type == "cuda"
    for b in range(2):
        alone = on_gpu.refine(images[b], masks[b])
        np.testing.assert_array_equal(result.masks[b].cpu().numpy(), alone.masks)
    with pytest.raises(ValueError, match="are on"):
        on_gpu.refine_batch(image_t, mask_t.cuda())


@pytest.mark.extra("adapt")  # the embedding cache stores safetensors files
def test_through_the_embedding_cache(refiner, tmp_path) -> None:
    """The training-loop recipe of docs/training.md: a second batch of the same images
    reads every embedding from the cache and gives the same masks."""
    from samrefiner.adaption import CachedBackend, EmbeddingCache

    cache = EmbeddingCache(tmp_path / "embeddings")
    cached = Refiner(CachedBackend(refiner.model, cache), refiner.config)
    images, masks = batch()
    first = cached.refine_batch(*tensors(images, masks))
    assert (cache.hits, cache.misses) == (0, 2)
    again = cached.refine_batch(*tensors(images, masks))
    assert (cache.hits, cache.misses) == (2, 2)
    assert torch.equal(first.masks, again.masks)
    for b in range(2):  # the cache encodes one image at a time: exactly refine's embedding
        alone = refiner.refine(images[b], masks[b])
        np.testing.assert_array_equal(again.masks[b].numpy(), alone.masks)
        np.testing.assert_array_equal(again.scores[b].numpy(), alone.scores)
