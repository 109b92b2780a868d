"""Write a report folder: ``index.html``, ``report.css``, ``report.js`` and ``cards/*.jpg``.

The page needs no server, network or CDN: styles, script and thumbnails sit beside
``index.html``; the plots are inline SVG. Sorting and filtering run in the page.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
from PIL import Image

from samrefiner.io import atomic_write_bytes, read_image
from samrefiner.io.coco import decode_segmentation
from samrefiner.measure.tables import fmt
from samrefiner.report.load import Card, ReportData
from samrefiner.report.plots import histogram_svg, scatter_svg
from samrefiner.report.render import COLORS, render_card

ASSETS = ("report.css", "report.js")
#: The folder of the card images, inside the report folder.
CARDS = "cards"


def report_files(out_dir: str | os.PathLike[str]) -> tuple[list[Path], Path]:
    """What :func:`write_report` writes into ``out_dir``: ``(files, the cards folder)``."""
    out = Path(out_dir)
    return [out / "index.html", *(out / name for name in ASSETS)], out / CARDS


def _asset(name: str) -> str:
    return resources.files("samrefiner.report").joinpath(name).read_text(encoding="utf-8")


def _hex(name: str) -> str:
    return "#{:02x}{:02x}{:02x}".format(*COLORS[name])


def _attr(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _dd(label: str, value: Any, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<dt>{escape(label)}</dt><dd{cls}>{escape(fmt(value, 3))}</dd>"


def card_html(card: Card, index: int, src: str, size: tuple[int, int]) -> str:
    """One ``<figure class="card">`` with its data attributes (used to sort and filter)."""
    gain = card.gain
    attrs = {
        "data-key": card.key,
        "data-object": str(card.object_id),
        "data-gain": _attr(gain),
        "data-pred": _attr(card.pred_iou),
        "data-coarse": _attr(card.coarse_iou),
        "data-refined": _attr(card.refined_iou),
        "data-change": _attr(card.change_iou),
        "data-status": card.status or "",
        "data-grew": "1" if card.box_grew else "0",
        "data-order": str(index),
    }
    attr_text = " ".join(f'{k}="{escape(v)}"' for k, v in attrs.items())
    rows = []
    if card.coarse_iou is not None:
        rows.append(_dd("coarse IoU", card.coarse_iou))
        rows.append(_dd("refined IoU", card.refined_iou))
        css = "" if gain is None or gain == 0 else ("pos" if gain > 0 else "neg")
        rows.append(
            f'<dt>gain</dt><dd class="{css}">{"–" if gain is None else f"{gain:+.3f}"}</dd>'
        )
    rows.append(_dd("predicted IoU", card.pred_iou))
    rows.append(_dd("IoU coarse↔refined", card.change_iou))
    if card.status:
        rows.append(_dd("status", f"{card.status} ({card.iterations} it.)"))
    badge = '<span class="badge grew">box grew</span>' if card.box_grew else ""
    title = f"{card.key} · {card.object_id}"
    return (
        f'<figure class="card" {attr_text}>'
        f'<img src="{escape(src)}" alt="{escape(title)}" width="{size[0]}" height="{size[1]}">'
        f'<figcaption><div class="card-title">{escape(title)}</div>'
        f"<dl>{''.join(rows)}</dl>{badge}</figcaption></figure>"
    )


def _decode(rle: dict[str, Any] | None, h: int, w: int) -> np.ndarray | None:
    return None if rle is None else decode_segmentation(rle, h, w)[0]


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _plots(data: ReportData) -> str:
    colors = {"coarse": _hex("coarse"), "refined": _hex("refined"), "predicted IoU": "#0074d9"}
    cards = data.cards
    if data.has_gt:
        hist = histogram_svg(
            {"coarse": [c.coarse_iou for c in cards], "refined": [c.refined_iou for c in cards]},
            colors,
            "IoU with ground truth, before vs after",
            "IoU",
        )
        gains = [c.gain for c in cards]
        bound = max(0.25, float(np.ceil(max((abs(g) for g in gains), default=0.0) * 4) / 4))
        scatter = scatter_svg(
            [c.coarse_iou for c in cards],
            gains,
            "IoU gain against coarse IoU",
            "coarse IoU",
            "gain (refined − coarse IoU)",
            (-bound, bound),
            zero_line=True,
        )
        return hist + scatter
    preds = [c for c in cards if c.pred_iou is not None]
    hist = histogram_svg(
        {"predicted IoU": [c.pred_iou for c in preds], "coarse": [c.change_iou for c in cards]},
        {"predicted IoU": "#0074d9", "coarse": _hex("coarse")},
        "Predicted IoU, and IoU of coarse vs refined",
        "IoU",
    )
    scatter = scatter_svg(
        [c.change_iou for c in preds],
        [c.pred_iou for c in preds],
        "Predicted IoU against coarse↔refined IoU",
        "IoU coarse↔refined",
        "predicted IoU",
        (0.0, 1.0),
    )
    return hist + scatter


def _summary(data: ReportData) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in data.summary_headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(fmt(v))}</td>" for v in row) + "</tr>"
        for row in data.summary_rows
    )
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _legend(has_gt: bool) -> str:
    items = [("coarse", "coarse mask"), ("refined", "refined mask")]
    if has_gt:
        items.insert(0, ("gt", "ground truth"))
    items += [("box", "box prompt"), ("grew", "box that grew")]
    lines = [f'<span><i class="swatch sw-{k}"></i>{escape(t)}</span>' for k, t in items]
    lines.append('<span><i class="swatch dot sw-gt"></i>positive point</span>')
    lines.append('<span><i class="swatch dot sw-neg"></i>negative point</span>')
    return "".join(lines)


def _sort_options(has_gt: bool) -> str:
    options = [("pred:desc", "predicted IoU, high first"), ("pred:asc", "predicted IoU, low first")]
    if has_gt:
        options = [
            ("gain:desc", "IoU gain, high first"),
            ("gain:asc", "IoU gain, low first"),
            *options,
            ("refined:asc", "refined IoU, low first"),
            ("coarse:asc", "coarse IoU, low first"),
        ]
    else:
        options.append(("change:asc", "coarse↔refined IoU, low first"))
    options.append(("name:asc", "name"))
    return "".join(f'<option value="{v}">{escape(t)}</option>' for v, t in options)


def write_report(
    data: ReportData,
    out_dir: str | os.PathLike[str],
    max_side: int = 320,
    progress: bool = False,
) -> Path:
    """Render ``data`` into ``out_dir``; returns the path of ``index.html``.

    Each image is read once; a missing image raises :class:`samrefiner.io.InputError`.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    by_image: dict[Path, list[int]] = defaultdict(list)
    for k, card in enumerate(data.cards):
        by_image[card.image_path].append(k)
    html_cards: list[str] = [""] * len(data.cards)
    for image_path, indices in tqdm(by_image.items(), desc="report", disable=not progress):
        image = read_image(image_path)
        for k in indices:
            c = data.cards[k]
            h, w = c.height, c.width
            thumb = render_card(
                image,
                _decode(c.coarse, h, w),
                _decode(c.refined, h, w),
                _decode(c.gt, h, w),
                c.prompts,
                max_side=max_side,
            )
            name = f"{CARDS}/{k:05d}.jpg"
            atomic_write_bytes(out / name, _jpeg(thumb))
            html_cards[k] = card_html(c, k, name, (thumb.shape[1], thumb.shape[0]))
    statuses = sorted({c.status for c in data.cards if c.status})
    gain_filter = ""
    if data.has_gt:
        gain_filter = (
            '<label>IoU gain from <input id="gain-min" type="number" step="0.05" value=""></label>'
            '<label>to <input id="gain-max" type="number" step="0.05" value=""></label>'
        )
    page = Template(_asset("report.html")).substitute(
        title=escape(data.title),
        kind=data.kind,
        has_gt="1" if data.has_gt else "0",
        facts="".join(f"<li><b>{escape(k)}:</b> {escape(v)}</li>" for k, v in data.facts),
        card_count=str(len(data.cards)),
        summary=_summary(data),
        plots=_plots(data),
        legend=_legend(data.has_gt),
        sort_options=_sort_options(data.has_gt),
        gain_filter=gain_filter,
        status_options="".join(
            f'<option value="{escape(s)}">{escape(s)}</option>' for s in statuses
        ),
        cards="\n".join(html_cards),
        source=escape(data.source),
    )
    index, *assets = report_files(out)[0]
    for path in assets:
        atomic_write_bytes(path, _asset(path.name).encode("utf-8"))
    atomic_write_bytes(index, page.encode("utf-8"))
    return index
