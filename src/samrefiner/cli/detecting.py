"""The detector options shared by ``label``, ``coco --complete`` and ``instances
--complete``: one spelling for each (``--detector``, the thresholds, ``--classes``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from samrefiner.cli import CommandError
from samrefiner.cli.arg_types import finite_float, positive_int

if TYPE_CHECKING:
    from samrefiner.detectors import DetectorSpec
    from samrefiner.io.classes import ClassList

CLASSES_HELP = (
    "class names: a comma-separated list ('person,dog,traffic light'), a text file of "
    "names (one a line), or a COCO JSON file (its categories)"
)


def add_detector_args(parser: argparse.ArgumentParser, *, required: bool) -> Any:
    """``--detector`` and its thresholds; returns the option group."""
    group = parser.add_argument_group("detector")
    group.add_argument(
        "--detector",
        required=required,
        default=None,
        metavar="NAME",
        help="open-vocabulary detector: 'hf:ORG/NAME' from the local Hugging Face cache "
        "(Grounding DINO, MM Grounding DINO / LLMDet, OWLv2, OmDet-Turbo, SAM 3), a "
        "save_pretrained folder, or a 'package.module:function' builder (see docs/text.md)",
    )
    group.add_argument(
        "--box-threshold",
        type=finite_float,
        default=0.3,
        metavar="S",
        help="keep detections whose score reaches S (0..1, default 0.3)",
    )
    group.add_argument(
        "--text-threshold",
        type=finite_float,
        default=0.25,
        metavar="S",
        help="Grounding DINO: a class counts for a box only when its best text token's "
        "score reaches S (0..1, default 0.25; other detectors ignore it)",
    )
    group.add_argument(
        "--nms-iou",
        type=finite_float,
        default=0.5,
        metavar="T",
        help="class-wise non-maximum suppression: drop the lower-scored of two boxes of one "
        "class with box IoU above T (default 0.5; 1 keeps all)",
    )
    group.add_argument(
        "--max-detections",
        type=positive_int,
        default=100,
        metavar="N",
        help="at most N detections per image, highest scores first (default 100)",
    )
    group.add_argument(
        "--random-detector-weights",
        action="store_true",
        help="build a transformers detector with random weights (speed tests only)",
    )
    return group


def detector_spec_of(args: argparse.Namespace) -> DetectorSpec:
    """The :class:`~samrefiner.detectors.DetectorSpec` of the detector options."""
    from samrefiner.detectors import DetectorSpec, DetectSettings

    try:
        settings = DetectSettings(
            box_threshold=args.box_threshold,
            text_threshold=args.text_threshold,
            nms_iou=args.nms_iou,
            max_detections=args.max_detections,
        )
        spec = DetectorSpec(
            args.detector,
            settings,
            random_weights=args.random_detector_weights,
            device=getattr(args, "device", None),
        )
        spec.check()
    except ValueError as exc:
        raise CommandError(f"--detector: {exc}") from exc
    return spec


def classes_of(text: str, flag: str = "--classes") -> ClassList:
    """The :class:`~samrefiner.io.classes.ClassList` an option names (see
    :data:`CLASSES_HELP`)."""
    from samrefiner.io.classes import read_classes
    from samrefiner.io.errors import InputError

    try:
        return read_classes(text)
    except InputError as exc:
        raise CommandError(f"{flag}: {exc}") from exc
