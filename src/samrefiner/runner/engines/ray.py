"""The Ray engine: the runner's own stages, run by Ray Data across processes and machines.

:func:`run_dataset_ray` does what :func:`~samrefiner.runner.engines.local.run_dataset` does,
with the same :class:`~samrefiner.runner.dataset.Dataset` and the same per-image functions,
but runs them as a Ray Data pipeline:

1. the driver lists the images not yet done in the state folder (as the local engine);
2. **load** (CPU actors, each reading the dataset once): ``Dataset.load`` decodes the
   image and its coarse masks, turning bad input into statuses;
3. **refine** (a pool of ``workers`` actors, each loading the model once; one per GPU
   with ``num_gpus_per_worker=1``): the local engine's refinement of a group of images
   (batched encoder, the first round's prompts mined on a thread while the model runs):
   :func:`~samrefiner.runner.engines.steps.refine_jobs` on CPU actors,
   :class:`~samrefiner.runner.engines.lanes.RefineLanes` on GPU ones (the encoder of one batch
   runs while earlier batches are refined);
4. **save** (CPU tasks): ``Dataset.save`` writes the image's outputs atomically;
5. the driver writes each image's journal record (after its outputs, as locally),
   reports bad input, keeps the summary and, at the end, calls ``Dataset.finish``.

Jobs and results travel between stages as pickled bytes: the engine never looks inside
them. Outputs and the state folder must therefore be on storage every node can reach (a
shared file system), like the inputs (paths, or URIs, see :mod:`samrefiner.io.uri`).

Faults: Ray restarts an actor whose process dies and runs its batch again (Ray Data's
defaults: ``max_restarts=-1``, ``max_task_retries=-1``); as outputs are written
atomically and records only after them, a retried image ends exactly as a first try. A
killed driver leaves the state folder; ``--resume`` continues from it.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# The generic Ray plumbing lives in samrefiner.cluster; its names stay importable here.
from samrefiner.cluster import (
    DEFAULT_CONNECT_TIMEOUT_S,
    RAY_CLIENT_EXTRA,
    RAY_CLIENT_PORT,
    RAY_EXTRA,
    ClusterError,
    RayOptions,
    Shared,
    WorkerSetupError,
    actor_setup_errors,
    check_address,
    check_room,
    connected,
    dumps,
    has_ray_client,
    import_ray,
    in_order,
    map_on_actors,
)
from samrefiner.io.errors import set_command_line_spelling, spelling_is_command_line
from samrefiner.io.images import image_pixel_limit
from samrefiner.runner.dataset import Dataset, Job, RefinerLike
from samrefiner.runner.engines.lanes import RefineLanes, lanes_for
from samrefiner.runner.engines.steps import DEFAULT_FRAME_BYTES, encoder_batch_for, refine_jobs
from samrefiner.runner.journal.records import ImageRecord, RunSummary
from samrefiner.runner.journal.state import RunState
from samrefiner.runner.options import RunOptions
from samrefiner.runner.progress import Progress, finish_dataset, log_problems, start_summary

log = logging.getLogger("samrefiner.runner")

__all__ = [
    "CALLS_PER_ACTOR_WITH_LANES",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "RAY_CLIENT_EXTRA",
    "RAY_CLIENT_PORT",
    "RAY_EXTRA",
    "ClusterError",
    "RayOptions",
    "WorkerSetupError",
    "actor_setup_errors",
    "check_address",
    "check_room",
    "connected",
    "has_ray_client",
    "import_ray",
    "map_on_actors",
    "run_dataset_ray",
]


class _Load:
    """Load stage: ``{"key"}`` rows to ``{"key", "job"}`` rows (a pickled :class:`Job`).

    An actor pool of its own, not tasks: Ray Data would fuse load tasks into the refining
    actors, and images would then be decoded on the GPU's time. ``max_image_pixels`` is
    the run's image limit (:attr:`~samrefiner.runner.options.RunOptions.max_image_pixels`),
    applied to each read (:func:`~samrefiner.io.images.image_pixel_limit`);
    ``command_line`` whether the driver's messages name flags
    (:func:`~samrefiner.io.errors.said`), so a bad image reads the same on every engine.
    """

    def __init__(self, dataset: Shared, max_image_pixels: int | None, command_line: bool) -> None:
        self.dataset: Dataset = dataset.get()
        self.max_image_pixels = max_image_pixels
        set_command_line_spelling(command_line)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        keys = [str(k) for k in batch["key"]]
        with image_pixel_limit(self.max_image_pixels):
            jobs = [dumps(self.dataset.load(k)) for k in keys]
        return {"key": keys, "job": jobs}


def _save(batch: dict[str, Any], dataset: Shared) -> dict[str, Any]:
    """Save stage: writes each image's outputs; ``{"key", "record"}`` rows (record JSON)."""
    target: Dataset = dataset.get()
    records = []
    for blob in batch["done"]:
        job, result = pickle.loads(blob)
        records.append(json.dumps(target.save(job, result).to_dict()))
    return {"key": [str(k) for k in batch["key"]], "record": records}


#: Batches a refining actor with lanes works on at once: while the lanes refine one,
#: the encoder runs on the next (see :class:`~samrefiner.runner.engines.lanes.RefineLanes`).
CALLS_PER_ACTOR_WITH_LANES = 3


class _Refine:
    """Refine stage: ``{"key", "job"}`` rows to ``{"key", "done"}`` rows (job and result).

    Each actor builds its refiner once, with ``make_refiner()``, in its own process, with
    ``torch_threads`` intra-op threads (see :attr:`RayOptions.torch_threads`). With
    ``lanes`` (GPU actors), each batch is one encoder group of the actor's
    :class:`~samrefiner.runner.engines.lanes.RefineLanes`, and the actor takes
    :data:`CALLS_PER_ACTOR_WITH_LANES` batches at once; without, it refines one batch
    after another, as the local engine on the CPU.
    """

    def __init__(
        self,
        make_refiner: Callable[[], RefinerLike],
        frame_bytes: int,
        torch_threads: int,
        lanes: int,
    ) -> None:
        import torch

        torch.set_num_threads(torch_threads)
        self.refiner = make_refiner()
        self.frame_bytes = frame_bytes
        # Lanes mine the first prompts on a thread of their own; without, the miner does.
        self.lanes = RefineLanes(self.refiner, lanes, frame_bytes) if lanes else None
        self.miner = None if lanes else ThreadPoolExecutor(1, thread_name_prefix="excavate")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        jobs: list[Job] = [pickle.loads(b) for b in batch["job"]]
        if self.lanes is None:
            results = refine_jobs(self.refiner, jobs, self.frame_bytes, self.miner)
        else:
            results = [future.result() for future in self.lanes.submit(jobs)]
        return {
            "key": [job.key for job in jobs],
            "done": [dumps((job, result)) for job, result in zip(jobs, results, strict=True)],
        }


def run_dataset_ray(
    dataset: Dataset,
    make_refiner: Callable[[], RefinerLike],
    state: RunState,
    options: RunOptions | RayOptions | None = None,
    *,
    on_record: Callable[[ImageRecord], None] | None = None,
    encoder_batch: int | None = None,
    refine_threads: int | None = None,
    frame_bytes: int | None = None,
) -> RunSummary:
    """Refine every image of ``dataset`` not yet done in ``state`` on Ray, then finish it.

    Args:
        dataset: the format adapter (put once in the object store, read once by each
            load actor and each worker process running save tasks).
        make_refiner: picklable function building the refiner, called once in each
            refining actor (e.g. a :class:`~samrefiner.runner.spec.RefinerSpec`'s
            ``build``).
        state: an opened :class:`RunState` (see :meth:`RunState.start`).
        options: the run's options, the same object as the local engine's:
            ``encoder_batch`` (images per refining call, encoded together; None:
            automatic, for GPU actors or CPU ones,
            :func:`~samrefiner.runner.engines.steps.encoder_batch_for`), ``refine_threads``
            (refining lanes of each actor; None: automatic,
            :func:`~samrefiner.runner.engines.lanes.lanes_for`), ``frame_bytes``,
            ``max_image_pixels``, ``progress``, and ``ray``, the cluster address and pool
            sizes (None: the defaults of :class:`RayOptions`); ``workers`` and
            ``prefetch`` are the local engine's. The older form, a :class:`RayOptions`
            with ``encoder_batch``, ``refine_threads`` and ``frame_bytes`` as keywords
            (and PIL's process-wide image limit), still works.
        on_record: called in the driver with each new record once it is saved.

    Returns:
        The run's summary (resumed images included), as the local engine's.
    """
    import torch

    run = _run_options(options, encoder_batch, refine_threads, frame_bytes)
    ray_options = run.ray or RayOptions()
    threads = ray_options.torch_threads or torch.get_num_threads()
    started = time.perf_counter()
    keys, todo, summary = start_summary(dataset, state)
    progress = Progress(len(keys), len(keys) - len(todo), run.progress, dataset.name)
    with connected(ray_options.address, ray_options.connect_timeout_s) as ray:
        if todo:
            resources = ray.cluster_resources()
            cluster_gpus = float(resources.get("GPU", 0.0))
            actors = ray_options.actor_count(cluster_gpus)
            gpus = ray_options.gpus_per_actor(cluster_gpus)
            check_room(ray_options, actors, gpus, resources)
            device = "cuda" if gpus > 0 else "cpu"
            group_size = encoder_batch_for(device, run.encoder_batch)
            lanes = lanes_for(device, run.refine_threads)
            refine_pool = (
                ray.data.ActorPoolStrategy(
                    size=actors,
                    max_concurrent_calls_per_actor=CALLS_PER_ACTOR_WITH_LANES,
                    enable_true_multi_threading=True,
                )
                if lanes
                else ray.data.ActorPoolStrategy(size=actors)
            )
            shared = Shared(ray.put(dataset))
            # Records reach the driver in the images' order, as in the local engine: the
            # summary's float sums then add up in the same order (the outputs do not
            # depend on it). Images are still refined in parallel; only records wait.
            with in_order(ray):
                rows = (
                    ray.data.from_items([{"key": k} for k in todo], override_num_blocks=len(todo))
                    .map_batches(
                        _Load,
                        fn_constructor_args=(
                            shared,
                            run.max_image_pixels,
                            spelling_is_command_line(),
                        ),
                        batch_size=1,
                        compute=ray.data.ActorPoolStrategy(
                            min_size=1, max_size=ray_options.io_workers
                        ),
                        num_cpus=ray_options.io_cpus,
                    )
                    .map_batches(
                        _Refine,
                        fn_constructor_args=(make_refiner, run.frame_bytes, threads, lanes),
                        batch_size=group_size,
                        compute=refine_pool,
                        num_cpus=ray_options.cpus_per_worker,
                        num_gpus=gpus,
                    )
                    .map_batches(
                        _save,
                        fn_args=(shared,),
                        batch_size=1,
                        compute=ray.data.TaskPoolStrategy(size=ray_options.io_workers),
                        num_cpus=ray_options.io_cpus,
                    )
                )
                try:
                    for row in rows.iter_rows():
                        record = ImageRecord.from_dict(json.loads(row["record"]))
                        state.write(record)  # after the outputs, as the local engine
                        log_problems(record, dataset.name)
                        summary.add(record)
                        progress.update(record)
                        if on_record is not None:
                            on_record(record)
                finally:
                    progress.close()
        else:
            progress.close()
    finish_dataset(dataset, state, keys, summary)
    summary.wall_time_s = time.perf_counter() - started
    return summary


def _run_options(
    options: RunOptions | RayOptions | None,
    encoder_batch: int | None,
    refine_threads: int | None,
    frame_bytes: int | None,
) -> RunOptions:
    """The :class:`RunOptions` of :func:`run_dataset_ray`'s arguments (either form)."""
    if isinstance(options, RunOptions):
        if (encoder_batch, refine_threads, frame_bytes) != (None, None, None):
            raise TypeError(
                "encoder_batch, refine_threads and frame_bytes are fields of RunOptions: "
                "give them there"
            )
        return options
    from PIL import Image

    ray_options = options or RayOptions()
    return RunOptions(
        progress=ray_options.progress,
        frame_bytes=DEFAULT_FRAME_BYTES if frame_bytes is None else frame_bytes,
        encoder_batch=encoder_batch,
        refine_threads=refine_threads,
        max_image_pixels=Image.MAX_IMAGE_PIXELS,
        ray=ray_options,
    )
