"""Command-line glue of the dataset subcommands (coco, instances, semantic, masks).

The run options, the resume fingerprint, the exit codes, and :func:`execute`, which
drives :func:`samrefiner.runner.run_dataset` for one command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from samrefiner.cli import CommandError
from samrefiner.cli.common import build_refiner, config_of
from samrefiner.config import available_cores
from samrefiner.io.atomic import atomic_write_json, remove_stale_temporaries
from samrefiner.io.images import InputError
from samrefiner.runner.base import Dataset, RefinerLike
from samrefiner.runner.pipeline import RunOptions, run_dataset
from samrefiner.runner.records import RunSummary
from samrefiner.runner.state import RunLock, RunState, StateError, state_dir_for

log = logging.getLogger("samrefiner.cli")

#: Exit status when nothing at all could be processed.
EXIT_NOTHING_PROCESSED = 1
#: Exit status of a ``--strict`` run that met bad input.
EXIT_STRICT = 3


def default_workers() -> int:
    """Loader threads: one core is left to the model, at most 4 (decoding is light)."""
    return max(1, min(4, available_cores() - 1))


#: PIL's own default limit, kept as ours.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def pixel_limit(text: str) -> int | None:
    """argparse type of ``--max-image-pixels``: an integer >= 1, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The run options: ``--resume``, ``--strict``, ``--workers``, ``--prefetch``,
    ``--no-progress`` and ``--summary``."""
    group = parser.add_argument_group("run")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its state folder (OUT.samrefiner-state); "
        "the settings must be the same",
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help=f"exit with status {EXIT_STRICT} when any input was bad (it is still passed through)",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        metavar="N",
        help="background threads decoding the next images (0: none; default: %(default)s)",
    )
    group.add_argument(
        "--prefetch",
        type=int,
        default=4,
        metavar="N",
        help="images decoded ahead of the model (default: %(default)s)",
    )
    group.add_argument(
        "--max-image-pixels",
        type=pixel_limit,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="N",
        help="images with more pixels are passed through as image_too_large (a guard "
        "against decompression bombs; 'none': no limit; default: %(default)s)",
    )
    group.add_argument(
        "--allow-outside-images",
        action="store_true",
        help="let file names in the inputs lead outside the images folder (absolute paths, "
        "'..', symbolic links); by default such names are passed through as unsafe_path",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument(
        "--summary",
        metavar="PATH",
        default=None,
        help="also write the end summary as JSON to PATH",
    )


def fingerprint(args: argparse.Namespace, inputs: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a run and its ``--resume``."""
    return {
        "command": args.command,
        "inputs": inputs,
        "model": {
            "model": args.model,
            "checkpoint": args.checkpoint,
            "random_weights": bool(args.random_weights),
        },
        # Speed-only settings (batch size, threads) may differ in a resumed run.
        "config": config_of(args).result_settings(),
        # Which inputs are refused as bad.
        "limits": {
            "max_image_pixels": args.max_image_pixels,
            "allow_outside_images": bool(args.allow_outside_images),
        },
    }


def execute(
    args: argparse.Namespace,
    make_dataset: Callable[[], Dataset],
    *,
    output: Path,
    inputs: dict[str, Any],
    make_refiner: Callable[[argparse.Namespace], RefinerLike] = build_refiner,
) -> int:
    """Run a dataset subcommand end to end and return its exit status.

    Args:
        args: parsed options (run, model and refinement options included).
        make_dataset: builds the dataset (reads the inputs' index).
        output: the output file or folder (its state folder sits next to it).
        inputs: input paths and format options, for the resume fingerprint.
        make_refiner: builds the refiner from ``args`` (tests inject fakes).
    """
    try:
        options = RunOptions(args.workers, args.prefetch, not args.no_progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    run_fingerprint = fingerprint(args, inputs)  # validates the refinement options
    Image.MAX_IMAGE_PIXELS = args.max_image_pixels  # read_image's limit (PIL's guard)
    check_writable(output)
    try:
        dataset = make_dataset()
    except (InputError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    # Take the output before the (slow) model load, so that a second run is refused at
    # once; nothing but the lock exists until the model has loaded, and a model error
    # removes it again (with any folder made for it).
    lock = RunLock(output)
    try:
        lock.acquire()
    except StateError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(_write_error(exc, lock.path)) from exc
    try:
        refiner = make_refiner(args)
        return _run_locked(args, dataset, refiner, options, output, run_fingerprint)
    finally:
        lock.release()


def check_writable(output: Path) -> None:
    """Refuse an output whose folder cannot be created or written (before any work)."""
    folder = output if output.is_dir() else output.parent
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise CommandError(f"{output}: cannot be written: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CommandError(f"{output}: cannot be written: {probe} is not writable")


def _run_locked(
    args: argparse.Namespace,
    dataset: Dataset,
    refiner: RefinerLike,
    options: RunOptions,
    output: Path,
    run_fingerprint: dict[str, Any],
) -> int:
    state = RunState(output)
    try:
        resumed = state.start(run_fingerprint, resume=args.resume)
    except StateError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(_write_error(exc, state.dir)) from exc
    if args.resume and not resumed:
        log.warning("no state to resume in %s: starting from the beginning", state.dir)
    for stale in remove_stale_temporaries(output):
        log.info("removed %s, left by an interrupted write", stale)
    try:
        summary = run_dataset(dataset, refiner, state, options)
    except KeyboardInterrupt:
        print(
            f"interrupted: finished images are kept in {state_dir_for(output)}; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    except OSError as exc:
        raise CommandError(
            f"{_write_error(exc, output)}; finished images are kept in {state.dir}: "
            "fix the problem and run the same command with --resume"
        ) from exc
    state.remove()
    return finish_summary(args, summary)


def _write_error(exc: OSError, default: Path) -> str:
    """One line naming the path that could not be written and why."""
    path = exc.filename or default
    return f"{path}: cannot be written: {exc.strerror or exc}"


def finish_summary(args: argparse.Namespace, summary: RunSummary) -> int:
    """Print (and optionally write) the summary; return the exit status it implies."""
    print(summary.format())
    if args.summary:
        try:
            atomic_write_json(args.summary, summary.to_json())
        except OSError as exc:
            raise CommandError(_write_error(exc, Path(args.summary))) from exc
    if summary.images_processed == 0:
        print("nothing could be processed", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    if args.strict and (summary.bad_input or summary.lost):
        print(
            f"--strict: {summary.bad_input} bad inputs and {summary.lost} objects lost to "
            "neighbours (occluded) were reported",
            file=sys.stderr,
        )
        return EXIT_STRICT
    return 0
