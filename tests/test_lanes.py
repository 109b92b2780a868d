"""Refining lanes: the encoder runs ahead while several images are refined at once,
with results identical to refining one image after another."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from helpers_runner import (
    COCO_MIN_SCORE,
    FakeRefiner,
    box_mask,
    build_coco,
    build_instances,
    build_masks,
    build_semantic,
    fake_refine,
    tree_bytes,
)
from samrefiner import RefineConfig, Refiner
from samrefiner.cli import build_parser
from samrefiner.io.coco import load_coco
from samrefiner.runner import (
    CocoDataset,
    InstanceDataset,
    Job,
    MaskFolderDataset,
    RefineLanes,
    RunOptions,
    RunState,
    SemanticDataset,
    refine_jobs,
    run_dataset,
)
from samrefiner.runner.engines.lanes import lanes_for, own_stream
from samrefiner.types import RefineResult

#: Events a test waits for: long enough for a loaded CI machine, short enough to fail.
WAIT_S = 20.0


def jobs_of(rng: np.random.Generator, count: int) -> list[Job]:
    """Jobs of different images and masks; every fourth has nothing to refine."""
    jobs = []
    for i in range(count):
        image = rng.integers(0, 256, size=(48 + 4 * i, 64, 3), dtype=np.uint8)
        if i % 4 == 3:
            jobs.append(Job(f"k{i}", image, np.zeros((0, *image.shape[:2]), bool), []))
            continue
        h = image.shape[0]
        masks = np.stack([box_mask(4 + i, 6, 30, 28, h, 64), box_mask(30, 20, 60, h - 2, h, 64)])
        jobs.append(Job(f"k{i}", image, masks, [f"k{i}-a", f"k{i}-b"]))
    return jobs


def same_result(a, b) -> None:
    assert (a is None) == (b is None)
    if a is None:
        return
    np.testing.assert_array_equal(a.masks.stack(range(len(a))), b.masks.stack(range(len(b))))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.status == b.status
    np.testing.assert_array_equal(a.iterations, b.iterations)


@pytest.mark.parametrize(("lanes", "group"), [(1, 1), (3, 1), (2, 3)])
def test_lanes_give_the_serial_results(tiny_backend, rng, lanes: int, group: int) -> None:
    refiner = Refiner(tiny_backend, RefineConfig(iterations=2))
    jobs = jobs_of(rng, 7)
    groups = [jobs[k : k + group] for k in range(0, len(jobs), group)]
    serial = [r for g in groups for r in refine_jobs(refiner, g)]
    with RefineLanes(refiner, lanes) as pool:
        futures = [f for g in groups for f in pool.submit(g)]
        overlapped = [f.result(timeout=WAIT_S) for f in futures]
    assert overlapped[3] is None  # nothing to refine
    for a, b in zip(serial, overlapped, strict=True):
        same_result(a, b)


class Blocking(FakeRefiner):
    """Refining the first image waits until the encoder has started on the third group:
    only an encoder that runs ahead of the refinement lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded = 0
        self.third_group = threading.Event()

    def encode(self, image: np.ndarray) -> str:
        self.encoded += 1
        if self.encoded == 3:
            self.third_group.set()
        return "embedding"

    def refine(self, image, masks, *, embedding=None, **kwargs) -> RefineResult:
        assert embedding == "embedding"  # encoded by the lanes' encoder, not here
        if self.calls == 0 and not self.third_group.wait(WAIT_S):
            raise AssertionError("the encoder did not run ahead of the refinement")
        return super().refine(image, masks)


def test_the_encoder_runs_ahead_of_the_refinement(rng) -> None:
    jobs = [j for j in jobs_of(rng, 6) if j.refinable]
    refiner = Blocking()
    with RefineLanes(refiner, lanes=1) as pool:
        futures = [f for job in jobs for f in pool.submit([job])]
        results = [f.result(timeout=2 * WAIT_S) for f in futures]
    assert all(r is not None for r in results)
    assert refiner.encoded == len(jobs)


class Failing(FakeRefiner):
    def __init__(self, on: int, where: str) -> None:
        super().__init__()
        self.on, self.where, self.seen = on, where, 0

    def encode(self, image: np.ndarray) -> str:
        self.seen += 1
        if self.where == "encode" and self.seen == self.on:
            raise RuntimeError("encoder broke")
        return "embedding"

    def refine(self, image, masks, *, embedding=None, **kwargs) -> RefineResult:
        if self.where == "refine" and image.shape[0] == 48 + 4 * self.on:
            raise RuntimeError("refiner broke")
        return super().refine(image, masks)


@pytest.mark.parametrize("where", ["encode", "refine"])
def test_a_bug_reaches_the_caller_and_the_other_images_finish(rng, where: str) -> None:
    jobs = [j for j in jobs_of(rng, 6) if j.refinable]  # k0 k1 k2 k4 k5
    refiner = Failing(on=2, where=where)
    with RefineLanes(refiner, lanes=2) as pool:
        futures = [f for job in jobs for f in pool.submit([job])]
        outcomes = [f.exception(timeout=WAIT_S) for f in futures]
    failed = [job.key for job, error in zip(jobs, outcomes, strict=True) if error is not None]
    assert failed == ["k1" if where == "encode" else "k2"]


def test_closing_with_cancel_drops_what_was_not_started(rng) -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow(FakeRefiner):
        def encode(self, image: np.ndarray) -> str:
            entered.set()
            release.wait(WAIT_S)
            return "embedding"

        def refine(self, image, masks, *, embedding=None, **kwargs) -> RefineResult:
            return super().refine(image, masks)

    jobs = [j for j in jobs_of(rng, 3) if j.refinable]
    pool = RefineLanes(Slow(), lanes=1)
    futures = [f for job in jobs for f in pool.submit([job])]
    assert entered.wait(WAIT_S)
    # close() drops the queued images at once, then waits for the encoder to finish
    # the first (released a second later).
    threading.Timer(1.0, release.set).start()
    pool.close(cancel=True)
    assert futures[0].result(timeout=WAIT_S) is not None  # it was being encoded: finished
    assert futures[-1].cancelled()


FORMATS = {
    "coco": None,
    "instances": (build_instances, InstanceDataset),
    "semantic": (build_semantic, SemanticDataset),
    "masks": (build_masks, MaskFolderDataset),
}


def run_format(root, fmt: str, runs: list[tuple[RunOptions, object]]) -> list[tuple]:
    """Each ``(options, refiner)`` run on the same inputs under ``root``, each into an
    output of its own; the outputs' bytes and the summaries' JSON, per run."""
    if fmt == "coco":
        ann_path, images = build_coco(root)
    else:
        build, cls = FORMATS[fmt]
        images, inputs = build(root)
    found = []
    for k, (options, refiner) in enumerate(runs):
        out = root / f"out{k}"
        if fmt == "coco":
            out = out / "refined.json"
            dataset = CocoDataset(load_coco(ann_path), images, out, min_score=COCO_MIN_SCORE)
        else:
            dataset = cls(images, inputs, out)
        state = RunState(out)
        state.start({"fmt": fmt}, resume=False)
        summary = run_dataset(dataset, refiner, state, options).to_json()
        summary.pop("wall_time_s", None)
        found.append((out.read_bytes() if fmt == "coco" else tree_bytes(out), summary))
    return found


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_the_runner_writes_the_same_outputs_with_lanes(tmp_path, fmt: str) -> None:
    serial, overlapped = run_format(
        tmp_path,
        fmt,
        [
            (RunOptions(2, 2, False, refine_threads=0), FakeRefiner()),
            (RunOptions(2, 2, False, encoder_batch=2, refine_threads=3), FakeRefiner()),
        ],
    )
    assert overlapped == serial


def test_the_runner_with_lanes_and_a_real_model(tmp_path, tiny_backend) -> None:
    refiner = Refiner(tiny_backend, RefineConfig(iterations=2))
    serial, overlapped = run_format(
        tmp_path,
        "coco",
        [
            (RunOptions(0, 1, False), refiner),
            (RunOptions(2, 3, False, refine_threads=2), refiner),
        ],
    )
    assert overlapped[0] == serial[0]


def test_a_bug_in_a_lane_stops_the_run_and_keeps_what_was_saved(tmp_path) -> None:
    class Broken(FakeRefiner):
        def refine(self, image, masks, **kwargs) -> RefineResult:
            if self.calls == 2:
                raise RuntimeError("bug")
            return super().refine(image, masks)

    images, inputs = build_masks(tmp_path)
    out = tmp_path / "out"
    state = RunState(out)
    state.start({}, resume=False)
    options = RunOptions(1, 1, False, refine_threads=1)
    with pytest.raises(RuntimeError, match="bug"):
        run_dataset(MaskFolderDataset(images, inputs, out), Broken(), state, options)
    listed = MaskFolderDataset(images, inputs, out).keys()
    done = [k for k in listed if state.is_done(k)]
    assert 1 <= len(done) <= 2  # saved before the bug: kept, and resume skips them
    assert not list(out.rglob("*.tmp"))


def test_automatic_lanes_and_validation() -> None:
    assert lanes_for("cpu") == 0
    assert lanes_for("cuda") >= 1
    assert lanes_for("mps") == 0
    assert lanes_for("cuda", 0) == 0
    assert lanes_for("cpu", 3) == 3
    with pytest.raises(ValueError, match=">= 0"):
        lanes_for("cpu", -1)
    with pytest.raises(ValueError, match="refine_threads"):
        RunOptions(refine_threads=-1)
    with pytest.raises(ValueError, match="lanes"):
        RefineLanes(FakeRefiner(), 0)
    with own_stream(None), own_stream(np.zeros(1)):  # no CUDA device: nothing to do
        pass


def test_refine_threads_option(capsys) -> None:
    parser = build_parser()
    base = ["masks", "--images", "i", "--masks", "m", "--output", "o"]
    assert parser.parse_args(base).refine_threads is None
    assert parser.parse_args([*base, "--refine-threads", "0"]).refine_threads == 0
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--refine-threads", "-1"])
    assert "must be >= 0" in capsys.readouterr().err


def test_fake_refine_is_what_the_lanes_return(rng) -> None:
    job = jobs_of(rng, 1)[0]
    with RefineLanes(FakeRefiner(), 2) as pool:
        (future,) = pool.submit([job])
        result = future.result(timeout=WAIT_S)
    expected, _ = fake_refine(job.masks.stack(range(len(job.masks))))
    np.testing.assert_array_equal(result.masks.stack(range(2)), expected)
