"""A real SIGKILL in the middle of a run, then ``--resume``: the output is byte-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from helpers_runner import build_instance_series, instances_command, tree_bytes

pytestmark = pytest.mark.slow


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path) -> None:
    images, labels = build_instance_series(tmp_path, 12)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(instances_command(images, labels, out), check=True, env=env, capture_output=True)
    uninterrupted = tree_bytes(out)
    assert len(uninterrupted) == 12

    for path in out.iterdir():
        path.unlink()
    done = tmp_path / "out.samrefiner-state" / "done"
    proc = subprocess.Popen(
        instances_command(images, labels, out),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if done.is_dir() and len(list(done.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    # Freeze it: it stays alive (holding its lock) however long the second run takes to
    # start, and SIGKILL below works on a stopped process.
    proc.send_signal(signal.SIGSTOP)
    assert proc.poll() is None, "the run ended before it could be killed"
    # A second run on the same output is refused while the first is alive, naming it;
    # it leaves the first run's state alone.
    second = subprocess.run(
        instances_command(images, labels, out, "--resume"), env=env, capture_output=True, text=True
    )
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"another samrefiner run (process {proc.pid})" in second.stderr
    assert done.is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "out.samrefiner-lock").is_file()  # stale: taken over below
    finished = len(list(done.glob("*.json")))
    assert 3 <= finished < 12
    partial = tree_bytes(out)
    assert all(not name.endswith(".tmp") for name in partial)  # temp files are hidden names
    assert all(partial[name] == uninterrupted[name] for name in partial if not name.startswith("."))

    result = subprocess.run(
        instances_command(images, labels, out, "--resume"), env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"({finished} from the resumed run)" in result.stdout
    outputs = {k: v for k, v in tree_bytes(out).items() if not k.startswith(".")}
    assert outputs == uninterrupted
    assert not (tmp_path / "out.samrefiner-state").exists()
    assert not (tmp_path / "out.samrefiner-lock").exists()
