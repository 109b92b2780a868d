"""Per-object containers: each per-object field declared once, with generic take / concat /
scatter.

A container is a dataclass whose per-object fields (one entry per object, in object
order) carry :func:`column` metadata, and whose per-call totals (seconds per stage,
encoder passes) carry :func:`total` metadata. :class:`PerObject` then gives every
such dataclass the same operations, written once, instead of one gather / join /
scatter per shape that lists every field:

* :meth:`PerObject.take` -- the objects at some indices;
* :meth:`PerObject.concat` -- the objects of several parts, one after the other;
* :meth:`PerObject.scatter` -- parts that each hold some of ``n`` objects, back in
  object order;
* :meth:`PerObject.put` -- copy a part's objects into a container in place.

A column's value is an ``N``-row numpy array (``N x H x W`` masks, ``N`` scores), an
``N``-entry list, or a :class:`~samrefiner.crops.MaskCrops` (box-local masks).
:class:`samrefiner.RefineResult` is the package's container of refined objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from samrefiner.crops import MaskCrops

_META_COLUMN = "samrefiner_column"
_META_TOTAL = "samrefiner_total"


class _Required:
    """Marks a column that has no value for missing entries (it must be given)."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: :attr:`Column.fill` of a column that must be given in full.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Column:
    """How one per-object field is stored.

    Attributes:
        dtype: numpy dtype of an array column (its value is converted to a 1-D array of
            it), or None for a list column (any per-object value) and for masks.
        fill: each object's value when the field is given empty or None, or
            :data:`REQUIRED`.
        masks: True for the masks column (``N x H x W`` bool, or
            :class:`~samrefiner.crops.MaskCrops`): it fixes ``N``.
    """

    dtype: Any = None
    fill: Any = REQUIRED
    masks: bool = False

    def settle(self, value: Any, n: int) -> Any:
        """``value`` in this column's storage, filled for ``n`` objects when missing."""
        if self.masks:
            return value
        missing = value is None or len(value) == 0
        if missing and self.fill is not REQUIRED:
            value = [self.fill] * n
        elif value is None:
            value = []
        if self.dtype is not None:
            return np.asarray(value, dtype=self.dtype).reshape(-1)
        return list(value)


def column(*, dtype: Any = None, fill: Any = REQUIRED, masks: bool = False) -> dict[str, Any]:
    """Metadata of a dataclass field that holds one entry per object (see :class:`Column`),
    as in ``scores: np.ndarray = field(metadata=column(dtype=np.float32))``."""
    return {_META_COLUMN: Column(dtype, fill, masks)}


def total() -> dict[str, Any]:
    """Metadata of a dataclass field that holds a per-call total: a number or a
    ``{name: number}`` dict, summed when containers are joined (:meth:`PerObject.concat`)."""
    return {_META_TOTAL: True}


def _take(value: Any, indices: Sequence[int]) -> Any:
    if isinstance(value, np.ndarray):
        return value[np.asarray(indices, dtype=np.intp)]
    if isinstance(value, MaskCrops):
        return value.subset(indices)
    return [value[i] for i in indices]


def _concat(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(values)
    if isinstance(first, MaskCrops):
        return MaskCrops.concat(values)
    return [entry for value in values for entry in value]


def _put(target: Any, indices: Sequence[int], value: Any) -> None:
    if isinstance(target, (np.ndarray, list)):
        for k, i in enumerate(indices):
            target[i] = value[k]
    else:
        raise TypeError(f"put needs numpy arrays or lists, not {type(target).__name__}")


def _sum(values: Iterable[Any]) -> Any:
    values = list(values)
    if isinstance(values[0], dict):
        out: dict[str, Any] = {}
        for value in values:
            for key, amount in value.items():
                out[key] = out.get(key, 0.0) + amount
        return out
    return sum(values)


P = TypeVar("P", bound="PerObject")


class PerObject:
    """Base of a dataclass of per-object columns (:func:`column`) and totals (:func:`total`).

    The subclass's ``__post_init__`` calls :meth:`_settle_columns` with ``N``; every
    other operation follows from the declaration.
    """

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """Names of the per-object fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if _META_COLUMN in f.metadata)  # type: ignore[arg-type]

    @classmethod
    def totals(cls) -> tuple[str, ...]:
        """Names of the per-call totals, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if _META_TOTAL in f.metadata)  # type: ignore[arg-type]

    @classmethod
    def column_spec(cls, name: str) -> Column:
        """The declaration of column ``name``."""
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name == name and _META_COLUMN in f.metadata:
                spec: Column = f.metadata[_META_COLUMN]
                return spec
        raise KeyError(f"{cls.__name__} has no column {name!r}")

    def _settle_columns(self, n: int) -> None:
        """Convert each column to its storage, fill missing ones, and check that each
        has ``n`` entries (ValueError naming the first that has not)."""
        names = self.columns()
        for name in names:
            setattr(self, name, self.column_spec(name).settle(getattr(self, name), n))
        for name in names:
            value = getattr(self, name)
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} masks")

    def __len__(self) -> int:
        return len(getattr(self, self.columns()[0]))

    @classmethod
    def like(cls: type[P], other: PerObject, **values: Any) -> P:
        """A ``cls`` holding ``other``'s fields, with ``values`` in place of some of them
        (e.g. a subclass that stores the masks another way)."""
        kwargs = {f.name: getattr(other, f.name) for f in dataclasses.fields(other) if f.init}  # type: ignore[arg-type]
        kwargs.update(values)
        return cls(**kwargs)

    def _with(self: P, values: dict[str, Any]) -> P:
        return type(self).like(self, **values)

    def take(self: P, indices: Sequence[int]) -> P:
        """The objects at ``indices``, in that order (totals are kept as they are)."""
        return self._with({name: _take(getattr(self, name), indices) for name in self.columns()})

    @classmethod
    def concat(cls: type[P], parts: Sequence[P]) -> P:
        """The objects of ``parts`` one after the other; totals are summed, in order.

        Fields that are neither columns nor totals are the first part's.
        """
        if not parts:
            raise ValueError(f"concat needs at least one {cls.__name__}")
        values = {name: _concat([getattr(p, name) for p in parts]) for name in cls.columns()}
        values.update({name: _sum(getattr(p, name) for p in parts) for name in cls.totals()})
        return parts[0]._with(values)

    @classmethod
    def scatter(cls: type[P], n: int, parts: Sequence[tuple[Sequence[int], P]]) -> P:
        """One container of ``n`` objects from parts holding some of them.

        Args:
            n: number of objects.
            parts: ``(indices, part)`` pairs: ``part``'s entry ``k`` is object
                ``indices[k]``; together the indices name every object once. Totals are
                summed in the order of ``parts``.
        """
        order = [int(i) for indices, _ in parts for i in indices]
        if sorted(order) != list(range(n)):
            raise ValueError(f"parts must name each of the {n} masks once, got {order}")
        joined = cls.concat([part for _, part in parts])
        if order == list(range(n)):
            return joined
        return joined.take(np.argsort(order, kind="stable").tolist())

    def put(self, indices: Sequence[int], part: PerObject) -> None:
        """Copy ``part``'s objects into this container in place: its entry ``k`` becomes
        object ``indices[k]`` (columns held as numpy arrays or lists; totals untouched)."""
        for name in self.columns():
            _put(getattr(self, name), indices, getattr(part, name))
