"""Model names, builders and :func:`load_model`.

The names and checkpoints come from :mod:`samrefiner.models.families`; reading and
checking weights and recognising a bare file's architecture, from
:mod:`samrefiner.models.weights` (their names are re-exported here, where they were).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from samrefiner.models.base import Backend
from samrefiner.models.download import ensure_checkpoint
from samrefiner.models.families import (
    MODEL_SPECS,
    CheckpointSpec,
    Family,
    ModelSpec,
    check_options,
    import_object,
    native_families,
)
from samrefiner.models.weights import (
    NOT_PLAIN_TENSORS,
    check_keys,
    checkpoint_file,
    guess_architecture,
    load_tensor_file,
    load_weights,
    read_state_dict,
    recognise_family,
    refused_pickle,
)


@dataclass(frozen=True)
class ModelEntry:
    """A named architecture with its official checkpoint, as :func:`load_model` builds it
    (:data:`MODELS` derives one from each :class:`~samrefiner.models.families.ModelSpec`).

    ``embed_dim`` (the image encoder's first width) and, for SAM 2, ``depth`` (Hiera
    blocks) recognise a bare checkpoint file's architecture within its family.
    """

    build: Callable[[], torch.nn.Module]
    checkpoint: CheckpointSpec
    embed_dim: int
    family: str = "sam"
    depth: int | None = None
    licence: str = "Apache-2.0"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}: use one of {list(FAMILIES)}")


def _builder(spec: ModelSpec) -> Callable[[], torch.nn.Module]:
    """``spec``'s builder, imported when it is called (an extra's package only then)."""

    def build() -> torch.nn.Module:
        module: torch.nn.Module = import_object(spec.builder)(*spec.builder_args)
        return module

    build.__name__ = spec.builder.partition(":")[2]
    return build


#: The native model families (``families.FAMILIES`` without the ``transformers`` ones).
FAMILIES: dict[str, Family] = native_families()

#: Every official model's builder and checkpoint, by name (from ``families.MODEL_SPECS``).
MODELS: dict[str, ModelEntry] = {
    name: ModelEntry(
        build=_builder(spec),
        checkpoint=spec.checkpoint,
        embed_dim=spec.embed_dim,
        family=spec.family,
        depth=spec.depth,
        licence=spec.licence,
    )
    for name, spec in MODEL_SPECS.items()
}

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

#: Prefix of Hugging Face Hub models: ``load_model("hf:ORG/NAME")``.
HF_PREFIX = "hf:"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _guess_architecture(state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> str:
    return guess_architecture(state, path, MODELS, MODEL_NAMES)


def _import_builder(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import model builder {spec!r}: {exc}") from exc


def _is_hf(spec: str) -> bool:
    return spec.startswith(HF_PREFIX) or (
        Path(spec).is_dir() and (Path(spec) / "config.json").is_file()
    )


def _is_builder(spec: str) -> bool:
    return ":" in spec and not Path(spec).exists()


def _hf_takes_no_checkpoint(spec: str) -> ValueError:
    return ValueError(
        f"{spec}: Hugging Face models take no checkpoint= (their weights are the folder's "
        "or the repository's)"
    )


def _unknown_model(spec: str) -> ValueError:
    return ValueError(
        f"unknown model {spec!r}: use one of {', '.join(MODEL_NAMES)}, a checkpoint "
        "file, 'hf:ORG/NAME', or a 'package.module:function' builder"
    )


def _callable_builder(spec: str) -> Callable[..., Any]:
    builder = _import_builder(spec)
    if not callable(builder):
        raise ValueError(f"model builder {spec!r} is a {type(builder).__name__}, not a function")
    return builder


def check_model(
    name_or_path: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> None:
    """Raise the error :func:`load_model` would raise for a model it cannot find, without
    building the model or reading any weights: an unknown name, a missing checkpoint
    file, a builder that cannot be imported, a named model given an option its family
    does not take.

    A quick check where the model is loaded elsewhere (the actors of a Ray run), so that
    such mistakes are reported before any work starts. A named model's official
    checkpoint is not looked for (each machine fetches its own).

    Raises:
        ValueError / FileNotFoundError: as :func:`load_model`, with the same message.
    """
    spec = os.fspath(name_or_path)
    if _is_hf(spec):
        if checkpoint is not None:
            raise _hf_takes_no_checkpoint(spec)
        return
    if _is_builder(spec):
        _callable_builder(spec)
    elif spec in MODELS:
        _check_options(spec, MODELS[spec].family, options)
    elif not Path(spec).is_file():
        raise _unknown_model(spec)
    if checkpoint is not None:
        checkpoint_file(checkpoint)


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    **options: Any,
) -> Backend:
    """Build a SAM-family model and wrap it in a :class:`Backend`.

    Args:
        name_or_path: a name from :data:`MODEL_NAMES`; a checkpoint file (family and
            architecture recognised from its weights); ``"hf:ORG/NAME"`` or a folder
            written by ``save_pretrained`` (a Hugging Face ``transformers`` SAM-family
            model, see :mod:`samrefiner.models.hf`); or ``"package.module:function"``, a
            builder returning a ``Sam`` module or a :class:`Backend` (custom or test models).
        checkpoint: weights file loaded strictly (missing / unexpected keys are errors).
        pretrained: with a name and no ``checkpoint``, load the official weights from the
            cache (``$SAMREFINER_HOME``, default ``~/.cache/samrefiner``), downloading and
            verifying them once. ``False`` keeps random weights (tests, benchmarks).
        device: torch device; default CUDA when available, else CPU.
        options: family options, e.g. ``hq_token_only=True`` for HQ-SAM (the
            ``sam_hq_*`` names and ``transformers``' SAM-HQ models).

    Returns:
        The backend; its torch module is :attr:`Backend.module`.

    An IoU adapter is applied one floor up, by the facade's :func:`samrefiner.load_model`
    (:func:`samrefiner.adaption.loading.load_model`, ``adapter=DIR``).
    """
    spec = os.fspath(name_or_path)
    device = device or default_device()
    state = None
    if _is_hf(spec):
        from samrefiner.models.hf import load_hf_model

        if checkpoint is not None:
            raise _hf_takes_no_checkpoint(spec)
        return load_hf_model(
            spec.removeprefix(HF_PREFIX), pretrained=pretrained, device=device, **options
        )
    if spec in MODELS:
        label = spec
        entry = MODELS[spec]
        if checkpoint is None and pretrained:
            # Fetch first: a failed download should not cost building the model.
            checkpoint = ensure_checkpoint(entry.checkpoint)
    elif _is_builder(spec):
        built = _callable_builder(spec)()
        if not isinstance(built, (Backend, torch.nn.Module)):
            raise ValueError(
                f"model builder {spec!r} returned a {type(built).__name__}, not a SAM module or "
                "a samrefiner Backend"
            )
        if isinstance(built, Backend):
            if options:
                raise ValueError(f"{spec}: a builder's backend takes no options")
            if checkpoint is not None:
                load_weights(built.module, checkpoint, spec)
            return built.to(device)
        if checkpoint is not None:
            load_weights(built, checkpoint, spec)
        try:
            return _wrap("sam", built.to(device), spec, options)
        except TypeError as exc:  # a module of another kind than SAM's
            raise ValueError(f"model builder {spec!r}: {exc}") from exc
    elif Path(spec).is_file():
        # Read once: the weights tell the architecture, then fill it.
        state = read_state_dict(spec)
        label = _guess_architecture(state, spec)
        entry, checkpoint = MODELS[label], spec
    else:
        raise _unknown_model(spec)
    _check_options(label, entry.family, options)
    module = entry.build()
    if checkpoint is not None:
        load_weights(module, checkpoint, label, state=state)
    return _wrap(entry.family, module.to(device), label, options)


def _check_options(label: str, family: str, options: dict[str, Any]) -> None:
    check_options(label, FAMILIES[family].label, FAMILIES[family].options, options)


def _wrap(family: str, module: torch.nn.Module, label: str, options: dict[str, Any]) -> Backend:
    _check_options(label, family, options)
    wrapper = import_object(FAMILIES[family].backend)
    backend: Backend = wrapper(module.eval(), name=label, **options)
    return backend


__all__ = [
    "FAMILIES",
    "HF_PREFIX",
    "MODELS",
    "MODEL_NAMES",
    "NOT_PLAIN_TENSORS",
    "ModelEntry",
    "check_keys",
    "check_model",
    "check_options",
    "default_device",
    "load_model",
    "load_tensor_file",
    "load_weights",
    "read_state_dict",
    "recognise_family",
    "refused_pickle",
]
