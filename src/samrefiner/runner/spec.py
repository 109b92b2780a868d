"""What a refiner is built from: :class:`RefinerSpec`, one plain, picklable description.

The command line builds one from its arguments (``samrefiner.cli``); everything below it
takes the spec, never the arguments: the resume fingerprint (:meth:`RefinerSpec.fingerprint`),
the quick model check before a run whose workers load the model elsewhere
(:meth:`RefinerSpec.check`), the refiner build (:meth:`RefinerSpec.build`), and the Ray
actors, which each receive the spec (pickled: plain strings, numbers and a
:class:`~samrefiner.config.RefineConfig`) and build their own refiner from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samrefiner.config import RefineConfig

if TYPE_CHECKING:
    from samrefiner.models.base import Backend
    from samrefiner.refiner import Refiner

__all__ = ["DEFAULT_EMBEDDING_CACHE_BYTES", "ModelLoadError", "RefinerSpec"]

#: Size bound of :attr:`RefinerSpec.embedding_cache` by default (4 GiB).
DEFAULT_EMBEDDING_CACHE_BYTES = 4 << 30


class ModelLoadError(RuntimeError):
    """The model a :class:`RefinerSpec` names cannot be checked or loaded (missing or
    unreadable checkpoint, wrong architecture, unknown name, adapter of another model,
    option of another family, missing optional package); the message names the file and
    the problem."""


@dataclass(frozen=True)
class RefinerSpec:
    """A refiner, described: the model, its weights, adapter and embedding cache, and the
    refinement settings.

    Attributes:
        model: a model name (``sam_vit_h``, see :func:`samrefiner.models.load_model`), a
            model folder, or ``module:function``.
        checkpoint: weights file of ``model`` (None: a named model's official one).
        random_weights: build the architecture with random weights (smoke tests and speed
            benchmarks only).
        device: torch device (None: cuda when available, else cpu).
        adapter: IoU adapter folder written by ``samrefiner adapt`` for this model.
        embedding_cache: folder keeping image embeddings between runs (None: none).
        embedding_cache_bytes: size bound of ``embedding_cache``.
        hq_token_only: HQ-SAM models only: keep the HQ token's mask as the one candidate.
        config: the refinement settings (its ``dtype`` is the model's precision).
    """

    model: str = "sam_vit_h"
    checkpoint: str | None = None
    random_weights: bool = False
    device: str | None = None
    adapter: str | None = None
    embedding_cache: str | None = None
    embedding_cache_bytes: int = DEFAULT_EMBEDDING_CACHE_BYTES
    hq_token_only: bool = False
    config: RefineConfig = field(default_factory=RefineConfig)

    def model_options(self) -> dict[str, Any]:
        """The family options the spec sets (``load_model``'s ``**options``)."""
        return {"hq_token_only": True} if self.hq_token_only else {}

    def fingerprint(self) -> dict[str, Any]:
        """What of the spec must not change between a run and its resumption:
        ``{"model": {...}, "config": result settings}`` (speed-only settings, device and
        cache may differ)."""
        adapter = None if self.adapter is None else str(Path(self.adapter).resolve())
        return {
            "model": {
                "model": self.model,
                "checkpoint": self.checkpoint,
                "random_weights": bool(self.random_weights),
                "adapter": adapter,
                "hq_token_only": bool(self.hq_token_only),
            },
            "config": self.config.result_settings(),
        }

    def check(self) -> None:
        """The quick checks of the model, without loading it: a model name that does not
        exist, a missing checkpoint or an unreadable adapter.

        Raises:
            ModelLoadError: one line naming the file and the problem.
        """
        from samrefiner.models.registry import check_model

        try:
            check_model(self.model, checkpoint=self.checkpoint, **self.model_options())
        except (ValueError, FileNotFoundError) as exc:
            raise ModelLoadError(str(exc)) from exc
        if self.adapter is not None:
            from samrefiner.adaption import AdaptionError, read_adapter

            try:
                read_adapter(self.adapter)  # its description and kilobytes of weights
            except AdaptionError as exc:
                raise ModelLoadError(str(exc)) from exc

    def load_backend(self, *, cached: bool = True) -> Backend:
        """Load the model (imports torch): the adapter applied, and with
        ``embedding_cache`` (and ``cached``) encoding through the cache.

        Raises:
            ModelLoadError: the model cannot be loaded (see the class).
        """
        from samrefiner.extras import MissingExtra
        from samrefiner.models import load_model

        cache = None
        if cached and self.embedding_cache is not None:
            from samrefiner.adaption import EmbeddingCache

            cache = EmbeddingCache(self.embedding_cache, self.embedding_cache_bytes)
        fingerprint = None
        try:
            backend = load_model(
                self.model,
                checkpoint=self.checkpoint,
                pretrained=not self.random_weights,
                device=self.device,
                **self.model_options(),
            )
            if self.adapter is not None:
                from samrefiner.adaption import apply_adapter, model_fingerprint

                # The adapter check and the cache key both hash every weight: do it once.
                fingerprint = model_fingerprint(backend) if cache is not None else None
                apply_adapter(backend, self.adapter, fingerprint=fingerprint)
        except (ValueError, FileNotFoundError, RuntimeError, MissingExtra) as exc:
            raise ModelLoadError(str(exc)) from exc
        if cache is None:
            return backend
        from samrefiner.adaption import CachedBackend

        return CachedBackend(backend, cache, fingerprint=fingerprint)

    def build(self) -> Refiner:
        """The :class:`samrefiner.Refiner` the spec describes (loads the model).

        Raises:
            ModelLoadError: the model cannot be loaded.
        """
        from samrefiner.refiner import Refiner

        return Refiner(self.load_backend(), self.config)
