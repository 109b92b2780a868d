"""Cost of ``samrefiner video`` against per-frame image refinement of the same frames.

A synthetic ``--size`` sequence (two textured objects moving over a noise background,
each frame generated when it is read, so the input costs no memory) is refined three
ways, each in a process of its own so that its peak resident memory is its own:

* ``image``: every frame refined by the image refiner with one iteration (the baseline);
* ``video``: the video method with labels on every ``--every``-th frame (1: dense),
  step 1 with one iteration, SAM 2.1's video predictor propagating both ways;
* ``none``: the video method with ``--propagate none`` (its per-frame output).

Prints frames/s and peak RSS for each ``--frames`` length, and for ``video`` the seconds
spent in the model's parts (image encoders, memory attention, memory encoder, decoder).
The model is the full-size architecture with random weights (the cost is honest,
quality is not measurable):

    python benchmarks/bench_video.py --frames 100,1000 [--size 854x480] [--every 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from samrefiner.video.frames import FrameSource


class SyntheticFrames(FrameSource):
    """``count`` frames of ``size``, generated on read (deterministic per index)."""

    where = "synthetic"

    def __init__(self, count: int, size: tuple[int, int]) -> None:
        self.count = count
        self._size = size
        rng = np.random.default_rng(0)
        self.background = rng.integers(0, 80, (*size, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return self.count

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def masks(self, t: int) -> dict[int, np.ndarray]:
        h, w = self._size
        out = {}
        for obj, (y, speed, side) in {1: (h // 4, 3, h // 4), 2: (h // 2, -5, h // 5)}.items():
            x = int((w // 3 + speed * t) % (w + side)) - side
            mask = np.zeros(self._size, dtype=bool)
            mask[y : y + side, max(0, x) : max(0, x + side)] = True
            out[obj] = mask
        out[2] &= ~out[1]
        return {o: m for o, m in out.items() if m.any()}

    def _decode(self, index: int) -> np.ndarray:
        frame = self.background.copy()
        for obj, mask in self.masks(index).items():
            frame[mask] = (200, 60, 60) if obj == 1 else (60, 200, 60)
        return frame


def time_modules(modules: dict[str, object]) -> dict[str, float]:
    """Seconds spent in each named ``torch.nn.Module``'s forward, filled as they run."""
    spent = dict.fromkeys(modules, 0.0)
    for name, module in modules.items():
        started: list[float] = []
        module.register_forward_pre_hook(lambda *_, s=started: s.append(time.perf_counter()))

        def done(*_, name=name, started=started):
            spent[name] += time.perf_counter() - started.pop()

        module.register_forward_hook(done)
    return spent


def measure(mode: str, frames: int, size: tuple[int, int], every: int, model: str) -> dict:
    """One measurement, in this process; for a SAM 2.1 video run, also the seconds spent
    in the image encoders (step 1 and re-prompting; the predictor's) and the predictor's
    memory attention, memory encoder and mask decoder."""
    import torch

    from samrefiner import Refiner
    from samrefiner.config import RefineConfig
    from samrefiner.models import load_model
    from samrefiner.video import VideoRefiner, VideoSettings, video_backend_for

    torch.manual_seed(0)
    backend = load_model(model, pretrained=False, device="cpu")
    refiner = Refiner(backend, RefineConfig(iterations=1))
    source = SyntheticFrames(frames, size)
    parts: dict[str, float] = {}
    start = time.perf_counter()
    if mode == "image":
        for t in range(frames):
            masks = source.masks(t)
            if masks:
                refiner.refine(source.read(t), np.stack(list(masks.values())))
    else:
        settings = VideoSettings(propagate="both" if mode == "video" else "none")
        video = video_backend_for(backend) if mode == "video" else None
        predictor = getattr(video, "predictor", None)
        if predictor is not None:
            parts = time_modules(
                {
                    "encoder (step 1, re-prompts)": backend.model.image_encoder,
                    "encoder (predictor)": predictor.image_encoder,
                    "memory attention": predictor.memory_attention,
                    "memory encoder": predictor.memory_encoder,
                    "mask decoder (predictor)": predictor.sam_mask_decoder,
                }
            )
        labels = {t: source.masks(t) for t in range(0, frames, every)}
        VideoRefiner(refiner, video, settings).refine_sequence(source, labels)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "frames": frames,
        "seconds": seconds,
        "peak_rss_mib": peak_kib / 1024,
        "parts": parts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="100", help="sequence lengths, comma-separated")
    parser.add_argument("--size", default="854x480", help="W x H of the frames")
    parser.add_argument("--every", type=int, default=5, help="labels on every N-th frame")
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--modes", default="image,none,video")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child's job
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.one is not None:
        mode, frames = args.one.split(":")
        print(json.dumps(measure(mode, int(frames), (h, w), args.every, args.model)))
        return
    print(f"{args.model}, random weights, CPU, {w}x{h}, labels every {args.every} frames")
    print(f"{'frames':>7} {'mode':>6} {'seconds':>9} {'frames/s':>9} {'peak RSS MiB':>13}")
    for frames in (int(v) for v in args.frames.split(",")):
        for mode in args.modes.split(","):
            child = [sys.executable, __file__, "--one", f"{mode}:{frames}"]
            child += ["--size", args.size, "--every", str(args.every), "--model", args.model]
            done = subprocess.run(child, check=True, capture_output=True, text=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{frames:>7} {mode:>6} {row['seconds']:>9.1f} "
                f"{frames / row['seconds']:>9.2f} {row['peak_rss_mib']:>13.0f}",
                flush=True,
            )
            if row["parts"]:
                print("        " + ", ".join(f"{k} {v:.1f} s" for k, v in row["parts"].items()))


if __name__ == "__main__":
    main()
