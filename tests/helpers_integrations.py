"""Shared scenes for the integration tests: a VOC photo and coarse masks of its objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samrefiner.io.images import read_image
from samrefiner.io.label_maps import instance_masks, read_label_map
from samrefiner.measure.perturb import synthesize

VOC_KEY = "2011_000003"


def voc_paths(shared_data: Path, key: str = VOC_KEY) -> tuple[Path, Path, Path]:
    """``(image, instance-id map, class map)`` of one labelme_voc2011 photo."""
    voc = shared_data / "labelme_voc2011"
    return (
        voc / "images" / f"{key}.jpg",
        voc / "masks" / f"{key}.png",
        voc / "masks_class" / f"{key}.png",
    )


def coarse_scene(shared_data: Path, key: str = VOC_KEY) -> tuple[np.ndarray, np.ndarray]:
    """``(H x W x 3 RGB image, N x H x W coarse masks)``: one synthetic coarse mask per
    object (seeded), then one empty mask last."""
    image_path, instances_path, _ = voc_paths(shared_data, key)
    image = read_image(image_path)
    _, truth = instance_masks(read_label_map(instances_path).labels, ignore=255)
    rng = np.random.default_rng(7)
    coarse = [synthesize(mask, rng)[0] for mask in truth]
    coarse.append(np.zeros(image.shape[:2], dtype=bool))
    return image, np.stack(coarse)
