"""Scoring a completed COCO file (``coco --complete``) against ground truth.

Objects are paired one to one within an image, highest mask IoU first, at or above
``iou`` (any category: completion is judged on finding objects, not naming them):

* **added, found**: added annotations (``"samrefiner": {"added": true}``) paired with a
  ground-truth object no coarse annotation already took;
* **added, spurious**: added annotations paired with none;
* **still missing**: ground-truth objects paired with no output annotation;
* **missing before**: ground-truth objects the coarse annotations alone leave unpaired
  (what completion could find);
* **unsupported, real** / **unsupported, spurious**: coarse objects flagged
  ``unsupported`` that do / do not pair with a ground-truth object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.io.errors import InputError

#: Mask IoU at or above which an output object and a ground-truth object pair.
PAIR_IOU = 0.5


@dataclass(frozen=True)
class CompletionScore:
    """The counts of the module's docstring, and the IoU they pair at."""

    added: int
    added_found: int
    added_spurious: int
    missing_before: int
    still_missing: int
    unsupported: int
    unsupported_real: int
    unsupported_spurious: int
    iou: float = PAIR_IOU

    def __post_init__(self) -> None:
        if self.added_found + self.added_spurious != self.added:
            raise ValueError("added objects must be found or spurious")
        if self.unsupported_real + self.unsupported_spurious != self.unsupported:
            raise ValueError("unsupported objects must be real or spurious")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return (
            f"completion (pairs at mask IoU >= {self.iou:g}): {self.added} added, "
            f"{self.added_found} found a missing object, {self.added_spurious} spurious; "
            f"ground-truth objects missing {self.missing_before} before, "
            f"{self.still_missing} after; {self.unsupported} flagged unsupported, "
            f"{self.unsupported_real} of them real"
        )


def _pairs(ious: np.ndarray, iou: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, column)`` of ``ious``, highest first, at or above ``iou``."""
    pairs: list[tuple[int, int]] = []
    if ious.size == 0:
        return pairs
    order = np.argsort(-ious, axis=None, kind="stable")
    rows, cols = set(), set()
    for flat in order:
        r, c = divmod(int(flat), ious.shape[1])
        if ious[r, c] < iou:
            break
        if r not in rows and c not in cols:
            rows.add(r)
            cols.add(c)
            pairs.append((r, c))
    return pairs


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read COCO JSON: {exc}") from exc


def score_completion(pred: Path, gt: Path, *, iou: float = PAIR_IOU) -> CompletionScore | None:
    """Score ``pred``'s completion against ``gt`` (see the module); None when ``pred``
    has no added or unsupported objects (it was not completed)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    data = _read(pred)
    anns = data if isinstance(data, list) else data.get("annotations", [])
    marks = [a.get("samrefiner") or {} for a in anns]
    if not any(m.get("added") or m.get("unsupported") for m in marks):
        return None
    truth = COCO()
    truth.dataset = _read(gt)
    truth.createIndex()
    counts = dict.fromkeys(
        ("added", "found", "spurious", "before", "after", "unsupported", "real"), 0
    )
    for image_id in truth.getImgIds():
        gt_rles = [truth.annToRLE(a) for a in truth.loadAnns(truth.getAnnIds(imgIds=image_id))]
        mine = [(a, m) for a, m in zip(anns, marks, strict=True) if a.get("image_id") == image_id]
        rles = [truth.annToRLE(a) for a, _ in mine]
        added = np.array([bool(m.get("added")) for _, m in mine], bool)
        flagged = np.array([bool(m.get("unsupported")) for _, m in mine], bool)
        ious = (
            np.asarray(mask_utils.iou(rles, gt_rles, [0] * len(gt_rles))).reshape(
                len(rles), len(gt_rles)
            )
            if rles and gt_rles
            else np.zeros((len(rles), len(gt_rles)))
        )
        coarse = np.flatnonzero(~added)
        before = _pairs(ious[coarse], iou)
        taken = {c for _, c in before}
        # Added objects pair with what the coarse objects left.
        free = [c for c in range(len(gt_rles)) if c not in taken]
        new = np.flatnonzero(added)
        after = _pairs(ious[np.ix_(new, free)], iou) if len(new) and free else []
        counts["added"] += len(new)
        counts["found"] += len(after)
        counts["spurious"] += len(new) - len(after)
        counts["before"] += len(gt_rles) - len(before)
        counts["after"] += len(gt_rles) - len(before) - len(after)
        paired = {int(coarse[r]) for r, _ in before}
        counts["unsupported"] += int(flagged.sum())
        counts["real"] += sum(1 for k in np.flatnonzero(flagged) if int(k) in paired)
    return CompletionScore(
        added=counts["added"],
        added_found=counts["found"],
        added_spurious=counts["spurious"],
        missing_before=counts["before"],
        still_missing=counts["after"],
        unsupported=counts["unsupported"],
        unsupported_real=counts["real"],
        unsupported_spurious=counts["unsupported"] - counts["real"],
        iou=iou,
    )
