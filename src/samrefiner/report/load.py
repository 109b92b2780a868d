"""What a report shows, gathered from a ``bench`` result or a ``refine`` output folder.

Both sources are turned into the same :class:`ReportData`: one :class:`Card` per object
(masks as compressed RLE, scores, prompts) plus summary rows.

* A **bench run**: ``OUT/results.json`` written by ``samrefiner bench`` (or the file
  itself). Cards show one method (``method``; default ``all`` when present, else the
  first configuration); the summary covers every method.
* A **refine run**: a folder holding the ``<image>.samrefiner.json`` sidecars written by
  ``samrefiner refine`` (or one sidecar). There is no ground truth: cards show the coarse
  and refined masks, the predicted IoU and the IoU between coarse and refined mask.
* A **dataset run**: the ``--summary`` JSON of ``coco`` / ``instances`` / ``semantic`` /
  ``masks``: no cards, a table of every object status (``occluded``, ``unsafe_path``,
  ...) with its count.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.io import InputError, read_mask
from samrefiner.io.coco import encode_rle
from samrefiner.io.masks import as_box_array, box_masks, mask_iou
from samrefiner.io.schema import SchemaError
from samrefiner.io.sidecar import SIDECAR_SUFFIX, RefineSidecar, SidecarMask
from samrefiner.measure.results import BenchResults, MethodObject


@dataclass
class Card:
    """One object of the gallery.

    Attributes:
        key: Image name. object_id: Object id within the image.
        image_path: Image file. height, width: Its size.
        coarse, refined, gt: Compressed RLE masks (``gt`` None without ground truth).
        pred_iou: SAM's predicted IoU (None for baselines / empty masks).
        coarse_iou, refined_iou: IoU with the ground truth, or None without it.
        change_iou: IoU between coarse and refined mask (how much refinement moved it).
        status, iterations: From the refiner (None / 0 for baselines).
        prompts: ``{"points", "point_labels", "box", "box_expanded"}`` or None.
    """

    key: str
    object_id: Any
    image_path: Path
    height: int
    width: int
    coarse: dict[str, Any]
    refined: dict[str, Any]
    gt: dict[str, Any] | None = None
    pred_iou: float | None = None
    coarse_iou: float | None = None
    refined_iou: float | None = None
    change_iou: float | None = None
    status: str | None = None
    iterations: int = 0
    prompts: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")

    @property
    def gain(self) -> float | None:
        """Refined minus coarse IoU with the ground truth (None without it)."""
        if self.coarse_iou is None or self.refined_iou is None:
            return None
        return self.refined_iou - self.coarse_iou

    @property
    def box_grew(self) -> bool:
        """True when the elastic box grew at least one side."""
        return bool(self.prompts and self.prompts.get("box_expanded"))


@dataclass
class ReportData:
    """Everything a report page needs besides pixels.

    Attributes:
        kind: ``"bench"``, ``"refine"`` or ``"run"`` (a dataset run's ``--summary``
            file: a table of object statuses, no cards).
        title: Page title. source: The file or folder it was made from.
        method: Method whose cards are shown (bench), else None.
        cards: The gallery.
        summary_headers, summary_rows: The summary table.
        facts: ``(label, value)`` lines shown above the table.
    """

    kind: str
    title: str
    source: str
    method: str | None
    cards: list[Card]
    summary_headers: list[str] = field(default_factory=list)
    summary_rows: list[list[Any]] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("bench", "refine", "run"):
            raise ValueError(f"kind must be 'bench', 'refine' or 'run', got {self.kind!r}")

    @property
    def has_gt(self) -> bool:
        """True when the cards carry ground truth."""
        return any(c.gt is not None for c in self.cards)


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read JSON: {exc}") from exc


def load_report_data(source: str | os.PathLike[str], method: str | None = None) -> ReportData:
    """Load a bench result or refine sidecars (see the module docstring).

    Raises:
        InputError: naming the file when nothing usable is found.
    """
    path = Path(source)
    if path.is_dir() and (path / "results.json").is_file():
        path = path / "results.json"
    if path.is_file() and not path.name.endswith(SIDECAR_SUFFIX):
        data = _read_json(path)
        try:
            if isinstance(data, dict) and data.get("kind") == "summary":
                return _from_run_summary(path, data)
            results = BenchResults.from_json(data)
        except SchemaError as exc:
            raise InputError(f"{path}: {exc}") from exc
        return _from_bench(path, results, method)
    if path.is_file():
        return _from_sidecars(path, [path])
    if path.is_dir():
        sidecars = sorted(path.glob(f"*{SIDECAR_SUFFIX}"))
        if sidecars:
            return _from_sidecars(path, sidecars)
    raise InputError(
        f"{path}: expected a bench output (results.json) or a refine output folder "
        f"(*{SIDECAR_SUFFIX} sidecars)"
    )


def _from_bench(path: Path, data: BenchResults, method: str | None) -> ReportData:
    from samrefiner.measure.summary import config_changes

    methods = [m.name for m in data.methods]
    configs = data.configs
    if method is None:
        method = "all" if "all" in configs else (configs or methods or [None])[0]
    if method not in methods:
        raise InputError(f"{path}: no method {method!r}; it has {', '.join(methods)}")
    records = {(r.item, r.object): r for r in data.objects[method]}
    cards = []
    for img in data.images:
        for obj in img.objects:
            rec = records.get((img.key, obj.id))
            if rec is None or rec.mask is None or obj.coarse is None:
                raise InputError(f"{path}: masks were not stored (bench --no-masks)")
            cards.append(
                Card(
                    key=img.key,
                    object_id=obj.id,
                    image_path=Path(img.image),
                    height=img.height,
                    width=img.width,
                    coarse=obj.coarse,
                    refined=rec.mask,
                    gt=obj.gt,
                    coarse_iou=obj.coarse_scores.iou,
                    refined_iou=rec.scores.iou,
                    change_iou=_rle_iou(obj.coarse, rec.mask),
                    **outcome_fields(rec),
                )
            )
    headers = ["method", "objects", "mIoU", "IoU ΣI/ΣU", "mBIoU", "mBA", "s/img", "changes"]
    rows = []
    for m in data.methods:
        summary = data.summary[m.name]
        q = summary.quality["all"]
        changes = ", ".join(f"{k}={v}" for k, v in config_changes(m.config).items())
        label = m.name + (f" (= {m.same_as})" if m.same_as else "")
        rows.append(
            [
                label,
                q.count,
                q.mean_iou,
                q.total_iou,
                q.mean_boundary_iou,
                q.mean_mba,
                summary.cost.total_s_per_image,
                changes or m.description,
            ]
        )
    counts = data.counts
    facts = [
        ("dataset", str(data.dataset or "?")),
        ("images / objects", f"{counts.get('images', 0)} / {counts.get('objects', 0)}"),
        ("coarse masks", data.coarse_source),
        ("model", f"{data.model or '–'} on {data.device or '–'}"),
        ("cards show", method),
    ]
    if data.random_weights:
        facts.append(("warning", "random weights: quality figures are meaningless"))
    return ReportData(
        "bench", f"samrefiner bench — {method}", str(path), method, cards, headers, rows, facts
    )


def _from_run_summary(path: Path, data: dict[str, Any]) -> ReportData:
    """A dataset run's ``--summary`` file: no cards, one row per object status."""
    # The summary's schema and the statuses are the runner's (read, never run, here).
    from samrefiner.runner.journal.records import RunSummary
    from samrefiner.runner.journal.status import KEPT_COARSE, is_bad_input, is_lost, is_refined

    summary = RunSummary.from_json(data)
    headers = ["status", "objects", "kind"]
    rows: list[list[Any]] = []
    gate = ", ".join(f"{r} {n}" for r, n in sorted(summary.kept_coarse_by_reason.items()))
    for status, count in sorted(summary.masks_by_status.items()):
        if is_lost(status):
            what = "refined, lost to neighbours"
        elif status == KEPT_COARSE:
            what = "refined, coarse kept by the quality gate" + (f" ({gate})" if gate else "")
        elif is_refined(status):
            what = "refined"
        elif is_bad_input(status):
            what = "bad input, passed through"
        else:
            what = "passed through by policy"
        rows.append([status, count, what])
    skipped = ", ".join(f"{s} {n}" for s, n in sorted(summary.images_skipped.items()))
    facts = [
        ("images", f"{summary.images_processed} processed of {summary.images_total}"),
        ("images skipped", skipped or "none"),
        ("masks", f"{summary.masks_refined} refined of {summary.masks_total}"),
        ("lost to neighbours (occluded)", str(summary.lost)),
        ("bad inputs", str(summary.bad_input)),
    ]
    if summary.kept_coarse_by_reason:
        facts.append(("kept coarse by the quality gate", gate))
    if summary.masks_zoomed:
        facts.append(("refined on a crop (crop-zoom)", str(summary.masks_zoomed)))
    if summary.masks_from_box:
        facts.append(("refined from a box", str(summary.masks_from_box)))
    facts.extend(_completion_facts(data.get("completion")))
    return ReportData("run", "samrefiner dataset run", str(path), None, [], headers, rows, facts)


def _completion_facts(completion: Any) -> list[tuple[str, str]]:
    """The ``completion`` entry ``coco --complete`` / ``--name-classes`` adds to the
    summary: objects added, unsupported and named, per category."""
    if not isinstance(completion, dict):
        return []
    facts = []
    for key, what in (
        ("added", "objects added (--complete)"),
        ("unsupported", "objects unsupported (--complete)"),
        ("named", "objects named (--name-classes)"),
    ):
        counts = completion.get(key)
        if isinstance(counts, dict) and (counts or key != "named"):
            per = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            facts.append((what, f"{sum(counts.values())}" + (f" ({per})" if per else "")))
    return facts


def _rle_iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    from pycocotools import mask as mask_utils

    def raw(r: dict[str, Any]) -> dict[str, Any]:
        return {"size": r["size"], "counts": str(r["counts"]).encode("ascii")}

    return float(mask_utils.iou([raw(a)], [raw(b)], [0])[0][0])


def _resolve(value: str, sidecar: Path) -> Path:
    """A path from a sidecar: as written (relative to where refine ran), else beside it."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    beside = sidecar.parent / p.name
    return beside if beside.exists() else p


def status_label(status: str | None, gate_reason: str | None) -> str | None:
    """A status, with the quality gate's reason for ``kept_coarse`` masks."""
    return f"{status} ({gate_reason})" if status and gate_reason else status


def outcome_fields(record: MethodObject | SidecarMask) -> dict[str, Any]:
    """The :class:`Card` fields of an object's refiner outcome, from a bench record or a
    refine sidecar's: predicted IoU, status (with the gate's reason), iterations, prompts."""
    return {
        "pred_iou": record.score,
        "status": status_label(record.status, record.gate_reason),
        "iterations": record.iterations,
        "prompts": record.prompts,
    }


def _coarse_of(record: SidecarMask, sidecar: Path, size: tuple[int, int]) -> np.ndarray:
    """The coarse mask of a sidecar record: its input file, or its filled ``box``."""
    if record.box is not None:
        return box_masks(as_box_array(record.box, size), size)[0]
    return read_mask(_resolve(record.input, sidecar))


def _object_name(record: SidecarMask, k: int) -> Any:
    """A sidecar record's object name: its input file's stem (output's for a box), or k."""
    if record.box is not None and record.output:
        return Path(record.output).stem
    return Path(record.input).stem if record.input else k


def _from_sidecars(source: Path, sidecars: list[Path]) -> ReportData:
    from PIL import Image

    cards: list[Card] = []
    statuses: dict[str, int] = {}
    for sc in sidecars:
        try:
            data = RefineSidecar.from_json(_read_json(sc))
        except SchemaError as exc:
            raise InputError(f"{sc}: {exc}") from exc
        image_path = _resolve(data.image, sc)
        if not image_path.is_file():
            raise InputError(f"{sc}: image {data.image} not found")
        with Image.open(image_path) as img:
            width, height = img.size
        for k, rec in enumerate(data.masks):
            coarse = _coarse_of(rec, sc, (height, width))
            refined = read_mask(_resolve(rec.output, sc))
            outcome = outcome_fields(rec)
            label = outcome["status"] or "?"
            statuses[label] = statuses.get(label, 0) + 1
            cards.append(
                Card(
                    key=image_path.stem,
                    object_id=_object_name(rec, k),
                    image_path=image_path,
                    height=height,
                    width=width,
                    coarse=encode_rle(coarse),
                    refined=encode_rle(refined),
                    change_iou=mask_iou(coarse, refined),
                    **outcome,
                )
            )
    preds = [c.pred_iou for c in cards if c.pred_iou is not None]
    changes = [c.change_iou for c in cards if c.change_iou is not None]
    headers = ["masks", "mean predicted IoU", "mean IoU coarse vs refined", "statuses"]
    rows = [
        [
            len(cards),
            float(np.mean(preds)) if preds else None,
            float(np.mean(changes)) if changes else None,
            ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
        ]
    ]
    facts = [
        ("refine run", str(source)),
        ("images", str(len(sidecars))),
        ("ground truth", "none: coarse vs refined and predicted IoU only"),
    ]
    return ReportData("refine", "samrefiner refine", str(source), None, cards, headers, rows, facts)
