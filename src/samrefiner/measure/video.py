"""Video measures: the DAVIS region and boundary scores, and a temporal-stability figure.

Definitions (checked against the DAVIS 2017 evaluation code's formulas):

* **Region J** of one object on one frame: ``|P ∩ G| / |P ∪ G|`` over the pixels that
  are not void; 1 when the union is empty (the object is absent and predicted absent).
* **Boundary F**: both masks become one-pixel boundary maps (:func:`boundary_map`, the
  ``seg2bmap`` rule: a pixel is boundary when it differs from its east, south or
  south-east neighbour); a boundary pixel of one map matches when a boundary pixel of the
  other lies within a disk of radius ``ceil(bound_th * diagonal)`` pixels
  (``bound_th = 0.008`` of the *image* diagonal: 8 px at 854 x 480). Precision is the
  matched share of the prediction's boundary, recall that of the ground truth's, F their
  harmonic mean. No boundary on either side gives precision = recall = 1; a boundary on
  one side only gives F = 0. Void pixels are cleared from both masks first.
* Per object, J and F are the means over the sequence's ground-truth frames (frames
  where the object is absent count: predicting it absent there scores 1). A sequence's J
  and F are the means over its objects; the overall J and F the means over all objects of
  all sequences (DAVIS's convention), and **J&F** = (J + F) / 2.
* **Temporal stability** (ours; DAVIS dropped its own T measure): for an object and two
  consecutive ground-truth frames *a*, *b*, the *flicker* is how much the predicted mask
  changes beyond the ground truth's own change, relative to the object's size::

      flicker = min(1, | |P_a Δ P_b| - |G_a Δ G_b| | / |G_a ∪ G_b|)

  (pairs where the object is absent from both ground-truth frames are skipped).
  Stability = 1 - the mean flicker over the pairs: 1 for a prediction that changes
  exactly as much as the truth (the ground truth itself, or a consistent offset of it),
  lower for masks that jitter from frame to frame. It measures consistency, not accuracy.
  Averaged like J.

Folders: ``GT/<sequence>/<frame>.png`` label maps (palette, 8/16-bit grey, or binary
0/255 for a single object); a prediction folder mirrors it. A folder holding PNGs itself
is one sequence. Frames are in order of their number when every name is a number
(``2`` before ``10``), else of their name. Frames are those of the ground truth; a
missing predicted frame is scored as empty and listed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samrefiner.io import InputError
from samrefiner.measure.dataset import DEFAULT_IGNORE, read_mask_file

#: DAVIS's boundary tolerance, as a share of the image diagonal.
DAVIS_BOUND_TH = 0.008
REPORT_VERSION = 1


def boundary_tolerance(shape: tuple[int, int], bound_th: float = DAVIS_BOUND_TH) -> int:
    """Tolerance radius in pixels: ``bound_th`` itself when >= 1, else
    ``ceil(bound_th * sqrt(H² + W²))`` (8 for 854 x 480)."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def disk(radius: int) -> np.ndarray:
    """``(2r + 1) x (2r + 1)`` uint8 structuring element: 1 where ``dy² + dx² <= r²``."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx <= r * r).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """``H x W`` bool one-pixel boundary of an ``H x W`` mask (``seg2bmap``).

    A pixel is boundary when it differs from its east, south or south-east neighbour
    (outside the image counts as background), except: on the last row only the east
    neighbour counts, on the last column only the south one, and the bottom-right pixel
    is never boundary.
    """
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, ((0, 1), (0, 1)))
    east = padded[:-1, 1:]
    south = padded[1:, :-1]
    south_east = padded[1:, 1:]
    out = (m != east) | (m != south) | (m != south_east)
    out[-1, :] = m[-1, :] != east[-1, :]
    out[:, -1] = m[:, -1] != south[:, -1]
    out[-1, -1] = False
    return out


def _clean(mask: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    return mask if void is None else mask & ~np.asarray(void, dtype=bool)


def region_j(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J (IoU) of two ``H x W`` masks; 1 when both are empty."""
    p, g = _clean(pred, void), _clean(gt, void)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
    union = int(np.count_nonzero(p | g))
    return 1.0 if union == 0 else int(np.count_nonzero(p & g)) / union


def _crop(p: np.ndarray, g: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """The union's bounding box grown by ``pad``, clipped to the image; None if empty."""
    rows = np.flatnonzero((p | g).any(axis=1))
    if not rows.size:
        return None
    cols = np.flatnonzero((p | g).any(axis=0))
    h, w = p.shape
    return (
        slice(max(int(rows[0]) - pad, 0), min(int(rows[-1]) + pad + 1, h)),
        slice(max(int(cols[0]) - pad, 0), min(int(cols[-1]) + pad + 1, w)),
    )


def boundary_f(
    pred: np.ndarray,
    gt: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = DAVIS_BOUND_TH,
) -> float:
    """Boundary F-measure of two ``H x W`` masks with DAVIS's tolerance (module docstring).

    Computed on the masks' bounding box grown by the tolerance (identical to the whole
    frame: the boundary and its dilation never reach past it, except at the image edge,
    which the box keeps).
    """
    p, g = _clean(pred, void), _clean(gt, void)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
    radius = boundary_tolerance(p.shape, bound_th)
    box = _crop(p, g, radius + 2)
    if box is None:
        return 1.0
    pb, gb = boundary_map(p[box]), boundary_map(g[box])
    n_p, n_g = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    kernel = disk(radius)
    p_dil = cv2.dilate(pb.astype(np.uint8), kernel).astype(bool)
    g_dil = cv2.dilate(gb.astype(np.uint8), kernel).astype(bool)
    precision = int(np.count_nonzero(pb & g_dil)) / n_p
    recall = int(np.count_nonzero(gb & p_dil)) / n_g
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def temporal_stability(
    pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], void: Sequence[np.ndarray | None] = ()
) -> float | None:
    """Stability of one object's predicted masks over consecutive ground-truth frames.

    ``pred`` and ``gt``: ``H x W`` masks of the same frames, in order; ``void`` optional
    per-frame void masks. See the module docstring; None when no consecutive pair has
    the object in its ground truth (fewer than two frames, or always absent).
    """
    if len(pred) != len(gt):
        raise ValueError(f"pred has {len(pred)} frames, gt {len(gt)}")
    voids = list(void) or [None] * len(gt)
    p = [_clean(m, v) for m, v in zip(pred, voids, strict=True)]
    g = [_clean(m, v) for m, v in zip(gt, voids, strict=True)]
    flicker = []
    for a in range(len(g) - 1):
        b = a + 1
        union = int(np.count_nonzero(g[a] | g[b]))
        if union == 0:
            continue
        d_pred = int(np.count_nonzero(p[a] ^ p[b]))
        d_gt = int(np.count_nonzero(g[a] ^ g[b]))
        flicker.append(min(1.0, abs(d_pred - d_gt) / union))
    return None if not flicker else 1.0 - float(np.mean(flicker))


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


@dataclass(frozen=True)
class ObjectVideoScores:
    """One object of one sequence.

    Attributes:
        id: Its label value.
        j: Per ground-truth frame, region J (in frame order).
        f: Per ground-truth frame, boundary F.
        stability: :func:`temporal_stability`, None when undefined.
    """

    id: int
    j: list[float]
    f: list[float]
    stability: float | None

    def __post_init__(self) -> None:
        if self.id < 1:
            raise ValueError(f"object id must be >= 1, got {self.id}")
        if len(self.j) != len(self.f) or not self.j:
            raise ValueError(f"object {self.id}: j and f need one value per frame")
        values = [*self.j, *self.f] + ([] if self.stability is None else [self.stability])
        if any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"object {self.id}: scores must lie in [0, 1]")

    @property
    def j_mean(self) -> float:
        return float(np.mean(self.j))

    @property
    def f_mean(self) -> float:
        return float(np.mean(self.f))


@dataclass(frozen=True)
class SequenceScores:
    """One sequence of one prediction folder.

    Attributes:
        name: Sequence name (its folder).
        frames: Ground-truth frame names scored, in order.
        missing: Frames with ground truth but no predicted map (scored as empty).
        objects: One :class:`ObjectVideoScores` per ground-truth object, by id.
    """

    name: str
    frames: list[str]
    missing: list[str]
    objects: list[ObjectVideoScores]

    def __post_init__(self) -> None:
        if not set(self.missing) <= set(self.frames):
            raise ValueError(f"sequence {self.name}: missing frames must be among its frames")
        for obj in self.objects:
            if len(obj.j) != len(self.frames):
                raise ValueError(
                    f"sequence {self.name}: object {obj.id} has {len(obj.j)} scores for "
                    f"{len(self.frames)} frames"
                )

    @property
    def j(self) -> float | None:
        """Mean J over the objects (None without objects)."""
        return _mean([o.j_mean for o in self.objects])

    @property
    def f(self) -> float | None:
        return _mean([o.f_mean for o in self.objects])

    @property
    def jf(self) -> float | None:
        return None if self.j is None or self.f is None else (self.j + self.f) / 2

    @property
    def stability(self) -> float | None:
        return _mean([o.stability for o in self.objects])


@dataclass(frozen=True)
class VideoScores:
    """One prediction folder scored against the ground truth.

    Attributes:
        label: Its name in tables (``coarse``, ``refined``, ...).
        path: The folder.
        sequences: One :class:`SequenceScores` per ground-truth sequence, by name.
    """

    label: str
    path: str
    sequences: list[SequenceScores]

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("label must not be empty")

    def _objects(self) -> list[ObjectVideoScores]:
        return [o for s in self.sequences for o in s.objects]

    @property
    def j(self) -> float | None:
        """Mean J over every object of every sequence."""
        return _mean([o.j_mean for o in self._objects()])

    @property
    def f(self) -> float | None:
        return _mean([o.f_mean for o in self._objects()])

    @property
    def jf(self) -> float | None:
        return None if self.j is None or self.f is None else (self.j + self.f) / 2

    @property
    def stability(self) -> float | None:
        return _mean([o.stability for o in self._objects()])

    def summary(self) -> dict[str, float | None]:
        """``{"J", "F", "J&F", "stability"}``."""
        return {"J": self.j, "F": self.f, "J&F": self.jf, "stability": self.stability}


@dataclass(frozen=True)
class VideoEvalReport:
    """What ``samrefiner eval --video --json`` writes.

    Attributes:
        version: :data:`REPORT_VERSION`.
        gt: The ground-truth folder.
        bound_th: Boundary tolerance used (share of the diagonal, or pixels when >= 1).
        ignore: The void label value, or None.
        predictions: One :class:`VideoScores` per prediction folder, in the order given.
    """

    version: int
    gt: str
    bound_th: float
    ignore: int | None
    predictions: list[VideoScores] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.version != REPORT_VERSION:
            raise ValueError(f"unknown video report version {self.version}")
        if self.bound_th <= 0:
            raise ValueError(f"bound_th must be positive, got {self.bound_th}")
        labels = [p.label for p in self.predictions]
        if len(set(labels)) != len(labels):
            raise ValueError(f"prediction labels must be unique, got {labels}")

    def to_json(self) -> dict[str, Any]:
        """JSON form; each prediction and sequence also carries its means (``summary``)."""

        def seq(s: SequenceScores) -> dict[str, Any]:
            return {
                "name": s.name,
                "frames": s.frames,
                "missing": s.missing,
                "summary": {"J": s.j, "F": s.f, "J&F": s.jf, "stability": s.stability},
                "objects": [
                    {"id": o.id, "j": o.j, "f": o.f, "stability": o.stability} for o in s.objects
                ],
            }

        return {
            "version": self.version,
            "gt": self.gt,
            "bound_th": self.bound_th,
            "ignore": self.ignore,
            "predictions": [
                {
                    "label": p.label,
                    "path": p.path,
                    "summary": p.summary(),
                    "sequences": [seq(s) for s in p.sequences],
                }
                for p in self.predictions
            ],
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "video report") -> VideoEvalReport:
        """Parse and validate (means are recomputed, not read). InputError names ``source``."""
        try:
            preds = [
                VideoScores(
                    str(p["label"]),
                    str(p["path"]),
                    [
                        SequenceScores(
                            str(s["name"]),
                            [str(x) for x in s["frames"]],
                            [str(x) for x in s["missing"]],
                            [
                                ObjectVideoScores(
                                    int(o["id"]),
                                    [float(v) for v in o["j"]],
                                    [float(v) for v in o["f"]],
                                    None if o["stability"] is None else float(o["stability"]),
                                )
                                for o in s["objects"]
                            ],
                        )
                        for s in p["sequences"]
                    ],
                )
                for p in data["predictions"]
            ]
            ignore = data["ignore"]
            return cls(
                int(data["version"]),
                str(data["gt"]),
                float(data["bound_th"]),
                None if ignore is None else int(ignore),
                preds,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: not a video evaluation report ({exc})") from exc


def in_frame_order(paths: Iterable[Path]) -> dict[str, Path]:
    """``{frame name: path}`` in frame order: by number when every name is a number
    (``2`` before ``10``), else by name."""
    found = {p.stem: p for p in paths}
    numeric = all(name.isdigit() for name in found)
    keys = sorted(found, key=lambda n: (int(n), n) if numeric else (0, n))
    return {k: found[k] for k in keys}


def list_sequences(folder: str | os.PathLike[str]) -> dict[str, dict[str, Path]]:
    """``{sequence: {frame: path}}`` of a video label folder (module docstring).

    Raises:
        InputError: naming the folder when it holds no label maps.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: folder not found")
    own = in_frame_order(p for p in root.glob("*.png") if p.is_file())
    if own:
        return {root.name: own}
    found = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        frames = in_frame_order(p for p in sub.glob("*.png") if p.is_file())
        if frames:
            found[sub.name] = frames
    if not found:
        raise InputError(f"{root}: no label maps (expected <sequence>/<frame>.png, or <frame>.png)")
    return found


def _ids(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    labels = read_mask_file(path)
    if shape is not None and labels.shape != shape:
        raise InputError(
            f"{path}: size {labels.shape[1]}x{labels.shape[0]} differs from the ground "
            f"truth's {shape[1]}x{shape[0]}"
        )
    return labels.ids


def score_sequence(
    name: str,
    frames: Iterable[tuple[str, np.ndarray, np.ndarray | None]],
    ignore: int | None = DEFAULT_IGNORE,
    bound_th: float = DAVIS_BOUND_TH,
) -> SequenceScores:
    """Score one sequence, streaming its frames.

    ``frames``: ``(frame name, ground-truth ids, predicted ids)`` in order, id maps
    ``H x W`` (predicted None: no prediction, scored as empty). Objects are the ids found
    in any ground-truth frame, other than 0 and ``ignore``. Only two frames are held at
    a time: an object absent from a frame's ground truth and prediction scores J = F = 1
    there without being looked at.
    """
    names: list[str] = []
    missing: list[str] = []
    scores: dict[int, dict[int, tuple[float, float]]] = {}  # id -> frame index -> (J, F)
    flicker: dict[int, list[float]] = {}
    gt_ids: set[int] = set()
    skip = {0} | ({ignore} if ignore is not None else set())
    prev: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
    for t, (frame, g, p) in enumerate(frames):
        names.append(frame)
        if p is None:
            missing.append(frame)
            p = np.zeros(g.shape, dtype=g.dtype)
        void = None if ignore is None else g == ignore
        here_gt = {int(v) for v in np.unique(g)} - skip
        gt_ids |= here_gt
        for oid in here_gt | ({int(v) for v in np.unique(p)} - skip):
            pm, gm = p == oid, g == oid
            scores.setdefault(oid, {})[t] = (
                region_j(pm, gm, void),
                boundary_f(pm, gm, void, bound_th),
            )
        if prev is not None:
            g0, p0, v0 = prev
            for oid in here_gt | ({int(v) for v in np.unique(g0)} - skip):
                pair = temporal_stability([p0 == oid, p == oid], [g0 == oid, g == oid], [v0, void])
                if pair is not None:
                    flicker.setdefault(oid, []).append(1.0 - pair)
        prev = (g, p, void)
    objects = []
    for oid in sorted(gt_ids):
        per = scores.get(oid, {})
        j = [per.get(t, (1.0, 1.0))[0] for t in range(len(names))]
        f = [per.get(t, (1.0, 1.0))[1] for t in range(len(names))]
        pairs = flicker.get(oid)
        stab = 1.0 - float(np.mean(pairs)) if pairs else None
        objects.append(ObjectVideoScores(oid, j, f, stab))
    return SequenceScores(name, names, missing, objects)


def evaluate_video_folders(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    label: str,
    ignore: int | None = DEFAULT_IGNORE,
    bound_th: float = DAVIS_BOUND_TH,
    progress: bool = False,
) -> VideoScores:
    """Score a prediction folder against a ground-truth folder (module docstring).

    A ground-truth sequence with no prediction folder is scored as empty throughout.
    A single-sequence ground truth (PNGs directly in ``gt_dir``) pairs with PNGs directly
    in ``pred_dir``.

    Raises:
        InputError: unreadable maps, or a predicted map of another size than its
            ground truth (naming the file).
    """
    from tqdm import tqdm

    gt_seqs = list_sequences(gt_dir)
    pred_root = Path(pred_dir)
    if not pred_root.is_dir():
        raise InputError(f"{pred_root}: folder not found")
    single = len(gt_seqs) == 1 and any(Path(gt_dir).glob("*.png"))
    sequences = []
    for name, frames in tqdm(gt_seqs.items(), desc=f"eval {label}", disable=not progress):
        seq_dir = pred_root if single else pred_root / name

        def stream(
            frames: dict[str, Path], seq_dir: Path
        ) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
            for stem, path in frames.items():
                g = _ids(path)
                pred = seq_dir / f"{stem}.png"
                yield stem, g, _ids(pred, g.shape) if pred.is_file() else None

        sequences.append(score_sequence(name, stream(frames, seq_dir), ignore, bound_th))
    return VideoScores(label, str(pred_root), sequences)


def output_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Default table labels for prediction folders: each folder's name, made unique by
    its parent's (``run1/refined``) and then by position where names still clash."""
    names = [Path(p).name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]
    if len(set(names)) < len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    return names


def evaluate_video(
    preds: Sequence[tuple[str, str | os.PathLike[str]]],
    gt_dir: str | os.PathLike[str],
    ignore: int | None = DEFAULT_IGNORE,
    bound_th: float = DAVIS_BOUND_TH,
    progress: bool = False,
) -> VideoEvalReport:
    """Score every ``(label, folder)`` of ``preds`` against ``gt_dir``, side by side."""
    scored = [
        evaluate_video_folders(path, gt_dir, label, ignore, bound_th, progress)
        for label, path in preds
    ]
    return VideoEvalReport(REPORT_VERSION, str(gt_dir), bound_th, ignore, scored)


def video_tables(report: VideoEvalReport) -> str:
    """The report as text: a per-sequence table (a row per sequence and output) and the
    means over all objects (a row per output)."""
    from samrefiner.measure.tables import markdown_table

    headers = ["sequence", "output", "objects", "J", "F", "J&F", "stability", "missing"]
    rows = []
    names = [s.name for s in report.predictions[0].sequences] if report.predictions else []
    for i, name in enumerate(names):
        for pred in report.predictions:
            s = pred.sequences[i]
            rows.append(
                [name, pred.label, len(s.objects), s.j, s.f, s.jf, s.stability, len(s.missing)]
            )
    means = [
        [p.label, sum(len(s.objects) for s in p.sequences), p.j, p.f, p.jf, p.stability]
        for p in report.predictions
    ]
    mean_headers = ["output", "objects", "J", "F", "J&F", "stability"]
    return (
        markdown_table(headers, rows)
        + "\n\nmean over objects:\n"
        + markdown_table(mean_headers, means)
    )
