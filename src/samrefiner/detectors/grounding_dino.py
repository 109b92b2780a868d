"""Grounding DINO and MM Grounding DINO (LLMDet checkpoints too): one text prompt of
every class name, scored per text token.

The prompt is the lower-cased names joined as ``"person . dog . traffic light ."``; a
query's score for a class is its best score over the class's tokens (the model's
sigmoid), counted only when it reaches :attr:`DetectSettings.text_threshold`. Boxes are
the model's normalised centre boxes over the image.
"""

from __future__ import annotations

import numpy as np

from samrefiner.detectors.base import Candidates, DetectSettings
from samrefiner.detectors.hf import HfDetector, cxcywh_to_xyxy


def grounding_prompt(classes: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The prompt of ``classes`` and each name's character span ``(start, end)`` in it."""
    parts, spans, at = [], [], 0
    for name in classes:
        text = name.lower()
        spans.append((at, at + len(text)))
        parts.append(text)
        at += len(text) + len(" . ")
    return " . ".join(parts) + " .", spans


class GroundingDinoDetector(HfDetector):
    """``GroundingDinoForObjectDetection`` / ``MMGroundingDinoForObjectDetection``."""

    text_threshold = True

    def candidates(
        self, image: np.ndarray, classes: list[str], settings: DetectSettings
    ) -> Candidates:
        prompt, spans = grounding_prompt(classes)
        tokenizer = self.processor.tokenizer
        offsets = tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
        out = self.model(**self._inputs(images=image, text=prompt))
        token_scores = out.logits[0].sigmoid().float().cpu().numpy()  # Q x T
        t_max = token_scores.shape[1]
        scores = np.zeros((token_scores.shape[0], len(classes)), np.float32)
        for c, (start, end) in enumerate(spans):
            tokens = [
                t
                for t, (s, e) in enumerate(offsets)
                if e > s and s >= start and e <= end and t < t_max
            ]
            if tokens:
                scores[:, c] = token_scores[:, tokens].max(axis=1)
        scores[scores < settings.text_threshold] = 0
        h, w = image.shape[:2]
        return Candidates(cxcywh_to_xyxy(out.pred_boxes[0], w, h), scores)
