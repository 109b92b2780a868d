"""Side-by-side timing against the reference implementation (linyq2117/SAMRefiner).

Both run in their own process, one after the other, on the same image, the same coarse
masks and the same random ``sam_vit_b`` weights, with default settings in float32. The
reference is imported from a checkout you provide (its ``sam_refiner.py`` and its bundled
``segment-anything`` fork, which needs the ``FastGeodis`` package); nothing of it is part
of this project.

    python benchmarks/bench_reference.py --reference-repo PATH/TO/SAMRefiner \\
        --reference-python PATH/TO/python-with-FastGeodis
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import DEFAULT_DATA, IMAGES, load_case

CASES = [("480p", 10, 1), ("480p", 10, 5), ("1080p", 40, 1)]

_REFERENCE_CHILD = r"""
import json, sys, time
import numpy as np, torch
repo, weights, image_path, masks_path, iters = sys.argv[1:6]
sys.path[:0] = [repo + "/segment-anything", repo]
from segment_anything import sam_model_registry
from sam_refiner import sam_refiner
torch.set_grad_enabled(False)
sam = sam_model_registry["vit_b"]()
sam.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
sam.eval()
masks = np.load(masks_path).astype(np.uint8)
start = time.perf_counter()
sam_refiner(image_path, [m for m in masks], sam, iters=int(iters))
print(json.dumps({"wall": time.perf_counter() - start}))
"""


def run_ours(weights: Path, image: np.ndarray, masks: np.ndarray, iters: int) -> float:
    from samrefiner import RefineConfig, Refiner, load_model

    model = load_model("sam_vit_b", checkpoint=weights, device="cpu")
    refiner = Refiner(model, RefineConfig(iterations=iters))
    start = time.perf_counter()
    refiner.refine(image, masks)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-repo", type=Path, required=True)
    parser.add_argument("--reference-python", default=sys.executable)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs per side")
    parser.add_argument(
        "--cases",
        nargs="+",
        type=_case,
        default=CASES,
        metavar="SIZE:MASKS:ITERS",
        help="cases to run (default: " + " ".join(f"{s}:{m}:{i}" for s, m, i in CASES) + ")",
    )
    parser.add_argument("--ours-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_child:
        size, count, iters = args.ours_child
        weights = Path(args.reference_repo)  # reused slot: the weights file
        image, masks = load_case(args.data, size, int(count))
        print(json.dumps({"wall": run_ours(weights, image, masks, int(iters))}))
        return

    import torch
    from segment_anything import build_sam_vit_b

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        torch.manual_seed(0)
        weights = tmp_path / "random_vit_b.pth"
        torch.save(build_sam_vit_b().state_dict(), weights)
        columns = ("image", "masks", "iters", "reference s", "ours s", "speed-up")
        print(f"best of {args.repeat} alternating runs each")
        print("  ".join(f"{c:>11}" for c in columns))
        for size, count, iters in args.cases:
            _, masks = load_case(args.data, size, count)
            masks_path = tmp_path / f"{size}_{count}.npy"
            np.save(masks_path, masks)
            ref_cmd = [
                args.reference_python,
                "-c",
                _REFERENCE_CHILD,
                str(args.reference_repo),
                str(weights),
                str(args.data / IMAGES[size][0]),
                str(masks_path),
                str(iters),
            ]
            our_cmd = [
                sys.executable,
                __file__,
                "--reference-repo",
                str(weights),
                "--data",
                str(args.data),
                "--ours-child",
                size,
                str(count),
                str(iters),
            ]
            # Alternate the two so that a drift in machine speed hits both alike.
            ref_walls, our_walls = [], []
            for _ in range(args.repeat):
                ref_walls.append(_wall(ref_cmd))
                our_walls.append(_wall(our_cmd))
            ref_wall, our_wall = min(ref_walls), min(our_walls)
            cells = (
                size,
                count,
                iters,
                f"{ref_wall:.2f}",
                f"{our_wall:.2f}",
                f"{ref_wall / our_wall:.2f}x",
            )
            print("  ".join(f"{c:>11}" for c in cells), flush=True)


def _case(text: str) -> tuple[str, int, int]:
    """argparse type of ``--cases``: ``SIZE:MASKS:ITERS``, e.g. ``1080p:40:1``."""
    try:
        size, count, iters = text.split(":")
        case = (size, int(count), int(iters))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected SIZE:MASKS:ITERS, got {text!r}") from exc
    if size not in IMAGES:
        raise argparse.ArgumentTypeError(f"size must be one of {sorted(IMAGES)}, got {size!r}")
    return case


def _wall(cmd: list[str]) -> float:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["wall"]


if __name__ == "__main__":
    main()
