"""Shared fixtures: the tiny random SAM, the path to the shared evaluation data, a local
Ray for the Ray engine's tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
