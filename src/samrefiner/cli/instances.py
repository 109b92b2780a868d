"""``samrefiner instances``: refine folders of instance-id maps (DAVIS, VOC objects)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from samrefiner.cli.common import add_config_args, add_model_args
from samrefiner.runner.options import add_run_args, check_output, execute, ignore_value


def add_label_folder_args(parser: argparse.ArgumentParser, labels_flag: str, what: str) -> None:
    """``--images``, the labels folder option, ``-o``, ``--ignore``, ``--refine-ignore``."""
    parser.add_argument("--images", required=True, metavar="DIR", help="the images")
    parser.add_argument(
        labels_flag,
        dest="labels",
        required=True,
        metavar="DIR",
        help=f"the {what} PNGs, one per image, named like it (bear/00000.png for bear/00000.jpg)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the refined maps (same names, mode and palette)",
    )
    parser.add_argument(
        "--ignore",
        type=ignore_value,
        default=255,
        metavar="VALUE",
        help="label of pixels that belong to nothing, or 'none' (default: %(default)s)",
    )
    parser.add_argument(
        "--refine-ignore",
        action="store_true",
        help="let refined objects take ignore pixels (kept by default)",
    )


def label_folder_inputs(args: argparse.Namespace) -> tuple[Path, Path, Path, dict[str, Any]]:
    """The folders of :func:`add_label_folder_args` (output checked) and resume inputs.

    Returns ``(images, labels, output, inputs)``; ``inputs`` is what a resumed run must
    share with the first one (part of the resume fingerprint).
    """
    images, labels, output = Path(args.images), Path(args.labels), Path(args.output)
    check_output(output, images, labels)
    inputs = {
        "images": str(images.resolve()),
        "labels": str(labels.resolve()),
        "ignore": args.ignore,
        "refine_ignore": args.refine_ignore,
    }
    return images, labels, output, inputs


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "instances",
        help="refine instance-id PNG maps",
        description="Refine instance-id maps (palette, 8-bit or 16-bit grey PNGs; 0 = "
        "background): each id is refined as one object and written back with the same "
        "palette; where refined objects overlap, the higher predicted IoU wins.",
    )
    add_label_folder_args(parser, "--masks", "instance-id")
    add_run_args(parser)
    add_model_args(parser)
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.runner.label_folders import InstanceDataset

    images, labels, output, inputs = label_folder_inputs(args)
    return execute(
        args,
        lambda: InstanceDataset(
            images, labels, output, ignore=args.ignore, refine_ignore=args.refine_ignore
        ),
        output=output,
        inputs=inputs,
    )
