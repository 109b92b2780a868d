"""The small interface through which the refiner talks to a SAM-family model.

A backend computes an image embedding once, then decodes batches of prompts into three
candidate low-res logit maps with their predicted IoU. Everything that belongs to the
model (input size, low-res size, normalisation, padding, coordinate transforms) stays in
the backend; the refiner only sees a :class:`~samrefiner.geometry.Frame`.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from samrefiner.geometry import Frame
from samrefiner.models.families import PROMPT_KINDS

_B = TypeVar("_B", bound="Backend")

#: How many image sizes a backend keeps the frame of (:meth:`Backend.frame`).
FRAME_CACHE_SIZE = 8


def check_image(image: np.ndarray) -> None:
    """Raise a ValueError unless ``image`` is ``H x W x 3`` uint8."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be H x W x 3 uint8, got shape {image.shape} dtype {image.dtype}"
        )


def writable(image: np.ndarray) -> np.ndarray:
    """``image``, copied when it is read-only (the runner's decoded images are): image
    transforms that wrap it with ``torch.from_numpy`` warn about read-only arrays."""
    return image if image.flags.writeable else image.copy()


def to_input_frame(xy: torch.Tensor, frame: Frame) -> torch.Tensor:
    """``... x 2`` ``(X, Y)`` image pixels (points or box corners) in the model's input frame."""
    sx, sy = frame.input_scale
    return xy * xy.new_tensor([sx, sy])


def stability_scores(logits: torch.Tensor, offset: float = 1.0) -> torch.Tensor:
    """SAM's stability score of ``B x C x h x w`` logits: ``B x C`` float32.

    The IoU of the mask thresholded at ``+offset`` with the one thresholded at
    ``-offset`` (``segment_anything.utils.amg.calculate_stability_score`` at threshold 0):
    a mask that barely changes when the threshold moves is confident.
    """
    inner = (logits > offset).sum(dim=(-1, -2), dtype=torch.int64)
    outer = (logits > -offset).sum(dim=(-1, -2), dtype=torch.int64)
    return torch.where(
        outer > 0, inner / outer.clamp(min=1), torch.zeros_like(inner, dtype=torch.float32)
    ).float()


@dataclass
class ImageEmbedding:
    """A model's encoding of one image.

    Attributes:
        features: ``1 x C x h x w`` float32 feature map of the square input (the one the
            elastic box compares pixels with: SAM 2's 256-channel top-level map).
        original_size: ``(H, W)`` of the image.
        resized_size: ``(h, w)`` of the image inside the model input, before padding.
        extras: model-specific tensors the decoder needs (HQ-SAM's early features, SAM 2's
            high-resolution maps), ``1 x ...`` float32.
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.ndim != 4 or self.features.shape[0] != 1:
            raise ValueError(
                f"features must be 1 x C x h x w, got shape {tuple(self.features.shape)}"
            )
        self.original_size = (int(self.original_size[0]), int(self.original_size[1]))
        self.resized_size = (int(self.resized_size[0]), int(self.resized_size[1]))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each tensor: ``"features"``, and ``"extras.NAME"`` per extra."""
        out = {"features": tuple(self.features.shape)}
        out.update({f"extras.{k}": tuple(v.shape) for k, v in sorted(self.extras.items())})
        return out


@dataclass
class Decoded:
    """Decoder output for a batch of ``B`` prompts.

    Attributes:
        low_res_logits: ``B x C x h x w`` float32 candidate mask logits (low-res frame);
            ``C`` = 3 with ``multimask_output``, else 1.
        iou_predictions: ``B x C`` float32 predicted IoU of each candidate.
    """

    low_res_logits: torch.Tensor
    iou_predictions: torch.Tensor


class Backend(ABC):
    """A promptable segmentation model, as the refiner uses it."""

    #: Short name for logs and reports (e.g. ``"sam_vit_b"``).
    name: str = "backend"
    #: Prompt kinds this model accepts (from :data:`PROMPT_KINDS`).
    prompts: frozenset[str] = frozenset(PROMPT_KINDS)
    #: How the image enters the model's square input (``families.FRAMES``):
    #: ``"longest_side"`` (SAM v1) or ``"square"`` (SAM 2); :meth:`frame` builds it. None:
    #: the backend overrides :meth:`frame`.
    frame_kind: str | None = None

    def require_prompts(self, kinds: Iterable[str]) -> None:
        """Raise a ValueError naming the model and the prompt it cannot take."""
        for kind in kinds:
            if kind not in self.prompts:
                raise ValueError(
                    f"model {self.name!r} does not accept {kind} prompts (it accepts "
                    f"{', '.join(sorted(self.prompts))}); turn them off in the configuration"
                )

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Device the model runs on."""

    @property
    @abstractmethod
    def input_size(self) -> int:
        """Side of the model's square input, in pixels."""

    @property
    @abstractmethod
    def low_res_size(self) -> tuple[int, int]:
        """``(h, w)`` of the low-res mask grid (mask prompts and predicted logits)."""

    def frame(self, original_size: tuple[int, int]) -> Frame:
        """Geometry linking an image of ``original_size`` ``(H, W)`` to the model's frames.

        Built from :attr:`frame_kind`, :attr:`input_size` and :attr:`low_res_size`, and kept
        for the last :data:`FRAME_CACHE_SIZE` sizes; a backend without a ``frame_kind``
        overrides this method.
        """
        cache = vars(self).get("_frames")
        if cache is None:
            cache = functools.lru_cache(maxsize=FRAME_CACHE_SIZE)(self._build_frame)
            vars(self)["_frames"] = cache
        return cache((int(original_size[0]), int(original_size[1])))

    def _build_frame(self, original_size: tuple[int, int]) -> Frame:
        if self.frame_kind == "square":
            return Frame.resize_square(original_size, self.input_size, self.low_res_size)
        if self.frame_kind == "longest_side":
            return Frame.resize_longest_side(original_size, self.input_size, self.low_res_size)
        raise NotImplementedError(
            f"{type(self).__name__} sets no frame_kind: it must override frame()"
        )

    def to(self: _B, device: str | torch.device) -> _B:
        """Move the model to ``device`` (in place) and return self; a backend that exposes
        no :attr:`module` has nothing to move."""
        if type(self).module is not Backend.module:
            self.module.to(device)
        return self

    @abstractmethod
    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        """Embed an ``H x W x 3`` uint8 RGB image."""

    def encode_batch(
        self, images: Sequence[np.ndarray], dtype: str = "float32"
    ) -> list[ImageEmbedding]:
        """Embed several ``H x W x 3`` uint8 RGB images (sizes may differ), in order.

        The default encodes them one at a time with :meth:`encode`; a backend whose
        encoder takes a batch overrides it to run them through the encoder together.
        """
        return [self.encode(image, dtype) for image in images]

    @abstractmethod
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
        """Decode ``B`` prompts into candidates (SAM's argument names).

        Args:
            embedding: from :meth:`encode`.
            point_coords: ``B x K x 2`` float32 ``(X, Y)`` image pixels, or None.
            point_labels: ``B x K`` int (1 positive, 0 negative, -1 padding), or None.
            boxes: ``B x 4`` float32 XYXY image pixels, or None.
            mask_input: ``B x 1 x h x w`` float32 logits in the low-res frame, or None.
            multimask_output: three candidates per prompt (True), or SAM's single one.

        Returns:
            ``B x C`` candidates, ``C`` = 3 with ``multimask_output`` else 1.
        """

    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        """:meth:`ImageEmbedding.shapes` of this model's embeddings, the same for every image
        (the encoder sees the image at its own square input size).

        The embedding cache checks stored embeddings against it. This default encodes a
        blank image to see them (one encoder pass); backends that can tell from their
        modules override it.
        """
        blank = np.zeros((self.input_size, self.input_size, 3), dtype=np.uint8)
        return self.encode(blank).shapes()

    @property
    def module(self) -> torch.nn.Module:
        """The wrapped torch module (where the weights live)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its module")

    @property
    def iou_head(self) -> torch.nn.Module | None:
        """The module that predicts each candidate's IoU (an MLP ending in a Linear layer).

        SAMRefiner++ adaption puts a LoRA on its output layer, the linear layer that runs
        last (:func:`samrefiner.adaption.lora.last_linear_name`; ``transformers`` heads
        register ``proj_out`` before their hidden layers). None: no trainable IoU head.
        """
        return None

    @contextlib.contextmanager
    def precision(self, dtype: str) -> Iterator[None]:
        """Autocast context for ``dtype`` (``"float32"`` runs as is)."""
        if dtype == "float32":
            yield
            return
        if dtype != "bfloat16":
            raise ValueError(f"unsupported dtype {dtype!r}")
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            yield
