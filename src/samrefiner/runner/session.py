"""A dataset run with the command line's guarantees, for any caller: :func:`run_session`.

:func:`~samrefiner.runner.engines.local.run_dataset` and
:func:`~samrefiner.runner.engines.ray.run_dataset_ray` refine the images of an opened
state; the session around them is what makes a run safe to start, stop and start again,
the same for ``samrefiner coco`` and for a Python caller:

1. the output must be writable (refused before any work);
2. with the Ray engine, the model is checked here (its actors load it elsewhere);
3. the output's lock (:class:`~samrefiner.runner.journal.state.RunLock`) is taken before the
   (slow) model load, so that a second run on the same output is refused at once, with
   :class:`~samrefiner.runner.journal.state.RunLockedError`;
4. the state folder is started, or resumed when its fingerprint is the same;
5. temporaries left by an interrupted write are removed;
6. the engine runs; on failure nothing is left behind that a rerun could not use: a
   cluster refusing the run before any image was done removes the state folder, a
   write error or an interruption keeps the finished images for a resumed run;
7. on success the state folder is removed and the summary returned; the lock is
   released however the run ends (and folders made only for it removed).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from samrefiner.cluster import ClusterError
from samrefiner.io.atomic import remove_stale_temporaries
from samrefiner.runner.dataset import Dataset, RefinerLike
from samrefiner.runner.engines.local import run_dataset
from samrefiner.runner.journal.records import ImageRecord, RunSummary
from samrefiner.runner.journal.state import RunLock, RunState
from samrefiner.runner.options import RunOptions
from samrefiner.runner.spec import RefinerSpec

__all__ = ["RunInterrupted", "RunWriteError", "check_writable", "run_session"]

log = logging.getLogger("samrefiner.runner")


class RunWriteError(OSError):
    """A file or folder of the run cannot be written.

    Attributes:
        path: what could not be written.
        reason: why (the system's words).
        kept: the state folder holding the finished images, once the run had started
            (run again with ``resume=True`` after fixing the problem); None before.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, kept: Path | None = None):
        message = f"{path}: cannot be written: {reason}"
        if kept is not None:
            message += (
                f"; finished images are kept in {kept}: fix the problem and run again "
                "with resume=True"
            )
        super().__init__(message)
        self.path = Path(path)
        self.reason = reason
        self.kept = kept


class RunInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); the finished images are kept in ``state_dir``
    for a run with ``resume=True``."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(
            f"interrupted: finished images are kept in {state_dir}; run again with "
            "resume=True to continue"
        )
        self.state_dir = state_dir


def _write_error(exc: OSError, default: str | os.PathLike[str], kept: Path | None = None):
    return RunWriteError(exc.filename or default, str(exc.strerror or exc), kept)


def check_writable(output: str | os.PathLike[str]) -> None:
    """Refuse an output whose folder cannot be created or written (before any work).

    Raises:
        RunWriteError: naming the output and the folder in the way.
    """
    output = Path(output)
    folder = output if output.is_dir() else output.parent
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RunWriteError(output, f"{probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunWriteError(output, f"{probe} is not writable")


def run_session(
    dataset: Dataset,
    refiner: RefinerSpec | RefinerLike,
    output: str | os.PathLike[str],
    options: RunOptions | None = None,
    *,
    fingerprint: Mapping[str, Any],
    resume: bool = False,
    on_record: Callable[[ImageRecord], None] | None = None,
) -> RunSummary:
    """Run ``dataset`` into ``output`` with the guarantees of the command line (see the
    module docstring): one run per output, resumable, nothing half-written left behind.

    Args:
        dataset: the format adapter writing ``output``.
        refiner: a :class:`RefinerSpec` (built after the lock is taken; with the Ray
            engine, by each actor) or, for the local engine only, a ready refiner.
        output: the output file or folder (its state folder and lock sit next to it).
        options: the run's options; ``options.ray`` set runs on Ray (defaults of
            :class:`RunOptions`: the local engine).
        fingerprint: what the run is; a resumed run must have the same (include the
            spec's :meth:`~RefinerSpec.fingerprint`, the inputs and the image limit).
        resume: continue the state folder of an interrupted run with the same
            fingerprint (without one, start from the beginning, with a warning).
        on_record: called with each new record once it is saved.

    Returns:
        The run's summary (resumed images included).

    Raises:
        RunWriteError: the output, its lock or its state cannot be written.
        RunLockedError: another live run is writing ``output``.
        StateError: the state folder was made with another fingerprint, or is not one.
        ModelLoadError: the model cannot be checked or loaded.
        ClusterError: the Ray cluster cannot run the job.
        RunInterrupted: Ctrl-C during the run (the finished images are kept).
    """
    output = Path(output)
    options = options or RunOptions()
    ray = options.ray is not None
    if ray and not isinstance(refiner, RefinerSpec):
        raise TypeError("the ray engine builds a refiner in each actor: give a RefinerSpec")
    check_writable(output)
    if ray:
        refiner.check()  # the actors load the model: its mistakes are told here
    # Take the output before the (slow) model load, so that a second run is refused at
    # once; nothing but the lock exists until the model has loaded, and a model error
    # removes it again (with any folder made for it).
    lock = RunLock(output)
    try:
        lock.acquire()
    except OSError as exc:
        raise _write_error(exc, lock.path) from exc
    try:
        if ray:
            run = functools.partial(_run_ray, dataset, refiner, options, on_record=on_record)
        else:
            built = refiner.build() if isinstance(refiner, RefinerSpec) else refiner
            run = functools.partial(
                run_dataset, dataset, built, options=options, on_record=on_record
            )
        return _run_locked(run, output, fingerprint, resume)
    finally:
        lock.release()


def _run_ray(
    dataset: Dataset,
    spec: RefinerSpec,
    options: RunOptions,
    state: RunState,
    on_record: Callable[[ImageRecord], None] | None,
) -> RunSummary:
    """The Ray engine, each refining actor building its refiner from ``spec``; an actor
    that cannot load the model ends the run in one line."""
    from samrefiner.cluster import actor_setup_errors
    from samrefiner.runner.engines.ray import run_dataset_ray

    with actor_setup_errors(f"model {spec.model!r}"):
        return run_dataset_ray(dataset, spec.build, state, options, on_record=on_record)


def _run_locked(
    run: Callable[..., RunSummary],
    output: str | os.PathLike[str],
    fingerprint: Mapping[str, Any],
    resume: bool,
) -> RunSummary:
    state = RunState(output)
    try:
        resumed = state.start(dict(fingerprint), resume=resume)
    except OSError as exc:
        raise _write_error(exc, state.dir) from exc
    if resume and not resumed:
        log.warning("no state to resume in %s: starting from the beginning", state.dir)
    for stale in remove_stale_temporaries(output):
        log.info("removed %s, left by an interrupted write", stale)
    try:
        summary = run(state=state)
    except ClusterError:
        if not resumed and not state.done_count:
            state.remove()  # refused before any image was done: nothing left behind
        raise
    except KeyboardInterrupt as exc:
        raise RunInterrupted(state.dir) from exc
    except OSError as exc:
        raise _write_error(exc, output, kept=state.dir) from exc
    state.remove()
    return summary
