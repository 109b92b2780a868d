"""Checkpoints of every family load strictly and are recognised; Hugging Face models load
offline from a folder or the cache; prompt support and the selection rule are enforced."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import extra_marks
from samrefiner import RefineConfig, Refiner
from samrefiner.models import load_model, registry
from samrefiner.models.base import Backend, Decoded, ImageEmbedding
from samrefiner.models.download import CheckpointSpec
from samrefiner.models.registry import MODELS, ModelEntry, recognise_family
from samrefiner.testing import (
    TINY_BACKEND_EXTRAS,
    build_tiny_hf_model,
    build_tiny_mobile_sam,
    build_tiny_sam,
    build_tiny_sam2,
    build_tiny_sam_hq,
    tiny_hf_image_processor,
    tiny_sam,
    tiny_sam_hq,
)

#: family -> (tiny module builder, backend class name, encoder width, Hiera depth)
TINY_MODULES = {
    "sam": (build_tiny_sam, "SamBackend", 32, None),
    "sam_hq": (build_tiny_sam_hq, "HqSamBackend", 32, None),
    "mobile_sam": (build_tiny_mobile_sam, "SamBackend", 8, None),
    "sam2": (build_tiny_sam2, "Sam2Backend", 8, 5),
}


@pytest.fixture(
    params=[
        pytest.param(f, marks=extra_marks(TINY_BACKEND_EXTRAS[f])) for f in sorted(TINY_MODULES)
    ]
)
def tiny_family(request, monkeypatch, tmp_path):
    """Registers the family's tiny model as ``tiny_<family>``; its state dict (seed 1)."""
    family = request.param
    build, backend_cls, width, depth = TINY_MODULES[family]
    name = f"tiny_{family}"
    entry = ModelEntry(
        build=build,
        checkpoint=CheckpointSpec(f"{name}.pth", "http://127.0.0.1:9/never", None),
        embed_dim=width,
        family=family,
        depth=depth,
    )
    monkeypatch.setitem(registry.MODELS, name, entry)
    state = build(seed=1).state_dict()
    return family, name, backend_cls, state


def save(state: dict, path: Path, wrap: str | None = None) -> Path:
    torch.save({wrap: state} if wrap else state, path)
    return path


def test_checkpoint_loads_strictly_and_exactly(tiny_family, tmp_path):
    family, name, backend_cls, state = tiny_family
    # SAM 2 ships its weights under "model", the others as a bare state dict.
    path = save(state, tmp_path / "w.pth", "model" if family == "sam2" else None)
    backend = load_model(name, checkpoint=path, device="cpu")
    assert type(backend).__name__ == backend_cls
    got = backend.module.state_dict()
    assert got.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(got[key], value), key


def test_checkpoint_missing_or_extra_key_is_named(tiny_family, tmp_path):
    _, name, _, state = tiny_family
    missing = sorted(state)[len(state) // 2]
    short = {k: v for k, v in state.items() if k != missing}
    with pytest.raises(ValueError, match=rf"1 missing keys: {missing}"):
        load_model(name, checkpoint=save(short, tmp_path / "short.pth"), device="cpu")
    extra = {**state, "mask_decoder.unexpected.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"1 unexpected keys: mask_decoder\.unexpected\.weight"):
        load_model(name, checkpoint=save(extra, tmp_path / "extra.pth"), device="cpu")


def test_bare_checkpoint_is_recognised(tiny_family, tmp_path):
    family, name, backend_cls, state = tiny_family
    assert recognise_family(state) == family
    backend = load_model(save(state, tmp_path / "bare.pth"), device="cpu")
    assert backend.name == name and type(backend).__name__ == backend_cls


def fake_state(entry: ModelEntry) -> dict[str, torch.Tensor]:
    """Only the keys recognition reads, shaped like the official file's."""
    w = torch.zeros(entry.embed_dim, 1)
    if entry.family == "sam2":
        blocks = {f"image_encoder.trunk.blocks.{i}.norm1.weight": w for i in range(entry.depth)}
        return {"image_encoder.trunk.patch_embed.proj.weight": w, **blocks}
    tiny_vit = entry.family == "mobile_sam" or entry.embed_dim == 64
    key = "image_encoder.patch_embed." + ("seq.2.c.weight" if tiny_vit else "proj.weight")
    state = {key: w}
    if entry.family == "sam_hq":
        state["mask_decoder.hf_token.weight"] = w
    return state


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_official_name_is_recognised_from_its_keys(name):
    assert registry._guess_architecture(fake_state(MODELS[name]), "x.pth") == name


def test_every_official_name_has_an_official_url_and_honest_checksum():
    for name, entry in MODELS.items():
        spec = entry.checkpoint
        assert spec.url.startswith("https://") and spec.url.endswith(spec.filename), name
        assert spec.sha256 is None or re.fullmatch("[0-9a-f]{64}", spec.sha256), name


def test_checksum_table_in_docs_is_the_registry_s():
    """docs/models.md's checksum table lists every official file with the registry's SHA-256
    (``none`` where none is recorded) and names two sources defined below it for each value."""
    docs = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    lines = docs.splitlines()
    header = "| file | SHA-256 | sources |"
    assert header in lines, "docs/models.md has no checksum table"
    start = lines.index(header) + 2
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    table = {}
    for row in rows:
        file, sha, sources = (cell.strip() for cell in row.strip("|").split("|"))
        table[file.strip("`")] = sha.strip("`")
        labels = set(sources.replace(" ", "").split(","))
        assert sha == "none" or len(labels) >= 2, f"{file}: fewer than two sources"
        for label in labels - {"-"}:
            assert f"- **{label}**" in docs, f"{file}: source {label} is not named"
    expected = {e.checkpoint.filename: e.checkpoint.sha256 or "none" for e in MODELS.values()}
    assert table == expected


def test_unrecognised_keys_name_the_file(tmp_path):
    path = save({"backbone.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth.*no known model family"):
        load_model(path, device="cpu")


def test_missing_extra_is_named(monkeypatch):  # also where the extra is installed
    import builtins

    real_import = builtins.__import__

    def no_hq(name, *args, **kwargs):
        if name.startswith("segment_anything_hq"):
            raise ImportError("no module named segment_anything_hq")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hq)
    with pytest.raises(ImportError, match=r"samrefiner\[hq\]"):
        load_model("sam_hq_vit_b", pretrained=False, device="cpu")


def test_family_options():
    with pytest.raises(ValueError, match=r"sam_vit_b.*hq_token_only"):
        load_model("sam_vit_b", pretrained=False, device="cpu", hq_token_only=True)


@pytest.mark.extra("hq")
def test_hq_token_only_returns_the_hq_mask():
    from samrefiner.models.hq import HqSamBackend

    both = tiny_sam_hq()
    hq_only = HqSamBackend(both.sam, name="hq", hq_token_only=True)
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    emb = both.encode(image)
    prompt = {
        "point_coords": torch.tensor([[[20.0, 10.0]]]),
        "point_labels": torch.tensor([[1]]),
        "boxes": None,
        "mask_input": None,
    }
    three = both.decode(emb, **prompt)
    one = hq_only.decode(emb, **prompt)
    assert one.low_res_logits.shape[1] == 1 and three.low_res_logits.shape[1] == 3
    torch.testing.assert_close(one.iou_predictions[:, 0], three.iou_predictions.max(dim=1).values)
    # SAM's candidate + HQ minus the HQ mask alone is SAM's candidate: differs per token.
    sam_parts = three.low_res_logits - one.low_res_logits
    assert not torch.allclose(sam_parts[:, 0], sam_parts[:, 1])


# --------------------------------------------------------------------------- prompts, selection


class _Scripted(Backend):
    """Wraps the tiny SAM; returns two fixed candidates (plus a third) for every prompt."""

    name = "scripted"

    def __init__(self, prompts: frozenset[str] | None = None) -> None:
        self.inner = tiny_sam()
        if prompts is not None:
            self.prompts = prompts

    device = property(lambda self: self.inner.device)
    input_size = property(lambda self: self.inner.input_size)
    low_res_size = property(lambda self: self.inner.low_res_size)

    def frame(self, original_size):
        return self.inner.frame(original_size)

    def encode(self, image, dtype="float32"):
        return self.inner.encode(image, dtype)

    def decode(self, embedding: ImageEmbedding, **kwargs) -> Decoded:
        b = len(next(v for v in kwargs.values() if isinstance(v, torch.Tensor)))
        h, w = self.low_res_size
        logits = torch.full((b, 3, h, w), -20.0)
        logits[:, 0, : h // 2, : w // 2] = 0.5  # predicted best, but barely positive: unstable
        logits[:, 1, h // 2 :, w // 2 :] = 20.0  # confident: stable
        iou = torch.tensor([[0.9, 0.5, 0.1]]).repeat(b, 1)
        return Decoded(low_res_logits=logits, iou_predictions=iou)


def test_selection_rule_picks_iou_or_stability():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), dtype=bool)
    mask[10:20, 10:20] = True
    model = _Scripted()
    by_iou = Refiner(model, RefineConfig(iterations=1)).refine(image, mask)
    by_stability = Refiner(model, RefineConfig(iterations=1, selection="stability")).refine(
        image, mask
    )
    assert by_iou.masks[0, :8, :8].all() and not by_iou.masks[0, 24:, 24:].any()
    assert by_stability.masks[0, 24:, 24:].all() and not by_stability.masks[0, :8, :8].any()
    assert by_iou.scores[0] == pytest.approx(0.9)
    assert by_stability.scores[0] == pytest.approx(0.5)  # the kept candidate's predicted IoU


def test_unsupported_prompt_is_an_error_naming_model_and_prompt():
    model = _Scripted(prompts=frozenset({"points", "box"}))
    with pytest.raises(ValueError, match="'scripted' does not accept mask prompts"):
        Refiner(model, RefineConfig())
    Refiner(model, RefineConfig(use_mask=False))  # fine without it


def test_selection_is_validated():
    with pytest.raises(ValueError, match="selection must be one of"):
        RefineConfig(selection="area")


# --------------------------------------------------------------------------- Hugging Face

HF_KINDS = ("sam", "sam2", "sam3_tracker")


def save_hf(kind: str, folder: Path) -> Path:
    build_tiny_hf_model(kind, seed=3).save_pretrained(folder)
    tiny_hf_image_processor(kind).save_pretrained(folder)
    return folder


@pytest.mark.extra("hf")
@pytest.mark.parametrize("kind", HF_KINDS)
def test_hf_model_loads_from_a_save_pretrained_folder(kind, tmp_path):
    folder = save_hf(kind, tmp_path / kind)
    backend = load_model(folder, device="cpu")
    reference = build_tiny_hf_model(kind, seed=3)
    for key, value in reference.state_dict().items():
        assert torch.equal(backend.module.state_dict()[key], value), key
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    mask = np.zeros((30, 50), dtype=bool)
    mask[5:20, 10:30] = True
    result = Refiner(backend, RefineConfig(iterations=1)).refine(image, mask)
    assert result.masks.shape == (1, 30, 50)


@pytest.mark.extra("hf")
def test_hf_names_load_offline_from_the_cache(tmp_path):
    """``hf:ORG/NAME`` resolves in a fresh process with HF_HOME set and HF_HUB_OFFLINE=1."""
    home = tmp_path / "hf_home"
    revision = "0" * 40
    for kind in HF_KINDS:
        repo = home / "hub" / f"models--samrefiner-test--tiny-{kind.replace('_', '-')}"
        save_hf(kind, repo / "snapshots" / revision)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)
    script = textwrap.dedent(
        """
        import json, sys
        from samrefiner.models import load_model
        out = {}
        for kind in ("sam", "sam2", "sam3-tracker"):
            backend = load_model(f"hf:samrefiner-test/tiny-{kind}", device="cpu")
            out[kind] = [type(backend.module).__name__, backend.name]
        try:
            load_model("hf:samrefiner-test/absent", device="cpu")
        except ValueError as exc:
            out["error"] = str(exc)
        print(json.dumps(out))
        """
    )
    env = {
        **os.environ,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
    }
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["sam"] == ["SamModel", "hf:samrefiner-test/tiny-sam"]
    assert out["sam2"][0] == "Sam2Model" and out["sam3-tracker"][0] == "Sam3TrackerModel"
    assert "samrefiner-test/absent" in out["error"] and str(home / "hub") in out["error"]


# --------------------------------------------------------------------------- names and docs


def test_catalog_lists_every_registered_name_in_order():
    from samrefiner.models.catalog import OFFICIAL_MODELS

    assert list(OFFICIAL_MODELS) == list(MODELS)
    for name, family in OFFICIAL_MODELS.items():
        assert MODELS[name].family == family, name


def test_every_name_is_in_model_help_readme_and_docs():
    from samrefiner.cli import build_parser

    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    docs = (root / "docs" / "models.md").read_text()
    refine = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices.values()
        if a.prog.endswith("refine")
    )
    help_text = " ".join(refine.format_help().split())
    for name, entry in MODELS.items():
        assert name in help_text, name
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}` |")), "")
        assert entry.checkpoint.filename in row, f"README checkpoint table lacks {name}"
        assert f"`{name}`" in docs and entry.checkpoint.filename in docs, name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("sam_hq_vit_tiny", marks=pytest.mark.extra("hq")),
        pytest.param("mobile_sam", marks=pytest.mark.extra("mobilesam")),
        pytest.param("sam2.1_hiera_tiny", marks=pytest.mark.extra("sam2")),
        pytest.param("sam2.1_hiera_small", marks=pytest.mark.extra("sam2")),
    ],
)
def test_official_builders_make_the_architecture_their_name_says(name):
    """The smaller official architectures, built for real: recognised as themselves."""
    state = MODELS[name].build().state_dict()
    assert registry._guess_architecture(state, "x.pth") == name


@pytest.mark.extra("hq")
def test_hq_token_only_option_reaches_the_backend():
    backend = load_model("sam_hq_vit_tiny", pretrained=False, device="cpu", hq_token_only=True)
    assert type(backend).__name__ == "HqSamBackend" and backend.hq_token_only


def test_bench_backends_prints_one_row_per_model_and_dtype():
    script = Path(__file__).parents[1] / "benchmarks" / "bench_backends.py"
    args = ["--quick", "--models", "samrefiner.testing:tiny_sam", "--dtype", "float32", "bfloat16"]
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("samrefiner")]
    assert [row[1] for row in rows] == ["float32", "bfloat16"]
    for row in rows:
        assert row[2].endswith("s") and float(row[2][:-1]) > 0  # encoder seconds
        assert row[-1].endswith("MB")
