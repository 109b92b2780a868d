"""``samrefiner coco``: refine the segmentations of a COCO dataset or results file."""

from __future__ import annotations

import argparse
from typing import Any

from samrefiner.cli.arg_types import finite_float
from samrefiner.cli.completing import add_completion_args, completion_of
from samrefiner.cli.dataset_run import add_run_args, execute
from samrefiner.cli.options import add_polygon_args, add_refiner_args
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
        "coco",
        help="refine a COCO annotation or results file",
        description="Refine every segmentation of a COCO dataset file (images, annotations, "
        "categories) or results file (a list of detections). The output is the same kind of "
        "file: refined annotations get a compressed-RLE segmentation (or polygons: "
        "--segmentation) with area and bbox recomputed, every annotation a 'samrefiner' "
        "entry (status, predicted IoU, coarse-vs-refined IoU); all other fields are kept.",
    )
    parser.add_argument(
        "annotations",
        metavar="ANNOTATIONS",
        help="COCO JSON file to refine (a path, or a URI such as s3://bucket/ann.json)",
    )
    parser.add_argument(
        "--images",
        required=True,
        metavar="DIR",
        help="folder the images' file_name are relative to (a path, or a URI such as "
        "s3://bucket/images that fsspec reads)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.json",
        help="refined COCO file to write (a local path)",
    )
    parser.add_argument(
        "--image-info",
        metavar="DATASET.json",
        default=None,
        help="for a results file: the dataset file listing its images (file_name, width, "
        "height; a path or a URI)",
    )
    parser.add_argument(
        "--min-score",
        type=finite_float,
        default=None,
        metavar="S",
        help="pass detections with a score below S through unrefined (default: refine all)",
    )
    parser.add_argument(
        "--refine-crowd",
        action="store_true",
        help="also refine iscrowd annotations (passed through by default)",
    )
    parser.add_argument(
        "--from-boxes",
        action="store_true",
        help="refine every annotation that has a bbox from its box (the box alone is the first "
        "prompt), even where it has a segmentation; without it only annotations with no or an "
        "empty segmentation are refined from their bbox",
    )
    add_polygon_args(parser)
    add_completion_args(parser)
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.cli.options import segmentation_output
    from samrefiner.io.coco import load_coco
    from samrefiner.runner.formats.coco import CocoDataset

    annotations, images = local_or_uri(args.annotations), local_or_uri(args.images)
    image_info = None if args.image_info is None else local_or_uri(args.image_info)
    output = local_output(args.output)
    # The output may sit among the images (it is no image), but must not replace an input.
    check_paths(
        args,
        [
            named("ANNOTATIONS", annotations),
            named("--images", images),
            named("--image-info", image_info),
        ],
        run_outputs(args, output, folder=False),
    )

    segmentation = segmentation_output(args)
    completion = completion_of(args)

    def make() -> CocoDataset:
        coco = load_coco(annotations, image_info=image_info)
        return (CocoDataset if completion is None else completion.dataset)(
            coco,
            images,
            output,
            min_score=args.min_score,
            refine_crowd=args.refine_crowd,
            from_boxes=args.from_boxes,
            allow_outside_images=args.allow_outside_images,
            segmentation=segmentation,
        )

    inputs = {
        "annotations": identity(annotations),
        "images": identity(images),
        "image_info": None if image_info is None else identity(image_info),
        "min_score": args.min_score,
        "refine_crowd": args.refine_crowd,
        "from_boxes": args.from_boxes,
    }
    if segmentation.kind != "rle":  # default runs keep the fingerprint they always had
        inputs["segmentation"] = segmentation.to_dict()
    if completion is not None:
        inputs.update(completion.fingerprint())
    return execute(args, make, output=output, inputs=inputs)
