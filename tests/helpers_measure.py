"""Small synthetic datasets for the bench and report tests (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [255, 255, 255] * 252


def disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    """Bool ``H x W`` disk."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def make_dataset(root: Path, n_images: int = 2, shape: tuple[int, int] = (96, 128)) -> Path:
    """``root/images/*.png`` + ``root/masks/*.png``: textured background, two coloured
    objects per image (palette instance ids 1 and 2; the first image's mask also has a
    255 ignore band). Returns ``root``."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = shape
    for i in range(n_images):
        image = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
        a = disk(shape, 40 + 4 * i, 38, 22)
        b = np.zeros(shape, bool)
        b[30:80, 78:118] = True
        image[a] = (220, 60, 40)
        image[b] = (40, 90, 220)
        ids = np.zeros(shape, np.uint8)
        ids[a] = 1
        ids[b] = 2
        if i == 0:
            ids[:, :3] = 255
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        label = Image.fromarray(ids)
        label.putpalette(PALETTE)
        label.save(root / "masks" / f"img{i}.png")
    return root
