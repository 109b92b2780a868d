"""``--complete`` and ``--name-classes`` of the COCO and instances commands: the options
and the dataset they make (:mod:`samrefiner.runner.formats.complete`), whose counts the
run's summary holds (printed, and in ``--summary``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from samrefiner.cli import CommandError
from samrefiner.cli.arg_types import finite_float
from samrefiner.cli.detecting import CLASSES_HELP, add_detector_args, classes_of, detector_spec_of

if TYPE_CHECKING:
    from samrefiner.io.coco import CocoFile
    from samrefiner.runner.formats.complete import (
        CompletingCocoDataset,
        CompletingInstanceDataset,
    )


def add_completion_args(
    parser: argparse.ArgumentParser,
    *,
    names_of: str = "the file's categories",
) -> None:
    """``--complete``, ``--name-classes``, ``--classes`` (its default told as
    ``names_of``), the match thresholds and the detector options."""
    group = add_detector_args(parser, required=False)
    group.add_argument(
        "--complete",
        action="store_true",
        help="run --detector with the class names on every image: add the detections no "
        "coarse object covers as new objects (refined like the others; in COCO output "
        "marked 'added') and flag the coarse objects no detection supports ('unsupported'; "
        "never removed); counts per class in the summary",
    )
    group.add_argument(
        "--name-classes",
        metavar="NAMES",
        default=None,
        help="name each coarse object after the best-matching detection of these classes "
        "(COCO: its category_id and 'named' in its samrefiner entry; instance maps: a "
        f"<map>.classes.json sidecar per map); {CLASSES_HELP}",
    )
    group.add_argument(
        "--classes",
        metavar="NAMES",
        default=None,
        help=f"the names --complete detects ({names_of}); {CLASSES_HELP}",
    )
    group.add_argument(
        "--match-box-iou",
        type=finite_float,
        default=0.5,
        metavar="T",
        help="a detection and a coarse object match when their boxes' IoU reaches T "
        "(default 0.5) ...",
    )
    group.add_argument(
        "--match-overlap",
        type=finite_float,
        default=0.5,
        metavar="F",
        help="... or when a share F of the detection's box (its mask with SAM 3) lies on the "
        "coarse mask (default 0.5)",
    )


@dataclass
class Completion:
    """What the completion options ask for; :meth:`dataset` / :meth:`instances` make the
    dataset (its counts reach the summary through the runner)."""

    args: argparse.Namespace

    def fingerprint(self) -> dict[str, Any]:
        a = self.args
        return {
            "complete": a.complete,
            "name_classes": a.name_classes,
            "classes": a.classes,
            "match": [a.match_box_iou, a.match_overlap],
            **detector_spec_of(a).fingerprint(),
        }

    def dataset(self, coco: CocoFile, *args: Any, **options: Any) -> CompletingCocoDataset:
        from samrefiner.detectors.matching import MatchSettings
        from samrefiner.runner.formats.complete import CompletingCocoDataset

        a = self.args
        names = a.name_classes if a.name_classes is not None else a.classes
        flag = "--name-classes" if a.name_classes is not None else "--classes"
        dataset = CompletingCocoDataset(
            coco,
            *args,
            detector=detector_spec_of(a),
            classes=None if names is None else classes_of(names, flag),
            complete=a.complete,
            name=a.name_classes is not None,
            matching=MatchSettings(a.match_box_iou, a.match_overlap),
            **options,
        )
        dataset.detector.preload()  # a detector that cannot be loaded is told before any work
        return dataset

    def instances(self, *args: Any, **options: Any) -> CompletingInstanceDataset:
        """The instance-map dataset of ``instances --complete`` / ``--name-classes``
        (the names: ``--name-classes``, else ``--classes``, required with ``--complete``)."""
        from samrefiner.detectors.matching import MatchSettings
        from samrefiner.runner.formats.complete import CompletingInstanceDataset

        a = self.args
        names = a.name_classes if a.name_classes is not None else a.classes
        if names is None:
            raise CommandError("--complete on instance maps needs the names to detect: --classes")
        flag = "--name-classes" if a.name_classes is not None else "--classes"
        dataset = CompletingInstanceDataset(
            *args,
            detector=detector_spec_of(a),
            classes=classes_of(names, flag),
            complete=a.complete,
            name=a.name_classes is not None,
            matching=MatchSettings(a.match_box_iou, a.match_overlap),
            **options,
        )
        dataset.detector.preload()
        return dataset


def completion_of(args: argparse.Namespace) -> Completion | None:
    """The :class:`Completion` the options ask for, or None; mistakes are a
    :class:`CommandError`."""
    wanted = args.complete or args.name_classes is not None
    if wanted and args.detector is None:
        raise CommandError("--complete and --name-classes need a --detector")
    if not wanted:
        for flag, value in (("--detector", args.detector), ("--classes", args.classes)):
            if value is not None:
                raise CommandError(f"{flag} is used with --complete or --name-classes")
        return None
    for flag, value in (
        ("--match-box-iou", args.match_box_iou),
        ("--match-overlap", args.match_overlap),
    ):
        if value < 0:
            raise CommandError(f"{flag} must be >= 0, got {value}")
    detector_spec_of(args)  # its mistakes are told now
    return Completion(args)
