"""Command-line glue of the dataset subcommands (coco, instances, semantic, masks).

The run and engine options, the resume fingerprint, the exit codes, and :func:`execute`,
which drives :func:`samrefiner.runner.run_dataset` (``--engine local``) or
:func:`samrefiner.runner.ray_engine.run_dataset_ray` (``--engine ray``) for one command
line.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from samrefiner.cli import CommandError
from samrefiner.cli.common import (
    build_refiner,
    check_model_args,
    config_of,
    finite_float,
    local_output,
    non_negative_int,
    pixel_limit,
    positive_int,
    positive_seconds,
)
from samrefiner.config import available_cores
from samrefiner.io.atomic import atomic_write_json, remove_stale_temporaries
from samrefiner.io.errors import InputError
from samrefiner.runner.base import Dataset, RefinerLike
from samrefiner.runner.lanes import ACCELERATOR_LANES
from samrefiner.runner.pipeline import RunOptions, run_dataset
from samrefiner.runner.ray_engine import (
    DEFAULT_CONNECT_TIMEOUT_S,
    RAY_EXTRA,
    ClusterError,
    RayOptions,
    actor_setup_errors,
    check_address,
    import_ray,
    run_dataset_ray,
)
from samrefiner.runner.records import RunSummary
from samrefiner.runner.refining import ACCELERATOR_ENCODER_BATCH, CPU_ENCODER_BATCH
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
    runs its pass with :func:`samrefiner.runner.ray_engine.map_on_actors`, given
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
            "hq_token_only": bool(args.hq_token_only),
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
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if ray:
        engine_options = ray_engine_options(args)
        check_model_args(args)  # the actors load the model: its mistakes are told here
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
        if ray:
            # Each refining actor builds its own refiner from the options.
            run: Callable[[RunState], RunSummary] = functools.partial(
                _run_ray,
                f"model {args.model!r}",
                dataset,
                functools.partial(make_refiner, args),
                options=engine_options,
                encoder_batch=args.encoder_batch,
                refine_threads=args.refine_threads,
                frame_bytes=options.frame_bytes,
            )
        else:
            refiner = make_refiner(args)
            run = functools.partial(_run_local, dataset, refiner, options)
        return _run_locked(args, run, output, run_fingerprint)
    finally:
        lock.release()


def _run_local(
    dataset: Dataset, refiner: RefinerLike, options: RunOptions, state: RunState
) -> RunSummary:
    return run_dataset(dataset, refiner, state, options)


def _run_ray(model: str, *args: Any, **kwargs: Any) -> RunSummary:
    """:func:`run_dataset_ray`; an actor that cannot load ``model`` ends it in one line."""
    with actor_setup_errors(model):
        return run_dataset_ray(*args, **kwargs)


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
    run: Callable[[RunState], RunSummary],
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
        summary = run(state)
    except ClusterError as exc:
        if not resumed and not state.done_count:
            state.remove()  # refused before any image was done: nothing left behind
        raise CommandError(str(exc)) from exc
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
