"""Context-aware elastic box.

A side of the tight box moves out by ``min(10% of the box side, 10 px)`` when, in the strip
just beyond it, the share of pixels "similar" to the object exceeds the margin λ. A pixel
is similar when the cosine between the object's mean embedding and the bilinearly
upsampled, L2-normalised image embedding at that pixel exceeds 0.5.

The reference upsamples the whole ``C``-channel embedding to the image size (about 1 GB
per megapixel for SAM). Here the same cosine is computed from ``C``-free quantities:
bilinear upsampling is a weighted sum of the four surrounding cells, so

* ``<up(E)(p), q> = sum_k w_k <E_k, q>`` needs the grid of dot products with ``q``;
* ``|up(E)(p)|^2 = sum_kl w_k w_l <E_k, E_l>`` needs, per cell, the Gram matrix of the
  cell and its right, lower and lower-right neighbours (computed once per image).

Memory is ``O(cells)`` for the image and ``O(strip pixels)`` per mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from samrefiner.geometry import Frame

SIMILARITY_THRESHOLD = 0.5
# A side grows by at most this share of the box side, and by at most this many pixels.
STEP_SHARE = 0.1
STEP_MAX_PX = 10.0

# Corner k of a bilinear cell is the cell offset (dy, dx).
_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


class EmbeddingSimilarity:
    """Per-image state for pixel-wise cosine similarity to a query embedding.

    Args:
        image_embedding: ``C x gh x gw`` (or ``1 x C x gh x gw``) feature map of the
            padded square model input, numpy or torch (on any device).
        frame: geometry of the image (which cells cover it, where each pixel falls).
    """

    def __init__(self, image_embedding: Any, frame: Frame) -> None:
        if hasattr(image_embedding, "detach"):  # a torch tensor, possibly on a GPU
            image_embedding = image_embedding.detach().float().cpu().numpy()
        emb = np.asarray(image_embedding, dtype=np.float32)
        if emb.ndim == 4:
            if emb.shape[0] != 1:
                raise ValueError(f"image_embedding must be 1 x C x h x w, got shape {emb.shape}")
            emb = emb[0]
        if emb.ndim != 3:
            raise ValueError(f"image_embedding must be C x h x w, got shape {emb.shape}")
        ch, cw = frame.embedding_cells(emb.shape[1:])
        self.frame = frame
        self.cells = emb[:, :ch, :cw]  # C x ch x cw: only cells that cover the image
        # Edge-replicate one row / column so that the "+1" corner always exists.
        padded = np.pad(self.cells, ((0, 0), (0, 1), (0, 1)), mode="edge")
        self._padded = padded
        corners = [padded[:, dy : dy + ch, dx : dx + cw] for dy, dx in _CORNERS]
        self._gram = np.empty((4, 4, ch, cw), dtype=np.float32)
        for k in range(4):
            for m in range(k, 4):
                self._gram[k, m] = self._gram[m, k] = np.einsum(
                    "chw,chw->hw", corners[k], corners[m]
                )
        self._row_taps, self._col_taps = frame.embedding_taps(emb.shape[1:])

    def query(self, mask: np.ndarray) -> np.ndarray | None:
        """Mean embedding (``C``) over the cells the mask covers, or None.

        The mask is resized to the covering cells with nearest-neighbour sampling, as the
        reference does; a mask too small to hit any cell centre falls back to the cells
        that contain its pixels.
        """
        H, W = mask.shape
        ch, cw = self.cells.shape[1:]
        rows = np.minimum(np.floor(np.arange(ch) * (H / ch)).astype(np.int64), H - 1)
        cols = np.minimum(np.floor(np.arange(cw) * (W / cw)).astype(np.int64), W - 1)
        small = mask[np.ix_(rows, cols)]
        if not small.any():
            ys, xs = np.nonzero(mask)
            if ys.size == 0:
                return None
            small = np.zeros((ch, cw), dtype=bool)
            small[(ys * ch) // H, (xs * cw) // W] = True
        return self.cells[:, small].mean(axis=1)

    def similar(self, query: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Bool ``len(ys) x len(xs)``: cosine(query, up(E)) > 0.5 on that pixel grid."""
        qn = float(np.linalg.norm(query))
        if qn == 0.0 or ys.size == 0 or xs.size == 0:
            return np.zeros((ys.size, xs.size), dtype=bool)
        dots = np.einsum("c,chw->hw", query, self._padded)
        r0, c0 = self._row_taps.i0[ys], self._col_taps.i0[xs]
        rw = (self._row_taps.w0[ys], self._row_taps.w1[ys])
        cw = (self._col_taps.w0[xs], self._col_taps.w1[xs])
        weights = [np.outer(rw[dy], cw[dx]) for dy, dx in _CORNERS]
        numerator = sum(
            w * dots[np.ix_(r0 + dy, c0 + dx)]
            for w, (dy, dx) in zip(weights, _CORNERS, strict=True)
        )
        gram = self._gram[:, :, r0[:, None], c0[None, :]]
        norm_sq = sum(weights[k] * weights[m] * gram[k, m] for k in range(4) for m in range(4))
        norm = np.sqrt(np.maximum(norm_sq, 0.0))
        return numerator > SIMILARITY_THRESHOLD * qn * norm


@dataclass(frozen=True)
class ElasticBox:
    """Result of :func:`elastic_box`: ``box`` is XYXY inclusive pixels."""

    box: tuple[int, int, int, int]
    expanded: bool


def elastic_box(
    mask: np.ndarray,
    box: tuple[int, int, int, int],
    similarity: EmbeddingSimilarity,
    margin: float,
) -> ElasticBox:
    """Grow each side of the tight ``box`` of ``mask`` whose outer strip looks like the object.

    For each side the strip beyond it is ``floor(side +- min(0.1 * L, 10))`` wide, ``L``
    being the box side (``x2 - x1`` or ``y2 - y1``), and spans the box's full extent along
    the side. It is tested only when it lies inside the image. All four sides are judged
    against the tight box.
    """
    H, W = mask.shape
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    if margin <= 0 or bw <= 0 or bh <= 0:
        return ElasticBox(box, False)
    query = similarity.query(mask)
    if query is None:
        return ElasticBox(box, False)
    step_w = min(STEP_SHARE * bw, STEP_MAX_PX)
    step_h = min(STEP_SHARE * bh, STEP_MAX_PX)
    new_x1, new_x2 = math.floor(x1 - step_w), math.floor(x2 + step_w)
    new_y1, new_y2 = math.floor(y1 - step_h), math.floor(y2 + step_h)
    rows_in = np.arange(y1, y2 + 1)
    cols_in = np.arange(x1, x2 + 1)

    def grows(ys: np.ndarray, xs: np.ndarray) -> bool:
        if ys.size == 0 or xs.size == 0:
            return False
        share = similarity.similar(query, ys, xs).mean()
        return bool(share > margin)

    out = [x1, y1, x2, y2]
    if 0 <= new_x1 < x1 and grows(rows_in, np.arange(new_x1, x1)):
        out[0] = new_x1
    if x2 < new_x2 <= W - 1 and grows(rows_in, np.arange(x2 + 1, new_x2 + 1)):
        out[2] = new_x2
    if 0 <= new_y1 < y1 and grows(np.arange(new_y1, y1), cols_in):
        out[1] = new_y1
    if y2 < new_y2 <= H - 1 and grows(np.arange(y2 + 1, new_y2 + 1), cols_in):
        out[3] = new_y2
    new_box = (out[0], out[1], out[2], out[3])
    return ElasticBox(new_box, new_box != tuple(box))
