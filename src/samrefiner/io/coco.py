"""COCO annotation files: dataset files, results files, and their segmentations.

Two kinds of file are read and written back in the same kind:

* a **dataset file**: a JSON object with ``images``, ``annotations`` and ``categories``
  (plus any other keys, kept as they are);
* a **results file**: a JSON list of detections (``image_id``, ``category_id``,
  ``segmentation``, ``score``, ...). It names no image files, so the image list is taken
  from a dataset file (the ground truth of the same images).

Segmentations come in three encodings, all decoded to ``H x W`` bool masks:

* **polygons**: a list of ``[x1, y1, x2, y2, ...]`` lists in pixel coordinates, the image
  spanning ``[0, W] x [0, H]``; rasterised by ``pycocotools``;
* **uncompressed RLE**: ``{"size": [H, W], "counts": [n0, n1, ...]}``;
* **compressed RLE**: ``{"size": [H, W], "counts": "<string>"}``.

RLE convention: run lengths are taken over the pixels in **column-major (Fortran)
order** -- down the first column, then the second, ... -- alternating background and
foreground and starting with background (a mask whose first pixel is set starts with a
0-length run). ``size`` is ``[height, width]``. Masks are therefore handed to
``pycocotools`` as Fortran-ordered uint8 arrays. Compressed counts are the same runs
written as text: each run (from the third on, as the difference from the run two places
before) in 5-bit groups, least significant first, each group + 48 as one character,
bit 0x20 meaning "more groups follow" and bit 0x10 of the last group the sign.

Refined masks are written as compressed RLE with ``counts`` as an ASCII string, or as
polygons (:class:`SegmentationOutput`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pycocotools import mask as mask_utils

from samrefiner.io.atomic import atomic_write_json
from samrefiner.io.errors import InputError, said
from samrefiner.io.uri import as_location, is_uri, read_uri

log = logging.getLogger("samrefiner.io")

CocoKind = Literal["dataset", "results"]

#: A polygon is dropped as unusable below this many points.
MIN_POLYGON_POINTS = 3


class SegmentationError(ValueError):
    """A segmentation that cannot be decoded; ``status`` says why (see runner statuses)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class CocoFile:
    """A parsed COCO file.

    Attributes:
        kind: ``"dataset"`` or ``"results"``.
        data: the JSON as loaded (a dict for a dataset file, a list for a results file).
            The annotation dicts in ``annotations`` are the very objects inside ``data``,
            so updating them updates what :func:`write_coco` writes.
        annotations: the annotation dicts, in file order.
        images: image id -> image entry (``file_name``, ``width``, ``height``, ...); for
            a results file, taken from the dataset file given to :func:`load_coco`.
        duplicate_image_ids: image ids listed more than once (the first entry is used).
        invalid_images: problems of image entries that break :data:`IMAGE_SCHEMA`, by
            image id (those whose id is unusable are left out of ``images``, so their
            annotations are ``unknown_image``).
        category_ids: ids of the file's ``categories`` (for a results file, those of the
            dataset file), or None when it lists none.
    """

    kind: CocoKind
    data: dict[str, Any] | list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    images: dict[Any, dict[str, Any]] = field(default_factory=dict)
    duplicate_image_ids: list[Any] = field(default_factory=list)
    invalid_images: dict[Any, str] = field(default_factory=dict)
    category_ids: set[Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("dataset", "results"):
            raise ValueError(f"kind must be 'dataset' or 'results', got {self.kind!r}")


# --------------------------------------------------------------------------- record schemas
#
# One schema per record kind: field -> (required, check, what the field must be, the
# status of a record whose field breaks it). A record that breaks its schema is bad input
# (status ``invalid_record``, or the field's own: ``invalid_bbox``), never a TypeError.


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_bbox(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 4 and all(map(is_number, value))


def _is_segmentation(value: Any) -> bool:
    return value is None or isinstance(value, (list, dict))


def _is_flag(value: Any) -> bool:
    return value in (0, 1) and not isinstance(value, float)


class SchemaField(NamedTuple):
    """One field of a record schema."""

    required: bool
    check: Callable[[Any], bool]
    expected: str  # what the field must be, for the message
    status: str = "invalid_record"  # the status of a record whose field breaks the check


_Schema = dict[str, SchemaField]

IMAGE_SCHEMA: _Schema = {
    "id": SchemaField(True, _is_id, "an integer or a string"),
    "file_name": SchemaField(True, lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "width": SchemaField(False, _is_count, "an integer >= 0"),
    "height": SchemaField(False, _is_count, "an integer >= 0"),
}
ANNOTATION_SCHEMA: _Schema = {
    "id": SchemaField(False, _is_id, "an integer or a string"),
    "image_id": SchemaField(True, _is_id, "an integer or a string"),
    "category_id": SchemaField(False, _is_id, "an integer or a string"),
    "segmentation": SchemaField(False, _is_segmentation, "a list of polygons or an RLE object"),
    "bbox": SchemaField(False, _is_bbox, "4 finite numbers", "invalid_bbox"),
    "area": SchemaField(False, lambda v: is_number(v), "a finite number"),
    "score": SchemaField(False, lambda v: is_number(v), "a finite number"),
    "iscrowd": SchemaField(False, _is_flag, "0 or 1"),
}


@dataclass(frozen=True)
class SchemaProblem:
    """What is wrong with a record: its status and one line naming the record and field."""

    status: str
    message: str


def schema_problem(record: Any, schema: _Schema, what: str) -> SchemaProblem | None:
    """What is wrong with ``record`` under ``schema`` (the first field that breaks it), or
    None when nothing is."""
    if not isinstance(record, dict):
        return SchemaProblem(
            "invalid_record", f"{what} is a {type(record).__name__}, not an object"
        )
    for name, spec in schema.items():
        if name not in record:
            if spec.required:
                return SchemaProblem(spec.status, f"{what} has no {name!r}")
            continue
        if not spec.check(record[name]):
            return SchemaProblem(
                spec.status, f"{what}: {name!r} must be {spec.expected}, got {record[name]!r:.80}"
            )
    return None


def _read_json(path: Path | str) -> Any:
    if is_uri(path):
        data = read_uri(str(path), "COCO")
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read COCO JSON: {exc}") from exc
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: COCO file not found")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read COCO JSON: {exc}") from exc


@dataclass
class _ImageIndex:
    images: dict[Any, dict[str, Any]]
    duplicates: list[Any]
    invalid: dict[Any, str]
    category_ids: set[Any] | None


def _index_images(path: Path | str, data: Any) -> _ImageIndex:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{path}: not a COCO dataset file (no 'images' list)")
    images: dict[Any, dict[str, Any]] = {}
    duplicates: list[Any] = []
    invalid: dict[Any, str] = {}
    for k, entry in enumerate(data["images"]):
        found = schema_problem(entry, IMAGE_SCHEMA, f"{path}: image entry #{k}")
        problem = None if found is None else found.message
        if isinstance(entry, dict) and not _is_id(entry.get("id")):
            # Without a usable id the entry cannot be referred to: its annotations (if
            # any) are unknown_image. Reported once here.
            log.warning("%s", problem)
            continue
        if problem is not None and not isinstance(entry, dict):
            log.warning("%s", problem)
            continue
        if entry["id"] in images:
            duplicates.append(entry["id"])
            continue
        images[entry["id"]] = entry
        if problem is not None:
            invalid[entry["id"]] = problem
    categories = data.get("categories")
    category_ids = None
    if isinstance(categories, list):
        category_ids = {c["id"] for c in categories if isinstance(c, dict) and _is_id(c.get("id"))}
    return _ImageIndex(images, duplicates, invalid, category_ids)


def load_coco(
    path: str | os.PathLike[str], *, image_info: str | os.PathLike[str] | None = None
) -> CocoFile:
    """Load a COCO dataset or results file.

    Args:
        path: the file to refine.
        image_info: a dataset file listing the images of a results file (needed for
            results files, ignored otherwise).

    Raises:
        InputError: unreadable file, wrong structure, or a results file without
            ``image_info``.
    """
    p = as_location(path)  # a path or a URI: samrefiner.io.uri
    data = _read_json(p)
    if isinstance(data, list):
        if not all(isinstance(a, dict) for a in data):
            raise InputError(f"{p}: a COCO results file must be a list of objects")
        if image_info is None:
            raise InputError(
                f"{p}: a results file lists no images; give the dataset file of the same "
                "images (the ground truth) for the image list"
            )
        info_path = as_location(image_info)
        index = _index_images(info_path, _read_json(info_path))
        return CocoFile(
            "results", data, data, index.images, index.duplicates, index.invalid, index.category_ids
        )
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise InputError(f"{p}: not a COCO file (expected a list or an object with 'annotations')")
    if not all(isinstance(a, dict) for a in data["annotations"]):
        raise InputError(f"{p}: every entry of 'annotations' must be an object")
    index = _index_images(p, data)
    return CocoFile(
        "dataset",
        data,
        data["annotations"],
        index.images,
        index.duplicates,
        index.invalid,
        index.category_ids,
    )


def write_coco(path: str | os.PathLike[str], coco: CocoFile) -> None:
    """Write ``coco.data`` as compact JSON, atomically (byte-stable for equal content)."""
    atomic_write_json(path, coco.data, indent=None)


def _clean_polygons(
    segm: list[Any], height: int, width: int
) -> tuple[list[list[float]], list[str]]:
    polygons: list[list[float]] = []
    clipped = False
    for k, poly in enumerate(segm):
        if not isinstance(poly, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly
        ):
            raise SegmentationError("invalid_segmentation", f"polygon {k} is not a list of numbers")
        coords = np.asarray(poly, dtype=np.float64)
        if coords.size % 2:
            raise SegmentationError(
                "invalid_polygon", f"polygon {k} has an odd number of coordinates ({coords.size})"
            )
        if coords.size < 2 * MIN_POLYGON_POINTS:
            raise SegmentationError(
                "invalid_polygon",
                f"polygon {k} has {coords.size // 2} points (at least {MIN_POLYGON_POINTS} needed)",
            )
        if not np.isfinite(coords).all():
            raise SegmentationError(
                "invalid_polygon", f"polygon {k} has NaN or infinite coordinates"
            )
        xy = coords.reshape(-1, 2)
        limits = np.array([width, height], dtype=np.float64)
        inside = np.clip(xy, 0.0, limits)
        if not np.array_equal(inside, xy):
            clipped = True
        polygons.append(inside.reshape(-1).tolist())
    if not polygons:
        raise SegmentationError("invalid_polygon", "segmentation has no polygons")
    return polygons, (["clipped"] if clipped else [])


def compressed_counts_lengths(counts: str | bytes) -> list[int]:
    """Run lengths of a compressed RLE ``counts`` string (the format described above).

    Raises:
        SegmentationError: ``invalid_segmentation`` for a malformed string.
    """
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    runs: list[int] = []
    value, shift = 0, 0
    for char in text:
        group = ord(char) - 48
        if not 0 <= group < 64:
            raise SegmentationError("invalid_segmentation", f"RLE counts has character {char!r}")
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value, shift = 0, 0
    if shift:
        raise SegmentationError("invalid_segmentation", "RLE counts string ends mid-number")
    return runs


def _check_rle_size(segm: dict[str, Any], height: int, width: int) -> None:
    size = segm.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_is_count, size))):
        raise SegmentationError(
            "invalid_segmentation", f"RLE size must be [H, W], two integers, got {size!r:.80}"
        )
    if (size[0], size[1]) != (height, width):
        raise SegmentationError(
            "size_mismatch",
            f"RLE size {size[0]}x{size[1]} (H x W) differs from the image's {height}x{width}",
        )


def _check_runs(runs: Sequence[int], height: int, width: int) -> None:
    if any(r < 0 for r in runs):
        raise SegmentationError("invalid_segmentation", "RLE has negative run lengths")
    if sum(runs) != height * width:
        raise SegmentationError(
            "invalid_segmentation",
            f"RLE runs cover {sum(runs)} pixels, the mask has {height * width}",
        )


def decode_segmentation(segm: Any, height: int, width: int) -> tuple[np.ndarray, list[str]]:
    """Decode a COCO segmentation to an ``H x W`` bool mask.

    Polygon vertices outside ``[0, W] x [0, H]`` are clipped to the image; the returned
    warnings then contain ``"clipped"``.

    Returns:
        ``(mask, warnings)``.

    Raises:
        SegmentationError: with status ``invalid_polygon`` (fewer than 3 points, NaN),
            ``size_mismatch`` (RLE size differs from the image) or
            ``invalid_segmentation`` (anything else that cannot be decoded).
    """
    warnings: list[str] = []
    if isinstance(segm, list):
        polygons, warnings = _clean_polygons(segm, height, width)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segm, dict) and "counts" in segm:
        _check_rle_size(segm, height, width)
        counts = segm["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
                raise SegmentationError("invalid_segmentation", "RLE counts must be integers")
            _check_runs(counts, height, width)
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        elif isinstance(counts, (str, bytes)):
            # pycocotools writes past the mask for runs that overflow it: check first.
            _check_runs(compressed_counts_lengths(counts), height, width)
            text = counts.encode("ascii") if isinstance(counts, str) else counts
            rle = {"size": [height, width], "counts": text}
        else:
            raise SegmentationError("invalid_segmentation", "RLE counts must be a list or a string")
    elif segm is None:
        raise SegmentationError("no_segmentation", "annotation has no segmentation")
    else:
        raise SegmentationError(
            "invalid_segmentation", f"unsupported segmentation type {type(segm).__name__}"
        )
    mask = mask_utils.decode(rle)
    return mask.astype(bool), warnings


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of an ``H x W`` bool mask: ``{"size": [H, W], "counts": str}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def rle_area_bbox(rle: dict[str, Any]) -> tuple[int, list[float]]:
    """``(area, [x, y, w, h])`` of a compressed RLE, in COCO's conventions.

    ``bbox`` is the tight box with exclusive extent (``w = last column - first + 1``);
    an empty mask has ``[0, 0, 0, 0]``.
    """
    raw = {"size": rle["size"], "counts": str(rle["counts"]).encode("ascii")}
    area = int(mask_utils.area(raw))
    bbox = [float(v) for v in mask_utils.toBbox(raw)]
    return area, bbox


def segmentation_fields(mask: np.ndarray) -> dict[str, Any]:
    """The ``segmentation``, ``area`` and ``bbox`` fields describing ``mask``."""
    rle = encode_rle(mask)
    area, bbox = rle_area_bbox(rle)
    return {"segmentation": rle, "area": area, "bbox": bbox}


#: ``kind`` of :class:`SegmentationOutput`: compressed RLE (the default), polygons, or
#: the kind each input annotation had (``same``).
SEGMENTATION_KINDS = ("rle", "polygon", "same")
#: ``holes`` of :class:`SegmentationOutput`: what polygon output does with an object that
#: has holes (a COCO polygon cannot hold one): ``fill`` writes its outer boundaries (the
#: holes filled, with a warning), ``rle`` writes that object as RLE.
HOLE_POLICIES = ("fill", "rle")


@dataclass(frozen=True)
class SegmentationOutput:
    """How refined masks are written as COCO segmentations.

    Attributes:
        kind: ``"rle"`` (compressed RLE), ``"polygon"`` (COCO polygon lists, one per
            4-connected part of the object, traced along pixel edges by
            :func:`~samrefiner.io.polygons.mask_to_polygons`), or ``"same"``: the kind of
            the annotation's input segmentation (polygon lists stay polygons, RLE stays
            RLE; an annotation refined from its box alone gets RLE).
        simplify: Douglas-Peucker tolerance of the polygons, in pixels; 0 keeps every
            boundary corner (the polygons then decode to exactly the mask).
        min_polygon_area: parts and holes enclosing fewer pixels are dropped; when every
            part is below it the largest part is kept (an object is never written empty).
        holes: ``"fill"`` or ``"rle"``, see :data:`HOLE_POLICIES`.
    """

    kind: str = "rle"
    simplify: float = 0.0
    min_polygon_area: float = 0.0
    holes: str = "fill"

    def __post_init__(self) -> None:
        if self.kind not in SEGMENTATION_KINDS:
            raise ValueError(
                f"{said('segmentation', '--segmentation')} must be one of "
                f"{', '.join(SEGMENTATION_KINDS)}, got {self.kind!r}"
            )
        if self.holes not in HOLE_POLICIES:
            raise ValueError(
                f"{said('holes', '--holes')} must be one of {', '.join(HOLE_POLICIES)}, "
                f"got {self.holes!r}"
            )
        for name, value in (
            ("simplify", self.simplify),
            ("min_polygon_area", self.min_polygon_area),
        ):
            flag = "--" + name.replace("_", "-")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{said(name, flag)} must be a number >= 0, got {value}")
        if self.kind == "rle" and (self.simplify or self.min_polygon_area or self.holes != "fill"):
            shaping = said(
                "simplify, min_polygon_area and holes", "--simplify, --min-polygon-area and --holes"
            )
            raise ValueError(
                f"{shaping} shape polygon output: they need "
                f"{said('segmentation', '--segmentation')} polygon or same"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "simplify": self.simplify,
            "min_polygon_area": self.min_polygon_area,
            "holes": self.holes,
        }

    def kind_for(self, segmentation: Any) -> str:
        """``"rle"`` or ``"polygon"``: what an annotation whose input ``segmentation`` is
        this gets written as."""
        if self.kind != "same":
            return self.kind
        return "polygon" if isinstance(segmentation, list) and segmentation else "rle"

    def fields(self, mask: np.ndarray, segmentation: Any = None) -> tuple[dict[str, Any], bool]:
        """The ``segmentation``, ``area`` and ``bbox`` fields of ``mask`` (``H x W`` bool)
        for an annotation whose input segmentation was ``segmentation``, and whether holes
        were filled to write it as polygons.

        ``area`` and ``bbox`` are those of what is written: the polygons as pycocotools
        rasterises them (``area`` in pixels, ``bbox`` ``[x, y, w, h]``).
        """
        if self.kind_for(segmentation) == "rle":
            return segmentation_fields(mask), False
        # Imported here: tracing needs OpenCV, which reading COCO files does not.
        from samrefiner.io.polygons import Polygons, mask_to_polygons, ring_area

        polygons = mask_to_polygons(mask, tolerance=self.simplify, min_area=self.min_polygon_area)
        if not polygons.exteriors:
            every = mask_to_polygons(mask, tolerance=self.simplify)
            if not every.exteriors:  # an empty mask has no polygon
                return segmentation_fields(mask), False
            largest = max(every.exteriors, key=ring_area)
            polygons = Polygons((largest,), (), every.height, every.width)
        if polygons.has_holes and self.holes == "rle":
            return segmentation_fields(mask), False
        lists = polygons.coco()
        rle = mask_utils.merge(mask_utils.frPyObjects(lists, polygons.height, polygons.width))
        fields = {
            "segmentation": lists,
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        }
        return fields, polygons.has_holes


def has_segmentation(ann: dict[str, Any]) -> bool:
    """False when the annotation's ``segmentation`` is absent, None, ``[]``, ``{}`` or
    only empty polygons (such an annotation can be refined from its ``bbox``)."""
    segm = ann.get("segmentation")
    if segm is None or (isinstance(segm, (list, dict)) and not segm):
        return False
    return not (isinstance(segm, list) and all(isinstance(p, list) and not p for p in segm))


def bbox_xyxy(bbox: Any) -> list[float]:
    """The inclusive-pixel ``[x1, y1, x2, y2]`` of a COCO ``bbox`` ``[x, y, w, h]``.

    COCO boxes have exclusive extent (``w = last column - first + 1``), so
    ``x2 = x + w - 1`` (at least ``x`` for sub-pixel boxes).

    Raises:
        SegmentationError: status ``invalid_bbox`` unless the bbox is 4 finite numbers
            with ``w, h > 0``.
    """
    if not _is_bbox(bbox):
        raise SegmentationError("invalid_bbox", f"bbox must be 4 finite numbers, got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise SegmentationError("invalid_bbox", f"bbox width and height must be > 0, got {bbox!r}")
    return [x, y, max(x, x + w - 1), max(y, y + h - 1)]


def is_number(value: Any) -> bool:
    """True for a finite int or float (not bool): a usable ``score`` or size."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "ANNOTATION_SCHEMA",
    "IMAGE_SCHEMA",
    "MIN_POLYGON_POINTS",
    "CocoFile",
    "CocoKind",
    "SchemaField",
    "SchemaProblem",
    "SegmentationError",
    "bbox_xyxy",
    "compressed_counts_lengths",
    "decode_segmentation",
    "encode_rle",
    "has_segmentation",
    "is_number",
    "load_coco",
    "rle_area_bbox",
    "schema_problem",
    "segmentation_fields",
    "write_coco",
]
