"""The runner's pipeline: overlap of loading with refining, bounded memory, ordering."""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
import pytest

from helpers_runner import FakeRefiner
from samrefiner.runner import Job, RunOptions, RunState, run_dataset
from samrefiner.runner.journal.records import ImageRecord, passthrough


class SyntheticDataset:
    """``n`` images of 16 x 16 with one mask each; records threads and live images."""

    name = "synthetic"

    def __init__(self, n: int, load_delay: float = 0.0) -> None:
        self.n = n
        self.load_delay = load_delay
        self.live = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.load_threads: set[str] = set()
        self.save_threads: set[str] = set()
        self.saved: list[str] = []
        self.finished_with: list[str] = []

    def keys(self) -> list[str]:
        return [f"img{i:03d}" for i in range(self.n)]

    def orphans(self):
        return [passthrough("stray", "unknown_image", "no such image")]

    def _released(self) -> None:
        with self.lock:
            self.live -= 1

    def load(self, key: str) -> Job:
        self.load_threads.add(threading.current_thread().name)
        time.sleep(self.load_delay)
        image = np.full((16, 16, 3), int(key[3:]) % 256, dtype=np.uint8)
        with self.lock:
            self.live += 1
            self.peak = max(self.peak, self.live)
        weakref.finalize(image, self._released)
        mask = np.zeros((1, 16, 16), dtype=bool)
        mask[0, 4:12, 4:12] = True
        return Job(key, image, mask, [key])

    def save(self, job: Job, result) -> ImageRecord:
        self.save_threads.add(threading.current_thread().name)
        self.saved.append(job.key)
        return job.image_record(result, job.records(result))

    def finish(self, records) -> None:
        self.finished_with = [r.key for r in records]


def test_memory_is_bounded_by_the_prefetch_window(tmp_path) -> None:
    dataset = SyntheticDataset(60)
    state = RunState(tmp_path / "out")
    state.start({}, resume=False)
    summary = run_dataset(dataset, FakeRefiner(), state, RunOptions(2, 3, False))
    assert summary.images_processed == 60
    # prefetch queue + the image being refined + the one being written + one loading
    assert dataset.peak <= 3 + 3
    assert dataset.saved == dataset.keys() == dataset.finished_with
    assert summary.masks_by_status["unknown_image"] == 1  # the orphan is counted
    assert summary.images_total == 60


def test_loading_runs_in_background_threads_and_overlaps(tmp_path) -> None:
    class SlowRefiner(FakeRefiner):
        def refine(self, image, masks):
            time.sleep(0.03)
            return super().refine(image, masks)

    n, delay = 12, 0.03
    timings = {}
    for workers in (0, 2):
        dataset = SyntheticDataset(n, load_delay=delay)
        state = RunState(tmp_path / f"out{workers}")
        state.start({}, resume=False)
        start = time.perf_counter()
        run_dataset(dataset, SlowRefiner(), state, RunOptions(workers, 4, False))
        timings[workers] = time.perf_counter() - start
        main = threading.current_thread().name
        if workers:
            assert main not in dataset.load_threads
        else:
            assert dataset.load_threads == {main}
        assert main not in dataset.save_threads
    # Serial: n x (load + refine) = 0.72 s; overlapped: about n x refine = 0.36 s.
    assert timings[2] < timings[0] - n * delay * 0.5


def test_a_failing_save_stops_the_run_and_keeps_the_state(tmp_path) -> None:
    class Broken(SyntheticDataset):
        def save(self, job, result):
            if job.key == "img002":
                raise OSError("disk full")
            return super().save(job, result)

    state = RunState(tmp_path / "out")
    state.start({}, resume=False)
    with pytest.raises(OSError, match="disk full"):
        run_dataset(Broken(5), FakeRefiner(), state, RunOptions(2, 2, False))
    assert state.is_done("img000") and state.is_done("img001")
    assert not state.is_done("img002")


def test_run_options_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        RunOptions(workers=-1)
    with pytest.raises(ValueError, match="prefetch"):
        RunOptions(prefetch=0)
