"""Label Studio's brush RLE: the run-length format of ``brushlabels`` results.

It is not COCO RLE. A brush mask is stored as the ``H x W x 4`` RGBA image Label Studio's
editor paints (row-major, channels last), flattened to ``N = H * W * 4`` bytes and packed
as a bit stream (most significant bit first) of:

* a header: ``N`` (32 bits), the word size minus one (5 bits) and four run-length field
  widths minus one (4 bits each);
* then, until ``N`` values are out, blocks of: one flag bit, a 2-bit index choosing one
  of the four widths, a count ``c`` of that width, then either one word repeated
  ``c + 1`` times (flag 1) or ``c + 1`` words (flag 0);
* zero bits up to a whole byte.

The mask is the alpha channel: a pixel is foreground where its alpha is not 0. The
encoder writes words of 8 bits and widths ``3, 4, 8, 16`` (what Label Studio's SDK
writes), every channel of a foreground pixel 255, one repeat block per run of equal
bytes (runs longer than 65536 are split), and no literal blocks except for runs of one.

    >>> import numpy as np
    >>> mask = np.zeros((2, 3), dtype=bool)
    >>> mask[0, 1] = True
    >>> bool((decode_mask(encode_mask(mask), 2, 3) == mask).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BrushRLEError", "decode_mask", "decode_values", "encode_mask", "encode_values"]

#: Widths of the run-length field the encoder declares (the SDK's and the editor's).
RUN_WIDTHS = (3, 4, 8, 16)
_WORD = 8
_HEADER_BITS = 32 + 5 + 4 * 4
#: Longest run one repeat block holds (16-bit count field, plus one).
_MAX_RUN = 1 << 16


class BrushRLEError(ValueError):
    """Bytes that are not a brush RLE stream, or one of another size than expected."""


def _fields_to_bytes(values: np.ndarray, widths: np.ndarray) -> list[int]:
    """Concatenate the bit fields ``values[k]`` of ``widths[k]`` bits (MSB first) and pad
    to whole bytes with zero bits."""
    total = int(widths.sum())
    ends = np.cumsum(widths)
    field = np.repeat(np.arange(len(widths)), widths)
    # Bit position inside its field, counted from the field's least significant bit.
    shift = ends[field] - 1 - np.arange(total)
    bits = ((values[field] >> shift) & 1).astype(np.uint8)
    return np.packbits(bits).tolist()


def encode_values(values: np.ndarray | Sequence[int]) -> list[int]:
    """Encode a 1-D sequence of bytes (0..255) as brush RLE; returns the stream's bytes
    as a list of ints (the JSON form Label Studio stores in ``value.rle``)."""
    flat = np.asarray(values).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() > 255):
        raise ValueError("brush RLE words are bytes: values must be in 0..255")
    flat = flat.astype(np.int64)
    n = flat.size
    if n >= 1 << 32:
        raise ValueError(f"brush RLE holds fewer than 2**32 values, got {n}")
    header_values = [n, _WORD - 1, *(w - 1 for w in RUN_WIDTHS)]
    header_widths = [32, 5, 4, 4, 4, 4]
    if n:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [n]]))
        words = flat[starts]
        # Runs longer than one block holds become several blocks of the same word.
        pieces = -(-lengths // _MAX_RUN)
        words = np.repeat(words, pieces)
        lengths = np.repeat(lengths, pieces)
        first = np.concatenate([[0], np.cumsum(pieces)[:-1]])
        offset = np.arange(len(lengths)) - np.repeat(first, pieces)
        lengths = np.minimum(lengths - offset * _MAX_RUN, _MAX_RUN)
        # The narrowest width that holds each count (length - 1).
        choice = np.searchsorted(np.array([1 << w for w in RUN_WIDTHS]), lengths, side="left")
        width = np.array(RUN_WIDTHS)[choice]
        flag = (lengths > 1).astype(np.int64)
        blocks = len(lengths)
        block_values = np.stack([flag, choice, lengths - 1, words], axis=1).reshape(-1)
        block_widths = np.stack(
            [np.ones(blocks, np.int64), np.full(blocks, 2), width, np.full(blocks, _WORD)],
            axis=1,
        ).reshape(-1)
    else:
        block_values = block_widths = np.zeros(0, dtype=np.int64)
    values_all = np.concatenate([np.array(header_values, dtype=np.int64), block_values])
    widths_all = np.concatenate([np.array(header_widths, dtype=np.int64), block_widths])
    return _fields_to_bytes(values_all, widths_all)


def decode_values(rle: Sequence[int] | bytes, *, max_values: int | None = None) -> np.ndarray:
    """Decode a brush RLE stream to its 1-D ``uint8`` values (word sizes up to 8 bits).

    Args:
        rle: the stream's bytes (a list of ints 0..255, as in ``value.rle``, or bytes).
        max_values: refuse a stream that declares more values (a size guard).

    Raises:
        BrushRLEError: not a list of bytes, a header that makes no sense, a stream that
            ends before its values, or more values than ``max_values``.
    """
    try:
        data = bytes(rle)
    except (TypeError, ValueError) as exc:
        raise BrushRLEError(f"brush RLE must be a list of bytes (0..255): {exc}") from exc
    total_bits = len(data) * 8
    if total_bits < _HEADER_BITS:
        raise BrushRLEError(f"brush RLE of {len(data)} bytes is shorter than its header")
    # The stream as a string of '0' / '1': each field is one int(..., 2) of a slice.
    bits = (np.unpackbits(np.frombuffer(data, dtype=np.uint8)) + ord("0")).tobytes().decode()
    position = 0

    def read(width: int) -> int:
        nonlocal position
        end = position + width
        if end > total_bits:
            raise BrushRLEError("brush RLE ends in the middle of its values")
        field = bits[position:end]
        position = end
        return int(field, 2)

    n = read(32)
    word = read(5) + 1
    widths = [read(4) + 1 for _ in range(4)]
    if word > 8:
        raise BrushRLEError(f"brush RLE of {word}-bit words: only words up to 8 bits are masks")
    if max_values is not None and n > max_values:
        raise BrushRLEError(f"brush RLE declares {n} values, more than the {max_values} expected")
    out = np.zeros(n, dtype=np.uint8)
    i = 0
    while i < n:
        repeat = read(1)
        j = i + 1 + read(widths[read(2)])
        if j > n:
            raise BrushRLEError(f"brush RLE block runs past its {n} values")
        if repeat:
            out[i:j] = read(word)
            i = j
        else:
            for k in range(i, j):
                out[k] = read(word)
            i = j
    return out


def encode_mask(mask: np.ndarray) -> list[int]:
    """Brush RLE of an ``H x W`` mask (bool, or 0 / non-zero): every channel of a
    foreground pixel 255, of a background pixel 0."""
    pixels = np.asarray(mask)
    if pixels.ndim != 2:
        raise ValueError(f"a brush mask is H x W, got shape {pixels.shape}")
    values = np.repeat(np.where(pixels != 0, 255, 0).astype(np.uint8).reshape(-1), 4)
    return encode_values(values)


def decode_mask(rle: Sequence[int] | bytes, height: int, width: int) -> np.ndarray:
    """The ``height x width`` bool mask (alpha not 0) of a brush RLE stream.

    Raises:
        BrushRLEError: a malformed stream, or one whose size is not ``height * width * 4``
            (a brush region of another image size).
    """
    expected = int(height) * int(width) * 4
    values = decode_values(rle, max_values=expected)
    if values.size != expected:
        raise BrushRLEError(
            f"brush RLE holds {values.size} values; a {width} x {height} image needs "
            f"{expected} (width x height x 4)"
        )
    return values.reshape(int(height), int(width), 4)[:, :, 3] != 0
