"""Command-line glue of the dataset subcommands (coco, instances, semantic, masks).

The run options, the resume fingerprint, the exit codes, and :func:`execute`, which
drives :func:`samrefiner.runner.run_dataset` for one command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samrefiner.cli import CommandError
from samrefiner.cli.common import build_refiner, config_of
from samrefiner.config import available_cores
from samrefiner.io.atomic import atomic_write_json, remove_stale_temporaries
from samrefiner.io.images import InputError
from samrefiner.runner.base import Dataset, RefinerLike
from samrefiner.runner.pipeline import RunOptions, run_dataset
from samrefiner.runner.records import RunSummary
from samrefiner.runner.state import RunState, StateError, state_dir_for

log = logging.getLogger("samrefiner.cli")

#: Exit status when nothing at all could be processed.
EXIT_NOTHING_PROCESSED = 1
#: Exit status of a ``--strict`` run that met bad input.
EXIT_STRICT = 3


def default_workers() -> int:
    """Loader threads: one core is left to the model, at most 4 (decoding is light)."""
    return max(1, min(4, available_cores() - 1))


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
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument(
        "--summary",
        metavar="PATH",
        default=None,
        help="also write the end summary as JSON to PATH",
    )


def _adapter_path(args: argparse.Namespace) -> str | None:
    adapter = getattr(args, "adapter", None)
    return None if adapter is None else str(Path(adapter).resolve())


def fingerprint(args: argparse.Namespace, inputs: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a run and its ``--resume``."""
    return {
        "command": args.command,
        "inputs": inputs,
        "model": {
            "model": args.model,
            "checkpoint": args.checkpoint,
            "random_weights": bool(args.random_weights),
            "adapter": _adapter_path(args),
        },
        # Speed-only settings (batch size, threads) may differ in a resumed run.
        "config": config_of(args).result_settings(),
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
    try:
        dataset = make_dataset()
    except (InputError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    state = RunState(output)
    try:
        resumed = state.start(run_fingerprint, resume=args.resume)
    except StateError as exc:
        raise CommandError(str(exc)) from exc
    if args.resume and not resumed:
        log.warning("no state to resume in %s: starting from the beginning", state.dir)
    for stale in remove_stale_temporaries(output):
        log.info("removed %s, left by an interrupted write", stale)
    refiner = make_refiner(args)
    try:
        summary = run_dataset(dataset, refiner, state, options)
    except KeyboardInterrupt:
        print(
            f"interrupted: finished images are kept in {state_dir_for(output)}; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    state.remove()
    return finish_summary(args, summary)


def finish_summary(args: argparse.Namespace, summary: RunSummary) -> int:
    """Print (and optionally write) the summary; return the exit status it implies."""
    print(summary.format())
    if args.summary:
        atomic_write_json(args.summary, summary.to_dict())
    if summary.images_processed == 0:
        print("nothing could be processed", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    if args.strict and summary.bad_input:
        print(f"--strict: {summary.bad_input} bad inputs were reported", file=sys.stderr)
        return EXIT_STRICT
    return 0
