"""The label and complete steps as library calls over arrays (what ``samrefiner label``
and ``coco --complete`` do per image, without files)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samrefiner.detectors.base import Detections, Detector, DetectSettings
from samrefiner.detectors.matching import Matching, MatchSettings, match
from samrefiner.io.masks import as_mask_stack
from samrefiner.refiner import Refiner
from samrefiner.types import RefineResult


@dataclass
class Labelled:
    """An image labelled from class names.

    Attributes:
        detections: the ``N`` detections (boxes, scores, labels, SAM 3's masks).
        result: the refiner's result for them, same order (``result.masks``: ``N x H x W``).
    """

    detections: Detections
    result: RefineResult


@dataclass
class Completed:
    """A coarse set checked against a detector.

    Attributes:
        detections: every detection of the image (``D``).
        matching: how they match the ``N`` coarse masks (``matching.unsupported``: ``N``
            flags; ``matching.names(detections)``: a class per coarse mask).
        added: indices into ``detections`` of those no coarse mask covers (``A``).
        result: the refiner's result for the added detections (``A`` masks), or None
            when no refiner was given or nothing was added.
    """

    detections: Detections
    matching: Matching
    added: np.ndarray
    result: RefineResult | None


def _refine(refiner: Refiner, image: np.ndarray, found: Detections) -> RefineResult:
    if found.masks is not None:  # SAM 3: its masks are the coarse masks
        return refiner.refine(image, found.masks)
    return refiner.refine(image, boxes=found.boxes)


def _subset(found: Detections, keep: np.ndarray) -> Detections:
    masks = None if found.masks is None else found.masks[keep]
    return Detections(
        found.boxes[keep], found.scores[keep], found.labels[keep], found.classes, masks
    )


def label_image(
    image: np.ndarray,
    classes: Sequence[str],
    detector: Detector,
    refiner: Refiner,
    settings: DetectSettings | None = None,
) -> Labelled:
    """Detect ``classes`` in ``image`` (``H x W x 3`` uint8 RGB) and refine every
    detection: from its box, or from its mask when the detector gives masks (SAM 3)."""
    found = detector.detect(image, classes, settings)
    return Labelled(found, _refine(refiner, image, found))


def complete_image(
    image: np.ndarray,
    masks: np.ndarray,
    classes: Sequence[str],
    detector: Detector,
    refiner: Refiner | None = None,
    *,
    settings: DetectSettings | None = None,
    matching: MatchSettings | None = None,
) -> Completed:
    """Check the coarse ``masks`` (``N x H x W``) of ``image`` against the detections of
    ``classes``: which detections they miss (refined by ``refiner`` when given), which
    masks no detection supports, and each mask's best class."""
    coarse = as_mask_stack(masks, image.shape[:2])
    found = detector.detect(image, classes, settings)
    matched = match(coarse, found, matching)
    added = np.flatnonzero(matched.missed)
    result = None
    if refiner is not None and len(added):
        result = _refine(refiner, image, _subset(found, added))
    return Completed(found, matched, added, result)
