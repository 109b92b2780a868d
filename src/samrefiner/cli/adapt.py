"""``samrefiner adapt FORMAT ...``: train an IoU adapter (SAMRefiner++) on a dataset.

The dataset is read by the same classes the dataset commands use (images and coarse
masks only); the adapter folder is written to ``-o``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

from samrefiner.cli import CommandError
from samrefiner.cli.arg_types import finite_float, non_negative_int, positive_int
from samrefiner.cli.building import (
    check_model_args,
    config_of,
    embedding_cache_of,
    load_model_from_args,
    model_spec_of,
)
from samrefiner.cli.options import add_config_args, add_ignore_arg, add_model_args
from samrefiner.cli.paths import check_paths, named

log = logging.getLogger("samrefiner.cli")

_DESCRIPTION = """\
Teach the model's IoU head, without labels, to rank first the candidate that agrees best
with your coarse masks (SAMRefiner++ IoU adaption): each coarse mask is prompted with its
box, SAM returns three candidates, and the one with the highest IoU with the coarse mask
is the target of a margin ranking loss on a LoRA of the IoU head's last layer. The result
is a small adapter folder; use it with --adapter on refine and the dataset commands. It
fixes which candidate is chosen, not the candidates themselves. Images are encoded once
and kept in the embedding cache. A share of the images (--held-out) is kept out of
training to measure the effect; with --gt (ground truth in the same format) top-1 accuracy
and the IoU of the refined masks are reported too, before and after (the refinement
options below set how the --gt figures refine). With --engine ray the images are encoded
on the actors of a Ray cluster, into an --embedding-cache folder every node shares, and
training goes on here; the adapter is the same.
"""


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    from samrefiner.adaption.settings import AdaptConfig

    d = AdaptConfig()
    run = parser.add_argument_group("adapter output and run")
    run.add_argument("-o", "--output", required=True, metavar="DIR", help="adapter folder to write")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from the checkpoint in the output folder",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--json", metavar="PATH", default=None, help="also write the report as JSON to PATH"
    )
    g = parser.add_argument_group("training (defaults: the reference's SAMRefiner++ settings)")
    g.add_argument(
        "--rank", type=positive_int, default=d.rank, help="LoRA rank (default: %(default)s)"
    )
    g.add_argument(
        "--alpha",
        type=finite_float,
        default=d.alpha,
        help="LoRA alpha; scale alpha/rank (default: %(default)s)",
    )
    g.add_argument(
        "--loss-margin",
        type=finite_float,
        default=d.loss_margin,
        help="margin of the ranking loss (default: %(default)s)",
    )
    g.add_argument(
        "--accumulate",
        type=positive_int,
        default=d.accumulate,
        metavar="N",
        help="objects per optimiser step, loss divided by N (default: %(default)s)",
    )
    g.add_argument(
        "--lr", type=finite_float, default=d.lr, help="SGD learning rate (default: %(default)s)"
    )
    g.add_argument(
        "--momentum",
        type=finite_float,
        default=d.momentum,
        help="SGD momentum (default: %(default)s)",
    )
    g.add_argument(
        "--weight-decay",
        type=finite_float,
        default=d.weight_decay,
        help="SGD weight decay (default: %(default)s)",
    )
    g.add_argument(
        "--milestones",
        type=positive_int,
        nargs="*",
        default=list(d.milestones),
        metavar="STEP",
        help="optimiser steps after which the learning rate is multiplied by --lr-decay "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--lr-decay",
        type=finite_float,
        default=d.lr_decay,
        help="learning-rate factor (default: %(default)s)",
    )
    g.add_argument("--epochs", type=positive_int, default=d.epochs, help="(default: %(default)s)")
    g.add_argument(
        "--seed",
        type=non_negative_int,
        default=d.seed,
        help="seed of the LoRA initialisation, the split and the order (default: %(default)s)",
    )
    g.add_argument(
        "--held-out",
        type=finite_float,
        default=d.held_out,
        metavar="SHARE",
        help="share of the images kept out of training for the report (default: %(default)s)",
    )
    for part, default in (("box", True), ("points", False), ("mask", False)):
        g.add_argument(
            f"--train-{part}",
            action=argparse.BooleanOptionalAction,
            default=default,
            help=f"give SAM the {part} prompt during training (default: "
            f"{'on' if default else 'off'})",
        )


def _add_format(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=_DESCRIPTION)
    parser.set_defaults(func=run, adapt_format=name)
    return parser


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "adapt",
        help="train an IoU adapter on your data, without labels (SAMRefiner++)",
        description=_DESCRIPTION,
    )
    sub = parser.add_subparsers(dest="adapt_format", metavar="FORMAT", required=True)

    coco = _add_format(sub, "coco", "coarse masks in a COCO dataset or results file")
    coco.add_argument("annotations", metavar="ANNOTATIONS", help="COCO JSON file (coarse masks)")
    coco.add_argument("--images", required=True, metavar="DIR", help="the images folder")
    coco.add_argument(
        "--image-info",
        metavar="DATASET.json",
        default=None,
        help="for a results file: the dataset file listing its images",
    )
    coco.add_argument(
        "--gt", metavar="GT.json", default=None, help="ground-truth COCO file (pairs by id)"
    )

    for name, what in (("instances", "instance-id"), ("semantic", "class-map")):
        p = _add_format(sub, name, f"coarse masks as {what} PNG maps")
        p.add_argument("--images", required=True, metavar="DIR", help="the images")
        p.add_argument("--labels", required=True, metavar="DIR", help=f"the {what} PNGs")
        p.add_argument("--gt", metavar="DIR", default=None, help=f"ground-truth {what} PNGs")
        add_ignore_arg(p, "nothing")
        if name == "semantic":
            from samrefiner.split_merge import DEFAULT_MIN_AREA

            p.add_argument(
                "--min-area",
                type=non_negative_int,
                default=DEFAULT_MIN_AREA,
                metavar="PX",
                help="drop connected components smaller than PX pixels (default: %(default)s)",
            )

    masks = _add_format(sub, "masks", "coarse masks as binary PNGs, one object per file")
    masks.add_argument("--images", required=True, metavar="DIR", help="the images")
    masks.add_argument("--masks", required=True, metavar="DIR", help="the coarse masks")
    masks.add_argument(
        "--gt", metavar="DIR", default=None, help="ground-truth masks under the same names"
    )

    from samrefiner.cli.dataset_run import add_engine_args

    for p in sub.choices.values():
        _add_training_args(p)
        add_model_args(p, adapter=False)
        add_engine_args(p, workers=True)
        add_config_args(p)


def _check_paths(args: argparse.Namespace, output: Path) -> None:
    """Refuse an adapter folder, ``--json`` or embedding cache that clashes with an input
    or with each other (:func:`check_paths`)."""
    fmt = args.adapt_format
    inputs = [
        named("--images", args.images, folder=True),
        named("--gt", args.gt, folder=fmt != "coco"),
    ]
    if fmt == "coco":
        inputs += [named("ANNOTATIONS", args.annotations), named("--image-info", args.image_info)]
    elif fmt == "masks":
        inputs.append(named("--masks", args.masks, folder=True))
    else:
        inputs.append(named("--labels", args.labels, folder=True))
    check_paths(args, inputs, [named("-o", output, folder=True), named("--json", args.json)])


def _datasets(args: argparse.Namespace, output: Path) -> tuple[Any, Any, bool]:
    """``(coarse dataset, ground-truth dataset or None, pair objects by id)``."""
    from samrefiner.io.coco import load_coco
    from samrefiner.runner import CocoDataset, InstanceDataset, MaskFolderDataset, SemanticDataset

    fmt = args.adapt_format
    gt = None if args.gt is None else Path(args.gt)
    images = Path(args.images)
    if fmt == "coco":
        annotations = Path(args.annotations)
        coarse = CocoDataset(load_coco(annotations, image_info=args.image_info), images, output)
        truth = None if gt is None else CocoDataset(load_coco(gt), images, output)
        return coarse, truth, True
    if fmt == "masks":
        coarse = MaskFolderDataset(images, args.masks, output)
        truth = None if gt is None else MaskFolderDataset(images, gt, output)
        return coarse, truth, True
    labels = Path(args.labels)
    if fmt == "instances":
        coarse = InstanceDataset(images, labels, output, ignore=args.ignore)
        truth = None if gt is None else InstanceDataset(images, gt, output, ignore=args.ignore)
        return coarse, truth, True
    kw = {"ignore": args.ignore, "min_area": args.min_area}
    coarse = SemanticDataset(images, labels, output, **kw)
    truth = None if gt is None else SemanticDataset(images, gt, output, **kw)
    # Region numbers of a class differ between two maps: pair regions by overlap.
    return coarse, truth, False


class DatasetSource:
    """A runner dataset read as adaption samples (unusable images are skipped, logged).

    Args:
        dataset: the coarse masks.
        truth: the ground truth in the same format, or None.
        by_id: pair objects with the ground truth by id when the ids agree.
    """

    def __init__(self, dataset: Any, truth: Any = None, by_id: bool = True) -> None:
        self.dataset = dataset
        self.truth = truth
        self.by_id = by_id
        self._truth_keys = set(truth.keys()) if truth is not None else set()

    def keys(self) -> list[str]:
        return self.dataset.keys()

    def load(self, key: str) -> Any:
        from samrefiner.adaption import Sample, pair_ground_truth

        job = self.dataset.load(key)
        if not job.refinable:
            if job.image_status:
                log.warning("%s: skipped (%s) %s", key, job.image_status, job.message)
            return None
        # Training holds one image's masks as a full N x H x W stack (the runner keeps
        # box-local crops, samrefiner.crops.MaskCrops).
        masks = job.masks.stack()
        gt = None
        if self.truth is not None and key in self._truth_keys:
            truth = self.truth.load(key)
            if truth.image is not None and truth.masks.shape == job.masks.shape:
                ids = job.ids if self.by_id else []
                gt = pair_ground_truth(ids, masks, truth.ids, truth.masks.stack())
        return Sample(key, job.image, masks, gt)


def _config(args: argparse.Namespace) -> Any:
    from samrefiner.adaption.settings import AdaptConfig

    eval_config = config_of(args)
    try:
        prompts = eval_config.replace(
            iterations=1,
            use_box=args.train_box,
            use_points=args.train_points,
            negative_point=args.train_points and eval_config.negative_point,
            use_mask=args.train_mask,
            margin=0.0,
        )
        return eval_config, AdaptConfig(
            prompts=prompts,
            rank=args.rank,
            alpha=args.alpha,
            loss_margin=args.loss_margin,
            accumulate=args.accumulate,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            milestones=tuple(args.milestones),
            lr_decay=args.lr_decay,
            epochs=args.epochs,
            seed=args.seed,
            held_out=args.held_out,
            dtype=eval_config.dtype,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def report_table(report: dict[str, Any]) -> str:
    """The before / after figures of a training report as a text table."""
    from samrefiner.measure.tables import fmt, markdown_table

    rows = []
    metrics = (
        ("top-1 agreement with the coarse mask", "agreement"),
        ("top-1 accuracy vs GT", "gt_top1"),
        ("mean refined IoU vs GT", "refined_iou"),
    )
    for split in ("train", "held_out"):
        part = report.get(split, {})
        for label, key in metrics:
            if f"{key}_before" in part:
                rows.append(
                    [
                        split.replace("_", "-"),
                        part.get("images", 0),
                        part.get("objects", 0),
                        label,
                        fmt(part[f"{key}_before"]),
                        fmt(part[f"{key}_after"]),
                    ]
                )
    return markdown_table(["split", "images", "objects", "metric", "before", "after"], rows)


def _ray_encoder(args: argparse.Namespace, source: DatasetSource, cache: Any, dtype: str) -> Any:
    """The embedding pass of ``--engine ray``: an ``Encoder`` of ``train_adapter``."""
    from samrefiner.adaption.ray_embed import encode_on_ray
    from samrefiner.cli.dataset_run import ray_engine_options
    from samrefiner.cluster import actor_setup_errors

    options = ray_engine_options(args)
    check_model_args(args)
    encode = functools.partial(
        encode_on_ray,
        # Each actor loads the model from the spec (plain values, no options object).
        make_backend=functools.partial(model_spec_of(args).load_backend, cached=False),
        cache=cache,
        dtype=dtype,
        options=options,
    )

    def encoder(keys: list[str], fingerprint: str) -> int:
        with actor_setup_errors(f"model {args.model!r}"):
            return encode(source, keys, fingerprint)

    return encoder


def run(args: argparse.Namespace) -> int:
    from samrefiner.adaption import AdaptionError, train_adapter
    from samrefiner.adaption.cache import default_cache_dir
    from samrefiner.cluster import ClusterError
    from samrefiner.io import InputError

    output = Path(args.output)
    eval_config, config = _config(args)
    if args.embedding_cache is None:
        args.embedding_cache = str(default_cache_dir())
    _check_paths(args, output)
    try:
        coarse, truth, by_id = _datasets(args, output)
    except (InputError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    cache = embedding_cache_of(args)  # checked before the (slow) model load
    source = DatasetSource(coarse, truth, by_id)
    encoder = _ray_encoder(args, source, cache, config.dtype) if args.engine == "ray" else None
    backend = load_model_from_args(args, cached=False)
    try:
        result = train_adapter(
            backend,
            source,
            output,
            config,
            cache=cache,
            eval_config=eval_config,
            resume=args.resume,
            progress=not args.no_progress,
            encoder=encoder,
        )
    except (AdaptionError, ClusterError) as exc:  # ClusterError: the cluster, a worker's model
        raise CommandError(str(exc)) from exc
    except KeyboardInterrupt:
        print(
            f"interrupted: the last finished step is saved in {output}; run the same "
            "command with --resume to continue",
            file=sys.stderr,
        )
        raise
    report = result.info.report
    if args.json:
        from samrefiner.io import atomic_write_json

        atomic_write_json(args.json, report)
    print(report_table(report))
    print(
        f"\n{report['steps']} optimiser steps, loss {report['loss_first']:.4f} -> "
        f"{report['loss_last']:.4f}; {report['encoded_images']} images encoded "
        f"(the rest from the cache); adapter written to {result.path}"
    )
    log.debug("report: %s", json.dumps(report))
    return 0
