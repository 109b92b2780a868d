"""Refinement at encoder speed: the encoder runs ahead while lanes refine.

On an accelerator the image encoder is the only large piece of model work; each round
of an image's refinement is a small decoder call between pieces of CPU work (prompt
mining, pasting masks, Python). Refined one image after another, the device idles
during the CPU work and the CPU idles during the encoder. :class:`RefineLanes` overlaps
them:

- one **encoder** thread encodes each submitted group of images in one pass
  (``encode_batch``) while the first round's prompts of the group are mined on a
  **miner** thread;
- ``lanes`` **refining** threads refine encoded images, several at once, so that the
  CPU work of one image runs while the device decodes another's prompts.

On a CUDA device each thread issues its work on a CUDA stream of its own, so the
encoder's kernels and the lanes' decoder kernels queue independently (a thread waits
for its own stream only, see :func:`own_stream`); the lanes' streams have the higher
priority, so that a lane's small decoder call does not wait behind the encoder's queue.
An image's result does not depend on the lanes: it is refined by
:func:`~samrefiner.runner.engines.steps.refine_job` with the embedding of its group's encoder
pass, exactly as the serial runner does.

Both engines use it: the local runner (:func:`~samrefiner.runner.engines.local.run_dataset`)
and each Ray refining actor (:mod:`samrefiner.runner.engines.ray`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from samrefiner.config import available_cores
from samrefiner.runner.dataset import CroppedResult, Job, RefinerLike
from samrefiner.runner.engines.steps import (
    DEFAULT_FRAME_BYTES,
    encode_together,
    mine_first_prompts,
    refine_job,
)

if TYPE_CHECKING:
    from samrefiner.models.base import ImageEmbedding

#: Automatic refining lanes on CUDA devices (at most one per CPU core). Elsewhere the
#: automatic choice is 0 (no lanes: refine one image after another, see
#: :func:`lanes_for`): on the CPU the encoder and the refinement share the same cores,
#: and other accelerators' PyTorch backends are not safe to drive from several threads.
ACCELERATOR_LANES = 4

_streams = threading.local()


def lanes_for(device_type: str, requested: int | None = None) -> int:
    """Refining lanes on a ``device_type`` device (``requested`` when given).

    0 means no overlap: the caller refines each group itself (the serial runner).
    """
    if requested is not None:
        if requested < 0:
            raise ValueError(f"refine threads must be >= 0, got {requested}")
        return requested
    if device_type != "cuda":
        return 0
    return max(1, min(ACCELERATOR_LANES, available_cores()))


def own_stream(device: Any, *, urgent: bool = False) -> contextlib.AbstractContextManager[Any]:
    """Make this thread's work on a CUDA ``device`` go to a stream of the thread's own.

    ``urgent``: a high-priority stream, whose queued kernels the GPU starts before those
    of normal streams (the lanes' small decoder calls go before the encoder's next
    kernels, so a lane waits for the device as little as possible while the encoder
    fills the gaps). Elsewhere (CPU, MPS, no device) a no-op. The stream is created once
    per thread, device and priority, and kept for the thread's life.
    """
    if getattr(device, "type", None) != "cuda":
        return contextlib.nullcontext()
    import torch

    streams: dict[Any, Any] = _streams.__dict__.setdefault("by_device", {})
    key = (device, urgent)
    if key not in streams:
        streams[key] = torch.cuda.Stream(device=device, priority=-1 if urgent else 0)
    return torch.cuda.stream(streams[key])


def _wait_for_device(device: Any) -> None:
    """Wait until this thread's current stream on ``device`` has finished its work."""
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.current_stream(device).synchronize()


class RefineLanes:
    """Refines groups of loaded images: the encoder of one group runs while earlier
    groups are refined on ``lanes`` threads.

    Args:
        refiner: the refiner (``encode``, ``encode_batch`` and ``refine``; one without
            ``encode`` has each image encoded inside its ``refine`` call, on its lane).
        lanes: refining threads (>= 1).
        frame_bytes: as :attr:`~samrefiner.runner.options.RunOptions.frame_bytes`.

    Use as a context manager, or call :meth:`close`. :meth:`submit` may be called from
    several threads (the Ray actor's concurrent calls); each call is one encoder pass.

    Example::

        with RefineLanes(refiner, lanes=4) as lanes:
            futures = lanes.submit(group)        # one encoder pass for the group
            results = [f.result() for f in futures]
    """

    def __init__(self, refiner: RefinerLike, lanes: int, frame_bytes: int | None = None) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.refiner = refiner
        self.lanes = lanes
        self.frame_bytes = DEFAULT_FRAME_BYTES if frame_bytes is None else frame_bytes
        self.device = getattr(getattr(refiner, "model", None), "device", None)
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="samrefiner-encoder")
        self._miner = ThreadPoolExecutor(1, thread_name_prefix="samrefiner-miner")
        self._lanes = ThreadPoolExecutor(lanes, thread_name_prefix="samrefiner-lane")
        self._unfinished: set[Future[CroppedResult | None]] = set()

    def __enter__(self) -> RefineLanes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, cancel: bool = False) -> None:
        """Finish (or, with ``cancel``, drop) the submitted images and stop the threads.

        Dropped images' futures are cancelled; images already being refined finish.
        """
        self._encoder.shutdown(wait=True, cancel_futures=cancel)
        self._miner.shutdown(wait=True, cancel_futures=cancel)
        self._lanes.shutdown(wait=True, cancel_futures=cancel)
        for future in list(self._unfinished):
            future.cancel()

    def submit(self, jobs: Sequence[Job]) -> list[Future[CroppedResult | None]]:
        """Queue one group of loaded images (encoded together); their results' futures.

        A future's result is :func:`~samrefiner.runner.engines.steps.refine_job`'s for that
        job; an error of the encoder or of the refinement (a bug: bad input has a
        status) is raised by the futures it concerns.
        """
        futures: list[Future[CroppedResult | None]] = [Future() for _ in jobs]
        for future in futures:
            self._unfinished.add(future)
            future.add_done_callback(self._unfinished.discard)
        if jobs:
            self._encoder.submit(self._encode, list(jobs), futures)
        return futures

    def _encode(self, jobs: list[Job], futures: list[Future[CroppedResult | None]]) -> None:
        mined = [
            self._miner.submit(mine_first_prompts, self.refiner, job, self.frame_bytes)
            for job in jobs
        ]
        try:
            with own_stream(self.device):
                embeddings = encode_together(self.refiner, jobs, single=True)
                # The lanes use the embeddings on their own streams.
                _wait_for_device(self.device)
        except BaseException as exc:  # the group's futures carry it to the caller
            for future in futures:
                future.set_exception(exc)
            return
        for job, embedding, mining, future in zip(jobs, embeddings, mined, futures, strict=True):
            self._lanes.submit(self._refine, job, embedding, mining, future)

    def _refine(
        self,
        job: Job,
        embedding: ImageEmbedding | None,
        mining: Future[None],
        future: Future[CroppedResult | None],
    ) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            mining.result()
            with own_stream(self.device, urgent=True):
                # refine_job reads every result back to the host (which waits for this
                # stream), so nothing of the image is left running when it returns.
                result = refine_job(self.refiner, job, self.frame_bytes, embedding)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
