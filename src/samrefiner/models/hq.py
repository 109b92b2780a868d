"""HQ-SAM backend (official package ``segment-anything-hq``, import ``segment_anything_hq``).

HQ-SAM adds a high-quality output token to SAM's decoder, fed by the encoder's
early-layer features. Candidates follow the reference implementation's use of HQ-SAM
(``hq_token_only=False``): each of SAM's three multimask candidates plus the HQ token's
mask, scored by SAM's predicted IoU. With ``hq_token_only=True`` the HQ mask alone is the
one candidate, scored by the best of those IoU predictions (as the official predictor does).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from samrefiner.extras import import_extra
from samrefiner.models.base import Backend, Decoded, ImageEmbedding
from samrefiner.models.sam import SamBackend


def import_hq() -> Any:
    """The ``segment_anything_hq`` package, or a MissingExtra naming the extra to install."""
    with warnings.catch_warnings():
        # Its TinyViT module imports timm's deprecated paths and re-registers timm's
        # own tiny_vit names: warnings about the package, not about the user's run.
        warnings.filterwarnings("ignore", category=FutureWarning, module="timm")
        warnings.filterwarnings("ignore", message="Overwriting tiny_vit", category=UserWarning)
        return import_extra("segment_anything_hq", "hq", "HQ-SAM and MobileSAM")


def build_hq_model(variant: str) -> torch.nn.Module:
    """An official HQ-SAM module with random weights: ``variant`` is a key of the package's
    ``sam_model_registry`` (``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"vit_tiny"``)."""
    return import_hq().sam_model_registry[variant]()


class HqSamBackend(SamBackend):
    """Wraps an official ``segment_anything_hq.modeling.Sam`` module (ViT-B/L/H or TinyViT).

    Args:
        sam: the model; kept reachable as the attribute ``sam``.
        name: label for logs and reports.
        hq_token_only: one candidate, the HQ token's mask (default: SAM's three candidates,
            each plus the HQ mask, as the reference does).

    ``ImageEmbedding.extras`` holds ``"interm"`` (``1 x h x w x C`` early encoder
    features, HQ-SAM's ``interm_embeddings[0]``) and ``"hq_features"`` (the decoder's
    per-image HQ feature map computed from them once per image instead of once per batch).
    """

    def __init__(self, sam: torch.nn.Module, name: str = "sam_hq", *, hq_token_only: bool = False):
        self.module_type = import_hq().modeling.Sam
        super().__init__(sam, name=name)
        self.hq_token_only = hq_token_only

    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        # The early features' width depends on the encoder (ViT or TinyViT): encode to see.
        return Backend.embedding_shapes(self)

    @torch.inference_mode()
    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        batch, resized_size = self.input_batch(image)
        decoder = self.sam.mask_decoder
        with self.precision(dtype):
            features, interm = self.sam.image_encoder(batch)
            early = interm[0]
            hq_features = decoder.embedding_encoder(features) + decoder.compress_vit_feat(
                early.permute(0, 3, 1, 2)
            )
        return ImageEmbedding(
            features=features.float(),
            original_size=image.shape[:2],
            resized_size=resized_size,
            extras={"interm": early.float(), "hq_features": hq_features.float()},
        )

    def encode_batch(
        self, images: Sequence[np.ndarray], dtype: str = "float32"
    ) -> list[ImageEmbedding]:
        # SamBackend batches SAM's encoder, whose output is one tensor; HQ-SAM's encoder
        # also returns its early features, so encode the images one by one.
        return Backend.encode_batch(self, images, dtype)

    @torch.inference_mode()
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
        if "hq_features" not in embedding.extras:
            raise ValueError(f"{self.name}: the embedding lacks HQ-SAM's features; encode it here")
        point_prompt, boxes, mask_input = self.prompt_inputs(
            embedding.original_size, point_coords, point_labels, boxes, mask_input
        )
        decoder = self.sam.mask_decoder
        with self.precision(dtype):
            sparse, dense = self.sam.prompt_encoder(
                points=point_prompt, boxes=boxes, masks=mask_input
            )
            # B x (1 + 3 + 1) masks: SAM's single, SAM's three, HQ; B x 4 IoU (SAM's tokens).
            masks, iou = decoder.predict_masks(
                image_embeddings=embedding.features.to(self.device),
                image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                hq_features=embedding.extras["hq_features"].to(self.device),
            )
        sam_tokens = slice(1, decoder.num_mask_tokens - 1) if multimask_output else slice(0, 1)
        hq = masks[:, decoder.num_mask_tokens - 1 :].float()
        iou = iou[:, sam_tokens].float()
        if self.hq_token_only:
            return Decoded(low_res_logits=hq, iou_predictions=iou.max(dim=1, keepdim=True).values)
        return Decoded(low_res_logits=masks[:, sam_tokens].float() + hq, iou_predictions=iou)
