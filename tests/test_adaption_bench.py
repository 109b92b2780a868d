"""The adaption benchmark script runs end to end (tiny model, two shared images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Adaption needs the [adapt] extra (peft, safetensors); the base install skips these tests.
pytestmark = pytest.mark.extra("adapt")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_adaption.py"


@pytest.mark.shared_data
def test_bench_adaption_quick_prints_timings_and_agreement(shared_data, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data",
            str(shared_data),
            "--quick",
            "--images",
            "2",
            "--held-out",
            "0.5",
            "--json",
            str(tmp_path / "b.json"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "encode (cold cache)" in out and "top-1 agreement" in out
    assert "only the agreement figures are meaningful" in out
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["images"] == 2 and figures["warm_encoded_images"] == 0
    assert figures["report"]["held_out"]["images"] == 1
    assert figures["encode_s_per_image"] > 0
