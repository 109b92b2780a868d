"""Synthetic video sequences with exact ground truth, built from the shared photographs.

Real DAVIS object cut-outs (a photograph's pixels inside its ground-truth mask) move over a
real background: they translate, grow and shrink, one leaves the frame and comes back, and
one appears part-way through. Objects are pasted in a fixed depth order, so the ground
truth of a frame is exactly the visible pixels of each pasted object: an ``H x W``
instance-id map (0 = background, objects 1..K, the object appearing late has the highest
id). Coarse label maps are synthesized from each frame's ground truth by the coarse-mask
families (:func:`samrefiner.measure.coarse.coarsen_label_map`), independently per frame,
so they flicker the way per-frame masks of another model do.

Everything is a function of :class:`SequenceSpec` (its seed included) and the shared data:
the same spec gives the same frames, ground truth and coarse maps, byte for byte.

:func:`write_dataset` writes the DAVIS layout (:class:`DatasetLayout`)::

    ROOT/JPEGImages/<sequence>/00000.jpg       frames
    ROOT/Annotations/<sequence>/00000.png      ground truth (palette PNG, DAVIS colours)
    ROOT/Coarse/<sequence>/00000.png           coarse maps, every frame (dense)
    ROOT/CoarseSparse/<sequence>/00000.png     coarse maps of every N-th frame (sparse)
    ROOT/sequences.json                        :class:`SequencesManifest`

and :func:`write_video` a sequence's frames as an ``.mp4`` file (OpenCV, in the base
install), whose label maps are then the ``Coarse/<sequence>`` folder: frame ``i`` is
``{i:05d}.png``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samrefiner.io import InputError
from samrefiner.io.atomic import atomic_write_bytes, atomic_write_json
from samrefiner.io.images import read_image
from samrefiner.io.label_maps import LabelMap, write_label_map
from samrefiner.measure.coarse import Steps, coarsen_label_map
from samrefiner.measure.dataset import MaskFile, find_items, read_mask_file
from samrefiner.measure.perturb import CoarseSpec

#: Folder names of :func:`write_dataset`'s layout.
FRAMES_DIR = "JPEGImages"
GT_DIR = "Annotations"
COARSE_DIR = "Coarse"
SPARSE_DIR = "CoarseSparse"
MANIFEST_NAME = "sequences.json"
MANIFEST_VERSION = 1

#: The shared-data folder the cut-outs and backgrounds come from (one object per image).
SOURCE_FOLDER = "davis2016"


def davis_palette() -> list[int]:
    """The 256-colour DAVIS / PASCAL VOC palette as a flat ``[r, g, b, ...]`` list.

    Colour ``i`` spreads the bits of ``i`` over the channels, most significant first
    (1 = dark red, 2 = dark green, 3 = olive, ...), as the DAVIS annotations use.
    """
    palette = []
    for i in range(256):
        rgb = [0, 0, 0]
        c = i
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - j)
            c >>= 3
        palette.extend(rgb)
    return palette


def frame_name(index: int) -> str:
    """File stem of frame ``index``: DAVIS's five digits (``00007``)."""
    return f"{index:05d}"


@dataclass(frozen=True)
class SequenceSpec:
    """What one synthetic sequence holds.

    Attributes:
        name: Sequence (folder) name.
        frames: Number of frames ``T`` (at least 6, so that an exit and a late entry fit).
        height, width: Frame size in pixels (even, at least 32).
        objects: Objects present from the first frame (at least 1).
        late_objects: Objects that appear at frame ``frames // 3`` and stay.
        exit_objects: How many of ``objects`` leave the frame entirely for a stretch in
            the middle of the sequence and come back.
        scale_range: ``(lo, hi)`` object height as a fraction of the frame height; each
            object's size moves between values drawn from it.
        seed: Draws the cut-outs, background, paths and coarse masks.
    """

    name: str = "synthetic"
    frames: int = 12
    height: int = 96
    width: int = 160
    objects: int = 2
    late_objects: int = 1
    exit_objects: int = 1
    scale_range: tuple[float, float] = (0.35, 0.65)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        if self.frames < 6:
            raise ValueError(f"frames must be >= 6, got {self.frames}")
        if self.height < 32 or self.width < 32 or self.height % 2 or self.width % 2:
            raise ValueError(
                f"height and width must be even and >= 32, got {self.height}x{self.width}"
            )
        if self.objects < 1 or self.late_objects < 0:
            raise ValueError("objects must be >= 1 and late_objects >= 0")
        if not 0 <= self.exit_objects <= self.objects:
            raise ValueError(f"exit_objects must lie in [0, objects], got {self.exit_objects}")
        lo, hi = self.scale_range
        if not 0.05 <= lo <= hi <= 1.0:
            raise ValueError(
                f"scale_range must satisfy 0.05 <= lo <= hi <= 1, got {self.scale_range}"
            )

    @property
    def late_frame(self) -> int:
        """First frame of the late objects."""
        return self.frames // 3

    @property
    def exit_frames(self) -> tuple[int, int]:
        """``(first, last)`` frame during which exiting objects are wholly outside."""
        return round(0.45 * (self.frames - 1)), round(0.6 * (self.frames - 1))


@dataclass(frozen=True)
class ObjectTrack:
    """One object of a sequence.

    Attributes:
        id: Its value in the label maps.
        source: Shared-data key of the photograph it is cut from (``davis2016/bear_00000``).
        kind: ``"steady"``, ``"exits"`` (leaves and re-enters) or ``"late"`` (appears late).
        visible: Per frame, whether any of its pixels is visible (length ``T``).
        area: Per frame, its visible ground-truth area in pixels.
    """

    id: int
    source: str
    kind: str
    visible: list[bool]
    area: list[int]

    def __post_init__(self) -> None:
        if not 1 <= self.id <= 255:
            raise ValueError(f"object id must lie in [1, 255], got {self.id}")
        if self.kind not in ("steady", "exits", "late"):
            raise ValueError(f"kind must be steady, exits or late, got {self.kind!r}")
        if len(self.visible) != len(self.area):
            raise ValueError("visible and area must have one entry per frame")
        if any(v != (a > 0) for v, a in zip(self.visible, self.area, strict=True)):
            raise ValueError(f"object {self.id}: visible must equal area > 0")


@dataclass
class SyntheticSequence:
    """A built sequence, in memory.

    Attributes:
        spec: What it was built from.
        background: Shared-data key of the background photograph.
        frames: ``T x H x W x 3`` uint8 RGB frames.
        gt: ``T x H x W`` uint8 ground-truth instance ids.
        coarse: ``T x H x W`` uint8 coarse instance ids (every frame).
        objects: One :class:`ObjectTrack` per object, by id.
        coarse_iou: Per frame, ``{object id: coarse-vs-GT IoU}`` for the visible objects.
    """

    spec: SequenceSpec
    background: str
    frames: np.ndarray
    gt: np.ndarray
    coarse: np.ndarray
    objects: list[ObjectTrack]
    coarse_iou: list[dict[int, float]]

    def __post_init__(self) -> None:
        t, h, w = self.spec.frames, self.spec.height, self.spec.width
        if self.frames.shape != (t, h, w, 3) or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be {t} x {h} x {w} x 3 uint8, got {self.frames.shape}")
        for what, arr in (("gt", self.gt), ("coarse", self.coarse)):
            if arr.shape != (t, h, w) or arr.dtype != np.uint8:
                raise ValueError(f"{what} must be {t} x {h} x {w} uint8, got {arr.shape}")
        if len(self.coarse_iou) != t:
            raise ValueError("coarse_iou must hold one entry per frame")

    def labelled_frames(self, every: int) -> list[int]:
        """Frames a sparse annotation keeps: ``0, every, 2 * every, ...``."""
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return list(range(0, self.spec.frames, every))


@dataclass(frozen=True)
class _Cutout:
    key: str
    rgb: np.ndarray  # h x w x 3, the object's bounding box
    mask: np.ndarray  # h x w bool


@lru_cache(maxsize=4)
def _sources(data_dir: str) -> tuple[tuple[str, Path, Path], ...]:
    """``(key, image, mask)`` of the cut-out folder, sorted by key."""
    folder = Path(data_dir) / SOURCE_FOLDER
    if not folder.is_dir():
        raise InputError(f"{folder}: shared data folder not found (set SAMREFINER_DATA)")
    return tuple((f"{SOURCE_FOLDER}/{it.key}", it.image, it.mask) for it in find_items(folder))


def _usable(mask: np.ndarray) -> bool:
    """An object worth cutting out: 2% to 35% of the photo, clear of the photo's border."""
    frac = float(mask.mean())
    if not 0.02 <= frac <= 0.35:
        return False
    return not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _cutout(key: str, image: Path, mask_path: Path) -> _Cutout | None:
    mask = read_mask_file(mask_path).ids > 0
    if not _usable(mask):
        return None
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return _Cutout(key, read_image(image)[box], mask[box])


def _pick(
    data_dir: Path, rng: np.random.Generator, n: int
) -> tuple[list[_Cutout], tuple[str, np.ndarray]]:
    """``n`` cut-outs from distinct photographs and a background from yet another."""
    sources = _sources(str(data_dir))
    order = [int(i) for i in rng.permutation(len(sources))]
    cutouts: list[_Cutout] = []
    used: set[str] = set()
    rest = []
    for i in order:
        key, image, mask = sources[i]
        sequence = key.rsplit("_", 1)[0]
        if len(cutouts) < n and sequence not in used:
            cut = _cutout(key, image, mask)
            if cut is not None:
                cutouts.append(cut)
                used.add(sequence)
                continue
        rest.append((key, image, sequence))
    if len(cutouts) < n:
        raise InputError(f"{data_dir / SOURCE_FOLDER}: fewer than {n} usable object cut-outs")
    for key, image, sequence in rest:
        if sequence not in used:
            return cutouts, (key, read_image(image))
    raise InputError(f"{data_dir / SOURCE_FOLDER}: no photograph left for a background")


def _resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of an ``h0 x w0 (x 3)`` uint8 or float32 array."""
    if arr.dtype == np.uint8:
        return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR))
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))


def _path(
    spec: SequenceSpec, rng: np.random.Generator, kind: str, aspect: float
) -> list[tuple[float, float, float]]:
    """Per frame ``(cx, cy, s)``: centre in frame fractions and height fraction ``s``."""
    t = spec.frames
    lo, hi = spec.scale_range
    xs = rng.uniform(0.25, 0.75, 3)
    ys = rng.uniform(0.35, 0.65, 3)
    ss = rng.uniform(lo, hi, 3)
    knots = [0.0, (t - 1) / 2, float(t - 1)]
    frames = np.arange(t, dtype=np.float64)
    cx = np.interp(frames, knots, xs)
    cy = np.interp(frames, knots, ys)
    s = np.interp(frames, knots, ss)
    if kind == "exits":
        # Out through the left edge, wholly outside from a to b, back by the end.
        a, b = spec.exit_frames
        half_w = float(s.max()) * spec.height * aspect / spec.width / 2
        out = -half_w - 0.05
        cx = np.interp(frames, [0.0, a, b, float(t - 1)], [xs[0], out, out, xs[2]])
    elif kind == "late":
        # Slides in through the right edge from the late frame on.
        start = spec.late_frame
        half_w = float(s[start]) * spec.height * aspect / spec.width / 2
        cx = np.interp(
            frames, [start, min(start + 2, t - 1), float(t - 1)], [1.0 + half_w * 0.4, xs[1], xs[2]]
        )
    return [(float(a), float(b), float(c)) for a, b, c in zip(cx, cy, s, strict=True)]


def _paste(
    canvas: np.ndarray, ids: np.ndarray, cut: _Cutout, oid: int, place: tuple[float, float, float]
) -> None:
    """Paint ``cut`` at ``place`` into ``canvas`` (RGB) and ``ids`` in place."""
    height, width = ids.shape
    cx, cy, s = place
    h = max(2, round(s * height))
    w = max(2, round(h * cut.mask.shape[1] / cut.mask.shape[0]))
    rgb = _resize(cut.rgb, h, w)
    mask = _resize(cut.mask.astype(np.float32), h, w) >= 0.5
    top = round(cy * height - h / 2)
    left = round(cx * width - w / 2)
    y0, y1 = max(top, 0), min(top + h, height)
    x0, x1 = max(left, 0), min(left + w, width)
    if y0 >= y1 or x0 >= x1:
        return
    sub = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    canvas[y0:y1, x0:x1][sub] = rgb[y0 - top : y1 - top, x0 - left : x1 - left][sub]
    ids[y0:y1, x0:x1][sub] = oid


def build_sequence(
    spec: SequenceSpec,
    data_dir: str | os.PathLike[str],
    coarse: CoarseSpec | None = None,
    steps: Steps = (),
) -> SyntheticSequence:
    """Build one sequence from the shared data at ``data_dir``.

    Coarse maps: frame ``i`` is :func:`~samrefiner.measure.coarse.coarsen_label_map` of
    its ground truth under ``spec.seed`` and key ``"<name>/<frame name>"`` (``coarse``
    or the fixed recipe ``steps`` choose the degradation, as for ``make-coarse``).

    Raises:
        InputError: the shared data is missing or too small.
    """
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 19]))
    n = spec.objects + spec.late_objects
    if n > 255:
        raise ValueError("at most 255 objects fit a palette label map")
    cutouts, (bg_key, bg) = _pick(Path(data_dir), rng, n)
    kinds = ["exits"] * spec.exit_objects + ["steady"] * (spec.objects - spec.exit_objects)
    kinds += ["late"] * spec.late_objects
    paths = [
        _path(spec, rng, kind, cut.mask.shape[1] / cut.mask.shape[0])
        for kind, cut in zip(kinds, cutouts, strict=True)
    ]
    depth = [int(i) for i in rng.permutation(n)]  # painting order, back to front
    # The camera pans across a background 25% larger than the frame.
    big_h, big_w = int(spec.height * 1.25), int(spec.width * 1.25)
    bg = _resize(bg, big_h, big_w)
    pan = rng.uniform(0, 1, 4)
    t_total = spec.frames
    frames = np.zeros((t_total, spec.height, spec.width, 3), np.uint8)
    gt = np.zeros((t_total, spec.height, spec.width), np.uint8)
    for t in range(t_total):
        f = t / (t_total - 1)
        oy = round(((1 - f) * pan[0] + f * pan[1]) * (big_h - spec.height))
        ox = round(((1 - f) * pan[2] + f * pan[3]) * (big_w - spec.width))
        frames[t] = bg[oy : oy + spec.height, ox : ox + spec.width]
        for k in depth:
            if kinds[k] == "late" and t < spec.late_frame:
                continue
            _paste(frames[t], gt[t], cutouts[k], k + 1, paths[k][t])
    palette = davis_palette()
    coarse_maps = np.zeros_like(gt)
    coarse_iou: list[dict[int, float]] = []
    for t in range(t_total):
        labels = MaskFile(LabelMap(gt[t], "P", palette))
        out, records = coarsen_label_map(
            labels, spec.seed, f"{spec.name}/{frame_name(t)}", coarse, steps, ignore=None
        )
        coarse_maps[t] = out.astype(np.uint8)
        coarse_iou.append({int(r["object"]): float(r["coarse_iou"]) for r in records})
    areas = [[int(np.count_nonzero(gt[t] == k + 1)) for t in range(t_total)] for k in range(n)]
    objects = [
        ObjectTrack(k + 1, cutouts[k].key, kinds[k], [a > 0 for a in areas[k]], areas[k])
        for k in range(n)
    ]
    return SyntheticSequence(spec, bg_key, frames, gt, coarse_maps, objects, coarse_iou)


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence of :class:`SequencesManifest`.

    Attributes:
        spec: The :class:`SequenceSpec` it was built from, as a dict.
        background: Shared-data key of the background photograph.
        frames: Frame names in order (``00000``, ...).
        sparse_frames: The frames ``CoarseSparse/`` labels.
        objects: One :class:`ObjectTrack` per object.
        coarse_iou: Per frame, ``{object id (text): coarse IoU}``.
    """

    spec: dict[str, Any]
    background: str
    frames: list[str]
    sparse_frames: list[str]
    objects: list[ObjectTrack]
    coarse_iou: list[dict[str, float]]

    def __post_init__(self) -> None:
        spec = SequenceSpec(**{**self.spec, "scale_range": tuple(self.spec["scale_range"])})
        if len(self.frames) != spec.frames or len(self.coarse_iou) != spec.frames:
            raise ValueError(
                f"sequence {spec.name}: frames and coarse_iou need {spec.frames} entries"
            )
        if not set(self.sparse_frames) <= set(self.frames):
            raise ValueError(f"sequence {spec.name}: sparse_frames must be frames of the sequence")
        for obj in self.objects:
            if len(obj.visible) != spec.frames:
                raise ValueError(f"sequence {spec.name}: object {obj.id} needs one entry per frame")


@dataclass(frozen=True)
class SequencesManifest:
    """``sequences.json``: how a synthetic dataset was made and what it holds.

    Attributes:
        version: :data:`MANIFEST_VERSION`.
        label_every: The sparse folder labels every ``label_every``-th frame.
        sequences: One :class:`SequenceRecord` per sequence, by name.
    """

    version: int
    label_every: int
    sequences: dict[str, SequenceRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version != MANIFEST_VERSION:
            raise ValueError(f"unknown manifest version {self.version}")
        if self.label_every < 1:
            raise ValueError(f"label_every must be >= 1, got {self.label_every}")
        for name, rec in self.sequences.items():
            if rec.spec["name"] != name:
                raise ValueError(f"sequence {name!r} records spec name {rec.spec['name']!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = MANIFEST_NAME) -> SequencesManifest:
        """Parse and validate; raises InputError naming ``source`` when malformed."""
        try:
            seqs = {
                name: SequenceRecord(
                    **{**rec, "objects": [ObjectTrack(**o) for o in rec["objects"]]}
                )
                for name, rec in data["sequences"].items()
            }
            return cls(int(data["version"]), int(data["label_every"]), seqs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source}: not a synthetic-sequences manifest ({exc})") from exc


@dataclass(frozen=True)
class DatasetLayout:
    """Where :func:`write_dataset` put things.

    Attributes:
        root: The dataset folder.
        sequences: Sequence names.
    """

    root: Path
    sequences: tuple[str, ...]

    @property
    def frames(self) -> Path:
        """``ROOT/JPEGImages``: one folder of JPEG frames per sequence."""
        return self.root / FRAMES_DIR

    @property
    def gt(self) -> Path:
        """``ROOT/Annotations``: ground-truth label maps, every frame."""
        return self.root / GT_DIR

    @property
    def coarse(self) -> Path:
        """``ROOT/Coarse``: coarse label maps, every frame."""
        return self.root / COARSE_DIR

    @property
    def sparse(self) -> Path:
        """``ROOT/CoarseSparse``: coarse label maps of every N-th frame only."""
        return self.root / SPARSE_DIR

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME

    def read_manifest(self) -> SequencesManifest:
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.manifest}: cannot read ({exc})") from exc
        return SequencesManifest.from_json(data, str(self.manifest))


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_sequence(seq: SyntheticSequence, root: str | os.PathLike[str], label_every: int) -> None:
    """Write one built sequence into the layout under ``root`` (see the module docstring)."""
    base = Path(root)
    name = seq.spec.name
    palette = davis_palette()
    sparse = set(seq.labelled_frames(label_every))
    for t in range(seq.spec.frames):
        stem = frame_name(t)
        atomic_write_bytes(base / FRAMES_DIR / name / f"{stem}.jpg", _jpeg(seq.frames[t]))
        write_label_map(base / GT_DIR / name / f"{stem}.png", LabelMap(seq.gt[t], "P", palette))
        coarse = LabelMap(seq.coarse[t], "P", palette)
        write_label_map(base / COARSE_DIR / name / f"{stem}.png", coarse)
        if t in sparse:
            write_label_map(base / SPARSE_DIR / name / f"{stem}.png", coarse)


def _record(seq: SyntheticSequence, label_every: int) -> SequenceRecord:
    spec = asdict(seq.spec)
    spec["scale_range"] = list(seq.spec.scale_range)
    return SequenceRecord(
        spec,
        seq.background,
        [frame_name(t) for t in range(seq.spec.frames)],
        [frame_name(t) for t in seq.labelled_frames(label_every)],
        list(seq.objects),
        [{str(k): v for k, v in d.items()} for d in seq.coarse_iou],
    )


def write_dataset(
    root: str | os.PathLike[str],
    specs: Sequence[SequenceSpec],
    data_dir: str | os.PathLike[str],
    label_every: int = 5,
    coarse: CoarseSpec | None = None,
    steps: Steps = (),
) -> DatasetLayout:
    """Build every sequence of ``specs`` and write the DAVIS layout under ``root``.

    Returns the :class:`DatasetLayout`. Sequence names must be unique.
    """
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"sequence names must be unique and at least one, got {names}")
    if label_every < 1:
        raise ValueError(f"label_every must be >= 1, got {label_every}")
    records = {}
    for spec in specs:
        seq = build_sequence(spec, data_dir, coarse, steps)
        write_sequence(seq, root, label_every)
        records[spec.name] = _record(seq, label_every)
    layout = DatasetLayout(Path(root), tuple(names))
    manifest = SequencesManifest(MANIFEST_VERSION, label_every, records)
    atomic_write_json(layout.manifest, manifest.to_json())
    return layout


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: float = 24.0) -> None:
    """Write ``T x H x W x 3`` uint8 RGB frames as an MPEG-4 ``.mp4`` file, atomically.

    Uses OpenCV's writer (``mp4v`` codec), which the base install has; the frames come
    back lossy (compressed), so compare decoded frames with a tolerance.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be T x H x W x 3 uint8 with T >= 1, got {frames.shape}")
    target = Path(path)
    if target.suffix.lower() != ".mp4":
        raise ValueError(f"{target}: write_video writes .mp4 files")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".mp4")
    os.close(fd)
    try:
        h, w = frames.shape[1:3]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise OSError(f"{target}: OpenCV cannot open an mp4v writer")
        try:
            for rgb in frames:
                writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        finally:
            writer.release()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
