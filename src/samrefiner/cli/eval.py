"""``samrefiner eval PRED GT``: score predicted masks against ground truth."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from samrefiner.cli import CommandError
from samrefiner.cli.arg_types import finite_float
from samrefiner.cli.common import add_ignore_arg, check_paths, named

_DESCRIPTION = """\
Compare two folders of mask PNGs (binary 0/255 or instance ids; files paired by name,
objects by id) or two COCO files (a ground-truth dataset file and a dataset or results
file; annotations paired by id, else by best IoU per image and category). Prints IoU,
Boundary IoU and mBA, each as the mean over objects and (IoUs) as total intersection /
total union, overall and by COCO object size (small < 32², medium < 96², large).

With --video, PRED (one or more) and GT are video label folders (GT/<sequence>/<frame>.png,
or one sequence's frames): prints the DAVIS measures (region J, boundary F, J&F) and a
temporal-stability figure per sequence and mean over objects, the PRED folders side by
side (e.g. coarse, per-frame refined, video refined); see docs/video.md.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="score predicted masks against ground truth (PNG folders or COCO files)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "pred",
        metavar="PRED",
        nargs="+",
        help="predicted masks: PNG folder or COCO JSON (a local path); with --video, one or "
        "more label folders scored side by side",
    )
    parser.add_argument(
        "gt", metavar="GT", help="ground truth: PNG folder or COCO dataset JSON (a local path)"
    )
    parser.add_argument(
        "--match",
        choices=("auto", "id", "iou"),
        default="auto",
        help="COCO pairing: by annotation id, by best IoU, or id when every prediction has a "
        "ground-truth id (default: %(default)s)",
    )
    add_ignore_arg(parser, "nothing (left out of every metric)")
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write summary + per-object scores as JSON ('-': stdout)",
    )
    parser.add_argument("--csv", metavar="PATH", help="also write per-object scores as CSV")
    parser.add_argument(
        "--gate",
        nargs=2,
        metavar=("UNGATED", "COARSE"),
        help="score the quality gate of PRED (a run with --gate-* options): UNGATED is the "
        "same run without the gate, COARSE its input (same format as PRED). Reports how many "
        "masks the gate kept, how many refinement made worse (IoU below the coarse mask's), "
        "precision (kept and worse / kept) and recall (kept and worse / worse)",
    )
    video = parser.add_argument_group("video label folders")
    video.add_argument(
        "--video",
        action="store_true",
        help="score video label folders with the DAVIS measures (J, F, J&F) and temporal "
        "stability, per sequence and mean (docs/video.md)",
    )
    video.add_argument(
        "--names",
        nargs="+",
        metavar="NAME",
        help="--video: table labels of the PRED folders, in order (default: folder names)",
    )
    video.add_argument(
        "--bound-th",
        type=finite_float,
        default=0.008,
        metavar="T",
        help="--video: boundary F tolerance, a share of the image diagonal, or pixels when "
        ">= 1 (default: %(default)s, DAVIS's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError, atomic_write_json
    from samrefiner.measure.evaluate import (
        evaluate_coco,
        evaluate_png_folders,
        score_gate_outputs,
    )
    from samrefiner.measure.tables import csv_text, summary_table, write_text

    if args.video:
        return _run_video(args)
    for option in ("names",):
        if getattr(args, option):
            raise CommandError(f"--{option} goes with --video")
    if len(args.pred) > 1:
        raise CommandError("several PRED folders are compared with --video only")
    pred, gt = Path(args.pred[0]), Path(args.gt)
    for path in (pred, gt):
        if not path.exists():
            raise CommandError(f"{path}: not found")
    progress = not args.no_progress
    others = [Path(p) for p in args.gate] if args.gate else []
    for path in others:
        if not path.exists():
            raise CommandError(f"{path}: not found")
    options = ("PRED", "GT", "--gate UNGATED", "--gate COARSE")[: 2 + len(others)]
    inputs = zip(options, (pred, gt, *others), strict=True)
    check_paths(
        args,
        [named(option, path, folder=path.is_dir()) for option, path in inputs],
        [named("--json", None if args.json == "-" else args.json), named("--csv", args.csv)],
    )

    def evaluate(path: Path) -> Any:
        if path.is_dir() and gt.is_dir():
            return evaluate_png_folders(path, gt, ignore=args.ignore, progress=progress)
        if path.is_file() and gt.is_file():
            return evaluate_coco(path, gt, match=args.match, progress=progress)
        raise CommandError(f"{path} and {gt}: give two folders of PNG masks or two COCO JSON files")

    gate = None
    try:
        result = evaluate(pred)
        if others:
            gate = score_gate_outputs(result, evaluate(others[0]), evaluate(others[1]))
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    if not result.objects:
        raise CommandError(f"{gt}: no ground-truth objects to score")
    payload = result.to_dict()
    if gate is not None:
        payload["gate"] = gate.to_dict()
    completion = _completion(pred, gt)
    if completion is not None:
        payload["completion"] = completion.to_dict()
    if args.json:
        if args.json == "-":
            json.dump(payload, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            atomic_write_json(args.json, payload)
    if args.csv:
        write_text(args.csv, csv_text(result.objects))
    if args.json != "-":
        print(summary_table(result.summary))
        notes = [f"{len(result.objects)} ground-truth objects"]
        if result.missing:
            notes.append(f"{len(result.missing)} items without prediction (scored as empty)")
        if result.extra:
            notes.append(f"{result.extra} predicted objects without ground truth (not scored)")
        print("\n" + "; ".join(notes))
        if gate is not None:
            print(f"\nquality gate: {_gate_line(gate)}")
        if completion is not None:
            print(f"\n{completion.format()}")
    return 0


def _completion(pred: Path, gt: Path) -> Any:
    """The completion score of a COCO ``pred`` written by ``coco --complete``, else None."""
    if not (pred.is_file() and gt.is_file()):
        return None
    from samrefiner.io import InputError
    from samrefiner.measure.completion import score_completion

    try:
        return score_completion(pred, gt)
    except InputError as exc:
        raise CommandError(str(exc)) from exc


def _gate_line(gate: Any) -> str:
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (
        f"kept {gate.kept} of {gate.total} masks; refinement made {gate.worse} worse; "
        f"{gate.kept_worse} kept and worse: precision {share(gate.precision)}, "
        f"recall {share(gate.recall)}"
    )


def _run_video(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError, atomic_write_json
    from samrefiner.measure.video import evaluate_video, output_labels, video_tables

    preds, gt = [Path(p) for p in args.pred], Path(args.gt)
    for flag, given in (("--gate", args.gate), ("--csv", args.csv)):
        if given:
            raise CommandError(f"{flag} is not available with --video")
    for path in (*preds, gt):
        if not path.is_dir():
            raise CommandError(f"{path}: --video needs label folders; not a folder")
    if args.bound_th <= 0:
        raise CommandError(f"--bound-th {args.bound_th}: must be positive")
    names = args.names or output_labels(preds)
    if len(names) != len(preds) or len(set(names)) != len(names):
        raise CommandError(f"--names: give {len(preds)} distinct names, one per PRED")
    check_paths(
        args,
        [named("PRED", p, folder=True) for p in preds] + [named("GT", gt, folder=True)],
        [named("--json", None if args.json == "-" else args.json)],
    )
    try:
        report = evaluate_video(
            list(zip(names, preds, strict=True)),
            gt,
            ignore=args.ignore,
            bound_th=args.bound_th,
            progress=not args.no_progress,
        )
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    payload = report.to_json()
    if args.json == "-":
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.json:
        atomic_write_json(args.json, payload)
    print(video_tables(report))
    return 0
