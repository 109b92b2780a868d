"""The default mix: families drawn per object, strengths calibrated to a target IoU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samrefiner.io.masks import mask_iou
from samrefiner.measure.perturb.families import FAMILIES, apply, object_rng

#: How often :func:`synthesize` draws each family by default: contour errors most often.
DEFAULT_WEIGHTS: dict[str, float] = {
    **dict.fromkeys(FAMILIES, 1.0),
    **{"boundary_noise": 3.0, "polygon": 2.0, "lowres": 2.0, "mask_head": 2.0},
}


@dataclass(frozen=True)
class CoarseSpec:
    """How :func:`synthesize` degrades a mask.

    Attributes:
        weights: Family name -> probability weight of being drawn.
        max_families: Most families combined on one object (1 or more).
        iou_range: ``(lo, hi)`` coarse-vs-GT IoU targets are drawn from; None draws the
            strengths uniformly instead and leaves the IoU where it falls.
    """

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    max_families: int = 2
    iou_range: tuple[float, float] | None = (0.5, 0.9)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown perturbation families {unknown}; known: {sorted(FAMILIES)}")
        if not self.weights or min(self.weights.values()) < 0 or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        if self.max_families < 1:
            raise ValueError(f"max_families must be >= 1, got {self.max_families}")
        if self.iou_range is not None:
            lo, hi = self.iou_range
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"iou_range must satisfy 0 <= lo <= hi <= 1, got {self.iou_range}")


#: Families that can lower the IoU of any object as far as needed; one of them is
#: appended when the drawn families, at full strength, stay above the target.
TOP_UP_FAMILIES: tuple[str, ...] = ("boundary_noise", "dilate", "erode")

_Trial = tuple[np.ndarray, list[list[Any]], float]

#: Calibration stops once the IoU is this close to its target.
IOU_TOLERANCE = 0.005


def _bisect(run: Callable[[float], _Trial], hi: float, target: float, best: _Trial) -> _Trial:
    """The trial of ``run(x)``, x in [0, hi], whose IoU is closest to ``target``.

    Assumes the IoU falls (roughly) as x grows and ``best`` (a trial at ``hi``) is
    below the target; at most 10 halvings, stopping within :data:`IOU_TOLERANCE`.
    """
    lo = 0.0
    for _ in range(10):
        mid = 0.5 * (lo + hi)
        trial = run(mid)
        if abs(trial[2] - target) < abs(best[2] - target):
            best = trial
        if abs(best[2] - target) <= IOU_TOLERANCE:
            break
        lo, hi = (mid, hi) if trial[2] > target else (lo, mid)
    return best


def synthesize(
    mask: np.ndarray, rng: np.random.Generator, spec: CoarseSpec | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One coarse version of an ``H x W`` ground-truth mask.

    Returns the coarse mask and a record ``{"steps": [[name, strength], ...], "iou": x,
    "target_iou": t}`` (``target_iou`` None without calibration). With ``spec.iou_range``
    the drawn families' strengths are scaled together by bisection toward the target;
    when even full strength stays above it (a low-resolution mask of a big, simple object
    is still good), a family of :data:`TOP_UP_FAMILIES` is appended and its strength
    bisected in turn. Objects too small to reach the target get the closest IoU found.
    """
    spec = spec or CoarseSpec()
    mask = np.asarray(mask).astype(bool)
    names = sorted(spec.weights)
    p = np.array([spec.weights[n] for n in names], dtype=np.float64)
    k = min(int(rng.integers(1, spec.max_families + 1)), int(np.count_nonzero(p)))
    chosen = [str(n) for n in rng.choice(names, size=k, replace=False, p=p / p.sum())]
    base = rng.uniform(0.5, 1.0, k)
    top_up = str(rng.choice(TOP_UP_FAMILIES))
    free = float(rng.uniform(0.0, 1.0))
    target = float(rng.uniform(*spec.iou_range)) if spec.iou_range is not None else None
    # Every trial replays the same random draws, so the IoU varies (almost) monotonically
    # with the strengths alone.
    state = int(rng.integers(2**63))

    def run(t: float, extra: float = 0.0) -> _Trial:
        steps = [[n, float(min(1.0, t * b))] for n, b in zip(chosen, base, strict=True)]
        if extra > 0:
            steps.append([top_up, float(extra)])
        out = apply(mask, [(n, st) for n, st in steps], np.random.default_rng(state))
        return out, steps, mask_iou(out, mask)

    if target is None:
        out, steps, iou = run(free / float(base.max()))
    else:
        full = 1.0 / float(base.min())
        out, steps, iou = trial = run(full)
        if iou < target:
            out, steps, iou = _bisect(run, full, target, trial)
        elif iou > target + 0.02:
            top = run(full, 1.0)
            out, steps, iou = _bisect(lambda e: run(full, e), 1.0, target, top)
    return out, {"steps": steps, "iou": iou, "target_iou": target}


def synthesize_stack(
    masks: np.ndarray,
    seed: int,
    key: str = "",
    spec: CoarseSpec | None = None,
    steps: Sequence[tuple[str, float]] = (),
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Coarse versions of an ``N x H x W`` stack, and a record per object.

    Object ``i`` uses ``object_rng(seed, key, i)`` alone. With ``steps`` (a fixed recipe
    ``[(family, strength), ...]``) every object gets that recipe; otherwise
    :func:`synthesize` draws one. Records are those of :func:`synthesize`.
    """
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be N x H x W, got shape {masks.shape}")
    out = np.zeros_like(masks)
    records = []
    for i, m in enumerate(masks):
        rng = object_rng(seed, key, i)
        if steps:
            out[i] = apply(m, steps, rng)
            rec = {
                "steps": [[n, float(v)] for n, v in steps],
                "iou": mask_iou(out[i], m),
                "target_iou": None,
            }
        else:
            out[i], rec = synthesize(m, rng, spec)
        records.append(rec)
    return out, records
