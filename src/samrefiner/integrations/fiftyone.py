"""Refine FiftyOne labels: ``Detections`` (instance masks), ``Polylines`` and ``Segmentation``.

Needs ``pip install 'samrefiner[fiftyone]'``. Example::

    import fiftyone as fo
    from samrefiner import Refiner, load_model
    from samrefiner.integrations.fiftyone import refine_field

    refine_field(fo.load_dataset("mine"), Refiner(load_model("sam_vit_b")),
                 label_field="ground_truth", output_field="refined")

Three levels, the lower ones without FiftyOne's database (in-memory labels and samples):

* :func:`refine_labels` refines one image's label object and returns a new one;
* :func:`refine_sample` does it for one sample's field (images read from
  ``sample.filepath`` as RGB);
* :func:`refine_field` for every sample of a dataset or view, saving as it goes.

FiftyOne stores an instance mask cropped to its relative box ``[x, y, w, h]``. Masks are
pasted into the frame with FiftyOne's own rendering (``Detection.to_segmentation``), and
each refined mask is stored cropped to its new tight box, with coordinates chosen so that
FiftyOne pastes it back exactly where it was (:func:`crop_to_box`).

Each refined label is a copy of its input: label, confidence, index, tags, attributes,
``instance`` and the label ``id`` are kept (the refined label has the id of the one it
refines, like ``clone_sample_field``), plus ``samrefiner_iou`` (predicted IoU, None when
SAM gave nothing kept) and ``samrefiner_status`` (from :data:`samrefiner.STATUSES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samrefiner.integrations._common import IOU_KEY, STATUS_KEY, import_extra
from samrefiner.io.images import read_image
from samrefiner.io.masks import as_rgb_image, mask_bbox
from samrefiner.mixed import refine_objects
from samrefiner.models.base import ImageEmbedding
from samrefiner.refiner import Refiner
from samrefiner.split_merge import DEFAULT_MIN_AREA, merge_back, split_label_map

fol = import_extra("fiftyone.core.labels", "fiftyone")

#: ``samrefiner_status`` of an open polyline (a line, not a region): copied unchanged.
STATUS_OPEN_POLYLINE = "open_polyline"
#: Attribute of a refined ``Segmentation``: the class of each refined region.
CLASSES_KEY = "samrefiner_classes"

#: Label types :func:`refine_labels` accepts.
LABEL_TYPES = (fol.Detections, fol.Polylines, fol.Segmentation)


def _exact_relative(pixel: int, size: int, start: float = 0.0) -> float:
    """The float ``v`` closest to ``pixel / size - start`` with ``int(size * (start + v))
    == pixel``: how FiftyOne turns relative coordinates into pixels (truncation)."""
    value = pixel / size - start
    for _ in range(64):
        total = start + value
        got = int(size * total)
        if got == pixel:
            return value
        # Step by the sum's own spacing: a smaller step may leave the sum unchanged.
        step = float(np.spacing(total))
        value = value + step if got < pixel else value - step
    raise RuntimeError(f"no relative coordinate maps to pixel {pixel} of {size}")


def crop_to_box(mask: np.ndarray) -> tuple[list[float], np.ndarray] | None:
    """A full-frame mask as FiftyOne stores an instance mask, or None when it is empty.

    Args:
        mask: ``H x W`` bool.

    Returns:
        ``(bounding_box, crop)``: the relative ``[x, y, w, h]`` of the mask's tight box,
        chosen so that FiftyOne maps it back to exactly that box's pixels, and the
        ``h x w`` bool crop.
    """
    box = mask_bbox(mask)
    if box is None:
        return None
    height, width = mask.shape
    x1, y1, x2, y2 = box
    x = _exact_relative(x1, width)
    y = _exact_relative(y1, height)
    w = _exact_relative(x2 + 1, width, x)
    h = _exact_relative(y2 + 1, height, y)
    return [x, y, w, h], mask[y1 : y2 + 1, x1 : x2 + 1].copy()


def _pixel_box(detection: Any, frame_size: tuple[int, int]) -> np.ndarray:
    """A detection's relative box as an inclusive ``XYXY`` pixel box (FiftyOne's rounding)."""
    width, height = frame_size
    x, y, w, h = detection.bounding_box
    x1 = min(max(int(width * x), 0), width - 1)
    y1 = min(max(int(height * y), 0), height - 1)
    x2 = min(max(int(width * (x + w)) - 1, x1), width - 1)
    y2 = min(max(int(height * (y + h)) - 1, y1), height - 1)
    return np.array([x1, y1, x2, y2], dtype=np.float32)


def _frame_mask(label: Any, frame_size: tuple[int, int]) -> np.ndarray:
    """One Detection's mask or Polyline's shapes rendered into the frame, ``H x W`` bool."""
    if isinstance(label, fol.Polyline) and not label.filled:
        label = label.copy()
        label.filled = True
    return label.to_segmentation(frame_size=frame_size, target=1).mask.astype(bool)


def _check_frame_size(frame_size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in frame_size)
    if width < 1 or height < 1:
        raise ValueError(f"frame_size must be (width, height) >= 1, got {frame_size}")
    return width, height


def expand_masks(labels: fol.Detections | fol.Polylines, frame_size: tuple[int, int]) -> np.ndarray:
    """The coarse masks of ``Detections`` or ``Polylines`` in the frame.

    Args:
        labels: ``fo.Detections`` (each mask, cropped to its box, pasted into the frame;
            a detection without a mask gives an empty mask) or ``fo.Polylines`` (each
            polyline's shapes filled).
        frame_size: ``(width, height)`` of the image, FiftyOne's order.

    Returns:
        ``N x H x W`` bool, one mask per label, in order.
    """
    width, height = _check_frame_size(frame_size)
    items = _items(labels)
    masks = np.zeros((len(items), height, width), dtype=bool)
    for k, item in enumerate(items):
        if isinstance(item, fol.Detection):
            if not item.bounding_box:
                raise ValueError(f"detection {item.id} has no bounding_box (a 3D detection?)")
            if not item.has_mask:
                continue
        masks[k] = _frame_mask(item, (width, height))
    return masks


def _items(labels: Any) -> list[Any]:
    if isinstance(labels, fol.Detections):
        return list(labels.detections or [])
    if isinstance(labels, fol.Polylines):
        return list(labels.polylines or [])
    raise TypeError(f"expected fo.Detections or fo.Polylines, got {type(labels).__name__}")


def _copy_label(label: Any) -> Any:
    """A copy of a label that keeps its id and its instance link."""
    new = label.copy()
    new.id = label.id
    instance = getattr(label, "instance", None)
    if instance is not None:
        new.instance = fol.Instance(id=instance.id)
    return new


def _score(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def refine_labels(
    refiner: Refiner,
    image: np.ndarray,
    labels: fol.Detections | fol.Polylines | fol.Segmentation,
    *,
    embedding: ImageEmbedding | None = None,
    ignore: int | None = None,
    min_area: int = DEFAULT_MIN_AREA,
    tolerance: int = 2,
) -> fol.Detections | fol.Polylines | fol.Segmentation:
    """Refine one image's label object; returns a new one of the same type.

    * ``fo.Detections``: all detections together; one with a mask is refined from it,
      one without from its box (needs a refiner that takes boxes). Each refined mask is
      stored cropped to its new tight box (:func:`crop_to_box`); an empty one keeps its
      input box and mask.
    * ``fo.Polylines``: each closed or filled polyline is filled, refined and traced
      back to polygons (``fo.Polyline.from_mask`` with ``tolerance``); an open one is a
      line, not a region: copied unchanged with ``samrefiner_status`` ``"open_polyline"``.
    * ``fo.Segmentation`` (semantic, ``H x W`` integer classes, 0 = background): split
      into regions, refined and merged back (:mod:`samrefiner.split_merge`); it gets
      ``samrefiner_classes``, ``samrefiner_iou`` and ``samrefiner_status`` lists, one
      entry per region. The refined map is stored in ``mask`` (``mask_path`` cleared).

    Args:
        refiner: the refiner.
        image: ``H x W x 3`` uint8 RGB; it gives the frame size.
        labels: ``fo.Detections``, ``fo.Polylines`` or ``fo.Segmentation``.
        embedding: a :meth:`Refiner.encode` result for this image, to skip the encoder.
        ignore: Segmentation only: the value of pixels of no class (kept as they are).
        min_area: Segmentation only: smallest region refined, in pixels.
        tolerance: Polylines only: polygon tolerance in pixels.
    """
    image = as_rgb_image(image)
    height, width = image.shape[:2]
    if isinstance(labels, fol.Segmentation):
        return _refine_segmentation(refiner, image, labels, embedding, ignore, min_area)
    items = _items(labels)
    masks = expand_masks(labels, (width, height))
    from_box = np.array(
        [isinstance(item, fol.Detection) and not item.has_mask for item in items], dtype=bool
    )
    region = np.array(
        [not isinstance(item, fol.Polyline) or item.closed or item.filled for item in items],
        dtype=bool,
    )
    boxes = np.zeros((len(items), 4), dtype=np.float32)
    for k in np.flatnonzero(from_box):
        boxes[k] = _pixel_box(items[k], (width, height))
    rows = np.flatnonzero(region)
    result = refine_objects(
        refiner, image, masks[rows], boxes[rows], from_box[rows], embedding=embedding
    )
    out = []
    refined_row = {int(k): row for row, k in enumerate(rows)}
    for k, item in enumerate(items):
        new = _copy_label(item)
        if k not in refined_row:
            new[STATUS_KEY] = STATUS_OPEN_POLYLINE
            out.append(new)
            continue
        row = refined_row[k]
        _write_mask(new, result.masks[row], tolerance)
        new[IOU_KEY] = _score(result.scores[row])
        new[STATUS_KEY] = result.status[row]
        out.append(new)
    new_labels = labels.copy()
    if isinstance(labels, fol.Detections):
        new_labels.detections = out
    else:
        new_labels.polylines = out
    return new_labels


def _write_mask(label: Any, mask: np.ndarray, tolerance: int) -> None:
    """Store a refined full-frame mask in a Detection or Polyline (empty: left as is)."""
    if not mask.any():
        return
    if isinstance(label, fol.Detection):
        bounding_box, crop = crop_to_box(mask)
        label.bounding_box = bounding_box
        label.mask = crop
        label.mask_path = None
    else:
        label.points = fol.Polyline.from_mask(mask, tolerance=tolerance).points
        label.closed = True


def _refine_segmentation(
    refiner: Refiner,
    image: np.ndarray,
    segmentation: Any,
    embedding: ImageEmbedding | None,
    ignore: int | None,
    min_area: int,
) -> Any:
    labels = segmentation.get_mask()
    if labels is None:
        raise ValueError(f"segmentation {segmentation.id} has neither mask nor mask_path")
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"segmentation {segmentation.id}: expected an H x W integer class map, got "
            f"shape {labels.shape} dtype {labels.dtype} (RGB-coded masks are not supported)"
        )
    if labels.shape != image.shape[:2]:
        raise ValueError(
            f"segmentation {segmentation.id} is {labels.shape[0]}x{labels.shape[1]} (H x W) "
            f"but the image is {image.shape[0]}x{image.shape[1]}"
        )
    split = split_label_map(labels, ignore=ignore, min_area=min_area)
    result = refine_objects(
        refiner,
        image,
        split.masks,
        np.zeros((len(split), 4)),
        np.zeros(len(split), bool),
        embedding=embedding,
    )
    new = _copy_label(segmentation)
    new.mask = merge_back(labels, split.class_ids, result.masks, result.scores, ignore=ignore)
    new.mask_path = None
    new[CLASSES_KEY] = list(split.class_ids)
    new[IOU_KEY] = [_score(s) for s in result.scores]
    new[STATUS_KEY] = list(result.status)
    return new


def refine_sample(
    sample: Any,
    refiner: Refiner,
    *,
    label_field: str,
    output_field: str | None = None,
    image: np.ndarray | None = None,
    **options: Any,
) -> None:
    """Refine one sample's label field in place (the sample is not saved). Written back to
    ``label_field``, ``Detections`` and ``Polylines`` are updated label by label, so that
    in a sample of a filtered view the labels it hides are kept.

    Args:
        sample: an image ``fo.Sample`` (in memory or from a dataset).
        refiner: the refiner.
        label_field: the field holding ``Detections``, ``Polylines`` or ``Segmentation``.
        output_field: where to write the refined labels (default: ``label_field``).
        image: the sample's ``H x W x 3`` uint8 RGB image (default: read from
            ``sample.filepath``).
        **options: ``ignore``, ``min_area``, ``tolerance`` of :func:`refine_labels`.
    """
    if not sample.has_field(label_field):
        raise KeyError(f"{sample.filepath}: the sample has no field {label_field!r}")
    labels = sample[label_field]
    target = output_field or label_field
    if labels is None:
        if target != label_field:
            sample[target] = None
        return
    if not isinstance(labels, LABEL_TYPES):
        raise TypeError(
            f"{sample.filepath}: field {label_field!r} holds {type(labels).__name__}; "
            "expected Detections, Polylines or Segmentation"
        )
    if image is None:
        image = read_image(sample.filepath)
    refined = refine_labels(refiner, image, labels, **options)
    if target == label_field and isinstance(labels, (fol.Detections, fol.Polylines)):
        _update_each_label(labels, refined)
    else:
        sample[target] = refined


def _update_each_label(labels: Any, refined: Any) -> None:
    """Write each refined label's fields onto its input label, in place: a sample of a
    filtered view holds only the visible labels, and FiftyOne saves edits of those, by id,
    keeping the hidden ones (a replaced ``Detections`` or ``Polylines`` would drop them)."""
    name = "detections" if isinstance(labels, fol.Detections) else "polylines"
    for old, new in zip(labels[name], refined[name], strict=True):
        for field in new.field_names:
            if field != "id":
                old[field] = new[field]


def refine_field(
    dataset_or_view: Any,
    refiner: Refiner,
    *,
    label_field: str,
    output_field: str | None = None,
    progress: bool = True,
    **options: Any,
) -> None:
    """Refine a label field of every sample of an image dataset or view, saving each.

    Samples are read, refined and saved one at a time; in a filtered view only the
    visible labels are refined. An error (an unreadable image, a mask of the wrong
    size) stops the run; the samples refined before it are saved.

    Args:
        dataset_or_view: a ``fo.Dataset`` or ``DatasetView`` of images.
        refiner: the refiner.
        label_field: the field holding ``Detections``, ``Polylines`` or ``Segmentation``.
        output_field: where to write the refined labels (default: overwrite
            ``label_field``); created when missing.
        progress: show FiftyOne's progress bar.
        **options: ``ignore``, ``min_area``, ``tolerance`` of :func:`refine_labels`.
    """
    media_type = dataset_or_view.media_type
    if media_type != "image":
        raise ValueError(f"refine_field needs an image collection, got {media_type!r}")
    for sample in dataset_or_view.iter_samples(autosave=True, progress=progress):
        refine_sample(
            sample, refiner, label_field=label_field, output_field=output_field, **options
        )


__all__ = [
    "CLASSES_KEY",
    "STATUS_OPEN_POLYLINE",
    "crop_to_box",
    "expand_masks",
    "refine_field",
    "refine_labels",
    "refine_sample",
]
