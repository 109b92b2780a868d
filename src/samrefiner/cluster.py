"""Generic Ray plumbing: options, the cluster check, the connection and a pool of actors.

Below both the dataset runner's Ray engine (:mod:`samrefiner.runner.engines.ray`) and
adaption's embedding pass (:mod:`samrefiner.adaption.ray_embed`), neither of which it
knows: :class:`RayOptions` says where and how wide a run goes, :func:`check_address`
refuses a cluster address that cannot work before Ray is asked to connect,
:func:`connected` initialises Ray for a run, :func:`map_on_actors` runs any per-item
pass on a pool of actors, and :func:`actor_setup_errors` turns an actor whose
constructor raised into one line. Ray itself is imported lazily (:func:`import_ray`):
importing this module needs no Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import ipaddress
import logging
import os
import pickle
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from samrefiner.extras import install_hint
from samrefiner.io.errors import said

#: What a user installs to run on Ray (the ray engine, adapt's Ray pass).
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
                    f"{per_actor:g} one worker needs "
                    f"({said('num_gpus_per_worker', '--num-gpus-per-worker')})"
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
            f"has {cpus:g} (use fewer {said('workers', '--workers')} or a smaller "
            f"{said('cpus_per_worker', '--cpus-per-worker')})"
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


def raised_message(text: str) -> str:
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
            f"{what} could not be loaded on a Ray worker: {raised_message(str(exc))}"
        ) from exc
    finally:
        ray_data_log.removeFilter(not_setup_error)


class Shared:
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


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


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
        return {"result": [dumps(r) for r in results]}


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
            [{"item": dumps(item)} for item in items], override_num_blocks=max(1, len(items))
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
def in_order(ray: Any) -> Iterator[None]:
    """Ray Data keeps the rows' order for datasets built inside (the setting is taken
    when a dataset is built); ``ray`` is the module :func:`connected` yields."""
    execution = ray.data.DataContext.get_current().execution_options
    before, execution.preserve_order = execution.preserve_order, True
    try:
        yield
    finally:
        execution.preserve_order = before
