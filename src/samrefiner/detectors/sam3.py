"""SAM 3 with text prompts: every instance of a concept, with its mask.

``Sam3Model`` is prompted once per class name; each prompt's instances (score, box and
mask, thresholded by the processor's post-processing at the box threshold) are that
class's candidates. The masks are the coarse masks that SAMRefiner then refines.
"""

from __future__ import annotations

import numpy as np

from samrefiner.detectors.base import Candidates, DetectSettings
from samrefiner.detectors.hf import HfDetector

#: Probability above which a pixel of a SAM 3 mask is foreground.
MASK_THRESHOLD = 0.5


class Sam3Detector(HfDetector):
    """``Sam3Model`` (``facebook/sam3``) prompted with class names."""

    gives_masks = True

    def candidates(
        self, image: np.ndarray, classes: list[str], settings: DetectSettings
    ) -> Candidates:
        h, w = image.shape[:2]
        boxes, scores, masks = [], [], []
        for c, name in enumerate(classes):
            out = self.model(**self._inputs(images=image, text=name))
            found = self.processor.post_process_instance_segmentation(
                out,
                threshold=settings.box_threshold,
                mask_threshold=MASK_THRESHOLD,
                target_sizes=[(h, w)],
            )[0]
            n = len(found["scores"])
            row = np.zeros((n, len(classes)), np.float32)
            row[:, c] = found["scores"].float().cpu().numpy()
            boxes.append(found["boxes"].float().cpu().numpy().reshape(-1, 4))
            scores.append(row)
            masks.append(found["masks"].cpu().numpy().astype(bool).reshape(n, h, w))
        return Candidates(np.concatenate(boxes), np.concatenate(scores), np.concatenate(masks))
