"""Prompt excavation alone: one thread against several, side by side.

Mines the prompts of the coarse masks of ``bench_core`` (ground-truth objects, dilated or
eroded) on the 854x480 and 1920x1080 images, as one refinement round does (frame built
and masks validated beforehand), with one thread and with the automatic thread count of
``RefineConfig``, alternating the two so that drift in machine speed hits both alike, and
prints the best time of each. No model is involved.

    python benchmarks/bench_excavation.py --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import DEFAULT_DATA, IMAGES, load_case


def main() -> None:
    from samrefiner import RefineConfig
    from samrefiner.excavation import Excavator
    from samrefiner.geometry import Frame
    from samrefiner.io.masks import as_mask_stack

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", nargs="+", default=list(IMAGES), choices=list(IMAGES))
    parser.add_argument("--masks", nargs="+", type=int, default=[10, 40])
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per setting")
    args = parser.parse_args()
    if not (args.data / "MANIFEST.tsv").is_file():
        sys.exit(f"shared data not found at {args.data} (set SAMREFINER_DATA or --data)")

    config = RefineConfig()
    settings = {"1 thread": 1, "automatic": config.thread_count()}
    print(f"automatic = {config.thread_count()} threads; best of {args.repeat} runs each")
    print(f"{'image':6} {'masks':>5} {'1 thread s':>11} {'automatic s':>12} {'speed-up':>9}")
    for size in args.sizes:
        for count in args.masks:
            _, masks = load_case(args.data, size, count)
            stack = list(as_mask_stack(masks))
            excavator = Excavator(Frame.resize_longest_side(masks.shape[1:]), config)
            best = dict.fromkeys(settings, float("inf"))
            for _ in range(args.repeat):
                for name, threads in settings.items():
                    start = time.perf_counter()
                    excavator.many(stack, threads)
                    best[name] = min(best[name], time.perf_counter() - start)
            one, auto = best["1 thread"], best["automatic"]
            print(f"{size:6} {count:5d} {one:11.3f} {auto:12.3f} {one / auto:8.2f}x")


if __name__ == "__main__":
    main()
