"""Coarse masks synthesized from ground truth, in the ground truth's own format.

Used by ``samrefiner make-coarse`` (PNG folders and COCO files) and by ``bench`` (which
synthesizes in memory when no coarse masks are given).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.io import InputError
from samrefiner.io.coco import (
    SegmentationError,
    decode_segmentation,
    load_coco,
    segmentation_fields,
    write_coco,
)
from samrefiner.io.masks import mask_iou
from samrefiner.measure.dataset import (
    DEFAULT_IGNORE,
    MaskFile,
    list_masks,
    read_mask_file,
    write_mask_file,
)
from samrefiner.measure.perturb import CoarseSpec, synthesize_stack

#: A fixed recipe ``[(family, strength), ...]`` used instead of the calibrated mix.
Steps = Sequence[tuple[str, float]]


def coarsen_masks(
    masks: np.ndarray, seed: int, key: str, spec: CoarseSpec | None = None, steps: Steps = ()
) -> tuple[np.ndarray, list[str]]:
    """:func:`samrefiner.measure.perturb.synthesize_stack`, with each recipe as text
    (``"polygon:0.63 + lowres:0.41"``) for the IoU table."""
    out, records = synthesize_stack(masks, seed, key, spec, steps)
    recipes = [" + ".join(f"{n}:{v:.2f}" for n, v in rec["steps"]) for rec in records]
    return out, recipes


def compose_ids(
    coarse: np.ndarray, ids: Sequence[int], gt_ids: np.ndarray, ignore: np.ndarray
) -> np.ndarray:
    """Paint coarse masks (``N x H x W``) into one id map shaped like ``gt_ids``.

    Where coarse masks overlap, a pixel goes to the object that owns it in the ground
    truth, else to the smallest claimant (so small objects are not swallowed). Ignore
    pixels nobody claims keep their value.
    """
    out = np.where(ignore, gt_ids, 0).astype(np.int64)
    order = np.argsort([-int(m.sum()) for m in coarse], kind="stable")
    for k in order:  # largest first, so smaller objects paint over them
        out[coarse[k]] = ids[k]
    for k, oid in enumerate(ids):
        own = coarse[k] & (gt_ids == oid)
        out[own] = oid
    return out


def coarsen_label_map(
    labels: MaskFile,
    seed: int,
    key: str,
    spec: CoarseSpec | None = None,
    steps: Steps = (),
    ignore: int | None = DEFAULT_IGNORE,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Coarse id map for ``labels`` and one record per object (id, area, IoU, recipe)."""
    ids, masks = labels.objects(ignore)
    coarse, recipes = coarsen_masks(masks, seed, key, spec, steps)
    out = compose_ids(coarse, ids, labels.ids, labels.ignore_mask(ignore))
    records = [
        {
            "item": key,
            "object": oid,
            "gt_area": int(m.sum()),
            "coarse_iou": round(mask_iou(out == oid, m), 6),
            "recipe": recipe,
        }
        for oid, m, recipe in zip(ids, masks, recipes, strict=True)
    ]
    return out, records


def make_coarse_pngs(
    gt_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    seed: int,
    spec: CoarseSpec | None = None,
    steps: Steps = (),
    ignore: int | None = DEFAULT_IGNORE,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write a coarse PNG per ground-truth PNG of ``gt_dir`` into ``out_dir``.

    Same name, kind, mode and palette as the ground truth. Returns the object records.
    """
    from tqdm import tqdm

    gt_files = list_masks(gt_dir)
    out = Path(out_dir)
    if out.resolve() == Path(gt_dir).resolve():
        raise InputError(f"{out}: the output folder must differ from the ground-truth folder")
    records: list[dict[str, Any]] = []
    for key, path in tqdm(sorted(gt_files.items()), desc="make-coarse", disable=not progress):
        labels = read_mask_file(path)
        ids, recs = coarsen_label_map(labels, seed, key, spec, steps, ignore)
        write_mask_file(out / path.relative_to(gt_dir), ids, labels)
        records.extend(recs)
    return records


def make_coarse_coco(
    gt_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    seed: int,
    spec: CoarseSpec | None = None,
    steps: Steps = (),
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write a copy of a COCO dataset file with every non-crowd segmentation coarsened.

    Ids and every other field are kept; ``segmentation`` becomes compressed RLE and
    ``area`` / ``bbox`` are recomputed. Crowd annotations are copied unchanged.
    """
    from tqdm import tqdm

    coco = load_coco(gt_path)
    if coco.kind != "dataset":
        raise InputError(f"{gt_path}: make-coarse needs a COCO dataset file, not a results file")
    if Path(out_path).resolve() == Path(gt_path).resolve():
        raise InputError(f"{out_path}: the output file must differ from the ground truth")
    # deepcopy keeps ``annotations`` the same list as ``data["annotations"]``.
    coco = copy.deepcopy(coco)
    records: list[dict[str, Any]] = []
    for ann in tqdm(coco.annotations, desc="make-coarse", disable=not progress):
        if ann.get("iscrowd"):
            continue
        image = coco.images.get(ann.get("image_id"))
        if image is None:
            raise InputError(f"{gt_path}: annotation {ann.get('id')}: unknown image_id")
        try:
            gt, _ = decode_segmentation(
                ann.get("segmentation"), int(image["height"]), int(image["width"])
            )
        except SegmentationError as exc:
            raise InputError(f"{gt_path}: annotation {ann.get('id')}: {exc}") from exc
        key = f"{ann.get('image_id')}/{ann.get('id')}"
        coarse, recipes = coarsen_masks(gt[None], seed, key, spec, steps)
        ann.update(segmentation_fields(coarse[0]))
        records.append(
            {
                "item": str(ann.get("image_id")),
                "object": ann.get("id"),
                "gt_area": int(gt.sum()),
                "coarse_iou": round(mask_iou(coarse[0], gt), 6),
                "recipe": recipes[0],
            }
        )
    write_coco(out_path, coco)
    return records
