"""The state folder that makes a run resumable.

Next to the output ``OUT`` (a file or a folder) a run keeps ``OUT.samrefiner-state/``:

* ``run.json`` -- what the run is (command, inputs, options, model, refinement
  settings). ``--resume`` refuses to continue a state made with other settings;
* ``done/<hash>.json`` -- one record per finished image (its
  :class:`~samrefiner.runner.journal.records.ImageRecord`), written atomically *after* the
  image's outputs. An image with a record is done; one without is redone.

A killed run therefore loses at most the images in flight. The folder is removed when
the run completes; a run without ``--resume`` starts from an empty one.

One run per output: :class:`RunLock` holds ``OUT.samrefiner-lock`` (an OS file lock,
released by the kernel when the process ends, however it ends, and holding the process
id of its owner) for as long as the run lasts. A second run on the same output is refused
with the first one's process id; the lock left by a killed run is simply taken over.

Nothing is written through a link samrefiner did not make: a lock file, state folder or
``done/`` folder that is a symbolic link is refused (records and ``run.json`` are
replaced atomically, which replaces a link rather than writing through it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samrefiner.io.atomic import LINK_REFUSED, atomic_write_json, open_own_file
from samrefiner.io.errors import said
from samrefiner.io.schema import SchemaError
from samrefiner.runner.journal.records import ImageRecord

STATE_SUFFIX = ".samrefiner-state"
#: ``run.json``: the run's fingerprint with this kind and version (a state of another
#: version is "made with other settings": rerun without --resume).
RUN_KIND, RUN_VERSION = "run_state", 1
LOCK_SUFFIX = ".samrefiner-lock"
_RUN_FILE = "run.json"
_DONE_DIR = "done"


class StateError(ValueError):
    """A state folder that cannot be used (other settings, or not a state folder)."""


def state_dir_for(output: str | os.PathLike[str]) -> Path:
    """The state folder of the output ``output``."""
    out = Path(output)
    return out.parent / (out.name + STATE_SUFFIX)


class RunLockedError(StateError):
    """Another live run holds the output's lock."""


def lock_path_for(output: str | os.PathLike[str]) -> Path:
    """The lock file of the output ``output``."""
    out = Path(output)
    return out.parent / (out.name + LOCK_SUFFIX)


def _try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking OS lock on ``fd``; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """Exclusive ownership of an output (and its state folder) for one run.

    Use as a context manager, or :meth:`acquire` / :meth:`release`. The lock is an OS
    file lock on ``OUT.samrefiner-lock``: the kernel drops it when the owner exits, so a
    run killed with SIGKILL leaves no lock that blocks the next run (its file, naming a
    dead process, is taken over).

    Raises:
        RunLockedError: from :meth:`acquire`, when a live run holds the lock; the
            message names its process id.
        OSError: the lock file cannot be created (the output's folder is not writable),
            or is a link (never written through: see :func:`~samrefiner.io.atomic.open_own_file`).
    """

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.path = lock_path_for(output)
        self._fd: int | None = None
        self._created: list[Path] = []

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this RunLock")
        missing = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = missing  # removed again by release() when left empty
        while True:
            fd = open_own_file(self.path)  # never through a link: it is written below
            if not _try_lock(fd):
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent / self.path.name[: -len(LOCK_SUFFIX)]} is being written "
                    f"by another samrefiner run ({self._owner()}); wait for it to finish, or "
                    "stop it first"
                )
            # The holder before us may have deleted the file after we opened it: then we
            # locked a file nobody else sees, so start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd

    def _owner(self) -> str:
        try:
            pid, _, host = self.path.read_text(encoding="utf-8").strip().partition(" ")
        except (OSError, UnicodeDecodeError):
            return "process id unknown"
        return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")

    def release(self) -> None:
        """Remove the lock file and drop the lock (nothing when not held).

        Folders that :meth:`acquire` created for the lock file are removed too when the
        run left them empty: a run that failed early leaves nothing behind.
        """
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: see the check in acquire()
        os.close(self._fd)
        self._fd = None
        for folder in self._created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunState:
    """Reads and writes the state folder of one run (see the module docstring)."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.dir = state_dir_for(output)
        self._done: set[str] = set()

    @staticmethod
    def _name(key: str) -> str:
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:24] + ".json"

    def _record_path(self, key: str) -> Path:
        return self.dir / _DONE_DIR / self._name(key)

    def start(self, fingerprint: dict[str, Any], *, resume: bool) -> bool:
        """Open the state for a run described by ``fingerprint``.

        With ``resume`` an existing state is continued (after checking it was made with
        the same fingerprint); otherwise any old state is discarded.

        Returns:
            True when an existing state is continued.

        Raises:
            StateError: the existing state has another fingerprint, or the folder is
                not a state folder.
        """
        canonical = json.loads(
            json.dumps({"kind": RUN_KIND, "version": RUN_VERSION, **fingerprint}, sort_keys=True)
        )
        run_file = self.dir / _RUN_FILE
        for folder in (self.dir, self.dir / _DONE_DIR):
            if folder.is_symlink():
                raise StateError(f"{folder}: {LINK_REFUSED}")
        if self.dir.exists() and not run_file.is_file():
            raise StateError(f"{self.dir} exists but is not a samrefiner state folder")
        if resume and run_file.is_file():
            with run_file.open("r", encoding="utf-8") as handle:
                old = json.load(handle)
            if old != canonical:
                changed = sorted(
                    k for k in set(old) | set(canonical) if old.get(k) != canonical.get(k)
                )
                raise StateError(
                    f"{self.dir} was made by a run with other settings ({', '.join(changed)} "
                    f"differ); rerun {said('with resume=False', 'without --resume')} to start "
                    "over"
                )
            done_dir = self.dir / _DONE_DIR
            self._done = {p.name for p in done_dir.glob("*.json")} if done_dir.is_dir() else set()
            return True
        self.remove()
        (self.dir / _DONE_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_file, canonical)
        self._done = set()
        return False

    def is_done(self, key: str) -> bool:
        """True when ``key`` has a record."""
        return self._name(key) in self._done

    @property
    def done_count(self) -> int:
        """Images with a record (resumed ones included)."""
        return len(self._done)

    def write(self, record: ImageRecord) -> None:
        """Record a finished image (atomically)."""
        atomic_write_json(self._record_path(record.key), record.to_json(), indent=None)
        self._done.add(self._name(record.key))

    def read(self, key: str) -> ImageRecord:
        """The record of a finished image."""
        path = self._record_path(key)
        with path.open("r", encoding="utf-8") as handle:
            try:
                record = ImageRecord.from_json(json.load(handle))
            except SchemaError as exc:
                raise StateError(f"{path}: {exc}") from exc
        if record.key != key:
            raise StateError(f"{path} holds the record of {record.key!r}, not {key!r}")
        return record

    def records(self, keys: list[str]) -> Iterator[ImageRecord]:
        """Records of ``keys`` that are done, in that order, read one at a time."""
        for key in keys:
            if self.is_done(key):
                yield self.read(key)

    def remove(self) -> None:
        """Delete the state folder (only ever a folder holding a ``run.json``)."""
        if (self.dir / _RUN_FILE).is_file():
            shutil.rmtree(self.dir)
