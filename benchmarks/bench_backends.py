"""Every backend side by side: encoder, decoder, memory and whole-refine cost.

For each model in ``--models`` and each dtype in ``--dtype`` (full-size random weights:
compute cost does not depend on the weights), in its own process so that peak RSS
belongs to that configuration alone, prints:

* encoder seconds for a 1024 x 1024 input (median of ``--repeat`` runs after a warm-up);
* decoder milliseconds per prompt at the automatic decoder batch (from a 1-iteration
  refine of the 854x480 frame with 10 masks);
* whole ``Refiner.refine`` seconds of that frame with 10 masks at 1 and 5 iterations
  (encoder included), and images/s of the encoder alone and of the 1-iteration refine;
* the share of the 5-iteration refine spent outside the network (excavation +
  post-processing over encoder + decoder);
* peak RSS of the process.

The frame is the shared data's 854x480 DAVIS image with 10 coarse masks (as in
``bench_core.py``); without the shared data a synthetic frame of the same size is used
and the output says so. ``--outputs object-sized`` (default) keeps masks object-sized
across rounds as a trained model does (see ``bench_core.object_sized_outputs``).

    python benchmarks/bench_backends.py                                   # CPU, 2 threads
    python benchmarks/bench_backends.py --device cuda --dtype bfloat16 \\
        --models sam_vit_h sam2.1_hiera_large
    python benchmarks/bench_backends.py --quick --models samrefiner.testing:tiny_sam2

Run it on a quiet machine: timings on 2 shared cores are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import DEFAULT_DATA, load_case, object_sized_outputs, peak_rss_mb

DEFAULT_MODELS = [
    "sam_vit_b",
    "sam_hq_vit_b",
    "mobile_sam",
    "sam_hq_vit_tiny",
    "sam2.1_hiera_tiny",
    "sam2.1_hiera_large",
]
MASKS = 10


def synthetic_case() -> tuple[np.ndarray, np.ndarray]:
    """An 854x480 noise image with 10 elliptical masks (when the shared data is absent)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 854, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:480, :854]
    masks = []
    for _ in range(MASKS):
        cy, cx = rng.uniform([60, 80], [420, 774])
        ry, rx = rng.uniform([20, 30], [90, 140])
        masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return image, np.stack(masks)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_single(args: argparse.Namespace) -> dict:
    """One model and dtype in this process."""
    import torch

    from samrefiner import RefineConfig, Refiner, load_model

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if (args.data / "MANIFEST.tsv").is_file():
        image, masks = load_case(args.data, "480p", MASKS)
    else:
        image, masks = synthetic_case()
    model = load_model(args.model, pretrained=False, device=args.device)
    if args.outputs == "object-sized":
        model = object_sized_outputs(model)
    square = np.random.default_rng(1).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    runs = []
    for _ in range(args.repeat + (0 if args.quick else 1)):  # first run warms up
        sync(args.device)
        start = time.perf_counter()
        model.encode(square, args.dtype)
        sync(args.device)
        runs.append(time.perf_counter() - start)
    encoder = float(np.median(runs[-args.repeat :]))
    record: dict = {"encoder_1024": encoder}
    for iterations in args.iterations:
        refiner = Refiner(model, RefineConfig(iterations=iterations, dtype=args.dtype))
        sync(args.device)
        start = time.perf_counter()
        result = refiner.refine(image, masks)
        sync(args.device)
        wall = time.perf_counter() - start
        t = result.timings
        decoded = int(result.iterations.sum())
        record[f"refine_{iterations}"] = wall
        record[f"decoder_ms_per_prompt_{iterations}"] = 1000 * t["decoder"] / max(decoded, 1)
        record[f"outside_share_{iterations}"] = (t["excavation"] + t["postprocess"]) / (
            t["encoder"] + t["decoder"]
        )
    record["peak_rss_mb"] = peak_rss_mb()
    return record


def spawn(args: argparse.Namespace, model: str, dtype: str) -> dict:
    cmd = [sys.executable, __file__, "--single", "--models", model, "--dtype", dtype]
    cmd += ["--device", args.device, "--threads", str(args.threads), "--data", str(args.data)]
    cmd += ["--repeat", str(args.repeat), "--outputs", args.outputs]
    cmd += ["--iterations", *map(str, args.iterations)]
    if args.quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"]
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="timed encoder runs (median)")
    parser.add_argument("--iterations", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--outputs",
        choices=["model", "object-sized"],
        default="object-sized",
        help="candidates of the random model itself, or object-sized ones (bench_core.py)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: no warm-up, one encoder run, one 1-iteration refine",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.iterations = 1, [1]
    if args.single:
        args.model, args.dtype = args.models[0], args.dtype[0]
        print(json.dumps(run_single(args)))
        return

    shared = (args.data / "MANIFEST.tsv").is_file()
    frame = "shared 854x480 DAVIS frame" if shared else "SYNTHETIC 854x480 frame (no shared data)"
    print(
        f"device {args.device}, torch threads {args.threads}, {frame}, {MASKS} masks, "
        f"outputs {args.outputs}, random weights"
    )
    its = args.iterations
    header = f"{'model':24} {'dtype':8} {'enc 1024':>9} {'dec/prompt':>10} "
    header += " ".join(f"{f'refine {i}it':>10}" for i in its)
    header += f" {'enc img/s':>9} {f'ref{its[0]} img/s':>10} {'outside':>8} {'peak RSS':>9}"
    print(header)
    rows = []
    for model in args.models:
        for dtype in args.dtype:
            r = spawn(args, model, dtype)
            rows.append({"model": model, "dtype": dtype, **r})
            if "error" in r:
                print(f"{model:24} {dtype:8} failed: {r['error']}")
                continue
            line = f"{model:24} {dtype:8} {r['encoder_1024']:8.2f}s "
            line += f"{r[f'decoder_ms_per_prompt_{its[0]}']:8.1f}ms "
            line += " ".join(f"{r[f'refine_{i}']:9.2f}s" for i in its)
            line += f" {1 / r['encoder_1024']:9.2f} {1 / r[f'refine_{its[0]}']:10.2f}"
            line += f" {r[f'outside_share_{its[-1]}']:8.1%} {r['peak_rss_mb']:7.0f}MB"
            print(line)
    print(
        "enc 1024: encoder seconds for a 1024 px input; dec/prompt: decoder ms per prompt at "
        "the automatic batch; refine Nit: whole refine (encoder included) of the frame; "
        f"outside: (excavation + post-processing) / (encoder + decoder) at {its[-1]} "
        "iteration(s)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
