"""Builders of small datasets, with every kind of bad input, shared by the runner tests.

(A helper module, not a test module: the runner and CLI test modules import it.)
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from samrefiner.io.coco import encode_rle
from samrefiner.io.label_maps import LabelMap, write_label_map
from samrefiner.io.masks import box_masks
from samrefiner.types import RefineResult

H, W = 40, 60
PALETTE = [0, 0, 0, 200, 0, 0, 0, 200, 0, 0, 0, 200] + [9, 9, 9] * 251 + [224, 224, 192]


def write_short_palette_png(path: Path, labels: np.ndarray, palette: list[int]) -> None:
    """An 8-bit palette PNG whose PLTE has only ``len(palette) / 3`` colours.

    PIL always writes as many colours as the bit depth holds, so the PLTE chunk of its
    output is swapped for the short one (other tools do write such files).
    """
    img = Image.fromarray(labels.astype(np.uint8))
    img.putpalette(palette + [0] * (768 - len(palette)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", bits=8)
    data, out, pos = buf.getvalue(), bytearray(), 8
    out += data[:8]
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = bytes(palette) if kind == b"PLTE" else data[pos + 8 : pos + 8 + length]
        out += struct.pack(">I", len(body)) + kind + body
        out += struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        pos += 12 + length
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


def write_image(path: Path, seed: int, h: int = H, w: int = W) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def box_mask(x1: int, y1: int, x2: int, y2: int, h: int = H, w: int = W) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y1 : y2 + 1, x1 : x2 + 1] = True
    return mask


def fake_refine(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What :class:`FakeRefiner` returns: masks grown by 1 px, score rising with area."""
    grown = ndimage.binary_dilation(masks, structure=np.ones((1, 3, 3), dtype=bool))
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    scores = (0.5 + 0.4 * areas / masks[0].size).astype(np.float32)
    return grown, scores


class FakeRefiner:
    """A deterministic stand-in for :class:`samrefiner.Refiner`."""

    def __init__(self, fail_on_size: tuple[int, int] | None = None) -> None:
        self.calls = 0
        self.masks_seen = 0
        self.fail_on_size = fail_on_size

    def refine(self, image: np.ndarray, masks: np.ndarray) -> RefineResult:
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert masks.dtype == bool and masks.shape[1:] == image.shape[:2]
        if self.fail_on_size is not None and image.shape[:2] == self.fail_on_size:
            raise ValueError("image too small for the model")
        self.calls += 1
        self.masks_seen += len(masks)
        grown, scores = fake_refine(masks)
        n = len(masks)
        return RefineResult(grown, scores, [None] * n, ["refined"] * n, np.ones(n, dtype=int))


class IdentityRefiner:
    """Returns each coarse mask (a box's filled box) as its refined mask."""

    def refine(self, image, masks=None, boxes=None, **_):
        if boxes is not None:
            masks = box_masks(np.asarray(boxes), image.shape[:2])
        n = len(masks)
        return RefineResult(
            np.asarray(masks, dtype=bool),
            np.full(n, 0.9, np.float32),
            [None] * n,
            ["refined"] * n,
            np.ones(n, dtype=int),
        )


def polygon(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def uncompressed(mask: np.ndarray) -> dict[str, Any]:
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    runs = np.diff(np.concatenate([[0], edges])).tolist()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": runs}


#: COCO case: annotation id -> the status the run must give it.
COCO_EXPECTED: dict[int, str] = {
    1: "refined",
    2: "refined",
    3: "refined",
    4: "invalid_polygon",
    5: "invalid_polygon",
    6: "refined",
    7: "empty",
    8: "duplicate_id",
    10: "iscrowd",
    11: "below_min_score",
    12: "size_mismatch",
    13: "unknown_image",
    14: "no_segmentation",
    15: "invalid_segmentation",
    20: "size_mismatch",
    30: "image_missing",
    31: "image_missing",
    40: "image_unreadable",
    50: "refined",
    60: "refined",
}
COCO_MIN_SCORE = 0.3


def build_coco(root: Path) -> tuple[Path, Path]:
    """A COCO dataset file with every bad input; returns ``(annotations, images_dir)``."""
    images = root / "images"
    write_image(images / "one.png", 1)
    write_image(images / "small.png", 2, h=20, w=30)  # listed as 60 x 40
    write_image(images / "five.png", 5)
    write_image(images / "sub" / "six.png", 6)
    (images / "junk.png").write_bytes(b"not an image")

    def ann(i: int, image_id: int, segm: Any, **extra: Any) -> dict[str, Any]:
        return {
            "id": i,
            "image_id": image_id,
            "category_id": 1 + i % 3,
            "segmentation": segm,
            "area": 1.0,
            "bbox": [0, 0, 1, 1],
            "iscrowd": 0,
            **extra,
        }

    anns = [
        ann(1, 1, polygon(5, 5, 20, 15), attributes={"occluded": False}),
        ann(2, 1, uncompressed(box_mask(30, 2, 45, 12))),
        ann(3, 1, encode_rle(box_mask(2, 25, 12, 35)), score=0.9),
        ann(4, 1, [[1.0, 1.0, 5.0, 5.0]]),
        ann(5, 1, [[1.0, float("nan"), 8.0, 1.0, 8.0, 8.0]]),
        ann(6, 1, polygon(50, 30, 70, 50)),  # partly outside the 60 x 40 image: clipped
        ann(7, 1, encode_rle(np.zeros((H, W), dtype=bool))),
        ann(8, 1, polygon(20, 20, 30, 30)),
        ann(8, 1, polygon(22, 22, 32, 32)),
        ann(10, 1, encode_rle(box_mask(0, 0, 59, 39)), iscrowd=1),
        ann(11, 1, polygon(10, 10, 20, 20), score=0.1),
        ann(12, 1, encode_rle(np.ones((10, 10), dtype=bool))),
        ann(13, 999, polygon(1, 1, 9, 9)),
        {"id": 14, "image_id": 1, "category_id": 1},
        ann(15, 1, {"size": [H, W], "counts": "not-an-rle!"}),
        ann(20, 2, polygon(1, 1, 9, 9)),
        ann(30, 3, polygon(1, 1, 9, 9)),
        ann(31, 3, encode_rle(box_mask(1, 1, 9, 9))),
        ann(40, 4, polygon(1, 1, 9, 9)),
        ann(50, 5, polygon(10, 10, 30, 30)),
        ann(60, 6, polygon(5, 5, 25, 25)),
    ]
    data = {
        "info": {"year": 2024},
        "images": [
            {"id": 1, "file_name": "one.png", "width": W, "height": H},
            {"id": 2, "file_name": "small.png", "width": W, "height": H},
            {"id": 3, "file_name": "missing.png", "width": W, "height": H},
            {"id": 4, "file_name": "junk.png", "width": W, "height": H},
            {"id": 5, "file_name": "five.png", "width": W, "height": H},
            {"id": 6, "file_name": "sub/six.png", "width": W, "height": H},
            {"id": 7, "file_name": "unused.png", "width": W, "height": H},
        ],
        "annotations": anns,
        "categories": [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)],
    }
    path = root / "coarse.json"
    path.write_text(json.dumps(data))
    return path, images


def build_instances(root: Path) -> tuple[Path, Path]:
    """Instance maps: palette with ignore band, 16-bit ids, outside-palette id, bad files."""
    images, labels = root / "images", root / "labels"
    labels.mkdir(parents=True)
    write_image(images / "a.png", 1)
    a = np.zeros((H, W), dtype=np.uint8)
    a[5:25, 5:35] = 1  # large: wins overlaps
    a[5:25, 35:45] = 2  # small, touching object 1
    a[30:32, :] = 255  # ignore band
    write_label_map(labels / "a.png", LabelMap(a, "P", PALETTE))
    write_image(images / "seq" / "b.jpg", 2)
    b = np.zeros((H, W), dtype=np.uint16)
    b[2:12, 2:12] = 300
    b[20:30, 20:40] = 7000
    write_label_map(labels / "seq" / "b.png", LabelMap(b, "I;16"))
    write_image(images / "c.png", 3)
    c = np.zeros((H, W), dtype=np.uint8)
    c[10:20, 10:20] = 1
    c[25:35, 40:50] = 5  # no colour in a 3-colour palette
    write_short_palette_png(labels / "c.png", c, PALETTE[:9])
    write_short_palette_png(labels / "orphan.png", c, PALETTE[:9])  # no image
    write_image(images / "d.png", 4, h=20, w=30)
    write_short_palette_png(labels / "d.png", c, PALETTE[:9])  # other size
    write_image(images / "e.png", 5)
    (labels / "e.png").write_bytes(b"garbage")
    write_image(images / "f.png", 6)
    write_label_map(labels / "f.png", LabelMap(np.zeros((H, W), np.uint8), "P", PALETTE))
    return images, labels


def build_semantic(root: Path) -> tuple[Path, Path]:
    """Class maps: two classes in parts, a speck, an ignore band, a class with no colour."""
    images, labels = root / "images", root / "labels"
    labels.mkdir(parents=True)
    write_image(images / "s.png", 7)
    s = np.zeros((H, W), dtype=np.uint8)
    s[2:12, 2:12] = 15
    s[2:12, 14:24] = 15  # merges with the first part
    s[25:38, 40:58] = 15  # far: a second region of class 15
    s[20:30, 5:20] = 9
    s[0, 59] = 9  # a 1-pixel speck: dropped, becomes background
    s[14:16, 30:60] = 255
    write_label_map(labels / "s.png", LabelMap(s, "P", PALETTE))
    write_image(images / "t.png", 8)
    t = np.zeros((H, W), dtype=np.uint8)
    t[5:15, 5:15] = 1
    t[20:30, 30:40] = 3  # outside a 2-colour palette
    write_short_palette_png(labels / "t.png", t, PALETTE[:6])
    return images, labels


def build_masks(root: Path) -> tuple[Path, Path]:
    """Binary masks matched by each naming rule, plus every bad mask file."""
    images, masks = root / "images", root / "masks"
    write_image(images / "x.png", 1)
    write_image(images / "y.jpg", 2)
    write_image(images / "w.png", 3)
    masks.mkdir(parents=True)

    def save(rel: str, mask: np.ndarray) -> None:
        (masks / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks / rel)

    save("x-1.png", box_mask(5, 5, 20, 20))
    save("x-2.png", np.zeros((H, W), dtype=bool))  # empty
    save("y/1.png", box_mask(30, 10, 50, 30))
    Image.fromarray(np.full((H, W), 7, dtype=np.uint8)).save(masks / "y" / "2.png")  # not 0/255
    save("y/3.png", box_mask(1, 1, 5, 5, h=20, w=30))  # other size
    save("z-1.png", box_mask(1, 1, 5, 5))  # no image
    save("w.png", box_mask(10, 10, 30, 30))
    return images, masks


#: Masks case: mask file -> the status the run must give it.
MASKS_EXPECTED: dict[str, str] = {
    "w.png": "refined",
    "x-1.png": "refined",
    "x-2.png": "empty",
    "y/1.png": "refined",
    "y/2.png": "mask_unreadable",
    "y/3.png": "size_mismatch",
    "z-1.png": "image_missing",
}


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_interrupted(monkeypatch: Any, run: Callable[[], object], after: str | None = None) -> None:
    """Call ``run`` (a run of the CLI or the runner), stopped as a crash would stop it
    right after the run state records the image ``after`` (None: the first image it
    records); fails unless it is stopped there."""
    import pytest

    from samrefiner.runner.journal.state import RunState

    class Killed(BaseException):
        pass

    real_write = RunState.write

    def write_then_die(self: RunState, record: Any) -> None:
        real_write(self, record)
        if after is None or record.key == after:
            raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(RunState, "write", write_then_die)
        with pytest.raises(Killed):
            run()


TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def worker_pythonpath() -> str:
    """``PYTHONPATH`` for processes (a CLI run, Ray workers) that import samrefiner and
    these helpers."""
    return os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")])


def build_instance_series(root: Path, n: int) -> tuple[Path, Path]:
    """``n`` 120 x 160 images with two instances each; returns ``(images, labels)``."""
    images, labels = root / "images", root / "labels"
    labels.mkdir(parents=True)
    for i in range(n):
        write_image(images / f"f{i:02d}.png", i, h=120, w=160)
        lab = np.zeros((120, 160), dtype=np.uint8)
        lab[10 + i : 60 + i, 20:90] = 1
        lab[70:110, 100 - i : 150 - i] = 2
        write_label_map(labels / f"f{i:02d}.png", LabelMap(lab, "P", PALETTE))
    return images, labels


#: Model options of CLI runs in the tests: the tiny random SAM, 2 iterations.
TINY_MODEL_ARGS = [
    "--model",
    "samrefiner.testing:tiny_sam",
    "--random-weights",
    "--no-progress",
    "--iterations",
    "2",
]


def instances_command(images: Path, labels: Path, out: Path, *extra: str) -> list[str]:
    """The ``samrefiner instances`` command line of a run in a subprocess."""
    return [
        sys.executable,
        "-m",
        "samrefiner.cli",
        "instances",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "-o",
        str(out),
        *TINY_MODEL_ARGS,
        *extra,
    ]
