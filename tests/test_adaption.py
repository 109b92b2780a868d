"""SAMRefiner++ IoU adaption on the tiny random model of every family that has an IoU head."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import extra_marks
from samrefiner import RefineConfig, Refiner, load_model
from samrefiner.adaption import (
    ADAPTER_FORMAT,
    AdaptConfig,
    AdapterInfo,
    AdaptionError,
    EmbeddingCache,
    ListSource,
    Sample,
    adapter_disabled,
    apply_adapter,
    model_fingerprint,
    pair_ground_truth,
    read_adapter,
    train_adapter,
)
from samrefiner.adaption.lora import head_iou, lora_layer
from samrefiner.adaption.trainer import CHECKPOINT_FILE, record_candidates, split_keys
from samrefiner.testing import TINY_BACKEND_EXTRAS, TINY_BACKENDS

# Adaption needs the [adapt] extra (peft, safetensors); the base install skips these tests.
pytestmark = pytest.mark.extra("adapt")

#: Every family; each family's cases also need its own extra (built only when it is there).
FAMILIES = [
    pytest.param(name, marks=extra_marks(TINY_BACKEND_EXTRAS[name])) for name in TINY_BACKENDS
]
#: Many epochs, a larger step, no decay: every family's tiny random model learns its
#: targets within seconds (the reference's lr is sized for one epoch of 585 objects).
FAST = AdaptConfig(accumulate=3, epochs=40, lr=0.03, milestones=(), held_out=0.0)


def make_samples(seed: int, count: int = 4, gt: bool = False) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        masks = np.zeros((3, 48, 64), dtype=bool)
        for k in range(3):
            y, x = rng.integers(2, 26), rng.integers(2, 38)
            masks[k, y : y + 18, x : x + 22] = True
        truth = [np.roll(m, 2, axis=1) for m in masks] if gt else None
        samples.append(Sample(f"im{i}", image, masks, truth))
    return samples


def build(family: str, seed: int = 0):
    return TINY_BACKENDS[family](seed=seed, device="cpu")


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def trained(family: str, tmp_path_factory: pytest.TempPathFactory):
    """``(backend carrying the adapter, TrainResult, samples, cache)``, once per family
    (tests must not change them)."""
    tmp_path = tmp_path_factory.mktemp(f"trained-{family}")
    samples = make_samples(0)
    cache = EmbeddingCache(tmp_path / "cache")
    backend = build(family)
    result = train_adapter(backend, ListSource(samples), tmp_path / "adapter", FAST, cache=cache)
    return backend, result, samples, cache


def _decode(backend, sample: Sample, cfg: RefineConfig | None = None):
    refiner = Refiner(backend, cfg or RefineConfig())
    embedding = refiner.encode(sample.image)
    prompts = refiner.first_round_prompts(sample.masks)
    return refiner.decode_prompts(embedding, prompts)


def test_loss_falls_and_agreement_rises_on_training_images(trained) -> None:
    _, result, _, _ = trained
    losses = result.losses
    assert len(losses) == 40 * 4  # 12 objects, 3 per step, 40 epochs
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])
    train = result.info.report["train"]
    assert train["objects"] == 12 and train["images"] == 4
    assert train["agreement_after"] > train["agreement_before"]


def test_adapter_round_trips_and_predicts_what_training_optimised(trained, family) -> None:
    backend, result, samples, cache = trained
    fresh = build(family)
    info = apply_adapter(fresh, result.path)
    assert info.base_model == backend.name and info.settings == FAST
    for sample in samples[:2]:
        want, got = _decode(backend, sample), _decode(fresh, sample)
        assert torch.equal(want.iou_predictions, got.iou_predictions)
        # The head run with autograd on the recorded input (what the loss saw) gives the
        # decoder's IoUs bit for bit: record_candidates checks it and raises otherwise.
        one = Sample(sample.key, sample.image, sample.masks[:1])
        embedding = cache.encode(fresh, one.image, "float32", model_fingerprint(fresh))
        [(x, columns, _)] = record_candidates(
            fresh, FAST.prompts, embedding, one.masks, list(one.masks)
        )
        decoded = _decode(fresh, one, FAST.prompts)
        assert torch.equal(head_iou(fresh, x, [columns], "float32"), decoded.iou_predictions[:1])
    # Kilobytes of LoRA weights, not a checkpoint copy.
    assert (result.path / "adapter.safetensors").stat().st_size < 100_000


def test_without_adapter_outputs_are_unchanged(trained, family) -> None:
    backend, _, samples, _ = trained
    untouched = build(family)
    for sample in samples[:2]:
        base = _decode(untouched, sample)
        with adapter_disabled(backend):
            off = _decode(backend, sample)
        assert torch.equal(base.iou_predictions, off.iou_predictions)
        assert torch.equal(base.low_res_logits, off.low_res_logits)


def test_adapter_changes_only_the_predicted_ious(trained, family) -> None:
    backend, _, samples, _ = trained
    untouched = build(family)
    changed = False
    for sample in samples:
        base, adapted = _decode(untouched, sample), _decode(backend, sample)
        # Bit-identical candidates (transformers' SAM-HQ lists them by predicted IoU, so
        # only their order may change).
        for b in range(len(sample.masks)):
            before = sorted(c.numpy().tobytes() for c in base.low_res_logits[b])
            after = sorted(c.numpy().tobytes() for c in adapted.low_res_logits[b])
            assert before == after
        changed |= not torch.equal(base.iou_predictions, adapted.iou_predictions)
    assert changed


def test_resumed_run_equals_uninterrupted_one(family, tmp_path: Path) -> None:
    samples = ListSource(make_samples(1))
    cache = EmbeddingCache(tmp_path / "cache")
    config = AdaptConfig(accumulate=2, epochs=3, milestones=(4,), held_out=0.0)
    whole = train_adapter(build(family), samples, tmp_path / "whole", config, cache=cache)

    def kill(info) -> None:
        if info.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(build(family), samples, tmp_path / "cut", config, cache=cache, on_step=kill)
    assert (tmp_path / "cut" / CHECKPOINT_FILE).is_file()
    with pytest.raises(AdaptionError, match="resume"):
        train_adapter(build(family), samples, tmp_path / "cut", config, cache=cache)
    resumed = train_adapter(
        build(family), samples, tmp_path / "cut", config, cache=cache, resume=True
    )
    assert resumed.losses == whole.losses
    _, a = read_adapter(whole.path)
    _, b = read_adapter(resumed.path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "cut" / CHECKPOINT_FILE).exists()


def test_same_seed_same_adapter_other_seed_other(family, tmp_path: Path) -> None:
    samples = ListSource(make_samples(2, count=2))
    config = AdaptConfig(accumulate=2, epochs=2, held_out=0.0)
    cache = EmbeddingCache(tmp_path / "cache")
    configs = {"a": config, "b": config, "c": dataclasses.replace(config, seed=1)}
    runs = [
        train_adapter(build(family), samples, tmp_path / name, cfg, cache=cache)
        for name, cfg in configs.items()
    ]
    weights = [read_adapter(r.path)[1]["lora_A"] for r in runs]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_mismatched_base_model_is_an_error_naming_both(trained, family) -> None:
    _, result, _, _ = trained
    other = build(family, seed=1)
    other.name = "other_model"
    with pytest.raises(AdaptionError, match=r"trained on model '.+'.*the model is 'other_model'"):
        apply_adapter(other, result.path)
    assert lora_layer(other.iou_head) is None  # nothing was attached


def test_applying_twice_is_an_error(trained) -> None:
    backend, result, _, _ = trained
    with pytest.raises(AdaptionError, match="already carries"):
        apply_adapter(backend, result.path)


def test_load_model_applies_an_adapter(tmp_path: Path) -> None:
    backend = load_model("samrefiner.testing:tiny_sam", device="cpu")
    result = train_adapter(
        backend,
        ListSource(make_samples(3, count=2)),
        tmp_path / "ad",
        AdaptConfig(epochs=1, held_out=0.0),
        cache=EmbeddingCache(tmp_path / "cache"),
    )
    loaded = load_model("samrefiner.testing:tiny_sam", device="cpu", adapter=result.path)
    sample = make_samples(3, count=1)[0]
    assert torch.equal(
        _decode(loaded, sample).iou_predictions, _decode(backend, sample).iou_predictions
    )


def test_ground_truth_report_and_held_out_split(tmp_path: Path) -> None:
    samples = ListSource(make_samples(4, count=5, gt=True))
    config = AdaptConfig(accumulate=3, epochs=2, held_out=0.2)
    result = train_adapter(
        build("sam"),
        samples,
        tmp_path / "ad",
        config,
        cache=EmbeddingCache(tmp_path / "cache"),
        eval_config=RefineConfig(iterations=1),
    )
    report = result.info.report
    assert report["held_out"]["images"] == 1 and report["train"]["images"] == 4
    for split in ("train", "held_out"):
        for key in ("agreement", "gt_top1", "refined_iou"):
            assert 0.0 <= report[split][f"{key}_before"] <= 1.0
            assert 0.0 <= report[split][f"{key}_after"] <= 1.0
    written = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    assert written["report"] == report


def test_output_holding_an_adapter_is_refused(trained, family) -> None:
    _, result, samples, cache = trained
    with pytest.raises(AdaptionError, match="already holds an adapter"):
        train_adapter(build(family), ListSource(samples), result.path, FAST, cache=cache)


def test_adapter_info_json_round_trip_and_newer_format(tmp_path: Path) -> None:
    info = AdapterInfo("sam_vit_b", "ab" * 32, AdaptConfig(rank=2, milestones=(3,)), {"x": 1})
    again = AdapterInfo.from_json(json.loads(json.dumps(info.to_json())))
    assert again == info
    data = info.to_json() | {"format": ADAPTER_FORMAT + 1}
    with pytest.raises(AdaptionError, match="newer"):
        AdapterInfo.from_json(data, "x/adapter.json")
    with pytest.raises(AdaptionError, match="not an adapter folder"):
        read_adapter(tmp_path)


def test_adapt_config_is_validated() -> None:
    with pytest.raises(ValueError, match="milestones"):
        AdaptConfig(milestones=(100, 60))
    with pytest.raises(ValueError, match="held_out"):
        AdaptConfig(held_out=1.0)
    with pytest.raises(ValueError, match="rank"):
        AdaptConfig(rank=0)
    assert AdaptConfig.from_dict(AdaptConfig().to_dict()) == AdaptConfig()


def test_split_keys_is_seeded_and_by_share() -> None:
    keys = [f"k{i}" for i in range(20)]
    held = split_keys(keys, 0.1, 0)
    assert len(held) == 2 and held == split_keys(keys, 0.1, 0)
    assert split_keys(keys, 0.1, 1) != held or len(held) == 0
    assert split_keys(keys, 0.0, 0) == set() and split_keys(["a"], 0.5, 0) == set()


def test_pair_ground_truth_by_id_then_by_overlap() -> None:
    a = np.zeros((2, 8, 8), dtype=bool)
    a[0, :4], a[1, 4:] = True, True
    gt = a[::-1].copy()
    by_id = pair_ground_truth(["x", "y"], a, ["x", "y"], gt)  # ids win over overlap
    assert np.array_equal(by_id[0], a[1]) and np.array_equal(by_id[1], a[0])
    paired = pair_ground_truth(["p", "q"], a, ["y", "x"], gt)
    assert np.array_equal(paired[0], a[0]) and np.array_equal(paired[1], a[1])
    assert pair_ground_truth([], a, [], np.zeros((0, 8, 8), bool)) == [None, None]


# --------------------------------------------------------------------------- issue 17


def _adapter_folder(tmp_path: Path, rank: int = 4) -> tuple[Path, torch.nn.Module]:
    """An adapter of tiny_sam (untrained LoRA of ``rank``) and a fresh tiny_sam."""
    from samrefiner.adaption import save_adapter
    from samrefiner.adaption.lora import attach_lora

    backend = build("sam")
    attach_lora(backend, rank, 8.0, 0)
    info = AdapterInfo(backend.name, model_fingerprint(backend), AdaptConfig(rank=rank))
    return save_adapter(tmp_path / "adapter", info, backend), build("sam")


def test_adapter_description_is_checked_against_its_weights_before_allocating(
    tmp_path: Path,
) -> None:
    folder, backend = _adapter_folder(tmp_path)
    data = json.loads((folder / "adapter.json").read_text())
    data["settings"]["rank"] = 10**9  # would allocate 10^9 x in floats
    (folder / "adapter.json").write_text(json.dumps(data))
    with pytest.raises(AdaptionError, match=r"adapter\.safetensors: .*rank 1000000000"):
        read_adapter(folder)
    with pytest.raises(AdaptionError, match="rank 1000000000"):
        apply_adapter(backend, folder)
    assert lora_layer(backend.iou_head) is None  # nothing was attached


def test_adapter_of_another_layer_size_is_refused_before_attaching(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder, backend = _adapter_folder(tmp_path)
    save_file(
        {"lora_A": torch.zeros(4, 7), "lora_B": torch.zeros(5, 4)},
        str(folder / "adapter.safetensors"),
    )
    with pytest.raises(AdaptionError, match=r"adapter\.safetensors: a LoRA of a 7 -> 5 layer"):
        apply_adapter(backend, folder)
    assert lora_layer(backend.iou_head) is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_adapter_weights_are_refused_on_read_and_on_write(
    bad: float, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from samrefiner.adaption import save_adapter
    from samrefiner.adaption.lora import lora_parameters

    folder, backend = _adapter_folder(tmp_path)
    tensors = load_file(str(folder / "adapter.safetensors"))
    tensors["lora_A"][1, 2] = bad
    save_file(tensors, str(folder / "adapter.safetensors"))
    with pytest.raises(AdaptionError, match=r"adapter\.safetensors: lora_A holds NaN"):
        apply_adapter(backend, folder)
    # save_adapter refuses to write such weights (nothing is created).
    carrier = build("sam")
    from samrefiner.adaption.lora import attach_lora

    layer = attach_lora(carrier, 4, 8.0, 0)
    with torch.no_grad():
        lora_parameters(layer)[1][0, 0] = bad
    info = AdapterInfo(carrier.name, model_fingerprint(carrier), AdaptConfig())
    with pytest.raises(AdaptionError, match="lora_B holds NaN or infinite weights"):
        save_adapter(tmp_path / "never", info, carrier)
    assert not (tmp_path / "never").exists()


def test_diverged_training_writes_nothing_and_names_the_step(tmp_path: Path) -> None:
    from samrefiner.adaption import TrainingDiverged

    samples = ListSource(make_samples(3))
    cache = EmbeddingCache(tmp_path / "cache")
    config = AdaptConfig(accumulate=2, epochs=3, lr=1e30, milestones=(), held_out=0.0)
    out = tmp_path / "adapter"
    with pytest.raises(TrainingDiverged, match=r"adapter: training diverged at epoch \d, step"):
        train_adapter(build("sam"), samples, out, config, cache=cache)
    assert not out.exists()  # the run created it: removed, checkpoint included
    # In a folder that already existed: the folder stays, the checkpoint does not.
    out.mkdir()
    with pytest.raises(TrainingDiverged) as caught:
        train_adapter(build("sam"), samples, out, config, cache=cache)
    assert caught.value.step >= 1 and caught.value.epoch >= 1
    assert out.is_dir() and not any(out.iterdir())
    # The same folder takes a run with a sane learning rate (no stale checkpoint in the way).
    sane = dataclasses.replace(config, lr=1e-2)
    result = train_adapter(build("sam"), samples, out, sane, cache=cache)
    _, tensors = read_adapter(result.path)
    assert all(bool(torch.isfinite(t).all()) for t in tensors.values())


def _resume_checkpoint(tmp_path: Path, content: bytes) -> Path:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / CHECKPOINT_FILE).write_bytes(content)
    return out


class _NotATensor:
    """Pickled into a checkpoint: loading it would run code."""


def _torch_bytes(value) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(value, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: _torch_bytes({"step": _NotATensor()}), "not a plain tensor checkpoint"),
        (lambda: b"PK\x03\x04trunc", "not a readable PyTorch checkpoint"),
        (lambda: _torch_bytes([torch.zeros(2)]), "not a training checkpoint"),
        (
            lambda: _torch_bytes({"step": 1, "lora": {}, "losses": []}),
            "saved by a run with other settings",
        ),
    ],
    ids=["pickled_object", "truncated", "not_a_dict", "other_run"],
)
def test_a_bad_resume_checkpoint_is_one_error_naming_it(content, message, tmp_path) -> None:
    out = _resume_checkpoint(tmp_path, content())
    samples = ListSource(make_samples(4, count=2))
    cache = EmbeddingCache(tmp_path / "cache")
    config = AdaptConfig(held_out=0.0)
    with pytest.raises(AdaptionError, match=rf"checkpoint\.pt: {message}") as caught:
        train_adapter(build("sam"), samples, out, config, cache=cache, resume=True)
    assert "\n" not in str(caught.value)
    assert not (out / "adapter.json").exists()
