"""What ``Refiner.refine_batch`` spends per training batch, on the CPU and in the model.

Takes ``--batch`` 854 x 480 frames of the shared DAVIS 2017 test-dev set and up to
``--objects`` coarse masks each (ground-truth objects dilated or eroded by 1-4 px; fewer
objects are padded with ``valid=False``), as ``B x 3 x H x W`` uint8 and ``B x K x H x W``
float probability tensors, refines them ``--repeats`` times after one warm-up, and prints
the seconds per batch of each stage: the model's (encoder, decoder: on ``--device``) and
the CPU's (excavation = prompt mining, postprocess = pasting decoded masks back to full
size, transfer = tensor <-> array copies), and the CPU's share of the batch.

Full-size model with random weights (compute cost does not depend on them); its decoder
output is replaced by object-sized masks (``bench_core.object_sized_outputs``) so that the
later rounds mine prompts from object-sized masks, as with a trained model.

    python benchmarks/bench_refine_batch.py [--model mobile_sam] [--batch 4] [--objects 4]

Run it on a quiet machine: timings on 2 shared cores are noisy.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

# This script's folder is on sys.path when it runs: the core benchmark's helpers.
from bench_core import coarse_masks, object_sized_outputs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SAMREFINER_DATA", REPO.parent / "shared" / "data"))
STAGES = ("encoder", "decoder", "excavation", "postprocess", "transfer")
CPU_STAGES = ("excavation", "postprocess", "transfer")


def load_batch(data: Path, batch: int, objects: int):
    """``(images B x 3 x H x W uint8, probabilities B x K x H x W float32, valid B x K)``."""
    import torch
    from PIL import Image

    from samrefiner.io import read_image

    folder = data / "davis2017_testdev"
    names = sorted(p.stem for p in (folder / "images").glob("*.jpg"))
    images, probs, valid = [], [], []
    for name in names:
        image = read_image(folder / "images" / f"{name}.jpg")
        if image.shape[:2] != (480, 854):
            continue
        ids = np.asarray(Image.open(folder / "masks" / f"{name}.png"))
        count = min(objects, len(np.unique(ids)) - 1)
        masks = np.zeros((objects, *ids.shape), dtype=np.float32)
        masks[:count] = np.where(coarse_masks(ids, count), 0.9, 0.1)
        images.append(torch.from_numpy(image.copy()).permute(2, 0, 1))
        probs.append(torch.from_numpy(masks))
        valid.append(torch.arange(objects) < count)
        if len(images) == batch:
            break
    if len(images) < batch:
        raise SystemExit(f"{folder}: fewer than {batch} 854 x 480 frames")
    return torch.stack(images), torch.stack(probs), torch.stack(valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="mobile_sam")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--outputs",
        choices=("object-sized", "model"),
        default="object-sized",
        help="object-sized decoder outputs (see bench_core.py), or the random model's own",
    )
    args = parser.parse_args()

    import torch

    from samrefiner import RefineConfig, Refiner, load_model

    torch.manual_seed(0)
    images, probs, valid = load_batch(args.data, args.batch, args.objects)
    model = load_model(args.model, pretrained=False, device=args.device)
    if args.outputs == "object-sized":
        model = object_sized_outputs(model)
    refiner = Refiner(model, RefineConfig(iterations=args.iterations))
    images, probs, valid = images.to(args.device), probs.to(args.device), valid.to(args.device)
    refiner.refine_batch(images, probs, valid)  # warm-up
    totals = dict.fromkeys(STAGES, 0.0)
    wall = 0.0
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = refiner.refine_batch(images, probs, valid, alpha=0.5)
        wall += time.perf_counter() - start
        for stage in STAGES:
            totals[stage] += result.timings[stage]
    per = {stage: seconds / args.repeats for stage, seconds in totals.items()}
    wall /= args.repeats
    objects = int(valid.sum())
    cpu = sum(per[s] for s in CPU_STAGES)
    model_s = per["encoder"] + per["decoder"]
    print(
        f"{args.model} (random weights, {args.outputs} outputs) on {args.device}, "
        f"torch threads {torch.get_num_threads()}: B={args.batch} images 854x480, "
        f"{objects} objects (K={args.objects}), {args.iterations} iterations"
    )
    print("| stage | runs on | s / batch | ms / object |")
    print("|---|---|---|---|")
    for stage in STAGES:
        where = "CPU" if stage in CPU_STAGES else args.device
        print(f"| {stage} | {where} | {per[stage]:.3f} | {1000 * per[stage] / objects:.1f} |")
    print(f"| model (encoder + decoder) | {args.device} | {model_s:.3f} | |")
    print(f"| CPU (excavation + postprocess + transfer) | CPU | {cpu:.3f} | |")
    print(f"| wall | | {wall:.3f} | |")
    print(f"CPU share of the batch: {100 * cpu / wall:.0f}%")


if __name__ == "__main__":
    main()
