"""The benchmark scripts run and print their tables (smallest settings, shared data)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.shared_data
def test_bench_excavation_prints_one_row_per_case(shared_data):
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_excavation.py"),
            "--data",
            str(shared_data),
            "--sizes",
            "480p",
            "--masks",
            "1",
            "3",
            "--repeat",
            "1",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    rows = [line.split() for line in out if line.startswith("480p")]
    assert [row[1] for row in rows] == ["1", "3"]
    for row in rows:
        assert float(row[2]) > 0 and float(row[3]) > 0 and row[4].endswith("x")


def test_bench_reference_rejects_a_malformed_case():
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_reference.py"),
            "--reference-repo",
            ".",
            "--cases",
            "1080p:forty:1",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "expected SIZE:MASKS:ITERS" in result.stderr


@pytest.mark.shared_data
def test_bench_core_runs_with_a_tiny_model(shared_data):
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_core.py"),
            "--data",
            str(shared_data),
            "--model",
            "samrefiner.testing:tiny_sam",
            "--sizes",
            "480p",
            "--masks",
            "2",
            "--iterations",
            "2",
            "--outputs",
            "object-sized",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    rows = [line.split() for line in out if line.startswith("480p")]
    assert len(rows) == 1 and rows[0][1] == "2"
    encoder, decoder = float(rows[0][2]), float(rows[0][4])
    assert encoder > 0 and decoder > 0
    assert rows[0][6].endswith("%") and rows[0][-1].endswith("%")


@pytest.mark.shared_data
def test_bench_zoom_runs_with_a_tiny_model(shared_data):
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_zoom.py"),
            "--data",
            str(shared_data),
            "--model",
            "samrefiner.testing:tiny_sam",
            "--cases",
            "mosaic",
            "--tiles",
            "2",
            "--iterations",
            "1",
            "--zoom-below",
            "24",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    rows = [line.split() for line in out if line.startswith("mosaic")]
    assert len(rows) == 1
    objects, zoomed, passes = (int(v) for v in rows[0][1:4])
    assert 0 < zoomed <= objects and 2 <= passes <= 9  # crops cost extra encoder passes
    assert float(rows[0][4]) > 0 and float(rows[0][5]) > 0


def test_bench_runner_memory_runs_with_a_tiny_model():
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_runner_memory.py"),
            "--model",
            "samrefiner.testing:tiny_sam",
            "--width",
            "160",
            "--height",
            "120",
            "--objects",
            "6",
            "--format",
            "coco",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "added by the runner:" in out and "objects refined: 6" in out


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.extra("ray")
def test_bench_engines_prints_each_engine_and_identical_outputs(shared_data):
    common = [sys.executable, str(BENCHMARKS / "bench_engines.py"), "--data", str(shared_data)]
    tiny = ["--model", "samrefiner.testing:tiny_sam", "--images", "3", "--iterations", "1"]
    out = subprocess.run(
        [*common, *tiny, "--ray-cpus", "2", "--cpus-per-actor", "0.5"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith(("local", "ray"))]
    assert len(rows) == 3 and all(r.endswith("identical") for r in rows[1:])
    simulated = ["--simulate-device", "5", "1", "--refine-threads", "0", "2"]
    out = subprocess.run(
        [*common, *tiny, "--mode", "encoder", *simulated],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "simulated device: 5 ms/image encoded, 1 ms/decode" in out
    assert "encoder only" in out
    for lanes in (0, 2):
        (row,) = [
            line for line in out.splitlines() if line.startswith(f"coco, refine threads {lanes}")
        ]
        assert float(row.split()[-1]) > 0  # whole / encoder


@pytest.mark.shared_data
def test_bench_refine_batch_prints_each_stage_with_a_tiny_model(shared_data):
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_refine_batch.py"),
            "--data",
            str(shared_data),
            "--model",
            "samrefiner.testing:tiny_sam",
            "--batch",
            "2",
            "--objects",
            "2",
            "--iterations",
            "1",
            "--repeats",
            "1",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if "|" in line}
    for stage in ("encoder", "decoder", "excavation", "postprocess", "transfer"):
        assert float(rows[stage][3]) >= 0
    assert float(rows["excavation"][3]) > 0 and rows["excavation"][2].strip() == "CPU"
    assert "CPU share of the batch:" in out
