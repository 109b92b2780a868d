"""Batched encoding: the Backend hook, SAM's batched encoder, and groups in the runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers_runner import box_mask
from samrefiner import RefineConfig, Refiner
from samrefiner.models.base import Backend
from samrefiner.runner import Job, RunOptions, RunState, run_dataset
from samrefiner.runner.engines.steps import encoder_batch_for, refine_jobs


def images(rng: np.random.Generator) -> list[np.ndarray]:
    sizes = [(40, 60), (60, 40), (33, 33)]
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_one_image_batch_is_exactly_encode(tiny_backend, rng) -> None:
    image = images(rng)[0]
    (batched,) = tiny_backend.encode_batch([image])
    single = tiny_backend.encode(image)
    assert torch.equal(batched.features, single.features)
    assert tiny_backend.encode_batch([]) == []


def test_sam_batches_images_of_different_sizes(tiny_backend, rng) -> None:
    batch = images(rng)
    encoded = tiny_backend.encode_batch(batch, "float32")
    assert len(encoded) == 3
    for image, embedding in zip(batch, encoded, strict=True):
        single = tiny_backend.encode(image)
        assert embedding.original_size == image.shape[:2]
        assert embedding.resized_size == single.resized_size
        assert embedding.features.shape == single.features.shape
        torch.testing.assert_close(embedding.features, single.features, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        tiny_backend.encode_batch([batch[0], batch[1][..., 0]])


def test_the_default_hook_loops_over_encode(tiny_backend, rng) -> None:
    batch = images(rng)
    looped = Backend.encode_batch(tiny_backend, batch)
    for image, embedding in zip(batch, looped, strict=True):
        assert torch.equal(embedding.features, tiny_backend.encode(image).features)


class CountingRefiner(Refiner):
    """A real refiner that records the size of every batched encode."""

    def __init__(self, backend) -> None:
        super().__init__(backend, RefineConfig(iterations=1))
        self.groups: list[int] = []

    def encode_batch(self, images):
        self.groups.append(len(images))
        return super().encode_batch(images)


def job(key: str, image: np.ndarray | None) -> Job:
    masks = box_mask(5, 5, 20, 20)[None] if image is not None else np.zeros((0, 1, 1), bool)
    return Job(key, image, masks, [key] if image is not None else [])


def test_refine_jobs_encodes_the_refinable_images_together(tiny_backend, rng) -> None:
    image = images(rng)[0]
    refiner = CountingRefiner(tiny_backend)
    jobs = [job("a", image), job("b", None), job("c", image.copy())]
    results = refine_jobs(refiner, jobs)
    assert refiner.groups == [2]  # the unusable image is not encoded
    assert results[1] is None
    alone = refiner.refine(image, box_mask(5, 5, 20, 20)[None])
    for result in (results[0], results[2]):
        assert result is not None
        np.testing.assert_array_equal(result.masks.stack(range(1)), alone.masks)


def test_the_local_engine_refines_groups_of_encoder_batch(tiny_backend, rng, tmp_path) -> None:
    image = images(rng)[0]

    class Seven:
        name = "seven"

        def keys(self):
            return [f"k{i}" for i in range(7)]

        def orphans(self):
            return []

        def load(self, key):
            return job(key, image)

        def save(self, job, result):
            return job.image_record(result, job.records(result))

        def finish(self, records):
            pass

    refiner = CountingRefiner(tiny_backend)
    state = RunState(tmp_path / "out")
    state.start({}, resume=False)
    summary = run_dataset(Seven(), refiner, state, RunOptions(1, 2, False, encoder_batch=3))
    assert refiner.groups == [3, 3]  # the last image is alone: encoded by refine()
    assert summary.images_processed == 7


def test_automatic_encoder_batch() -> None:
    assert encoder_batch_for("cpu") == 1
    assert encoder_batch_for("cuda") == 8
    assert encoder_batch_for("cpu", 4) == 4
    with pytest.raises(ValueError, match=">= 1"):
        encoder_batch_for("cpu", 0)
    with pytest.raises(ValueError, match="encoder_batch"):
        RunOptions(encoder_batch=0)
