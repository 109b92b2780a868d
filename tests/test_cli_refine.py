"""``samrefiner refine`` end to end, as a user runs it: ``python -m samrefiner.cli``.

Every subprocess is a fresh interpreter (~5 CPU-seconds of imports), so one fixture
starts them all at once and each test checks the outcome of its own run. Help text and
the rarer error paths go through ``main()`` in this process (the same code, no imports).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrefiner.cli import main
from samrefiner.config import RefineConfig
from samrefiner.refiner import Refiner

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE = REPO_ROOT / "examples" / "chelsea.png"
COARSE = REPO_ROOT / "examples" / "chelsea_coarse.png"
MODEL_ARGS = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--device", "cpu"]
PASS_THROUGH = [
    "--iterations", "1",
    "--margin", "0.1",
    "--gamma", "2.5",
    "--strength", "12",
    "--max-batch", "1",
    "--no-negative-point",
    "--early-stop-iou", "0.95",
]  # fmt: skip
PASSED_CONFIG = RefineConfig(
    iterations=1,
    margin=0.1,
    gamma=2.5,
    strength=12.0,
    max_batch=1,
    negative_point=False,
    early_stop_iou=0.95,
)


@dataclass
class Run:
    args: list[str]
    outdir: Path | None = None
    before: dict[str, bytes] = field(default_factory=dict)  # files OUTDIR held beforehand
    proc: subprocess.Popen | None = None
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def refine_args(image, masks, outdir, *extra) -> list[str]:
    return ["refine", str(image), *map(str, masks), "-o", str(outdir), *MODEL_ARGS, *extra]


def build_runs(root: Path) -> dict[str, Run]:
    """Input files for every case, and the command line that exercises it."""
    small = save(root / "img" / "small.png", np.full((8, 10, 3), 90, np.uint8))
    good = np.zeros((8, 10), np.uint8)
    good[2:6, 3:8] = 255
    good_mask = save(root / "masks" / "good.png", good)
    out = root / "out"
    runs: dict[str, Run] = {}

    box = np.zeros((300, 451), np.uint8)
    box[100:200, 150:300] = 1  # a 0/1 mask, in a non-PNG format
    ok_masks = [
        COARSE,
        save(root / "ok" / "box.bmp", box),
        save(root / "ok" / "empty.png", np.zeros((300, 451), np.uint8)),
    ]
    runs["ok"] = Run(refine_args(IMAGE, ok_masks, root / "ok" / "out" / "nested", *PASS_THROUGH))

    runs["missing_image"] = Run(refine_args(root / "img" / "absent.png", [good_mask], out))
    garbage = root / "img" / "garbage.png"
    garbage.write_bytes(b"\x89PNG but not really\x00\x01\x02" * 10)
    runs["garbage_image"] = Run(refine_args(garbage, [good_mask], out))
    tall = save(root / "masks" / "tall.png", np.zeros((10, 8), np.uint8))  # H x W swapped
    runs["size_mismatch"] = Run(refine_args(small, [good_mask, tall], out))
    label_map = (np.arange(80) % 6).astype(np.uint8).reshape(8, 10)  # values 0..5
    labels = save(root / "masks" / "labels.png", label_map)
    runs["non_binary"] = Run(refine_args(small, [good_mask, labels], out))
    runs["iterations_zero"] = Run(refine_args(small, [good_mask], out, "--iterations", "0"))

    inplace_dir = root / "inplace"
    inplace = save(inplace_dir / "m.png", good)
    runs["overwrite_mask"] = Run(refine_args(small, [inplace], inplace_dir))

    for run in runs.values():
        run.outdir = Path(run.args[run.args.index("-o") + 1])
        if run.outdir.exists():
            run.before = {p.name: p.read_bytes() for p in run.outdir.iterdir()}
    return runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("cli_refine")
    cases = build_runs(root)
    env = {**os.environ, "SAMREFINER_HOME": str(root / "no_cache")}  # never the user's cache
    for run in cases.values():
        run.proc = subprocess.Popen(
            [sys.executable, "-m", "samrefiner.cli", *run.args],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        for run in cases.values():
            run.stdout, run.stderr = run.proc.communicate(timeout=300)
            run.returncode = run.proc.returncode
    finally:
        for run in cases.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
    return cases


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L", path
        return np.asarray(img)


def test_refine_writes_masks_and_sidecar(runs, tiny_backend):
    run = runs["ok"]
    assert run.returncode == 0, run.stderr
    outdir = run.outdir
    assert "refined 3 mask(s)" in run.stdout and str(outdir) in run.stdout
    # One PNG per input mask named after it, the sidecar named after the image, nothing else.
    assert sorted(p.name for p in outdir.iterdir()) == [
        "box.png",
        "chelsea.samrefiner.json",
        "chelsea_coarse.png",
        "empty.png",
    ]
    inputs = [Path(a) for a in run.args[2:5]]
    outputs = [outdir / "chelsea_coarse.png", outdir / "box.png", outdir / "empty.png"]

    sidecar = json.loads((outdir / "chelsea.samrefiner.json").read_text("utf-8"))
    assert sidecar["image"] == str(IMAGE)
    assert sidecar["model"] == "tiny_sam"
    assert sidecar["config"] == PASSED_CONFIG.to_dict()
    assert set(sidecar["timings"]) >= {"encoder", "decoder"}
    assert sidecar["wall_seconds"] >= 0
    records = sidecar["masks"]
    assert [r["input"] for r in records] == [str(p) for p in inputs]
    assert [r["output"] for r in records] == [str(p) for p in outputs]

    # The files hold what the library computes for the same inputs and options.
    image = np.asarray(Image.open(IMAGE).convert("RGB"))
    coarse = np.stack([np.asarray(Image.open(p)) > 0 for p in inputs])
    expected = Refiner(tiny_backend, PASSED_CONFIG).refine(image, coarse)
    for out, record, want, mine in zip(
        outputs, records, expected.masks, expected.to_records(), strict=True
    ):
        written = read_png(out)
        assert written.shape == (300, 451)
        assert set(np.unique(written).tolist()) <= {0, 255}
        assert np.mean((written == 255) != want) < 1e-3, out
        assert record["status"] == mine["status"]
        assert record["iterations"] == mine["iterations"]
        assert record["prompts"] == mine["prompts"]
        if mine["score"] is None:
            assert record["score"] is None
        else:
            assert record["score"] == pytest.approx(mine["score"], abs=1e-4)

    for record in records[:2]:
        assert record["status"] in ("refined", "collapsed")
        assert record["iterations"] == 1
        assert record["prompts"]["point_labels"] == [1]  # --no-negative-point
        assert len(record["prompts"]["box"]) == 4
    assert records[2] == {
        "score": None,
        "status": "empty",
        "iterations": 0,
        "prompts": None,
        "input": str(inputs[2]),
        "output": str(outputs[2]),
    }
    assert not read_png(outputs[2]).any()


def test_outputs_honour_umask(runs):
    umask = os.umask(0)
    os.umask(umask)  # the subprocess inherited this process's umask
    want = 0o666 & ~umask
    for path in sorted(runs["ok"].outdir.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == want, (path.name, oct(want))


def help_entries(text: str) -> dict[str, str]:
    """``--flag`` -> its help entry on one line, from argparse's formatted help."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^  (?:-\w \S+, )?(--[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("   "):
            entries[current] += " " + line
        else:
            current = None
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


def test_python_dash_m_runs_the_command():
    """``python -m samrefiner`` is the ``samrefiner`` command (exit codes included)."""
    ok = subprocess.run([sys.executable, "-m", "samrefiner", "--help"], capture_output=True)
    assert ok.returncode == 0 and b"usage: samrefiner" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "samrefiner", "refine"], capture_output=True)
    assert bad.returncode == 2 and b"error:" in bad.stderr


def test_help_lists_every_option_with_default(capsys):
    with pytest.raises(SystemExit) as info:
        main(["refine", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: samrefiner refine")
    entries = help_entries(text)
    assert {"--output", "--model", "--checkpoint", "--device", "--random-weights"} <= set(entries)
    assert "(default: sam_vit_h)" in entries["--model"]
    assert "default: cuda when available" in entries["--device"]

    defaults = RefineConfig()
    for f in dataclasses.fields(RefineConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if value is None:
            shown = "automatic" if f.name in ("max_batch", "threads") else "off"
        else:
            shown = "on" if value is True else "off" if value is False else value
        assert flag in entries, flag
        assert f"(default: {shown})" in entries[flag], entries[flag]
        if isinstance(value, bool):
            assert f"--no-{flag[2:]}" in entries[flag]

    # Spelled out, so a change to a default shows up here as well as in the dataclass.
    assert "(default: 5)" in entries["--iterations"]
    assert "(default: 0.0)" in entries["--margin"]
    assert "(default: 4.0)" in entries["--gamma"]
    assert "(default: 30.0)" in entries["--strength"]
    assert "(default: automatic)" in entries["--max-batch"]
    assert "(default: automatic)" in entries["--threads"]
    assert "{float32,bfloat16}" in entries["--dtype"]
    assert "(default: float32)" in entries["--dtype"]
    assert "(default: off)" in entries["--early-stop-iou"]


def check_error(
    returncode: int, stdout: str, stderr: str, pieces: list[str], outdir: Path, before: dict
) -> None:
    assert returncode != 0
    assert stdout == ""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("samrefiner refine: error: "), stderr
    for piece in pieces:
        assert piece in lines[0], (piece, lines[0])
    # Nothing written to OUTDIR: it is absent, or holds exactly what it held before.
    now = {p.name: p.read_bytes() for p in outdir.iterdir()} if outdir.exists() else {}
    assert now == before


ERRORS = {
    # case: what the one-line message must contain (a Path: relative to the case root)
    "missing_image": [Path("img/absent.png"), "image file not found"],
    "garbage_image": [Path("img/garbage.png"), "cannot read image"],
    "size_mismatch": [Path("masks/tall.png"), "mask is 10x8", Path("img/small.png"), "is 8x10"],
    "non_binary": [Path("masks/labels.png"), "0/1 or 0/255", "[0, 1, 2, 3, 4, 5]"],
    "iterations_zero": ["iterations must be an integer >= 1, got 0"],
    "overwrite_mask": [Path("inplace/m.png"), "is the input MASK", "would overwrite the input"],
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_the_problem_and_write_nothing(runs, case):
    run = runs[case]
    root = Path(run.args[1]).parents[1]  # every case's image lies one folder below the root
    pieces = [str(root / p) if isinstance(p, Path) else p for p in ERRORS[case]]
    check_error(run.returncode, run.stdout, run.stderr, pieces, run.outdir, run.before)


# Further error paths, run in this process (main() is the same code; no import cost).


def run_main(capsys, args: list[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_error_unknown_model(capsys, tmp_path):
    image = save(tmp_path / "a.jpg", np.zeros((6, 6, 3), np.uint8))
    mask = save(tmp_path / "m.png", np.eye(6, dtype=np.uint8))
    out = tmp_path / "out"
    result = run_main(capsys, ["refine", image, mask, "-o", out, "--model", "no_such_model"])
    check_error(*result, ["unknown model 'no_such_model'", "sam_vit_h"], out, {})


def test_error_two_masks_same_output_name(capsys, tmp_path):
    image = save(tmp_path / "a.jpg", np.zeros((6, 6, 3), np.uint8))
    first = save(tmp_path / "x" / "m.png", np.eye(6, dtype=np.uint8))
    second = save(tmp_path / "y" / "m.tif", np.eye(6, dtype=np.uint8))
    out = tmp_path / "out"
    result = run_main(capsys, refine_args(image, [first, second], out))
    check_error(*result, [str(first), str(second), str(out / "m.png"), "both"], out, {})


def test_error_output_would_overwrite_image(capsys, tmp_path):
    image = save(tmp_path / "out" / "cat.png", np.full((6, 6, 3), 90, np.uint8))
    mask = save(tmp_path / "masks" / "cat.png", np.eye(6, dtype=np.uint8))
    before = {"cat.png": image.read_bytes()}
    result = run_main(capsys, refine_args(image, [mask], image.parent))
    check_error(*result, [str(image), "overwrite"], image.parent, before)


def test_readme_parameter_table_matches_config():
    """Every RefineConfig field appears in the README's table with its real default."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", readme, flags=re.MULTILINE))
    defaults = RefineConfig()
    for f in dataclasses.fields(RefineConfig):
        assert f.name in rows, f"README parameter table lacks {f.name}"
        value = getattr(defaults, f.name)
        shown = f'`"{value}"`' if isinstance(value, str) else str(value)
        assert rows[f.name].strip() == shown, (f.name, rows[f.name])
