"""Helpers of the text-prompt tests: ground truth from the shared VOC masks as a COCO file,
and a detector whose detections the test decides (:class:`KnownDetector`)."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samrefiner.detectors import Candidates, Detector, DetectSettings
from samrefiner.io.coco import segmentation_fields
from samrefiner.testing import VOC_CLASSES


def voc_ground_truth(shared_data: Path, out: Path) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    """A COCO dataset file of the shared VOC photos' instances (category: the VOC class
    most of the instance's pixels have); returns its path and, per image file name, the
    objects (``category_id``, ``mask``, ``box`` XYXY)."""
    root = shared_data / "labelme_voc2011"
    images, annotations, objects = [], [], {}
    used: set[int] = set()
    for image_id, path in enumerate(sorted((root / "images").glob("*.jpg")), start=1):
        ids = np.array(Image.open(root / "masks" / f"{path.stem}.png"))
        classes = np.array(Image.open(root / "masks_class" / f"{path.stem}.png"))
        h, w = ids.shape
        images.append({"id": image_id, "file_name": path.name, "width": w, "height": h})
        objects[path.name] = []
        for k in sorted(set(np.unique(ids).tolist()) - {0}):
            mask = ids == k
            votes = np.bincount(classes[mask], minlength=256)[1:21]
            category = int(votes.argmax()) + 1
            used.add(category)
            ys, xs = np.nonzero(mask)
            box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
            objects[path.name].append({"category_id": category, "mask": mask, "box": box})
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    **segmentation_fields(mask),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c, "name": VOC_CLASSES[c - 1]} for c in sorted(used)]
    out.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return out, objects


#: What :func:`known_detector` finds: image ``(H, W, pixel sum)`` -> ``(boxes, scores Q x C)``.
KNOWN: dict[tuple[int, int, int], tuple[list[list[float]], list[list[float]]]] = {}


def image_key(image: np.ndarray) -> tuple[int, int, int]:
    return (int(image.shape[0]), int(image.shape[1]), int(image.astype(np.int64).sum()))


class KnownDetector(Detector):
    """Finds what :data:`KNOWN` says for each image (nothing for others)."""

    name = "known"

    def candidates(
        self, image: np.ndarray, classes: list[str], settings: DetectSettings
    ) -> Candidates:
        boxes, scores = KNOWN.get(image_key(image), ([], []))
        return Candidates(
            np.array(boxes).reshape(-1, 4), np.array(scores).reshape(-1, len(classes))
        )


def known_detector() -> KnownDetector:
    """Builder of ``--detector helpers_text:known_detector``."""
    return KnownDetector()


#: Where :func:`counting_detector` leaves one file per load (a fixed path: Ray workers
#: started by another test module's fixture see no environment of this test).
LOADS_DIR = Path(tempfile.gettempdir()) / "samrefiner-test-detector-loads"


def counting_detector() -> Detector:
    """The tiny random Grounding DINO, leaving a file in :data:`LOADS_DIR` per load."""
    from samrefiner.testing import tiny_grounding_dino

    LOADS_DIR.mkdir(exist_ok=True)
    (LOADS_DIR / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    return tiny_grounding_dino()
