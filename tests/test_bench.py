"""The benchmark harness: methods, GrabCut baseline, embedding reuse, CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_measure import disk, make_dataset
from samrefiner.cli import main
from samrefiner.config import RefineConfig
from samrefiner.io.masks import mask_iou
from samrefiner.measure.baselines import grabcut_refine
from samrefiner.measure.configs import BUILTIN_CONFIGS, plan_methods
from samrefiner.measure.dataset import find_items
from samrefiner.measure.harness import run_bench
from samrefiner.measure.perturb import apply

TINY = ["--model", "samrefiner.testing:tiny_sam", "--random-weights"]


def test_plan_methods_resolves_and_deduplicates():
    plan = plan_methods(RefineConfig(), ["box", "all", "iter5", "no-elastic"], ["grabcut"])
    names = [m.name for m in plan.methods]
    assert names == ["grabcut", "box", "all", "iter5", "no-elastic"]
    by_name = {m.name: m for m in plan.methods}
    assert by_name["grabcut"].is_baseline and by_name["box"].config.use_mask is False
    # With the reference defaults (5 iterations, margin 0) these three are one config.
    assert by_name["iter5"].same_as == "all" and by_name["no-elastic"].same_as == "all"
    assert [m.name for m in plan.distinct_configs()] == ["box", "all"]
    assert by_name["box"].to_dict()["config"]["use_points"] is False
    assert plan_methods(RefineConfig(), ["elastic"], []).methods[0].config.margin == 0.1
    with pytest.raises(ValueError, match="unknown configurations"):
        plan_methods(RefineConfig(), ["boxx"], [])
    with pytest.raises(ValueError, match="unknown baselines"):
        plan_methods(RefineConfig(), [], ["crf"])
    with pytest.raises(ValueError, match="nothing to benchmark"):
        plan_methods(RefineConfig(), [], [])
    assert set(BUILTIN_CONFIGS) >= {"box", "point", "box+point", "all", "iter1", "iter5"}


def test_grabcut_improves_coarse_masks_of_a_clear_object():
    rng = np.random.default_rng(0)
    shape = (120, 160)
    gt = disk(shape, 60, 80, 30)
    image = (rng.random((*shape, 3)) * 40 + 20).astype(np.uint8)
    image[gt] = (230, 200, 40)
    for coarse in (
        disk(shape, 61, 82, 35),  # too big and shifted: IoU 0.73
        apply(gt, [("boundary_noise", 1.0)], np.random.default_rng(1)),  # IoU 0.65
    ):
        refined = grabcut_refine(image, coarse)
        assert mask_iou(refined, gt) > mask_iou(coarse, gt) + 0.2
        assert mask_iou(refined, gt) > 0.9
    empty = np.zeros(shape, bool)
    np.testing.assert_array_equal(grabcut_refine(image, empty), empty)
    with pytest.raises(ValueError, match="H x W x 3"):
        grabcut_refine(image[..., 0], coarse)


def test_run_bench_encodes_each_image_once(tmp_path, tiny_backend, monkeypatch):
    items = find_items(make_dataset(tmp_path / "data"))
    calls = []
    original = tiny_backend.encode

    def counting(image, dtype="float32"):
        calls.append(image.shape)
        return original(image, dtype)

    monkeypatch.setattr(tiny_backend, "encode", counting)
    base = RefineConfig(iterations=1)
    plan = plan_methods(base, ["box", "point", "all"], ["coarse"])
    result = run_bench(items, plan, tiny_backend, warmup=False).to_json()
    assert len(calls) == len(items)  # one embedding per image, shared by 3 configurations
    assert result["counts"] == {"images": 2, "objects": 4}
    for name in ("box", "point", "all"):
        cost = result["summary"][name]["cost"]
        assert cost["encoder_s_per_image"] > 0 and cost["decoder_s_per_image"] > 0
        assert cost["masks_per_s"] > 0
        recs = result["objects"][name]
        assert len(recs) == 4 and all(r["status"] in ("refined", "collapsed") for r in recs)
    # The coarse baseline scores exactly the coarse masks recorded per image.
    coarse = [o["coarse_scores"]["iou"] for img in result["images"] for o in img["objects"]]
    assert [r["iou"] for r in result["objects"]["coarse"]] == coarse
    assert result["summary"]["coarse"]["cost"]["baseline_s_per_image"] == 0.0
    json.dumps(result)  # JSON-ready


def test_bench_with_given_coarse_masks_equals_synthesis(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    assert (
        main(
            [
                "make-coarse",
                str(data / "masks"),
                "-o",
                str(tmp_path / "coarse"),
                "--seed",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    outs = {}
    for name, extra in (("synth", []), ("given", ["--coarse", str(tmp_path / "coarse")])):
        argv = [
            "bench",
            str(data),
            "-o",
            str(tmp_path / name),
            "--configs",
            "none",
            "--baselines",
            "coarse",
            "--seed",
            "4",
            "--no-progress",
            *extra,
        ]
        assert main(argv) == 0
        outs[name] = json.loads((tmp_path / name / "results.json").read_text())
    capsys.readouterr()
    assert outs["synth"]["images"] == outs["given"]["images"]
    assert outs["synth"]["model"] is None  # no configuration: no model loaded
    assert outs["given"]["coarse_source"].endswith("coarse")


def test_bench_cli_end_to_end(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    out = tmp_path / "run"
    argv = [
        "bench",
        str(data),
        "-o",
        str(out),
        *TINY,
        "--iterations",
        "1",
        "--configs",
        "box,all,iter1",
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert printed.startswith(md.rstrip("\n")[:40])
    assert [m["name"] for m in result["methods"]] == ["coarse", "grabcut", "box", "all", "iter1"]
    assert {m["name"]: m["same_as"] for m in result["methods"]}["iter1"] == "all"
    assert result["random_weights"] is True and result["model"] == "tiny_sam"
    assert result["peak_rss_mb"] > 10
    assert result["summary"]["grabcut"]["cost"]["baseline_s_per_image"] > 0
    assert "decoder_s_per_image" not in result["summary"]["grabcut"]["cost"]
    for row in ("| coarse ", "| grabcut ", "| box ", "| all ", "| iter1 (= all)"):
        assert row in md
    assert "random weights" in md and "small mIoU (n)" in md
    # Every ground-truth object is scored once per method; ignore pixels are not objects.
    assert all(len(v) == 4 for v in result["objects"].values())
    assert {o["object"] for o in result["objects"]["box"]} == {1, 2}


def test_bench_cli_errors(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    assert main(["bench", str(data), "-o", str(tmp_path / "o"), "--configs", "nope"]) == 2
    assert "unknown configurations" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    assert "missing: dataset folder not found" in capsys.readouterr().err
    argv = ["bench", str(data), "-o", str(tmp_path / "o"), "--configs", "none", "--include", "x*"]
    assert main(argv) == 2
    assert "no image key matches" in capsys.readouterr().err
    argv = [
        "bench",
        str(data),
        "-o",
        str(tmp_path / "o"),
        "--configs",
        "none",
        "--coarse",
        str(tmp_path / "nocoarse"),
        "--no-progress",
    ]
    assert main(argv) == 2
    assert "coarse mask folder not found" in capsys.readouterr().err


@pytest.mark.shared_data
def test_bench_on_shared_images_with_tiny_sam(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "bench",
        str(shared_data),
        "-o",
        str(out),
        *TINY,
        "--iterations",
        "1",
        "--configs",
        "box,all",
        "--include",
        "davis2017_val/*",
        "--include",
        "labelme_voc2011/2011_000003",
        "--no-progress",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    result = json.loads((out / "results.json").read_text())
    assert result["counts"]["images"] == 2
    assert result["counts"]["objects"] >= 4
    keys = [img["key"] for img in result["images"]]
    assert keys == ["davis2017_val/bmx-trees_00000", "labelme_voc2011/2011_000003"]
    for name in ("coarse", "grabcut", "box", "all"):
        q = result["summary"][name]["quality"]["all"]
        assert q["count"] == result["counts"]["objects"]
        assert 0.0 <= q["mean_iou"] <= 1.0 and 0.0 <= q["mean_mba"] <= 1.0
    coarse_iou = result["summary"]["coarse"]["quality"]["all"]["mean_iou"]
    assert 0.4 < coarse_iou < 0.95


def test_bench_boxes_gated_and_zoom_rows(tmp_path, tiny_backend, monkeypatch):
    from samrefiner.measure.harness import box_inputs
    from samrefiner.measure.results import BenchResults
    from samrefiner.measure.summary import bench_markdown

    items = find_items(make_dataset(tmp_path / "data", n_images=1))
    base = RefineConfig(iterations=1)
    plan = plan_methods(base, ["all", "gated", "boxes", "boxes-jitter", "zoom"], [])
    by_name = {m.name: m for m in plan.methods}
    assert by_name["gated"].config.gate_min_coarse_iou == 0.5
    assert by_name["zoom"].config.zoom_below == 128
    assert [by_name[n].input for n in ("all", "boxes", "boxes-jitter")] == [
        "masks",
        "boxes",
        "jittered_boxes",
    ]
    assert by_name["boxes"].same_as is None  # same config as "all", other input
    calls = []
    decode = tiny_backend.decode

    def spy(embedding, **kwargs):
        calls.append(kwargs["mask_input"] is None and kwargs["point_coords"] is None)
        return decode(embedding, **kwargs)

    monkeypatch.setattr(tiny_backend, "decode", spy)
    result = run_bench(items, plan, tiny_backend, warmup=False)
    assert any(calls)  # box-only first rounds were decoded
    gate = result.summary["gated"].gate
    assert gate is not None and gate.against == "all" and gate.total == 2
    kept = sum(r.status == "kept_coarse" for r in result.objects["gated"])
    assert gate.kept == kept
    assert result.summary["all"].gate is None
    # The tiny model's input is 256 px: objects below 128 px in its frame are zoomed.
    assert any(r.zoomed for r in result.objects["zoom"])
    # The new rows and fields survive the results file's schema.
    again = BenchResults.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result
    assert again.method("boxes-jitter").input == "jittered_boxes"
    text = bench_markdown(result)
    assert "## Quality gate" in text and "input=jittered_boxes" in text

    masks = np.zeros((2, 50, 60), bool)
    masks[0, 10:20, 5:25] = True
    masks[1, 30:31, 40:41] = True
    np.testing.assert_array_equal(
        box_inputs(masks, 0.0, np.random.default_rng(0)), [[5, 10, 24, 19], [40, 30, 40, 30]]
    )
    jittered = box_inputs(masks, 0.1, np.random.default_rng(0))
    assert (np.abs(jittered - [[5, 10, 24, 19], [40, 30, 40, 30]]) <= [2, 1, 2, 1]).all()
    assert (jittered[:, 2:] >= jittered[:, :2]).all()


def test_results_file_round_trips_through_its_schema(tmp_path, tiny_backend):
    from samrefiner.measure.results import BenchResults, SchemaError

    items = find_items(make_dataset(tmp_path / "data"))
    plan = plan_methods(RefineConfig(iterations=1), ["box"], ["coarse"])
    results = run_bench(items, plan, tiny_backend, warmup=False, info={"model": "tiny"})
    data = json.loads(json.dumps(results.to_json()))
    again = BenchResults.from_json(data)
    assert again == results and again.to_json() == data
    assert data["kind"] == "bench" and data["version"] == 1
    with pytest.raises(SchemaError, match="newer than this samrefiner reads"):
        BenchResults.from_json({**data, "version": 99})
    with pytest.raises(SchemaError, match="not a samrefiner bench file"):
        BenchResults.from_json({**data, "kind": "other"})
    del data["summary"]
    with pytest.raises(SchemaError, match="summary"):
        BenchResults.from_json(data)
