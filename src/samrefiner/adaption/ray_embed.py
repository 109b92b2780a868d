"""Adaption's embedding pass on Ray: encode a training set's images on a pool of actors.

Encoding every image is most of an adaption run (``samrefiner adapt``). With
:func:`encode_on_ray` each actor of :func:`~samrefiner.cluster.map_on_actors`
loads the model once and puts each image's embedding into the run's
:class:`~samrefiner.adaption.EmbeddingCache` (one file per image, written atomically),
exactly as :meth:`~samrefiner.adaption.EmbeddingCache.encode` does in the local run; the
driver then trains as locally, reading every embedding from the cache. The cache folder
must therefore be on storage every node shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from samrefiner.adaption.cache import EmbeddingCache
from samrefiner.adaption.data import Source
from samrefiner.adaption.fingerprint import model_fingerprint
from samrefiner.cluster import RayOptions, map_on_actors
from samrefiner.models.base import Backend


class ModelMismatchError(RuntimeError):
    """A Ray worker built a model with other weights than the driver's."""


@dataclass(frozen=True)
class _Encoder:
    """Built once in each actor: loads the model, then encodes images into the cache.

    ``torch_threads`` is the driver's thread count: CPU matrix products may round
    differently with another one, and the embeddings must equal the local run's.
    """

    source: Source
    make_backend: Callable[[], Backend]
    cache_root: str
    cache_bytes: int
    dtype: str
    fingerprint: str
    torch_threads: int

    def __call__(self) -> Callable[[list[str]], list[bool]]:
        import torch

        torch.set_num_threads(self.torch_threads)
        backend = self.make_backend()
        found = model_fingerprint(backend)
        if found != self.fingerprint:
            raise ModelMismatchError(
                f"the worker's model {backend.name!r} has other weights ({found[:12]}) than "
                f"the driver's ({self.fingerprint[:12]}): give every node the same checkpoint"
            )
        cache = EmbeddingCache(self.cache_root, self.cache_bytes)

        def encode(keys: list[str]) -> list[bool]:
            encoded = []
            for key in keys:
                sample = self.source.load(key)
                misses = cache.misses
                if sample is not None:
                    cache.encode(backend, sample.image, self.dtype, self.fingerprint)
                encoded.append(cache.misses > misses)
            return encoded

        return encode


def encode_on_ray(
    source: Source,
    keys: list[str],
    fingerprint: str,
    *,
    make_backend: Callable[[], Backend],
    cache: EmbeddingCache,
    dtype: str,
    options: RayOptions | None = None,
) -> int:
    """Put the embeddings of the images ``keys`` of ``source`` into ``cache`` on Ray.

    With ``source`` and the keyword arguments bound, an
    :data:`~samrefiner.adaption.trainer.Encoder` of
    :func:`~samrefiner.adaption.train_adapter`:
    ``encoder=lambda keys, fp: encode_on_ray(source, keys, fp, make_backend=..., ...)``.

    Args:
        source: the training images (pickled to each actor, which reads its images).
        keys: the images to encode (those not yet in the cache).
        fingerprint: the driver's model fingerprint: each actor checks its model has
            the same weights, and files its embeddings under it.
        make_backend: picklable function building the model, called once per actor.
        cache: the cache (its folder on storage every node shares).
        dtype: the encoder's precision (``float32``, ``bfloat16``, ...).
        options: cluster address and actor sizes; ``options.torch_threads`` None: the
            driver's torch thread count.

    Returns:
        How many images the actors encoded (the others were in the cache meanwhile).

    Raises:
        samrefiner.cluster.ClusterError: the cluster cannot hold the actors.
    """
    import torch
    from tqdm import tqdm

    options = options or RayOptions()
    worker = _Encoder(
        source,
        make_backend,
        str(cache.root),
        cache.max_bytes,
        dtype,
        fingerprint,
        options.torch_threads or torch.get_num_threads(),
    )
    done = map_on_actors(keys, worker, options)
    return sum(
        tqdm(done, total=len(keys), desc="encoding", unit="image", disable=not options.progress)
    )
