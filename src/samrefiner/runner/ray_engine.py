"""The Ray engine: the runner's own stages, run by Ray Data across processes and machines.

:func:`run_dataset_ray` does what :func:`~samrefiner.runner.pipeline.run_dataset` does,
with the same :class:`~samrefiner.runner.base.Dataset` and the same per-image functions,
but runs them as a Ray Data pipeline:

1. the driver lists the images not yet done in the state folder (as the local engine);
2. **load** (CPU actors, each reading the dataset once): ``Dataset.load`` decodes the
   image and its coarse masks, turning bad input into statuses;
3. **refine** (a pool of ``workers`` actors, each loading the model once; one per GPU
   with ``num_gpus_per_worker=1``): the local engine's refinement of a group of images
   (batched encoder, the first round's prompts mined on a thread while the model runs):
   :func:`~samrefiner.runner.refining.refine_jobs` on CPU actors,
   :class:`~samrefiner.runner.lanes.RefineLanes` on GPU ones (the encoder of one batch
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

import contextlib
import dataclasses
import importlib.util
import ipaddress
import json
import logging
import os
import pickle
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

from samrefiner.extras import install_hint
from samrefiner.runner.base import Dataset, Job, RefinerLike
from samrefiner.runner.lanes import RefineLanes, lanes_for
from samrefiner.runner.pipeline import Progress, log_problems, start_summary
from samrefiner.runner.records import ImageRecord, RunSummary
from samrefiner.runner.refining import DEFAULT_FRAME_BYTES, encoder_batch_for, refine_jobs
from samrefiner.runner.state import RunState

log = logging.getLogger("samrefiner.runner")

#: What a user installs to get this engine.
RAY_EXTRA = install_hint("ray")
#: What a user installs to reach a cluster at a ``ray://`` address (Ray Client, which
#: needs ``grpcio``; the ``ray`` extra installs Ray Data only).
RAY_CLIENT_EXTRA = "pip install 'ray[client]'"
#: Default of :attr:`RayOptions.connect_timeout_s`.
DEFAULT_CONNECT_TIMEOUT_S = 30.0
#: Port of a ``ray://HOST`` address without one (Ray Client's default).
RAY_CLIENT_PORT = 10001
#: HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113, 3.4): the
#: gRPC servers behind a Ray address (the GCS, the Ray Client server) answer it with a
#: SETTINGS frame of their own; a service of another kind does not.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4


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
            fractions share a GPU between actors). None: 1 when the cluster has GPUs,
            else 0.
        cpus_per_worker: CPUs reserved by each refining actor (its excavation threads).
        io_workers: most load actors, and most save tasks at once.
        io_cpus: CPUs reserved by each load actor and save task.
        progress: show a tqdm progress bar on stderr (Ray Data's own bars are hidden).
        torch_threads: torch's intra-op threads in each refining actor. None: the
            driver's (``torch.get_num_threads()``), which the local engine would use on
            this machine: on the CPU, matrix products may round differently with
            another thread count (the last digit of a predicted IoU), and Ray would
            otherwise give an actor as many threads as CPUs it reserved.
        connect_timeout_s: most seconds to wait for the cluster at ``address`` to accept
            a connection (see :func:`check_address`) before the run is refused.
    """

    address: str | None = None
    workers: int | None = None
    num_gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    io_workers: int = 2
    io_cpus: float = 0.5
    progress: bool = True
    torch_threads: int | None = None
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or None, got {self.workers}")
        if self.num_gpus_per_worker is not None and self.num_gpus_per_worker < 0:
            raise ValueError(f"num_gpus_per_worker must be >= 0, got {self.num_gpus_per_worker}")
        if self.cpus_per_worker < 0 or self.io_cpus < 0:
            raise ValueError("cpus_per_worker and io_cpus must be >= 0")
        if self.io_workers < 1:
            raise ValueError(f"io_workers must be >= 1, got {self.io_workers}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1 or None, got {self.torch_threads}")

    def gpus_per_actor(self, cluster_gpus: float) -> float:
        """GPUs each refining actor reserves on a cluster with ``cluster_gpus`` GPUs."""
        if self.num_gpus_per_worker is not None:
            return self.num_gpus_per_worker
        return 1.0 if cluster_gpus > 0 else 0.0

    def actor_count(self, cluster_gpus: float) -> int:
        """Refining actors for a cluster with ``cluster_gpus`` GPUs (see ``workers``)."""
        if self.workers is not None:
            return self.workers
        per_actor = self.gpus_per_actor(cluster_gpus)
        if per_actor > 0:
            count = int(cluster_gpus // per_actor)
            if count < 1:
                raise ClusterError(
                    f"the Ray cluster has {cluster_gpus:g} GPUs, fewer than the "
                    f"{per_actor:g} one worker needs (--num-gpus-per-worker)"
                )
            return count
        return 1


class ClusterError(ValueError):
    """The Ray cluster cannot run the job (unreachable, or too few GPUs)."""


def check_room(options: RayOptions, actors: int, gpus: float, resources: dict[str, float]) -> None:
    """Refuse a plan the cluster cannot hold: the refining actors stay alive for the whole
    run, so if they took every CPU the load and save stages would wait forever.

    Raises:
        ClusterError: naming what is missing.
    """
    cpus = float(resources.get("CPU", 0.0))
    need = actors * options.cpus_per_worker + 2 * options.io_cpus
    if need > cpus + 1e-9:
        raise ClusterError(
            f"{actors} refining workers of {options.cpus_per_worker:g} CPUs plus a load actor "
            f"and a save task of {options.io_cpus:g} CPUs need {need:g} CPUs; the Ray cluster "
            f"has {cpus:g} (use fewer --workers or a smaller --cpus-per-worker)"
        )
    if actors * gpus > float(resources.get("GPU", 0.0)) + 1e-9:
        raise ClusterError(
            f"{actors} refining workers of {gpus:g} GPUs need {actors * gpus:g} GPUs; the Ray "
            f"cluster has {float(resources.get('GPU', 0.0)):g}"
        )


def has_ray_client() -> bool:
    """True when the Ray Client's dependency (``grpcio``) is installed."""
    return importlib.util.find_spec("grpc") is not None


def check_address(address: str | None, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout_s`` seconds, a cluster address that cannot work, before
    Ray is asked to connect (Ray itself retries an address nobody answers at for
    minutes).

    ``None``, ``"auto"`` and ``"local"`` are Ray's to resolve and pass. A ``ray://``
    address needs the Ray Client installed (:data:`RAY_CLIENT_EXTRA`). The host and port
    must then answer as a gRPC server does (Ray's are) within ``timeout_s``; with Ray's
    TLS on (``RAY_USE_TLS``), accepting a connection is enough. A loopback host also
    passes when this machine's address does: Ray connects to that one.

    Raises:
        ClusterError: one line naming the address and what is wrong.
    """
    if address is None or address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    if client and not has_ray_client():
        raise ClusterError(
            f"Ray cluster address {address!r} needs the Ray Client, which is not installed: "
            f"{RAY_CLIENT_EXTRA}"
        )
    rest = address[len("ray://") :] if client else address
    host, colon, port_text = rest.rpartition(":")
    if client and not colon:
        host, port_text = rest, str(RAY_CLIENT_PORT)
    host = host.strip("[]")  # an IPv6 literal: [::1]:6379
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ClusterError(
            f"Ray cluster address {address!r} is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'"
        )
    deadline = time.monotonic() + timeout_s
    reason = "nothing answers"
    for candidate in _hosts_to_try(host):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.create_connection((candidate, int(port_text)), timeout=left) as sock:
                if _answers_grpc(sock, deadline):
                    return
                reason = "the service there is not a Ray cluster (no gRPC answer)"
        except socket.gaierror:
            reason = f"unknown host {host!r}"
        except TimeoutError:
            reason = f"nothing answered within {timeout_s:g} s"
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
    raise ClusterError(f"no Ray cluster at {address!r}: {reason}")


def _answers_grpc(sock: socket.socket, deadline: float) -> bool:
    """True when the server on ``sock`` answers HTTP/2's preface with a SETTINGS frame
    before ``deadline`` (always, with Ray's TLS on: its handshake is Ray's business).

    Raises:
        TimeoutError: no answer before ``deadline``.
    """
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return True
    sock.settimeout(max(deadline - time.monotonic(), 1e-3))
    sock.sendall(_HTTP2_PREFACE)
    header = b""
    while len(header) < 9:  # a frame header: length (3 bytes), type, flags, stream id
        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        chunk = sock.recv(9 - len(header))
        if not chunk:
            return False
        header += chunk
    return header[3] == _HTTP2_SETTINGS


def _hosts_to_try(host: str) -> list[str]:
    """``host``, and for a loopback host this machine's address (Ray connects there)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return [host]
    import ray.util

    return [host, ray.util.get_node_ip_address()]


class WorkerSetupError(ClusterError):
    """An actor could not build what it runs (its model): the run cannot go on."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: (.+)$")


def _raised_message(text: str) -> str:
    """The message of the exception a traceback's text ends with, on one line, without
    the exception's name (the text after the last frame and its source lines)."""
    lines = _ANSI.sub("", text).splitlines()
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    rest = lines[frames[-1] + 1 :] if frames else lines
    while rest and (not rest[0].strip() or rest[0][:1].isspace()):
        rest = rest[1:]  # the frame's source line and its ^^^ marks
    message = " ".join(line.strip() for line in rest if line.strip())
    found = _EXCEPTION_LINE.match(message)
    return found.group(1) if found else message or "unknown error"


@contextlib.contextmanager
def actor_setup_errors(what: str) -> Iterator[None]:
    """Turn Ray's error for an actor whose constructor raised (the model it loads could
    not be built there) into one :class:`WorkerSetupError` line naming ``what`` and the
    constructor's own message, instead of Ray's stack. Ray Data does not start such an
    actor again: the run ends at the first one.

    Ray Data logs that error's whole stack in the driver as one of its own ("internal
    code"); those records are left out while it is handled here (the actor's own output,
    which Ray forwards to the driver, still shows its stack).
    """
    ray = import_ray()

    def not_setup_error(record: logging.LogRecord) -> bool:
        # Ray Data logs while it handles the exception, in this thread.
        exc = sys.exc_info()[1]
        return not (isinstance(exc, ray.exceptions.RayActorError) and exc.actor_init_failed)

    ray_data_log = logging.getLogger("ray.data.exceptions")
    ray_data_log.addFilter(not_setup_error)
    try:
        yield
    except ray.exceptions.RayActorError as exc:
        if not exc.actor_init_failed:
            raise
        raise WorkerSetupError(
            f"{what} could not be loaded on a Ray worker: {_raised_message(str(exc))}"
        ) from exc
    finally:
        ray_data_log.removeFilter(not_setup_error)


class _Shared:
    """A large object put once in Ray's object store, read once per worker process.

    Ray reuses worker processes between tasks: the save tasks of one process share one
    copy of the dataset instead of deserialising it for every image (load actors read it
    once each).
    """

    _cache: ClassVar[dict[str, Any]] = {}

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def get(self) -> Any:
        key = self.ref.hex()
        if key not in self._cache:
            self._cache.clear()  # one run at a time per worker process
            self._cache[key] = import_ray().get(self.ref)
        return self._cache[key]


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class _Load:
    """Load stage: ``{"key"}`` rows to ``{"key", "job"}`` rows (a pickled :class:`Job`).

    An actor pool of its own, not tasks: Ray Data would fuse load tasks into the refining
    actors, and images would then be decoded on the GPU's time. ``max_image_pixels`` is
    the driver's decoding limit (PIL's, a process setting).
    """

    def __init__(self, dataset: _Shared, max_image_pixels: int | None) -> None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max_image_pixels
        self.dataset: Dataset = dataset.get()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        keys = [str(k) for k in batch["key"]]
        return {"key": keys, "job": [_dumps(self.dataset.load(k)) for k in keys]}


def _save(batch: dict[str, Any], dataset: _Shared) -> dict[str, Any]:
    """Save stage: writes each image's outputs; ``{"key", "record"}`` rows (record JSON)."""
    target: Dataset = dataset.get()
    records = []
    for blob in batch["done"]:
        job, result = pickle.loads(blob)
        records.append(json.dumps(target.save(job, result).to_dict()))
    return {"key": [str(k) for k in batch["key"]], "record": records}


#: Batches a refining actor with lanes works on at once: while the lanes refine one,
#: the encoder runs on the next (see :class:`~samrefiner.runner.lanes.RefineLanes`).
CALLS_PER_ACTOR_WITH_LANES = 3


class _Refine:
    """Refine stage: ``{"key", "job"}`` rows to ``{"key", "done"}`` rows (job and result).

    Each actor builds its refiner once, with ``make_refiner()``, in its own process, with
    ``torch_threads`` intra-op threads (see :attr:`RayOptions.torch_threads`). With
    ``lanes`` (GPU actors), each batch is one encoder group of the actor's
    :class:`~samrefiner.runner.lanes.RefineLanes`, and the actor takes
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
            "done": [_dumps((job, result)) for job, result in zip(jobs, results, strict=True)],
        }


@contextlib.contextmanager
def connected(address: str | None, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """Ray, initialised for a run: the running one in this process, else a new connection
    to ``address`` (None: a local Ray), shut down on exit. Yields the ``ray`` module.

    Raises:
        ClusterError: no cluster answers at ``address`` (within ``timeout_s`` seconds,
            see :func:`check_address`).
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        check_address(address, timeout_s)
        try:
            ray.init(address=address, include_dashboard=False)
        except ConnectionError as exc:
            raise ClusterError(f"no Ray cluster at {address!r}: {exc}") from exc
    ray.data.DataContext.get_current().enable_progress_bars = False  # the engine has its own
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


class _Apply:
    """Stage of :func:`map_on_actors`: ``{"item"}`` rows to ``{"result"}`` rows (pickled)."""

    def __init__(self, make_worker: Callable[[], Callable[[list[Any]], list[Any]]]) -> None:
        self.worker = make_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = [pickle.loads(b) for b in batch["item"]]
        results = self.worker(items)
        if len(results) != len(items):
            raise RuntimeError(f"a worker returned {len(results)} results for {len(items)} items")
        return {"result": [_dumps(r) for r in results]}


def map_on_actors(
    items: Sequence[Any],
    make_worker: Callable[[], Callable[[list[Any]], list[Any]]],
    options: RayOptions | None = None,
    *,
    batch_size: int = 1,
) -> Iterator[Any]:
    """Run ``worker(batch) -> results`` over ``items`` on a pool of Ray actors.

    The generic form of the refine stage, for other per-image passes over a dataset
    (e.g. computing the image embeddings of an adaption run on every GPU of a cluster):
    each actor calls ``make_worker()`` once (load the model there), then the worker gets
    batches of up to ``batch_size`` items and returns one picklable result per item.
    Actors get ``options``' GPUs and CPUs; a dead actor is restarted and its batch run
    again, so a worker must be safe to run twice on an item (write atomically).

    Yields:
        The results as they finish (not in the items' order).
    """
    options = options or RayOptions()
    with connected(options.address, options.connect_timeout_s) as ray:
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
        actors = options.actor_count(cluster_gpus)
        gpus = options.gpus_per_actor(cluster_gpus)
        check_room(dataclasses.replace(options, io_cpus=0.0), actors, gpus, ray.cluster_resources())
        rows = ray.data.from_items(
            [{"item": _dumps(item)} for item in items], override_num_blocks=max(1, len(items))
        ).map_batches(
            _Apply,
            fn_constructor_args=(make_worker,),
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=options.cpus_per_worker,
            num_gpus=gpus,
        )
        for row in rows.iter_rows():
            yield pickle.loads(row["result"])


@contextlib.contextmanager
def _in_order(ray: Any) -> Iterator[None]:
    """Ray Data keeps the rows' order for datasets built inside (the setting is taken
    when a dataset is built)."""
    execution = ray.data.DataContext.get_current().execution_options
    before, execution.preserve_order = execution.preserve_order, True
    try:
        yield
    finally:
        execution.preserve_order = before


def run_dataset_ray(
    dataset: Dataset,
    make_refiner: Callable[[], RefinerLike],
    state: RunState,
    options: RayOptions | None = None,
    *,
    encoder_batch: int | None = None,
    refine_threads: int | None = None,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    on_record: Callable[[ImageRecord], None] | None = None,
) -> RunSummary:
    """Refine every image of ``dataset`` not yet done in ``state`` on Ray, then finish it.

    Args:
        dataset: the format adapter (put once in the object store, read once by each
            load actor and each worker process running save tasks).
        make_refiner: picklable function building the refiner, called once in each
            refining actor (e.g. ``functools.partial(build_refiner, args)``).
        state: an opened :class:`RunState` (see :meth:`RunState.start`).
        options: cluster address and pool sizes (defaults of :class:`RayOptions`).
        encoder_batch: images per refining call, encoded together (see
            :func:`~samrefiner.runner.refining.refine_jobs`); None: automatic, for GPU
            actors or CPU ones (:func:`~samrefiner.runner.refining.encoder_batch_for`).
        refine_threads: refining lanes of each actor (see
            :attr:`~samrefiner.runner.pipeline.RunOptions.refine_threads`); None:
            automatic, for GPU actors or CPU ones
            (:func:`~samrefiner.runner.lanes.lanes_for`).
        frame_bytes: as :attr:`~samrefiner.runner.pipeline.RunOptions.frame_bytes`.
        on_record: called in the driver with each new record once it is saved.

    Returns:
        The run's summary (resumed images included), as the local engine's.
    """
    import torch
    from PIL import Image

    options = options or RayOptions()
    threads = options.torch_threads or torch.get_num_threads()
    started = time.perf_counter()
    keys, todo, summary = start_summary(dataset, state)
    progress = Progress(len(keys), len(keys) - len(todo), options.progress, dataset.name)
    with connected(options.address, options.connect_timeout_s) as ray:
        if todo:
            resources = ray.cluster_resources()
            cluster_gpus = float(resources.get("GPU", 0.0))
            actors = options.actor_count(cluster_gpus)
            gpus = options.gpus_per_actor(cluster_gpus)
            check_room(options, actors, gpus, resources)
            device = "cuda" if gpus > 0 else "cpu"
            group_size = encoder_batch_for(device, encoder_batch)
            lanes = lanes_for(device, refine_threads)
            refine_pool = (
                ray.data.ActorPoolStrategy(
                    size=actors,
                    max_concurrent_calls_per_actor=CALLS_PER_ACTOR_WITH_LANES,
                    enable_true_multi_threading=True,
                )
                if lanes
                else ray.data.ActorPoolStrategy(size=actors)
            )
            shared = _Shared(ray.put(dataset))
            # Records reach the driver in the images' order, as in the local engine: the
            # summary's float sums then add up in the same order (the outputs do not
            # depend on it). Images are still refined in parallel; only records wait.
            with _in_order(ray):
                rows = (
                    ray.data.from_items([{"key": k} for k in todo], override_num_blocks=len(todo))
                    .map_batches(
                        _Load,
                        fn_constructor_args=(shared, Image.MAX_IMAGE_PIXELS),
                        batch_size=1,
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=options.io_workers),
                        num_cpus=options.io_cpus,
                    )
                    .map_batches(
                        _Refine,
                        fn_constructor_args=(make_refiner, frame_bytes, threads, lanes),
                        batch_size=group_size,
                        compute=refine_pool,
                        num_cpus=options.cpus_per_worker,
                        num_gpus=gpus,
                    )
                    .map_batches(
                        _save,
                        fn_args=(shared,),
                        batch_size=1,
                        compute=ray.data.TaskPoolStrategy(size=options.io_workers),
                        num_cpus=options.io_cpus,
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
    dataset.finish(state.records(keys))
    summary.wall_time_s = time.perf_counter() - started
    return summary
