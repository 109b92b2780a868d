"""Blank what differs from run to run in copies of samrefiner's outputs (used by
scripts/same_outputs.sh): timings, rates, dates and Ray's own log lines. Every other byte
stays, so two runs of the same code compare equal and any other difference shows.

    python scripts/blank_timings.py FOLDER...   # rewrites the text files in place
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

#: JSON keys whose values are timings (a dict under such a key is blanked whole).
TIMING_KEY = re.compile(
    r"(^|_)(s|seconds|time_s|s_per_image|per_s)$|^(created|timings|peak_rss_mb)$"
)
TIMING_TEXT = [
    (re.compile(r"\b\d+(\.\d+)? s\b"), "# s"),  # "in 0.24 s", "wall time: 1.3 s"
    (re.compile(r"peak RSS: \d+ MiB"), "peak RSS: # MiB"),
    (re.compile(r"^(\[?\d{4}-\d\d-\d\d |\(\w+).*\n?", re.M), ""),  # Ray's log lines
]


def blank(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        if TIMING_KEY.search(key):
            return dict.fromkeys(value, 0)
        return {k: blank(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [blank(v, key) for v in value]
    if isinstance(value, (int, float, str)) and TIMING_KEY.search(key):
        return 0
    return value


def _timed(header: str) -> bool:
    return "s/img" in header or "/s" in header


def blank_columns(text: str) -> str:
    """Blank the table columns whose header names a time or a rate (markdown, HTML)."""
    lines, timed = [], set()
    for line in text.split("\n"):
        if line.startswith("|"):
            cells = line.split("|")
            if "mIoU" in line:
                timed = {i for i, c in enumerate(cells) if _timed(c)}
            elif timed and not set(line) <= set("|-: "):
                cells = ["#" if i in timed else c for i, c in enumerate(cells)]
            line = "|".join(cells)
        lines.append(line)
    text = "\n".join(lines)
    columns: list[int] = []

    def row(match: re.Match[str]) -> str:
        cells = re.split(r"(<t[dh][^>]*>.*?</t[dh]>)", match.group(0))
        tds = [i for i, c in enumerate(cells) if re.match(r"<t[dh]", c)]
        if "<th" in match.group(0):
            columns[:] = [n for n, i in enumerate(tds) if _timed(cells[i])]
        else:
            for n in columns:
                if n < len(tds):
                    cells[tds[n]] = "<td>#</td>"
        return "".join(cells)

    return re.sub(r"<tr>.*?</tr>", row, text, flags=re.S)


def main(folders: list[str]) -> None:
    for root in folders:
        for path in Path(root).rglob("*"):
            if not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # images, tensors: compared as they are
            if path.suffix == ".json":
                with contextlib.suppress(json.JSONDecodeError):  # not JSON: as text
                    text = json.dumps(blank(json.loads(text)), indent=1, sort_keys=True)
            for pattern, replacement in TIMING_TEXT:
                text = pattern.sub(replacement, text)
            path.write_text(blank_columns(text), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
