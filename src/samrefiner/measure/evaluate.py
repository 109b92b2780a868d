"""Compare predicted masks with ground truth on disk: PNG folders or COCO files.

Objects are paired as follows, and every ground-truth object is scored exactly once:

* **PNG folders**: files by relative path, then objects by id (a binary mask is object 1). A
  ground-truth object without a prediction is scored against an empty mask (IoU 0);
  predicted objects with no ground truth are counted as ``extra`` but not scored. Pixels
  equal to ``ignore`` in a ground-truth id map are left out of both masks.
* **COCO**: by annotation ``id`` when every predicted annotation carries an id that the
  ground truth has (a refined copy of the ground truth's own file); otherwise, per image
  and category, by the one-to-one assignment that maximises the total IoU (Hungarian).
  ``iscrowd`` ground truth is left out, as COCO's own evaluation does.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from samrefiner.gate import GateScore, score_gate
from samrefiner.io import InputError
from samrefiner.io.binary_folder import file_key, list_mask_files
from samrefiner.io.coco import CocoFile, SegmentationError, decode_segmentation, load_coco
from samrefiner.io.errors import said
from samrefiner.measure.dataset import DEFAULT_IGNORE, list_masks, read_mask_file
from samrefiner.measure.metrics import ObjectScores, aggregate, mask_iou, score_object
from samrefiner.types import STATUS_KEPT_COARSE

MATCH_MODES = ("auto", "id", "iou")


@dataclass
class EvalResult:
    """Per-object scores and the dataset summary.

    Attributes:
        objects: One record per ground-truth object: ``item`` (mask key or COCO image
            id), ``object`` (id), and the fields of :class:`ObjectScores`.
        summary: :func:`samrefiner.measure.metrics.aggregate` of the scores.
        missing: Ground-truth items (files / images) with no prediction at all.
        extra: Predicted objects matched to no ground truth.
    """

    objects: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    extra: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form: summary, counts and per-object records."""
        return {
            "summary": self.summary,
            "missing": self.missing,
            "extra": self.extra,
            "objects": self.objects,
        }


def _finish(
    records: list[tuple[str, Any, ObjectScores]],
    missing: list[str],
    extra: int,
    statuses: dict[tuple[str, Any], str] | None = None,
) -> EvalResult:
    """Build the result; ``statuses``: samrefiner status of the prediction of (item, object)."""
    statuses = statuses or {}
    objects = []
    for item, obj, scores in records:
        record = {"item": item, "object": obj, **scores.to_dict()}
        if (item, obj) in statuses:
            record["status"] = statuses[(item, obj)]
        objects.append(record)
    return EvalResult(objects, aggregate(s for _, _, s in records), missing, extra)


def _same_scores(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("intersection", "union", "boundary_intersection", "boundary_union", "mba")
    return all(a[k] == b[k] for k in keys)


def score_gate_outputs(gated: EvalResult, ungated: EvalResult, coarse: EvalResult) -> GateScore:
    """Score a quality gate from three evaluations against the same ground truth.

    ``gated``: the run with the gate; ``ungated``: the same settings without it;
    ``coarse``: the coarse masks both started from. An object counts as kept when its
    gated prediction's status is ``kept_coarse`` (COCO outputs carry it), or, without a
    status (mask folders), when the gated prediction scores exactly as the coarse mask and
    the ungated one does not. It counts as made worse when the ungated prediction's IoU
    is below the coarse mask's.

    Raises:
        InputError: the three do not score the same ground-truth objects.
    """
    keyed = [{(r["item"], r["object"]): r for r in res.objects} for res in (gated, ungated, coarse)]
    if not keyed[0].keys() == keyed[1].keys() == keyed[2].keys():
        raise InputError("the gated, ungated and coarse predictions score different objects")
    kept, coarse_iou, refined_iou = [], [], []
    for key, rec in keyed[0].items():
        plain, start = keyed[1][key], keyed[2][key]
        if "status" in rec:
            kept.append(rec["status"] == STATUS_KEPT_COARSE)
        else:
            kept.append(_same_scores(rec, start) and not _same_scores(plain, start))
        coarse_iou.append(start["iou"])
        refined_iou.append(plain["iou"])
    return score_gate(np.array(kept, dtype=bool), np.array(coarse_iou), np.array(refined_iou))


def evaluate_png_folders(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    ignore: int | None = DEFAULT_IGNORE,
    progress: bool = False,
) -> EvalResult:
    """Score every ground-truth object of the PNGs in ``gt_dir`` against ``pred_dir``."""
    from tqdm import tqdm

    gts = list_masks(gt_dir)
    if not Path(pred_dir).is_dir():
        raise InputError(f"{pred_dir}: prediction folder not found")
    preds = {file_key(rel): Path(pred_dir) / rel for rel in list_mask_files(pred_dir)}
    records: list[tuple[str, Any, ObjectScores]] = []
    missing: list[str] = []
    extra = 0
    for key, gt_path in tqdm(sorted(gts.items()), desc="eval", disable=not progress):
        gt = read_mask_file(gt_path)
        gt_ids, gt_masks = gt.objects(ignore)
        keep = ~gt.ignore_mask(ignore)
        if key in preds:
            pred = read_mask_file(preds[key])
            if pred.shape != gt.shape:
                raise InputError(
                    f"{preds[key]}: size {pred.shape[1]}x{pred.shape[0]} (W x H) differs from "
                    f"the ground truth {gt_path} ({gt.shape[1]}x{gt.shape[0]})"
                )
            pred_ids, pred_masks = pred.objects(ignore)
        else:
            missing.append(key)
            pred_ids, pred_masks = [], np.zeros((0, *gt.shape), dtype=bool)
        by_id = dict(zip(pred_ids, pred_masks, strict=True))
        extra += len(set(pred_ids) - set(gt_ids))
        empty = np.zeros(gt.shape, dtype=bool)
        for oid, gmask in zip(gt_ids, gt_masks, strict=True):
            pmask = by_id.get(oid, empty) & keep
            records.append((key, oid, score_object(pmask, gmask & keep)))
    return _finish(records, missing, extra)


def _decode(ann: dict[str, Any], image: dict[str, Any], path: Path) -> np.ndarray:
    try:
        return decode_segmentation(
            ann.get("segmentation"), int(image["height"]), int(image["width"])
        )[0]
    except SegmentationError as exc:
        raise InputError(f"{path}: annotation {ann.get('id', '?')}: {exc}") from exc


def _by_image(coco: CocoFile) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in coco.annotations:
        out[ann.get("image_id")].append(ann)
    return out


def evaluate_coco(
    pred_path: str | os.PathLike[str],
    gt_path: str | os.PathLike[str],
    match: str = "auto",
    progress: bool = False,
) -> EvalResult:
    """Score the non-crowd annotations of the COCO dataset file ``gt_path``.

    ``pred_path`` is a dataset or results file of the same images; ``match`` is
    ``"id"``, ``"iou"`` or ``"auto"`` (see the module docstring).
    """
    from tqdm import tqdm

    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
    gt = load_coco(gt_path)
    if gt.kind != "dataset":
        raise InputError(f"{gt_path}: the ground truth must be a COCO dataset file")
    pred = load_coco(pred_path, image_info=gt_path)
    gt_ids = {a.get("id") for a in gt.annotations}
    by_id = all("id" in a and a["id"] in gt_ids for a in pred.annotations)
    if match == "id" and not by_id:
        match_id = said("match='id'", "--match id")
        raise InputError(
            f"{pred_path}: {match_id} needs every annotation to carry a ground-truth id"
        )
    use_ids = match == "id" or (match == "auto" and by_id)
    gt_by_image, pred_by_image = _by_image(gt), _by_image(pred)
    records: list[tuple[str, Any, ObjectScores]] = []
    statuses: dict[tuple[str, Any], str] = {}
    missing: list[str] = []
    extra = sum(1 for img in pred_by_image if img not in gt.images)
    for image_id, image in tqdm(
        sorted(gt.images.items(), key=lambda kv: str(kv[0])), desc="eval", disable=not progress
    ):
        gts = [a for a in gt_by_image.get(image_id, []) if not a.get("iscrowd")]
        preds = pred_by_image.get(image_id, [])
        if gts and not preds:
            missing.append(str(image_id))
        shape = (int(image["height"]), int(image["width"]))
        empty = np.zeros(shape, dtype=bool)
        gmasks = [_decode(a, image, Path(gt_path)) for a in gts]
        pmasks = [_decode(a, image, Path(pred_path)) for a in preds]
        pairs: dict[int, int] = {}
        if use_ids:
            index = {a.get("id"): j for j, a in enumerate(preds)}
            pairs = {i: index[a["id"]] for i, a in enumerate(gts) if a.get("id") in index}
        else:
            for cat in {a.get("category_id") for a in gts}:
                gi = [i for i, a in enumerate(gts) if a.get("category_id") == cat]
                pj = [j for j, a in enumerate(preds) if a.get("category_id") == cat]
                if not gi or not pj:
                    continue
                ious = np.array([[mask_iou(gmasks[i], pmasks[j]) for j in pj] for i in gi])
                for r, c in zip(*linear_sum_assignment(ious, maximize=True), strict=True):
                    pairs[gi[r]] = pj[c]
        extra += len(preds) - len(set(pairs.values()))
        for i, ann in enumerate(gts):
            pmask = pmasks[pairs[i]] if i in pairs else empty
            records.append((str(image_id), ann.get("id"), score_object(pmask, gmasks[i])))
            entry = preds[pairs[i]].get("samrefiner") if i in pairs else None
            if isinstance(entry, dict) and isinstance(entry.get("status"), str):
                statuses[(str(image_id), ann.get("id"))] = entry["status"]
    return _finish(records, missing, extra, statuses)
