"""The dataset runner: a prefetching pipeline around one refiner.

Per image, three stages run concurrently on different images:

1. **load** (``workers`` background threads, up to ``prefetch`` images ahead): decode
   the image and the coarse masks, turning bad input into statuses. PIL, OpenCV and
   pycocotools release the GIL while decoding, so threads overlap with model compute;
2. **refine** (the calling thread): the model;
3. **save** (one writer thread): encode and write the outputs atomically, then the
   image's journal record (see :mod:`samrefiner.runner.state`).

At most ``prefetch`` loaded images and one image being written are held at a time, so
memory does not grow with the number of images.
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
from samrefiner.runner.state import RunState
from samrefiner.runner.status import REFINE_ERROR, is_bad_input
from samrefiner.types import RefineResult

log = logging.getLogger("samrefiner.runner")


@dataclass(frozen=True)
class RunOptions:
    """How a dataset is run.

    Attributes:
        workers: background loader threads (0: load in the calling thread).
        prefetch: images loaded ahead of the model (>= 1).
        progress: show a tqdm progress bar on stderr.
    """

    workers: int = 2
    prefetch: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {self.prefetch}")


def log_problems(record: ImageRecord, dataset_name: str) -> None:
    """Log every bad input of a record, naming the image and the object."""
    if record.image_status is not None and is_bad_input(record.image_status):
        log.warning("%s %s: %s: %s", dataset_name, record.key, record.image_status, record.message)
    for obj in record.objects:
        if is_bad_input(obj.status) and obj.status != record.image_status:
            log.warning(
                "%s %s, object %s: %s: %s",
                dataset_name,
                record.key,
                obj.id,
                obj.status,
                obj.message,
            )
        for warning in obj.warnings:
            log.warning(
                "%s %s, object %s: %s: %s",
                dataset_name,
                record.key,
                obj.id,
                warning,
                obj.message or "fixed up and refined",
            )


def _refine(refiner: RefinerLike, job: Job) -> RefineResult | None:
    if not job.refinable:
        return None
    assert job.image is not None
    try:
        if job.first_prompts is not None:
            return refiner.refine(job.image, job.masks, first_prompts=job.first_prompts)
        return refiner.refine(job.image, job.masks)
    except ValueError as exc:
        # The refiner validates its input and names what is wrong; anything else is a
        # bug and stops the run (the state keeps what was done).
        job.image_status = REFINE_ERROR
        job.message = str(exc)
        return None


class _Progress:
    """tqdm bar with images/s (the bar's rate), masks/s and ETA."""

    def __init__(self, total: int, initial: int, enabled: bool, name: str) -> None:
        self.bar = None
        self.masks = 0
        self.start = time.perf_counter()
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                unit="img",
                desc=f"samrefiner {name}",
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self, record: ImageRecord) -> None:
        self.masks += sum(o.refined for o in record.objects)
        if self.bar is not None:
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.masks / elapsed:.1f} masks/s", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    keys = dataset.keys()
    summary = RunSummary(images_total=len(keys))
    orphans = dataset.orphans()
    if orphans:
        # Objects that belong to no image (e.g. COCO annotations of unknown images).
        orphan_record = ImageRecord("(no image)", orphans)
        log_problems(orphan_record, dataset.name)
        summary.add(orphan_record, counts_as_image=False)
    todo: list[str] = []
    for key in keys:
        if state.is_done(key):
            summary.add(state.read(key), resumed=True)
        else:
            todo.append(key)
    progress = _Progress(len(keys), len(keys) - len(todo), options.progress, dataset.name)

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

    # Mine the first round's prompts in the loaders, overlapping the model's work on the
    # previous image (refiners without the hook, and elastic boxes, skip this).
    excavate = getattr(refiner, "first_round_prompts", None) if loaders is not None else None

    def prepare(key: str) -> Job:
        job = dataset.load(key)
        if excavate is not None and job.refinable:
            try:
                job.first_prompts = excavate(job.masks)
            except ValueError:
                job.first_prompts = None  # refine() reports the problem with its status
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
        for _ in range(options.prefetch if loaders else 1):
            submit_next()
        while pending:
            job = pending.popleft().result()
            submit_next()
            result = _refine(refiner, job)
            if writing is not None:
                collect(writing)
            writing = writer.submit(save, job, result)
            del job, result
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
