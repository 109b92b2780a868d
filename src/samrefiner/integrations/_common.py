"""What the adapters share: the optional imports and the colour order (a mix of masks
and boxes is refined by :func:`samrefiner.mixed.refine_objects`)."""

from __future__ import annotations

from types import ModuleType
from typing import Literal

import numpy as np

from samrefiner import extras
from samrefiner.io.masks import as_rgb_image

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
