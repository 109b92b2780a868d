"""OmDet-Turbo: the class names as its vocabulary, one detection task prompt.

A query's score for a class is the sigmoid of its class logit; boxes are normalised
centre boxes over the image.
"""

from __future__ import annotations

import numpy as np

from samrefiner.detectors.base import Candidates, DetectSettings
from samrefiner.detectors.hf import HfDetector, cxcywh_to_xyxy


def omdet_task(classes: list[str]) -> str:
    """OmDet-Turbo's task prompt for ``classes`` (the processor's default wording)."""
    return "Detect {}.".format(", ".join(classes))


class OmDetTurboDetector(HfDetector):
    """``OmDetTurboForObjectDetection``."""

    def candidates(
        self, image: np.ndarray, classes: list[str], settings: DetectSettings
    ) -> Candidates:
        inputs = self._inputs(images=image, text=list(classes), task=omdet_task(classes))
        out = self.model(**inputs)
        scores = out.decoder_class_logits[0].sigmoid().float().cpu().numpy()[:, : len(classes)]
        h, w = image.shape[:2]
        return Candidates(cxcywh_to_xyxy(out.decoder_coord_logits[0], w, h), scores)
