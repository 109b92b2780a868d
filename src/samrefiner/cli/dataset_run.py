"""Command-line glue of the dataset subcommands (coco, instances, semantic, masks).

The run and engine options, the resume fingerprint, the exit codes, and :func:`execute`,
which turns one command line into a :class:`~samrefiner.runner.spec.RefinerSpec` and
:class:`~samrefiner.runner.options.RunOptions` and runs
:func:`samrefiner.runner.session.run_session` (the lock, the state folder, the clean-up:
the same for a Python caller), the local engine or, with ``--engine ray``, the Ray one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samrefiner.cli import CommandError
from samrefiner.cli.arg_types import (
    finite_float,
    non_negative_int,
    pixel_limit,
    positive_int,
    positive_seconds,
)
from samrefiner.cli.building import check_model_args, spec_of
from samrefiner.cli.paths import local_output
from samrefiner.cluster import (
    DEFAULT_CONNECT_TIMEOUT_S,
    RAY_EXTRA,
    ClusterError,
    RayOptions,
    check_address,
    import_ray,
)
from samrefiner.config import available_cores
from samrefiner.io.atomic import atomic_write_json
from samrefiner.io.errors import InputError
from samrefiner.io.images import DEFAULT_MAX_IMAGE_PIXELS
from samrefiner.runner.dataset import Dataset
from samrefiner.runner.engines.lanes import ACCELERATOR_LANES
from samrefiner.runner.engines.steps import ACCELERATOR_ENCODER_BATCH, CPU_ENCODER_BATCH
from samrefiner.runner.journal.records import RunSummary
from samrefiner.runner.journal.state import StateError
from samrefiner.runner.options import RunOptions
from samrefiner.runner.session import RunInterrupted, RunWriteError, run_session
from samrefiner.runner.session import check_writable as writable
from samrefiner.runner.spec import ModelLoadError, RefinerSpec

#: Exit status when nothing at all could be processed.
EXIT_NOTHING_PROCESSED = 1
#: Exit status of a ``--strict`` run that met bad input.
EXIT_STRICT = 3


def default_workers() -> int:
    """Loader threads: one core is left to the model, at most 4 (decoding is light)."""
    return max(1, min(4, available_cores() - 1))


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The run options: ``--resume``, ``--strict``, ``--workers``, ``--prefetch``,
    ``--encoder-batch``, ``--refine-threads``, ``--no-progress``, ``--summary``, and the
    engine options (:func:`add_engine_args`)."""
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
        default=None,
        metavar="N",
        help="local engine: background threads decoding the next images (0: none; default: "
        f"{default_workers()}); ray engine: {RAY_WORKERS_HELP}",
    )
    group.add_argument(
        "--prefetch",
        type=int,
        default=4,
        metavar="N",
        help="images decoded ahead of the model (default: %(default)s)",
    )
    group.add_argument(
        "--encoder-batch",
        type=positive_int,
        default=None,
        metavar="N",
        help="images the model encodes together (default: automatic, "
        f"{CPU_ENCODER_BATCH} on the CPU, {ACCELERATOR_ENCODER_BATCH} on GPUs); speed only",
    )
    group.add_argument(
        "--refine-threads",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="images refined at once, each on a thread (and CUDA stream) of its own, while "
        "the encoder runs ahead on another; 0: one image after another, no overlap "
        f"(default: automatic, {ACCELERATOR_LANES} on CUDA GPUs, else 0); speed only",
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
    add_engine_args(parser)


#: What ``--workers`` means with ``--engine ray``.
RAY_WORKERS_HELP = (
    "actors each loading the model once (default: one per --num-gpus-per-worker GPUs of "
    "the cluster, else 1)"
)


def add_engine_args(parser: argparse.ArgumentParser, *, workers: bool = False) -> None:
    """``--engine``, ``--ray-address``, ``--ray-connect-timeout``, ``--num-gpus-per-worker``,
    ``--cpus-per-worker`` (``--workers`` is a run option of the dataset commands: loader
    threads locally, refining actors on Ray; ``workers`` adds it here, for a command where
    it means nothing but the Ray actors).

    A command with another per-image pass (``adapt``'s embeddings) adds these too and
    runs its pass with :func:`samrefiner.cluster.map_on_actors`, given
    :func:`ray_engine_options`."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a Ray Data pipeline over a Ray cluster "
        f"(needs {RAY_EXTRA}); outputs do not depend on it",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster of --engine ray: 'auto' joins the cluster this machine belongs to, "
        "'ray://HOST:10001' (Ray Client: needs pip install 'ray[client]') or 'HOST:6379' a "
        "given one (default: start a local Ray)",
    )
    group.add_argument(
        "--ray-connect-timeout",
        type=positive_seconds,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="S",
        help="seconds to wait for the cluster at --ray-address to answer; the command ends "
        "with an error, leaving nothing behind, when it does not (default: %(default)g)",
    )
    group.add_argument(
        "--num-gpus-per-worker",
        type=finite_float,
        default=None,
        metavar="G",
        help="GPUs each actor of --engine ray reserves (fractions share a GPU; default: 1 "
        "when the cluster has GPUs, else 0)",
    )
    group.add_argument(
        "--cpus-per-worker",
        type=finite_float,
        default=1.0,
        metavar="C",
        help="CPUs each actor of --engine ray reserves (refining actors mine prompts on "
        "them; default: %(default)s)",
    )
    if workers:
        group.add_argument(
            "--workers",
            type=positive_int,
            default=None,
            metavar="N",
            help=f"with --engine ray: {RAY_WORKERS_HELP}",
        )


def ray_options(args: argparse.Namespace) -> RayOptions:
    """The :class:`RayOptions` of the engine options; invalid ones are a CommandError."""
    try:
        return RayOptions(
            address=args.ray_address,
            workers=args.workers,
            num_gpus_per_worker=args.num_gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker,
            progress=not args.no_progress,
            connect_timeout_s=args.ray_connect_timeout,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def ray_engine_options(args: argparse.Namespace) -> RayOptions:
    """The :class:`RayOptions` of ``--engine ray``, once Ray Data is known to be
    installed and the cluster at ``--ray-address`` to answer (within
    ``--ray-connect-timeout``); a CommandError otherwise. Call it before anything is
    written, so that such a run leaves nothing behind."""
    options = ray_options(args)
    import_ray_or_fail()
    try:
        check_address(options.address, options.connect_timeout_s)
    except ClusterError as exc:
        raise CommandError(f"--ray-address: {exc}") from exc
    return options


def fingerprint(
    args: argparse.Namespace, inputs: dict[str, Any], spec: RefinerSpec | None = None
) -> dict[str, Any]:
    """What must not change between a run and its ``--resume``: the command, its inputs,
    the model and result settings (``spec``, else the one the options describe) and which
    inputs are refused as bad."""
    spec = spec_of(args) if spec is None else spec  # validates the refinement options
    return {
        "command": args.command,
        "inputs": inputs,
        # Speed-only settings (batch size, threads) may differ in a resumed run.
        **spec.fingerprint(),
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
    spec: RefinerSpec | None = None,
    options_override: dict[str, Any] | None = None,
) -> int:
    """Run a dataset subcommand end to end and return its exit status: the options
    become a :class:`RefinerSpec` and :class:`RunOptions`, the run is
    :func:`samrefiner.runner.session.run_session`, its errors one-line
    :class:`CommandError` messages.

    Args:
        args: parsed options (run, model and refinement options included).
        make_dataset: builds the dataset (reads the inputs' index).
        output: the output file or folder (its state folder sits next to it).
        inputs: input paths and format options, for the resume fingerprint.
        spec: the refiner's spec when the command builds its own (``video``); None:
            the one the model and refinement options describe.
        options_override: :class:`RunOptions` fields the command fixes (``video``
            refines one sequence at a time: no encoder batches, no lanes).
    """
    ray = args.engine == "ray"
    if args.summary:
        local_output(args.summary, "--summary")
    try:
        options = RunOptions(
            workers=default_workers() if args.workers is None or ray else args.workers,
            prefetch=args.prefetch,
            progress=not args.no_progress,
            encoder_batch=args.encoder_batch,
            refine_threads=args.refine_threads,
            max_image_pixels=args.max_image_pixels,
        )
        if options_override:
            options = dataclasses.replace(options, **options_override)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if ray:
        options = dataclasses.replace(options, ray=ray_engine_options(args))
        check_model_args(args)  # the actors load the model: its mistakes are told here
    spec = spec_of(args) if spec is None else spec  # validates the refinement options
    run_fingerprint = fingerprint(args, inputs, spec)
    check_writable(output)
    try:
        dataset = make_dataset()
    except (InputError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    try:
        summary = run_session(
            dataset, spec, output, options, fingerprint=run_fingerprint, resume=args.resume
        )
    except RunWriteError as exc:
        message = f"{exc.path}: cannot be written: {exc.reason}"
        if exc.kept is not None:
            message += (
                f"; finished images are kept in {exc.kept}: fix the problem and run the "
                "same command with --resume"
            )
        raise CommandError(message) from exc
    except (StateError, ModelLoadError, ClusterError) as exc:
        raise CommandError(str(exc)) from exc
    except RunInterrupted as exc:
        print(
            f"interrupted: finished images are kept in {exc.state_dir}; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    return finish_summary(args, summary)


def check_writable(output: Path) -> None:
    """Refuse an output whose folder cannot be created or written (before any work)."""
    try:
        writable(output)
    except RunWriteError as exc:
        raise CommandError(str(exc)) from exc


def import_ray_or_fail() -> None:
    """Check that Ray Data is installed before any work starts."""
    try:
        import_ray()
    except ImportError as exc:
        raise CommandError(str(exc)) from exc


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
