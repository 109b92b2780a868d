"""An on-disk cache of image embeddings, shared by training runs and refinement.

One safetensors file per (image content, model weights, precision, backend type); the
least recently used files are deleted when the folder grows past its size bound. Every
file is written to a temporary name and renamed into place, so two processes sharing the
folder only ever see complete files; a file deleted or replaced by the other process
while being read counts as a miss (the embedding is computed again). So does a file that
is not this model's embedding of the image (another image size, other tensor shapes or
dtypes than :meth:`~samrefiner.models.base.Backend.embedding_shapes`), with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samrefiner.adaption.fingerprint import image_digest, model_fingerprint
from samrefiner.adaption.lora import extra
from samrefiner.geometry import Frame
from samrefiner.io.atomic import atomic_write_bytes
from samrefiner.models.base import Backend, Decoded, ImageEmbedding
from samrefiner.models.download import cache_dir

log = logging.getLogger("samrefiner.adaption")

#: Bump when the file layout changes: older files are then never read.
CACHE_FORMAT = 1
DEFAULT_MAX_BYTES = 4 << 30
_SUFFIX = ".safetensors"


def default_cache_dir() -> Path:
    """``$SAMREFINER_HOME/embeddings`` (default ``~/.cache/samrefiner/embeddings``)."""
    return cache_dir() / "embeddings"


class EmbeddingCache:
    """Image embeddings on disk, keyed by image content and model fingerprint.

    Args:
        root: the cache folder (created when needed).
        max_bytes: size bound of the folder; the least recently used files go first.
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.root = Path(root) if root is not None else default_cache_dir()
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0
        # Embedding tensor shapes per model (backend type, fingerprint).
        self._shapes: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}

    def key(self, backend: Backend, fingerprint: str, image: np.ndarray, dtype: str) -> str:
        """File stem of an embedding."""
        parts = [str(CACHE_FORMAT), type(backend).__qualname__, fingerprint, dtype]
        parts.append(image_digest(image))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / f"{key}{_SUFFIX}"

    def get(self, key: str) -> ImageEmbedding | None:
        """The stored embedding, or None (absent, being replaced, or unreadable)."""
        safetensors = extra("safetensors")

        path = self.path(key)
        try:
            with safetensors.safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        except FileNotFoundError:
            return None
        except (OSError, safetensors.SafetensorError, ValueError) as exc:
            log.warning("%s: unreadable cached embedding, computing it again: %s", path, exc)
            return None
        with contextlib.suppress(OSError):  # deleted or replaced by another run meanwhile
            os.utime(path, follow_symlinks=False)  # most recently used; never a link's target
        try:
            return ImageEmbedding(
                features=tensors.pop("features"),
                original_size=tuple(int(v) for v in meta["original_size"].split(",")),
                resized_size=tuple(int(v) for v in meta["resized_size"].split(",")),
                extras={k.removeprefix("extras."): v for k, v in tensors.items()},
            )
        except (KeyError, ValueError) as exc:
            log.warning("%s: incomplete cached embedding, computing it again: %s", path, exc)
            return None

    def put(self, key: str, embedding: ImageEmbedding) -> None:
        """Store an embedding atomically, then trim the folder to its size bound."""
        save = extra("safetensors.torch").save
        tensors = {"features": embedding.features.detach().cpu().contiguous()}
        for name, value in embedding.extras.items():
            tensors[f"extras.{name}"] = value.detach().cpu().contiguous()
        meta = {
            "original_size": ",".join(map(str, embedding.original_size)),
            "resized_size": ",".join(map(str, embedding.resized_size)),
        }
        data = save(tensors, metadata=meta)
        if len(data) > self.max_bytes:
            return
        atomic_write_bytes(self.path(key), data)
        self.trim()

    def _entries(self) -> Iterator[tuple[float, int, Path]]:
        if not self.root.is_dir():
            return
        for path in self.root.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                yield st.st_mtime, st.st_size, path

    def size(self) -> int:
        """Bytes of the cached files."""
        return sum(size for _, size, _ in self._entries())

    def trim(self) -> None:
        """Delete the least recently used files until the folder fits ``max_bytes``."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size

    def mismatch(
        self,
        backend: Backend,
        fingerprint: str,
        embedding: ImageEmbedding,
        image_size: tuple[int, int],
    ) -> str | None:
        """Why ``embedding`` cannot be the model's embedding of an ``image_size`` image, or
        None when it can: its image size, its tensors' shapes (against the model's
        :meth:`~samrefiner.models.base.Backend.embedding_shapes`, asked once per model)
        and dtypes (float32)."""
        if embedding.original_size != image_size:
            return f"it is of a {embedding.original_size} image, not {image_size}"
        model = (type(backend).__qualname__, fingerprint)
        if model not in self._shapes:
            self._shapes[model] = backend.embedding_shapes()
        found, expected = embedding.shapes(), self._shapes[model]
        if found != expected:
            return f"its tensors are {found}, the model's are {expected}"
        tensors = [embedding.features, *embedding.extras.values()]
        if any(t.dtype != torch.float32 for t in tensors):
            return f"its tensors are {sorted({str(t.dtype) for t in tensors})}, not float32"
        return None

    def encode(
        self, backend: Backend, image: np.ndarray, dtype: str, fingerprint: str
    ) -> ImageEmbedding:
        """``backend.encode(image, dtype)``, from the cache when it is there and fits."""
        key = self.key(backend, fingerprint, image, dtype)
        found = self.get(key)
        if found is not None:
            problem = self.mismatch(backend, fingerprint, found, tuple(image.shape[:2]))
            if problem is None:
                self.hits += 1
                return found
            log.warning(
                "%s: cached embedding does not fit model %r (%s), computing it again",
                self.path(key),
                backend.name,
                problem,
            )
        self.misses += 1
        embedding = backend.encode(image, dtype)
        self._shapes.setdefault((type(backend).__qualname__, fingerprint), embedding.shapes())
        self.put(key, embedding)
        return embedding


class CachedBackend(Backend):
    """A backend whose :meth:`encode` goes through an :class:`EmbeddingCache`.

    Everything else is the wrapped backend's (attributes too, e.g. ``sam``).

    Args:
        backend: the model.
        cache: where embeddings are kept.
        fingerprint: the model's :func:`model_fingerprint` when already known (skips
            hashing every weight again).
    """

    def __init__(
        self, backend: Backend, cache: EmbeddingCache, *, fingerprint: str | None = None
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.name = backend.name
        self._fingerprint = fingerprint or model_fingerprint(backend)

    def __getattr__(self, name: str) -> Any:
        if name == "backend":  # not set yet: avoid infinite recursion while unpickling
            raise AttributeError(name)
        return getattr(self.backend, name)

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def input_size(self) -> int:
        return self.backend.input_size

    @property
    def low_res_size(self) -> tuple[int, int]:
        return self.backend.low_res_size

    @property
    def iou_head(self) -> torch.nn.Module | None:
        return self.backend.iou_head

    def frame(self, original_size: tuple[int, int]) -> Frame:
        return self.backend.frame(original_size)

    def precision(self, dtype: str) -> contextlib.AbstractContextManager[None]:
        return self.backend.precision(dtype)

    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        return self.cache.encode(self.backend, image, dtype, self._fingerprint)

    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.backend.embedding_shapes()

    def decode(self, embedding: ImageEmbedding, **kwargs: Any) -> Decoded:  # type: ignore[override]
        return self.backend.decode(embedding, **kwargs)
