"""Model names, builders and :func:`load_model`."""

from __future__ import annotations

import importlib
import os
import pickle
import re
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from segment_anything import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l

from samrefiner.models.base import Backend
from samrefiner.models.download import CheckpointSpec, ensure_checkpoint
from samrefiner.models.sam import SamBackend

_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_HQ_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
_MOBILE_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SAM2_CONFIGS = "configs/sam2.1/"


def _wrap_sam(module: torch.nn.Module, name: str, **options: Any) -> Backend:
    return SamBackend(module, name=name)


def _wrap_hq(module: torch.nn.Module, name: str, **options: Any) -> Backend:
    from samrefiner.models.hq import HqSamBackend

    return HqSamBackend(module, name=name, **options)


def _wrap_sam2(module: torch.nn.Module, name: str, **options: Any) -> Backend:
    from samrefiner.models.sam2 import Sam2Backend

    return Sam2Backend(module, name=name)


@dataclass(frozen=True)
class Family:
    """A model family: how its module becomes a backend, and which extra installs it."""

    label: str
    wrap: Callable[..., Backend]
    extra: str | None  # pip extra, None for the base install
    options: frozenset[str] = frozenset()  # load_model options the wrapper accepts


FAMILIES: dict[str, Family] = {
    "sam": Family("SAM", _wrap_sam, None),
    "sam_hq": Family("HQ-SAM", _wrap_hq, "hq", frozenset({"hq_token_only"})),
    "mobile_sam": Family("MobileSAM", _wrap_sam, "hq"),
    "sam2": Family("SAM 2.1", _wrap_sam2, "sam2"),
}


@dataclass(frozen=True)
class ModelEntry:
    """A named architecture with its official checkpoint.

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


def _hq(variant: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from samrefiner.models.hq import import_hq

        return import_hq().sam_model_registry[f"vit_{variant}"]()

    return build


def _mobile() -> torch.nn.Module:
    from samrefiner.models.mobile_sam import build_mobile_sam

    return build_mobile_sam()


def _sam2(config: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from samrefiner.models.sam2 import build_sam2_model

        return build_sam2_model(_SAM2_CONFIGS + config)

    return build


# Each SHA-256 is one that two independent public sources give for the file at this URL;
# docs/models.md names them (a file without such a pair would get None, and would load
# unverified with the download saying so). SAM 2.1's, by size:
_SAM2_SHA256 = {
    "tiny": "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
    "small": "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
    "base_plus": "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
    "large": "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
}

MODELS: dict[str, ModelEntry] = {
    "sam_vit_b": ModelEntry(
        build=build_sam_vit_b,
        checkpoint=CheckpointSpec(
            "sam_vit_b_01ec64.pth",
            _BASE_URL + "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375042383,
        ),
        embed_dim=768,
    ),
    "sam_vit_l": ModelEntry(
        build=build_sam_vit_l,
        checkpoint=CheckpointSpec(
            "sam_vit_l_0b3195.pth",
            _BASE_URL + "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        embed_dim=1024,
    ),
    "sam_vit_h": ModelEntry(
        build=build_sam_vit_h,
        checkpoint=CheckpointSpec(
            "sam_vit_h_4b8939.pth",
            _BASE_URL + "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
        embed_dim=1280,
    ),
    **{
        f"sam_hq_vit_{variant}": ModelEntry(
            build=_hq(variant),
            checkpoint=CheckpointSpec(
                f"sam_hq_vit_{variant}.pth", f"{_HQ_URL}sam_hq_vit_{variant}.pth", sha256
            ),
            embed_dim=width,
            family="sam_hq",
        )
        for variant, width, sha256 in (
            ("b", 768, "14a9d662cd6f5a9c2dba6d40ab0058d88d287e4a18fd6fdc6ad5fb1a3fdeaa57"),
            ("l", 1024, "e1a6c385d62bf005ded91a54d5ec55c985cfc4103ef89c08d90f39f04934c343"),
            ("h", 1280, "a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35"),
        )
    },
    "sam_hq_vit_tiny": ModelEntry(
        build=_hq("tiny"),
        checkpoint=CheckpointSpec(
            "sam_hq_vit_tiny.pth",
            _HQ_URL + "sam_hq_vit_tiny.pth",
            "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
        ),
        embed_dim=64,
        family="sam_hq",
    ),
    "mobile_sam": ModelEntry(
        build=_mobile,
        checkpoint=CheckpointSpec(
            "mobile_sam.pt",
            _MOBILE_URL + "mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        ),
        embed_dim=64,
        family="mobile_sam",
    ),
    **{
        f"sam2.1_hiera_{size}": ModelEntry(
            build=_sam2(f"sam2.1_hiera_{short}.yaml"),
            checkpoint=CheckpointSpec(
                f"sam2.1_hiera_{size}.pt",
                f"{_SAM2_URL}sam2.1_hiera_{size}.pt",
                _SAM2_SHA256[size],
            ),
            embed_dim=width,
            family="sam2",
            depth=depth,
        )
        for size, short, width, depth in (
            ("tiny", "t", 96, 12),
            ("small", "s", 96, 16),
            ("base_plus", "b+", 112, 24),
            ("large", "l", 144, 48),
        )
    },
}

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

#: Prefix of Hugging Face Hub models: ``load_model("hf:ORG/NAME")``.
HF_PREFIX = "hf:"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _checkpoint_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint file not found")
    return p


#: Why a file holding pickled Python objects other than tensors is refused: the one
#: wording for model checkpoints and adapt's training checkpoint.
NOT_PLAIN_TENSORS = (
    "not a plain tensor checkpoint: it holds Python objects other than tensors, which are "
    "not unpickled (that could run code)"
)


def refused_pickle(path: str | os.PathLike[str]) -> str:
    """The one-line error of a weights file that holds Python objects other than tensors
    (``torch.load(weights_only=True)`` refuses to unpickle them)."""
    return f"{path}: {NOT_PLAIN_TENSORS}"


def load_tensor_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` of a file on the CPU with ``weights_only=True``: tensors and plain
    containers only, no code runs.

    Raises:
        ValueError: naming the file, in one line: it holds other Python objects
            (:data:`NOT_PLAIN_TENSORS`; the cause is torch's ``UnpicklingError``), or it
            is not a readable PyTorch file.
    """
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only loader refused an object
        raise ValueError(refused_pickle(p)) from exc
    except Exception as exc:  # torch raises many types for a bad file; report them all alike
        raise ValueError(f"{p}: not a readable PyTorch checkpoint: {exc}") from exc


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded by :func:`load_tensor_file`."""
    p = _checkpoint_file(path)
    state = load_tensor_file(p)
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(state).__name__}")
    return state


def check_keys(
    path: str | os.PathLike[str],
    label: str,
    *,
    missing: Sequence[str],
    unexpected: Sequence[str],
    mismatched: Sequence[str],
) -> None:
    """Raise a ValueError naming the keys when weights do not fit ``label`` exactly.

    Args:
        path: the weights (file or folder), named first in the message.
        label: the model they were loaded into.
        missing / unexpected: keys the model has and the weights lack, and the reverse.
        mismatched: tensors of another shape, each as ``"key (file shape) != (model shape)"``.
    """

    def show(items: Sequence[str]) -> str:
        return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} tensors of another shape: {show(mismatched)}")
    if parts:
        raise ValueError(f"{path}: checkpoint does not fit {label}: " + "; ".join(parts))


def load_weights(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    label: str,
    *,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Load ``path`` into ``module`` strictly; mismatches raise a ValueError naming keys.

    ``state`` is the file's content when it was already read (it is then not read again).
    """
    if state is None:
        state = read_state_dict(path)
    expected = module.state_dict()
    check_keys(
        path,
        label,
        missing=[k for k in expected if k not in state],
        unexpected=[k for k in state if k not in expected],
        mismatched=[
            f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ],
    )
    module.load_state_dict(state, strict=True)


_TINY_VIT_WIDTH = "image_encoder.patch_embed.seq.2.c.weight"
_VIT_WIDTH = "image_encoder.patch_embed.proj.weight"
_HIERA_WIDTH = "image_encoder.trunk.patch_embed.proj.weight"
_HIERA_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")


def recognise_family(state: dict[str, torch.Tensor]) -> str | None:
    """The model family a state dict's keys belong to, or None."""
    if _HIERA_WIDTH in state:
        return "sam2"
    hq = "mask_decoder.hf_token.weight" in state
    if _TINY_VIT_WIDTH in state:
        return "sam_hq" if hq else "mobile_sam"
    if _VIT_WIDTH in state:
        return "sam_hq" if hq else "sam"
    return None


def _signature(state: dict[str, torch.Tensor], family: str) -> tuple[int, int | None]:
    if family == "sam2":
        blocks = {int(m.group(1)) for k in state if (m := _HIERA_BLOCK.match(k))}
        return int(state[_HIERA_WIDTH].shape[0]), len(blocks)
    key = _TINY_VIT_WIDTH if _TINY_VIT_WIDTH in state else _VIT_WIDTH
    return int(state[key].shape[0]), None


def _guess_architecture(state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> str:
    family = recognise_family(state)
    if family is not None:
        width, depth = _signature(state, family)
        for name, entry in MODELS.items():
            if entry.family == family and entry.embed_dim == width and entry.depth in (None, depth):
                return name
        found = f"a {FAMILIES[family].label} checkpoint of width {width}"
        found += f" and {depth} blocks" if depth is not None else ""
    else:
        found = "no known model family's keys"
    raise ValueError(
        f"{path}: cannot tell which architecture this checkpoint is for ({found}); "
        f"pass the model name ({', '.join(MODEL_NAMES)}) with checkpoint=PATH"
    )


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
        _checkpoint_file(checkpoint)


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    adapter: str | os.PathLike[str] | None = None,
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
        adapter: an IoU adapter folder (``samrefiner adapt``) to apply; it must have been
            trained on these weights (see :func:`samrefiner.adaption.apply_adapter`).
        options: family options, e.g. ``hq_token_only=True`` for HQ-SAM (the
            ``sam_hq_*`` names and ``transformers``' SAM-HQ models).

    Returns:
        The backend; its torch module is :attr:`Backend.module`.
    """
    if adapter is not None:
        from samrefiner.adaption import apply_adapter

        backend = load_model(
            name_or_path, checkpoint=checkpoint, pretrained=pretrained, device=device, **options
        )
        apply_adapter(backend, adapter)
        return backend
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
            return built.to(device) if hasattr(built, "to") else built
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


def check_options(label: str, kind: str, accepted: AbstractSet[str], options: Any) -> None:
    """Raise a ValueError naming the model and its ``kind`` for each of ``options`` (names)
    it does not take (``accepted``)."""
    unknown = set(options) - set(accepted)
    if unknown:
        raise ValueError(f"model {label!r} ({kind}) takes no option {', '.join(sorted(unknown))}")


def _check_options(label: str, family: str, options: dict[str, Any]) -> None:
    check_options(label, FAMILIES[family].label, FAMILIES[family].options, options)


def _wrap(family: str, module: torch.nn.Module, label: str, options: dict[str, Any]) -> Backend:
    _check_options(label, family, options)
    return FAMILIES[family].wrap(module.eval(), label, **options)
