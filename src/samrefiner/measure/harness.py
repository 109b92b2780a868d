"""Run refiner configurations and baselines over a dataset, measuring quality and cost.

Per image: read the image and its ground truth, take the coarse masks (given, or
synthesized from the ground truth exactly as ``make-coarse`` would), encode the image
**once**, then run every distinct configuration on that embedding and every baseline.
Everything is scored against the ground truth with :mod:`samrefiner.measure.metrics`.

The result is a :class:`~samrefiner.measure.results.BenchResults` (the schema of
``results.json``, which ``samrefiner report`` reads back).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.gate import score_gate
from samrefiner.io import InputError, read_image
from samrefiner.io.coco import encode_rle
from samrefiner.io.masks import mask_bbox
from samrefiner.measure.baselines import grabcut_refine
from samrefiner.measure.coarse import coarsen_label_map
from samrefiner.measure.configs import (
    BOX_JITTER,
    INPUT_JITTERED_BOXES,
    INPUT_MASKS,
    Method,
    MethodPlan,
    ungated,
)
from samrefiner.measure.dataset import DEFAULT_IGNORE, Item, MaskFile, read_mask_file
from samrefiner.measure.metrics import aggregate, score_object
from samrefiner.measure.perturb import CoarseSpec
from samrefiner.measure.results import (
    BenchImage,
    BenchResults,
    Cost,
    GateSummary,
    GroundTruthObject,
    MethodInfo,
    MethodObject,
    MethodSummary,
    Quality,
)
from samrefiner.refiner import STAGES, Refiner
from samrefiner.types import STATUS_KEPT_COARSE, RefineResult


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def load_coarse(
    item: Item,
    gt: MaskFile,
    coarse_dir: Path | None,
    seed: int,
    spec: CoarseSpec | None,
    ignore: int | None,
) -> np.ndarray:
    """``N x H x W`` coarse masks, in the order of the ground-truth objects.

    From ``coarse_dir / (item.key + ".png")`` (the layout ``make-coarse`` writes for the
    ground-truth mask folder; an object missing there is an empty mask), else
    synthesized with key ``item.key``, as ``make-coarse`` does.
    """
    ids, _ = gt.objects(ignore)
    if coarse_dir is None:
        painted, _ = coarsen_label_map(gt, seed, item.key, spec, (), ignore)
    else:
        path = coarse_dir / f"{item.key}.png"
        coarse = read_mask_file(path)
        if coarse.shape != gt.shape:
            raise InputError(f"{path}: size differs from the ground truth {item.mask}")
        painted = coarse.ids
    return painted[None] == np.asarray(ids, dtype=np.int64).reshape(-1, 1, 1)


#: Per-object fields of a baseline, which has no prompts or predicted IoU.
NO_PROMPTS: dict[str, Any] = {"score": None, "status": None, "iterations": 0, "prompts": None}


def _grabcut_all(image: np.ndarray, coarse: np.ndarray, iterations: int) -> np.ndarray:
    return np.stack([grabcut_refine(image, c, iterations) for c in coarse])


def _encode_synced(refiner: Refiner, image: np.ndarray) -> Any:
    """Encode and wait for the device: CUDA runs asynchronously, so without the wait
    the encoder's time would be charged to the first decoder call."""
    embedding = refiner.encode(image)
    device = getattr(refiner.model, "device", None)
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)
    return embedding


def box_inputs(coarse: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """``N x 4`` XYXY boxes of non-empty ``N x H x W`` masks: each tight box, its sides
    moved by up to ``jitter`` x its side length (uniform, from ``rng``; 0: the tight box)."""
    boxes = np.array([mask_bbox(c) for c in coarse], dtype=np.float64).reshape(-1, 4)
    if jitter > 0 and len(boxes):
        sides = (boxes[:, 2:] - boxes[:, :2] + 1)[:, [0, 1, 0, 1]]  # w, h, w, h
        boxes = boxes + rng.uniform(-jitter, jitter, boxes.shape) * sides
        low, high = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
        boxes = np.concatenate([low, high], axis=1)
    return boxes.astype(np.float32)


def _refine_input(
    refiner: Refiner,
    method: Method,
    image: np.ndarray,
    coarse: np.ndarray,
    embedding: Any,
    rng: np.random.Generator,
) -> RefineResult:
    """Refine the coarse masks, or (box rows) boxes made from them; empty masks stay empty."""
    if method.input == INPUT_MASKS:
        return refiner.refine(image, coarse, embedding=embedding)
    jitter = BOX_JITTER if method.input == INPUT_JITTERED_BOXES else 0.0
    from_box = np.array([c.any() for c in coarse], dtype=bool)
    boxes = np.full((len(coarse), 4), np.nan, dtype=np.float32)
    if from_box.any():
        boxes[from_box] = box_inputs(coarse[from_box], jitter, rng)
    return refiner.refine(image, coarse, boxes=boxes, from_box=from_box, embedding=embedding)


def _gate_scores(
    plan: MethodPlan, records: dict[str, list[MethodObject]], coarse_iou: list[float]
) -> dict[str, GateSummary]:
    """Gate precision / recall of each gated method that has its ungated twin in the plan."""
    out: dict[str, GateSummary] = {}
    computed = [m for m in plan.methods if m.config is not None and m.same_as is None]
    for method in computed:
        assert method.config is not None
        if not method.config.gates:
            continue
        twin_config = ungated(method.config)
        twin = next(
            (m for m in computed if m.config == twin_config and m.input == method.input), None
        )
        if twin is None:
            continue
        kept = [r.status == STATUS_KEPT_COARSE for r in records[method.name]]
        refined = [r.scores.iou for r in records[twin.name]]
        score = score_gate(np.array(kept, bool), np.array(coarse_iou), np.array(refined))
        out[method.name] = GateSummary(
            twin.name,
            score.kept,
            score.worse,
            score.kept_worse,
            score.total,
            score.precision,
            score.recall,
        )
    return out


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run_bench(
    items: Sequence[Item],
    plan: MethodPlan,
    model: Any = None,
    *,
    coarse_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    spec: CoarseSpec | None = None,
    ignore: int | None = DEFAULT_IGNORE,
    grabcut_iterations: int = 5,
    warmup: bool = True,
    keep_masks: bool = True,
    progress: bool = False,
    info: dict[str, Any] | None = None,
) -> BenchResults:
    """Benchmark ``plan`` over ``items``.

    Args:
        items: Dataset images with ground truth (:func:`samrefiner.measure.dataset.find_items`).
        plan: Methods to run (:func:`samrefiner.measure.configs.plan_methods`).
        model: Backend for the configurations (unused when there are none).
        coarse_dir: Folder of coarse masks named like the ground truth; None synthesizes.
        seed, spec: Synthesis settings (as ``make-coarse``).
        ignore: Id-map value that is neither object nor scored.
        grabcut_iterations: Iterations of the GrabCut baseline.
        warmup: Run the first image once untimed first (lazy initialisation, caches).
        keep_masks: Store every mask as compressed RLE (needed by ``report``).
        info: What ran: ``dataset``, ``model``, ``device``, ``random_weights`` (fields
            of :class:`BenchResults`).

    Returns:
        The results: each image with its objects (areas, coarse scores, RLE of ground
        truth and coarse mask), per method the per-object records (metrics, predicted
        IoU, status, prompts, RLE mask), its quality
        (:func:`samrefiner.measure.metrics.aggregate`) and cost (seconds per image by stage,
        masks per second).
    """
    from tqdm import tqdm

    configs = plan.distinct_configs()
    if configs and model is None:
        raise ValueError("configurations need a model")
    cdir = None if coarse_dir is None else Path(coarse_dir)
    if cdir is not None and not cdir.is_dir():
        raise InputError(f"{cdir}: coarse mask folder not found")
    refiners = {m.name: Refiner(model, m.config) for m in configs}
    computed = [m for m in plan.methods if m.same_as is None]
    records: dict[str, list[MethodObject]] = {m.name: [] for m in computed}
    # Baselines have one cost ("baseline"), configurations the refiner's stages.
    seconds = {
        m.name: dict.fromkeys(("baseline",) if m.is_baseline else STAGES, 0.0) for m in computed
    }
    images: list[BenchImage] = []
    start = time.perf_counter()
    if warmup and configs and items:
        # A centred box: non-empty, so the decoder runs too.
        first = read_image(items[0].image)
        h, w = first.shape[:2]
        probe = np.zeros((1, h, w), bool)
        probe[0, h // 4 : h - h // 4, w // 4 : w - w // 4] = True
        refiners[configs[0].name].refine(first, probe)

    for item in tqdm(items, desc="bench", unit="img", disable=not progress):
        image = read_image(item.image)
        gt = read_mask_file(item.mask)
        if gt.shape != image.shape[:2]:
            raise InputError(
                f"{item.mask}: mask is {gt.shape[1]}x{gt.shape[0]} but the image "
                f"{item.image} is {image.shape[1]}x{image.shape[0]} (W x H)"
            )
        ids, gt_masks = gt.objects(ignore)
        keep = ~gt.ignore_mask(ignore)
        gt_masks &= keep
        coarse = load_coarse(item, gt, cdir, seed, spec, ignore)
        entry = BenchImage(
            item.key, str(item.image.resolve()), int(image.shape[0]), int(image.shape[1])
        )
        for oid, g, c in zip(ids, gt_masks, coarse, strict=True):
            entry.objects.append(
                GroundTruthObject(
                    oid,
                    int(g.sum()),
                    int(c.sum()),
                    score_object(c & keep, g),
                    encode_rle(g) if keep_masks else None,
                    encode_rle(c) if keep_masks else None,
                )
            )
        images.append(entry)
        if not ids:
            continue

        embedding, enc_s = None, 0.0
        if configs:
            embedding, enc_s = _timed(_encode_synced, refiners[configs[0].name], image)
        for method in computed:
            if method.config is None:
                if method.name == "coarse":
                    outs, took = coarse, 0.0
                else:
                    outs, took = _timed(_grabcut_all, image, coarse, grabcut_iterations)
                seconds[method.name]["baseline"] += took
                extra = [dict(NO_PROMPTS) for _ in ids]
            else:
                rng = np.random.default_rng([seed, zlib.crc32(item.key.encode("utf-8"))])
                result = _refine_input(refiners[method.name], method, image, coarse, embedding, rng)
                outs = result.masks
                # The image's encoder pass, plus crop-zoom's passes on crops.
                seconds[method.name]["encoder"] += enc_s + result.timings.get("encoder", 0.0)
                for stage in STAGES[1:]:
                    seconds[method.name][stage] += float(result.timings.get(stage, 0.0))
                extra = result.to_records()
            for oid, g, out, ext in zip(ids, gt_masks, outs, extra, strict=True):
                records[method.name].append(
                    MethodObject(
                        item.key,
                        oid,
                        score_object(out & keep, g),
                        mask=encode_rle(out) if keep_masks else None,
                        **ext,
                    )
                )

    n_images = len(images)
    n_objects = sum(len(e.objects) for e in images)
    summary: dict[str, MethodSummary] = {}
    objects_out: dict[str, list[MethodObject]] = {}
    coarse_iou = [o.coarse_scores.iou for e in images for o in e.objects]
    gates = _gate_scores(plan, records, coarse_iou)
    for method in plan.methods:
        src = method.same_as or method.name
        objects_out[method.name] = records[src]
        secs = seconds[src]
        total = sum(secs.values())
        quality = aggregate(r.scores for r in records[src])
        summary[method.name] = MethodSummary(
            {group: Quality.from_json(figures) for group, figures in quality.items()},
            Cost(
                {k: secs[k] / n_images if n_images else None for k in secs},
                total / n_images if n_images else None,
                n_objects / total if total > 0 else None,
            ),
            gates.get(src),
        )
    return BenchResults(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        coarse_source=str(cdir.resolve()) if cdir else f"synthesized (seed {seed})",
        methods=[MethodInfo.from_json(m.to_dict()) for m in plan.methods],
        images=images,
        objects=objects_out,
        summary=summary,
        counts={"images": n_images, "objects": n_objects},
        peak_rss_mb=peak_rss_mb(),
        wall_s=time.perf_counter() - start,
        **(info or {}),
    )
