"""Every model family and official model samrefiner knows: one table, importable without torch.

A family (:class:`Family`) says how its torch module becomes a
:class:`~samrefiner.models.base.Backend`, which tiny random backend tests it, which extra
installs it, how it fits an image into its input (its frame) and which prompts and
``load_model`` options it takes. An official model (:class:`ModelSpec`) names its family,
its checkpoint file with URL and SHA-256, its builder and the encoder sizes that recognise
a bare checkpoint of it.

Everything else is derived from these two tables: the registry's builders and
:func:`~samrefiner.models.registry.load_model`, the names in the command line's help
(:mod:`samrefiner.models.catalog`), :data:`samrefiner.testing.TINY_BACKENDS` and the extras
they need, the ``transformers`` families :mod:`samrefiner.models.hf` drives, and the tests
that keep README.md's and docs/models.md's tables in step. Builders and backends are named
as ``"package.module:attribute"`` strings, imported only when a model is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

#: Prompt kinds a backend may accept (see :attr:`Backend.prompts`).
PROMPT_KINDS: tuple[str, ...] = ("points", "box", "mask")

#: How a family fits an image into its square input (see :class:`~samrefiner.geometry.Frame`):
#: ``"longest_side"`` resizes the longest side and pads (SAM v1), ``"square"`` stretches the
#: image over the square (SAM 2).
FRAMES: tuple[str, ...] = ("longest_side", "square")

#: ``load_model`` options a family may take.
FAMILY_OPTIONS: frozenset[str] = frozenset({"hq_token_only"})


def import_object(spec: str) -> Any:
    """The attribute a ``"package.module:attribute"`` string names, imported now."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def check_options(
    label: str, kind: str, accepted: AbstractSet[str], options: Iterable[str]
) -> None:
    """Raise a ValueError naming the model and its ``kind`` for each of ``options`` (names)
    it does not take (``accepted``)."""
    unknown = set(options) - set(accepted)
    if unknown:
        raise ValueError(f"model {label!r} ({kind}) takes no option {', '.join(sorted(unknown))}")


def _check_spec(what: str, spec: str) -> None:
    module, sep, attr = spec.partition(":")
    if not (module and sep and attr):
        raise ValueError(f"{what} must be 'package.module:attribute', got {spec!r}")


@dataclass(frozen=True)
class CheckpointSpec:
    """An official weights file: where to get it and how to recognise it.

    ``sha256`` is None where no checksum is published in two independent public sources:
    such a file is used unverified, and the download says so.
    """

    filename: str
    url: str
    sha256: str | None
    size_bytes: int | None = None

    def unverified_note(self) -> str:
        return (
            f"{self.filename}: no published SHA-256 to check it against; the file could not "
            "be verified (compare it with the official release yourself)"
        )


@dataclass(frozen=True)
class Family:
    """A model family: how its module becomes a backend, and what it needs and takes.

    Attributes:
        name: the family's key (``"sam"``, ``"hf_sam2"``, ...); also the key of its tiny
            backend in :data:`samrefiner.testing.TINY_BACKENDS`.
        label: its name in messages and docs (``"SAM 2.1"``).
        backend: ``"package.module:Class"``, the :class:`Backend` that wraps its module
            (``Class(module, name=..., **options)`` for the native families).
        tiny: ``"package.module:function"``, a tiny random backend,
            ``function(seed=0, device="cpu")`` (also usable as a ``--model`` builder).
        extra: the pip extra that installs it (``pip install 'samrefiner[EXTRA]'``); None
            for the base install.
        frame: how the image enters the model's square input, one of :data:`FRAMES`.
        prompts: the prompt kinds it accepts (a subset of :data:`PROMPT_KINDS`).
        options: the ``load_model`` options it takes (a subset of :data:`FAMILY_OPTIONS`).
        hq: its decoder has HQ-SAM's high-quality output token (and takes ``hq_token_only``).
        transformers_class: for a ``transformers`` family (loaded as ``hf:ORG/NAME`` or a
            ``save_pretrained`` folder), the model class; None for a native family,
            loaded by an official name of :data:`MODEL_SPECS` or a checkpoint file.
        needs: packages a ``transformers`` family needs beyond ``transformers`` (its extra
            installs them; they are checked when such a model loads).
    """

    name: str
    label: str
    backend: str
    tiny: str
    extra: str | None
    frame: str
    prompts: frozenset[str] = frozenset(PROMPT_KINDS)
    options: frozenset[str] = frozenset()
    hq: bool = False
    transformers_class: str | None = None
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_spec(f"family {self.name!r}: backend", self.backend)
        _check_spec(f"family {self.name!r}: tiny", self.tiny)
        if self.frame not in FRAMES:
            raise ValueError(f"family {self.name!r}: frame must be one of {FRAMES}")
        if not self.prompts <= set(PROMPT_KINDS):
            raise ValueError(f"family {self.name!r}: prompts must be among {PROMPT_KINDS}")
        if not self.options <= FAMILY_OPTIONS:
            raise ValueError(f"family {self.name!r}: options must be among {set(FAMILY_OPTIONS)}")
        if self.hq != ("hq_token_only" in self.options):
            raise ValueError(f"family {self.name!r}: hq_token_only is the option of HQ families")
        if self.needs and self.transformers_class is None:
            raise ValueError(f"family {self.name!r}: needs is for transformers families")

    @property
    def square(self) -> bool:
        """The image is stretched over the square input (SAM 2's frame)."""
        return self.frame == "square"


def _hf(name: str, label: str, cls: str, frame: str, **more: Any) -> Family:
    return Family(
        name,
        label,
        "samrefiner.models.hf:HfBackend",
        f"samrefiner.testing:tiny_{name}",
        "hf",
        frame,
        transformers_class=cls,
        **more,
    )


_HQ = frozenset({"hq_token_only"})

#: Every model family, by name: the native ones first (in the order of
#: :data:`MODEL_SPECS`), then the ``transformers`` ones.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "sam",
            "SAM",
            "samrefiner.models.sam:SamBackend",
            "samrefiner.testing:tiny_sam",
            None,
            "longest_side",
        ),
        Family(
            "sam_hq",
            "HQ-SAM",
            "samrefiner.models.hq:HqSamBackend",
            "samrefiner.testing:tiny_sam_hq",
            "hq",
            "longest_side",
            options=_HQ,
            hq=True,
        ),
        Family(
            "mobile_sam",
            "MobileSAM",
            "samrefiner.models.sam:SamBackend",
            "samrefiner.testing:tiny_mobile_sam",
            "mobilesam",
            "longest_side",
        ),
        Family(
            "sam2",
            "SAM 2.1",
            "samrefiner.models.sam2:Sam2Backend",
            "samrefiner.testing:tiny_sam2",
            "sam2",
            "square",
        ),
        _hf("hf_sam", "SAM (transformers)", "SamModel", "longest_side"),
        _hf(
            "hf_sam_hq",
            "SAM-HQ (transformers)",
            "SamHQModel",
            "longest_side",
            options=_HQ,
            hq=True,
        ),
        _hf("hf_sam2", "SAM 2 (transformers)", "Sam2Model", "square"),
        _hf("hf_sam3_tracker", "SAM 3 tracker (transformers)", "Sam3TrackerModel", "square"),
        # EdgeTAM's RepViT backbone comes from timm.
        _hf("hf_edgetam", "EdgeTAM (transformers)", "EdgeTamModel", "square", needs=("timm",)),
    )
}


@dataclass(frozen=True)
class ModelSpec:
    """An official model: its family, checkpoint and builder.

    Attributes:
        name: the name ``load_model`` and ``--model`` take (``"sam_vit_b"``).
        family: a native family of :data:`FAMILIES`.
        architecture: its name in README.md's checkpoint table (``"SAM ViT-B"``).
        checkpoint: the official weights file.
        builder: ``"package.module:function"`` building the module with random weights,
            called as ``function(*builder_args)``.
        embed_dim: the image encoder's first width; with ``depth`` (SAM 2's number of
            Hiera blocks) it recognises a bare checkpoint's architecture in its family.
        builder_args: the builder's positional string arguments.
        depth: SAM 2's Hiera blocks; None for the other families.
        licence: the weights' licence.
    """

    name: str
    family: str
    architecture: str
    checkpoint: CheckpointSpec
    builder: str
    embed_dim: int
    builder_args: tuple[str, ...] = ()
    depth: int | None = None
    licence: str = "Apache-2.0"

    def __post_init__(self) -> None:
        family = FAMILIES.get(self.family)
        if family is None or family.transformers_class is not None:
            native = [n for n, f in FAMILIES.items() if f.transformers_class is None]
            raise ValueError(f"unknown model family {self.family!r}: use one of {native}")
        _check_spec(f"model {self.name!r}: builder", self.builder)
        if self.embed_dim <= 0:
            raise ValueError(f"model {self.name!r}: embed_dim must be positive")
        if (self.depth is not None) != family.square:
            raise ValueError(f"model {self.name!r}: depth is given for SAM 2 models only")


_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_HQ_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
_MOBILE_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SAM2_CONFIGS = "configs/sam2.1/"


def _sam(variant: str, file: str, width: int, sha256: str, size: int | None = None) -> ModelSpec:
    return ModelSpec(
        f"sam_vit_{variant}",
        "sam",
        f"SAM ViT-{variant.upper()}",
        CheckpointSpec(file, _BASE_URL + file, sha256, size),
        f"segment_anything:build_sam_vit_{variant}",
        width,
    )


def _sam_hq(variant: str, architecture: str, width: int, sha256: str) -> ModelSpec:
    file = f"sam_hq_vit_{variant}.pth"
    return ModelSpec(
        f"sam_hq_vit_{variant}",
        "sam_hq",
        f"HQ-SAM {architecture}",
        CheckpointSpec(file, _HQ_URL + file, sha256),
        "samrefiner.models.hq:build_hq_model",
        width,
        builder_args=(f"vit_{variant}",),
    )


def _sam2(
    size: str, short: str, architecture: str, width: int, depth: int, sha256: str
) -> ModelSpec:
    file = f"sam2.1_hiera_{size}.pt"
    return ModelSpec(
        f"sam2.1_hiera_{size}",
        "sam2",
        f"SAM 2.1 Hiera-{architecture}",
        CheckpointSpec(file, _SAM2_URL + file, sha256),
        "samrefiner.models.sam2:build_sam2_model",
        width,
        builder_args=(f"{_SAM2_CONFIGS}sam2.1_hiera_{short}.yaml",),
        depth=depth,
    )


# Each SHA-256 is one that two independent public sources give for the file at this URL;
# docs/models.md names them (a file without such a pair would get None, and would load
# unverified with the download saying so).
#: Every official model, by name, in the order they are listed.
MODEL_SPECS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        _sam(
            "b",
            "sam_vit_b_01ec64.pth",
            768,
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375042383,
        ),
        _sam(
            "l",
            "sam_vit_l_0b3195.pth",
            1024,
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        _sam(
            "h",
            "sam_vit_h_4b8939.pth",
            1280,
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
        _sam_hq(
            "b", "ViT-B", 768, "14a9d662cd6f5a9c2dba6d40ab0058d88d287e4a18fd6fdc6ad5fb1a3fdeaa57"
        ),
        _sam_hq(
            "l", "ViT-L", 1024, "e1a6c385d62bf005ded91a54d5ec55c985cfc4103ef89c08d90f39f04934c343"
        ),
        _sam_hq(
            "h", "ViT-H", 1280, "a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35"
        ),
        _sam_hq(
            "tiny",
            "TinyViT",
            64,
            "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
        ),
        ModelSpec(
            "mobile_sam",
            "mobile_sam",
            "MobileSAM (TinyViT)",
            CheckpointSpec(
                "mobile_sam.pt",
                _MOBILE_URL + "mobile_sam.pt",
                "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            ),
            "samrefiner.models.mobile_sam:build_mobile_sam",
            64,
        ),
        _sam2(
            "tiny",
            "t",
            "T",
            96,
            12,
            "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
        ),
        _sam2(
            "small",
            "s",
            "S",
            96,
            16,
            "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
        ),
        _sam2(
            "base_plus",
            "b+",
            "B+",
            112,
            24,
            "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
        ),
        _sam2(
            "large",
            "l",
            "L",
            144,
            48,
            "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
        ),
    )
}


def native_families() -> dict[str, Family]:
    """The families loaded by an official name or a checkpoint file (not ``transformers``)."""
    return {n: f for n, f in FAMILIES.items() if f.transformers_class is None}


def transformers_families() -> dict[str, Family]:
    """The ``transformers`` families, by model class name (``"SamModel"``, ...)."""
    return {f.transformers_class: f for f in FAMILIES.values() if f.transformers_class}
