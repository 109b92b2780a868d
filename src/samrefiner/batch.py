"""Tensors in, tensors out: :meth:`Refiner.refine_batch` for training loops.

A training step holds its images and coarse masks (or predicted probabilities) as torch
tensors, often on the GPU, with padded object slots. :func:`refine_batch` takes them as
they are, encodes the batch's images in one pass of the model's encoder where the
backend can (SAM, HQ-SAM and MobileSAM batch; SAM 2 and the ``transformers`` backends
encode one image after the other), refines each image's objects exactly as
:meth:`~samrefiner.Refiner.refine` does, and returns tensors on the input's device.

What runs where: the image encoder and the mask decoder run on the model's device; prompt
mining (the distance transform and box of each coarse mask, the mask prompt), pasting the
decoded low-res masks back to full size and the tensor <-> array copies run on the CPU,
one object after the other (``result.timings`` splits the seconds per stage).

A bad object never raises: an empty mask, an all-ones mask (no background to prompt
against) and a padded slot each get their status code (:class:`BatchStatus`) and their
coarse mask back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # the refiner imports this module
    from samrefiner.refiner import Refiner

__all__ = ["STATUS_NAMES", "BatchRefineResult", "BatchStatus", "refine_batch"]


class BatchStatus(IntEnum):
    """Integer status of each object in :attr:`BatchRefineResult.status`.

    The first five are :data:`samrefiner.STATUSES` (same meaning, same order); the last
    two are objects :func:`refine_batch` does not give to the model.
    """

    REFINED = 0  #: every iteration ran
    CONVERGED = 1  #: stopped early: successive results agreed (``early_stop_iou``)
    EMPTY = 2  #: the coarse mask was empty; returned unchanged
    COLLAPSED = 3  #: the model returned an empty mask; the last non-empty one is kept
    KEPT_COARSE = 4  #: the quality gate rejected the refined mask
    FULL = 5  #: the coarse mask covers the whole image; returned unchanged
    PADDING = 6  #: ``valid`` is False: a padded slot; its coarse mask is returned

    @property
    def label(self) -> str:
        """The status as a string: ``"refined"``, ..., ``"full"``, ``"padding"``."""
        return self.name.lower()


#: ``STATUS_NAMES[code]`` is the string of status ``code`` (``BatchStatus(code).label``).
STATUS_NAMES: tuple[str, ...] = tuple(status.label for status in BatchStatus)
_CODE = {name: code for code, name in enumerate(STATUS_NAMES)}

#: Stages of :attr:`BatchRefineResult.timings`: the refiner's four and the tensor copies.
BATCH_STAGES = ("encoder", "excavation", "decoder", "postprocess", "transfer")


@dataclass(frozen=True)
class BatchRefineResult:
    """Refined masks of a batch, as tensors on the input's device.

    Attributes:
        masks: ``B x K x H x W`` bool refined masks (the coarse mask for objects that were
            not refined: see :attr:`status`).
        scores: ``B x K`` float32 predicted IoU of each kept mask; NaN where the model gave
            nothing that was kept (empty, full, padding, collapsed at the first round).
        status: ``B x K`` int64 codes of :class:`BatchStatus` (names in
            :data:`STATUS_NAMES`).
        iterations: ``B x K`` int64 rounds each object ran.
        soft: with ``alpha``: ``B x K x H x W`` float32 soft pseudo-labels,
            ``alpha * masks + (1 - alpha) * probabilities`` (the input probabilities; a
            bool input counts as 0 / 1); else None.
        timings: seconds per stage for the whole batch (:data:`BATCH_STAGES`): the
            ``encoder`` and ``decoder`` run on the model's device, ``excavation`` (prompt
            mining), ``postprocess`` and ``transfer`` (tensor <-> array copies) on the CPU.
    """

    masks: torch.Tensor
    scores: torch.Tensor
    status: torch.Tensor
    iterations: torch.Tensor
    soft: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.masks.ndim != 4 or self.masks.dtype != torch.bool:
            raise ValueError(
                f"masks must be B x K x H x W bool, "
                f"got {tuple(self.masks.shape)} {self.masks.dtype}"
            )
        objects = tuple(self.masks.shape[:2])
        for name, tensor in (
            ("scores", self.scores),
            ("status", self.status),
            ("iterations", self.iterations),
        ):
            if tuple(tensor.shape) != objects:
                raise ValueError(f"{name} must be B x K = {objects}, got {tuple(tensor.shape)}")
        if self.soft is not None and self.soft.shape != self.masks.shape:
            raise ValueError(
                f"soft must have the masks' shape {tuple(self.masks.shape)}, "
                f"got {tuple(self.soft.shape)}"
            )

    def status_names(self) -> list[list[str]]:
        """:attr:`status` as strings, ``B`` lists of ``K``."""
        return [[STATUS_NAMES[code] for code in row] for row in self.status.tolist()]


def _images_uint8(images: torch.Tensor) -> torch.Tensor:
    """``B x 3 x H x W`` uint8 or float in [0, 1] -> ``B x H x W x 3`` uint8 on the CPU
    (floats scaled by 255 and rounded half to even, as
    :func:`~samrefiner.io.masks.as_rgb_image` does)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be B x 3 x H x W, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        pixels = images
    elif images.is_floating_point():
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images contain NaN or infinite values")
        if images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
            raise ValueError(
                f"float images must lie in [0, 1], got [{float(images.min())}, "
                f"{float(images.max())}]"
            )
        pixels = torch.round(images.float() * 255).to(torch.uint8)
    else:
        raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    return pixels.permute(0, 2, 3, 1).contiguous().cpu()


def _probabilities(masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Check ``masks`` (``B x K x H x W`` bool or float probabilities) against ``images``."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    batch, _, height, width = images.shape
    if masks.ndim != 4 or masks.shape[0] != batch or tuple(masks.shape[2:]) != (height, width):
        raise ValueError(
            f"masks must be B x K x H x W = {batch} x K x {height} x {width} (the images'), "
            f"got shape {tuple(masks.shape)}"
        )
    if masks.device != images.device:
        raise ValueError(f"masks are on {masks.device} but the images on {images.device}")
    if masks.dtype == torch.bool:
        return masks
    if not masks.is_floating_point():
        raise ValueError(f"masks must be bool or float probabilities, got {masks.dtype}")
    if masks.numel() and not bool(((masks >= 0) & (masks <= 1)).all()):
        raise ValueError("mask probabilities must lie in [0, 1] (NaN is not allowed)")
    return masks


def refine_batch(
    refiner: Refiner,
    images: torch.Tensor,
    masks: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    threshold: float = 0.5,
    alpha: float | None = None,
) -> BatchRefineResult:
    """Refine a batch of coarse masks given as tensors (see :meth:`Refiner.refine_batch`).

    Args:
        refiner: the refiner whose model and configuration are used.
        images: ``B x 3 x H x W`` uint8, or float in [0, 1] (scaled by 255 and rounded),
            on any device.
        masks: ``B x K x H x W`` bool, or float probabilities in [0, 1] (an object is
            its pixels ``> threshold``), on the images' device.
        valid: ``B x K`` bool, False for padded object slots (status ``padding``, their
            coarse mask back); None: every slot is an object.
        threshold: probability above which a pixel belongs to the coarse mask.
        alpha: in [0, 1]: also return :attr:`BatchRefineResult.soft`, the refined mask
            blended with the input probabilities; None: no soft masks.

    Returns:
        A :class:`BatchRefineResult` on ``masks``' device. Image ``b``'s objects that are
        not padding, empty or full are refined as ``refiner.refine(image_b, coarse_b)``
        refines them, given the embedding of one batched encoder pass (on some devices a
        batched pass differs from a single one in the last bits, and so may ``scores``).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    timings = dict.fromkeys(BATCH_STAGES, 0.0)
    start = time.perf_counter()
    pixels = _images_uint8(images).numpy()
    probabilities = _probabilities(masks, images)
    coarse_t = probabilities if probabilities.dtype == torch.bool else probabilities > threshold
    batch, count = coarse_t.shape[:2]
    if valid is None:
        valid_t = torch.ones((batch, count), dtype=torch.bool)
    else:
        if not isinstance(valid, torch.Tensor) or tuple(valid.shape) != (batch, count):
            raise ValueError(
                f"valid must be a B x K = {batch} x {count} bool tensor, got "
                f"{tuple(valid.shape) if isinstance(valid, torch.Tensor) else type(valid).__name__}"
            )
        valid_t = valid.to(torch.bool)
    coarse = coarse_t.cpu().numpy()
    usable = valid_t.cpu().numpy()
    timings["transfer"] += time.perf_counter() - start

    out_masks = coarse.copy()
    scores = np.full((batch, count), np.nan, dtype=np.float32)
    status = np.full((batch, count), int(BatchStatus.PADDING), dtype=np.int64)
    iterations = np.zeros((batch, count), dtype=np.int64)
    todo: dict[int, list[int]] = {}
    for b in range(batch):
        for k in range(count):
            if not usable[b, k]:
                continue
            if not coarse[b, k].any():
                status[b, k] = BatchStatus.EMPTY
            elif coarse[b, k].all():
                status[b, k] = BatchStatus.FULL
            else:
                todo.setdefault(b, []).append(k)

    todo_images = sorted(todo)
    start = time.perf_counter()
    embeddings = refiner.encode_batch([pixels[b] for b in todo_images]) if todo_images else []
    device = refiner.model.device
    if device.type == "cuda":  # charge the asynchronous encoder to the encoder
        torch.cuda.current_stream(device).synchronize()
    timings["encoder"] += time.perf_counter() - start
    for b, embedding in zip(todo_images, embeddings, strict=True):
        objects = todo[b]
        result = refiner.refine(pixels[b], coarse[b, objects], embedding=embedding)
        for stage, seconds in result.timings.items():
            timings[stage] += seconds
        out_masks[b, objects] = result.masks
        scores[b, objects] = result.scores
        status[b, objects] = [_CODE[s] for s in result.status]
        iterations[b, objects] = result.iterations

    start = time.perf_counter()
    target = masks.device
    refined = torch.from_numpy(out_masks).to(target)
    soft = None
    if alpha is not None:
        soft = alpha * refined.float() + (1.0 - alpha) * probabilities.float()
    tensors = {
        "scores": torch.from_numpy(scores).to(target),
        "status": torch.from_numpy(status).to(target),
        "iterations": torch.from_numpy(iterations).to(target),
    }
    if target.type == "cuda":
        torch.cuda.current_stream(target).synchronize()
    timings["transfer"] += time.perf_counter() - start
    return BatchRefineResult(masks=refined, soft=soft, timings=timings, **tensors)
