"""Ultralytics YOLO segmentation datasets: label lines, label paths and dataset YAMLs.

A label file holds one object per line, class first, coordinates normalised by the
image's width and height:

* a **polygon**: ``class x1 y1 x2 y2 ... xK yK`` (``K >= 3`` vertices);
* a **box** (detection): ``class x_centre y_centre width height``.

Each image's label file is found as Ultralytics finds it: the last ``images`` folder of
the image's path replaced by ``labels`` and the suffix by ``.txt``
(``ds/images/train/a.jpg`` -> ``ds/labels/train/a.txt``). A dataset YAML names the root
(``path``), the splits (``train``, ``val``, ``test``: folders of images, list files of
image paths, or lists of either) and the classes (``names``).

Polygons are read and written along pixel edges, as :mod:`samrefiner.io.polygons` traces
them: a vertex ``(x, y)`` in pixels is ``(x / W, y / H)`` in the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from samrefiner.io.coco import SegmentationError, bbox_xyxy
from samrefiner.io.errors import InputError
from samrefiner.io.polygons import Polygons

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "YoloData",
    "YoloLine",
    "label_path_for",
    "load_yolo_data",
    "parse_line",
    "polygon_line",
]

#: Image suffixes Ultralytics lists as images (lower case, without the dot).
IMAGE_SUFFIXES = frozenset(
    {"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpeg2000", "jpg", "mpo", "png"}
    | {"tif", "tiff", "webp", "pfm"}
)
#: The split keys of a dataset YAML, in the order they are read.
SPLITS = ("train", "val", "test")
#: Digits of the normalised coordinates written (Ultralytics' converters write ``%g``).
COORD_DIGITS = 6

# Statuses of lines that cannot be used (samrefiner.runner.journal.status names them).
_INVALID_RECORD = "invalid_record"
_INVALID_POLYGON = "invalid_polygon"
_INVALID_BBOX = "invalid_bbox"


@dataclass(frozen=True)
class YoloLine:
    """One object line of a label file.

    Attributes:
        text: the line as read, without its line break (written back unchanged when the
            object is not refined).
        class_id: the class index (``>= 0``).
        points: ``K x 2`` normalised ``(x, y)`` vertices of a polygon (``K >= 3``), or
            None for a box.
        box: normalised ``(x_centre, y_centre, width, height)`` of a box, or None for a
            polygon.
    """

    text: str
    class_id: int
    points: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if (self.points is None) == (self.box is None):
            raise ValueError("a YOLO line is a polygon or a box: give points or box, not both")
        if self.class_id < 0:
            raise ValueError(f"class must be >= 0, got {self.class_id}")
        if self.points is not None and (self.points.ndim != 2 or self.points.shape[1] != 2):
            raise ValueError(f"points must be K x 2, got shape {self.points.shape}")
        if self.points is not None and len(self.points) < 3:
            raise ValueError(f"a polygon needs 3 vertices or more, got {len(self.points)}")

    @property
    def is_box(self) -> bool:
        return self.box is not None

    def mask(self, height: int, width: int) -> tuple[np.ndarray, bool]:
        """The polygon's ``H x W`` bool mask (even-odd fill) and whether a vertex lay
        outside the image (it is clipped to the border)."""
        if self.points is None:
            raise ValueError("a box line has no polygon; use box_xyxy")
        ring = self.points * np.array([width, height], dtype=np.float64)
        clipped = np.clip(ring, 0, [width, height])
        outside = bool((np.abs(clipped - ring) > 1e-6).any())
        return Polygons((clipped,), (), height, width).to_mask(), outside

    def box_xyxy(self, height: int, width: int) -> list[float]:
        """The box as inclusive-pixel ``[x1, y1, x2, y2]`` (the COCO rule: a box ``w``
        pixels wide ends at ``x1 + w - 1``).

        Raises:
            SegmentationError: ``invalid_bbox`` for a width or height that is not > 0.
        """
        if self.box is None:
            raise ValueError("a polygon line has no box")
        xc, yc, w, h = self.box
        return bbox_xyxy([(xc - w / 2) * width, (yc - h / 2) * height, w * width, h * height])


def parse_line(text: str) -> YoloLine:
    """Parse one non-blank line of a label file.

    Raises:
        SegmentationError: with the status of a line that cannot be used:
            ``invalid_record`` (not numbers, or a class that is not an integer >= 0),
            ``invalid_polygon`` (an odd number of coordinates, fewer than 3 vertices, or
            one that is not finite), ``invalid_bbox`` (a box with a width or height that
            is not > 0, or not finite).
    """
    fields = text.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise SegmentationError(_INVALID_RECORD, "a value is not a number") from None
    if not values or not math.isfinite(values[0]) or values[0] < 0 or values[0] % 1:
        raise SegmentationError(
            _INVALID_RECORD, f"class must be an integer >= 0, got {fields[0] if fields else ''!r}"
        )
    class_id, coords = int(values[0]), values[1:]
    if len(coords) == 4:
        if not all(math.isfinite(v) for v in coords) or coords[2] <= 0 or coords[3] <= 0:
            raise SegmentationError(
                _INVALID_BBOX, f"box width and height must be finite and > 0, got {coords}"
            )
        xc, yc, w, h = coords
        return YoloLine(text, class_id, box=(xc, yc, w, h))
    if len(coords) % 2 or len(coords) < 6:
        raise SegmentationError(
            _INVALID_POLYGON,
            f"{len(coords)} coordinates: a polygon needs an even number, 6 or more (a box needs 4)",
        )
    points = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise SegmentationError(_INVALID_POLYGON, "a coordinate is not finite")
    return YoloLine(text, class_id, points=points)


def polygon_line(class_id: int, ring: np.ndarray, height: int, width: int) -> str:
    """The label line of a ``K x 2`` pixel ring (``class x1 y1 ...``, normalised)."""
    normalised = np.asarray(ring, dtype=np.float64) / np.array([width, height], dtype=np.float64)
    return " ".join([str(int(class_id)), *(f"{v:.{COORD_DIGITS}g}" for v in normalised.ravel())])


def label_path_for(image: PurePosixPath) -> PurePosixPath:
    """The label file of an image path, as Ultralytics pairs them (the last ``images``
    folder becomes ``labels``, the suffix ``.txt``).

    Raises:
        InputError: the path has no ``images`` folder.
    """
    parts = list(image.parts)
    folders = [k for k, part in enumerate(parts[:-1]) if part == "images"]
    if not folders:
        raise InputError(
            f"{image}: no 'images' folder in its path, so it has no label file "
            "(Ultralytics reads ds/images/x.jpg's labels from ds/labels/x.txt)"
        )
    parts[folders[-1]] = "labels"
    return PurePosixPath(*parts).with_suffix(".txt")


def is_image_name(name: str) -> bool:
    """True for a file name with one of :data:`IMAGE_SUFFIXES`."""
    return name.rpartition(".")[2].lower() in IMAGE_SUFFIXES


@dataclass
class YoloData:
    """A YOLO dataset as the ``yolo`` command reads it.

    Attributes:
        root: the dataset root (the YAML's ``path``, or the folder above an images
            folder given alone); image paths are kept relative to it.
        yaml_path: the dataset YAML, or None for an images folder given alone.
        yaml: the YAML's contents (None without a YAML).
        splits: split key -> its entries as the YAML gives them (one string, or a list).
        sources: each folder or list file the images come from, absolute.
        images: image paths relative to ``root`` (POSIX), each once, in split order.
        outside: list-file entries (absolute paths) that lead outside ``root``: they are
            written back as they are, with their own label files.
    """

    root: Path
    yaml_path: Path | None = None
    yaml: dict[str, Any] | None = None
    splits: dict[str, Any] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.root.is_absolute():
            raise ValueError(f"root must be absolute, got {self.root}")
        if (self.yaml_path is None) != (self.yaml is None):
            raise ValueError("yaml_path and yaml go together")


def _list_folder(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))


def _read_list(list_file: Path) -> list[Path]:
    """Image paths of a list file: ``./x`` relative to the list's folder, other relative
    paths to the current folder (Ultralytics' rules)."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{list_file}: cannot read the image list: {exc}") from exc
    paths = []
    for line in text.strip().splitlines():
        line = line.strip()
        if not line or not is_image_name(line):
            continue
        paths.append(list_file.parent / line[2:] if line.startswith("./") else Path(line))
    return paths


def _resolve_root(value: Any, yaml_path: Path) -> Path:
    """The dataset root of a YAML's ``path``: absolute, or relative to the current
    folder where that exists (as Ultralytics resolves it), else to the YAML's folder."""
    if value in (None, ""):
        return yaml_path.parent.resolve()
    if not isinstance(value, str):
        raise InputError(f"{yaml_path}: 'path' must be a string, got {value!r}")
    path = Path(value)
    if path.is_absolute():
        return path.resolve()
    for base in (Path.cwd(), yaml_path.parent):
        if (base / path).is_dir():
            return (base / path).resolve()
    raise InputError(
        f"{yaml_path}: dataset root 'path: {value}' is a folder neither under the current "
        f"folder nor under {yaml_path.parent}"
    )


def load_yolo_data(source: str | os.PathLike[str]) -> YoloData:
    """Read a dataset YAML, or an images folder given alone (its labels sit in the
    ``labels`` folder beside the last ``images`` folder of its path).

    Raises:
        InputError: naming the file and the problem (unreadable YAML, no split, a split
            that is missing or lies outside the root, a pose dataset).
    """
    path = Path(source)
    if path.is_dir():
        resolved = path.resolve()
        parts = resolved.parts
        if "images" not in parts:
            raise InputError(
                f"{path}: an images folder given alone must have an 'images' folder in its "
                "path (its labels are read from the 'labels' folder beside it)"
            )
        k = len(parts) - 1 - parts[::-1].index("images")
        root = Path(*parts[:k])
        data = YoloData(root, sources=[resolved])
        _collect(data, [resolved], path)
        return data
    if not path.is_file():
        raise InputError(f"{path}: no such dataset YAML or images folder")
    import yaml  # PyYAML: imported here, only the yolo command needs it

    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the dataset YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise InputError(f"{path}: a dataset YAML must be a mapping (path, train, val, names)")
    if content.get("kpt_shape") is not None:
        raise InputError(f"{path}: a pose dataset (kpt_shape); yolo refines segmentation labels")
    root = _resolve_root(content.get("path"), path.resolve())
    splits = {k: content[k] for k in SPLITS if content.get(k)}
    if not splits:
        raise InputError(f"{path}: no split: give train, val or test")
    data = YoloData(root, path.resolve(), content, splits)
    entries: list[Path] = []
    for key, value in splits.items():
        for entry in value if isinstance(value, list) else [value]:
            if not isinstance(entry, str):
                raise InputError(f"{path}: '{key}' entries must be paths, got {entry!r}")
            where = root / entry
            if not where.exists() and entry.startswith("../"):
                where = root / entry[3:]  # Ultralytics' second guess
            where = where.resolve()
            if not where.exists():
                raise InputError(f"{path}: '{key}: {entry}' does not exist ({where})")
            if not where.is_relative_to(root.resolve()):
                raise InputError(
                    f"{path}: '{key}: {entry}' lies outside the dataset root {root}; the "
                    "output repeats the layout under -o, so every split must lie under it"
                )
            entries.append(where)
    data.sources = entries
    _collect(data, entries, path)
    return data


def _collect(data: YoloData, entries: list[Path], where: Path) -> None:
    """Fill ``data.images`` and ``data.outside`` from the split folders and list files."""
    root = data.root.resolve()
    seen: set[str] = set()
    for entry in entries:
        images = _list_folder(entry) if entry.is_dir() else _read_list(entry)
        for image in images:
            absolute = Path(os.path.abspath(image))
            if not absolute.is_relative_to(root):
                if str(absolute) not in data.outside:
                    data.outside.append(str(absolute))
                continue
            rel = absolute.relative_to(root).as_posix()
            if rel not in seen:
                seen.add(rel)
                data.images.append(rel)
    if not data.images and not data.outside:
        raise InputError(f"{where}: no images found")
