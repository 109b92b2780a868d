"""The Ray engine: the runner's own stages, run by Ray Data across processes and machines.

:func:`run_dataset_ray` does what :func:`~samrefiner.runner.pipeline.run_dataset` does,
with the same :class:`~samrefiner.runner.base.Dataset` and the same per-image functions,
but runs them as a Ray Data pipeline:

1. the driver lists the images not yet done in the state folder (as the local engine);
2. **load** (CPU actors, each holding one copy of the dataset): ``Dataset.load`` decodes
   the image and its coarse masks, turning bad input into statuses;
3. **refine** (a pool of ``workers`` actors, each loading the model once; one per GPU
   with ``num_gpus_per_worker=1``): :func:`~samrefiner.runner.stages.refine_jobs`,
   the local engine's refinement of a group of images (batched encoder, the first
   round's prompts mined on a thread while the model runs);
4. **save** (CPU actors): ``Dataset.save`` writes the image's outputs atomically;
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

import contextlib
import json
import logging
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from samrefiner.runner.base import Dataset, Job, RefinerLike
from samrefiner.runner.records import ImageRecord, RunSummary
from samrefiner.runner.stages import Progress, refine_jobs, report, start_summary
from samrefiner.runner.state import RunState

log = logging.getLogger("samrefiner.runner")

#: What a user installs to get this engine.
RAY_EXTRA = "pip install 'samrefiner[ray]'"


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or an ImportError naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(f"the ray engine needs Ray Data: {RAY_EXTRA}") from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run goes.

    Attributes:
        address: Ray cluster to use. None starts a local Ray for the run (or uses the
            one this process already started); ``"auto"`` joins the cluster this machine
            belongs to (``ray start`` / ``ray up``); ``"ray://host:10001"`` or
            ``"host:6379"`` a given one.
        workers: refining actors (each loads the model once). None: one per
            ``num_gpus_per_worker`` GPUs of the cluster, or 1 without GPUs.
        num_gpus_per_worker: GPUs reserved by each refining actor (0: CPU actors;
            fractions share a GPU between actors).
        cpus_per_worker: CPUs reserved by each refining actor (its excavation threads).
        io_workers: most actors in each of the load and save stages.
        io_cpus: CPUs reserved by each load / save actor.
        progress: show a tqdm progress bar on stderr (Ray Data's own bars are hidden).
    """

    address: str | None = None
    workers: int | None = None
    num_gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    io_workers: int = 2
    io_cpus: float = 0.5
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or None, got {self.workers}")
        if self.num_gpus_per_worker < 0:
            raise ValueError(f"num_gpus_per_worker must be >= 0, got {self.num_gpus_per_worker}")
        if self.cpus_per_worker < 0 or self.io_cpus < 0:
            raise ValueError("cpus_per_worker and io_cpus must be >= 0")
        if self.io_workers < 1:
            raise ValueError(f"io_workers must be >= 1, got {self.io_workers}")

    def actor_count(self, cluster_gpus: float) -> int:
        """Refining actors for a cluster with ``cluster_gpus`` GPUs (see ``workers``)."""
        if self.workers is not None:
            return self.workers
        if self.num_gpus_per_worker > 0:
            count = int(cluster_gpus // self.num_gpus_per_worker)
            if count < 1:
                raise ValueError(
                    f"the Ray cluster has {cluster_gpus:g} GPUs, fewer than the "
                    f"{self.num_gpus_per_worker:g} one worker needs (--num-gpus-per-worker)"
                )
            return count
        return 1


class _Shared:
    """A large object put once in Ray's object store, fetched once per actor."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def get(self) -> Any:
        return import_ray().get(self.ref)


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class _Load:
    """Load stage: ``{"key"}`` rows to ``{"key", "job"}`` rows (a pickled :class:`Job`)."""

    def __init__(self, dataset: _Shared) -> None:
        self.dataset: Dataset = dataset.get()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        keys = [str(k) for k in batch["key"]]
        return {"key": keys, "job": [_dumps(self.dataset.load(k)) for k in keys]}


class _Refine:
    """Refine stage: ``{"key", "job"}`` rows to ``{"key", "done"}`` rows (job and result).

    Each actor builds its refiner once, with ``make_refiner()``, in its own process.
    """

    def __init__(self, make_refiner: Callable[[], RefinerLike]) -> None:
        self.refiner = make_refiner()
        self.miner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="excavate")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        jobs: list[Job] = [pickle.loads(b) for b in batch["job"]]
        results = refine_jobs(self.refiner, jobs, self.miner)
        return {
            "key": [job.key for job in jobs],
            "done": [_dumps((job, result)) for job, result in zip(jobs, results, strict=True)],
        }


class _Save:
    """Save stage: writes an image's outputs; ``{"key", "record"}`` rows (record JSON)."""

    def __init__(self, dataset: _Shared) -> None:
        self.dataset: Dataset = dataset.get()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        records = []
        for blob in batch["done"]:
            job, result = pickle.loads(blob)
            records.append(json.dumps(self.dataset.save(job, result).to_dict()))
        return {"key": [str(k) for k in batch["key"]], "record": records}


@contextlib.contextmanager
def _connected(ray: Any, address: str | None) -> Any:
    """Ray initialised for the run; shut down afterwards only if this call started it."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address, include_dashboard=False, log_to_driver=True)
    try:
        yield
    finally:
        ray.shutdown()


def run_dataset_ray(
    dataset: Dataset,
    make_refiner: Callable[[], RefinerLike],
    state: RunState,
    options: RayOptions | None = None,
    *,
    encoder_batch: int = 1,
    on_record: Callable[[ImageRecord], None] | None = None,
) -> RunSummary:
    """Refine every image of ``dataset`` not yet done in ``state`` on Ray, then finish it.

    Args:
        dataset: the format adapter (pickled once to the load and save actors).
        make_refiner: picklable function building the refiner, called once in each
            refining actor (e.g. ``functools.partial(build_refiner, args)``).
        state: an opened :class:`RunState` (see :meth:`RunState.start`).
        options: cluster address and pool sizes (defaults of :class:`RayOptions`).
        encoder_batch: images per refining call; the refiner encodes them together
            (see :func:`~samrefiner.runner.stages.refine_jobs`).
        on_record: called in the driver with each new record once it is saved.

    Returns:
        The run's summary (resumed images included), as the local engine's.
    """
    ray = import_ray()
    options = options or RayOptions()
    if encoder_batch < 1:
        raise ValueError(f"encoder_batch must be >= 1, got {encoder_batch}")
    started = time.perf_counter()
    keys, todo, summary = start_summary(dataset, state)
    progress = Progress(len(keys), len(keys) - len(todo), options.progress, dataset.name)
    with _connected(ray, options.address):
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.verbose_stats_logs = False
        if todo:
            actors = options.actor_count(float(ray.cluster_resources().get("GPU", 0.0)))
            shared = _Shared(ray.put(dataset))
            io_pool = ray.data.ActorPoolStrategy(min_size=1, max_size=options.io_workers)
            rows = (
                ray.data.from_items([{"key": k} for k in todo], override_num_blocks=len(todo))
                .map_batches(
                    _Load,
                    fn_constructor_args=(shared,),
                    batch_size=1,
                    compute=io_pool,
                    num_cpus=options.io_cpus,
                )
                .map_batches(
                    _Refine,
                    fn_constructor_args=(make_refiner,),
                    batch_size=encoder_batch,
                    compute=ray.data.ActorPoolStrategy(size=actors),
                    num_cpus=options.cpus_per_worker,
                    num_gpus=options.num_gpus_per_worker,
                )
                .map_batches(
                    _Save,
                    fn_constructor_args=(shared,),
                    batch_size=1,
                    compute=io_pool,
                    num_cpus=options.io_cpus,
                )
            )
            try:
                for row in rows.iter_rows():
                    record = ImageRecord.from_dict(json.loads(row["record"]))
                    state.write(record)  # after the outputs, as the local engine
                    report(record, dataset.name)
                    summary.add(record)
                    progress.update(record)
                    if on_record is not None:
                        on_record(record)
            finally:
                progress.close()
        else:
            progress.close()
    dataset.finish(state.records(keys))
    summary.wall_time_s = time.perf_counter() - started
    return summary
