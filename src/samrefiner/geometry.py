"""Coordinate frames of a SAM-style model, as separable linear operators.

SAM sees an image resized so that its longest side equals the model's input size, padded
at the bottom / right to a square, and predicts masks on a low-resolution grid of that
square (SAM 2 instead stretches the image over the whole square:
:meth:`Frame.resize_square`). Moving a mask between the image and the low-res grid is a
chain of bilinear resizes, crops and pads; every one of them is separable and linear, so
each chain is one linear operator per axis:

    low_res = rows_to_low_res (image_mask) along rows, then cols_to_low_res along columns
    image_logits = rows_to_image (low_res_logits), then cols_to_image

Each output reads at most a few inputs, so the operators are stored as gather indices and
weights (:class:`SparseOperator`). This lets the refiner resize one object's window at a
time instead of whole ``N x H x W`` float stacks, with the values PyTorch's
``F.interpolate(mode="bilinear", align_corners=False, antialias=False)`` chain gives, up
to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LinearTaps:
    """1-D linear interpolation as two taps per output sample.

    Output ``j`` = ``w0[j] * x[i0[j]] + w1[j] * x[i0[j] + 1]``; ``i0 + 1`` may equal
    ``n_in`` at the last sample, where ``w1`` is 0 or the source is edge-replicated.
    """

    i0: np.ndarray
    w0: np.ndarray
    w1: np.ndarray


def linear_taps(n_in: int, n_out: int, scale: float | None = None) -> LinearTaps:
    """Taps of 1-D linear interpolation, ``align_corners=False``, as PyTorch computes them.

    Output sample ``j`` reads the source position ``(j + 0.5) * scale - 0.5`` (clamped to
    ``[0, n_in - 1]``). ``scale`` defaults to ``n_in / n_out``; pass it to sample a grid
    whose extent is not a whole number of cells.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be >= 1, got n_in={n_in}, n_out={n_out}")
    if scale is None:
        scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.where(i0 < n_in - 1, np.clip(src - i0, 0.0, 1.0), 0.0)
    return LinearTaps(i0=i0, w0=1.0 - w1, w1=w1)


def linear_resize_matrix(n_in: int, n_out: int, scale: float | None = None) -> np.ndarray:
    """``n_out x n_in`` float64 matrix of 1-D linear interpolation (see :func:`linear_taps`)."""
    taps = linear_taps(n_in, n_out, scale)
    mat = np.zeros((n_out, n_in + 1), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(mat, (rows, taps.i0), taps.w0)
    np.add.at(mat, (rows, taps.i0 + 1), taps.w1)
    return mat[:, :n_in]


@dataclass(frozen=True)
class SupportWindow:
    """Index range of one axis: ``start`` inclusive, ``stop`` exclusive."""

    start: int
    stop: int


@dataclass(frozen=True)
class SparseOperator:
    """A linear map with few non-zeros per output (a resize chain), as gather + weights.

    Attributes:
        index: ``n_out x k`` int64 source index of each tap.
        weight: ``n_out x k`` float32 weight of each tap (0 for unused taps).
        n_in: number of source samples.
    """

    index: np.ndarray
    weight: np.ndarray
    n_in: int

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> SparseOperator:
        """Compress an ``n_out x n_in`` matrix; ``k`` = most non-zeros in a row."""
        nonzero = matrix != 0
        k = max(int(nonzero.sum(axis=1).max()), 1)
        # Stable sort puts each row's non-zero columns first, in increasing order.
        order = np.argsort(~nonzero, axis=1, kind="stable")[:, :k]
        weight = np.take_along_axis(matrix, order, axis=1)
        return cls(
            index=order.astype(np.int64), weight=weight.astype(np.float32), n_in=matrix.shape[1]
        )

    @property
    def n_out(self) -> int:
        return int(self.index.shape[0])

    def window(self, out_start: int, out_stop: int) -> SupportWindow:
        """Source range read by outputs ``[out_start, out_stop)`` (non-zero taps only)."""
        idx = self.index[out_start:out_stop]
        used = self.weight[out_start:out_stop] != 0
        if not used.any():
            return SupportWindow(0, 0)
        return SupportWindow(int(idx[used].min()), int(idx[used].max()) + 1)

    def reach(self, src_start: int, src_stop: int) -> SupportWindow:
        """Outputs that read any source in ``[src_start, src_stop)`` with a non-zero weight."""
        hits = ((self.index >= src_start) & (self.index < src_stop) & (self.weight != 0)).any(
            axis=1
        )
        found = np.flatnonzero(hits)
        if found.size == 0:
            return SupportWindow(0, 0)
        return SupportWindow(int(found[0]), int(found[-1]) + 1)

    def apply(
        self, data: np.ndarray, axis: int, *, src_start: int = 0, out: SupportWindow | None = None
    ) -> np.ndarray:
        """Apply along ``axis`` of ``data``, which holds sources ``src_start ...`` (zeros beyond).

        Returns the outputs of ``out`` (default: all outputs).
        """
        out = out or SupportWindow(0, self.n_out)
        idx = self.index[out.start : out.stop] - src_start
        weight = self.weight[out.start : out.stop]
        n = data.shape[axis]
        valid = (idx >= 0) & (idx < n) & (weight != 0)
        weight = np.where(valid, weight, 0.0).astype(np.float32)
        idx = np.clip(idx, 0, max(n - 1, 0))
        along_axis = [1] * data.ndim
        along_axis[axis] = -1
        result: np.ndarray | None = None
        for t in range(idx.shape[1]):
            if not valid[:, t].any():
                continue
            # np.take gathers whole contiguous runs along either axis; indexing a
            # transposed view instead made the column pass 1.5x slower.
            term = np.take(data, idx[:, t], axis=axis).astype(np.float32, copy=False)
            term *= weight[:, t].reshape(along_axis)
            if result is None:
                result = term
            else:
                result += term
        if result is None:  # no output reads any of these sources
            shape = list(data.shape)
            shape[axis] = idx.shape[0]
            result = np.zeros(shape, dtype=np.float32)
        return result


def _pad_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` matrix placing ``n_in`` samples at the start of ``n_out`` zeros."""
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    mat[np.arange(n_in), np.arange(n_in)] = 1.0
    return mat


def resized_shape(original_size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``(h, w)`` after resizing the longest side of ``original_size`` to ``long_side``.

    Same rounding as SAM's ``ResizeLongestSide.get_preprocess_shape``.
    """
    h, w = original_size
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


@dataclass
class Frame:
    """Geometry linking an image of ``original_size`` to a model's input and low-res grid.

    Attributes:
        original_size: ``(H, W)`` of the image.
        input_size: side of the model's square input (1024 for SAM).
        resized_size: ``(h, w)`` of the image inside that input, before padding.
        low_res_size: ``(h, w)`` of the mask grid (256 x 256 for SAM).
        rows_to_low_res / cols_to_low_res: operators ``H -> low_h`` / ``W -> low_w``.
        rows_to_image / cols_to_image: operators ``low_h -> H`` / ``low_w -> W``.
    """

    original_size: tuple[int, int]
    input_size: int
    resized_size: tuple[int, int]
    low_res_size: tuple[int, int]
    rows_to_low_res: SparseOperator = field(repr=False)
    cols_to_low_res: SparseOperator = field(repr=False)
    rows_to_image: SparseOperator = field(repr=False)
    cols_to_image: SparseOperator = field(repr=False)

    @classmethod
    def resize_longest_side(
        cls,
        original_size: tuple[int, int],
        input_size: int = 1024,
        low_res_size: tuple[int, int] = (256, 256),
    ) -> Frame:
        """SAM's convention: resize longest side, pad bottom-right, low-res grid of the square.

        Image -> low res (mask prompts): resize to ``resized_size``, zero-pad to the square,
        resize to ``low_res_size``. Low res -> image (predicted masks): resize to the
        square, crop ``resized_size``, resize to ``original_size`` (``Sam.postprocess_masks``).
        """
        H, W = (int(v) for v in original_size)
        if H < 1 or W < 1:
            raise ValueError(f"original_size must be positive, got {original_size}")
        rh, rw = resized_shape((H, W), input_size)

        def down(n: int, n_resized: int, n_low: int) -> np.ndarray:
            stage1 = linear_resize_matrix(n, n_resized)
            padded = _pad_matrix(n_resized, input_size) @ stage1
            return linear_resize_matrix(input_size, n_low) @ padded

        def up(n: int, n_resized: int, n_low: int) -> np.ndarray:
            square = linear_resize_matrix(n_low, input_size)[:n_resized]
            return linear_resize_matrix(n_resized, n) @ square

        low_h, low_w = low_res_size
        return cls(
            original_size=(H, W),
            input_size=input_size,
            resized_size=(rh, rw),
            low_res_size=(low_h, low_w),
            rows_to_low_res=SparseOperator.from_dense(down(H, rh, low_h)),
            cols_to_low_res=SparseOperator.from_dense(down(W, rw, low_w)),
            rows_to_image=SparseOperator.from_dense(up(H, rh, low_h)),
            cols_to_image=SparseOperator.from_dense(up(W, rw, low_w)),
        )

    @classmethod
    def resize_square(
        cls,
        original_size: tuple[int, int],
        input_size: int = 1024,
        low_res_size: tuple[int, int] = (256, 256),
    ) -> Frame:
        """SAM 2's convention: the image fills the square input, aspect ratio not kept.

        Image -> low res (mask prompts): resize to the square, resize to ``low_res_size``.
        Low res -> image (predicted masks): one resize to ``original_size``
        (``SAM2Transforms.postprocess_masks``). ``resized_size`` is the whole square.
        """
        H, W = (int(v) for v in original_size)
        if H < 1 or W < 1:
            raise ValueError(f"original_size must be positive, got {original_size}")
        low_h, low_w = low_res_size

        def down(n: int, n_low: int) -> np.ndarray:
            return linear_resize_matrix(input_size, n_low) @ linear_resize_matrix(n, input_size)

        return cls(
            original_size=(H, W),
            input_size=input_size,
            resized_size=(input_size, input_size),
            low_res_size=(low_h, low_w),
            rows_to_low_res=SparseOperator.from_dense(down(H, low_h)),
            cols_to_low_res=SparseOperator.from_dense(down(W, low_w)),
            rows_to_image=SparseOperator.from_dense(linear_resize_matrix(low_h, H)),
            cols_to_image=SparseOperator.from_dense(linear_resize_matrix(low_w, W)),
        )

    @property
    def input_scale(self) -> tuple[float, float]:
        """``(sx, sy)``: an image point ``(x, y)`` lands at ``(x * sx, y * sy)`` in the input.

        Same arithmetic as SAM's ``ResizeLongestSide.apply_coords`` and SAM 2's
        ``transform_coords`` (``x / W * input_size``); box corners map the same way.
        """
        H, W = self.original_size
        rh, rw = self.resized_size
        return rw / W, rh / H

    def embedding_taps(self, grid_size: tuple[int, int]) -> tuple[LinearTaps, LinearTaps]:
        """Bilinear sampling of an embedding grid at every image pixel: (row, column) taps.

        The grid covers the padded square input; only the cells that cover the image
        (:meth:`embedding_cells`) are read, and pixel centres map to their exact place in
        the grid (``(y + 0.5) * resized_h / H / stride - 0.5``).
        """
        cells = self.embedding_cells(grid_size)
        return tuple(  # type: ignore[return-value]
            linear_taps(c, n, scale=(r / (self.input_size / g)) / n)
            for n, r, g, c in zip(
                self.original_size, self.resized_size, grid_size, cells, strict=True
            )
        )

    def embedding_cells(self, grid_size: tuple[int, int]) -> tuple[int, int]:
        """Number of grid rows / columns that cover the image (not only padding)."""
        gh, gw = grid_size
        return tuple(  # type: ignore[return-value]
            min(g, math.ceil(r / (self.input_size / g) - 1e-9))
            for r, g in zip(self.resized_size, (gh, gw), strict=True)
        )
