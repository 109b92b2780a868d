"""``samrefiner make-coarse GT -o OUT``: synthesize coarse masks from ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from samrefiner.cli import CommandError
from samrefiner.cli.common import add_ignore_arg, add_iou_range_arg, check_paths, named

_DESCRIPTION = """\
Degrade ground-truth masks the ways real coarse masks are wrong (boundary noise, global
dilation / erosion, coarse polygons, low-resolution upsampling, detector mask heads,
missing parts, spurious blobs, holes). Deterministic given --seed. GT is a folder of mask
PNGs (binary or instance ids: the output has the same names, kind and palette) or a COCO
dataset file (the output is the same file with coarse RLE segmentations). A table of each
object's coarse-vs-GT IoU is written beside the output.
"""


def _step(text: str) -> tuple[str, float]:
    from samrefiner.measure.perturb import FAMILIES

    name, _, value = text.partition(":")
    if name not in FAMILIES:
        raise argparse.ArgumentTypeError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    try:
        strength = float(value) if value else 0.5
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"strength of {name} must be a number") from exc
    if not 0.0 <= strength <= 1.0:
        raise argparse.ArgumentTypeError(f"strength of {name} must be in [0, 1]")
    return name, strength


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "make-coarse",
        help="synthesize coarse masks from ground truth (deterministic by seed)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "gt", metavar="GT", help="folder of ground-truth mask PNGs, or COCO JSON (a local path)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output folder (PNG input) or JSON file (COCO input)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    add_iou_range_arg(parser)
    parser.add_argument(
        "--max-families",
        type=int,
        default=2,
        help="most degradation families combined on one object (default: %(default)s)",
    )
    parser.add_argument(
        "--family",
        dest="steps",
        type=_step,
        action="append",
        default=[],
        metavar="NAME[:STRENGTH]",
        help="apply this family (strength in [0, 1], default 0.5) to every object instead of "
        "the calibrated mix; repeat to chain families in order",
    )
    add_ignore_arg(parser, "no object (kept as they are)")
    parser.add_argument(
        "--table",
        metavar="PATH",
        help="IoU table (CSV) path (default: OUT/coarse_iou.csv, or OUT.iou.csv for COCO)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError
    from samrefiner.measure.coarse import make_coarse_coco, make_coarse_pngs
    from samrefiner.measure.perturb import CoarseSpec
    from samrefiner.measure.tables import csv_text, write_text

    gt, out = Path(args.gt), Path(args.output)
    try:
        spec = CoarseSpec(max_families=args.max_families, iou_range=tuple(args.iou_range))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    progress = not args.no_progress
    folder = gt.is_dir()
    if not folder and not gt.is_file():
        raise CommandError(f"{gt}: not found")
    if folder and out.exists() and not out.is_dir():
        raise CommandError(f"{out}: exists and is not a folder")
    default_table = out / "coarse_iou.csv" if folder else out.with_suffix(".iou.csv")
    table = Path(args.table) if args.table else default_table
    check_paths(
        args,
        [named("GT", gt, folder=folder)],
        [named("-o", out, folder=folder), named("--table" if args.table else "the table", table)],
    )
    try:
        if folder:
            records = make_coarse_pngs(gt, out, args.seed, spec, args.steps, args.ignore, progress)
        else:
            records = make_coarse_coco(gt, out, args.seed, spec, args.steps, progress)
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    write_text(table, csv_text(records))
    ious = np.array([r["coarse_iou"] for r in records], dtype=float)
    if ious.size:
        p10, p50, p90 = np.percentile(ious, [10, 50, 90])
        print(
            f"{ious.size} objects: coarse IoU mean {ious.mean():.3f}, "
            f"10/50/90th percentile {p10:.3f} / {p50:.3f} / {p90:.3f}"
        )
    else:
        print("no objects found")
    print(f"wrote {out} and {table}")
    return 0
