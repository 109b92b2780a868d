"""Prompt excavation: noise-tolerant SAM prompts mined from coarse masks, without a model.

* positive point: the mask pixel farthest from the background;
* negative point: the pixel of the (inclusive) tight box farthest from the mask;
* box: the tight box, grown by the context-aware elastic rule when ``margin > 0``;
* mask: the coarse mask as Gaussian-weighted ±``strength`` logits in the low-res frame
  (amplitude 1 for a mask whose box grew).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from samrefiner.config import RefineConfig
from samrefiner.excavation.distance import interior_distance, negative_point
from samrefiner.excavation.elastic_box import EmbeddingSimilarity, elastic_box
from samrefiner.excavation.mask_prompt import gaussian_weights, mask_prompt_logits
from samrefiner.geometry import Frame
from samrefiner.io.masks import as_mask_stack, mask_bbox
from samrefiner.types import POINT_NEGATIVE, POINT_POSITIVE, MaskPrompt


class Excavator:
    """Mines prompts for masks of one image.

    Args:
        frame: geometry of the image in the model's frames.
        config: which prompts to mine and their parameters.
        image_embedding: ``1 x C x h x w`` feature map of the padded square input (numpy
            or torch); needed only when ``config.margin > 0`` (elastic box).
    """

    def __init__(
        self,
        frame: Frame,
        config: RefineConfig,
        image_embedding: Any = None,
    ) -> None:
        self.frame = frame
        self.config = config
        self.similarity: EmbeddingSimilarity | None = None
        if config.uses_elastic_box:
            if image_embedding is None:
                raise ValueError("the elastic box (margin > 0) needs image_embedding")
            self.similarity = EmbeddingSimilarity(image_embedding, frame)

    def __call__(self, mask: np.ndarray) -> MaskPrompt | None:
        """Prompts of one ``H x W`` bool mask, or None when the mask is empty."""
        if mask.shape != self.frame.original_size:
            raise ValueError(
                f"mask is {mask.shape[0]}x{mask.shape[1]} but the frame is "
                f"{self.frame.original_size[0]}x{self.frame.original_size[1]}"
            )
        tight = mask_bbox(mask)
        if tight is None:
            return None
        cfg = self.config
        interior = interior_distance(mask, tight)

        points: list[tuple[int, int]] = []
        labels: list[int] = []
        if cfg.use_points:
            points.append(interior.peak)
            labels.append(POINT_POSITIVE)
            if cfg.negative_point:
                neg = negative_point(mask, tight)
                if neg is not None:
                    points.append(neg)
                    labels.append(POINT_NEGATIVE)

        box, expanded = tight, False
        if self.similarity is not None:
            grown = elastic_box(mask, tight, self.similarity, cfg.margin)
            box, expanded = grown.box, grown.expanded

        logits = None
        if cfg.use_mask:
            amplitude = 1.0 if expanded else cfg.strength
            logits = mask_prompt_logits(
                mask, tight, interior, self.frame, gamma=cfg.gamma, amplitude=amplitude
            )
        return MaskPrompt(
            points=np.asarray(points, dtype=np.float32).reshape(-1, 2),
            point_labels=np.asarray(labels, dtype=np.int64),
            box=np.asarray(box, dtype=np.float32) if cfg.use_box else None,
            box_expanded=expanded,
            mask_logits=logits,
        )

    def many(self, masks: Sequence[np.ndarray], threads: int = 1) -> list[MaskPrompt | None]:
        """Prompts of several ``H x W`` masks, up to ``threads`` at a time, in input order.

        Masks are independent and the distance transforms release the GIL, so threads
        run in parallel; the results do not depend on ``threads``.
        """
        threads = min(threads, len(masks))
        if threads <= 1:
            return [self(m) for m in masks]
        with ThreadPoolExecutor(threads, thread_name_prefix="samrefiner-excavation") as pool:
            return list(pool.map(self, masks))


def excavate_prompts(
    masks: np.ndarray,
    config: RefineConfig | None = None,
    image_embedding: Any = None,
    *,
    input_size: int = 1024,
    low_res_size: int | tuple[int, int] = 256,
) -> list[MaskPrompt | None]:
    """Mine SAMRefiner prompts from coarse masks; a pure function, no model needed.

    Args:
        masks: ``N x H x W`` (or ``H x W``) coarse masks: bool, 0/1 or 0/255.
        config: prompt settings (defaults: :class:`RefineConfig`); its ``threads`` sets
            how many masks are mined at once.
        image_embedding: ``1 x C x h x w`` feature map of the padded square model input
            (numpy or torch); required when ``config.margin > 0``.
        input_size: side of the model's square input (SAM: 1024).
        low_res_size: side (or ``(h, w)``) of the low-res mask grid (SAM: 256).

    Returns:
        One :class:`MaskPrompt` per mask, None for an empty mask.
    """
    config = config or RefineConfig()
    stack = as_mask_stack(masks)
    low = (low_res_size, low_res_size) if isinstance(low_res_size, int) else low_res_size
    frame = Frame.resize_longest_side(stack.shape[1:], input_size, tuple(low))
    return Excavator(frame, config, image_embedding).many(stack, config.thread_count())


__all__ = ["Excavator", "excavate_prompts", "gaussian_weights"]
