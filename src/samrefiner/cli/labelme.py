"""``samrefiner labelme``: refine a folder of labelme JSON files."""

from __future__ import annotations

import argparse
from typing import Any

from samrefiner.cli.dataset_run import add_run_args, execute
from samrefiner.cli.options import (
    add_polygon_files_args,
    add_refiner_args,
    polygon_files_fingerprint,
    polygon_files_options,
)
from samrefiner.cli.paths import check_paths, identity, local_output, named, run_outputs


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "labelme",
        help="refine a folder of labelme JSON files",
        description="Refine the polygon, rectangle (from its box), circle and mask shapes of "
        "labelme JSON files (shapes sharing a label and group_id are one object) and write "
        "each file back under OUT: a refined object as a polygon, as polygons sharing its "
        "group_id when it has several parts, or as a mask shape where a polygon cannot hold "
        "it (holes); every other shape and field unchanged, the images beside the files.",
    )
    parser.add_argument("folder", metavar="DIR", help="folder of labelme JSON files (any depth)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder the refined JSON files are written to (same names; a local path)",
    )
    add_polygon_files_args(parser)
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from samrefiner.runner.formats.labelme import LabelmeDataset

    folder = Path(args.folder)
    output = local_output(args.output)
    check_paths(args, [named("DIR", folder, folder=True)], run_outputs(args, output, folder=True))
    fingerprint = {
        "folder": identity(folder),
        **polygon_files_fingerprint(args),
    }
    return execute(
        args,
        lambda: LabelmeDataset(
            folder,
            output,
            **polygon_files_options(args),
        ),
        output=output,
        inputs=fingerprint,
    )
