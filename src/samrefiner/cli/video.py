"""``samrefiner video``: refine the coarse label maps of video sequences (docs/video.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from samrefiner.cli import CommandError
from samrefiner.cli.arg_types import finite_float, positive_int
from samrefiner.cli.building import spec_of
from samrefiner.cli.dataset_run import add_run_args, execute
from samrefiner.cli.options import add_refiner_args
from samrefiner.cli.paths import check_paths, identity, local_output, named, run_outputs

#: ``--propagate`` choices (samrefiner.video.method.PROPAGATE, without importing torch).
PROPAGATE = ("both", "forward", "none")


def keyframes_arg(text: str) -> str | int:
    """``--keyframes``: ``auto``, ``all`` or a positive integer N."""
    if text in ("auto", "all"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'all' or an integer >= 1, got {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "video",
        help="refine the label maps of video sequences with a video model's memory",
        description="Refine coarse instance-id maps of video sequences (DAVIS / YouTube-VOS "
        "layout, one sequence folder, or a video file): every labelled frame is refined, "
        "the refined keyframes seed the video model (SAM 2.1 and transformers' video "
        "models), its propagated masks and the refined ones are reconciled per frame, and "
        "every frame gets a map (labels may be sparse). Image-only models refine the "
        "labelled frames only.",
    )
    parser.add_argument(
        "frames",
        metavar="FRAMES",
        help="FRAMES/<sequence>/<frame>.jpg, one sequence folder of frames, or a video file "
        "(.mp4 ...)",
    )
    parser.add_argument(
        "--labels",
        required=True,
        metavar="DIR",
        help="the coarse instance-id PNGs (palette, 8 or 16-bit), LABELS/<sequence>/<frame>.png "
        "named like the frames (for a video file: by 0-based frame index, 00000.png); any "
        "subset of the frames",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the refined maps: one per frame of every sequence, with the "
        "labels' mode, palette and ids (a local path)",
    )
    video = parser.add_argument_group("video")
    video.add_argument(
        "--keyframes",
        type=keyframes_arg,
        default="auto",
        metavar="auto|all|N",
        help="frames whose refined masks seed the video model, per object: auto (the most "
        "confident refined frame of every --keyframe-spacing frames), all labelled frames, "
        "or every N-th labelled frame (default: %(default)s)",
    )
    video.add_argument(
        "--keyframe-spacing",
        type=positive_int,
        default=30,
        metavar="N",
        help="frames per keyframe with --keyframes auto (default: %(default)s)",
    )
    video.add_argument(
        "--propagate",
        choices=PROPAGATE,
        default="both",
        help="propagate the keyframes forward and backward, forward only, or not at all "
        "(none: the per-frame refined output; default: %(default)s)",
    )
    video.add_argument(
        "--agree-iou",
        type=finite_float,
        default=0.8,
        metavar="T",
        help="IoU at which the propagated and refined masks agree (default: %(default)s)",
    )
    video.add_argument(
        "--coarse-iou",
        type=finite_float,
        default=0.5,
        metavar="T",
        help="IoU with the coarse mask the winner of a disagreement needs; below, the coarse "
        "mask is kept (default: %(default)s)",
    )
    video.add_argument(
        "--no-reprompt",
        action="store_true",
        help="do not re-prompt frames where the masks disagree with the winner's prompts",
    )
    video.add_argument(
        "--no-offload-state",
        action="store_true",
        help="keep the video model's tracking state on the accelerator (faster, more memory)",
    )
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.runner.formats.video import VideoDataset, VideoRefinerSpec

    frames, labels = Path(args.frames), Path(args.labels)
    output = local_output(args.output)
    check_paths(
        args,
        [named("FRAMES", frames, folder=frames.is_dir()), named("--labels", labels, folder=True)],
        run_outputs(args, output, folder=True),
    )
    settings = {
        "keyframes": args.keyframes,
        "keyframe_spacing": args.keyframe_spacing,
        "propagate": args.propagate,
        "agree_iou": args.agree_iou,
        "coarse_iou": args.coarse_iou,
        "reprompt": not args.no_reprompt,
        "offload_state": not args.no_offload_state,
    }
    from samrefiner.video.method import VideoSettings

    try:
        VideoSettings(**settings)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    base = spec_of(args)
    spec = VideoRefinerSpec(**{**vars(base), "video": settings})
    inputs = {"frames": identity(frames), "labels": identity(labels)}
    return execute(
        args,
        lambda: VideoDataset(frames, labels, output),
        output=output,
        inputs=inputs,
        spec=spec,
        options_override={"encoder_batch": 1, "refine_threads": 0, "prefetch": 1},
    )
