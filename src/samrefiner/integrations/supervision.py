"""Refine supervision ``Detections`` and ``DetectionDataset`` objects.

Needs ``pip install 'samrefiner[supervision]'``. Example::

    import cv2, supervision as sv
    from samrefiner import Refiner, load_model
    from samrefiner.integrations.supervision import refine_detections

    refined = refine_detections(Refiner(load_model("sam_vit_b")), cv2.imread("a.jpg"), detections)

Images are BGR by default, as ``cv2.imread`` and supervision's loaders give them; pass
``color="rgb"`` for RGB arrays (PIL, most model pipelines). The order is never guessed:
the refiner cannot tell, and the wrong one gives other masks.
"""

from __future__ import annotations

import copy
import os

import numpy as np

from samrefiner.integrations._common import (
    IOU_KEY,
    STATUS_KEY,
    ColorOrder,
    import_extra,
    to_rgb,
)
from samrefiner.io.masks import as_mask_stack, mask_bbox
from samrefiner.mixed import refine_objects
from samrefiner.models.base import ImageEmbedding
from samrefiner.refiner import Refiner

sv = import_extra("supervision", "supervision")


def refine_detections(
    refiner: Refiner,
    image: np.ndarray,
    detections: sv.Detections,
    *,
    color: ColorOrder = "bgr",
    embedding: ImageEmbedding | None = None,
) -> sv.Detections:
    """Refine the masks of one image's detections; the input is not modified.

    Detections with masks are refined from them; detections without masks (``mask`` is
    None) from their ``xyxy`` boxes, which needs a refiner that takes boxes.

    Args:
        refiner: the refiner.
        image: ``H x W x 3`` uint8 image in ``color`` order.
        detections: ``N`` detections; ``mask``, when set, ``N x H x W`` bool.
        color: ``"bgr"`` (default: ``cv2.imread``, supervision) or ``"rgb"``.
        embedding: a :meth:`Refiner.encode` result for this image (in RGB), to skip the
            encoder.

    Returns:
        New ``sv.Detections``: ``mask`` the ``N x H x W`` bool refined masks, ``xyxy``
        their tight inclusive boxes (an empty mask keeps its input box), ``confidence``,
        ``class_id``, ``tracker_id``, ``metadata`` and every ``data`` column copied, plus
        ``data["samrefiner_iou"]`` (``N`` float32 predicted IoU, NaN where SAM gave
        nothing kept) and ``data["samrefiner_status"]`` (``N`` strings from
        :data:`samrefiner.STATUSES`).
    """
    rgb = to_rgb(image, color)
    shape = rgb.shape[:2]
    n = len(detections)
    if detections.mask is None:
        masks = np.zeros((n, *shape), dtype=bool)
        from_box = np.ones(n, dtype=bool)
    else:
        masks = as_mask_stack(detections.mask, shape) if n else np.zeros((0, *shape), bool)
        from_box = np.zeros(n, dtype=bool)
    result = refine_objects(refiner, rgb, masks, detections.xyxy, from_box, embedding=embedding)
    xyxy = np.array(detections.xyxy, copy=True)
    for i, mask in enumerate(result.masks):
        box = mask_bbox(mask)
        if box is not None:
            xyxy[i] = box
    data = copy.deepcopy(detections.data)
    data[IOU_KEY] = result.scores
    data[STATUS_KEY] = np.array(result.status, dtype=str)
    return sv.Detections(
        xyxy=xyxy,
        mask=result.masks,
        confidence=copy.deepcopy(detections.confidence),
        class_id=copy.deepcopy(detections.class_id),
        tracker_id=copy.deepcopy(detections.tracker_id),
        data=data,
        metadata=copy.deepcopy(detections.metadata),
    )


def refine_dataset(
    refiner: Refiner,
    dataset: sv.DetectionDataset,
    *,
    color: ColorOrder = "bgr",
    progress: bool = True,
) -> sv.DetectionDataset:
    """Refine every image's detections; returns a new dataset, the input is not modified.

    Images are loaded one at a time by the dataset itself (``cv2.imread``: BGR, the
    default ``color``), refined and released; the result holds the same image paths and
    the refined annotations (see :func:`refine_detections`), ready for
    ``as_coco`` / ``as_yolo`` / ``as_pascal_voc``.

    Args:
        refiner: the refiner.
        dataset: the dataset to refine.
        color: channel order of the images the dataset returns.
        progress: show a tqdm progress bar on stderr.
    """
    from tqdm.auto import tqdm

    annotations: dict[str, sv.Detections] = {}
    in_memory: dict[str, np.ndarray] = {}
    for i in tqdm(range(len(dataset)), desc="refine", unit="image", disable=not progress):
        path, image, detections = dataset[i]
        annotations[path] = refine_detections(refiner, image, detections, color=color)
        if not os.path.isfile(path):
            # A dataset built from in-memory images: the path names no file to reload.
            in_memory[path] = image
    images: list[str] | dict[str, np.ndarray] = in_memory or list(annotations)
    return sv.DetectionDataset(
        classes=list(dataset.classes), images=images, annotations=annotations
    )


__all__ = ["refine_dataset", "refine_detections"]
