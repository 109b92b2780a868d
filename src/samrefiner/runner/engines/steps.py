"""The per-image refinement of the runner, as plain functions of a refiner and jobs.

These are the steps every engine runs, wherever it runs them: the local runner
(:mod:`samrefiner.runner.engines.local`), its overlapped lanes
(:mod:`samrefiner.runner.engines.lanes`) and the Ray actors (:mod:`samrefiner.runner.engines.ray`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from samrefiner.mixed import refine_objects
from samrefiner.runner.dataset import CroppedResult, Job, RefinerLike
from samrefiner.runner.journal.status import REFINE_ERROR

if TYPE_CHECKING:  # torch is imported by the refiner, not by the runner's command line
    from samrefiner.models.base import ImageEmbedding
    from samrefiner.zoom import Crop

log = logging.getLogger("samrefiner.runner")

#: Default of :attr:`~samrefiner.runner.options.RunOptions.frame_bytes`.
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


def batch_size(job: Job, frame_bytes: int) -> int:
    """Masks of ``job`` whose full-frame stack fits ``frame_bytes`` (at least one)."""
    h, w = job.masks.shape
    return max(1, frame_bytes // max(1, h * w))


def batches(job: Job, frame_bytes: int) -> list[range]:
    """Consecutive ranges of ``job``'s masks whose full-frame stacks fit ``frame_bytes``."""
    per = batch_size(job, frame_bytes)
    n = len(job.masks)
    return [range(start, min(n, start + per)) for start in range(0, n, per)]


def prepare_prompts(refiner: RefinerLike, job: Job, frame_bytes: int) -> list[Any] | None:
    """First-round prompts of ``job``'s masks, mined batch by batch (None when the
    refiner cannot mine them ahead, e.g. with the elastic box). Objects refined from
    their box get None: their first round is the box."""
    excavate = getattr(refiner, "first_round_prompts", None)
    if excavate is None or not job.refinable:
        return None
    is_box = job.from_box
    prompts: list[Any] = []
    for part in batches(job, frame_bytes):
        by_mask = [i for i in part if not is_box[i]]
        if not by_mask:
            prompts.extend([None] * len(part))
            continue
        try:
            found = excavate(job.masks.stack(by_mask))
        except ValueError:
            return None  # refine() reports the problem with its status
        if found is None:
            return None
        mined = dict(zip(by_mask, found, strict=True))
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
    ``N x H x W``. Crop-zoom's crops are planned once for the whole image (a refiner
    with ``plan_crops``, see :meth:`samrefiner.Refiner.plan_crops`): the objects of a
    crop go to the refiner together (in batches of the same size), the others in
    batches on the whole image, so that ``max_crops`` is per image. Results do not
    depend on the batching: each object ends as one ``refine`` call with all of the
    image's objects would end it (an image with masks and boxes takes a call of each
    kind; both are given the image's plan). ``embedding``: the image's, when it was
    encoded already (:func:`refine_jobs`).

    Returns:
        None when there is nothing to refine, or when the refiner rejected the input
        (then ``job.image_status`` is ``refine_error`` and ``job.message`` says why).
    """
    if not job.refinable:
        return None
    assert job.image is not None
    is_box = np.asarray(job.from_box, dtype=bool)
    try:
        calls = _refine_calls(job, frame_bytes, _zoom_plan(refiner, job))
        # refine_objects makes one refiner call per kind (masks, boxes) of each of these.
        on_whole_image = sum(len(set(is_box[call.rows])) for call in calls if not call.crops)
        if embedding is None and on_whole_image > 1 and hasattr(refiner, "encode"):
            embedding = refiner.encode(job.image)  # type: ignore[attr-defined]
        parts = []
        for call in calls:
            result = refine_objects(
                refiner,
                job.image,
                job.masks.subset(call.rows),
                None if job.boxes is None else job.boxes[call.rows],
                is_box[call.rows],
                embedding=embedding,
                first_prompts=(
                    None if job.first_prompts is None else [job.first_prompts[i] for i in call.rows]
                ),
                crops=call.crops,
            )
            parts.append((call.rows, CroppedResult.from_results(job.masks.shape, [result])))
            del result
        return CroppedResult.scatter(len(job.masks), parts)
    except ValueError as exc:
        # The refiner validates its input and names what is wrong; anything else is a
        # bug and stops the run (the state keeps what was done).
        job.image_status = REFINE_ERROR
        job.message = str(exc)
        return None


@dataclass(frozen=True)
class _Call:
    """One :func:`~samrefiner.mixed.refine_objects` call of an image.

    Attributes:
        rows: the objects refined (indices of ``job.masks``, increasing).
        crops: the crop-zoom crops given to the call (members index ``rows``; empty:
            every object on the whole image), or None: the refiner plans them itself.
    """

    rows: list[int]
    crops: list[Crop] | None = None


def _zoom_plan(refiner: RefinerLike, job: Job) -> list[Crop] | None:
    """The image's crop-zoom plan, made once for all its objects; None when the refiner
    cannot make one (it then plans each call's crops itself)."""
    plan = getattr(refiner, "plan_crops", None)
    if plan is None:
        return None
    masks = job.masks
    crops: list[Crop] = plan([masks.bbox(k) for k in range(len(masks))], masks.shape)
    return crops


def _refine_calls(job: Job, frame_bytes: int, plan: list[Crop] | None) -> list[_Call]:
    """The calls of ``job``: without a plan, consecutive batches (:func:`batches`); with
    one, the objects on the whole image in batches, then each crop's objects."""
    if plan is None:
        return [_Call(list(part)) for part in batches(job, frame_bytes)]
    per = batch_size(job, frame_bytes)
    on_crops = {i for crop in plan for i in crop.members}
    whole = [i for i in range(len(job.masks)) if i not in on_crops]
    calls = [_Call(whole[start : start + per], []) for start in range(0, len(whole), per)]
    for crop in plan:
        members = list(crop.members)
        for start in range(0, len(members), per):
            rows = members[start : start + per]
            calls.append(_Call(rows, [dataclasses.replace(crop, members=tuple(range(len(rows))))]))
    return calls


def encode_together(
    refiner: RefinerLike, jobs: Sequence[Job], *, single: bool = False
) -> list[ImageEmbedding | None]:
    """Embeddings of the refinable jobs' images, encoded in one call (None for others).

    Images are left to :func:`refine_job` (None) when fewer than two are refinable,
    unless ``single``: then a lone image is encoded here too (``refiner.encode``, as
    ``refine`` would), so that the caller decides where every encoder pass runs.
    """
    embeddings: list[ImageEmbedding | None] = [None] * len(jobs)
    encode_batch = getattr(refiner, "encode_batch", None)
    encode = getattr(refiner, "encode", None)
    todo = [i for i, job in enumerate(jobs) if job.refinable]
    if single and len(todo) == 1 and encode is not None:
        embeddings[todo[0]] = encode(jobs[todo[0]].image)
        return embeddings
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


def mine_first_prompts(refiner: RefinerLike, job: Job, frame_bytes: int) -> None:
    """Set ``job.first_prompts`` (:func:`prepare_prompts`) unless it has them already."""
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
    where :data:`CPU_ENCODER_BATCH` is 1, every run does). A refiner with
    ``refine_whole_job(job)`` (a video sequence per job) refines each job with it.
    """
    whole_jobs = getattr(refiner, "refine_whole_job", None)
    if whole_jobs is not None:
        # A refiner of whole jobs (samrefiner.runner.formats.video: one job is one
        # sequence) refines each job itself; it sets the job's status on bad input.
        return [whole_jobs(job) for job in jobs]
    mining: list[Future[None] | None] = [
        executor.submit(mine_first_prompts, refiner, job, frame_bytes)
        if executor is not None
        else None
        for job in jobs
    ]
    embeddings = encode_together(refiner, jobs)
    results: list[CroppedResult | None] = []
    for job, embedding, mined in zip(jobs, embeddings, mining, strict=True):
        if mined is not None:
            mined.result()
        results.append(refine_job(refiner, job, frame_bytes, embedding))
    return results
