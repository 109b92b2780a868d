"""A controlled Backend test double: its decoder returns the masks and IoUs a test chose.

Its model input and low-res grid have the same side (64 by default), so for an image of
that side (or a crop of that side) a low-res cell is exactly one image pixel and a mask
the decoder returns lands on known pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samrefiner.geometry import Frame
from samrefiner.models.base import Backend, Decoded, ImageEmbedding

#: ``answer(call, row) -> (C x h x w logits, C ious)`` for one prompt of a decode call.
Answer = Callable[["DecodeCall", int], tuple[np.ndarray, np.ndarray]]


@dataclass
class DecodeCall:
    """One recorded ``decode``: its arguments as numpy arrays (None where not given)."""

    embedding: ImageEmbedding
    point_coords: np.ndarray | None
    point_labels: np.ndarray | None
    boxes: np.ndarray | None
    mask_input: np.ndarray | None
    multimask_output: bool

    @property
    def image(self) -> np.ndarray:
        """The ``H x W x 3`` pixels that were encoded (the image or the crop)."""
        return self.embedding.extras["image"].numpy()

    @property
    def box_only(self) -> bool:
        return self.point_coords is None and self.mask_input is None and self.boxes is not None


def bright_truth(call: DecodeCall, frame: Frame) -> np.ndarray:
    """``h x w`` bool: the encoded image's bright pixels (red > 127) in the low-res frame."""
    bright = (call.image[..., 0] > 127).astype(np.float32)
    low = frame.rows_to_low_res.apply(bright, 0)
    return frame.cols_to_low_res.apply(low, 1) > 0.5


def logits_of(mask: np.ndarray) -> np.ndarray:
    """``±10`` logits of a bool mask."""
    return np.where(mask, 10.0, -10.0).astype(np.float32)


class FakeBackend(Backend):
    """Backend double; ``answer`` decides every candidate, ``encoded`` / ``calls`` record use.

    The default answer segments the bright pixels of the encoded image (three equal
    candidates, predicted IoU 0.9).
    """

    name = "fake"

    def __init__(self, answer: Answer | None = None, side: int = 64) -> None:
        self.side = side
        self.answer = answer or self.segment_bright
        self.encoded: list[np.ndarray] = []
        self.embeddings: list[ImageEmbedding] = []
        self.calls: list[DecodeCall] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def input_size(self) -> int:
        return self.side

    @property
    def low_res_size(self) -> tuple[int, int]:
        return self.side, self.side

    def frame(self, original_size: tuple[int, int]) -> Frame:
        return Frame.resize_longest_side(original_size, self.side, self.low_res_size)

    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        self.encoded.append(image.copy())
        frame = self.frame(image.shape[:2])
        grid = self.side // 16
        # Every cell the same vector: the elastic box finds all strips similar.
        embedding = ImageEmbedding(
            features=torch.ones((1, 4, grid, grid)),
            original_size=image.shape[:2],
            resized_size=frame.resized_size,
            extras={"image": torch.from_numpy(image.copy())},
        )
        self.embeddings.append(embedding)
        return embedding

    def decode(
        self,
        embedding: ImageEmbedding,
        *,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool = True,
        dtype: str = "float32",
    ) -> Decoded:
        def arr(t: Any) -> np.ndarray | None:
            return None if t is None else t.detach().cpu().numpy().copy()

        call = DecodeCall(
            embedding,
            arr(point_coords),
            arr(point_labels),
            arr(boxes),
            arr(mask_input),
            multimask_output,
        )
        self.calls.append(call)
        batch = next(
            len(a) for a in (call.point_coords, call.boxes, call.mask_input) if a is not None
        )
        logits, ious = zip(*(self.answer(call, row) for row in range(batch)), strict=True)
        return Decoded(
            low_res_logits=torch.from_numpy(np.stack(logits)),
            iou_predictions=torch.from_numpy(np.stack(ious).astype(np.float32)),
        )

    def segment_bright(self, call: DecodeCall, row: int) -> tuple[np.ndarray, np.ndarray]:
        truth = logits_of(bright_truth(call, self.frame(call.embedding.original_size)))
        return np.stack([truth] * 3), np.full(3, 0.9, dtype=np.float32)


def echo(call: DecodeCall, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Answer with the mask prompt itself (its sign): a refined mask is a fixed point."""
    assert call.mask_input is not None
    out = logits_of(call.mask_input[row, 0] > 0)
    return np.stack([out] * 3), np.full(3, 0.9, dtype=np.float32)


def fixed(mask: np.ndarray, iou: float) -> Answer:
    """Answer every prompt with ``mask`` (low-res bool) at predicted IoU ``iou``."""

    def answer(call: DecodeCall, row: int) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([logits_of(mask)] * 3), np.full(3, iou, dtype=np.float32)

    return answer
