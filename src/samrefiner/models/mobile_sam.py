"""MobileSAM: a TinyViT image encoder with SAM v1's prompt encoder and mask decoder.

There is no official PyPI package for MobileSAM. The model is assembled from official
modules: the TinyViT class shipped by ``segment-anything-hq`` (the same architecture and
parameter names as MobileSAM's, so the official ``mobile_sam.pt`` loads strictly) and
``segment_anything``'s prompt encoder, mask decoder and ``Sam`` wrapper. It then runs
through :class:`~samrefiner.models.sam.SamBackend` like SAM v1 (which puts it in eval
mode after loading: TinyViT caches its attention biases there).
"""

from __future__ import annotations

from typing import Any

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samrefiner.models.hq import import_hq

#: MobileSAM's image encoder, as in its official release (TinyViT-5M at 1024 px).
TINY_VIT_ARGS: dict[str, Any] = {
    "embed_dims": [64, 128, 160, 320],
    "depths": [2, 2, 6, 2],
    "num_heads": [2, 4, 5, 10],
    "window_sizes": [7, 7, 14, 7],
}


def mobile_image_encoder(**overrides: Any) -> torch.nn.Module:
    """A TinyViT that returns only the ``1 x 256 x 64 x 64`` image embedding.

    ``segment_anything_hq``'s TinyViT also returns its early features (for HQ-SAM); this
    subclass drops them so ``segment_anything``'s ``Sam`` can use it. Input is always
    1024 px (TinyViT's neck assumes a 64 x 64 grid).
    """
    tiny_vit_cls = import_hq().modeling.TinyViT

    class MobileSamImageEncoder(tiny_vit_cls):  # type: ignore[misc, valid-type]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_features(x)[0]

    args = {**TINY_VIT_ARGS, **overrides}
    return MobileSamImageEncoder(
        img_size=1024,
        in_chans=3,
        num_classes=1000,
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
        **args,
    )


def build_mobile_sam(
    *, encoder: dict[str, Any] | None = None, decoder_depth: int = 2, decoder_mlp_dim: int = 2048
) -> Sam:
    """MobileSAM as a ``segment_anything`` ``Sam`` module, random weights.

    The defaults are the official architecture; ``encoder`` (TinyViT arguments) and the
    decoder sizes are overridable for tiny test models.
    """
    sam = Sam(
        image_encoder=mobile_image_encoder(**(encoder or {})),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(64, 64),
            input_image_size=(1024, 1024),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth, embedding_dim=256, mlp_dim=decoder_mlp_dim, num_heads=8
            ),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()
