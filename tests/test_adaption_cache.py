"""The embedding cache, the model fingerprint and the output-layer search of adaption."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import extra_marks
from samrefiner import RefineConfig, Refiner
from samrefiner.adaption import CachedBackend, EmbeddingCache, model_fingerprint
from samrefiner.adaption.lora import attach_lora, last_linear_name
from samrefiner.models.base import ImageEmbedding
from samrefiner.testing import TINY_BACKEND_EXTRAS, TINY_BACKENDS, tiny_sam

# Adaption needs the [adapt] extra (peft, safetensors); the base install skips these tests.
pytestmark = pytest.mark.extra("adapt")


def _embedding(seed: int, size: tuple[int, int] = (30, 40)) -> ImageEmbedding:
    g = torch.Generator().manual_seed(seed)
    return ImageEmbedding(
        features=torch.randn(1, 8, 16, 16, generator=g),
        original_size=size,
        resized_size=(12, 16),
        extras={"early": torch.randn(1, 2, 4, 4, generator=g)},
    )


def test_put_get_round_trip_and_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    emb = _embedding(0)
    assert cache.get("k") is None
    cache.put("k", emb)
    got = cache.get("k")
    assert got is not None
    assert torch.equal(got.features, emb.features)
    assert torch.equal(got.extras["early"], emb.extras["early"])
    assert (got.original_size, got.resized_size) == (emb.original_size, emb.resized_size)


def test_size_bound_evicts_least_recently_used(tmp_path: Path) -> None:
    one = len(_file_bytes(tmp_path / "probe", _embedding(0)))
    cache = EmbeddingCache(tmp_path / "c", max_bytes=int(2.5 * one))
    cache.put("a", _embedding(0))
    cache.put("b", _embedding(1))
    old = os.stat(cache.path("a")).st_mtime - 100
    os.utime(cache.path("b"), (old - 50, old - 50))  # b is the older file ...
    os.utime(cache.path("a"), (old, old))
    assert cache.get("b") is not None  # ... until it is read
    cache.put("c", _embedding(2))
    assert cache.get("a") is None and cache.get("b") is not None and cache.get("c") is not None
    assert cache.size() <= cache.max_bytes


def _file_bytes(folder: Path, emb: ImageEmbedding) -> bytes:
    probe = EmbeddingCache(folder)
    probe.put("x", emb)
    return probe.path("x").read_bytes()


def test_unreadable_file_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.path("k").write_bytes(b"not safetensors")
    assert cache.get("k") is None


def test_two_runs_sharing_the_folder_see_only_whole_files(tmp_path: Path) -> None:
    one = len(_file_bytes(tmp_path / "probe", _embedding(0)))
    errors: list[BaseException] = []

    def run(offset: int) -> None:
        cache = EmbeddingCache(tmp_path / "shared", max_bytes=3 * one)  # evicts constantly
        try:
            for i in range(30):
                key = f"k{(i + offset) % 6}"
                emb = _embedding((i + offset) % 6)
                cache.put(key, emb)
                got = cache.get(key)
                if got is not None and not torch.equal(got.features, emb.features):
                    raise AssertionError(f"{key}: another embedding came back")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not list((tmp_path / "shared").glob(".*.tmp"))


def test_cached_backend_encodes_each_image_once_and_refines_identically(tmp_path: Path) -> None:
    backend = tiny_sam()
    calls = []
    encode = backend.encode

    def counting(image, dtype="float32"):
        calls.append(1)
        return encode(image, dtype)

    backend.encode = counting  # type: ignore[method-assign]
    cached = CachedBackend(backend, EmbeddingCache(tmp_path))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    masks = np.zeros((1, 40, 56), dtype=bool)
    masks[0, 10:30, 12:40] = True
    cfg = RefineConfig(iterations=2)
    plain = Refiner(tiny_sam(), cfg).refine(image, masks)
    first = Refiner(cached, cfg).refine(image, masks)
    second = Refiner(cached, cfg).refine(image, masks)
    assert len(calls) == 1
    for result in (first, second):
        assert np.array_equal(result.masks, plain.masks)
        assert np.array_equal(result.scores, plain.scores)


def test_fingerprint_follows_weights_and_ignores_the_adapter() -> None:
    a, b = tiny_sam(seed=0), tiny_sam(seed=0)
    fingerprint = model_fingerprint(a)
    assert fingerprint == model_fingerprint(b) != model_fingerprint(tiny_sam(seed=1))
    attach_lora(b, rank=2, alpha=2.0, seed=0)
    assert model_fingerprint(b) == fingerprint
    with torch.no_grad():
        next(iter(a.sam.parameters())).add_(1e-6)
    assert model_fingerprint(a) != fingerprint


def test_output_layer_is_the_linear_that_runs_last() -> None:
    class Head(torch.nn.Module):  # registered proj_in, proj_out, layers; runs in another order
        def __init__(self) -> None:
            super().__init__()
            self.proj_in = torch.nn.Linear(8, 16)
            self.proj_out = torch.nn.Linear(16, 4)
            self.layers = torch.nn.ModuleList([torch.nn.Linear(16, 16)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.proj_in(x))
            for layer in self.layers:
                x = torch.relu(layer(x))
            return self.proj_out(x)

    assert last_linear_name(Head()) == "proj_out"
    assert last_linear_name(tiny_sam().iou_head) == "layers.1"


def test_negative_size_bound_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingCache(tmp_path, max_bytes=-1)


def test_a_missing_extra_names_the_install_command() -> None:
    from samrefiner.adaption import AdaptionError
    from samrefiner.adaption.lora import extra

    with pytest.raises(AdaptionError, match=r"pip install 'samrefiner\[adapt\]'"):
        extra("samrefiner_no_such_package.sub")


# --------------------------------------------------------------------------- issue 17


@pytest.mark.parametrize(
    "family",
    [pytest.param(f, marks=extra_marks(TINY_BACKEND_EXTRAS[f])) for f in sorted(TINY_BACKENDS)],
)
def test_every_backend_tells_the_shapes_of_its_embeddings(family: str) -> None:
    """What the cache checks entries against is what the model's encoder gives, for an
    image of any size (the overrides that read the modules must not drift)."""
    backend = TINY_BACKENDS[family]()
    image = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    assert backend.embedding_shapes() == backend.encode(image).shapes()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda e: dataclasses.replace(e, features=torch.zeros(1, 8, 4, 4)), "its tensors are"),
        (
            lambda e: dataclasses.replace(e, extras={"high_res_0": torch.zeros(1, 4, 8, 8)}),
            "its tensors are",
        ),
        (lambda e: dataclasses.replace(e, features=e.features.half()), "not float32"),
        (lambda e: dataclasses.replace(e, original_size=(31, 50)), "(31, 50) image"),
    ],
    ids=["feature_shape", "extra_tensor", "dtype", "image_size"],
)
def test_an_entry_that_does_not_fit_the_model_is_a_warned_miss(
    change, problem: str, tmp_path: Path, caplog
) -> None:
    backend = tiny_sam()
    fingerprint = model_fingerprint(backend)
    cache = EmbeddingCache(tmp_path)
    image = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    good = cache.encode(backend, image, "float32", fingerprint)
    key = cache.key(backend, fingerprint, image, "float32")
    cache.put(key, change(good))  # valid metadata, not this model's embedding
    fresh = EmbeddingCache(tmp_path)  # another run: knows nothing of this model yet
    got = fresh.encode(backend, image, "float32", fingerprint)
    assert (fresh.hits, fresh.misses) == (0, 1)
    assert torch.equal(got.features, good.features) and got.extras == {}
    assert "cached embedding does not fit model 'tiny_sam'" in caplog.text
    assert problem in caplog.text and str(cache.path(key)) in caplog.text
    # Encoded again and stored: the next run hits.
    again = EmbeddingCache(tmp_path)
    assert torch.equal(again.encode(backend, image, "float32", fingerprint).features, got.features)
    assert (again.hits, again.misses) == (1, 0)


def test_the_model_is_asked_its_shapes_only_when_no_encoding_told_them(tmp_path: Path) -> None:
    backend = tiny_sam()
    asked = []
    shapes = backend.embedding_shapes

    def counting():
        asked.append(1)
        return shapes()

    backend.embedding_shapes = counting  # type: ignore[method-assign]
    fingerprint = model_fingerprint(backend)
    images = [np.full((20, 24, 3), v, dtype=np.uint8) for v in (0, 1)]
    cold = EmbeddingCache(tmp_path)
    for image in images * 2:  # two misses, then two hits checked against the misses
        cold.encode(backend, image, "float32", fingerprint)
    assert (cold.hits, cold.misses, len(asked)) == (2, 2, 0)
    warm = EmbeddingCache(tmp_path)
    for image in images:
        warm.encode(backend, image, "float32", fingerprint)
    assert (warm.hits, warm.misses, len(asked)) == (2, 0, 1)  # asked once per model
