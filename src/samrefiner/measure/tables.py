"""Markdown tables and CSV files for evaluation and benchmark results."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from samrefiner.io import atomic_write

#: Columns of a quality summary: (heading, key of a metrics.aggregate group).
QUALITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("objects", "count"),
    ("mIoU", "mean_iou"),
    ("IoU (ΣI/ΣU)", "total_iou"),
    ("mBIoU", "mean_boundary_iou"),
    ("BIoU (ΣI/ΣU)", "total_boundary_iou"),
    ("mBA", "mean_mba"),
)


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table, columns padded to line up in plain text."""
    cells = [[str(h) for h in headers]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([lines[0], rule, *lines[1:]])


def summary_table(summary: Mapping[str, Mapping[str, Any]], label: str = "subset") -> str:
    """Markdown table of a :func:`~samrefiner.measure.metrics.aggregate` result, a row per group."""
    rows = [
        [group, *(stats.get(key) for _, key in QUALITY_COLUMNS)] for group, stats in summary.items()
    ]
    return markdown_table([label, *(h for h, _ in QUALITY_COLUMNS)], rows)


def csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    """CSV of ``records`` with the union of their keys as header, in first-seen order."""
    fields: dict[str, None] = {}
    for rec in records:
        fields.update(dict.fromkeys(rec))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
