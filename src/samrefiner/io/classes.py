"""Class names for open-vocabulary detection: a comma-separated list, a text file of
names (one a line), or a COCO file's categories.

:class:`ClassList` keeps each name's COCO category id: 1, 2, ... in order for a list or a
text file, the file's own ids for a COCO file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samrefiner.io.errors import InputError


@dataclass(frozen=True)
class ClassList:
    """Class names and their COCO category ids.

    Attributes:
        names: distinct, non-empty names, in order.
        ids: one distinct integer category id per name.
    """

    names: tuple[str, ...]
    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("no class names")
        if len(self.ids) != len(self.names):
            raise ValueError(f"{len(self.ids)} category ids for {len(self.names)} names")
        if any(not n.strip() or n != n.strip() for n in self.names):
            raise ValueError("class names must be non-empty without surrounding spaces")
        for what, values in (("class names", self.names), ("category ids", self.ids)):
            twice = sorted({str(v) for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"{what} given twice: {', '.join(twice)}")
        if any(isinstance(i, bool) or not isinstance(i, int) for i in self.ids):
            raise ValueError("category ids must be integers")

    @classmethod
    def of(cls, names: list[str] | tuple[str, ...]) -> ClassList:
        """``names`` with ids 1, 2, ..."""
        return cls(tuple(names), tuple(range(1, len(names) + 1)))

    def categories(self) -> list[dict[str, Any]]:
        """COCO ``categories`` entries: ``{"id", "name"}`` per class."""
        return [{"id": i, "name": n} for i, n in zip(self.ids, self.names, strict=True)]


def _coco_categories(path: Path, data: Any) -> ClassList:
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, list) or not cats:
        raise InputError(f"{path}: a COCO file given as classes must list 'categories'")
    names, ids = [], []
    for k, cat in enumerate(cats):
        if not (
            isinstance(cat, dict)
            and isinstance(cat.get("name"), str)
            and isinstance(cat.get("id"), int)
            and not isinstance(cat.get("id"), bool)
        ):
            raise InputError(f"{path}: category #{k} needs an integer 'id' and a 'name'")
        names.append(cat["name"].strip())
        ids.append(cat["id"])
    try:
        return ClassList(tuple(names), tuple(ids))
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc


def read_classes(spec: str) -> ClassList:
    """The classes ``spec`` names: an existing ``.json`` file (a COCO file's categories),
    another existing file (one name a line; blank lines and ``#`` comments skipped), or
    else a comma-separated list of names.

    Raises:
        InputError: naming the file (or the list) and the problem.
    """
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read class names: {exc}") from exc
        if path.suffix.lower() == ".json":
            try:
                return _coco_categories(path, json.loads(text))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: cannot read COCO JSON: {exc}") from exc
        names = [line.strip() for line in text.splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
        where = f"{path}"
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        where = f"class list {spec!r}"
    try:
        return ClassList.of(names)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from exc
