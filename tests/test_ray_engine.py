"""The Ray engine on a local Ray (2 CPUs) started once for the module: same bytes as the
local engine, bad input passed through, a killed worker retried."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from samrefiner import RefineConfig, Refiner  # noqa: E402
from samrefiner.io.coco import load_coco  # noqa: E402
from samrefiner.runner import CocoDataset, InstanceDataset, RunOptions, RunState  # noqa: E402
from samrefiner.runner.pipeline import run_dataset  # noqa: E402
from samrefiner.runner.ray_engine import ClusterError, RayOptions, check_room, run_dataset_ray  # noqa: E402
from samrefiner.testing import tiny_sam  # noqa: E402
from test_runner_data import build_coco, build_instances, tree_bytes  # noqa: E402

# Ray Data's context reads its own deprecated settings when it is copied to workers.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module; its workers import samrefiner and these tests."""
    started = not ray.is_initialized()
    if started:
        path = os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")])
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    yield
    if started:
        ray.shutdown()


def tiny_refiner(iterations: int = 2) -> Refiner:
    return Refiner(tiny_sam(seed=0), RefineConfig(iterations=iterations))


class KillOnce:
    """Builds a refiner whose process kills itself (SIGKILL) on its second image, once
    per run: ``marker`` records that it happened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self) -> Refiner:
        refiner = tiny_refiner()
        marker, calls = self.marker, [0]
        refine = refiner.refine

        def dying_refine(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 2 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return refine(*args, **kwargs)

        refiner.refine = dying_refine  # type: ignore[method-assign]
        return refiner


def run_both(make_dataset, out_local: Path, out_ray: Path, make_refiner, **ray_options):
    """Run the local and the Ray engine on the same dataset; return both summaries."""
    state = RunState(out_local)
    state.start({}, resume=False)
    local = run_dataset(make_dataset(out_local), tiny_refiner(), state, RunOptions(1, 2, False))
    state.remove()
    state = RunState(out_ray)
    state.start({}, resume=False)
    options = RayOptions(progress=False, **ray_options)
    remote = run_dataset_ray(make_dataset(out_ray), make_refiner, state, options)
    state.remove()
    return local, remote


def same_summary(a, b) -> None:
    da, db = a.to_dict(), b.to_dict()
    da.pop("wall_time_s"), db.pop("wall_time_s")
    assert da == db


def test_coco_output_is_byte_identical_and_bad_input_passes_through(tmp_path, caplog) -> None:
    annotations, images = build_coco(tmp_path)

    def make(out: Path) -> CocoDataset:
        return CocoDataset(load_coco(annotations), images, out, min_score=0.3)

    caplog.set_level(logging.WARNING, logger="samrefiner.runner")
    local, remote = run_both(make, tmp_path / "local.json", tmp_path / "ray.json", tiny_refiner)
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()
    same_summary(local, remote)
    assert remote.images_processed == 3
    for status in ("image_missing", "image_unreadable", "size_mismatch", "invalid_polygon"):
        assert remote.masks_by_status[status] >= 1
        assert sum(status in r.getMessage() for r in caplog.records) >= 2  # both engines
    assert not (tmp_path / "ray.json.samrefiner-state").exists()


@pytest.mark.slow
def test_instance_maps_are_byte_identical_with_two_workers(tmp_path) -> None:
    images, labels = build_instances(tmp_path)

    def make(out: Path) -> InstanceDataset:
        return InstanceDataset(images, labels, out)

    local, remote = run_both(
        make, tmp_path / "local", tmp_path / "ray", tiny_refiner, workers=2, cpus_per_worker=0.5
    )
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")
    assert len(tree_bytes(tmp_path / "ray")) == 7  # every map, refined or copied
    same_summary(local, remote)


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_nothing_changes(tmp_path) -> None:
    images, labels = build_instances(tmp_path)
    marker = tmp_path / "killed"

    def make(out: Path) -> InstanceDataset:
        return InstanceDataset(images, labels, out)

    local, remote = run_both(make, tmp_path / "local", tmp_path / "ray", KillOnce(marker))
    assert marker.exists(), "no worker was killed"
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")
    same_summary(local, remote)


def test_a_plan_the_cluster_cannot_hold_is_refused(tmp_path) -> None:
    images, labels = build_instances(tmp_path)
    state = RunState(tmp_path / "ray")
    state.start({}, resume=False)
    with pytest.raises(ClusterError, match=r"need 3\.5 CPUs; the Ray cluster has 2"):
        run_dataset_ray(
            InstanceDataset(images, labels, tmp_path / "ray"),
            tiny_refiner,
            state,
            RayOptions(workers=3, progress=False),
        )
    with pytest.raises(ClusterError, match="GPUs"):
        check_room(RayOptions(), 1, 1.0, {"CPU": 8.0})


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="workers"):
        RayOptions(workers=0)
    with pytest.raises(ValueError, match="fewer than"):
        RayOptions(num_gpus_per_worker=1).actor_count(0.0)
    assert RayOptions(num_gpus_per_worker=0.5).actor_count(2.0) == 4
    assert RayOptions().actor_count(8.0) == 8  # one per GPU
    assert RayOptions().actor_count(0.0) == 1
    assert RayOptions(num_gpus_per_worker=0).actor_count(8.0) == 1


def square_all(items: list[int]) -> list[int]:
    return [i * i for i in items]


@pytest.mark.slow
def test_map_on_actors_is_the_generic_hook() -> None:
    from samrefiner.runner.ray_engine import map_on_actors

    results = map_on_actors(list(range(5)), lambda: square_all, RayOptions(workers=1), batch_size=2)
    assert sorted(results) == [0, 1, 4, 9, 16]
