"""``samrefiner refine IMAGE MASK [MASK ...] -o OUTDIR``: refine the masks of one image."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from samrefiner.cli import CommandError
from samrefiner.cli.common import add_refiner_args, build_refiner, config_of

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="refine the coarse masks of one image",
        description=(
            "Refine binary coarse masks (0/255 or 0/1 PNGs, one object each) of one image. "
            "Each refined mask is written to OUTDIR as a 0/255 PNG named after its input "
            "(extension .png), with a JSON sidecar <image>.samrefiner.json holding the "
            "predicted IoU, status, iterations and prompts of every mask."
        ),
    )
    parser.add_argument("image", type=Path, help="image file (any format Pillow reads)")
    parser.add_argument("masks", type=Path, nargs="+", metavar="MASK", help="coarse mask files")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder"
    )
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def _output_names(image: Path, masks: list[Path], outdir: Path) -> list[Path]:
    outputs = [outdir / f"{m.stem}.png" for m in masks]
    inputs = {p.resolve() for p in (image, *masks)}
    seen: dict[Path, Path] = {}
    for mask, out in zip(masks, outputs, strict=True):
        if out in seen:
            raise CommandError(f"{mask} and {seen[out]} would both be written to {out}")
        seen[out] = mask
    sidecar = outdir / f"{image.stem}.samrefiner.json"
    for out in (*outputs, sidecar):
        if out.resolve() in inputs:
            raise CommandError(f"{out}: writing output there would overwrite an input file")
    return outputs


def run(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError, atomic_write_json, read_image, read_mask, write_mask_png

    config = config_of(args)
    outputs = _output_names(args.image, args.masks, args.output)
    # Read and check every input before loading the model: a bad file fails fast.
    try:
        image = read_image(args.image)
        coarse = [read_mask(m) for m in args.masks]
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    for path, mask in zip(args.masks, coarse, strict=True):
        if mask.shape != image.shape[:2]:
            raise CommandError(
                f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} (H x W) but image "
                f"{args.image} is {image.shape[0]}x{image.shape[1]}"
            )

    refiner = build_refiner(args)
    started = time.perf_counter()
    result = refiner.refine(image, np.stack(coarse))
    wall = time.perf_counter() - started

    for out, mask in zip(outputs, result.masks, strict=True):
        write_mask_png(out, mask)
    records = result.to_records()
    for record, src, out in zip(records, args.masks, outputs, strict=True):
        record["input"] = str(src)
        record["output"] = str(out)
    sidecar = args.output / f"{args.image.stem}.samrefiner.json"
    atomic_write_json(
        sidecar,
        {
            "image": str(args.image),
            "model": getattr(refiner.model, "name", str(args.model)),
            "config": config.to_dict(),
            "masks": records,
            "timings": {k: round(v, 4) for k, v in result.timings.items()},
            "wall_seconds": round(wall, 4),
        },
    )
    counts = {s: result.status.count(s) for s in sorted(set(result.status))}
    print(
        f"refined {len(result)} mask(s) of {args.image} in {wall:.2f} s "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())}); wrote {args.output}"
    )
    return 0
