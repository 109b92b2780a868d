"""Markdown summary of a benchmark result (:class:`~samrefiner.measure.results.BenchResults`)."""

from __future__ import annotations

from typing import Any

from samrefiner.config import RefineConfig
from samrefiner.measure.metrics import SIZE_BUCKETS
from samrefiner.measure.results import BenchResults
from samrefiner.measure.tables import markdown_table

_COST_STAGES = ("encoder", "excavation", "decoder", "postprocess", "baseline")


def _delta(value: float | None, ref: float | None) -> str:
    if value is None or ref is None:
        return "–"
    return f"{value - ref:+.4f}"


def quality_cost_table(result: BenchResults) -> str:
    """One row per method: quality (vs the coarse masks) and seconds per image by stage."""
    coarse_miou = _coarse_mean_iou(result)
    headers = [
        "method",
        "objects",
        "mIoU",
        "ΔmIoU",
        "IoU ΣI/ΣU",
        "mBIoU",
        "mBA",
        *(f"{s} s/img" for s in _COST_STAGES),
        "total s/img",
        "masks/s",
    ]
    rows = []
    for method in result.methods:
        summary = result.summary[method.name]
        q, c = summary.quality["all"], summary.cost
        label = method.name if not method.same_as else f"{method.name} (= {method.same_as})"
        rows.append(
            [
                label,
                q.count,
                q.mean_iou,
                _delta(q.mean_iou, coarse_miou),
                q.total_iou,
                q.mean_boundary_iou,
                q.mean_mba,
                *(c.stages_s_per_image.get(s) for s in _COST_STAGES),
                c.total_s_per_image,
                c.masks_per_s,
            ]
        )
    return markdown_table(headers, rows)


def _coarse_mean_iou(result: BenchResults) -> float | None:
    ious = [o.coarse_scores.iou for img in result.images for o in img.objects]
    return sum(ious) / len(ious) if ious else None


def size_table(result: BenchResults) -> str:
    """Mean IoU per COCO size bucket and method, with the coarse masks' as first row."""
    headers = ["method", *(f"{b} mIoU (n)" for b in SIZE_BUCKETS)]
    coarse: dict[str, list[float]] = {b: [] for b in SIZE_BUCKETS}
    for img in result.images:
        for obj in img.objects:
            coarse[obj.coarse_scores.size].append(obj.coarse_scores.iou)
    rows = [
        ["coarse input", *(_cell(sum(v) / len(v) if v else None, len(v)) for v in coarse.values())]
    ]
    for method in result.methods:
        groups = result.summary[method.name].quality
        rows.append(
            [method.name, *(_cell(groups[b].mean_iou, groups[b].count) for b in SIZE_BUCKETS)]
        )
    return markdown_table(headers, rows)


def _cell(value: float | None, n: int) -> str:
    return "–" if value is None else f"{value:.4f} ({n})"


def gate_table(result: BenchResults) -> str | None:
    """Quality-gate rows: masks kept and, against the ungated twin, precision and recall.

    None when no method has a gate score.
    """
    headers = ["method", "against", "kept", "made worse", "kept & worse", "precision", "recall"]
    rows = []
    for method in result.methods:
        gate = result.summary[method.name].gate
        if gate is None:
            continue
        rows.append(
            [
                method.name,
                gate.against,
                gate.kept,
                gate.worse,
                gate.kept_worse,
                gate.precision,
                gate.recall,
            ]
        )
    return markdown_table(headers, rows) if rows else None


def config_changes(config: dict[str, Any] | None) -> dict[str, Any]:
    """Fields of a configuration dict that differ from the reference defaults."""
    if config is None:
        return {}
    defaults = RefineConfig().to_dict()
    return {k: v for k, v in config.items() if defaults.get(k) != v}


def bench_markdown(result: BenchResults) -> str:
    """The whole Markdown report: context, the two tables, the configurations."""
    counts = result.counts
    rss = result.peak_rss_mb
    lines = [
        "# samrefiner bench",
        "",
        f"- dataset: `{result.dataset or '?'}` — {counts.get('images', 0)} images, "
        f"{counts.get('objects', 0)} objects",
        f"- coarse masks: {result.coarse_source}",
        f"- model: `{result.model or '–'}` on {result.device or '–'}",
        f"- peak RSS: {'–' if rss is None else f'{rss:.0f} MiB'}; wall time {result.wall_s:.1f} s",
        "- mIoU / mBIoU / mBA: means over objects; ΣI/ΣU: total intersection / total union; "
        "ΔmIoU: against the coarse masks. The encoder runs once per image and its time is "
        "counted in every configuration's row.",
    ]
    if result.random_weights:
        lines.append("- **random weights: quality figures are meaningless, costs are real**")
    lines += ["", "## Quality and cost", "", quality_cost_table(result)]
    lines += ["", "## Mean IoU by object size (COCO)", "", size_table(result)]
    gates = gate_table(result)
    if gates is not None:
        lines += [
            "",
            "## Quality gate",
            "",
            "Kept: masks the gate kept coarse; made worse: masks whose refinement without "
            "the gate (the 'against' row) scored a lower IoU than the coarse mask. "
            "Precision: kept & worse / kept; recall: kept & worse / made worse.",
            "",
            gates,
        ]
    lines += ["", "## Methods", ""]
    for method in result.methods:
        detail = ", ".join(f"{k}={v}" for k, v in config_changes(method.config).items())
        if method.input != "masks":
            detail = ", ".join(filter(None, [f"input={method.input}", detail]))
        detail = f" — {detail}" if detail else ""
        lines.append(f"- **{method.name}**: {method.description}{detail}")
    lines.append("")
    lines.append("Fields not listed keep the reference defaults (`RefineConfig()`).")
    return "\n".join(lines) + "\n"
