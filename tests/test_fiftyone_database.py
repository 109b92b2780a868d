"""The tests' own mongod for FiftyOne (helpers_mongod, conftest.py): stopped and removed
also after an error, a failed start named with its reason, and the FiftyOne tests still
skip at collection where fiftyone is not installed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO_ROOT
from helpers_mongod import MongodError, PortReservation, reserve_port, running_mongod


@pytest.fixture
def own_tempdir(tmp_path, monkeypatch):
    """tempfile's directory, empty, for one test."""
    path = tmp_path / "tempdir"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.mark.extra("fiftyone")
def test_mongod_is_stopped_and_removed_also_after_an_error(fiftyone_mongod, own_tempdir):
    reservation = reserve_port()
    with (
        pytest.raises(RuntimeError, match="the test failed"),
        running_mongod(fiftyone_mongod, reservation) as process,
    ):
        assert process.args[process.args.index("--bind_ip") + 1] == "127.0.0.1"
        assert len(list(own_tempdir.iterdir())) == 1
        socket.create_connection(("127.0.0.1", reservation.port), timeout=5).close()
        raise RuntimeError("the test failed")
    assert process.returncode == 0  # SIGTERM: a clean shutdown
    assert list(own_tempdir.iterdir()) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", reservation.port), timeout=5)


@pytest.mark.extra("fiftyone")
def test_a_mongod_that_cannot_start_is_named_with_its_reason(fiftyone_mongod, own_tempdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        reservation = PortReservation(taken.getsockname()[1], None)
        with (
            pytest.raises(MongodError, match=r"exited with code 48 .*Address already in use"),
            running_mongod(fiftyone_mongod, reservation),
        ):
            pass
    assert list(own_tempdir.iterdir()) == []


def test_a_missing_or_silent_mongod_is_named(tmp_path, own_tempdir):
    missing = tmp_path / "bin" / "mongod"
    with (
        pytest.raises(MongodError, match=f"{re.escape(str(missing))} cannot run"),
        running_mongod(missing, reserve_port()),
    ):
        pass
    silent = tmp_path / "silent-mongod"
    silent.write_text("#!/bin/sh\necho starting\nexec sleep 60\n")
    silent.chmod(0o755)
    with (
        pytest.raises(MongodError, match=r"did not accept connections .* within 0.5 s: starting"),
        running_mongod(silent, reserve_port(), timeout=0.5),
    ):
        pass
    assert list(own_tempdir.iterdir()) == []


def test_the_fiftyone_tests_skip_at_collection_without_fiftyone(tmp_path):
    (tmp_path / "no_fiftyone.py").write_text(
        'import sys\n\nsys.modules["fiftyone"] = None  # import fiftyone raises ImportError\n'
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    env.pop("FIFTYONE_DATABASE_URI", None)  # set by this session's conftest.py
    out = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-p", "no_fiftyone", "-p", "no:cacheprovider", "-q", "-rs"),
            "tests/test_integrations_fiftyone.py",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, out.stdout + out.stderr
    assert "1 skipped" in out.stdout, out.stdout
    assert "needs the [fiftyone] extra" in out.stdout, out.stdout
