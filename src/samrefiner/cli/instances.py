"""``samrefiner instances``: refine folders of instance-id maps (DAVIS, VOC objects)."""

from __future__ import annotations

import argparse
from typing import Any

from samrefiner.cli.completing import add_completion_args, completion_of
from samrefiner.cli.dataset_run import add_run_args, execute
from samrefiner.cli.options import add_label_folder_args, add_refiner_args
from samrefiner.cli.paths import label_folder_inputs


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "instances",
        help="refine instance-id PNG maps",
        description="Refine instance-id maps (palette, 8-bit or 16-bit grey PNGs; 0 = "
        "background): each id is refined as one object and written back with the same "
        "palette; where refined objects overlap, the higher predicted IoU wins.",
    )
    add_label_folder_args(parser, "instance-id", old_flag="--masks")
    add_completion_args(
        parser, names_of="required with --complete, unless --name-classes gives them"
    )
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.runner.formats.label_folders import InstanceDataset

    images, labels, output, inputs = label_folder_inputs(args)
    completion = completion_of(args)
    make = InstanceDataset if completion is None else completion.instances
    return execute(
        args,
        lambda: make(
            images,
            labels,
            output,
            ignore=args.ignore,
            refine_ignore=args.refine_ignore,
            allow_outside_images=args.allow_outside_images,
        ),
        output=output,
        inputs=inputs if completion is None else {**inputs, **completion.fingerprint()},
    )
