"""Ultralytics YOLO segmentation datasets as a runner dataset (:mod:`samrefiner.io.yolo`).

One key per image of the dataset's splits (its path under the root), plus one per label
file that no image owns (``orphan:`` + its path: copied unchanged, its lines
``image_missing``) and one per list-file entry outside the root (``outside:`` + its
absolute path: the written list keeps the entry, its lines are ``unsafe_path``).

The output folder repeats the layout under the root: each image is hard-linked there
(copied where a link cannot be made; ``link_images=False`` always copies), each label
file is written with

* every refined object as one polygon line, class first, normalised: all the object's
  parts and holes joined into one ring by zero-width bridges
  (:func:`samrefiner.io.polygons.joined_ring`, exact with pycocotools' even-odd fill);
* a box line (5 values) refined from its box (``Refiner.refine(..., boxes=...)``) and
  written as a polygon; one the quality gate keeps coarse is written as its rectangle's
  polygon (Ultralytics refuses a file that mixes boxes and polygons);
* every line that cannot be used (not numbers, too few vertices, an empty polygon, a box
  outside the image) written back unchanged, with its status; blank lines are dropped.

A label file whose image cannot be used is copied byte for byte. The YAML is written
under the output folder with ``path`` set to the output folder and the splits relative to
it; list files are written with their images' new paths (``./`` relative to the list).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.io.atomic import atomic_write, atomic_write_bytes
from samrefiner.io.coco import SegmentationError
from samrefiner.io.errors import InputError
from samrefiner.io.images import read_image
from samrefiner.io.masks import as_box_array
from samrefiner.io.paths import check_inside
from samrefiner.io.polygons import joined_ring, mask_to_polygons_or_largest
from samrefiner.io.yolo import (
    YoloData,
    YoloLine,
    is_image_name,
    label_path_for,
    parse_line,
    polygon_line,
)
from samrefiner.runner.dataset import CroppedResult, Job, JobObjects
from samrefiner.runner.formats.label_folders import copy_unchanged
from samrefiner.runner.journal.records import ImageRecord, ObjectRecord, passthrough
from samrefiner.runner.journal.status import (
    EMPTY,
    IMAGE_MISSING,
    INVALID_BBOX,
    KEPT_COARSE,
    MASK_UNREADABLE,
    UNSAFE_PATH,
    WARNING_CLIPPED,
    image_error_status,
)

#: Key prefix of a label file that no image of the splits owns.
ORPHAN = "orphan:"
#: Key prefix of a list-file entry outside the root (its absolute path follows).
OUTSIDE = "outside:"


def place_file(src: Path, dst: Path, link: bool) -> None:
    """Put ``src`` at ``dst`` atomically: a hard link when ``link`` and the file system
    allows it, else a copy (``src`` is never written)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        temporary = dst.with_name(f".{dst.name}.{os.getpid()}.link")
        try:
            temporary.unlink(missing_ok=True)
            os.link(src, temporary)
            os.replace(temporary, dst)
            return
        except OSError:
            temporary.unlink(missing_ok=True)
    with atomic_write(dst) as out, open(src, "rb") as data:
        shutil.copyfileobj(data, out)


def _object_id(label: str, line: int) -> str:
    return f"{label}:{line}"


class YoloDataset:
    """Runner dataset over a :class:`~samrefiner.io.yolo.YoloData`.

    Args:
        data: the dataset (:func:`samrefiner.io.yolo.load_yolo_data`).
        output_dir: the folder the dataset is written to (the same layout).
        tolerance: Douglas-Peucker tolerance of the written polygons, pixels (0: every
            corner of the mask; exact).
        min_area: parts and holes of fewer pixels are left out of the written polygon
            (the largest part is always kept).
        link_images: hard-link the images into the output (copy where that fails);
            False copies them.
        allow_outside_images: read image files that resolve outside the root through a
            symbolic link (by default they are ``unsafe_path``).
    """

    name = "yolo"

    def __init__(
        self,
        data: YoloData,
        output_dir: str | os.PathLike[str],
        *,
        tolerance: float = 0.0,
        min_area: float = 0.0,
        link_images: bool = True,
        allow_outside_images: bool = False,
    ) -> None:
        if tolerance < 0 or min_area < 0:
            raise ValueError(f"tolerance and min_area must be >= 0, got {tolerance}, {min_area}")
        self.data = data
        self.root = data.root
        self.output_dir = Path(output_dir)
        self.tolerance = tolerance
        self.min_area = min_area
        self.link_images = link_images
        self.allow_outside_images = allow_outside_images
        self._labels: dict[str, str | None] = {}
        for image in data.images:
            try:
                self._labels[image] = label_path_for(PurePosixPath(image)).as_posix()
            except InputError:
                self._labels[image] = None  # Ultralytics finds no label file for it either
        owned = {label for label in self._labels.values() if label is not None}
        self._orphans: list[str] = []
        for source in data.sources:
            if not source.is_dir():
                continue
            probe = PurePosixPath(source.relative_to(self.root).as_posix(), "x.jpg")
            try:
                folder = self.root / label_path_for(probe).parent
            except InputError:
                continue
            if folder.is_dir():
                for path in sorted(folder.rglob("*.txt")):
                    rel = path.relative_to(self.root).as_posix()
                    if rel not in owned and rel not in self._orphans:
                        self._orphans.append(rel)

    def keys(self) -> list[str]:
        return [
            *self.data.images,
            *(ORPHAN + rel for rel in self._orphans),
            *(OUTSIDE + path for path in self.data.outside),
        ]

    def orphans(self) -> list[ObjectRecord]:
        return []

    def _read_lines(self, label: str) -> list[tuple[int, str]]:
        """The non-blank lines of a label file, numbered from 1; raises InputError."""
        path = self.root / label
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the label file: {exc}") from exc
        return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]

    def _outside(self, key: str) -> Job:
        """A list entry outside the root: the list keeps it, its labels are counted."""
        image = key[len(OUTSIDE) :]
        message = (
            f"{image}: listed outside the dataset root {self.root}; the written list keeps "
            "this entry, with its own image and labels, unrefined"
        )
        objects = []
        try:
            label = Path(label_path_for(PurePosixPath(image)))
            lines = [
                n
                for n, line in enumerate(label.read_text("utf-8-sig").splitlines(), 1)
                if line.strip()
            ]
            objects = [
                passthrough(_object_id(str(label), n), UNSAFE_PATH, message, line=n) for n in lines
            ]
        except (InputError, OSError, UnicodeDecodeError):
            pass  # no label file: a background image
        return Job(
            key,
            None,
            MaskCrops((1, 1)),
            passthrough=objects,
            payload={"label": None},
            image_status=UNSAFE_PATH,
            message=message,
        )

    def load(self, key: str) -> Job:
        empty = MaskCrops((1, 1))
        if key.startswith(OUTSIDE):
            return self._outside(key)
        label = key[len(ORPHAN) :] if key.startswith(ORPHAN) else self._labels[key]
        if label is None or not (self.root / label).is_file():
            return Job(key, None, empty, payload={"label": None})
        payload: dict[str, Any] = {"label": label}
        try:
            lines = self._read_lines(label)
        except InputError as exc:
            return Job(
                key,
                None,
                empty,
                passthrough=[passthrough(label, MASK_UNREADABLE, str(exc), line=0)],
                payload=payload,
                image_status=MASK_UNREADABLE,
                message=str(exc),
            )
        where = self.root / label
        if key.startswith(ORPHAN):
            message = f"{where}: no image of the dataset's splits owns this label file"
            return Job(
                key,
                None,
                empty,
                passthrough=[
                    passthrough(_object_id(label, n), IMAGE_MISSING, message, line=n)
                    for n, _ in lines
                ],
                payload=payload,
                image_status=IMAGE_MISSING,
                message=message,
            )
        decided: list[ObjectRecord] = []
        usable: list[tuple[int, YoloLine]] = []
        for n, text in lines:
            try:
                usable.append((n, parse_line(text)))
            except SegmentationError as exc:
                decided.append(
                    passthrough(_object_id(label, n), exc.status, f"{where}:{n}: {exc}", line=n)
                )
        if not usable:
            return Job(key, None, empty, passthrough=decided, payload=payload)
        image_path = self.root / key
        try:
            if not self.allow_outside_images:
                check_inside(self.root, image_path)
            image = read_image(image_path)
        except InputError as exc:
            status = image_error_status(exc) if image_path.exists() else IMAGE_MISSING
            return Job(
                key,
                None,
                empty,
                passthrough=decided
                + [passthrough(_object_id(label, n), status, str(exc), line=n) for n, _ in usable],
                payload=payload,
                image_status=status,
                message=str(exc),
            )
        h, w = image.shape[:2]
        objects = JobObjects(MaskCrops((h, w)))
        for n, line in usable:
            obj = _object_id(label, n)
            extra: dict[str, Any] = {"line": n, "class": line.class_id}
            if line.box is not None:
                extra["box"] = list(line.box)
            if line.is_box:
                try:
                    box = as_box_array(line.box_xyxy(h, w), (h, w))
                except (SegmentationError, ValueError) as exc:
                    decided.append(passthrough(obj, INVALID_BBOX, f"{where}:{n}: {exc}", line=n))
                    continue
                objects.add_box(obj, box, extra)
            else:
                mask, outside = line.mask(h, w)
                if not mask.any():
                    decided.append(passthrough(obj, EMPTY, f"{where}:{n}: empty polygon", line=n))
                    continue
                objects.add_mask(obj, mask, [WARNING_CLIPPED] if outside else [], extra)
        return objects.job(key, image, decided, payload)

    def _polygon(self, mask: np.ndarray, class_id: int) -> str:
        """The label line of a refined mask: all its rings joined into one."""
        h, w = mask.shape
        polygons = mask_to_polygons_or_largest(
            mask, tolerance=self.tolerance, min_area=self.min_area
        )
        return polygon_line(class_id, joined_ring(polygons), h, w)

    def save(self, job: Job, result: CroppedResult | None) -> ImageRecord:
        label = job.payload["label"] if job.payload else None
        if not job.key.startswith((ORPHAN, OUTSIDE)):
            place_file(self.root / job.key, self.output_dir / job.key, self.link_images)
        objects = job.records(result)
        if label is not None:
            if result is None:
                copy_unchanged(self.root / label, self.output_dir / label)
            else:
                self._write_labels(job, result, objects, label)
        objects.sort(key=lambda o: o.extra["line"])
        return job.image_record(result, objects)

    def _write_labels(
        self, job: Job, result: CroppedResult, objects: list[ObjectRecord], label: str
    ) -> None:
        lines = dict(self._read_lines(label))
        refined = objects[len(job.passthrough) :]
        for k, obj in enumerate(refined):
            n, class_id = obj.extra["line"], obj.extra["class"]
            if obj.refined:
                lines[n] = self._polygon(result.masks.full(k), class_id)
            elif obj.status == KEPT_COARSE and "box" in obj.extra:
                xc, yc, bw, bh = obj.extra["box"]
                x1, y1, x2, y2 = xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2
                corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
                lines[n] = polygon_line(class_id, corners, 1, 1)
        text = "".join(f"{lines[n]}\n" for n in sorted(lines))
        atomic_write_bytes(self.output_dir / label, text.encode("utf-8"))

    def finish(self, records: Iterator[ImageRecord]) -> None:
        """Write the YAML and the list files (every image and label file is written)."""
        for _ in records:  # every image was written as it finished
            pass
        for source in self.data.sources:
            if source.is_file():
                self._write_list(source)
        if self.data.yaml_path is not None and self.data.yaml is not None:
            self._write_yaml(self.data.yaml_path, self.data.yaml)

    def _write_list(self, source: Path) -> None:
        rel = source.relative_to(self.root)
        out = self.output_dir / rel
        lines = []
        for line in source.read_text(encoding="utf-8-sig").strip().splitlines():
            line = line.strip()
            if not line or not is_image_name(line):
                continue
            image = Path(
                os.path.abspath(source.parent / line[2:] if line.startswith("./") else line)
            )
            if not image.is_relative_to(self.root):
                lines.append(line)  # outside the root: the original image and labels
                continue
            target = self.output_dir / image.relative_to(self.root)
            relative = Path(os.path.relpath(target, out.parent)).as_posix()
            if relative.startswith("../"):
                lines.append(str(target.resolve()))
            else:
                lines.append(f"./{relative}")
        atomic_write_bytes(out, "".join(f"{line}\n" for line in lines).encode("utf-8"))

    def _write_yaml(self, yaml_path: Path, content: dict[str, Any]) -> None:
        import yaml

        written = dict(content)
        written["path"] = str(self.output_dir.resolve())
        for key, value in self.data.splits.items():
            entries = [
                self._split_entry(e) for e in (value if isinstance(value, list) else [value])
            ]
            written[key] = entries if isinstance(value, list) else entries[0]
        text = yaml.safe_dump(written, sort_keys=False, allow_unicode=True)
        atomic_write_bytes(self.output_dir / yaml_path.name, text.encode("utf-8"))

    def _split_entry(self, entry: str) -> str:
        where = self.root / entry
        if not where.exists() and entry.startswith("../"):
            where = self.root / entry[3:]
        rel = where.resolve().relative_to(self.root.resolve()).as_posix()
        return rel or "."
