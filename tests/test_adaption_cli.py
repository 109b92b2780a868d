"""``samrefiner adapt`` over every dataset format, and ``--adapter`` on the model commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samrefiner.cli import main
from samrefiner.io.coco import encode_rle
from samrefiner.testing import build_tiny_sam

# Adaption needs the [adapt] extra (peft, safetensors); the base install skips these tests.
pytestmark = pytest.mark.extra("adapt")

MODEL = ["--model", "samrefiner.testing:tiny_sam", "--device", "cpu"]
QUIET = "--no-progress"  # refine has no progress bar
SIZE = (48, 64)


def objects(k: int) -> np.ndarray:
    """Two ground-truth objects of image ``k`` (``2 x H x W`` bool)."""
    out = np.zeros((2, *SIZE), dtype=bool)
    out[0, 4 + k : 24 + k, 6:30] = True
    out[1, 20:44, 34 + k : 58] = True
    return out


def coarse(k: int) -> np.ndarray:
    return np.roll(objects(k), 3, axis=2)


def write_images(root: Path, count: int) -> Path:
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(count):
        pixels = rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{k}.png")
    return folder


def write_masks(folder: Path, count: int, make) -> None:
    folder.mkdir()
    for k in range(count):
        for j, mask in enumerate(make(k)):
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"im{k}-{j}.png")


def write_labels(folder: Path, count: int, make) -> None:
    folder.mkdir()
    for k in range(count):
        labels = np.zeros(SIZE, dtype=np.uint8)
        for j, mask in enumerate(make(k)):
            labels[mask] = j + 1
        Image.fromarray(labels, mode="L").save(folder / f"im{k}.png")


def write_coco(path: Path, count: int, make) -> None:
    images = [
        {"id": k, "file_name": f"im{k}.png", "height": SIZE[0], "width": SIZE[1]}
        for k in range(count)
    ]
    annotations = [
        {"id": 10 * k + j, "image_id": k, "category_id": 1, "segmentation": encode_rle(m)}
        for k in range(count)
        for j, m in enumerate(make(k))
    ]
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "x"}]}
    path.write_text(json.dumps(data))


def dataset_args(fmt: str, root: Path, count: int = 4) -> list[str]:
    images = write_images(root, count)
    if fmt == "coco":
        write_coco(root / "coarse.json", count, coarse)
        write_coco(root / "gt.json", count, objects)
        return [
            "coco",
            str(root / "coarse.json"),
            "--images",
            str(images),
            "--gt",
            str(root / "gt.json"),
        ]
    if fmt == "masks":
        write_masks(root / "coarse", count, coarse)
        write_masks(root / "gt", count, objects)
        return [
            "masks",
            "--images",
            str(images),
            "--masks",
            str(root / "coarse"),
            "--gt",
            str(root / "gt"),
        ]
    write_labels(root / "coarse", count, coarse)
    write_labels(root / "gt", count, objects)
    return [
        fmt,
        "--images",
        str(images),
        "--labels",
        str(root / "coarse"),
        "--gt",
        str(root / "gt"),
    ]


@pytest.mark.parametrize("fmt", ["coco", "instances", "semantic", "masks"])
def test_adapt_reads_every_format_and_reports(fmt: str, tmp_path: Path, capsys) -> None:
    args = dataset_args(fmt, tmp_path)
    out = tmp_path / "adapter"
    cache = ["--embedding-cache", str(tmp_path / "cache")]
    run = [
        "adapt",
        *args,
        "-o",
        str(out),
        *MODEL,
        *cache,
        "--held-out",
        "0.25",
        "--iterations",
        "1",
    ]
    assert main([*run, "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["train"]["images"] == 3 and report["held_out"]["images"] == 1
    assert report["train"]["objects"] == 6 and report["train"]["gt_objects"] == 6
    assert report["encoded_images"] == 4
    printed = capsys.readouterr().out
    assert "top-1 agreement" in printed and "mean refined IoU vs GT" in printed
    assert json.loads((out / "adapter.json").read_text())["base_model"] == "tiny_sam"


def test_adapt_reuses_the_cache_and_refuses_an_existing_adapter(tmp_path: Path, capsys) -> None:
    args = dataset_args("instances", tmp_path, count=2)
    cache = ["--embedding-cache", str(tmp_path / "cache")]
    run = ["adapt", *args, *MODEL, QUIET, *cache, "--held-out", "0", "--iterations", "1"]
    assert main([*run, "-o", str(tmp_path / "a")]) == 0
    # A second run over the same images encodes nothing: the cache has them all.
    assert main([*run, "-o", str(tmp_path / "b"), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["encoded_images"] == 0
    # The output now holds an adapter: refused, nothing overwritten.
    before = (tmp_path / "a" / "adapter.safetensors").read_bytes()
    assert main([*run, "-o", str(tmp_path / "a")]) == 2
    assert "already holds an adapter" in capsys.readouterr().err
    assert (tmp_path / "a" / "adapter.safetensors").read_bytes() == before


def test_adapter_option_on_refine_and_dataset_commands(tmp_path: Path, capsys) -> None:
    args = dataset_args("masks", tmp_path)
    adapter = tmp_path / "adapter"
    cache = ["--embedding-cache", str(tmp_path / "cache")]
    assert main(["adapt", *args, "-o", str(adapter), *MODEL, QUIET, *cache, "--epochs", "2"]) == 0
    image, mask = tmp_path / "images" / "im0.png", tmp_path / "coarse" / "im0-0.png"
    with_adapter = [*MODEL, "--adapter", str(adapter), "--iterations", "1"]
    assert main(["refine", str(image), str(mask), "-o", str(tmp_path / "r"), *with_adapter]) == 0
    assert (tmp_path / "r" / "im0-0.png").is_file()
    masks = ["masks", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "coarse")]
    cached = sorted((tmp_path / "cache").iterdir())
    assert main([*masks, "-o", str(tmp_path / "m"), *with_adapter, *cache, QUIET]) == 0
    # The dataset run found every image's embedding where adapt left it: nothing new.
    assert sorted((tmp_path / "cache").iterdir()) == cached
    assert (tmp_path / "m" / "im1-1.png").is_file()


def test_adapter_of_another_model_is_a_cli_error(tmp_path: Path, capsys) -> None:
    args = dataset_args("masks", tmp_path, count=2)
    adapter = tmp_path / "adapter"
    cache = ["--embedding-cache", str(tmp_path / "cache")]
    assert main(["adapt", *args, "-o", str(adapter), *MODEL, QUIET, *cache, "--held-out", "0"]) == 0
    other = tmp_path / "other.pth"
    torch.save(build_tiny_sam(seed=1).state_dict(), other)
    image, mask = tmp_path / "images" / "im0.png", tmp_path / "coarse" / "im0-0.png"
    run = ["refine", str(image), str(mask), "-o", str(tmp_path / "r"), *MODEL]
    code = main([*run, "--checkpoint", str(other), "--adapter", str(adapter)])
    assert code == 2
    err = capsys.readouterr().err
    assert "adapter was trained on model 'tiny_sam'" in err and "but the model is" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_adapt_killed_with_sigkill_resumes_to_the_same_adapter(tmp_path: Path) -> None:
    args = dataset_args("masks", tmp_path, count=3)
    cache = ["--embedding-cache", str(tmp_path / "cache")]
    run = ["adapt", *args, *MODEL, QUIET, *cache, "--held-out", "0", "--epochs", "150"]
    run += ["--accumulate", "2", "--milestones", "100", "300"]
    assert main([*run, "-o", str(tmp_path / "whole")]) == 0

    command = [sys.executable, "-m", "samrefiner.cli", *run, "-o", str(tmp_path / "cut")]
    proc = subprocess.Popen(command, env=os.environ.copy())
    checkpoint = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "adapter.json").exists()
    assert main([*run, "-o", str(tmp_path / "cut"), "--resume"]) == 0
    whole = (tmp_path / "whole" / "adapter.safetensors").read_bytes()
    assert (tmp_path / "cut" / "adapter.safetensors").read_bytes() == whole


def test_the_adapt_parser_loads_no_torch() -> None:
    code = (
        "import sys; from samrefiner.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
