"""The Ray engine on a local Ray (2 CPUs) started once for the module: same bytes as the
local engine, bad input passed through, a killed worker retried."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import import_extra

ray = import_extra("ray", "ray")

from helpers_runner import (  # noqa: E402
    TINY_MODEL_ARGS as MODEL,
)
from helpers_runner import (  # noqa: E402
    H,
    W,
    build_coco,
    build_instance_series,
    build_instances,
    instances_command,
    tree_bytes,
    worker_pythonpath,
)
from samrefiner import RefineConfig, Refiner  # noqa: E402
from samrefiner.cli import main  # noqa: E402
from samrefiner.runner import InstanceDataset, RunOptions, RunState  # noqa: E402
from samrefiner.runner.engines.local import run_dataset  # noqa: E402
from samrefiner.runner.engines.ray import (  # noqa: E402
    ClusterError,
    RayOptions,
    check_room,
    run_dataset_ray,
)
from samrefiner.testing import tiny_sam  # noqa: E402

# Ray Data's context reads its own deprecated settings when it is copied to workers.
pytestmark = [
    pytest.mark.usefixtures("local_ray"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


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


def run_both(
    make_dataset, out_local: Path, out_ray: Path, make_refiner, run_kwargs=None, **ray_options
):
    """Run the local and the Ray engine on the same dataset; return both summaries.

    ``run_kwargs``: more arguments of ``run_dataset_ray`` (encoder batch, lanes)."""
    state = RunState(out_local)
    state.start({}, resume=False)
    local = run_dataset(make_dataset(out_local), tiny_refiner(), state, RunOptions(1, 2, False))
    state.remove()
    state = RunState(out_ray)
    state.start({}, resume=False)
    options = RayOptions(progress=False, **ray_options)
    remote = run_dataset_ray(
        make_dataset(out_ray), make_refiner, state, options, **(run_kwargs or {})
    )
    state.remove()
    return local, remote


def same_summary(a, b) -> None:
    da, db = a.to_json(), b.to_json()
    da.pop("wall_time_s"), db.pop("wall_time_s")
    assert da == db


def summary_of(path: Path) -> dict:
    summary = json.loads(path.read_text())
    summary.pop("wall_time_s")
    return summary


def test_coco_cli_output_is_byte_identical_and_bad_input_passes_through(tmp_path, caplog) -> None:
    annotations, images = build_coco(tmp_path)
    caplog.set_level(logging.WARNING, logger="samrefiner.runner")

    def run(name: str, *engine: str) -> bytes:
        out = tmp_path / f"{name}.json"
        args = ["coco", str(annotations), "--images", str(images), "-o", str(out)]
        summary = ["--summary", str(tmp_path / f"{name}.summary.json"), "--min-score", "0.3"]
        assert main([*args, *MODEL, *summary, *engine]) == 0
        assert not (tmp_path / f"{name}.json.samrefiner-state").exists()
        return out.read_bytes()

    local = run("local")
    remote = run("ray", "--engine", "ray", "--workers", "1")
    assert remote == local
    summary = summary_of(tmp_path / "ray.summary.json")
    assert summary == summary_of(tmp_path / "local.summary.json")
    assert summary["images_processed"] == 3
    for status in ("image_missing", "image_unreadable", "size_mismatch", "invalid_polygon"):
        assert summary["masks_by_status"][status] >= 1
        assert sum(status in r.getMessage() for r in caplog.records) >= 2  # both engines


def test_a_bad_image_reads_the_same_on_both_engines_of_the_command(tmp_path, caplog) -> None:
    """An image name leaving --images is refused in the load actors with the command's
    words (the flag, not the library parameter), as the local engine refuses it."""
    annotations, images = build_coco(tmp_path)
    coco = json.loads(annotations.read_text())
    coco["images"].append({"id": 99, "file_name": "../one.png", "height": H, "width": W})
    coco["annotations"].append({**coco["annotations"][0], "id": 999, "image_id": 99})
    annotations.write_text(json.dumps(coco))
    caplog.set_level(logging.WARNING, logger="samrefiner.runner")

    def run(name: str, *engine: str) -> bytes:
        out = tmp_path / f"{name}.json"
        args = ["coco", str(annotations), "--images", str(images), "-o", str(out)]
        assert main([*args, *MODEL, *engine]) == 0
        return out.read_bytes()

    assert run("ray", "--engine", "ray", "--workers", "1") == run("local")
    refused = [r.getMessage() for r in caplog.records if "unsafe_path" in r.getMessage()]
    assert len(refused) == 2  # one per engine, the same words
    assert all("--allow-outside-images" in m for m in refused)
    assert not any("allow_outside_images=True" in m for m in refused)


def test_inputs_named_by_uri_give_the_same_bytes_on_ray(tmp_path) -> None:
    """A URI that every worker can open (``file://`` here, ``s3://`` on a cluster): the
    load actors read the images through fsspec, as the local engine does."""
    images, labels = build_instances(tmp_path)

    def run(name: str, images_arg: str, labels_arg: str, *engine: str) -> dict:
        out = tmp_path / name
        args = ["instances", "--images", images_arg, "--labels", labels_arg, "-o", str(out)]
        assert main([*args, *MODEL, *engine]) == 0
        return tree_bytes(out)

    local = run("local", str(images), str(labels))
    remote = run("ray", images.as_uri(), labels.as_uri(), "--engine", "ray", "--workers", "1")
    assert remote == local


def test_ray_options_are_user_errors(tmp_path, capsys) -> None:
    annotations, images = build_coco(tmp_path)
    args = ["coco", str(annotations), "--images", str(images), "-o", str(tmp_path / "o.json")]
    assert main([*args, *MODEL, "--engine", "ray", "--workers", "5"]) == 2
    assert "CPUs; the Ray cluster has 2" in capsys.readouterr().err
    assert main([*args, *MODEL, "--engine", "ray", "--num-gpus-per-worker", "-1"]) == 2
    assert "num_gpus_per_worker must be >= 0" in capsys.readouterr().err


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


def test_actors_with_refining_lanes_write_the_same_bytes(tmp_path) -> None:
    """GPU actors' path (each batch one encoder group of the actor's lanes, several
    batches at once per actor), here on a CPU actor."""
    images, labels = build_instances(tmp_path)

    def make(out: Path) -> InstanceDataset:
        return InstanceDataset(images, labels, out)

    lanes = {"encoder_batch": 1, "refine_threads": 2}
    local, remote = run_both(make, tmp_path / "local", tmp_path / "ray", tiny_refiner, lanes)
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")
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
    with pytest.raises(ClusterError, match=r"need 4 CPUs; the Ray cluster has 2"):
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
    from samrefiner.runner.engines.ray import map_on_actors

    results = map_on_actors(list(range(5)), lambda: square_all, RayOptions(workers=1), batch_size=2)
    assert sorted(results) == [0, 1, 4, 9, 16]


@pytest.mark.slow
def test_a_killed_driver_resumes_to_identical_output(tmp_path) -> None:
    """SIGKILL the driver of a ``--engine ray`` run (joined to this module's Ray), then
    ``--resume``: the outputs equal an uninterrupted local run's."""
    images, labels = build_instance_series(tmp_path, 10)
    out = tmp_path / "out"

    def command(*extra: str) -> list[str]:
        return instances_command(images, labels, out, *extra)

    env = {**os.environ, "PYTHONPATH": worker_pythonpath()}
    subprocess.run(command(), check=True, env=env, capture_output=True)
    uninterrupted = tree_bytes(out)
    shutil.rmtree(out)

    address = ray.get_runtime_context().gcs_address
    ray_args = ("--engine", "ray", "--ray-address", address, "--workers", "1")
    done = tmp_path / "out.samrefiner-state" / "done"
    proc = subprocess.Popen(
        command(*ray_args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if done.is_dir() and len(list(done.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(done.glob("*.json")))
    assert 3 <= finished < 10

    result = subprocess.run(command(*ray_args, "--resume"), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"({finished} from the resumed run)" in result.stdout
    outputs = {k: v for k, v in tree_bytes(out).items() if not k.startswith(".")}
    assert outputs == uninterrupted
    assert not (tmp_path / "out.samrefiner-state").exists()


def test_ray_reads_uri_inputs(tmp_path) -> None:
    """file:// URIs (every Ray worker process reads them through fsspec)."""
    annotations, images = build_coco(tmp_path)
    outputs = {}
    for name, ann, folder in (
        ("path", str(annotations), str(images)),
        ("uri", annotations.as_uri(), images.as_uri()),
    ):
        out = tmp_path / f"{name}.json"
        args = ["coco", ann, "--images", folder, "-o", str(out), "--engine", "ray"]
        assert main([*args, *MODEL, "--workers", "1"]) == 0
        written = json.loads(out.read_text())["annotations"]
        for entry in written:
            entry["samrefiner"].pop("message", None)  # names the files as given
        outputs[name] = written
    assert outputs["uri"] == outputs["path"]


def test_refining_actors_use_the_drivers_torch_threads() -> None:
    """Thread counts change CPU rounding: actors take the driver's, not Ray's default."""
    import torch

    from samrefiner.runner.engines.ray import _Refine

    before = torch.get_num_threads()
    try:
        _Refine(lambda: None, 1, 1, 0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
