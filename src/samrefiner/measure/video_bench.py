"""The video rows of ``samrefiner bench``: coarse, per-frame refined and video refined.

Over synthetic sequences with exact ground truth (:mod:`samrefiner.measure.sequences`),
labelled every ``label_every``-th frame with their coarse maps, three outputs are scored
with the video measures (:mod:`samrefiner.measure.video`: J, F, J&F, stability):

* ``coarse``: the coarse label maps as given (frames without one score as empty);
* ``per-frame``: :class:`samrefiner.video.VideoRefiner` with ``propagate="none"`` (each
  labelled frame refined on its own; the method's step 1);
* ``video``: the full method with the configured settings and the model's video backend
  (an image-only model has none: the row is then step 1 again, and the notice says so).

Cost: seconds and frames per second of each refining row (every frame of every sequence
counted), and the process's peak RSS.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samrefiner.io import InputError
from samrefiner.measure.harness import peak_rss_mb
from samrefiner.measure.sequences import SyntheticSequence
from samrefiner.measure.video import SequenceScores, VideoScores, score_sequence
from samrefiner.video import ArrayFrames, VideoBackend, VideoRefiner, VideoSettings

VIDEO_BENCH_VERSION = 1
ROWS = ("coarse", "per-frame", "video")


@dataclass(frozen=True)
class VideoBenchRow:
    """One output of the video bench.

    Attributes:
        label: ``coarse``, ``per-frame`` or ``video``.
        j, f, jf, stability: Means over every object of every sequence.
        seconds: Time spent refining (0 for ``coarse``).
        frames_per_s: Frames of the sequences per second of ``seconds`` (None for coarse).
        sources: Per source (``refined``, ``propagated``, ``kept_coarse``, ...), how many
            (frame, object) entries it won; empty for ``coarse``.
    """

    label: str
    j: float | None
    f: float | None
    jf: float | None
    stability: float | None
    seconds: float
    frames_per_s: float | None
    sources: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in ROWS:
            raise ValueError(f"label must be one of {ROWS}, got {self.label!r}")
        for name in ("j", "f", "jf", "stability"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.seconds < 0 or any(v < 0 for v in self.sources.values()):
            raise ValueError("seconds and source counts must be non-negative")


@dataclass(frozen=True)
class VideoBenchResults:
    """``OUT/video.json`` of ``samrefiner bench --video``.

    Attributes:
        version: :data:`VIDEO_BENCH_VERSION`.
        created: ISO time of the run.
        model, device, random_weights: What ran.
        settings: The video method's settings (:meth:`VideoSettings.to_dict`).
        label_every: Coarse labels on every N-th frame.
        sequences: Sequence names; frames: their total frame count.
        rows: One :class:`VideoBenchRow` per output, in :data:`ROWS` order.
        notices: The method's one-line notices (an image-only model, ...).
        peak_rss_mb: Peak resident memory of the process (None where unknown).
    """

    version: int
    created: str
    model: str | None
    device: str | None
    random_weights: bool
    settings: dict[str, Any]
    label_every: int
    sequences: list[str]
    frames: int
    rows: list[VideoBenchRow]
    notices: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None

    def __post_init__(self) -> None:
        if self.version != VIDEO_BENCH_VERSION:
            raise ValueError(f"unknown video bench version {self.version}")
        if self.label_every < 1 or self.frames < 0:
            raise ValueError("label_every must be >= 1 and frames >= 0")
        if [r.label for r in self.rows] != list(ROWS):
            raise ValueError(f"rows must be {ROWS} in order")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = "video.json") -> VideoBenchResults:
        """Parse and validate; InputError naming ``source`` when malformed."""
        try:
            rows = [VideoBenchRow(**r) for r in data["rows"]]
            return cls(**{**data, "rows": rows})
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: not a video bench result ({exc})") from exc


def coarse_labels(seq: SyntheticSequence, every: int) -> dict[int, dict[int, np.ndarray]]:
    """The coarse input of :meth:`VideoRefiner.refine_sequence`: labelled frame ->
    object id -> ``H x W`` bool mask (objects absent from a frame's map left out)."""
    return {
        t: {int(o): seq.coarse[t] == o for o in np.unique(seq.coarse[t]) if o != 0}
        for t in seq.labelled_frames(every)
    }


def _score(seq: SyntheticSequence, maps: Sequence[np.ndarray | None]) -> SequenceScores:
    frames = ((f"{t:05d}", seq.gt[t], maps[t]) for t in range(seq.spec.frames))
    return score_sequence(seq.spec.name, frames, ignore=None)


def run_video_bench(
    sequences: Sequence[SyntheticSequence],
    refiner: Any,
    video: VideoBackend | None,
    settings: VideoSettings | None = None,
    label_every: int = 1,
    progress: bool = False,
    info: dict[str, Any] | None = None,
) -> VideoBenchResults:
    """Score the three outputs (module docstring) over ``sequences``.

    ``refiner``: the image refiner (:class:`samrefiner.Refiner`); ``video``: the model's
    video backend or None; ``info``: ``model``, ``device``, ``random_weights``.
    """
    from tqdm import tqdm

    if label_every < 1:
        raise ValueError(f"label_every must be >= 1, got {label_every}")
    settings = settings or VideoSettings()
    methods = {
        "per-frame": VideoRefiner(refiner, None, dataclasses.replace(settings, propagate="none")),
        "video": VideoRefiner(refiner, video, settings),
    }
    scored: dict[str, list[SequenceScores]] = {label: [] for label in ROWS}
    seconds = dict.fromkeys(ROWS, 0.0)
    sources: dict[str, Counter[str]] = {label: Counter() for label in ROWS}
    notices: list[str] = []
    for seq in tqdm(sequences, desc="bench video", disable=not progress):
        labels = coarse_labels(seq, label_every)
        coarse = [seq.coarse[t] if t in labels else None for t in range(seq.spec.frames)]
        scored["coarse"].append(_score(seq, coarse))
        for label, method in methods.items():
            frames = ArrayFrames(list(seq.frames), where=seq.spec.name)
            start = time.perf_counter()
            result = method.refine_sequence(frames, labels)
            seconds[label] += time.perf_counter() - start
            maps = [result.label_map(t) for t in range(result.frame_count)]
            scored[label].append(_score(seq, maps))
            sources[label].update(result.sources())
            notices += [n for n in result.notices if n not in notices]
    total = sum(s.spec.frames for s in sequences)
    rows = []
    for label in ROWS:
        means = VideoScores(label, "", scored[label])
        secs = seconds[label]
        rows.append(
            VideoBenchRow(
                label,
                means.j,
                means.f,
                means.jf,
                means.stability,
                secs,
                None if label == "coarse" or secs <= 0 else total / secs,
                dict(sorted(sources[label].items())),
            )
        )
    info = info or {}
    return VideoBenchResults(
        VIDEO_BENCH_VERSION,
        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        info.get("model"),
        info.get("device"),
        bool(info.get("random_weights", False)),
        settings.to_dict(),
        label_every,
        [s.spec.name for s in sequences],
        total,
        rows,
        notices,
        peak_rss_mb(),
    )


def video_bench_markdown(results: VideoBenchResults) -> str:
    """The rows as a Markdown table, with what ran and the notices."""
    from samrefiner.measure.tables import markdown_table

    headers = ["output", "J", "F", "J&F", "stability", "frames/s", "sources"]
    rows = [
        [
            r.label,
            r.j,
            r.f,
            r.jf,
            r.stability,
            r.frames_per_s,
            ", ".join(f"{k} {v}" for k, v in r.sources.items()) or "–",
        ]
        for r in results.rows
    ]
    head = (
        f"Video: {len(results.sequences)} synthetic sequences, {results.frames} frames, "
        f"coarse labels every {results.label_every} frame(s); model {results.model}"
        + (" (random weights: quality not meaningful)" if results.random_weights else "")
    )
    lines = [head, "", markdown_table(headers, rows)]
    lines += [f"\nnote: {n}" for n in results.notices]
    if results.peak_rss_mb is not None:
        lines.append(f"\npeak RSS {results.peak_rss_mb:.0f} MB")
    return "\n".join(lines)
