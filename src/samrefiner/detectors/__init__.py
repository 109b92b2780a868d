"""Open-vocabulary detectors: class names in, boxes, scores and labels out.

One small interface (:class:`Detector`, :meth:`Detector.detect` -> :class:`Detections`)
over the ``transformers`` zero-shot detectors (Grounding DINO, MM Grounding DINO /
LLMDet, OWLv2 / OWL-ViT, OmDet-Turbo) and SAM 3's text prompts (which give instance masks
too), loaded by :func:`load_detector` the way models are loaded. :func:`detect` is the
one-call form. See docs/text.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from samrefiner.detectors.base import (
    Candidates,
    Detections,
    Detector,
    DetectSettings,
    check_classes,
    select,
)
from samrefiner.detectors.loading import (
    DetectorSpec,
    LoadedDetector,
    check_detector,
    load_detector,
)


def detect(
    image: np.ndarray,
    classes: Sequence[str],
    detector: Detector | str,
    settings: DetectSettings | None = None,
) -> Detections:
    """The objects of ``classes`` in ``image`` (``H x W x 3`` uint8 RGB).

    ``detector`` is a :class:`Detector` or a name :func:`load_detector` loads (loading it
    on every call: keep the loaded detector for several images).
    """
    if not isinstance(detector, Detector):
        detector = load_detector(detector)
    return detector.detect(image, classes, settings)


__all__ = [
    "Candidates",
    "DetectSettings",
    "Detections",
    "Detector",
    "DetectorSpec",
    "LoadedDetector",
    "check_classes",
    "check_detector",
    "detect",
    "load_detector",
    "select",
]
