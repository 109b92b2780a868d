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
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import closed_port, extra_marks
from samrefiner import RefineConfig, Refiner
from samrefiner.models import load_model, registry
from samrefiner.models.base import Backend, Decoded, ImageEmbedding
from samrefiner.models.download import CheckpointSpec
from samrefiner.models.registry import MODELS, ModelEntry, recognise_family
from samrefiner.testing import (
    TINY_BACKEND_EXTRAS,
    TINY_BACKENDS,
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
    monkeypatch.setitem(sys.modules, "segment_anything_hq", None)  # import fails
    with pytest.raises(ImportError, match=r"'segment_anything_hq'.*samrefiner\[hq\]"):
        load_model("sam_hq_vit_b", pretrained=False, device="cpu")


def test_family_options():
    with pytest.raises(ValueError, match=r"sam_vit_b.*hq_token_only"):
        load_model("sam_vit_b", pretrained=False, device="cpu", hq_token_only=True)


def assert_hq_token_only(both: Backend, hq_only: Backend) -> None:
    """``hq_only`` (hq_token_only=True) returns one mask, HQ's alone, where ``both`` (the
    same weights) returns three: SAM's candidates plus HQ's, with the same best IoU."""
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    emb = both.encode(image)
    prompt = {  # one positive point at (x=20, y=10), one object
        "point_coords": torch.tensor([[[20.0, 10.0]]]),
        "point_labels": torch.tensor([[1]]),
        "boxes": None,
        "mask_input": None,
    }
    three = both.decode(emb, **prompt)
    one = hq_only.decode(emb, **prompt)
    assert one.low_res_logits.shape[1] == 1 and three.low_res_logits.shape[1] == 3
    assert one.iou_predictions.shape == (1, 1)
    torch.testing.assert_close(one.iou_predictions[:, 0], three.iou_predictions.max(dim=1).values)
    # SAM's candidate + HQ minus the HQ mask alone is SAM's candidate: differs per token.
    sam_parts = three.low_res_logits - one.low_res_logits
    assert not torch.allclose(sam_parts[:, 0], sam_parts[:, 1])


@pytest.mark.extra("hq")
def test_hq_token_only_returns_the_hq_mask():
    from samrefiner.models.hq import HqSamBackend

    both = tiny_sam_hq()
    hq_only = HqSamBackend(both.sam, name="hq", hq_token_only=True)
    assert_hq_token_only(both, hq_only)


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


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "hub_unreachable"])
@pytest.mark.extra("hf")
def test_hf_names_load_from_the_cache_without_touching_the_hub(tmp_path, offline):
    """``hf:ORG/NAME`` resolves in a fresh process from HF_HOME's cache, with
    HF_HUB_OFFLINE=1 or with a Hub that refuses connections: quickly and without a single
    retry; an absent model is an error at once, naming the repository and the cache."""
    home = tmp_path / "hf_home"
    revision = "0" * 40
    for kind in HF_KINDS:
        repo = home / "hub" / f"models--samrefiner-test--tiny-{kind.replace('_', '-')}"
        save_hf(kind, repo / "snapshots" / revision)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)
    script = textwrap.dedent(
        """
        import json, time
        import transformers
        from samrefiner.models import load_model
        out = {}
        for kind in ("sam", "sam2", "sam3-tracker"):
            start = time.perf_counter()
            backend = load_model(f"hf:samrefiner-test/tiny-{kind}", device="cpu")
            out[kind] = [type(backend.module).__name__, backend.name, time.perf_counter() - start]
        start = time.perf_counter()
        try:
            load_model("hf:samrefiner-test/absent", device="cpu")
        except ValueError as exc:
            out["error"] = [str(exc), time.perf_counter() - start]
        print(json.dumps(out))
        """
    )
    env = {
        **os.environ,
        "HF_HOME": str(home),
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
    }
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Retrying" not in done.stderr and "Connection refused" not in done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["sam"][:2] == ["SamModel", "hf:samrefiner-test/tiny-sam"]
    assert out["sam2"][0] == "Sam2Model" and out["sam3-tracker"][0] == "Sam3TrackerModel"
    # Each retry cycle of huggingface_hub sleeps 23 s (1 + 2 + 4 + 8 + 8) per file.
    assert max(out[kind][2] for kind in ("sam", "sam2", "sam3-tracker")) < 15, out
    error, seconds = out["error"]
    assert "samrefiner-test/absent" in error and str(home / "hub") in error
    assert ("HF_HUB_OFFLINE" if offline else "could not be reached") in error
    assert seconds < 5, out


@pytest.mark.extra("hf")
def test_hf_model_absent_from_the_cache_is_fetched_once(tmp_path, monkeypatch):
    """One Hub request with a short timeout, then the top-level configs and one weights
    format (safetensors before pickles)."""
    import huggingface_hub

    from samrefiner.models import hf as hf_module

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # Should anything reach past the stand-ins below, it finds no Hub.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    files = ["config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin"]
    files += ["onnx/model.onnx", "onnx/config.json", "README.md"]
    calls = []

    def model_info(self, repo, timeout=None):
        calls.append(("info", repo, timeout))
        return huggingface_hub.hf_api.ModelInfo(id=repo, siblings=[{"rfilename": f} for f in files])

    def snapshot_download(repo, allow_patterns=None, etag_timeout=None):
        calls.append(("download", repo, sorted(allow_patterns), etag_timeout))
        return str(save_hf("sam", tmp_path / "fetched"))

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    backend = load_model("hf:org/fetched", device="cpu")
    assert type(backend.module).__name__ == "SamModel"
    timeout = hf_module.HUB_TIMEOUT_S
    assert calls == [
        ("info", "org/fetched", timeout),
        ("download", "org/fetched", sorted(files[:3]), timeout),
    ]


def drop_tensor(folder: Path, key: str, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Rewrite the folder's weights without ``key`` and with ``extra`` tensors."""
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    state = {k: v for k, v in load_file(weights).items() if k != key}
    save_file({**state, **(extra or {})}, weights, metadata={"format": "pt"})
    return folder


PROJ_OUT = "mask_decoder.iou_prediction_head.proj_out.weight"


@pytest.mark.extra("hf")
def test_hf_folder_loads_strictly(tmp_path, capsys):
    short = drop_tensor(save_hf("sam", tmp_path / "short"), PROJ_OUT)
    with pytest.raises(ValueError, match=rf"short: .*1 missing keys: {PROJ_OUT}$"):
        load_model(short, device="cpu")
    extra = {"mask_decoder.unexpected.weight": torch.zeros(2)}
    longer = drop_tensor(save_hf("sam", tmp_path / "longer"), "", extra)
    with pytest.raises(ValueError, match=r"longer: .*1 unexpected keys: mask_decoder\.unexpected"):
        load_model(longer, device="cpu")
    reshaped = drop_tensor(
        save_hf("sam", tmp_path / "reshaped"), PROJ_OUT, {PROJ_OUT: torch.zeros(2)}
    )
    with pytest.raises(
        ValueError, match=rf"reshaped: .*tensors of another shape: {PROJ_OUT} \(2,\)"
    ):
        load_model(reshaped, device="cpu")
    assert "LOAD REPORT" not in capsys.readouterr().err  # the error says it, once


@pytest.mark.extra("hf")
def test_hf_pickled_weights_are_refused_naming_the_file(tmp_path):
    folder = save_hf("sam", tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    torch.save({"weights": _Pickled()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: not a plain tensor checkpoint"):
        load_model(folder, device="cpu")
    # Plain tensors in a pickle load as before.
    torch.save(build_tiny_hf_model("sam", seed=3).state_dict(), folder / "pytorch_model.bin")
    assert type(load_model(folder, device="cpu").module).__name__ == "SamModel"


class _Pickled:
    """An object in a weights file: unpickling it could run code."""


@pytest.mark.extra("hf")
def test_sam3_tracker_without_processor_file_normalises_as_sam3(tmp_path):
    folder = tmp_path / "sam3"
    build_tiny_hf_model("sam3_tracker", seed=3).save_pretrained(folder)  # no processor file
    backend = load_model(folder, device="cpu")
    processor = backend.image_processor
    assert type(processor).__name__ == "Sam3ImageProcessor"
    white = np.full((30, 50, 3), 255, dtype=np.uint8)
    pixels = processor(images=white, return_tensors="pt")["pixel_values"]
    assert pixels.shape[-2:] == (224, 224)  # the tiny model's input size
    torch.testing.assert_close(pixels, torch.ones_like(pixels))  # (1 - 0.5) / 0.5, not 2.25


@pytest.mark.extra("hf")
def test_hf_sam_hq_hq_token_only_returns_the_hq_mask(tmp_path):
    folder = tmp_path / "hq"
    build_tiny_hf_model("sam_hq", seed=3).save_pretrained(folder)
    both = load_model(folder, device="cpu")
    hq_only = load_model(folder, device="cpu", hq_token_only=True)
    assert not both.hq_token_only and hq_only.hq_token_only
    assert_hq_token_only(both, hq_only)
    with pytest.raises(ValueError, match=r"\(SamModel\) takes no option hq_token_only"):
        load_model(save_hf("sam", tmp_path / "sam"), device="cpu", hq_token_only=True)


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(f, marks=extra_marks(TINY_BACKEND_EXTRAS[f]))
        for f in sorted(TINY_BACKENDS)
        if f.startswith("hf_")
    ],
)
def test_read_only_images_reach_the_processor_writable(family):
    """The runner's decoded images are read-only; the image processor, which wraps them
    with torch.from_numpy, gets a writable copy (PyTorch warns once per process
    otherwise, so the array is checked rather than the warning)."""
    backend = TINY_BACKENDS[family]()
    processor, seen = backend.image_processor, []

    def spy(images, **kwargs):
        seen.append(images.flags.writeable)
        return processor(images=images, **kwargs)

    backend.image_processor = spy
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.encode(image)
    assert seen == [True] and not image.flags.writeable


def test_every_package_a_hf_family_needs_is_in_the_hf_extra():
    """EdgeTAM's backbone is timm's: 'pip install samrefiner[hf]' must bring it."""
    tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 (tomllib)")
    from samrefiner.models.hf import HF_FAMILIES

    root = Path(__file__).parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ]", req)[0] for req in extra["optional-dependencies"]["hf"]}
    needed = {package for family in HF_FAMILIES.values() for package in family.needs}
    assert needed and needed <= names, (needed, names)


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


@pytest.mark.parametrize("command", ["refine", "coco", "instances", "semantic", "masks"])
def test_hq_token_only_is_an_option_of_every_refining_command(command):
    from samrefiner.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    assert "--hq-token-only" in sub.format_help()


def test_hq_token_only_is_part_of_the_resume_fingerprint(tmp_path):
    """It changes the candidates: a resumed run must not mix the two."""
    from samrefiner.cli import build_parser
    from samrefiner.cli.dataset_run import fingerprint

    argv = ["coco", "a.json", "--images", "i", "-o", str(tmp_path / "o.json")]
    prints = [
        fingerprint(build_parser().parse_args([*argv, *extra]), {})
        for extra in ([], ["--hq-token-only"])
    ]
    assert prints[0]["model"] != prints[1]["model"]


@pytest.mark.extra("hq", "hf")
def test_hq_token_only_option_reaches_both_hq_backends(tmp_path, capsys):
    from PIL import Image

    from samrefiner.cli import build_parser, main
    from samrefiner.cli.common import load_model_from_args

    folder = tmp_path / "hf_sam_hq"
    build_tiny_hf_model("sam_hq", seed=3).save_pretrained(folder)
    Image.fromarray(np.full((40, 56, 3), 128, np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(np.pad(np.full((20, 30), 255, np.uint8), ((10, 10), (13, 13)))).save(
        tmp_path / "mask.png"
    )
    base = ["refine", str(tmp_path / "image.png"), str(tmp_path / "mask.png")]
    base += ["-o", str(tmp_path / "out"), "--device", "cpu", "--iterations", "1"]
    for model, weights in ((str(folder), []), ("sam_hq_vit_tiny", ["--random-weights"])):
        args = build_parser().parse_args([*base, "--model", model, *weights, "--hq-token-only"])
        assert load_model_from_args(args).hq_token_only, model
        args = build_parser().parse_args([*base, "--model", model, *weights])
        assert not load_model_from_args(args).hq_token_only, model
    assert main([*base, "--model", str(folder), "--hq-token-only"]) == 0
    assert (tmp_path / "out" / "mask.png").is_file()
    assert main([*base, "--model", "samrefiner.testing:tiny_sam", "--hq-token-only"]) == 2
    assert "takes no options" in capsys.readouterr().err


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
