"""Tiny random SAM models for tests, examples and smoke runs.

They are built from the official ``segment_anything.modeling`` classes with a small
width and depth and a small input size, so a whole refinement runs in well under a
second on a CPU. Their outputs are meaningless; their shapes and code paths are real.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from samrefiner.models.base import Backend
from samrefiner.models.sam import SamBackend


def build_tiny_sam(
    *,
    seed: int = 0,
    image_size: int = 256,
    patch_size: int = 16,
    embed_dim: int = 32,
    depth: int = 1,
    prompt_dim: int = 32,
) -> Sam:
    """An official ``Sam`` module with random weights and tiny sizes.

    With the defaults the input is 256 px, the embedding 16 x 16 and the low-res mask
    grid 64 x 64: sizes differ from SAM's on purpose, so code that hard-codes 1024 / 256
    fails its tests.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        grid = image_size // patch_size
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=image_size,
                patch_size=patch_size,
                embed_dim=embed_dim,
                depth=depth,
                num_heads=2,
                mlp_ratio=2.0,
                out_chans=prompt_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=4,
                global_attn_indexes=(depth - 1,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=prompt_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(image_size, image_size),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=1, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2
                ),
                transformer_dim=prompt_dim,
                iou_head_depth=2,
                iou_head_hidden_dim=32,
            ),
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return sam.eval()


def tiny_sam(seed: int = 0, device: str | torch.device = "cpu") -> SamBackend:
    """A :class:`SamBackend` around :func:`build_tiny_sam` (usable as a CLI ``--model``:
    ``--model samrefiner.testing:tiny_sam``)."""
    return SamBackend(build_tiny_sam(seed=seed).to(device), name="tiny_sam")


#: Every model family's tiny random backend, by family name: ``builder(seed=0, device="cpu")``.
#: Suites that must hold for every backend (the contract tests, adaption) run over it.
TINY_BACKENDS: dict[str, Callable[..., Backend]] = {
    "sam": tiny_sam,
}
