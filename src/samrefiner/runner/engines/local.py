"""The dataset runner: a prefetching pipeline around one refiner.

Per image, three stages run concurrently on different images:

1. **load** (``workers`` background threads, up to ``prefetch`` images ahead): decode
   the image and the coarse masks, turning bad input into statuses, and mine the first
   round's prompts. PIL, OpenCV, pycocotools and the distance transforms release the
   GIL, so threads overlap with model compute;
2. **refine**: the model, on groups of ``encoder_batch`` images (one pass of the
   encoder for the group, then each image). On the CPU the calling thread refines one
   group after another (:func:`~samrefiner.runner.engines.steps.refine_jobs`); on
   CUDA devices the encoder of the next group runs while ``refine_threads`` lanes
   refine the previous one (:class:`~samrefiner.runner.engines.lanes.RefineLanes`);
3. **save** (one writer thread): encode and write the outputs atomically, then the
   image's journal record (see :mod:`samrefiner.runner.journal.state`).

At most ``max(prefetch, encoder_batch)`` loaded images, the groups handed to the model
(one without lanes; with lanes at most three: waiting, being encoded, being refined)
and one image being written are held at a time, so memory does not grow with the
number of images.

The per-image functions (:mod:`samrefiner.runner.engines.steps`, and
:mod:`samrefiner.runner.progress`) are also the stages of the Ray engine
(:mod:`samrefiner.runner.engines.ray`): engines differ only in where they run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor

from samrefiner.io.images import image_pixel_limit
from samrefiner.runner.dataset import CroppedResult, Dataset, Job, RefinerLike
from samrefiner.runner.engines.lanes import RefineLanes, lanes_for
from samrefiner.runner.engines.steps import (
    device_type,
    encoder_batch_for,
    prepare_prompts,
    refine_jobs,
)
from samrefiner.runner.journal.records import ImageRecord, RunSummary
from samrefiner.runner.journal.state import RunState
from samrefiner.runner.options import RunOptions
from samrefiner.runner.progress import Progress, finish_dataset, log_problems, start_summary

log = logging.getLogger("samrefiner.runner")

# Progress, log_problems, start_summary (runner.progress) and RunOptions (runner.options)
# stay listed: this module is also the old samrefiner.runner.pipeline, which defined them.
__all__ = ["Progress", "RunOptions", "log_problems", "run_dataset", "start_summary"]


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
        options: workers, prefetch, progress bar, image limit (defaults of
            :class:`RunOptions`; its ``ray`` is not read: see :func:`run_dataset_ray`).
        on_record: called with each new record once it is saved (tests use it to
            simulate a crash).

    Returns:
        The run's summary (resumed images included).
    """
    options = options or RunOptions()
    started = time.perf_counter()
    keys, todo, summary = start_summary(dataset, state)
    progress = Progress(len(keys), len(keys) - len(todo), options.progress, dataset.name)
    device = device_type(refiner)
    group_size = encoder_batch_for(device, options.encoder_batch)
    lane_count = lanes_for(device, options.refine_threads)

    def save(job: Job, result: CroppedResult | None) -> ImageRecord:
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
    lanes = RefineLanes(refiner, lane_count, options.frame_bytes) if lane_count else None
    writing: Future[ImageRecord] | None = None

    # Mine the first round's prompts in the loaders, overlapping the model's work on the
    # previous image (refiners without the hook, and elastic boxes, skip this).
    def prepare(key: str) -> Job:
        with image_pixel_limit(options.max_image_pixels):
            job = dataset.load(key)
        if loaders is not None:
            job.first_prompts = prepare_prompts(refiner, job, options.frame_bytes)
        return job

    window = max(options.prefetch, group_size) if loaders else group_size
    groups = _groups(_loaded(todo, prepare, loaders, window), group_size)
    if lanes is None:
        refined = _one_after_another(refiner, groups, options.frame_bytes)
    else:
        refined = _overlapped(lanes, groups, ahead=2 * group_size)

    logs = contextlib.ExitStack()
    if options.progress:
        # Warnings go through tqdm while the bar is shown, so they do not break it.
        from tqdm.contrib.logging import logging_redirect_tqdm

        logs.enter_context(logging_redirect_tqdm())
    try:
        for job, result in refined:
            if writing is not None:
                collect(writing)
            writing = writer.submit(save, job, result)
            del job, result
        if writing is not None:
            collect(writing)
            writing = None
    finally:
        refined.close()  # stops the loaders' generator: no new image is loaded
        if lanes is not None:
            lanes.close(cancel=True)  # images not refined yet are dropped (resume redoes them)
        if loaders is not None:
            loaders.shutdown(wait=True, cancel_futures=True)
        # Let a write in progress complete: outputs and records stay consistent.
        writer.shutdown(wait=True)
        progress.close()
        logs.close()
    finish_dataset(dataset, state, keys, summary)
    summary.wall_time_s = time.perf_counter() - started
    return summary


def _loaded(
    keys: list[str],
    prepare: Callable[[str], Job],
    loaders: ThreadPoolExecutor | None,
    window: int,
) -> Generator[Job, None, None]:
    """The prepared jobs of ``keys`` in order, loaded up to ``window`` images ahead on
    ``loaders`` (in the calling thread without)."""
    if loaders is None:
        for key in keys:
            yield prepare(key)
        return
    pending: deque[Future[Job]] = deque()
    remaining = iter(keys)
    try:
        for key in remaining:
            pending.append(loaders.submit(prepare, key))
            if len(pending) >= window:
                break
        while pending:
            job = pending.popleft().result()
            key = next(remaining, None)
            if key is not None:
                pending.append(loaders.submit(prepare, key))
            yield job
    finally:
        for future in pending:
            future.cancel()


def _groups(jobs: Generator[Job, None, None], size: int) -> Generator[list[Job], None, None]:
    """Consecutive groups of ``size`` jobs (the last one may be smaller)."""
    group: list[Job] = []
    try:
        for job in jobs:
            group.append(job)
            if len(group) == size:
                yield group
                group = []
        if group:
            yield group
    finally:
        jobs.close()


def _one_after_another(
    refiner: RefinerLike, groups: Generator[list[Job], None, None], frame_bytes: int
) -> Generator[tuple[Job, CroppedResult | None], None, None]:
    """Each group refined in the calling thread (:func:`refine_jobs`), in order."""
    try:
        for group in groups:
            results = refine_jobs(refiner, group, frame_bytes)
            yield from zip(group, results, strict=True)
            del group, results
    finally:
        groups.close()


def _overlapped(
    lanes: RefineLanes, groups: Generator[list[Job], None, None], ahead: int
) -> Generator[tuple[Job, CroppedResult | None], None, None]:
    """Each group submitted to ``lanes`` as soon as it is loaded, while at most ``ahead``
    images wait for their results; the results in order."""
    pending: deque[tuple[Job, Future[CroppedResult | None]]] = deque()
    try:
        for group in groups:
            pending.extend(zip(group, lanes.submit(group), strict=True))
            while len(pending) > ahead:
                job, future = pending.popleft()
                yield job, future.result()
        while pending:
            job, future = pending.popleft()
            yield job, future.result()
    finally:
        groups.close()
