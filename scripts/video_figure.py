"""Draw docs/video_sequence.png: one synthetic sequence through the video method's rules.

Two squares move across a noise background; coarse maps (the true squares, grown by two
pixels) label every third frame. Controlled doubles stand in for the models: the
per-frame refinement gives the true mask except on frame 3, where it grabs the
neighbouring square; the propagation gives the true masks, drifting sideways from frame
4 on. Rows: frame + coarse map, refined, propagated, output; each output mask is
outlined in the colour of its source.

    python scripts/video_figure.py [docs/video_sequence.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from samrefiner.types import STATUS_REFINED, RefineResult
from samrefiner.video import ArrayFrames, VideoBackend, VideoRefiner, VideoSettings

N, H, W, GAP = 8, 72, 96, 4
COLOURS = {1: (230, 60, 60), 2: (60, 200, 90)}
SOURCE_COLOURS = {
    "refined": (255, 255, 255),
    "propagated": (70, 140, 255),
    "reprompted": (60, 220, 90),
    "kept_coarse": (255, 160, 40),
}


def truth(t: int) -> dict[int, np.ndarray]:
    one = np.zeros((H, W), bool)
    one[20:44, 6 + 6 * t : 30 + 6 * t] = True
    two = np.zeros((H, W), bool)
    two[34:56, 70 - 4 * t : 90 - 4 * t] = True
    return {1: one, 2: two & ~one}


rng = np.random.default_rng(0)
BACKGROUND = rng.integers(0, 70, (H, W, 3), dtype=np.uint8)


def frame(t: int) -> np.ndarray:
    image = BACKGROUND.copy()
    for obj, mask in truth(t).items():
        image[mask] = 120 + 50 * obj + BACKGROUND[mask] // 2
    image[0, 0, 0] = t
    return image


class Refiner:
    """Gives the true mask of the object the coarse mask covers; on frame 3 object 1's
    refinement grabs object 2 as well."""

    def refine(self, image: np.ndarray, masks: np.ndarray) -> RefineResult:
        t = int(image[0, 0, 0])
        out = []
        for coarse in masks:
            objs = truth(t)
            obj = max(objs, key=lambda o: (objs[o] & coarse).sum())
            out.append(objs[1] | objs[2] if (t == 3 and obj == 1) else objs[obj])
        n = len(out)
        return RefineResult(
            np.stack(out), np.full(n, 0.9, np.float32), [None] * n, [STATUS_REFINED] * n
        )


class Drifting(VideoBackend):
    name = "drifting"

    def track(self, frames, seeds, direction):
        for t in range(len(frames)):
            yield t, {o: np.roll(m, 5 * max(0, t - 3), axis=1) for o, m in truth(t).items()}


def outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def tile(image: np.ndarray, masks: dict[int, np.ndarray], edges: dict[int, tuple] | None = None):
    out = image.astype(np.float32)
    for obj, mask in masks.items():
        out[mask] = 0.45 * out[mask] + 0.55 * np.array(COLOURS[obj])
        if edges is not None:
            out[outline(ndimage.binary_dilation(mask))] = edges[obj]
    return out.astype(np.uint8)


def main(path: str) -> None:
    grow = ndimage.binary_dilation
    labels = {t: {o: grow(m, iterations=2) for o, m in truth(t).items()} for t in range(0, N, 3)}
    frames = ArrayFrames([frame(t) for t in range(N)])
    settings = VideoSettings(keyframes=100)  # one keyframe per object: frame 0
    result = VideoRefiner(Refiner(), Drifting(), settings).refine_sequence(frames, labels)
    refiner, tracker = Refiner(), Drifting()
    tracked = dict(tracker.track(frames, {}, "both"))
    rows = []
    for t in range(N):
        image = frames.read(t)
        refined = {}
        if t in labels:
            out = refiner.refine(image, np.stack(list(labels[t].values())))
            refined = dict(zip(labels[t], out.masks, strict=True))
        entries = result.frames[t]
        edges = {o: SOURCE_COLOURS.get(e.source, (0, 0, 0)) for o, e in entries.items()}
        kept = {o: e.mask() for o, e in entries.items() if e.source != "absent"}
        rows.append(
            [
                tile(image, labels.get(t, {})),
                tile(image, refined),
                tile(image, tracked[t]),
                tile(image, kept, edges),
            ]
        )
    sheet = Image.new("RGB", (58 + N * (W + GAP), 4 * (H + GAP) + 16), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, name in enumerate(("coarse", "refined", "propagated", "output")):
        draw.text((2, 16 + r * (H + GAP) + H // 2 - 5), name, fill=(0, 0, 0))
    for t in range(N):
        draw.text((58 + t * (W + GAP) + W // 2 - 3, 2), str(t), fill=(0, 0, 0))
        for r in range(4):
            sheet.paste(Image.fromarray(rows[t][r]), (58 + t * (W + GAP), 16 + r * (H + GAP)))
    sheet.save(path)
    for t in range(N):
        print(t, {o: (e.source, e.reason) for o, e in result.frames[t].items()})


if __name__ == "__main__":
    main(
        sys.argv[1]
        if len(sys.argv) > 1
        else str(Path(__file__).parents[1] / "docs/video_sequence.png")
    )
