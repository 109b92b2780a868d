"""The dataset runner: a prefetching pipeline around one refiner.

Per image, three stages run concurrently on different images:

1. **load** (``workers`` background threads, up to ``prefetch`` images ahead): decode
   the image and the coarse masks, turning bad input into statuses, and mine the first
   round's prompts. PIL, OpenCV, pycocotools and the distance transforms release the
   GIL, so threads overlap with model compute;
2. **refine** (the calling thread): the model, on groups of ``encoder_batch`` images
   (:func:`~samrefiner.runner.stages.refine_jobs`, shared with the Ray engine);
3. **save** (one writer thread): encode and write the outputs atomically, then the
   image's journal record (see :mod:`samrefiner.runner.state`).

At most ``max(prefetch, encoder_batch)`` loaded images, one group being refined and one
image being written are held at a time, so memory does not grow with the number of
images.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from samrefiner.runner.base import Dataset, Job, RefinerLike
from samrefiner.runner.records import ImageRecord, RunSummary
from samrefiner.runner.stages import (
    Progress,
    device_type,
    encoder_batch_for,
    log_problems,
    prepare_first_prompts,
    refine_jobs,
    start_summary,
)
from samrefiner.runner.state import RunState
from samrefiner.types import RefineResult

log = logging.getLogger("samrefiner.runner")


@dataclass(frozen=True)
class RunOptions:
    """How a dataset is run.

    Attributes:
        workers: background loader threads (0: load in the calling thread).
        prefetch: images loaded ahead of the model (>= 1).
        progress: show a tqdm progress bar on stderr.
        encoder_batch: images the model encodes together (None: automatic for the
            refiner's device, see :func:`~samrefiner.runner.stages.encoder_batch_for`).
    """

    workers: int = 2
    prefetch: int = 4
    progress: bool = True
    encoder_batch: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {self.prefetch}")
        if self.encoder_batch is not None and self.encoder_batch < 1:
            raise ValueError(f"encoder_batch must be >= 1 or None, got {self.encoder_batch}")


def run_dataset(
    dataset: Dataset,
    refiner: RefinerLike,
    state: RunState,
    options: RunOptions | None = None,
    *,
    on_record: Callable[[ImageRecord], None] | None = None,
) -> RunSummary:
    """Refine every image of ``dataset`` not yet done in ``state``, then finish it.

    Args:
        dataset: the format adapter.
        refiner: object with ``refine(image, masks) -> RefineResult``.
        state: an opened :class:`RunState` (see :meth:`RunState.start`).
        options: workers, prefetch, progress bar (defaults of :class:`RunOptions`).
        on_record: called with each new record once it is saved (tests use it to
            simulate a crash).

    Returns:
        The run's summary (resumed images included).
    """
    options = options or RunOptions()
    started = time.perf_counter()
    keys, todo, summary = start_summary(dataset, state)
    progress = Progress(len(keys), len(keys) - len(todo), options.progress, dataset.name)
    group_size = encoder_batch_for(device_type(refiner), options.encoder_batch)

    def save(job: Job, result: RefineResult | None) -> ImageRecord:
        record = dataset.save(job, result)
        state.write(record)
        return record

    def collect(future: Future[ImageRecord]) -> None:
        record = future.result()
        log_problems(record, dataset.name)
        summary.add(record)
        progress.update(record)
        if on_record is not None:
            on_record(record)

    loaders = ThreadPoolExecutor(max_workers=options.workers) if options.workers else None
    writer = ThreadPoolExecutor(max_workers=1)
    pending: deque[Future[Job]] = deque()
    remaining = iter(todo)
    writing: Future[ImageRecord] | None = None

    def prepare(key: str) -> Job:
        job = dataset.load(key)
        if loaders is not None:
            # Mine the first round's prompts here, overlapping the model's work on the
            # previous images (refiners without the hook, and elastic boxes, skip this).
            prepare_first_prompts(refiner, job)
        return job

    def submit_next() -> None:
        key = next(remaining, None)
        if key is None:
            return
        if loaders is None:
            done: Future[Job] = Future()
            done.set_result(prepare(key))
            pending.append(done)
        else:
            pending.append(loaders.submit(prepare, key))

    logs = contextlib.ExitStack()
    if options.progress:
        # Warnings go through tqdm while the bar is shown, so they do not break it.
        from tqdm.contrib.logging import logging_redirect_tqdm

        logs.enter_context(logging_redirect_tqdm())
    try:
        for _ in range(max(options.prefetch, group_size) if loaders else group_size):
            submit_next()
        while pending:
            # A group of images goes through the encoder together (one on the CPU).
            group = [pending.popleft().result() for _ in range(min(group_size, len(pending)))]
            for _ in group:
                submit_next()
            for job, result in zip(group, refine_jobs(refiner, group), strict=True):
                if writing is not None:
                    collect(writing)
                writing = writer.submit(save, job, result)
            del group, job, result
        if writing is not None:
            collect(writing)
            writing = None
    finally:
        if loaders is not None:
            loaders.shutdown(wait=True, cancel_futures=True)
        # Let a write in progress complete: outputs and records stay consistent.
        writer.shutdown(wait=True)
        progress.close()
        logs.close()
    dataset.finish(state.records(keys))
    summary.wall_time_s = time.perf_counter() - started
    return summary
