"""``samrefiner label``: label a folder of images from class names (a detector's boxes,
refined by the SAM-family model)."""

from __future__ import annotations

import argparse
from typing import Any

from samrefiner.cli.dataset_run import add_run_args, execute
from samrefiner.cli.detecting import (
    CLASSES_HELP,
    add_detector_args,
    classes_of,
    detector_spec_of,
)
from samrefiner.cli.options import URI_HELP, add_refiner_args
from samrefiner.cli.paths import (
    check_paths,
    identity,
    local_or_uri,
    local_output,
    named,
    run_outputs,
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "label",
        help="label images from class names (detector boxes refined into masks)",
        description="Detect every object of the given classes in each image of a folder "
        "with an open-vocabulary detector (--detector), refine each detection into a mask "
        "with the SAM-family model (from its box; from its own mask with SAM 3) and write a "
        "COCO file: one category per class, one annotation per detection with the "
        "detector's score, the mask as compressed RLE and a 'samrefiner' entry (status, "
        "predicted IoU, the detector's score, box and class).",
    )
    parser.add_argument("images", metavar="IMAGES", help=f"folder of images ({URI_HELP}images)")
    parser.add_argument("--classes", required=True, metavar="NAMES", help=CLASSES_HELP)
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.json",
        help="COCO file to write (a local path)",
    )
    add_detector_args(parser, required=True)
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.runner.formats.label import LabelDataset

    images = local_or_uri(args.images)
    output = local_output(args.output)
    check_paths(
        args, [named("IMAGES", images, folder=True)], run_outputs(args, output, folder=False)
    )
    classes = classes_of(args.classes)
    detector = detector_spec_of(args)

    def make() -> LabelDataset:
        dataset = LabelDataset(
            images, output, classes, detector, allow_outside_images=args.allow_outside_images
        )
        dataset.detector.preload()  # a detector that cannot be loaded is told before any work
        return dataset

    inputs = {
        "images": identity(images),
        "classes": classes.categories(),
        **detector.fingerprint(),
    }
    return execute(args, make, output=output, inputs=inputs)
