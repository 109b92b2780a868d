"""Inline SVG plots (no plotting library, no scripts): histograms and scatter plots."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

_W, _H = 420, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 28, 40
_PW, _PH = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM


def _x(fraction: float) -> float:
    return _LEFT + _PW * min(max(fraction, 0.0), 1.0)


def _y(fraction: float) -> float:
    return _TOP + _PH - _PH * min(max(fraction, 0.0), 1.0)


def _frame(
    title: str, x_label: str, y_label: str, y_ticks: Sequence[tuple[float, str]]
) -> list[str]:
    """SVG opening, title, plot area, x ticks 0..1, y ticks at (fraction, label), labels."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" '
        f'class="plot" role="img" aria-label="{escape(title)}">',
        f'<text x="{_W / 2}" y="16" class="plot-title">{escape(title)}</text>',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_PW}" height="{_PH}" class="plot-area"/>',
    ]
    for k in range(6):
        x = _x(k / 5)
        parts.append(
            f'<line x1="{x:.1f}" y1="{_y(0)}" x2="{x:.1f}" y2="{_y(0) + 4}" class="axis"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{_y(0) + 16}" class="tick">{k / 5:.1f}</text>')
    for fraction, label in y_ticks:
        y = _y(fraction)
        parts.append(
            f'<line x1="{_LEFT - 4}" y1="{y:.1f}" x2="{_LEFT + _PW}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="tick tick-y">{label}</text>')
    mid = _TOP + _PH / 2
    parts.append(f'<text x="{_LEFT + _PW / 2}" y="{_H - 6}" class="label">{escape(x_label)}</text>')
    parts.append(
        f'<text x="12" y="{mid}" class="label" transform="rotate(-90 12 {mid})">'
        f"{escape(y_label)}</text>"
    )
    return parts


def histogram_svg(
    series: dict[str, Sequence[float]],
    colors: dict[str, str],
    title: str,
    x_label: str,
    bins: int = 20,
) -> str:
    """Overlaid step histograms of values in [0, 1], one per series, with a legend."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = {
        n: np.histogram(np.clip(np.asarray(v, float), 0, 1), edges)[0] for n, v in series.items()
    }
    peak = max([int(c.max()) for c in counts.values() if c.size] + [1])
    step = max(1, int(np.ceil(peak / 4)))
    top = step * int(np.ceil(peak / step))
    ticks = [(n / top, str(n)) for n in range(0, top + 1, step)]
    parts = _frame(title, x_label, "objects", ticks)
    for i, (name, c) in enumerate(counts.items()):
        pts = [(_x(0), _y(0))]
        for k, n in enumerate(c):
            pts += [(_x(edges[k]), _y(n / top)), (_x(edges[k + 1]), _y(n / top))]
        pts.append((_x(1), _y(0)))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        color = colors.get(name, "#888888")
        parts.append(
            f'<polyline points="{path}" fill="{color}" fill-opacity="0.18" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        ly = _TOP + 8 + 16 * i
        parts.append(f'<rect x="{_LEFT + 8}" y="{ly}" width="10" height="10" fill="{color}"/>')
        parts.append(
            f'<text x="{_LEFT + 22}" y="{ly + 9}" class="legend">'
            f"{escape(name)} (n={len(series[name])})</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def scatter_svg(
    xs: Sequence[float],
    ys: Sequence[float],
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float],
    zero_line: bool = False,
    color: str = "#0074d9",
) -> str:
    """Scatter plot, x in [0, 1] and y in ``y_range``; optional horizontal line at y = 0."""
    lo, hi = y_range
    if not hi > lo:
        raise ValueError(f"y_range must have hi > lo, got {y_range}")

    def fy(v: float) -> float:
        return (v - lo) / (hi - lo)

    ticks = [(k / 4, f"{lo + (hi - lo) * k / 4:g}") for k in range(5)]
    parts = _frame(title, x_label, y_label, ticks)
    if zero_line and lo < 0 < hi:
        y0 = _y(fy(0.0))
        parts.append(
            f'<line x1="{_LEFT}" y1="{y0:.1f}" x2="{_LEFT + _PW}" y2="{y0:.1f}" class="zero"/>'
        )
    for x, y in zip(xs, ys, strict=True):
        parts.append(
            f'<circle cx="{_x(x):.1f}" cy="{_y(fy(y)):.1f}" r="3" fill="{color}" '
            'fill-opacity="0.6"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
