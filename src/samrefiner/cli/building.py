"""From the parsed options to what the library takes: the :class:`RefineConfig`
(:func:`config_of`) and the :class:`~samrefiner.runner.spec.RefinerSpec` (:func:`spec_of`),
built once per command, and the model checks and builds on it, their failures one-line
:class:`~samrefiner.cli.CommandError` messages (:func:`check_model_args`,
:func:`load_model_from_args`, :func:`build_refiner`)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from samrefiner.cli import CommandError
from samrefiner.config import RefineConfig

if TYPE_CHECKING:
    from samrefiner.refiner import Refiner
    from samrefiner.runner.spec import RefinerSpec
_DEFAULTS = RefineConfig()


def config_from_args(args: argparse.Namespace) -> RefineConfig:
    """Build the RefineConfig from parsed options; invalid values raise ValueError."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RefineConfig)}
    return RefineConfig(**values)


def config_of(args: argparse.Namespace) -> RefineConfig:
    """The refinement settings the options give; invalid ones are a :class:`CommandError`."""
    try:
        return config_from_args(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The family options the model options set (``load_model``'s ``**options``)."""
    return {"hq_token_only": True} if getattr(args, "hq_token_only", False) else {}


def spec_of(args: argparse.Namespace, *, config: RefineConfig | None = None) -> RefinerSpec:
    """The :class:`~samrefiner.runner.spec.RefinerSpec` the model and refinement options
    describe, built once per command: what the fingerprint, the model check, the refiner
    build and the Ray actors take (never the options themselves).

    ``config`` replaces the refinement options (a command that only loads the model);
    without it they are checked here. Invalid values are a :class:`CommandError`.
    """
    from samrefiner.runner.spec import RefinerSpec  # lazily: --help imports no PIL / NumPy

    config = config_of(args) if config is None else config
    cache = getattr(args, "embedding_cache", None)
    if cache is not None and not args.embedding_cache_size > 0:
        raise CommandError(f"--embedding-cache-size must be > 0, got {args.embedding_cache_size}")
    return RefinerSpec(
        model=args.model,
        checkpoint=args.checkpoint,
        random_weights=bool(args.random_weights),
        device=args.device,
        adapter=getattr(args, "adapter", None),
        embedding_cache=cache,
        embedding_cache_bytes=int(getattr(args, "embedding_cache_size", 4.0) * (1 << 30)),
        hq_token_only=bool(getattr(args, "hq_token_only", False)),
        config=config,
    )


def model_spec_of(args: argparse.Namespace) -> RefinerSpec:
    """:func:`spec_of` for loading the model alone (the refinement options unread)."""
    return spec_of(args, config=_DEFAULTS)


def load_model_from_args(args: argparse.Namespace, *, cached: bool = True) -> Any:
    """Load the backend the options name (imports torch lazily, so ``--help`` stays fast).

    With ``--adapter`` the adapter is applied; with ``--embedding-cache`` (and ``cached``)
    the backend encodes through the cache. A model that cannot be loaded (missing or
    unreadable checkpoint, wrong architecture, unknown name, adapter of another model,
    option of another family, missing optional package) is a :class:`CommandError` naming
    the file and the problem.
    """
    return load_backend(model_spec_of(args), cached=cached)


def load_backend(spec: RefinerSpec, *, cached: bool = True) -> Any:
    """``spec.load_backend``; a model that cannot be loaded is a :class:`CommandError`."""
    from samrefiner.runner.spec import ModelLoadError

    try:
        return spec.load_backend(cached=cached)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc


def check_model_args(args: argparse.Namespace) -> None:
    """The quick checks of the model options, without loading the model: before a run
    whose workers load it elsewhere (``--engine ray``), so that a model name that does
    not exist, a missing ``--checkpoint`` or an unreadable ``--adapter`` is the same
    one-line :class:`CommandError` as when the model is loaded here.
    """
    check_spec(model_spec_of(args))


def check_spec(spec: RefinerSpec) -> None:
    """``spec.check``; a mistake is a :class:`CommandError`."""
    from samrefiner.runner.spec import ModelLoadError

    try:
        spec.check()
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc


def embedding_cache_of(args: argparse.Namespace) -> Any:
    """The :class:`~samrefiner.adaption.EmbeddingCache` the options name, or None."""
    if getattr(args, "embedding_cache", None) is None:
        return None
    if not args.embedding_cache_size > 0:
        raise CommandError(f"--embedding-cache-size must be > 0, got {args.embedding_cache_size}")
    from samrefiner.adaption import EmbeddingCache

    return EmbeddingCache(args.embedding_cache, int(args.embedding_cache_size * (1 << 30)))


def build_refiner(args: argparse.Namespace) -> Refiner:
    """The :class:`samrefiner.Refiner` the model and refinement options describe."""
    from samrefiner.runner.spec import ModelLoadError

    spec = spec_of(args)  # the settings checked before the (slow) model load
    try:
        return spec.build()
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc
