"""The state folder that makes a run resumable.

Next to the output ``OUT`` (a file or a folder) a run keeps ``OUT.samrefiner-state/``:

* ``run.json`` -- what the run is (command, inputs, options, model, refinement
  settings). ``--resume`` refuses to continue a state made with other settings;
* ``done/<hash>.json`` -- one record per finished image (its
  :class:`~samrefiner.runner.records.ImageRecord`), written atomically *after* the
  image's outputs. An image with a record is done; one without is redone.

A killed run therefore loses at most the images in flight. The folder is removed when
the run completes; a run without ``--resume`` starts from an empty one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samrefiner.io.atomic import atomic_write_json
from samrefiner.runner.records import ImageRecord

STATE_SUFFIX = ".samrefiner-state"
_RUN_FILE = "run.json"
_DONE_DIR = "done"


class StateError(ValueError):
    """A state folder that cannot be used (other settings, or not a state folder)."""


def state_dir_for(output: str | os.PathLike[str]) -> Path:
    """The state folder of the output ``output``."""
    out = Path(output)
    return out.parent / (out.name + STATE_SUFFIX)


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
        canonical = json.loads(json.dumps(fingerprint, sort_keys=True))
        run_file = self.dir / _RUN_FILE
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
                    "differ); rerun without --resume to start over"
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

    def write(self, record: ImageRecord) -> None:
        """Record a finished image (atomically)."""
        atomic_write_json(self._record_path(record.key), record.to_dict(), indent=None)
        self._done.add(self._name(record.key))

    def read(self, key: str) -> ImageRecord:
        """The record of a finished image."""
        path = self._record_path(key)
        with path.open("r", encoding="utf-8") as handle:
            record = ImageRecord.from_dict(json.load(handle))
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
