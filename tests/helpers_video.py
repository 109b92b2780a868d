"""Synthetic sequences and controlled doubles for the video tests.

* :func:`moving_squares`: frames with two textured squares moving over a noisy
  background, and their exact masks (object 2 leaves the frame and comes back);
* :class:`FakeRefiner`: an image refiner whose answer a test chooses per frame and object
  (the frame index is written in the image's first pixel);
* :class:`FakeVideo`: a video backend whose propagated masks a test chooses, recording the
  seeds it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from samrefiner.types import STATUS_EMPTY, STATUS_REFINED, RefineResult
from samrefiner.video.backends import VideoBackend
from samrefiner.video.frames import ArrayFrames, FrameSource


@dataclass
class Sequence:
    """``frames[t]`` (``H x W x 3`` uint8) and ``truth[t][obj]`` (``H x W`` bool)."""

    frames: list[np.ndarray]
    truth: list[dict[int, np.ndarray]]

    def source(self) -> ArrayFrames:
        return ArrayFrames(self.frames)

    def labels(self, every: int = 1, coarse: Callable | None = None) -> dict:
        """Label maps of every ``every``-th frame as ``{t: {obj: mask}}`` (objects with an
        empty mask left out, as a label map lacks them); ``coarse(t, obj, mask)`` degrades."""
        out = {}
        for t in range(0, len(self.frames), every):
            out[t] = {
                o: (m if coarse is None else coarse(t, o, m))
                for o, m in self.truth[t].items()
                if m.any()
            }
        return out


def square(size: tuple[int, int], y: int, x: int, side: int) -> np.ndarray:
    """An ``H x W`` mask of the square with top-left ``(y, x)``, clipped to the frame."""
    mask = np.zeros(size, dtype=bool)
    mask[max(0, y) : max(0, y + side), max(0, x) : max(0, x + side)] = True
    return mask


def moving_squares(n: int = 8, size: tuple[int, int] = (48, 64), seed: int = 0) -> Sequence:
    """Object 1 moves right 3 px a frame; object 2 moves down 8 px a frame, leaves the
    bottom edge around frame 4 and re-enters from the top."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
    frames, truth = [], []
    h, _ = size
    for t in range(n):
        one = square(size, 8, 4 + 3 * t, 12)
        y2 = (20 + 8 * t) % (h + 24) - 12
        two = square(size, y2, 40, 10)
        two &= ~one
        frame = background.copy()
        frame[one] = (220, 40, 40)
        frame[two] = (40, 220, 40)
        frame[0, 0, 0] = t  # the frame's index, for the doubles
        frames.append(frame)
        truth.append({1: one, 2: two})
    return Sequence(frames, truth)


class FakeRefiner:
    """``refine(image, masks)``: ``answer(t, coarse) -> mask`` per coarse mask, where ``t``
    is the image's first pixel; predicted IoU ``score(t, k)`` (0.9 by default).

    Records each call as ``(t, number of masks)`` in :attr:`calls`.
    """

    def __init__(self, answer: Callable[[int, np.ndarray], np.ndarray], score=None) -> None:
        self.answer = answer
        self.score = score or (lambda t, k: 0.9)
        self.calls: list[tuple[int, int]] = []

    def refine(self, image: np.ndarray, masks: np.ndarray) -> RefineResult:
        t = int(image[0, 0, 0])
        masks = np.asarray(masks, dtype=bool)
        self.calls.append((t, len(masks)))
        out = np.stack([self.answer(t, m) for m in masks])
        return RefineResult(
            out,
            np.array([self.score(t, k) for k in range(len(masks))], dtype=np.float32),
            [None] * len(masks),
            [STATUS_REFINED if m.any() else STATUS_EMPTY for m in masks],
        )


@dataclass
class FakeVideo(VideoBackend):
    """``track``: ``answer(t, obj) -> mask or None`` (None: the model does not reach
    the frame); records ``seeds`` and ``direction``."""

    answer: Callable[[int, int], np.ndarray | None]
    seeds: dict = field(default_factory=dict)
    direction: str | None = None
    name: str = "fake"

    def track(self, frames: FrameSource, seeds, direction):
        self.seeds = {o: {t: np.array(m) for t, m in per.items()} for o, per in seeds.items()}
        self.direction = direction
        for t in range(len(frames)):
            masks = {o: self.answer(t, o) for o in seeds}
            masks = {o: m for o, m in masks.items() if m is not None}
            if masks:
                yield t, masks


#: A DAVIS-like palette: black, then a few colours (ids 0..3).
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]


def write_sequence(
    frames_dir, labels_dir, seq: Sequence, every: int = 1, ext: str = ".jpg", mode: str = "P"
) -> None:
    """Write ``seq`` as ``frames_dir/00000.jpg ...`` and every ``every``-th frame's label
    map as ``labels_dir/00000.png`` (palette ``P`` or 16-bit ``I;16``)."""
    from PIL import Image

    from samrefiner.io.label_maps import LabelMap, write_label_map

    frames_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(seq.frames):
        Image.fromarray(frame).save(frames_dir / f"{t:05d}{ext}")
        if t % every:
            continue
        labels = np.zeros(frame.shape[:2], dtype=np.uint16 if mode == "I;16" else np.uint8)
        for obj, mask in seq.truth[t].items():
            labels[mask] = obj
        palette = PALETTE if mode == "P" else None
        write_label_map(labels_dir / f"{t:05d}.png", LabelMap(labels, mode, palette))
