"""Stage timings and peak memory of the core refiner on full-size SAM.

For an 854x480 and a 1920x1080 image from the shared data, with 1, 10 and 40 coarse masks
(ground-truth objects, dilated or eroded by a few pixels), prints the seconds spent in the
encoder, excavation, decoder and post-processing, the share of excavation +
post-processing in encoder + decoder time, and the peak RSS of the whole run next to the
peak of a run that only encodes. Each measurement runs in its own process, so peak RSS
belongs to that configuration alone. Random weights: compute cost does not depend on them.

    python benchmarks/bench_core.py                      # all cases, 5 iterations
    python benchmarks/bench_core.py --iterations 1 --masks 40 --sizes 1080p --margin 0.1

Run it on a quiet machine: timings on 2 shared cores are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SAMREFINER_DATA", REPO.parent / "shared" / "data"))
IMAGES = {
    "480p": ("davis2017_val/images/bmx-trees_00000.jpg", "davis2017_val/masks/bmx-trees_00000.png"),
    "1080p": (
        "highres/images/1001_3iEIq5HBY1s_00002058.jpg",
        "highres/masks/1001_3iEIq5HBY1s_00002058.png",
    ),
}


def coarse_masks(ids: np.ndarray, count: int) -> np.ndarray:
    """``count`` coarse masks from an id map: objects cycled, dilated / eroded by 1-4 px."""
    from scipy import ndimage

    objects = [ids == v for v in np.unique(ids) if v != 0]
    objects.sort(key=lambda m: -int(m.sum()))
    out = []
    for k in range(count):
        base = objects[k % len(objects)]
        steps = 1 + k % 4
        grown = ndimage.binary_dilation(base, iterations=steps)
        shrunk = ndimage.binary_erosion(base, iterations=steps)
        mask = grown if k % 2 == 0 or not shrunk.any() else shrunk
        out.append(mask)
    return np.stack(out)


def load_case(data: Path, size: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from samrefiner.io import read_image

    image_rel, mask_rel = IMAGES[size]
    image = read_image(data / image_rel)
    ids = np.asarray(Image.open(data / mask_rel))
    return image, coarse_masks(ids, count)


def object_sized_outputs(backend):
    """Wrap ``backend``: real decoder compute, object-sized candidates.

    With random weights SAM returns masks covering about 3/4 of the frame from the first
    round on, so later rounds would time excavation and post-processing on full-frame
    masks, which a trained SAM does not produce. This wrapper still runs (and times) the
    real decoder, then returns as every candidate the prompt's own mask logits, shifted
    by one low-res cell per round (left / right alternately) so that masks keep
    changing like a trained model's and never reach a fixed point.
    """
    import threading

    import torch

    from samrefiner.models.base import Backend, Decoded

    class ObjectSized(Backend):
        name = f"{backend.name}+object-sized-outputs"

        def __init__(self) -> None:
            # Per thread: the runner's refining lanes decode several images at once.
            self.counts = threading.local()

        device = property(lambda self: backend.device)
        input_size = property(lambda self: backend.input_size)
        low_res_size = property(lambda self: backend.low_res_size)

        def frame(self, original_size):
            return backend.frame(original_size)

        def encode(self, image, dtype="float32"):
            return backend.encode(image, dtype)

        def encode_batch(self, images, dtype="float32"):
            return backend.encode_batch(images, dtype)

        def decode(
            self,
            embedding,
            *,
            point_coords,
            point_labels,
            boxes,
            mask_input,
            multimask_output=True,
            dtype="float32",
        ):
            real = backend.decode(
                embedding,
                point_coords=point_coords,
                point_labels=point_labels,
                boxes=boxes,
                mask_input=mask_input,
                multimask_output=multimask_output,
                dtype=dtype,
            )
            calls = self.counts.__dict__.get("calls", 0) + 1
            self.counts.calls = calls
            # On the model's device, like the real outputs (the refiner indexes one by the other).
            shifted = torch.roll(
                mask_input.to(real.low_res_logits.device),
                shifts=1 if calls % 2 else -1,
                dims=-1,
            )
            return Decoded(shifted.expand(-1, 3, -1, -1).contiguous(), real.iou_predictions)

    return ObjectSized()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_single(args: argparse.Namespace) -> dict:
    """One configuration in this process; returns timings and peak RSS."""
    import torch

    from samrefiner import RefineConfig, Refiner, load_model

    torch.manual_seed(0)
    image, masks = load_case(args.data, args.size, args.count)
    model = load_model(args.model, pretrained=False, device="cpu")
    if args.outputs == "object-sized":
        model = object_sized_outputs(model)
    config = RefineConfig(iterations=args.iterations, margin=args.margin, dtype=args.dtype)
    refiner = Refiner(model, config)
    before = peak_rss_mb()
    start = time.perf_counter()
    embedding = refiner.encode(image)
    encoder = time.perf_counter() - start
    record = {"encoder": encoder, "rss_after_encoder_mb": peak_rss_mb(), "rss_model_mb": before}
    if args.stage == "all":
        start = time.perf_counter()
        result = refiner.refine(image, masks, embedding=embedding)
        record["refine_wall"] = time.perf_counter() - start
        record.update({k: v for k, v in result.timings.items() if k != "encoder"})
        record["iterations_run"] = int(result.iterations.sum())
    record["peak_rss_mb"] = peak_rss_mb()
    if args.stage == "all":
        # Share of the frame the final masks cover: random weights give near full frames.
        record["mask_cover"] = float(np.count_nonzero(result.masks) / result.masks.size)
    return record


def spawn(args: argparse.Namespace, size: str, count: int, stage: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--single",
        "--size",
        size,
        "--count",
        str(count),
        "--stage",
        stage,
        "--iterations",
        str(args.iterations),
        "--margin",
        str(args.margin),
        "--model",
        args.model,
        "--dtype",
        args.dtype,
        "--data",
        str(args.data),
        "--outputs",
        args.outputs,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--sizes", nargs="+", default=list(IMAGES), choices=list(IMAGES))
    parser.add_argument("--masks", nargs="+", type=int, default=[1, 10, 40])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--margin", type=float, default=0.0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--outputs",
        choices=["model", "object-sized"],
        default="model",
        help="'model': the random model's own candidates (near full-frame masks after "
        "round 1); 'object-sized': real decoder compute, object-sized candidates (see "
        "object_sized_outputs)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    # Internal: one measurement in a child process.
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=["encode", "all"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(run_single(args)))
        return
    if not (args.data / "MANIFEST.tsv").is_file():
        sys.exit(f"shared data not found at {args.data} (set SAMREFINER_DATA or --data)")

    print(
        f"model {args.model} (random weights), iterations {args.iterations}, "
        f"margin {args.margin}, dtype {args.dtype}, outputs {args.outputs}, "
        f"torch threads {torch_threads()}"
    )
    header = (
        f"{'image':6} {'masks':>5} {'encoder':>8} {'excav':>7} {'decoder':>8} {'post':>6} "
        f"{'(ex+post)/(enc+dec)':>20} {'peak RSS':>9} {'enc-only RSS':>12} {'delta':>7} "
        f"{'cover':>6}"
    )
    print(header)
    rows = []
    for size in args.sizes:
        encode_only = spawn(args, size, 1, "encode")
        for count in args.masks:
            r = spawn(args, size, count, "all")
            share = (r["excavation"] + r["postprocess"]) / (r["encoder"] + r["decoder"])
            delta = r["peak_rss_mb"] - encode_only["peak_rss_mb"]
            row = {
                "image": size,
                "masks": count,
                **r,
                "share": share,
                "encoder_only_peak_rss_mb": encode_only["peak_rss_mb"],
                "rss_delta_mb": delta,
            }
            rows.append(row)
            print(
                f"{size:6} {count:5d} {r['encoder']:8.2f} {r['excavation']:7.2f} "
                f"{r['decoder']:8.2f} {r['postprocess']:6.2f} {share:19.1%} "
                f"{r['peak_rss_mb']:7.0f}MB {encode_only['peak_rss_mb']:10.0f}MB {delta:5.0f}MB "
                f"{r['mask_cover']:6.0%}"
            )
    print(
        "cover: mean share of the frame the final masks cover. A random-weight SAM returns "
        "ragged masks over most of the frame, so with --outputs model later rounds time "
        "full-frame excavation; --outputs object-sized keeps masks object-sized "
        "(docs/performance.md)."
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
