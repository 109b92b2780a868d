"""Round-trip error and cost of masks as polygons (``samrefiner.io.polygons``).

For every object of the shared data's label maps (DAVIS 2017, the labelme VOC photos, the
two 1920 x 1080 frames) and of the DAVIS 2016 binary masks, traces the mask at each
Douglas-Peucker ``--tolerances`` (pixels), decodes the polygons again (pycocotools'
rasterisation) and prints, per tolerance: the mean and the worst IoU of mask vs its
polygons, the mean vertex count, and the time per object (trace + decode). A second table
does the same for COCO's polygon lists (exteriors only: the holes are lost there).

    python benchmarks/bench_polygons.py [--data ../shared/data] [--tolerances 0,0.5,1,2,4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from samrefiner.io.masks import mask_iou
from samrefiner.io.polygons import mask_to_polygons


def objects(data: Path) -> list[np.ndarray]:
    """Every object's mask: each id of the label maps, each binary mask."""
    masks = []
    for folder in ("davis2017_val/masks", "davis2017_testdev/masks", "labelme_voc2011/masks"):
        masks += _label_objects(sorted((data / folder).glob("*.png")))
    masks += _label_objects(sorted((data / "highres").glob("**/*.png")))
    for path in sorted((data / "davis2016" / "masks").glob("*.png")):
        masks.append(np.asarray(Image.open(path)) > 0)
    return [m for m in masks if m.any()]


def _label_objects(paths: list[Path]) -> list[np.ndarray]:
    out = []
    for path in paths:
        labels = np.asarray(Image.open(path))
        if labels.ndim != 2:
            continue
        out += [labels == v for v in np.unique(labels) if v not in (0, 255)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--tolerances", default="0,0.5,1,2,4")
    args = parser.parse_args()
    masks = objects(args.data)
    tolerances = [float(t) for t in args.tolerances.split(",")]
    print(f"{len(masks)} objects from {args.data}")
    print("| tolerance px | mean IoU | worst IoU | COCO lists mean IoU | vertices | ms / object |")
    print("|---|---|---|---|---|---|")
    for tolerance in tolerances:
        ious, coco_ious, vertices, seconds = [], [], [], 0.0
        for mask in masks:
            start = time.perf_counter()
            polygons = mask_to_polygons(mask, tolerance=tolerance)
            back = polygons.to_mask()
            seconds += time.perf_counter() - start
            ious.append(mask_iou(mask, back))
            vertices.append(sum(len(r) for r in (*polygons.exteriors, *polygons.holes)))
            h, w = mask.shape
            lists = polygons.coco()
            coco = (
                mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(lists, h, w)))
                if lists
                else np.zeros_like(mask, dtype=np.uint8)
            )
            coco_ious.append(mask_iou(mask, coco.astype(bool)))
        print(
            f"| {tolerance:g} | {np.mean(ious):.4f} | {np.min(ious):.4f} | "
            f"{np.mean(coco_ious):.4f} | {np.mean(vertices):.0f} | "
            f"{1000 * seconds / len(masks):.1f} |"
        )


if __name__ == "__main__":
    main()
