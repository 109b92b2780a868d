"""Filmstrip pages of video label folders: a sequence's frames, one strip per output.

For every sequence of a frames folder (``FRAMES/<sequence>/<frame>.jpg``, or one
sequence's frames), a row of thumbnails per output folder (coarse labels, per-frame
refined, video refined, ground truth: ``<folder>/<sequence>/<frame>.png`` label maps),
each frame with that output's objects filled in their DAVIS palette colours and outlined.
Frames are sampled evenly through the sequence. With ground truth, each thumbnail's
caption gives the frame's mean region J over its objects and the page opens with the
J / F / J&F / stability table of :mod:`samrefiner.measure.video`. A frame an output has no
label map for (a sparse input) is shown bare and captioned ``no label``.

The report folder holds ``index.html``, ``report.css`` and ``filmstrip/*.jpg``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from string import Template

import cv2
import numpy as np
from PIL import Image

from samrefiner.io import InputError, atomic_write_bytes, read_image
from samrefiner.io.binary_folder import IMAGE_EXTENSIONS
from samrefiner.measure.dataset import read_mask_file
from samrefiner.measure.sequences import davis_palette
from samrefiner.measure.tables import fmt
from samrefiner.measure.video import evaluate_video, in_frame_order, region_j

#: The folder of the thumbnails, inside the report folder.
STRIPS = "filmstrip"
PAGE = "filmstrip.html"
STYLE = "report.css"


def filmstrip_files(out_dir: str | os.PathLike[str]) -> tuple[list[Path], Path]:
    """What :func:`write_filmstrip_report` writes: ``(files, the thumbnails folder)``."""
    out = Path(out_dir)
    return [out / "index.html", out / STYLE], out / STRIPS


@dataclass(frozen=True)
class StripSource:
    """One output shown as a strip.

    Attributes:
        label: Its name on the page (``coarse``, ``refined``, ``video``, ``ground truth``).
        folder: Its label folder (``<sequence>/<frame>.png``, or one sequence's maps).
    """

    label: str
    folder: Path

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("a strip needs a label")


def list_frames(frames_dir: str | os.PathLike[str]) -> dict[str, dict[str, Path]]:
    """``{sequence: {frame: image}}``: sub-folders of images, or images directly (one
    sequence named after the folder). Raises InputError naming the folder when empty."""
    root = Path(frames_dir)
    if not root.is_dir():
        raise InputError(f"{root}: frames folder not found")

    def images(folder: Path) -> dict[str, Path]:
        found = [
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        return in_frame_order(found)

    own = images(root)
    if own:
        return {root.name: own}
    seqs = {sub.name: images(sub) for sub in sorted(p for p in root.iterdir() if p.is_dir())}
    seqs = {k: v for k, v in seqs.items() if v}
    if not seqs:
        raise InputError(f"{root}: no frames (expected <sequence>/<frame>.jpg or <frame>.jpg)")
    return seqs


def sample_frames(count: int, most: int) -> list[int]:
    """Up to ``most`` indices spread evenly over ``range(count)``, first and last included."""
    if count <= most:
        return list(range(count))
    if most == 1:
        return [0]
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def overlay(image: np.ndarray, ids: np.ndarray | None, height: int) -> np.ndarray:
    """``h x w x 3`` uint8 thumbnail of ``height`` rows: the frame with each object of
    ``ids`` (``H x W``, 0 = background) filled at 45 % in its palette colour and outlined."""
    h, w = image.shape[:2]
    out_w = max(1, round(w * height / h))
    thumb = cv2.resize(image, (out_w, height), interpolation=cv2.INTER_AREA)
    if ids is None:
        return thumb
    small = cv2.resize(ids.astype(np.int32), (out_w, height), interpolation=cv2.INTER_NEAREST)
    palette = np.array(davis_palette(), dtype=np.float64).reshape(256, 3)
    canvas = thumb.astype(np.float64)
    for oid in (int(v) for v in np.unique(small) if v != 0):
        color = palette[oid % 256]
        mask = small == oid
        canvas[mask] = 0.55 * canvas[mask] + 0.45 * color
    out = np.ascontiguousarray(canvas.round().astype(np.uint8))
    for oid in (int(v) for v in np.unique(small) if v != 0):
        contours, _ = cv2.findContours(
            (small == oid).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE
        )
        color = tuple(int(c) for c in palette[oid % 256])
        cv2.drawContours(out, contours, -1, color, 1, cv2.LINE_AA)
    return out


def frame_j(pred: np.ndarray | None, gt: np.ndarray, ignore: int | None = 255) -> float | None:
    """Mean region J over the objects of one frame's ground truth and prediction (None
    when neither has an object); a missing prediction counts as empty."""
    skip = {0} | ({ignore} if ignore is not None else set())
    pred = np.zeros_like(gt) if pred is None else pred
    ids = ({int(v) for v in np.unique(gt)} | {int(v) for v in np.unique(pred)}) - skip
    void = None if ignore is None else gt == ignore
    scores = [region_j(pred == oid, gt == oid, void) for oid in sorted(ids)]
    return float(np.mean(scores)) if scores else None


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _label_path(folder: Path, sequence: str, stem: str, single: bool) -> Path:
    return (folder if single else folder / sequence) / f"{stem}.png"


def _summary_table(report_rows: list[list[object]]) -> str:
    headers = ["sequence", "output", "J", "F", "J&F", "stability"]
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(fmt(v))}</td>" for v in row) + "</tr>" for row in report_rows
    )
    return (
        '<section id="summary"><h2>Scores</h2><table class="summary">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )


def write_filmstrip_report(
    frames_dir: str | os.PathLike[str],
    sources: Sequence[StripSource],
    out_dir: str | os.PathLike[str],
    gt: str | os.PathLike[str] | None = None,
    max_frames: int = 10,
    thumb_height: int = 96,
    ignore: int | None = 255,
    progress: bool = False,
) -> Path:
    """Write the filmstrip page of ``sources`` over the frames; returns ``index.html``.

    ``gt``: ground-truth label folder: shown as the first strip, scores per frame and
    the table (module docstring). Raises InputError for unreadable frames or maps.
    """
    from tqdm import tqdm

    if max_frames < 1 or thumb_height < 16:
        raise ValueError("max_frames must be >= 1 and thumb_height >= 16")
    labels = [s.label for s in sources]
    if not sources or len(set(labels)) != len(labels):
        raise ValueError(f"give at least one output, with distinct labels; got {labels}")
    out = Path(out_dir)
    seqs = list_frames(frames_dir)
    single = any(
        p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in Path(frames_dir).iterdir()
    )
    gt_dir = None if gt is None else Path(gt)
    rows = ([StripSource("ground truth", gt_dir)] if gt_dir is not None else []) + list(sources)
    sections = []
    n_thumbs = 0
    for name, frames in tqdm(seqs.items(), desc="filmstrip", disable=not progress):
        stems = list(frames)
        picked = [stems[i] for i in sample_frames(len(stems), max_frames)]
        images = {stem: read_image(frames[stem]) for stem in picked}
        gt_maps = {}
        if gt_dir is not None:
            for stem in picked:
                path = _label_path(gt_dir, name, stem, single)
                gt_maps[stem] = read_mask_file(path).ids if path.is_file() else None
        strips = []
        for r, row in enumerate(rows):
            figures = []
            for stem in picked:
                path = _label_path(row.folder, name, stem, single)
                ids = read_mask_file(path).ids if path.is_file() else None
                image = images[stem]
                if ids is not None and ids.shape != image.shape[:2]:
                    raise InputError(
                        f"{path}: size {ids.shape[1]}x{ids.shape[0]} differs from its frame's "
                        f"{image.shape[1]}x{image.shape[0]}"
                    )
                thumb = overlay(image, ids, thumb_height)
                src = f"{STRIPS}/{n_thumbs:06d}.jpg"
                n_thumbs += 1
                atomic_write_bytes(out / src, _jpeg(thumb))
                caption = escape(stem)
                g = gt_maps.get(stem)
                if ids is None:
                    caption += ' · <span class="nolabel">no label</span>'
                elif g is not None and r > 0:
                    caption += f" · J {fmt(frame_j(ids, g, ignore), 3)}"
                figures.append(
                    f'<figure data-frame="{escape(stem)}" data-output="{escape(row.label)}">'
                    f'<img src="{src}" width="{thumb.shape[1]}" height="{thumb.shape[0]}" '
                    f'alt="{escape(f"{name} {stem} {row.label}")}">'
                    f"<figcaption>{caption}</figcaption></figure>"
                )
            strips.append(
                f'<div class="row-label">{escape(row.label)}</div>'
                f'<div class="strip">{"".join(figures)}</div>'
            )
        shown = f"{len(picked)} of {len(stems)} frames"
        sections.append(
            f'<section class="sequence" data-sequence="{escape(name)}">'
            f"<h2>{escape(name)} <small>({shown})</small></h2>{''.join(strips)}</section>"
        )
    summary = ""
    if gt_dir is not None:
        report = evaluate_video(
            [(s.label, s.folder) for s in sources], gt_dir, ignore=ignore, progress=progress
        )
        # A row per sequence and output, the outputs of a sequence together.
        by_sequence = zip(*(p.sequences for p in report.predictions), strict=True)
        table: list[list[object]] = [
            [seq.name, pred.label, seq.j, seq.f, seq.jf, seq.stability]
            for seqs in by_sequence
            for pred, seq in zip(report.predictions, seqs, strict=True)
        ]
        table += [
            ["all (mean over objects)", p.label, p.j, p.f, p.jf, p.stability]
            for p in report.predictions
        ]
        summary = _summary_table(table)
    facts = [
        ("frames", str(frames_dir)),
        *((s.label, str(s.folder)) for s in sources),
        *((("ground truth", str(gt_dir)),) if gt_dir is not None else ()),
    ]
    page = Template(_asset(PAGE)).substitute(
        title=escape(f"Filmstrip: {', '.join(labels)}"),
        facts="".join(f"<li><b>{escape(k)}:</b> {escape(v)}</li>" for k, v in facts),
        summary=summary,
        sequences="\n".join(sections),
        source=escape(str(frames_dir)),
    )
    index, style = filmstrip_files(out)[0]
    atomic_write_bytes(style, _asset(STYLE).encode("utf-8"))
    atomic_write_bytes(index, page.encode("utf-8"))
    return index


def _asset(name: str) -> str:
    return resources.files("samrefiner.report").joinpath(name).read_text(encoding="utf-8")
