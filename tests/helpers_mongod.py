"""A private ``mongod`` for the tests of FiftyOne datasets: bound to 127.0.0.1 on a port
reserved before FiftyOne is imported, with its own temporary ``--dbpath``, stopped and
removed afterwards."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


class MongodError(RuntimeError):
    """``mongod`` did not start; the message says what failed."""


@dataclass
class PortReservation:
    """A localhost TCP port, held by a bound (not listening) socket until ``release``, so
    that no other process is given it in the meantime."""

    port: int
    holder: socket.socket | None

    @property
    def uri(self) -> str:
        return f"mongodb://{HOST}:{self.port}/"

    def release(self) -> None:
        if self.holder is not None:
            self.holder.close()
            self.holder = None


def reserve_port() -> PortReservation:
    """A free localhost port, held until released."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((HOST, 0))
    return PortReservation(holder.getsockname()[1], holder)


@contextmanager
def running_mongod(
    mongod: str | Path, reservation: PortReservation, *, timeout: float = 60.0
) -> Iterator[subprocess.Popen]:
    """Run ``mongod`` on the reserved port, bound to 127.0.0.1 only, with a temporary
    ``--dbpath``; yield the process once it accepts connections (waiting at most
    ``timeout`` seconds). Afterwards, also on errors, the process is stopped (terminate,
    wait, kill) and the directory removed. Raises MongodError when it does not start."""
    root = Path(tempfile.mkdtemp(prefix="samrefiner-mongod-"))
    dbpath, log, out = root / "db", root / "mongod.log", root / "mongod.out"
    dbpath.mkdir()
    command = [
        str(mongod),
        "--bind_ip",
        HOST,
        "--port",
        str(reservation.port),
        "--dbpath",
        str(dbpath),
        "--logpath",
        str(log),
        "--nounixsocket",
        "--wiredTigerCacheSizeGB",
        "0.25",
    ]
    process = None
    try:
        reservation.release()
        with out.open("wb") as sink:
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
                )
            except OSError as exc:
                raise MongodError(f"{mongod} cannot run: {exc}") from exc
        _wait_until_accepting(process, reservation.port, timeout, log, out)
        yield process
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(root, ignore_errors=True)


def stop(process: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM (mongod shuts down cleanly), then SIGKILL after ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_accepting(
    process: subprocess.Popen, port: int, timeout: float, log: Path, out: Path
) -> None:
    """Until this mongod logs that it waits for connections on ``port`` (a connection
    test alone could reach another server on a port taken in the meantime)."""
    deadline = time.monotonic() + timeout
    while not any(
        entry.get("msg") == "Waiting for connections" and entry.get("attr", {}).get("port") == port
        for entry in _log_entries(log)
    ):
        code = process.poll()
        if code is not None:
            raise MongodError(
                f"mongod exited with code {code} before accepting connections on "
                f"{HOST}:{port}: {_last_error(log, out)}"
            )
        if time.monotonic() > deadline:
            raise MongodError(
                f"mongod did not accept connections on {HOST}:{port} within "
                f"{timeout:g} s: {_last_error(log, out)}"
            )
        time.sleep(0.1)


def _log_entries(log: Path) -> list[dict]:
    """mongod's JSON log (one object a line; a line being written is skipped)."""
    if not log.is_file():
        return []
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _last_error(log: Path, out: Path) -> str:
    """The last error (or fatal) message of mongod's log, else the last line it printed."""
    for entry in reversed(_log_entries(log)):
        if entry.get("s") in ("E", "F"):
            return f"{entry.get('msg', '')} {json.dumps(entry.get('attr', {}))}"
    printed = [line.strip() for line in out.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(printed) if line), "no message")
