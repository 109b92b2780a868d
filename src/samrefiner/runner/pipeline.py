"""The dataset runner: a prefetching pipeline around one refiner.

Per image, three stages run concurrently on different images:

1. **load** (``workers`` background threads, up to ``prefetch`` images ahead): decode
   the image and the coarse masks, turning bad input into statuses, and mine the first
   round's prompts. PIL, OpenCV, pycocotools and the distance transforms release the
   GIL, so threads overlap with model compute;
2. **refine** (the calling thread): the model, on groups of ``encoder_batch`` images
   (:func:`refine_jobs`: one pass of the encoder for the group, then each image);
3. **save** (one writer thread): encode and write the outputs atomically, then the
   image's journal record (see :mod:`samrefiner.runner.state`).

At most ``max(prefetch, encoder_batch)`` loaded images, one group being refined and one
image being written are held at a time, so memory does not grow with the number of
images.

The per-image functions here (:func:`start_summary`, :func:`prepare_prompts`,
:func:`refine_jobs`, :func:`log_problems`) are also the stages of the Ray engine
(:mod:`samrefiner.runner.ray_engine`): engines differ only in where they run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.runner.base import CroppedResult, Dataset, Job, RefinerLike
from samrefiner.runner.records import ImageRecord, RunSummary
from samrefiner.runner.state import RunState
from samrefiner.runner.status import REFINE_ERROR, is_bad_input

if TYPE_CHECKING:  # torch is imported by the refiner, not by the runner's command line
    from samrefiner.models.base import ImageEmbedding

log = logging.getLogger("samrefiner.runner")

#: Default of :attr:`RunOptions.frame_bytes`.
DEFAULT_FRAME_BYTES = 64 * 2**20
#: Automatic ``encoder_batch`` (images encoded together) on the CPU and on accelerators.
#: One on the CPU: a batch is no faster there, and results stay bit-identical to
#: :meth:`samrefiner.Refiner.refine`.
CPU_ENCODER_BATCH = 1
ACCELERATOR_ENCODER_BATCH = 8


def encoder_batch_for(device_type: str, requested: int | None = None) -> int:
    """Images encoded together on a ``device_type`` device (``requested`` when given)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"encoder batch must be >= 1, got {requested}")
        return requested
    return CPU_ENCODER_BATCH if device_type == "cpu" else ACCELERATOR_ENCODER_BATCH


def device_type(refiner: RefinerLike) -> str:
    """Type of the device the refiner's model runs on (``"cpu"`` when it does not say)."""
    device = getattr(getattr(refiner, "model", None), "device", None)
    return str(getattr(device, "type", "cpu"))


@dataclass(frozen=True)
class RunOptions:
    """How a dataset is run.

    Attributes:
        workers: background loader threads (0: load in the calling thread).
        prefetch: images loaded ahead of the model (>= 1).
        progress: show a tqdm progress bar on stderr.
        frame_bytes: most bytes of full-frame masks handed to the refiner at once (the
            masks of an image go in batches of ``frame_bytes // (H * W)``); the runner
            otherwise holds masks as box-local crops. Results do not depend on it.
        encoder_batch: images the model encodes together (None: automatic for the
            refiner's device, see :func:`encoder_batch_for`).
    """

    workers: int = 2
    prefetch: int = 4
    progress: bool = True
    frame_bytes: int = DEFAULT_FRAME_BYTES
    encoder_batch: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {self.prefetch}")
        if self.frame_bytes < 1:
            raise ValueError(f"frame_bytes must be >= 1, got {self.frame_bytes}")
        if self.encoder_batch is not None and self.encoder_batch < 1:
            raise ValueError(f"encoder_batch must be >= 1 or None, got {self.encoder_batch}")


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


def batches(job: Job, frame_bytes: int) -> list[range]:
    """Consecutive ranges of ``job``'s masks whose full-frame stacks fit ``frame_bytes``."""
    h, w = job.masks.shape
    per = max(1, frame_bytes // max(1, h * w))
    n = len(job.masks)
    return [range(start, min(n, start + per)) for start in range(0, n, per)]


def prepare_prompts(refiner: RefinerLike, job: Job, frame_bytes: int) -> list[Any] | None:
    """First-round prompts of ``job``'s masks, mined batch by batch (None when the
    refiner cannot mine them ahead, e.g. with the elastic box). Objects refined from
    their box get None: their first round is the box."""
    excavate = getattr(refiner, "first_round_prompts", None)
    if excavate is None or not job.refinable:
        return None
    prompts: list[Any] = []
    for part in batches(job, frame_bytes):
        by_mask = [rows for rows, boxed in _calls(job, part) if not boxed]
        if not by_mask:
            prompts.extend([None] * len(part))
            continue
        try:
            found = excavate(job.masks.stack(by_mask[0]))
        except ValueError:
            return None  # refine() reports the problem with its status
        if found is None:
            return None
        mined = dict(zip(by_mask[0], found, strict=True))
        prompts.extend(mined.get(i) for i in part)
    return prompts


def refine_job(
    refiner: RefinerLike,
    job: Job,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    embedding: ImageEmbedding | None = None,
) -> CroppedResult | None:
    """Refine one loaded image; the per-image step of the runner, as a plain function.

    The masks go to the refiner in batches whose full-frame stacks take at most
    ``frame_bytes`` (the image is encoded once for all of them), and each batch's
    refined masks are cropped at once: memory follows the objects' boxes, not
    ``N x H x W``. Results do not depend on the batching. ``embedding``: the image's,
    when it was encoded already (:func:`refine_jobs`).

    Returns:
        None when there is nothing to refine, or when the refiner rejected the input
        (then ``job.image_status`` is ``refine_error`` and ``job.message`` says why).
    """
    if not job.refinable:
        return None
    assert job.image is not None
    parts = batches(job, frame_bytes)
    try:
        calls = [call for part in parts for call in _calls(job, part)]
        if embedding is None and len(calls) > 1 and hasattr(refiner, "encode"):
            embedding = refiner.encode(job.image)  # type: ignore[attr-defined]
        results = []
        for rows, boxed in calls:
            kwargs: dict[str, Any] = {}
            if embedding is not None:
                kwargs["embedding"] = embedding
            if boxed:
                assert job.boxes is not None
                result = refiner.refine(job.image, boxes=job.boxes[rows], **kwargs)
            else:
                if job.first_prompts is not None:
                    kwargs["first_prompts"] = [job.first_prompts[i] for i in rows]
                result = refiner.refine(job.image, job.masks.stack(rows), **kwargs)
            results.append((rows, CroppedResult.from_results(job.masks.shape, [result])))
            del result
        return _join(job.masks.shape, results)
    except ValueError as exc:
        # The refiner validates its input and names what is wrong; anything else is a
        # bug and stops the run (the state keeps what was done).
        job.image_status = REFINE_ERROR
        job.message = str(exc)
        return None


def _calls(job: Job, part: range) -> list[tuple[list[int], bool]]:
    """The refiner calls of one batch: ``(indices, from boxes)``, masks first, then boxes."""
    is_box = job.from_box
    masks = [i for i in part if not is_box[i]]
    boxes = [i for i in part if is_box[i]]
    return [(rows, boxed) for rows, boxed in ((masks, False), (boxes, True)) if rows]


def _join(shape: tuple[int, int], parts: list[tuple[list[int], CroppedResult]]) -> CroppedResult:
    """One result from results of the calls ``(indices, result)``, in index order."""
    if len(parts) == 1:
        return parts[0][1]
    order = [(i, part, k) for indices, part in parts for k, i in enumerate(indices)]
    order.sort(key=lambda entry: entry[0])
    masks = MaskCrops(shape)
    timings: dict[str, float] = {}
    for _, part in parts:
        for stage, seconds in part.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    for _, part, k in order:
        masks.crops.append(part.masks.crops[k])
        masks.offsets.append(part.masks.offsets[k])
    return CroppedResult(
        masks,
        np.array([part.scores[k] for _, part, k in order], dtype=np.float32),
        [part.prompts[k] for _, part, k in order],
        [part.status[k] for _, part, k in order],
        np.array([part.iterations[k] for _, part, k in order], dtype=np.int64),
        timings,
        np.array([part.zoomed[k] for _, part, k in order], dtype=bool),
        [part.gate_reasons[k] for _, part, k in order],
    )


def _encode_together(refiner: RefinerLike, jobs: Sequence[Job]) -> list[ImageEmbedding | None]:
    """Embeddings of the refinable jobs' images, encoded in one call (None for others)."""
    embeddings: list[ImageEmbedding | None] = [None] * len(jobs)
    encode_batch = getattr(refiner, "encode_batch", None)
    todo = [i for i, job in enumerate(jobs) if job.refinable]
    if encode_batch is None or len(todo) < 2:
        return embeddings
    try:
        encoded = encode_batch([jobs[i].image for i in todo])
    except ValueError as exc:
        # An image the encoder rejects: each is refined alone and reports its own status.
        log.debug("batched encoding failed (%s); encoding one image at a time", exc)
        return embeddings
    for i, embedding in zip(todo, encoded, strict=True):
        embeddings[i] = embedding
    return embeddings


def _mine(refiner: RefinerLike, job: Job, frame_bytes: int) -> None:
    if job.first_prompts is None:
        job.first_prompts = prepare_prompts(refiner, job, frame_bytes)


def refine_jobs(
    refiner: RefinerLike,
    jobs: Sequence[Job],
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    executor: Executor | None = None,
) -> list[CroppedResult | None]:
    """Refine a group of loaded images: one pass of the encoder for all, then each image
    with :func:`refine_job`.

    With an ``executor``, the first round's prompts of images that have none yet are
    mined on its threads while the model encodes the group and refines the images
    before them. A group of one gives exactly :func:`refine_job`'s result (on the CPU,
    where :data:`CPU_ENCODER_BATCH` is 1, every run does).
    """
    mining: list[Future[None] | None] = [
        executor.submit(_mine, refiner, job, frame_bytes) if executor is not None else None
        for job in jobs
    ]
    embeddings = _encode_together(refiner, jobs)
    results: list[CroppedResult | None] = []
    for job, embedding, mined in zip(jobs, embeddings, mining, strict=True):
        if mined is not None:
            mined.result()
        results.append(refine_job(refiner, job, frame_bytes, embedding))
    return results


def start_summary(dataset: Dataset, state: RunState) -> tuple[list[str], list[str], RunSummary]:
    """The run's keys, those still to do, and a summary holding the resumed ones.

    Objects that belong to no image (:meth:`Dataset.orphans`, e.g. COCO annotations of
    unknown images) are reported and counted.
    """
    keys = dataset.keys()
    summary = RunSummary(images_total=len(keys))
    orphans = dataset.orphans()
    if orphans:
        orphan_record = ImageRecord("(no image)", orphans)
        log_problems(orphan_record, dataset.name)
        summary.add(orphan_record, counts_as_image=False)
    todo: list[str] = []
    for key in keys:
        if state.is_done(key):
            summary.add(state.read(key), resumed=True)
        else:
            todo.append(key)
    return keys, todo, summary


class Progress:
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
    keys, todo, summary = start_summary(dataset, state)
    progress = Progress(len(keys), len(keys) - len(todo), options.progress, dataset.name)
    group_size = encoder_batch_for(device_type(refiner), options.encoder_batch)

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
    pending: deque[Future[Job]] = deque()
    remaining = iter(todo)
    writing: Future[ImageRecord] | None = None

    # Mine the first round's prompts in the loaders, overlapping the model's work on the
    # previous image (refiners without the hook, and elastic boxes, skip this).
    def prepare(key: str) -> Job:
        job = dataset.load(key)
        if loaders is not None:
            job.first_prompts = prepare_prompts(refiner, job, options.frame_bytes)
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
            results = refine_jobs(refiner, group, options.frame_bytes)
            for job, result in zip(group, results, strict=True):
                if writing is not None:
                    collect(writing)
                writing = writer.submit(save, job, result)
            del group, results, job, result
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
