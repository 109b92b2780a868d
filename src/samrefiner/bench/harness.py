"""Run refiner configurations and baselines over a dataset, measuring quality and cost.

Per image: read the image and its ground truth, take the coarse masks (given, or
synthesized from the ground truth exactly as ``make-coarse`` would), encode the image
**once**, then run every distinct configuration on that embedding and every baseline.
Everything is scored against the ground truth with :mod:`samrefiner.metrics`.

The result is a JSON-ready dict (see :func:`run_bench`), which ``samrefiner report``
also reads.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.bench.baselines import grabcut_refine
from samrefiner.bench.coarse import coarsen_label_map
from samrefiner.bench.configs import MethodPlan
from samrefiner.bench.dataset import DEFAULT_IGNORE, Item, MaskFile, read_mask_file
from samrefiner.io import InputError, read_image
from samrefiner.io.coco import encode_rle
from samrefiner.metrics import ObjectScores, aggregate, score_object
from samrefiner.perturb import CoarseSpec
from samrefiner.refiner import STAGES, Refiner

#: Result-file format version (bumped on incompatible changes).
FORMAT_VERSION = 1


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
) -> dict[str, Any]:
    """Benchmark ``plan`` over ``items``; returns the JSON-ready result.

    Args:
        items: Dataset images with ground truth (:func:`samrefiner.bench.dataset.find_items`).
        plan: Methods to run (:func:`samrefiner.bench.configs.plan_methods`).
        model: Backend for the configurations (unused when there are none).
        coarse_dir: Folder of coarse masks named like the ground truth; None synthesizes.
        seed, spec: Synthesis settings (as ``make-coarse``).
        ignore: Id-map value that is neither object nor scored.
        grabcut_iterations: Iterations of the GrabCut baseline.
        warmup: Run the first image once untimed first (lazy initialisation, caches).
        keep_masks: Store every mask as compressed RLE (needed by ``report``).
        info: Extra top-level fields (model name, device, dataset path, ...).

    Returns:
        ``{"kind": "bench", "version", "created", "methods", "images", "objects",
        "summary", "peak_rss_mb", "wall_s", **info}``: ``images`` lists each image with
        its objects (id, areas, coarse scores, RLE of GT and coarse mask), ``objects``
        maps each method to its per-object records (metrics, predicted IoU, status,
        prompts, RLE mask), ``summary`` each method to its quality
        (:func:`samrefiner.metrics.aggregate`) and cost (seconds per image by stage,
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
    records: dict[str, list[dict[str, Any]]] = {m.name: [] for m in computed}
    # Baselines have one cost ("baseline"), configurations the refiner's stages.
    seconds = {
        m.name: dict.fromkeys(("baseline",) if m.is_baseline else STAGES, 0.0) for m in computed
    }
    images: list[dict[str, Any]] = []
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
        entry: dict[str, Any] = {
            "key": item.key,
            "image": str(item.image.resolve()),
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "objects": [],
        }
        for oid, g, c in zip(ids, gt_masks, coarse, strict=True):
            obj: dict[str, Any] = {
                "id": oid,
                "gt_area": int(g.sum()),
                "coarse_area": int(c.sum()),
                "coarse_scores": score_object(c & keep, g).to_dict(),
            }
            if keep_masks:
                obj["gt"], obj["coarse"] = encode_rle(g), encode_rle(c)
            entry["objects"].append(obj)
        images.append(entry)
        if not ids:
            continue

        embedding, enc_s = None, 0.0
        if configs:
            embedding, enc_s = _timed(_encode_synced, refiners[configs[0].name], image)
        for method in computed:
            base = {"item": item.key}
            if method.config is None:
                if method.name == "coarse":
                    outs, took = coarse, 0.0
                else:
                    outs, took = _timed(_grabcut_all, image, coarse, grabcut_iterations)
                seconds[method.name]["baseline"] += took
                extra = [dict(NO_PROMPTS) for _ in ids]
            else:
                result = refiners[method.name].refine(image, coarse, embedding=embedding)
                outs = result.masks
                seconds[method.name]["encoder"] += enc_s
                for stage in STAGES[1:]:
                    seconds[method.name][stage] += float(result.timings.get(stage, 0.0))
                extra = result.to_records()
            for oid, g, out, ext in zip(ids, gt_masks, outs, extra, strict=True):
                rec = {**base, "object": oid, **ext, **score_object(out & keep, g).to_dict()}
                if keep_masks:
                    rec["mask"] = encode_rle(out)
                records[method.name].append(rec)

    n_images = len(images)
    n_objects = sum(len(e["objects"]) for e in images)
    summary: dict[str, Any] = {}
    objects_out: dict[str, list[dict[str, Any]]] = {}
    for method in plan.methods:
        src = method.same_as or method.name
        objects_out[method.name] = records[src]
        secs = seconds[src]
        total = sum(secs.values())
        summary[method.name] = {
            "quality": aggregate(_scores(records[src])),
            "cost": {
                **{f"{k}_s_per_image": secs[k] / n_images if n_images else None for k in secs},
                "total_s_per_image": total / n_images if n_images else None,
                "masks_per_s": n_objects / total if total > 0 else None,
            },
        }
    return {
        "kind": "bench",
        "version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(info or {}),
        "coarse_source": str(cdir.resolve()) if cdir else f"synthesized (seed {seed})",
        "methods": [m.to_dict() for m in plan.methods],
        "images": images,
        "objects": objects_out,
        "summary": summary,
        "counts": {"images": n_images, "objects": n_objects},
        "peak_rss_mb": peak_rss_mb(),
        "wall_s": time.perf_counter() - start,
    }


def _scores(records: list[dict[str, Any]]) -> list[ObjectScores]:
    fields = ObjectScores.__dataclass_fields__
    return [ObjectScores(**{k: r[k] for k in fields}) for r in records]
