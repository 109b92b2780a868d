"""``samrefiner yolo``: refine an Ultralytics YOLO segmentation dataset."""

from __future__ import annotations

import argparse
from typing import Any

from samrefiner.cli import CommandError
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
        "yolo",
        help="refine an Ultralytics YOLO segmentation dataset",
        description="Refine the labels of a YOLO segmentation dataset (one text file per "
        "image, one normalised polygon per line, class first; 5-value box lines are refined "
        "from their box) and write the dataset, images and YAML included, in the same "
        "layout under OUT: each refined object as one polygon line, every line that cannot "
        "be used unchanged.",
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help="the dataset YAML (path, train / val / test as folders or list files, names), "
        "or an images folder whose labels sit in the 'labels' folder beside its 'images'",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder the refined dataset is written to (the same layout; a local path)",
    )
    add_polygon_files_args(parser)
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.io.errors import InputError
    from samrefiner.io.yolo import load_yolo_data
    from samrefiner.runner.formats.yolo import YoloDataset

    output = local_output(args.output)
    try:
        data = load_yolo_data(args.data)
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    inputs = [named("the dataset root", data.root, folder=True)]
    if data.yaml_path is not None:
        inputs.append(named("DATA", data.yaml_path))
    check_paths(args, inputs, run_outputs(args, output, folder=True))
    fingerprint = {
        "data": identity(data.yaml_path or data.root),
        "root": identity(data.root),
        **polygon_files_fingerprint(args),
    }
    return execute(
        args,
        lambda: YoloDataset(
            data,
            output,
            **polygon_files_options(args),
        ),
        output=output,
        inputs=fingerprint,
    )
