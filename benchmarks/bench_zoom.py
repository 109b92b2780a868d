"""Cost (and, with trained weights, quality) of crop-zoom against the default refinement.

Cases, from the shared data:

* ``1080p-a`` / ``1080p-b``: the two 1920x1080 frames of ``highres/`` (40+ dense regions,
  many of them small);
* ``mosaic``: ``--tiles`` x ``--tiles`` DAVIS 2017 test-dev frames, each downscaled into
  one cell of an 854x480 canvas, so their objects are ``--tiles`` times smaller than in
  DAVIS relative to the frame (objects shrunk by downscaling the image).

Every ground-truth object becomes a coarse mask (dilated or eroded by 1-3 px). Each case
is refined twice from the same inputs: default settings, then with crop-zoom
(``--zoom-below``, ``--zoom-context``, ``--max-crops``). Printed per case: objects,
objects zoomed, encoder passes (1 + crops), seconds (whole ``refine`` call, encoder
included) and its ratio, and the mean IoU with the ground truth (meaningful only with
``--weights pretrained``; random weights measure cost only).

    python benchmarks/bench_zoom.py --quick                          # CPU smoke run
    python benchmarks/bench_zoom.py --model sam_vit_b --device cuda --weights pretrained

Run it on a quiet machine: timings on shared cores are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SAMREFINER_DATA", REPO.parent / "shared" / "data"))
HIGHRES = {
    "1080p-a": "1001_3iEIq5HBY1s_00002058",
    "1080p-b": "1007_YCTBBdbKSSg_00000693",
}
MOSAIC_SIZE = (480, 854)


def coarse_from(objects: np.ndarray) -> np.ndarray:
    """Coarse masks: each object dilated (even index) or eroded (odd) by 1-3 px."""
    from scipy import ndimage

    out = []
    for k, obj in enumerate(objects):
        steps = 1 + k % 3
        shrunk = ndimage.binary_erosion(obj, iterations=steps)
        grown = ndimage.binary_dilation(obj, iterations=steps)
        out.append(grown if k % 2 == 0 or not shrunk.any() else shrunk)
    return np.stack(out)


def id_objects(ids: np.ndarray) -> np.ndarray:
    """``N x H x W`` bool: one mask per non-zero id (255 = ignore is left out)."""
    values = [v for v in np.unique(ids) if v not in (0, 255)]
    return np.stack([ids == v for v in values])


def load_highres(data: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from samrefiner.io import read_image

    image = read_image(data / "highres" / "images" / f"{stem}.jpg")
    ids = np.asarray(Image.open(data / "highres" / "masks" / f"{stem}.png"))
    return image, id_objects(ids)


def load_mosaic(data: Path, tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """``tiles x tiles`` downscaled DAVIS test-dev frames in one 854x480 canvas."""
    from PIL import Image

    folder = data / "davis2017_testdev"
    stems = sorted(p.stem for p in (folder / "images").glob("*.jpg"))[: tiles * tiles]
    if len(stems) < tiles * tiles:
        sys.exit(f"{folder}: {len(stems)} frames, {tiles * tiles} needed for --tiles {tiles}")
    H, W = MOSAIC_SIZE
    canvas = np.zeros((H, W, 3), np.uint8)
    objects = []
    for k, stem in enumerate(stems):
        r, c = divmod(k, tiles)
        y0, y1 = r * H // tiles, (r + 1) * H // tiles
        x0, x1 = c * W // tiles, (c + 1) * W // tiles
        size = (x1 - x0, y1 - y0)
        image = Image.open(folder / "images" / f"{stem}.jpg").convert("RGB").resize(size)
        canvas[y0:y1, x0:x1] = np.asarray(image)
        ids = np.asarray(Image.open(folder / "masks" / f"{stem}.png").resize(size, Image.NEAREST))
        for v in np.unique(ids):
            if v in (0, 255) or not (ids == v).any():
                continue
            full = np.zeros((H, W), bool)
            full[y0:y1, x0:x1] = ids == v
            objects.append(full)
    return canvas, np.stack(objects)


def mean_iou(masks: np.ndarray, truth: np.ndarray) -> float:
    from samrefiner.io.masks import mask_iou

    return float(np.mean([mask_iou(m, t) for m, t in zip(masks, truth, strict=True)]))


def measure(refiner, image: np.ndarray, coarse: np.ndarray, truth: np.ndarray, sync) -> dict:
    start = time.perf_counter()
    result = refiner.refine(image, coarse)
    sync()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "encoder_s": result.timings["encoder"],
        "encoder_passes": 1 + result.crops if result.zoomed.sum() < len(coarse) else result.crops,
        "zoomed": int(result.zoomed.sum()),
        "miou": mean_iou(result.masks, truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="sam_vit_b", help="model name, checkpoint or builder")
    parser.add_argument("--checkpoint", default=None, help="weights file for --model")
    parser.add_argument(
        "--weights",
        choices=["random", "pretrained"],
        default="random",
        help="random weights measure cost only; pretrained also gives meaningful mIoU",
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--zoom-below", type=int, default=128)
    parser.add_argument("--zoom-context", type=float, default=2.0)
    parser.add_argument("--max-crops", type=int, default=8)
    parser.add_argument("--tiles", type=int, default=3, help="mosaic: frames per side")
    parser.add_argument("--cases", nargs="+", default=[*HIGHRES, "mosaic"])
    parser.add_argument(
        "--quick", action="store_true", help="one 1080p frame and the mosaic, 1 iteration"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    if not (args.data / "MANIFEST.tsv").is_file():
        sys.exit(f"shared data not found at {args.data} (set SAMREFINER_DATA or --data)")
    unknown = sorted(set(args.cases) - {*HIGHRES, "mosaic"})
    if unknown:
        sys.exit(f"unknown cases {unknown}; known: {', '.join([*HIGHRES, 'mosaic'])}")
    if args.quick:
        args.cases, args.iterations = ["1080p-a", "mosaic"], 1

    import torch

    from samrefiner import RefineConfig, Refiner, load_model

    model = load_model(
        args.model,
        checkpoint=args.checkpoint,
        pretrained=args.weights == "pretrained",
        device=args.device,
    )
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    default = RefineConfig(iterations=args.iterations, dtype=args.dtype)
    zoom = default.replace(
        zoom_below=args.zoom_below, zoom_context=args.zoom_context, max_crops=args.max_crops
    )
    print(
        f"model {args.model} ({args.weights} weights) on {args.device}, dtype {args.dtype}, "
        f"iterations {args.iterations}; zoom below {args.zoom_below} px (model frame), "
        f"context {args.zoom_context}x, at most {args.max_crops} crops"
    )
    print(
        f"{'case':8} {'objects':>7} {'zoomed':>6} {'passes':>6} {'default s':>9} "
        f"{'zoom s':>8} {'ratio':>6} {'mIoU def':>8} {'mIoU zoom':>9}"
    )
    rows = []
    for case in args.cases:
        if case == "mosaic":
            image, truth = load_mosaic(args.data, args.tiles)
        else:
            image, truth = load_highres(args.data, HIGHRES[case])
        coarse = coarse_from(truth)
        Refiner(model, default).encode(image)  # warm-up (lazy initialisation)
        sync()
        base = measure(Refiner(model, default), image, coarse, truth, sync)
        zoomed = measure(Refiner(model, zoom), image, coarse, truth, sync)
        row = {"case": case, "objects": len(coarse), "default": base, "zoom": zoomed}
        rows.append(row)
        print(
            f"{case:8} {len(coarse):7d} {zoomed['zoomed']:6d} {zoomed['encoder_passes']:6d} "
            f"{base['seconds']:9.2f} {zoomed['seconds']:8.2f} "
            f"{zoomed['seconds'] / base['seconds']:6.2f} {base['miou']:8.4f} "
            f"{zoomed['miou']:9.4f}"
        )
    if args.weights == "random":
        print("random weights: mIoU is meaningless; seconds and encoder passes are real")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"data": str(args.data)}, "rows": rows}, indent=2, default=str
            )
        )


if __name__ == "__main__":
    main()
