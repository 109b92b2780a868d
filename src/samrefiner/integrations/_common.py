"""What the adapters share: the optional imports, colour order and mixed mask / box input."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np

from samrefiner import extras
from samrefiner.io.masks import as_rgb_image
from samrefiner.models.base import ImageEmbedding
from samrefiner.refiner import Refiner
from samrefiner.types import RefineResult

#: Channel orders an adapter accepts for its image argument.
ColorOrder = Literal["bgr", "rgb"]
COLOR_ORDERS: tuple[str, ...] = ("bgr", "rgb")

#: How an integration names the package it misses.
_INTEGRATION_NEEDS = "{what} needs the {module!r} package: {hint}"

#: Data keys / label attributes the adapters write.
IOU_KEY = "samrefiner_iou"
STATUS_KEY = "samrefiner_status"


def import_extra(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or fail with the extra that installs it
    (:func:`samrefiner.extras.import_extra`, an ``ImportError``)."""
    return extras.import_extra(
        module, extra, f"samrefiner.integrations.{extra}", message=_INTEGRATION_NEEDS
    )


def to_rgb(image: np.ndarray, color: str) -> np.ndarray:
    """``image`` (``H x W x 3`` in ``color`` order, or grey / 4-channel) as uint8 RGB.

    ``color`` is ``"bgr"`` (OpenCV, supervision) or ``"rgb"`` (PIL, FiftyOne's readers);
    a 4-channel image is BGRA or RGBA accordingly (alpha dropped).
    """
    if color not in COLOR_ORDERS:
        raise ValueError(f"color must be one of {COLOR_ORDERS}, got {color!r}")
    arr = np.asarray(image)
    if color == "bgr" and arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, 2::-1]
    return as_rgb_image(arr)


@dataclass
class ObjectResults:
    """What the adapters write back for one image's objects.

    Attributes:
        masks: ``N x H x W`` bool refined masks, in input order.
        scores: ``N`` float32 predicted IoU (NaN where SAM gave nothing that was kept).
        status: ``N`` strings from :data:`samrefiner.STATUSES`.
    """

    masks: np.ndarray
    scores: np.ndarray
    status: list[str]


def refine_objects(
    refiner: Refiner,
    image: np.ndarray,
    masks: np.ndarray,
    boxes: np.ndarray,
    from_box: np.ndarray,
    *,
    embedding: ImageEmbedding | None = None,
) -> ObjectResults:
    """Refine one image's objects, each given by a coarse mask or, lacking one, a box.

    The image is encoded once; the objects with masks and those with boxes are refined
    by one :meth:`Refiner.refine` call each.

    Args:
        refiner: the refiner.
        image: ``H x W x 3`` uint8 RGB.
        masks: ``N x H x W`` bool coarse masks (rows where ``from_box`` is set are unused).
        boxes: ``N x 4`` ``XYXY`` pixel boxes (only rows where ``from_box`` is set are used).
        from_box: ``N`` bool, True for objects refined from their box.
        embedding: a :meth:`Refiner.encode` result for ``image``, to skip the encoder.

    Returns:
        One entry per object, in order.
    """
    height, width = image.shape[:2]
    from_box = np.asarray(from_box, dtype=bool)
    n = len(from_box)
    out = ObjectResults(
        masks=np.zeros((n, height, width), dtype=bool),
        scores=np.full(n, np.nan, dtype=np.float32),
        status=[""] * n,
    )
    if n == 0:
        return out
    if from_box.any() and not from_box.all() and embedding is None:
        embedding = refiner.encode(image)
    by_mask, by_box = np.flatnonzero(~from_box), np.flatnonzero(from_box)
    if len(by_mask):
        _scatter(out, by_mask, refiner.refine(image, masks[by_mask], embedding=embedding))
    if len(by_box):
        box_rows = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[by_box]
        _scatter(out, by_box, refiner.refine(image, boxes=box_rows, embedding=embedding))
    return out


def _scatter(out: ObjectResults, rows: np.ndarray, part: RefineResult) -> None:
    out.masks[rows] = part.masks
    out.scores[rows] = part.scores
    for row, k in enumerate(rows):
        out.status[k] = part.status[row]
