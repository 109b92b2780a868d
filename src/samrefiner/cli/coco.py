"""``samrefiner coco``: refine the segmentations of a COCO dataset or results file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from samrefiner.cli.common import add_refiner_args, check_output
from samrefiner.cli.dataset_run import add_run_args, execute


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "coco",
        help="refine a COCO annotation or results file",
        description="Refine every segmentation of a COCO dataset file (images, annotations, "
        "categories) or results file (a list of detections). The output is the same kind of "
        "file: refined annotations get a compressed-RLE segmentation with area and bbox "
        "recomputed, every annotation a 'samrefiner' entry (status, predicted IoU, "
        "coarse-vs-refined IoU); all other fields are kept.",
    )
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="COCO JSON file to refine")
    parser.add_argument(
        "--images",
        required=True,
        metavar="DIR",
        help="folder the images' file_name are relative to",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT.json", help="refined COCO file to write"
    )
    parser.add_argument(
        "--image-info",
        metavar="DATASET.json",
        default=None,
        help="for a results file: the dataset file listing its images (file_name, width, height)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="pass detections with a score below S through unrefined (default: refine all)",
    )
    parser.add_argument(
        "--refine-crowd",
        action="store_true",
        help="also refine iscrowd annotations (passed through by default)",
    )
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.io.coco import load_coco
    from samrefiner.runner.coco import CocoDataset

    annotations, images, output = Path(args.annotations), Path(args.images), Path(args.output)
    # The output may sit among the images (it is no image), but must not replace an input.
    check_output(output, annotations, *([Path(args.image_info)] if args.image_info else []))

    def make() -> CocoDataset:
        coco = load_coco(annotations, image_info=args.image_info)
        return CocoDataset(
            coco, images, output, min_score=args.min_score, refine_crowd=args.refine_crowd
        )

    inputs = {
        "annotations": str(annotations.resolve()),
        "images": str(images.resolve()),
        "image_info": None if args.image_info is None else str(Path(args.image_info).resolve()),
        "min_score": args.min_score,
        "refine_crowd": args.refine_crowd,
    }
    return execute(args, make, output=output, inputs=inputs)
