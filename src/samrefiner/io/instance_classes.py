"""The class sidecar of an instance-id map, ``<map>.classes.json``: written by
``samrefiner instances --name-classes`` next to each refined map (an id map holds no
classes), read back by :func:`read_instance_classes`. One versioned schema for both.

Layout (kind ``instance_classes``, version 1)::

    {"kind": "instance_classes", "version": 1, "map": "sub/frame.png",
     "instances": [{"id": 3, "class": "dog", "score": 0.8, "box_iou": 0.93, "added": false},
                   ...]}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samrefiner.io.atomic import atomic_write_json
from samrefiner.io.errors import InputError
from samrefiner.io.schema import SchemaError, check_header

KIND, FORMAT_VERSION = "instance_classes", 1
#: Suffix replacing a map's ``.png`` for its sidecar.
CLASSES_SUFFIX = ".classes.json"


def classes_path(map_path: str | os.PathLike[str]) -> Path:
    """The sidecar of the map at ``map_path`` (``x.png`` -> ``x.classes.json``)."""
    path = Path(map_path)
    return path.with_name(path.stem + CLASSES_SUFFIX)


def _unit(value: Any, what: str) -> float:
    number = float(value)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"{what} must be in [0, 1], got {value!r}")
    return number


@dataclass
class InstanceClass:
    """The class of one instance id.

    Attributes:
        id: the id in the map (> 0).
        cls: the class name (``"class"`` in the file); None when no detection matches
            the object.
        score: the detector's score of the naming detection (of the one overlapping
            the object most when it is unnamed; 0 when none overlaps).
        box_iou: the IoU of that detection's box with the object's box (0 when none;
            None for an object added by ``--complete``, which is its detection).
        added: True for an object ``--complete`` added (painted with a new id).
    """

    id: int
    cls: str | None
    score: float
    box_iou: float | None
    added: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id <= 0:
            raise ValueError(f"instance id must be an integer > 0, got {self.id!r}")
        if self.cls is not None and (not isinstance(self.cls, str) or not self.cls):
            raise ValueError(f"instance {self.id}: class must be a name or None")
        self.score = _unit(self.score, f"instance {self.id}: score")
        if self.box_iou is not None:
            self.box_iou = _unit(self.box_iou, f"instance {self.id}: box_iou")
        if self.added and self.cls is None:
            raise ValueError(f"instance {self.id}: an added object has its detection's class")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.cls,
            "score": self.score,
            "box_iou": self.box_iou,
            "added": self.added,
        }

    @classmethod
    def from_json(cls, data: Any) -> InstanceClass:
        return cls(
            id=data["id"],
            cls=data["class"],
            score=data["score"],
            box_iou=data["box_iou"],
            added=bool(data.get("added", False)),
        )


@dataclass
class InstanceClasses:
    """The classes of a map's instance ids.

    Attributes:
        map: the map's path relative to the output folder (``/``-separated).
        instances: one :class:`InstanceClass` per id, ids unique, in the map's id order
            (added objects last).
    """

    map: str
    instances: list[InstanceClass] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.map, str) or not self.map:
            raise ValueError("map must be the map's relative path")
        ids = [i.id for i in self.instances]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.map}: instance ids repeat: {ids}")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": FORMAT_VERSION,
            "map": self.map,
            "instances": [i.to_json() for i in self.instances],
        }

    @classmethod
    def from_json(cls, data: Any) -> InstanceClasses:
        check_header(data, KIND, FORMAT_VERSION)
        try:
            return cls(str(data["map"]), [InstanceClass.from_json(i) for i in data["instances"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"instance classes do not follow their schema: {exc!r}") from exc

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the sidecar atomically."""
        atomic_write_json(path, self.to_json())


def read_instance_classes(path: str | os.PathLike[str]) -> InstanceClasses:
    """Read a sidecar; a file that cannot be read or does not follow the schema is an
    :class:`InputError` naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return InstanceClasses.from_json(data)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as instance classes: {exc}") from exc
