"""Label-map PNGs: instance-id maps and semantic class maps.

A label map is an ``H x W`` integer array stored as a PNG in one of three modes:

* **palette** (``P``): 8-bit indices plus a colour table (DAVIS, VOC). The palette, and a
  transparency entry if any, are kept so that the written map looks like the input;
* **8-bit grey** (``L``, also 1-bit ``1``): the value is the label;
* **16-bit grey** (``I;16``): up to 65535 labels (large instance sets).

Value ``0`` is background. An optional *ignore* value (VOC's 255 boundary band) marks
pixels that belong to no label. For instance maps each other value is one object; for
class maps each other value is one class. The same reader serves both.

A palette PNG may carry fewer than 256 colours; a pixel index with no colour is "outside
the palette" and reported by :func:`values_outside_palette`.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from samrefiner.io.atomic import atomic_write_bytes
from samrefiner.io.errors import InputError
from samrefiner.io.images import _open

#: PNG modes :func:`read_label_map` accepts, mapped to the mode written back.
_MODES = {
    "P": "P",
    "L": "L",
    "1": "L",
    "I;16": "I;16",
    "I;16B": "I;16",
    "I;16L": "I;16",
    "I": "I;16",
}


@dataclass
class LabelMap:
    """A label map and how it was stored.

    Attributes:
        labels: ``H x W`` uint8 (modes ``P``/``L``) or uint16 (mode ``I;16``) labels.
        mode: ``"P"``, ``"L"`` or ``"I;16"``, the PNG mode to write back.
        palette: flat ``[r, g, b, r, g, b, ...]`` colour table for mode ``P`` (its length
            / 3 is the number of colours), else None.
        transparency: PNG transparency info of a palette image (kept as-is), else None.
    """

    labels: np.ndarray
    mode: str = "L"
    palette: list[int] | None = None
    transparency: Any = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.ndim != 2:
            raise ValueError(f"labels must be H x W, got shape {self.labels.shape}")
        if self.mode not in ("P", "L", "I;16"):
            raise ValueError(f"mode must be 'P', 'L' or 'I;16', got {self.mode!r}")
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {self.labels.dtype}")
        peak = int(self.labels.max()) if self.labels.size else 0
        low = int(self.labels.min()) if self.labels.size else 0
        top = 65535 if self.mode == "I;16" else 255
        if low < 0 or peak > top:
            raise ValueError(
                f"labels of a mode {self.mode} map must lie in [0, {top}], got [{low}, {peak}]"
            )
        self.labels = self.labels.astype(np.uint16 if self.mode == "I;16" else np.uint8)
        if self.mode == "P":
            if self.palette is None:
                raise ValueError("a palette label map (mode 'P') needs a palette")
            self.palette = [int(v) for v in self.palette]
            if len(self.palette) % 3 or not 3 <= len(self.palette) <= 768:
                raise ValueError(
                    f"palette must hold 1..256 RGB triples, got {len(self.palette)} values"
                )
        elif self.palette is not None:
            raise ValueError(f"mode {self.mode} label maps have no palette")

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    @property
    def palette_size(self) -> int | None:
        """Number of colours of a palette map, else None."""
        return None if self.palette is None else len(self.palette) // 3

    def with_labels(self, labels: np.ndarray) -> LabelMap:
        """A map with new ``labels`` stored like this one (same mode and palette)."""
        return LabelMap(labels, self.mode, self.palette, self.transparency)


def read_label_map(path: str | os.PathLike[str]) -> LabelMap:
    """Read a palette, 8-bit or 16-bit grey PNG label map.

    Raises:
        InputError: missing or unreadable file, or a colour (RGB) image, which has no
            single label per pixel.
    """
    img = _open(path, "label map")
    write_mode = _MODES.get(img.mode)
    if write_mode is None:
        raise InputError(
            f"{path}: label maps must be palette, 8-bit or 16-bit grey PNGs, got mode "
            f"{img.mode} (convert colour-coded maps to indices first)"
        )
    labels = np.asarray(img.convert("L")) // 255 if img.mode == "1" else np.asarray(img)
    if write_mode == "I;16":
        if labels.size and (labels.min() < 0 or labels.max() > 65535):
            raise InputError(f"{path}: 32-bit label values outside [0, 65535]")
        labels = labels.astype(np.uint16)
    palette = None
    if write_mode == "P":
        palette = list(img.palette.palette) if img.palette is not None else None
        if not palette:
            palette = [v for i in range(256) for v in (i, i, i)]
        elif img.palette.mode != "RGB":
            palette = img.getpalette("RGB") or palette
    return LabelMap(labels, write_mode, palette, img.info.get("transparency"))


def encode_label_map(label_map: LabelMap) -> bytes:
    """PNG bytes of a label map, in its mode, with its palette.

    Values outside the palette are kept: the written palette is then extended with black
    entries up to the largest value.
    """
    img = Image.fromarray(label_map.labels)
    if label_map.mode == "P":
        palette = list(label_map.palette or [])
        peak = int(label_map.labels.max()) if label_map.labels.size else 0
        # PIL picks the PNG bit depth from the palette length; a value beyond the palette
        # would be truncated, so the palette is padded with black up to the largest value.
        palette += [0] * max(0, 3 * (peak + 1) - len(palette))
        # putpalette turns the 8-bit grey image into a palette image, indices unchanged.
        img.putpalette(palette, rawmode="RGB")
    buf = io.BytesIO()
    extra: dict[str, Any] = {}
    if label_map.mode == "P" and label_map.transparency is not None:
        extra["transparency"] = label_map.transparency
    img.save(buf, format="PNG", **extra)
    return buf.getvalue()


def write_label_map(path: str | os.PathLike[str], label_map: LabelMap) -> None:
    """Write a label map as a PNG, atomically, in its own mode and palette."""
    atomic_write_bytes(path, encode_label_map(label_map))


def values_outside_palette(label_map: LabelMap) -> list[int]:
    """Label values with no colour in the palette (always empty for grey maps)."""
    size = label_map.palette_size
    if size is None:
        return []
    values = np.unique(label_map.labels)
    return [int(v) for v in values if v >= size]


def label_values(labels: np.ndarray, *, ignore: int | None = None) -> list[int]:
    """Sorted label values present in ``labels``, without background 0 and ``ignore``."""
    values = np.unique(labels)
    return [int(v) for v in values if v != 0 and (ignore is None or v != ignore)]


def instance_masks(
    labels: np.ndarray, *, ignore: int | None = None
) -> tuple[list[int], np.ndarray]:
    """Split an instance-id map into one mask per id.

    Returns:
        ``(ids, masks)``: the sorted ids (background and ``ignore`` left out) and an
        ``N x H x W`` bool stack, ``masks[k] = labels == ids[k]``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be H x W, got shape {labels.shape}")
    ids = label_values(labels, ignore=ignore)
    masks = np.zeros((len(ids), *labels.shape), dtype=bool)
    for k, value in enumerate(ids):
        masks[k] = labels == value
    return ids, masks


__all__ = [
    "LabelMap",
    "encode_label_map",
    "instance_masks",
    "label_values",
    "read_label_map",
    "values_outside_palette",
    "write_label_map",
]
