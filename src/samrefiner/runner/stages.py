"""The per-image stages every engine runs: plan, refine (a group of images), report.

The local engine (:mod:`samrefiner.runner.pipeline`) and the Ray engine
(:mod:`samrefiner.runner.ray_engine`) differ only in where these run; results therefore
do not depend on the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future

from samrefiner.models.base import ImageEmbedding
from samrefiner.runner.base import Dataset, Job, RefinerLike
from samrefiner.runner.records import ImageRecord, RunSummary
from samrefiner.runner.state import RunState
from samrefiner.runner.status import REFINE_ERROR, is_bad_input
from samrefiner.types import RefineResult

log = logging.getLogger("samrefiner.runner")

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


def start_summary(dataset: Dataset, state: RunState) -> tuple[list[str], list[str], RunSummary]:
    """The run's keys, those still to do, and a summary holding the resumed ones.

    Objects that belong to no image (:meth:`Dataset.orphans`) are reported and counted.
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


def prepare_first_prompts(refiner: RefinerLike, job: Job) -> None:
    """Mine the first round's prompts of ``job`` into ``job.first_prompts``, if the
    refiner can (``first_round_prompts``); a problem is left to ``refine`` to report."""
    excavate = getattr(refiner, "first_round_prompts", None)
    if excavate is None or not job.refinable or job.first_prompts is not None:
        return
    try:
        job.first_prompts = excavate(job.masks)
    except ValueError:
        job.first_prompts = None


def refine_job(
    refiner: RefinerLike, job: Job, embedding: ImageEmbedding | None = None
) -> RefineResult | None:
    """Refine one image's masks; None when there is nothing to refine.

    Input the refiner rejects (ValueError, naming the problem) becomes the image status
    :data:`~samrefiner.runner.status.REFINE_ERROR`; anything else is a bug and is raised.
    """
    if not job.refinable:
        return None
    assert job.image is not None
    kwargs: dict[str, object] = {}
    if job.first_prompts is not None:
        kwargs["first_prompts"] = job.first_prompts
    if embedding is not None:
        kwargs["embedding"] = embedding
    try:
        return refiner.refine(job.image, job.masks, **kwargs)  # type: ignore[call-arg]
    except ValueError as exc:
        job.image_status = REFINE_ERROR
        job.message = str(exc)
        return None


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
        # One image the encoder rejects: each is refined alone and reports its own status.
        log.debug("batched encoding failed (%s); encoding one image at a time", exc)
        return embeddings
    for i, embedding in zip(todo, encoded, strict=True):
        embeddings[i] = embedding
    return embeddings


def refine_jobs(
    refiner: RefinerLike, jobs: Sequence[Job], executor: Executor | None = None
) -> list[RefineResult | None]:
    """Refine a group of images: one call of the encoder for all, then each image.

    With an ``executor`` the first round's prompts of every image are mined on its
    threads while the model encodes the group and refines the images before it.
    Results are those of :func:`refine_job` on each job alone when the group has one
    image (and, on the CPU, for any group: see :data:`CPU_ENCODER_BATCH`).

    Args:
        refiner: the refiner (``encode_batch`` is used when it has one).
        jobs: the images, in order.
        executor: threads for the first round's excavation (None: none).
    """
    mining: list[Future[None] | None] = [
        executor.submit(prepare_first_prompts, refiner, job) if executor is not None else None
        for job in jobs
    ]
    embeddings = _encode_together(refiner, jobs)
    results: list[RefineResult | None] = []
    for job, embedding, mined in zip(jobs, embeddings, mining, strict=True):
        if mined is not None:
            mined.result()
        results.append(refine_job(refiner, job, embedding))
    return results


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
