"""``samrefiner report RUN -o DIR``: an HTML page to judge a bench or refine run."""

from __future__ import annotations

import argparse
from pathlib import Path

from samrefiner.cli import CommandError
from samrefiner.cli.common import check_paths, named

_DESCRIPTION = """\
Write a self-contained report folder (index.html, its CSS / JS and card images; no server
or network needed) from a `samrefiner bench` output (OUT or OUT/results.json), a
`samrefiner refine` output folder (its *.samrefiner.json sidecars), or the --summary JSON
of a dataset run (a table of object statuses, no cards). The page has one card
per object — a crop of the image with the coarse, refined and (bench) ground-truth
contours and the prompts (positive / negative points, box, whether it grew) — sortable
and filterable by IoU gain or predicted IoU, a summary table, and plots of the IoU
distribution before vs after and of the gain against the coarse IoU.

With --frames, RUN is a video label folder (the output of `samrefiner video`) and the page
is a filmstrip: per sequence, its frames (--max-frames, spread evenly) once per output with
that output's objects overlaid: the coarse input (--labels), any --compare NAME=FOLDER
(e.g. the per-frame refined output), RUN, and the ground truth (--gt, which adds per-frame
J and the J / F / J&F / stability table).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="HTML before/after report of a bench or refine run",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", type=Path, help="bench or refine output")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="DIR", help="output folder"
    )
    parser.add_argument(
        "--method",
        help="bench method whose cards are shown (default: 'all' if run, else the first "
        "configuration)",
    )
    parser.add_argument(
        "--max-side", type=int, default=320, help="card image size in px (default: %(default)s)"
    )
    video = parser.add_argument_group("video label folders (filmstrip)")
    video.add_argument(
        "--frames",
        type=Path,
        metavar="FRAMES",
        help="frames folder (FRAMES/<sequence>/<frame>.jpg): show RUN as a filmstrip",
    )
    video.add_argument(
        "--labels", type=Path, metavar="LABELS", help="--frames: the coarse label folder"
    )
    video.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="--frames: another label folder to show, named NAME (repeatable)",
    )
    video.add_argument("--gt", type=Path, metavar="GT", help="--frames: ground-truth label folder")
    video.add_argument(
        "--max-frames",
        type=int,
        default=10,
        help="--frames: frames shown per sequence (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError
    from samrefiner.report.build import write_report
    from samrefiner.report.load import load_report_data

    if args.frames is not None:
        return _run_filmstrip(args)
    for flag, given in (("--labels", args.labels), ("--compare", args.compare), ("--gt", args.gt)):
        if given:
            raise CommandError(f"{flag} goes with --frames (a filmstrip of video label folders)")
    if args.max_side < 32:
        raise CommandError(f"--max-side must be >= 32, got {args.max_side}")
    if args.output.exists() and not args.output.is_dir():
        raise CommandError(f"{args.output}: exists and is not a folder")
    from samrefiner.report.build import report_files

    files, cards = report_files(args.output)
    outputs = [*(named("-o", path) for path in files), named("-o", cards, folder=True)]
    check_paths(args, [named("RUN", args.run)], outputs)
    try:
        data = load_report_data(args.run, args.method)
        index = write_report(data, args.output, args.max_side, progress=not args.no_progress)
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {index} ({len(data.cards)} cards)")
    return 0


def _run_filmstrip(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError
    from samrefiner.report.filmstrip import StripSource, filmstrip_files, write_filmstrip_report

    if args.max_frames < 1:
        raise CommandError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.output.exists() and not args.output.is_dir():
        raise CommandError(f"{args.output}: exists and is not a folder")
    sources = [StripSource("coarse", args.labels)] if args.labels is not None else []
    for text in args.compare:
        name, sep, folder = text.partition("=")
        if not sep or not name or not folder:
            raise CommandError(f"--compare {text}: expected NAME=FOLDER")
        sources.append(StripSource(name, Path(folder)))
    sources.append(StripSource(args.run.name or "output", args.run))
    if len({s.label for s in sources}) != len(sources):
        raise CommandError(f"--compare: names must differ from each other and from {args.run.name}")
    for option, path in [("--frames", args.frames), ("--gt", args.gt)] + [
        (s.label, s.folder) for s in sources
    ]:
        if path is not None and not path.is_dir():
            raise CommandError(f"{option} {path}: not a folder")
    files, strips = filmstrip_files(args.output)
    inputs = [named("--frames", args.frames, folder=True), named("--gt", args.gt, folder=True)]
    inputs += [named(s.label, s.folder, folder=True) for s in sources]
    outputs = [*(named("-o", path) for path in files), named("-o", strips, folder=True)]
    check_paths(args, inputs, outputs)
    try:
        index = write_filmstrip_report(
            args.frames,
            sources,
            args.output,
            gt=args.gt,
            max_frames=args.max_frames,
            progress=not args.no_progress,
        )
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {index} (filmstrip of {', '.join(s.label for s in sources)})")
    return 0
