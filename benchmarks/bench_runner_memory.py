"""Peak memory of a dataset run on one large image with many objects.

Writes a synthetic dataset (one W x H image with N objects: an instance-id map, or a COCO
file of RLE annotations), then, in this process, loads the model and refines one object
of the image (the model's own footprint: weights, encoder activations, the decoded
image), and then runs the dataset runner over the whole dataset. Peak RSS is read after
each step; the difference is what the runner adds on top of the model. The runner holds
masks as box-local crops, so it should not scale with N x H x W (printed for reference:
the size of the masks as full-frame stacks).

    python benchmarks/bench_runner_memory.py                       # 4000x3000, 200 objects
    python benchmarks/bench_runner_memory.py --format coco --device cuda --dtype bfloat16
    python benchmarks/bench_runner_memory.py --model samrefiner.testing:tiny_sam \\
        --width 400 --height 300 --objects 20                        # a quick check

Target: at most 1024 MiB above the model's footprint for 4000x3000 with 200 objects.
Random weights by default (--pretrained to load them). A randomly initialised SAM returns
masks covering most of the frame, which a trained one does not; by default the decoder
still runs but each candidate is the prompt's own, object-sized mask (``--outputs
object-sized``, as in ``bench_core.py``); ``--outputs model`` keeps the model's masks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_MIB = 1024


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux: KiB; macOS: bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def generate(root: Path, width: int, height: int, objects: int, fmt: str, seed: int) -> None:
    """The synthetic dataset: ``images/big.jpg`` and ``labels/big.png`` or ``ann.json``."""
    from PIL import Image

    from samrefiner.io.coco import encode_rle
    from samrefiner.io.label_maps import LabelMap, write_label_map

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack(
        [(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)), (xx + yy) % 256],
        axis=-1,
    ).astype(np.uint8)
    image ^= rng.integers(0, 32, image.shape, dtype=np.uint8)
    Image.fromarray(image).save(root / "images" / "big.jpg", quality=90)
    del image

    # Objects: ellipses on a grid of cells, of varied sizes (some large, most small).
    ids = np.zeros((height, width), np.uint16)
    cols = int(np.ceil(np.sqrt(objects * width / height)))
    rows = int(np.ceil(objects / cols))
    ch, cw = height // rows, width // cols
    for k in range(objects):
        r, c = divmod(k, cols)
        scale = 0.9 if k % 10 == 0 else rng.uniform(0.2, 0.6)
        ry, rx = max(2, int(ch * scale / 2)), max(2, int(cw * scale / 2))
        cy, cx = r * ch + ch // 2, c * cw + cw // 2
        y0, y1, x0, x1 = max(0, cy - ry), min(height, cy + ry), max(0, cx - rx), min(width, cx + rx)
        sub_y, sub_x = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        inside = ((sub_y - cy) / ry) ** 2 + ((sub_x - cx) / rx) ** 2 <= 1.0
        ids[y0:y1, x0:x1][inside] = k + 1
    del yy, xx
    if fmt == "instances":
        write_label_map(root / "labels" / "big.png", LabelMap(ids, "I;16", None))
        return
    annotations = []
    for k in range(objects):
        mask = ids == k + 1
        annotations.append(
            {"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(mask)}
        )
    data = {
        "images": [{"id": 1, "file_name": "big.jpg", "width": width, "height": height}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }
    (root / "ann.json").write_text(json.dumps(data))


def measure(args: argparse.Namespace, root: Path) -> dict[str, float]:
    from samrefiner import RefineConfig, Refiner
    from samrefiner.io import load_coco, read_image
    from samrefiner.models import load_model
    from samrefiner.runner import (
        CocoDataset,
        InstanceDataset,
        RunLock,
        RunOptions,
        RunState,
        run_dataset,
    )

    start = peak_rss_mib()
    model = load_model(
        args.model, pretrained=args.pretrained, device=args.device, checkpoint=args.checkpoint
    )
    if args.outputs == "object-sized":
        from bench_core import object_sized_outputs

        model = object_sized_outputs(model)
    config = RefineConfig(iterations=args.iterations, dtype=args.dtype)
    refiner = Refiner(model, config)
    # The model's own footprint: weights, one encode of this image, one object decoded.
    image = read_image(root / "images" / "big.jpg")
    one = np.zeros((1, *image.shape[:2]), bool)
    one[0, : image.shape[0] // 4, : image.shape[1] // 4] = True
    refiner.refine(image, one)
    del image, one
    model_peak = peak_rss_mib()

    out = root / ("out" if args.format == "instances" else "out.json")
    options = RunOptions(
        workers=args.workers,
        prefetch=args.prefetch,
        progress=False,
        frame_bytes=args.frame_mb * 2**20,
    )
    if args.format == "instances":
        dataset: object = InstanceDataset(root / "images", root / "labels", out, ignore=None)
    else:
        dataset = CocoDataset(load_coco(root / "ann.json"), root / "images", out)
    started = time.perf_counter()
    with RunLock(out):
        state = RunState(out)
        state.start({"benchmark": "runner memory"}, resume=False)
        summary = run_dataset(dataset, refiner, state, options)  # type: ignore[arg-type]
        state.remove()
    return {
        "python_mib": start,
        "model_peak_mib": model_peak,
        "run_peak_mib": peak_rss_mib(),
        "wall_s": time.perf_counter() - started,
        "refined": summary.masks_refined,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--format", choices=("instances", "coco"), default="instances")
    parser.add_argument("--model", default="sam_vit_b", help="model name or builder")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--pretrained", action="store_true", help="load the real weights")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: automatic)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument(
        "--outputs",
        choices=("object-sized", "model"),
        default="object-sized",
        help="refined masks: the prompts' own (object-sized; default) or the model's",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--frame-mb", type=int, default=64, help="RunOptions.frame_bytes in MiB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.generate is not None:  # the child process that writes the dataset
        generate(args.generate, args.width, args.height, args.objects, args.format, args.seed)
        return 0

    with tempfile.TemporaryDirectory(prefix="samrefiner-mem-") as tmp:
        root = Path(tmp) / "data"
        # Written by another process, so that generating it does not count here.
        subprocess.run(
            [sys.executable, __file__, "--generate", str(root), *(argv or sys.argv[1:])],
            check=True,
        )
        figures = measure(args, root)
    stacks = args.objects * args.width * args.height / 2**20
    added = figures["run_peak_mib"] - figures["model_peak_mib"]
    print(
        f"image {args.width}x{args.height}, {args.objects} objects ({args.format}), "
        f"model {args.model} on {args.device or 'auto'} ({args.dtype}), "
        f"{args.iterations} iteration(s), outputs {args.outputs}, prefetch {args.prefetch}, "
        f"workers {args.workers}"
    )
    print(f"masks as N x H x W stacks would take:  {stacks:9.0f} MiB (reference)")
    print(f"peak RSS after the model's footprint:  {figures['model_peak_mib']:9.0f} MiB")
    print(f"peak RSS after the dataset run:        {figures['run_peak_mib']:9.0f} MiB")
    print(f"added by the runner:                   {added:9.0f} MiB (target <= {TARGET_MIB})")
    print(f"objects refined: {figures['refined']}; wall time {figures['wall_s']:.1f} s")
    return 0 if added <= TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
