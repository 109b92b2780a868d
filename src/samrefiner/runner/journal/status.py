"""Statuses of images and objects in a dataset run: the one place they are defined.

Every object (annotation, id, class region, mask file) of a run ends with one status:

* one of the refiner's (:data:`samrefiner.types.STATUSES`): ``refined``, ``converged``,
  ``collapsed`` -- the object was refined and its output is the refined mask -- or
  ``empty`` (the coarse mask has no pixel);
* ``occluded``: refined, but in a label map (instances, semantic) neighbours took most
  of it (its record's ``kept_share`` is below :data:`OCCLUDED_SHARE`);
* a pass-through reason (below): the object was not refined and is written back exactly
  as it came in.

Reasons are either *bad input* (reported as warnings, counted, and failing ``--strict``)
or *policy* (the object was left alone on purpose: crowd regions, low scores, masks the
quality gate kept coarse).
"""

from __future__ import annotations

from samrefiner.io.images import ImageTooLargeError
from samrefiner.io.paths import UnsafePathError
from samrefiner.types import (
    STATUS_COLLAPSED,
    STATUS_CONVERGED,
    STATUS_EMPTY,
    STATUS_KEPT_COARSE,
    STATUS_REFINED,
)

#: A refined object of a label map that keeps less than :data:`OCCLUDED_SHARE` of its
#: pixels in the output (the rest went to neighbours with a higher predicted IoU).
OCCLUDED = "occluded"
OCCLUDED_SHARE = 0.5

#: Statuses of objects whose output is the refined mask (all of it, or for ``occluded``
#: what its neighbours left).
REFINED_STATUSES: frozenset[str] = frozenset(
    {STATUS_REFINED, STATUS_CONVERGED, STATUS_COLLAPSED, OCCLUDED}
)
#: Refined statuses that ``--strict`` reports like bad input: the output lost the object.
LOST: frozenset[str] = frozenset({OCCLUDED})

# Pass-through reasons caused by bad input.
EMPTY = STATUS_EMPTY  # the coarse mask has no pixel
IMAGE_MISSING = "image_missing"  # no image file (or no image matches a mask file)
IMAGE_UNREADABLE = "image_unreadable"  # the image file cannot be decoded
IMAGE_TOO_LARGE = "image_too_large"  # more pixels than the decompression-bomb limit
UNSAFE_PATH = "unsafe_path"  # file name leading outside the images folder (not opened)
AMBIGUOUS_IMAGE = "ambiguous_image"  # several image files share the mask's name
SIZE_MISMATCH = "size_mismatch"  # image size differs from the mask or COCO width/height
INVALID_POLYGON = "invalid_polygon"  # polygon with < 3 points or NaN coordinates
INVALID_SEGMENTATION = "invalid_segmentation"  # segmentation that cannot be decoded
NO_SEGMENTATION = "no_segmentation"  # annotation without a segmentation (and no usable bbox)
# a COCO bbox that is not 4 finite numbers (schema), or, to refine from, has w or h <= 0
# or lies outside the image
INVALID_BBOX = "invalid_bbox"
UNKNOWN_IMAGE = "unknown_image"  # COCO image_id not in the image list
INVALID_RECORD = "invalid_record"  # COCO record with another field of the wrong type (schema)
DUPLICATE_ID = "duplicate_id"  # COCO annotation id used more than once
VALUE_OUTSIDE_PALETTE = "value_outside_palette"  # label value with no palette colour
MASK_UNREADABLE = "mask_unreadable"  # mask or label file cannot be read, or is not binary
REFINE_ERROR = "refine_error"  # the refiner rejected the image's input
NO_LABELLED_FRAME = "no_labelled_frame"  # a video sequence without any label map

# Pass-through reasons chosen by policy.
ISCROWD = "iscrowd"  # COCO crowd region (refined only with --refine-crowd)
BELOW_MIN_SCORE = "below_min_score"  # detection score below --min-score
KEPT_COARSE = STATUS_KEPT_COARSE  # refined, but the quality gate kept the input (its rule recorded)

#: Image-level outcome when the image has nothing to refine but nothing was wrong.
NOTHING_TO_REFINE = "nothing_to_refine"

BAD_INPUT: frozenset[str] = frozenset(
    {
        EMPTY,
        IMAGE_MISSING,
        IMAGE_UNREADABLE,
        IMAGE_TOO_LARGE,
        UNSAFE_PATH,
        AMBIGUOUS_IMAGE,
        SIZE_MISMATCH,
        INVALID_POLYGON,
        INVALID_SEGMENTATION,
        NO_SEGMENTATION,
        INVALID_BBOX,
        UNKNOWN_IMAGE,
        INVALID_RECORD,
        DUPLICATE_ID,
        VALUE_OUTSIDE_PALETTE,
        MASK_UNREADABLE,
        REFINE_ERROR,
        NO_LABELLED_FRAME,
    }
)
POLICY: frozenset[str] = frozenset({ISCROWD, BELOW_MIN_SCORE, KEPT_COARSE})

#: Warnings an object can carry while still being refined.
WARNING_CLIPPED = "clipped"  # polygon vertices outside the image were clipped to it
#: Written as polygons, which cannot hold a hole: its holes were filled (COCO
#: ``--segmentation polygon|same`` with ``--holes fill``). About the output, not bad input.
WARNING_HOLES_FILLED = "holes_filled"
WARNINGS: frozenset[str] = frozenset({WARNING_CLIPPED, WARNING_HOLES_FILLED})
#: The warnings that say the input was bad (counted in ``bad_input``, failing ``--strict``).
INPUT_WARNINGS: frozenset[str] = frozenset({WARNING_CLIPPED})


def image_error_status(exc: Exception) -> str:
    """The status of an image that could not be used: refused by
    :func:`samrefiner.io.read_image`, or named unsafely (:mod:`samrefiner.io.paths`)."""
    if isinstance(exc, UnsafePathError):
        return UNSAFE_PATH
    return IMAGE_TOO_LARGE if isinstance(exc, ImageTooLargeError) else IMAGE_UNREADABLE


def is_refined(status: str) -> bool:
    """True when the object's output is a refined mask."""
    return status in REFINED_STATUSES


def is_lost(status: str) -> bool:
    """True for refined objects that the output lost (mostly) to neighbours."""
    return status in LOST


def is_bad_input(status: str) -> bool:
    """True for pass-through reasons caused by bad input."""
    return status in BAD_INPUT


def check_status(status: str) -> str:
    """Return ``status`` if it is known, else raise ValueError naming it."""
    if status not in REFINED_STATUSES | BAD_INPUT | POLICY:
        raise ValueError(f"unknown object status {status!r}")
    return status
