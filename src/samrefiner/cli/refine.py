"""``samrefiner refine IMAGE MASK [MASK ...] -o OUTDIR``: refine the masks of one image."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from samrefiner.cli import CommandError
from samrefiner.cli.common import (
    add_refiner_args,
    build_refiner,
    check_paths,
    config_of,
    finite_float,
    named,
)
from samrefiner.io.masks import as_box_array

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="refine the coarse masks of one image",
        description=(
            "Refine binary coarse masks (0/255 or 0/1 PNGs, one object each) of one image. "
            "Each refined mask is written to OUTDIR as a 0/255 PNG named after its input "
            "(extension .png), with a JSON sidecar <image>.samrefiner.json holding the "
            "predicted IoU, status, iterations and prompts of every mask. Objects may also be "
            "given as boxes (--box): each is refined from the box alone first, and written "
            "as <image>-box<k>.png."
        ),
    )
    parser.add_argument("image", type=Path, help="image file (any format Pillow reads)")
    parser.add_argument("masks", type=Path, nargs="*", metavar="MASK", help="coarse mask files")
    parser.add_argument(
        "--box",
        dest="boxes",
        type=finite_float,
        nargs=4,
        action="append",
        default=[],
        metavar=("X1", "Y1", "X2", "Y2"),
        help="an object given by its box (pixels, x2/y2 the last column/row); repeatable",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder"
    )
    add_refiner_args(parser)
    parser.set_defaults(func=run)


def _output_names(args: argparse.Namespace) -> list[Path]:
    """Outputs of the masks, then of the boxes (``<image>-box<k>.png``, k from 1),
    checked against each other and every input (:func:`check_paths`)."""
    image, masks, outdir = args.image, args.masks, args.output
    n_boxes = len(args.boxes)
    sources = [*masks, *(Path(f"--box #{k}") for k in range(1, n_boxes + 1))]
    outputs = [outdir / f"{m.stem}.png" for m in masks]
    outputs += [outdir / f"{image.stem}-box{k}.png" for k in range(1, n_boxes + 1)]
    seen: dict[Path, Path] = {}
    for mask, out in zip(sources, outputs, strict=True):
        if out in seen:
            raise CommandError(f"{mask} and {seen[out]} would both be written to {out}")
        seen[out] = mask
    from samrefiner.io.sidecar import SIDECAR_SUFFIX

    sidecar = outdir / f"{image.stem}{SIDECAR_SUFFIX}"
    check_paths(
        args,
        [named("IMAGE", image), *(named("MASK", m) for m in masks)],
        [*(named("-o", out) for out in outputs), named("-o", sidecar)],
    )
    return outputs


def _objects(
    masks: list[np.ndarray], boxes: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray | None, np.ndarray | None, list[bool]]:
    """The objects of one image, masks first, then boxes: ``(masks, boxes, from_box)``
    for :meth:`~samrefiner.Refiner.refine` (the rows of the other kind unused; None
    for a kind with no object)."""
    n_masks, n = len(masks), len(masks) + len(boxes)
    from_box = [k >= n_masks for k in range(n)]
    mask_rows = np.stack(masks) if masks and not len(boxes) else None
    if masks and len(boxes):
        mask_rows = np.zeros((n, *size), dtype=bool)
        mask_rows[:n_masks] = masks
    box_rows = None
    if len(boxes):
        box_rows = np.full((n, 4), np.nan, dtype=np.float32)
        box_rows[n_masks:] = boxes
    return mask_rows, box_rows, from_box


def run(args: argparse.Namespace) -> int:
    from samrefiner.io import InputError, atomic_write_json, read_image, read_mask, write_mask_png
    from samrefiner.io.sidecar import SIDECAR_SUFFIX, RefineSidecar, SidecarMask

    config = config_of(args)
    if not args.masks and not args.boxes:
        raise CommandError("give at least one MASK file or --box")
    outputs = _output_names(args)
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
    boxes = np.array(args.boxes, dtype=np.float32).reshape(-1, 4)
    try:
        as_box_array(boxes, image.shape[:2])
    except ValueError as exc:
        raise CommandError(f"--box: {exc}") from exc

    refiner = build_refiner(args)
    started = time.perf_counter()
    masks_in, boxes_in, from_box = _objects(coarse, boxes, image.shape[:2])
    result = refiner.refine(image, masks_in, boxes=boxes_in, from_box=from_box)
    wall = time.perf_counter() - started

    for out, mask in zip(outputs, result.masks, strict=True):
        write_mask_png(out, mask)
    sources = [str(m) for m in args.masks] + [f"box {b.tolist()}" for b in boxes]
    given_boxes: list[list[float] | None] = [None] * len(args.masks)
    given_boxes += [b.tolist() for b in boxes]
    masks = [
        SidecarMask(src, str(out), box=box, **record)
        for record, src, out, box in zip(
            result.to_records(), sources, outputs, given_boxes, strict=True
        )
    ]
    sidecar = RefineSidecar(
        image=str(args.image),
        model=getattr(refiner.model, "name", str(args.model)),
        config=config.to_dict(),
        masks=masks,
        timings=dict(result.timings),
        wall_seconds=wall,
    )
    atomic_write_json(args.output / f"{args.image.stem}{SIDECAR_SUFFIX}", sidecar.to_json())
    counts = {s: result.status.count(s) for s in sorted(set(result.status))}
    print(
        f"refined {len(result)} mask(s) of {args.image} in {wall:.2f} s "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())}); wrote {args.output}"
    )
    return 0
