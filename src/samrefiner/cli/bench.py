"""``samrefiner bench DATA -o OUT``: refiner configurations and baselines over a dataset."""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

from samrefiner.cli import CommandError
from samrefiner.cli.common import (
    add_ignore_arg,
    add_iou_range_arg,
    add_refiner_args,
    check_paths,
    config_from_args,
    load_model_from_args,
    named,
)

_DESCRIPTION = """\
Run refiner configurations and baselines over a dataset of images with ground truth, and
report quality (IoU, Boundary IoU, mBA; coarse vs refined) and cost (seconds per image by
stage, masks per second, peak RSS). Each image is encoded once and its embedding reused
by every configuration. DATA holds images/ and masks/ (mask PNGs named like the images:
binary or instance ids), or sub-folders that do (e.g. ../shared/data). Coarse masks are
read from --coarse (laid out like masks/) or synthesized from the ground truth exactly as
`samrefiner make-coarse --seed S` would. The refinement options set the base
configuration the built-in ones modify. Writes OUT/results.json (read by `samrefiner
report`) and OUT/results.md.

With --video N, the bench runs the video rows instead: N synthetic sequences built from
the DAVIS photographs of DATA (the shared data folder; moving cut-outs with exact ground
truth, coarse maps synthesized per frame), labelled every --label-every frames, scored
(J, F, J&F, temporal stability) as coarse, per-frame refined and video refined (the
`samrefiner video` method), with frames per second. Writes OUT/video.json and
OUT/video.md.
"""


def _names(text: str) -> list[str]:
    return [] if text.strip().lower() == "none" else [t.strip() for t in text.split(",") if t]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from samrefiner.measure.configs import BASELINES, BUILTIN_CONFIGS

    parser = subparsers.add_parser(
        "bench",
        help="benchmark refiner configurations and baselines on a dataset",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", metavar="DATA", type=Path, help="dataset folder")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="OUT", help="output folder"
    )
    parser.add_argument(
        "--configs",
        type=_names,
        default=list(BUILTIN_CONFIGS),
        metavar="A,B,...",
        help=f"built-in configurations, or 'none' (default: all of {','.join(BUILTIN_CONFIGS)})",
    )
    parser.add_argument(
        "--baselines",
        type=_names,
        default=list(BASELINES),
        metavar="A,B,...",
        help=f"baselines among {','.join(BASELINES)}, or 'none' (default: both)",
    )
    parser.add_argument(
        "--coarse", type=Path, metavar="DIR", help="coarse masks (default: synthesize)"
    )
    parser.add_argument("--seed", type=int, default=0, help="synthesis seed (default: %(default)s)")
    add_iou_range_arg(parser)
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only images whose key matches (e.g. 'davis2016/*'); repeatable",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="at most N images (after --include)")
    add_ignore_arg(parser, "no object (not scored)")
    parser.add_argument(
        "--grabcut-iterations", type=int, default=5, help="GrabCut iterations (default: 5)"
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help="time the first image cold (default: warm up)"
    )
    parser.add_argument(
        "--no-masks", action="store_true", help="leave masks out of results.json (no report)"
    )
    video = parser.add_argument_group("video rows")
    video.add_argument(
        "--video",
        type=int,
        metavar="N",
        help="bench the video method instead, on N synthetic sequences built from DATA",
    )
    video.add_argument(
        "--video-frames", type=int, default=24, metavar="T", help="frames per sequence (24)"
    )
    video.add_argument(
        "--video-size",
        type=int,
        nargs=2,
        default=(480, 854),
        metavar=("H", "W"),
        help="frame size (default: 480 854)",
    )
    video.add_argument(
        "--label-every",
        type=int,
        default=1,
        metavar="N",
        help="coarse labels on every N-th frame (default: 1, every frame)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_refiner_args(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError, atomic_write_json
    from samrefiner.measure.configs import plan_methods
    from samrefiner.measure.dataset import find_items
    from samrefiner.measure.harness import run_bench
    from samrefiner.measure.perturb import CoarseSpec
    from samrefiner.measure.summary import bench_markdown
    from samrefiner.measure.tables import write_text

    if args.video is not None:
        return _run_video(args)
    try:
        base = config_from_args(args)
        plan = plan_methods(base, args.configs, args.baselines)
        spec = CoarseSpec(iou_range=tuple(args.iou_range))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be >= 1, got {args.limit}")
    if args.output.exists() and not args.output.is_dir():
        raise CommandError(f"{args.output}: exists and is not a folder")
    results_json, results_md = args.output / "results.json", args.output / "results.md"
    check_paths(
        args,
        [named("DATA", args.data, folder=True), named("--coarse", args.coarse, folder=True)],
        [named("-o", results_json), named("-o", results_md)],
    )
    try:
        items = find_items(args.data)
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    if args.include:
        items = [i for i in items if any(fnmatch.fnmatch(i.key, g) for g in args.include)]
        if not items:
            raise CommandError(f"{args.data}: no image key matches {args.include}")
    items = items[: args.limit] if args.limit else items

    model, info = None, {"dataset": str(args.data.resolve()), "model": None, "device": None}
    if plan.distinct_configs():
        model = load_model_from_args(args)
        info.update(
            model=getattr(model, "name", args.model),
            device=str(getattr(model, "device", args.device)),
            random_weights=bool(args.random_weights),
        )
    try:
        result = run_bench(
            items,
            plan,
            model,
            coarse_dir=args.coarse,
            seed=args.seed,
            spec=spec,
            ignore=args.ignore,
            grabcut_iterations=args.grabcut_iterations,
            warmup=not args.no_warmup,
            keep_masks=not args.no_masks,
            progress=not args.no_progress,
            info=info,
        )
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    markdown = bench_markdown(result)
    atomic_write_json(results_json, result.to_json(), indent=None)
    write_text(results_md, markdown)
    print(markdown)
    print(f"wrote {results_json} and {results_md}")
    return 0


def _run_video(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError, atomic_write_json
    from samrefiner.measure.sequences import SequenceSpec, build_sequence
    from samrefiner.measure.tables import write_text
    from samrefiner.measure.video_bench import run_video_bench, video_bench_markdown
    from samrefiner.refiner import Refiner
    from samrefiner.video import video_backend_for

    if args.video < 1 or args.label_every < 1:
        raise CommandError("--video and --label-every must be >= 1")
    if args.output.exists() and not args.output.is_dir():
        raise CommandError(f"{args.output}: exists and is not a folder")
    height, width = args.video_size
    try:
        config = config_from_args(args)
        specs = [
            SequenceSpec(
                name=f"seq{k:02d}",
                frames=args.video_frames,
                height=height,
                width=width,
                seed=args.seed + k,
            )
            for k in range(args.video)
        ]
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    out_json, out_md = args.output / "video.json", args.output / "video.md"
    check_paths(
        args, [named("DATA", args.data, folder=True)], [named("-o", out_json), named("-o", out_md)]
    )
    try:
        sequences = [build_sequence(spec, args.data) for spec in specs]
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    model = load_model_from_args(args)
    info = {
        "model": getattr(model, "name", args.model),
        "device": str(getattr(model, "device", args.device)),
        "random_weights": bool(args.random_weights),
    }
    result = run_video_bench(
        sequences,
        Refiner(model, config),
        video_backend_for(model),
        label_every=args.label_every,
        progress=not args.no_progress,
        info=info,
    )
    markdown = video_bench_markdown(result)
    atomic_write_json(out_json, result.to_json())
    write_text(out_md, markdown)
    print(markdown)
    print(f"wrote {out_json} and {out_md}")
    return 0
