"""Command-line options of box input, crop-zoom and the quality gate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from samrefiner.cli import build_parser, main
from samrefiner.cli.common import config_from_args
from samrefiner.config import RefineConfig

MODEL_ARGS = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--device", "cpu"]
FEATURE_ARGS = [
    "--zoom-below", "96",
    "--zoom-context", "3",
    "--max-crops", "2",
    "--gate-min-score", "0.4",
    "--gate-min-coarse-iou", "0.3",
    "--gate-max-area-ratio", "2.5",
]  # fmt: skip
FEATURE_CONFIG = RefineConfig(
    zoom_below=96,
    zoom_context=3.0,
    max_crops=2,
    gate_min_score=0.4,
    gate_min_coarse_iou=0.3,
    gate_max_area_ratio=2.5,
)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_model_command_takes_the_feature_options():
    commands = subcommands(build_parser())
    runs_model = [n for n, p in commands.items() if "--gamma" in p._option_string_actions]
    assert {"refine", "coco", "instances", "semantic", "masks", "bench"} <= set(runs_model)
    for name in runs_model:
        options = commands[name]._option_string_actions
        defaults = argparse.Namespace(**{a.dest: a.default for a in options.values()})
        assert config_from_args(defaults) == RefineConfig(), name
        given = argparse.Namespace(**vars(defaults))
        for flag, text in zip(FEATURE_ARGS[::2], FEATURE_ARGS[1::2], strict=True):
            action = options[flag]
            setattr(given, action.dest, action.type(text))
        assert config_from_args(given) == FEATURE_CONFIG, name


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_refine_boxes_and_masks(tmp_path, capsys):
    image = save(
        tmp_path / "img.png", np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    )
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 10:40] = 255
    mask_file = save(tmp_path / "m.png", mask)
    out = tmp_path / "out"
    box = ["--box", "40", "20", "70", "50"]
    gate = ["--iterations", "1", "--gate-min-coarse-iou", "0.999"]
    code = main(["refine", str(image), str(mask_file), *box, "-o", str(out), *MODEL_ARGS, *gate])
    assert code == 0, capsys.readouterr().err
    assert (out / "m.png").is_file() and (out / "img-box1.png").is_file()
    sidecar = json.loads((out / "img.samrefiner.json").read_text())
    assert sidecar["masks"][1]["input"] == "box [40.0, 20.0, 70.0, 50.0]"
    assert sidecar["config"]["gate_min_coarse_iou"] == 0.999
    assert sidecar["masks"][1]["box"] == [40.0, 20.0, 70.0, 50.0]
    for record in sidecar["masks"]:
        assert record["status"] in ("kept_coarse", "collapsed", "refined")
        assert (record["status"] == "kept_coarse") == ("gate_reason" in record)
    # The report reads the box record back (its coarse mask is the filled box).
    assert main(["report", str(out), "-o", str(tmp_path / "report")]) == 0, capsys.readouterr()
    assert (tmp_path / "report" / "index.html").is_file()


def test_refine_box_errors(tmp_path, capsys):
    image = save(tmp_path / "img.png", np.zeros((6, 6, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["refine", str(image), "-o", str(out), *MODEL_ARGS]) == 2
    assert "at least one MASK file or --box" in capsys.readouterr().err
    assert (
        main(["refine", str(image), "--box", "9", "9", "12", "12", "-o", str(out), *MODEL_ARGS])
        == 2
    )
    assert "--box: box 0" in capsys.readouterr().err and not out.exists()
