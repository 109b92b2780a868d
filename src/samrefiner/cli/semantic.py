"""``samrefiner semantic``: refine folders of semantic class maps with split-then-merge."""

from __future__ import annotations

import argparse
from typing import Any

from samrefiner.cli.arg_types import non_negative_int
from samrefiner.cli.dataset_run import add_run_args, execute
from samrefiner.cli.options import add_label_folder_args, add_refiner_args
from samrefiner.cli.paths import label_folder_inputs
from samrefiner.split_merge import DEFAULT_MIN_AREA


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "semantic",
        help="refine semantic class PNG maps (split-then-merge)",
        description="Refine semantic class maps (VOC SegmentationClass style): each class "
        "is split into 8-connected regions, merged as SAMRefiner does, each region is "
        "refined, and the regions are painted back (overlaps between classes go to the "
        "higher predicted IoU, unclaimed pixels become background, ignore pixels are kept).",
    )
    add_label_folder_args(parser, "class-map")
    parser.add_argument(
        "--min-area",
        type=non_negative_int,
        default=DEFAULT_MIN_AREA,
        metavar="PX",
        help="drop connected components smaller than PX pixels (default: %(default)s)",
    )
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.runner.formats.label_folders import SemanticDataset

    images, labels, output, inputs = label_folder_inputs(args)
    inputs["min_area"] = args.min_area
    return execute(
        args,
        lambda: SemanticDataset(
            images,
            labels,
            output,
            ignore=args.ignore,
            refine_ignore=args.refine_ignore,
            min_area=args.min_area,
            allow_outside_images=args.allow_outside_images,
        ),
        output=output,
        inputs=inputs,
    )
