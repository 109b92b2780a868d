"""``samrefiner masks``: refine a folder of per-object binary masks."""

from __future__ import annotations

import argparse
from typing import Any

from samrefiner.cli.dataset_run import add_run_args, execute
from samrefiner.cli.options import URI_HELP, add_images_arg, add_refiner_args
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
        "masks",
        help="refine a folder of binary mask PNGs",
        description="Refine binary masks (0/255 or 0/1 PNGs, one object per file). A mask "
        "file R.png belongs to the image whose name (path under --images without extension) "
        "is R, else the folder of R, else the longest image name N with R starting 'N-'. "
        "Refined masks are written as 0/255 PNGs under the same names.",
    )
    add_images_arg(parser)
    parser.add_argument(
        "--masks", required=True, metavar="DIR", help=f"the coarse masks ({URI_HELP}masks)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the refined masks (a local path)",
    )
    add_run_args(parser)
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samrefiner.runner.formats.mask_folders import MaskFolderDataset

    images, masks = local_or_uri(args.images), local_or_uri(args.masks)
    output = local_output(args.output)
    check_paths(
        args,
        [named("--images", images, folder=True), named("--masks", masks, folder=True)],
        run_outputs(args, output, folder=True),
    )
    inputs = {"images": identity(images), "masks": identity(masks)}
    return execute(
        args,
        lambda: MaskFolderDataset(
            images, masks, output, allow_outside_images=args.allow_outside_images
        ),
        output=output,
        inputs=inputs,
    )
