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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError
    from samrefiner.report.build import write_report
    from samrefiner.report.load import load_report_data

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
