"""Argument definitions shared by the subcommands: ``--ignore``, ``--iou-range``, the
label-folder arguments, and the model and refinement options of every command that runs
a model (:func:`add_refiner_args`: :func:`add_model_args` and :func:`add_config_args`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from samrefiner.config import DTYPES, FIELD_HELP, SELECTIONS, RefineConfig

if TYPE_CHECKING:
    from samrefiner.io.coco import SegmentationOutput
from samrefiner.cli.arg_types import finite_float, ignore_value

_DEFAULTS = RefineConfig()

#: Label value of pixels that belong to nothing (VOC's boundary band), by default.
DEFAULT_IGNORE = 255

#: ``CoarseSpec``'s default, repeated so that ``--help`` need not import the perturbation
#: families (OpenCV, SciPy); a test checks that the two agree.
DEFAULT_IOU_RANGE = (0.5, 0.9)


class _DeprecatedIgnoreValue(argparse.Action):
    """``--ignore-value V`` (``-1``: none), the old spelling of ``--ignore``: sets ``ignore``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        try:
            value = int(values)
        except ValueError:
            parser.error(f"argument --ignore-value: expected an integer, got {values!r}")
        if value < -1 or value > 65535:
            parser.error(f"argument --ignore-value: must be -1 or in [0, 65535], got {value}")
        new = "none" if value < 0 else str(value)
        print(
            f"samrefiner: --ignore-value is deprecated and will be removed; use --ignore {new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, None if value < 0 else value)


def add_ignore_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ignore VALUE|none`` (``what``: what the value is not, e.g. "no object").

    The old spelling ``--ignore-value V`` (``-1`` for none) is accepted with a
    deprecation notice for one release; it is left out of ``--help``.
    """
    parser.add_argument(
        "--ignore",
        type=ignore_value,
        default=DEFAULT_IGNORE,
        metavar="VALUE",
        help=f"label of pixels that belong to {what}, or 'none' (default: %(default)s)",
    )
    parser.add_argument(
        "--ignore-value", dest="ignore", action=_DeprecatedIgnoreValue, help=argparse.SUPPRESS
    )


def add_iou_range_arg(parser: argparse.ArgumentParser) -> None:
    """``--iou-range LO HI`` of coarse-mask synthesis (make-coarse, bench)."""
    lo, hi = DEFAULT_IOU_RANGE
    parser.add_argument(
        "--iou-range",
        type=finite_float,
        nargs=2,
        default=DEFAULT_IOU_RANGE,
        metavar=("LO", "HI"),
        help="coarse-vs-GT IoU targets of synthesized masks are drawn uniformly from "
        f"[LO, HI] (default: {lo} {hi})",
    )


class _DeprecatedAlias(argparse.Action):
    """An old option name: stores its value like the new one, with a notice on stderr."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"samrefiner: {option_string} is deprecated and will be removed; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


#: What the help of an input folder adds: it may be a URI.
URI_HELP = "a path, or a URI that fsspec reads such as s3://bucket/"


def add_images_arg(parser: argparse.ArgumentParser) -> None:
    """``--images DIR`` of the folder-based dataset commands (a path or a URI)."""
    parser.add_argument(
        "--images", required=True, metavar="DIR", help=f"the images ({URI_HELP}images)"
    )


def add_label_folder_args(
    parser: argparse.ArgumentParser, what: str, *, old_flag: str | None = None
) -> None:
    """``--images``, ``--labels``, ``-o``, ``--ignore``, ``--refine-ignore``.

    ``--labels`` is the folder of label maps (``what``: "instance-id", "class-map");
    ``old_flag`` is a deprecated name of it, still accepted for one release.
    """
    add_images_arg(parser)
    parser.add_argument(
        "--labels",
        dest="labels",
        required=old_flag is None,  # with an alias: checked by label_folder_inputs
        default=None,
        metavar="DIR",
        help=f"the {what} PNGs, one per image, named like it (bear/00000.png for "
        f"bear/00000.jpg; {URI_HELP}labels)",
    )
    if old_flag is not None:
        parser.add_argument(
            old_flag, dest="labels", action=_DeprecatedAlias, new="--labels", help=argparse.SUPPRESS
        )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the refined maps (same names, mode and palette; a local path)",
    )
    add_ignore_arg(parser, "nothing")
    parser.add_argument(
        "--refine-ignore",
        action="store_true",
        help="let refined objects take ignore pixels (kept by default)",
    )


def add_model_args(parser: argparse.ArgumentParser, *, adapter: bool = True) -> Any:
    """``--model``, ``--checkpoint``, ``--device``, ``--random-weights``, the embedding
    cache options and (with ``adapter``) ``--adapter``; returns their argument group."""
    from samrefiner.models.catalog import model_help  # torch-free

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="sam_vit_h",
        help=model_help() + " (default: %(default)s)",
    )
    group.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="weights file for --model; without it a named model's official checkpoint is "
        "taken from $SAMREFINER_HOME (default ~/.cache/samrefiner), downloaded once if absent",
    )
    group.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="build the architecture with random weights instead of loading a checkpoint "
        "(smoke tests and speed benchmarks only: the masks are meaningless)",
    )
    if adapter:
        group.add_argument(
            "--adapter",
            default=None,
            metavar="DIR",
            help="IoU adapter folder written by 'samrefiner adapt' for this model: changes "
            "which of SAM's candidates is kept, never the candidates (default: none)",
        )
    group.add_argument(
        "--embedding-cache",
        default=None,
        metavar="DIR",
        help="keep image embeddings in DIR, keyed by image content and model weights, and "
        "reuse them in later runs (shared safely between runs; default: "
        + (
            "none"
            if adapter
            else "$SAMREFINER_HOME/embeddings; with --engine ray the "
            "actors write into it: a folder every node of the cluster shares"
        )
        + ")",
    )
    group.add_argument(
        "--embedding-cache-size",
        type=finite_float,
        default=4.0,
        metavar="GB",
        help="size bound of --embedding-cache; the least recently used embeddings are "
        "deleted beyond it (default: %(default)s)",
    )
    return group


def _flag_pair(group: Any, name: str, default: bool) -> None:
    flag = name.replace("_", "-")
    group.add_argument(
        f"--{flag}",
        dest=name,
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{FIELD_HELP[name]} (default: {'on' if default else 'off'})",
    )


#: Fields whose default None means "off": their value type and metavar.
_OFF_BY_DEFAULT: dict[str, tuple[Callable[[str], Any], str]] = {
    "early_stop_iou": (finite_float, "IOU"),
    "zoom_below": (int, "PX"),
    "gate_min_score": (finite_float, "IOU"),
    "gate_min_coarse_iou": (finite_float, "IOU"),
    "gate_max_area_ratio": (finite_float, "FACTOR"),
}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`RefineConfig` field, defaults taken from the dataclass.

    Fields that change results go in the "refinement" group, speed-only ones (see
    :data:`samrefiner.config.SPEED_ONLY`) in the "speed" group.
    """
    results = parser.add_argument_group("refinement (RefineConfig)")
    speed = parser.add_argument_group("speed (RefineConfig; results do not depend on these)")
    for field in dataclasses.fields(RefineConfig):
        name, default = field.name, getattr(_DEFAULTS, field.name)
        group = speed if RefineConfig.is_speed_only(name) else results
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            _flag_pair(group, name, default)
        elif name in ("dtype", "selection"):
            group.add_argument(
                flag,
                choices=DTYPES if name == "dtype" else SELECTIONS,
                default=default,
                help=f"{FIELD_HELP[name]} (default: %(default)s)",
            )
        elif name in ("max_batch", "threads"):
            group.add_argument(
                flag,
                type=int,
                default=default,
                metavar="N",
                help=f"{FIELD_HELP[name]} (default: automatic)",
            )
        elif name in _OFF_BY_DEFAULT:
            kind, metavar = _OFF_BY_DEFAULT[name]
            group.add_argument(
                flag,
                type=kind,
                default=default,
                metavar=metavar,
                help=f"{FIELD_HELP[name]} (default: off)",
            )
        else:
            group.add_argument(
                flag,
                type=finite_float if isinstance(default, float) else type(default),
                default=default,
                metavar=name.upper(),
                help=f"{FIELD_HELP[name]} (default: %(default)s)",
            )


def add_refiner_args(parser: argparse.ArgumentParser) -> None:
    """Every option :func:`build_refiner` reads: the model and the refinement settings.

    ``refine``, ``bench`` and every dataset command call this, so an option added here
    reaches all of them.
    """
    model = add_model_args(parser)
    model.add_argument(
        "--hq-token-only",
        action="store_true",
        help="HQ-SAM models only (sam_hq_* names and Hugging Face SAM-HQ models): keep the HQ "
        "token's mask as the one candidate, scored by the best of SAM's IoU predictions "
        "(default: SAM's three candidates, each plus the HQ mask, as the reference does)",
    )
    add_config_args(parser)


#: ``--segmentation`` choices and ``--holes`` choices, repeated from
#: :mod:`samrefiner.io.coco` so that ``--help`` need not import pycocotools (a test checks
#: that they agree).
SEGMENTATION_CHOICES = ("rle", "polygon", "same")
HOLES_CHOICES = ("fill", "rle")


def add_polygon_args(parser: argparse.ArgumentParser, *, kinds: bool = True) -> None:
    """How refined masks are written as polygons: ``--simplify``, ``--min-polygon-area``
    and, with ``kinds`` (a format that can write RLE too), ``--segmentation`` and
    ``--holes``. :func:`segmentation_output` turns them into the library's
    :class:`~samrefiner.io.coco.SegmentationOutput`."""
    from samrefiner.cli.arg_types import non_negative_float

    group = parser.add_argument_group("polygon output")
    if kinds:
        group.add_argument(
            "--segmentation",
            choices=SEGMENTATION_CHOICES,
            default="rle",
            help="how refined masks are written: compressed RLE (default), polygons, or "
            "'same' as each input annotation (polygons stay polygons, RLE stays RLE, "
            "annotations refined from a box alone get RLE)",
        )
        group.add_argument(
            "--holes",
            choices=HOLES_CHOICES,
            default="fill",
            help="polygon output of an object with holes (a polygon cannot hold one): "
            "'fill' writes its outer boundaries, the holes filled, with a 'holes_filled' "
            "warning counted in the summary (default); 'rle' writes that object as RLE",
        )
    group.add_argument(
        "--simplify",
        type=non_negative_float,
        default=0.0,
        metavar="PIXELS",
        help="Douglas-Peucker tolerance of the polygons in pixels (default 0: every "
        "boundary corner, the polygons decode to exactly the mask)",
    )
    group.add_argument(
        "--min-polygon-area",
        type=non_negative_float,
        default=0.0,
        metavar="PIXELS",
        help="drop polygon parts and holes enclosing fewer pixels (the largest part is "
        "always kept; default 0)",
    )


def segmentation_output(args: argparse.Namespace) -> SegmentationOutput:
    """The :class:`~samrefiner.io.coco.SegmentationOutput` of :func:`add_polygon_args`'
    options; a :class:`~samrefiner.cli.CommandError` when they do not fit together."""
    from samrefiner.cli import CommandError
    from samrefiner.io.coco import SegmentationOutput

    try:
        return SegmentationOutput(
            kind=getattr(args, "segmentation", "polygon"),
            simplify=args.simplify,
            min_polygon_area=args.min_polygon_area,
            holes=getattr(args, "holes", "fill"),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def add_polygon_files_args(parser: argparse.ArgumentParser) -> None:
    """The options of a format whose label files are written as polygons with their
    images beside them (labelme, YOLO): ``--copy-images`` and :func:`add_polygon_args`'
    polygon options; :func:`polygon_files_options` reads them."""
    parser.add_argument(
        "--copy-images",
        action="store_true",
        help="copy the images into OUT (default: hard links where the file system allows, "
        "else copies)",
    )
    add_polygon_args(parser, kinds=False)


def polygon_files_fingerprint(args: argparse.Namespace) -> dict[str, float]:
    """The :func:`add_polygon_files_args` options that change the written files, for a
    run's fingerprint."""
    return {"simplify": args.simplify, "min_polygon_area": args.min_polygon_area}


def polygon_files_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options of the format's dataset (``LabelmeDataset``, ``YoloDataset``)
    from :func:`add_polygon_files_args`' options and ``--allow-outside-images``."""
    return {
        "tolerance": args.simplify,
        "min_area": args.min_polygon_area,
        "link_images": not args.copy_images,
        "allow_outside_images": args.allow_outside_images,
    }
