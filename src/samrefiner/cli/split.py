"""``samrefiner split``: write the split-then-merge instances of semantic class maps.

The first half of ``samrefiner semantic`` on its own, like SAMRefiner's
``sem2ins_mask.py``: for each class map ``LABELS/<name>.png`` and each region ``k``
(1-based within its class ``c``) it writes ``OUT/<name>-<c>-<k>.png``, a 0/255 mask. These
names follow the binary-folder rule, so ``samrefiner masks --masks OUT`` refines them.
No model is needed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from samrefiner.cli.common import add_ignore_arg, check_paths, named, non_negative_int
from samrefiner.cli.dataset_run import EXIT_NOTHING_PROCESSED, EXIT_STRICT
from samrefiner.split_merge import DEFAULT_MIN_AREA

log = logging.getLogger("samrefiner.split")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "split",
        help="split semantic class maps into instance masks (no model)",
        description="Split each class of each class map into 8-connected regions, drop "
        "regions under --min-area pixels, merge them as SAMRefiner does, and write one "
        "0/255 PNG per region as OUT/<name>-<class>-<k>.png.",
    )
    parser.add_argument("--labels", required=True, metavar="DIR", help="the class-map PNGs")
    parser.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder for the instance masks"
    )
    add_ignore_arg(parser, "no class")
    parser.add_argument(
        "--min-area",
        type=non_negative_int,
        default=DEFAULT_MIN_AREA,
        metavar="PX",
        help="drop connected components smaller than PX pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help=f"exit with status {EXIT_STRICT} when a map could not be read",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from samrefiner.cli import CommandError
    from samrefiner.io.binary_folder import file_key, list_mask_files
    from samrefiner.io.errors import InputError
    from samrefiner.io.images import write_mask_png
    from samrefiner.io.label_maps import read_label_map
    from samrefiner.split_merge import split_label_map

    labels_dir, output = Path(args.labels), Path(args.output)
    check_paths(
        args, [named("--labels", labels_dir, folder=True)], [named("-o", output, folder=True)]
    )
    try:
        files = list_mask_files(labels_dir)
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    skipped: Counter[str] = Counter()
    done = regions = 0
    for rel in tqdm(files, unit="map", desc="samrefiner split", disable=args.no_progress):
        try:
            label_map = read_label_map(labels_dir / rel)
        except InputError as exc:
            log.warning("%s", exc)
            skipped["mask_unreadable"] += 1
            continue
        split = split_label_map(label_map.labels, ignore=args.ignore, min_area=args.min_area)
        key = file_key(rel)
        for c, k, mask in zip(split.class_ids, split.region_numbers(), split.masks, strict=True):
            write_mask_png(output / f"{key}-{c}-{k}.png", mask)
        done += 1
        regions += len(split)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"
    print(f"maps: {done} split of {len(files)}; skipped: {reasons}\nregions written: {regions}")
    if done == 0:
        print("nothing could be processed", file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    if args.strict and skipped:
        return EXIT_STRICT
    return 0
