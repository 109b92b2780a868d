"""SAMRefiner++ IoU adaption: time per image and top-1 agreement before / after.

On the shared DAVIS-2016 images (one object each) with coarse masks synthesised from the
ground truth (seeded, as ``samrefiner make-coarse`` does), trains an IoU adapter with the
default settings and prints:

* seconds per image to encode (cold embedding cache), to prepare the training objects
  from the cache (decode + paste the candidates), and per training epoch;
* the same run again over a warm cache (nothing encoded): seconds per image;
* top-1 agreement (predicted-best == coarse-best) on the training and held-out images,
  before and after.

The model is a full-size ViT-B with random weights by default: timings are real, but
with random weights only the agreement figures mean anything (refined-mask quality does
not). Pass ``--checkpoint`` (or leave out ``--random-weights``) for real weights.

    python benchmarks/bench_adaption.py                         # ViT-B, random, 40 images
    python benchmarks/bench_adaption.py --quick                 # tiny model, 4 images
    python benchmarks/bench_adaption.py --model sam_vit_h --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SAMREFINER_DATA", REPO.parent / "shared" / "data"))
FOLDER = "davis2016"


def load_samples(data: Path, count: int, seed: int) -> list:
    """The first ``count`` DAVIS-2016 images (by name) with seeded coarse masks."""
    from samrefiner.adaption import Sample
    from samrefiner.io import read_image, read_mask
    from samrefiner.measure.coarse import coarsen_masks

    masks_dir = data / FOLDER / "masks"
    samples = []
    for path in sorted(masks_dir.glob("*.png"))[:count]:
        gt = read_mask(path)[None]
        coarse, _ = coarsen_masks(gt, seed, path.stem)
        image = read_image(data / FOLDER / "images" / f"{path.stem}.jpg")
        samples.append(Sample(path.stem, image, coarse, gt=[gt[0]]))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--checkpoint", default=None, help="real weights (default: random)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--images", type=int, default=40, metavar="N")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="coarse masks, split, LoRA")
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument(
        "--gt", action="store_true", help="also GT top-1 accuracy and refined IoU (slower)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny random model and 4 images (a smoke run)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if not (args.data / FOLDER / "masks").is_dir():
        sys.exit(f"shared data not found at {args.data} (set SAMREFINER_DATA or --data)")
    if args.quick:
        args.model, args.images = "samrefiner.testing:tiny_sam", min(args.images, 4)

    import torch

    from samrefiner import RefineConfig, load_model
    from samrefiner.adaption import AdaptConfig, EmbeddingCache, ListSource, train_adapter

    samples = load_samples(args.data, args.images, args.seed)
    if not args.gt:
        for s in samples:
            s.gt = None
    source = ListSource(samples)
    config = AdaptConfig(
        epochs=args.epochs, seed=args.seed, held_out=args.held_out, dtype=args.dtype
    )
    pretrained = args.checkpoint is not None
    # Random weights are drawn from a seeded generator, so the warm re-run below builds the
    # same weights (same fingerprint, so the embedding cache hits) as the first run.
    torch.manual_seed(args.seed)
    backend = load_model(
        args.model, checkpoint=args.checkpoint, pretrained=pretrained, device=args.device
    )
    print(
        f"{args.model} ({'weights ' + args.checkpoint if pretrained else 'random weights'}), "
        f"{args.device}, {args.dtype}, {len(samples)} DAVIS-2016 images, {args.epochs} epoch(s)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "cache", max_bytes=64 << 30)
        eval_config = RefineConfig(dtype=args.dtype)
        start = time.perf_counter()
        cold = train_adapter(
            backend, source, Path(tmp) / "a", config, cache=cache, eval_config=eval_config
        )
        cold_total = time.perf_counter() - start
        torch.manual_seed(args.seed)
        rerun = load_model(
            args.model, checkpoint=args.checkpoint, pretrained=pretrained, device=args.device
        )
        start = time.perf_counter()
        warm = train_adapter(
            rerun, source, Path(tmp) / "b", config, cache=cache, eval_config=eval_config
        )
        warm_total = time.perf_counter() - start
    report, n = cold.info.report, len(samples)
    seconds = report["seconds"]
    figures = {
        "model": args.model,
        "random_weights": not pretrained,
        "device": args.device,
        "dtype": args.dtype,
        "images": n,
        "objects": report["train"]["objects"] + report["held_out"]["objects"],
        "encode_s_per_image": seconds["encode"] / max(report["encoded_images"], 1),
        "prepare_s_per_image": seconds["prepare"] / n,
        "train_s_per_epoch_per_image": seconds["train"] / args.epochs / n,
        "cold_run_s_per_image": cold_total / n,
        "warm_run_s_per_image": warm_total / n,
        "warm_encoded_images": warm.info.report["encoded_images"],
        "report": report,
    }
    print(f"\n{'stage':34} {'s / image':>10} {'images / s':>11}")
    for label, key in (
        ("encode (cold cache)", "encode_s_per_image"),
        ("prepare from cache (decode+paste)", "prepare_s_per_image"),
        ("train, per epoch", "train_s_per_epoch_per_image"),
        ("whole run, cold cache", "cold_run_s_per_image"),
        ("whole run, warm cache", "warm_run_s_per_image"),
    ):
        value = figures[key]
        rate = f"{1 / value:11.2f}" if value > 0 else f"{'-':>11}"
        print(f"{label:34} {value:10.4f} {rate}")
    print(f"(warm re-run encoded {figures['warm_encoded_images']} images)")
    print(f"\n{'split':9} {'images':>6} {'objects':>7}  metric{'':26} {'before':>7} {'after':>7}")
    metrics = [("top-1 agreement w/ coarse", "agreement")]
    if args.gt:
        metrics += [("top-1 accuracy vs GT", "gt_top1"), ("mean refined IoU vs GT", "refined_iou")]
    for split in ("train", "held_out"):
        part = report[split]
        for label, key in metrics:
            if f"{key}_before" in part:
                print(
                    f"{split:9} {part['images']:6d} {part['objects']:7d}  {label:32} "
                    f"{part[key + '_before']:7.3f} {part[key + '_after']:7.3f}"
                )
    if not pretrained:
        print(
            "\nRandom weights: only the agreement figures are meaningful (the candidates "
            "themselves are not), and the timings."
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
