"""OWLv2 and OWL-ViT: one text query per class name.

A query's score for a class is the sigmoid of its logit for that class's text. OWLv2
pads the image to a square (bottom and right) before resizing, so its normalised boxes
are scaled by the longest side; OWL-ViT's by width and height.
"""

from __future__ import annotations

import numpy as np

from samrefiner.detectors.base import Candidates, DetectSettings
from samrefiner.detectors.hf import HfDetector, cxcywh_to_xyxy


class OwlDetector(HfDetector):
    """``Owlv2ForObjectDetection`` / ``OwlViTForObjectDetection``."""

    def candidates(
        self, image: np.ndarray, classes: list[str], settings: DetectSettings
    ) -> Candidates:
        out = self.model(**self._inputs(images=image, text=[list(classes)]))
        scores = out.logits[0].sigmoid().float().cpu().numpy()  # Q x C
        h, w = image.shape[:2]
        if type(self.model).__name__.startswith("Owlv2"):
            w = h = max(h, w)
        return Candidates(cxcywh_to_xyxy(out.pred_boxes[0], w, h), scores)
