"""The one model-family table (``samrefiner.models.families``): torch-free, validated, and
the source of the registry, the catalog, the tiny test backends, the ``transformers``
families and README.md's / docs/models.md's model tables."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import extra_marks
from samrefiner.models.families import (
    FAMILIES,
    MODEL_SPECS,
    PROMPT_KINDS,
    CheckpointSpec,
    Family,
    ModelSpec,
    native_families,
    transformers_families,
)

ROOT = Path(__file__).parents[1]


def test_the_table_and_the_catalog_load_without_torch():
    code = (
        "import sys, samrefiner.models.families, samrefiner.models.catalog; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
    )
    assert done.stdout.strip() == "[]"


def test_registry_catalog_and_testing_come_from_the_table():
    from samrefiner.models import catalog, registry
    from samrefiner.testing import TINY_BACKEND_EXTRAS, TINY_BACKENDS

    assert list(registry.MODELS) == list(MODEL_SPECS) == list(catalog.OFFICIAL_MODELS)
    for name, spec in MODEL_SPECS.items():
        entry = registry.MODELS[name]
        assert entry.checkpoint is spec.checkpoint
        assert (entry.embed_dim, entry.family, entry.depth, entry.licence) == (
            spec.embed_dim,
            spec.family,
            spec.depth,
            spec.licence,
        )
        assert catalog.OFFICIAL_MODELS[name] == spec.family
    assert native_families() == registry.FAMILIES
    assert list(TINY_BACKENDS) == list(TINY_BACKEND_EXTRAS) == list(FAMILIES)
    for name, family in FAMILIES.items():
        assert TINY_BACKENDS[name].__name__ == family.tiny.partition(":")[2]
        assert TINY_BACKEND_EXTRAS[name] == family.extra


def test_the_transformers_families_are_the_table_s():
    from samrefiner.models.hf import HF_FAMILIES

    assert transformers_families() == HF_FAMILIES
    assert list(HF_FAMILIES) == [
        "SamModel",
        "SamHQModel",
        "Sam2Model",
        "Sam3TrackerModel",
        "EdgeTamModel",
    ]


def test_every_family_s_extra_is_one_of_pyproject_s():
    tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 (tomllib)")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set(extras["optional-dependencies"])
    assert {f.extra for f in FAMILIES.values()} - {None} <= names


def _table(path: Path, header: str) -> list[list[str]]:
    lines = path.read_text().splitlines()
    assert header in lines, f"{path.name} has no table {header!r}"
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_readme_checkpoint_table_is_the_table_s():
    rows = _table(ROOT / "README.md", "| name | architecture | file | size | licence |")
    official = [row for row in rows if not row[0].startswith("`hf:")]
    assert [row[0] for row in official] == [f"`{name}`" for name in MODEL_SPECS]
    for (_, architecture, file, _, licence), spec in zip(
        official, MODEL_SPECS.values(), strict=True
    ):
        assert architecture == spec.architecture, spec.name
        assert file == f"`{spec.checkpoint.filename}`", spec.name
        assert licence == spec.licence, spec.name


def test_docs_model_table_is_the_table_s():
    rows = _table(ROOT / "docs" / "models.md", "| name | family | file | size | licence | extra |")
    official = [row for row in rows if not row[0].startswith("`hf:")]
    assert [row[0] for row in official] == [f"`{name}`" for name in MODEL_SPECS]
    for (_, architecture, file, _, licence, extra), spec in zip(
        official, MODEL_SPECS.values(), strict=True
    ):
        assert architecture == spec.architecture, spec.name
        assert file == f"`{spec.checkpoint.filename}`", spec.name
        assert licence == spec.licence, spec.name
        wanted = FAMILIES[spec.family].extra
        assert extra == ("(base)" if wanted is None else f"`{wanted}`"), spec.name


def test_a_family_is_validated():
    sam = FAMILIES["sam"]
    with pytest.raises(ValueError, match="frame must be one of"):
        dataclasses.replace(sam, frame="stretched")
    with pytest.raises(ValueError, match="prompts must be among"):
        dataclasses.replace(sam, prompts=frozenset({"text"}))
    with pytest.raises(ValueError, match="options must be among"):
        dataclasses.replace(sam, options=frozenset({"colour"}))
    with pytest.raises(ValueError, match="hq_token_only is the option of HQ families"):
        dataclasses.replace(sam, hq=True)
    with pytest.raises(ValueError, match="needs is for transformers families"):
        dataclasses.replace(sam, needs=("timm",))
    with pytest.raises(ValueError, match=r"backend must be 'package\.module:attribute'"):
        dataclasses.replace(sam, backend="SamBackend")
    assert isinstance(sam, Family) and sam.prompts == frozenset(PROMPT_KINDS)


def test_a_model_spec_is_validated():
    spec = MODEL_SPECS["sam_vit_b"]
    with pytest.raises(ValueError, match="unknown model family 'hf_sam'"):
        dataclasses.replace(spec, family="hf_sam")
    with pytest.raises(ValueError, match=r"builder must be 'package\.module:attribute'"):
        dataclasses.replace(spec, builder="build_sam_vit_b")
    with pytest.raises(ValueError, match="embed_dim must be positive"):
        dataclasses.replace(spec, embed_dim=0)
    with pytest.raises(ValueError, match="depth is given for SAM 2 models only"):
        dataclasses.replace(spec, depth=12)
    with pytest.raises(ValueError, match="depth is given for SAM 2 models only"):
        dataclasses.replace(MODEL_SPECS["sam2.1_hiera_tiny"], depth=None)
    assert isinstance(spec.checkpoint, CheckpointSpec) and isinstance(spec, ModelSpec)


@pytest.mark.parametrize(
    "family",
    [pytest.param(name, marks=extra_marks(f.extra)) for name, f in FAMILIES.items()],
)
def test_each_backend_keeps_its_family_s_frame_and_prompts(family):
    """The table's frame and prompt facts are the tiny backend's."""
    from samrefiner.testing import TINY_BACKENDS

    facts = FAMILIES[family]
    backend = TINY_BACKENDS[family]()
    assert backend.prompts == facts.prompts
    side = backend.input_size
    frame = backend.frame((side // 2, side))  # a wide image: the two frames differ
    resized = (side, side) if facts.square else (side // 2, side)
    assert frame.resized_size == resized
    embedding = backend.encode(np.zeros((side // 2, side, 3), dtype=np.uint8))
    assert embedding.resized_size == resized
    if facts.hq:
        assert type(backend).__name__ in ("HqSamBackend", "HfBackend")


# --------------------------------------------------------------------------- Backend's share


def test_backend_keeps_frames_per_size_and_moves_its_module():
    from samrefiner.testing import tiny_sam

    backend = tiny_sam()
    assert backend.frame_kind == "longest_side"
    first = backend.frame((30, 50))
    assert backend.frame((30.0, 50.0)) is first  # one cached frame per size
    assert backend.frame((50, 30)) is not first
    assert backend.to("cpu") is backend and backend.device.type == "cpu"


def test_a_backend_without_a_module_or_frame_kind():
    from helpers_fake_backend import FakeBackend
    from samrefiner.models.base import Backend

    fake = FakeBackend()
    assert fake.to("cpu") is fake  # nothing to move
    with pytest.raises(NotImplementedError, match="sets no frame_kind"):
        Backend.frame(fake, (10, 10))


# --------------------------------------------------------------------------- adapter= one floor up


def test_the_facade_s_load_model_applies_adapters_and_the_core_s_does_not_import_adaption():
    import ast
    import inspect

    import samrefiner
    from samrefiner.adaption.loading import load_model
    from samrefiner.models import registry

    assert samrefiner.load_model is load_model
    assert "adapter" in inspect.signature(load_model).parameters
    assert "adapter" not in inspect.signature(registry.load_model).parameters
    for module in ("registry", "weights", "families", "base", "catalog"):
        tree = ast.parse((ROOT / "src" / "samrefiner" / "models" / f"{module}.py").read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert not {m for m in imported if m.startswith("samrefiner.adaption")}, module
