"""Tiny random SAM-family models for tests, examples and smoke runs.

They are built from each family's official classes (``segment_anything``,
``segment_anything_hq``, ``sam2``) with a small width and depth and, where the
architecture allows it, a small input size, so a whole refinement runs in about a second
on a CPU. Their outputs are meaningless; their shapes and code paths are real.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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
from samrefiner.models.families import FAMILIES, import_object, transformers_families
from samrefiner.models.sam import SamBackend


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's generator for a model build, restoring the caller's state after."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(generator_state)


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
    with seeded(seed):
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
    return sam.eval()


def tiny_sam(seed: int = 0, device: str | torch.device = "cpu") -> SamBackend:
    """A :class:`SamBackend` around :func:`build_tiny_sam` (usable as a CLI ``--model``:
    ``--model samrefiner.testing:tiny_sam``)."""
    return SamBackend(build_tiny_sam(seed=seed).to(device), name="tiny_sam")


def build_tiny_sam_hq(seed: int = 0) -> torch.nn.Module:
    """HQ-SAM's ``Sam`` module (``segment_anything_hq``) with a tiny ViT at 256 px."""
    from segment_anything_hq.modeling import ImageEncoderViT as HqImageEncoderViT
    from segment_anything_hq.modeling import MaskDecoderHQ
    from segment_anything_hq.modeling import PromptEncoder as HqPromptEncoder
    from segment_anything_hq.modeling import Sam as HqSam
    from segment_anything_hq.modeling import TwoWayTransformer as HqTwoWayTransformer

    size, patch, dim = 256, 16, 32
    with seeded(seed):
        sam = HqSam(
            image_encoder=HqImageEncoderViT(
                img_size=size,
                patch_size=patch,
                embed_dim=dim,
                depth=2,
                num_heads=2,
                mlp_ratio=2.0,
                out_chans=32,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=4,
                global_attn_indexes=(0,),
            ),
            prompt_encoder=HqPromptEncoder(
                embed_dim=32,
                image_embedding_size=(size // patch, size // patch),
                input_image_size=(size, size),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoderHQ(
                num_multimask_outputs=3,
                transformer=HqTwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64, num_heads=2),
                transformer_dim=32,
                iou_head_depth=2,
                iou_head_hidden_dim=32,
                vit_dim=dim,
            ),
        )
    return sam.eval()


def tiny_sam_hq(seed: int = 0, device: str | torch.device = "cpu") -> Backend:
    """A tiny random HQ-SAM behind :class:`~samrefiner.models.hq.HqSamBackend`."""
    from samrefiner.models.hq import HqSamBackend

    return HqSamBackend(build_tiny_sam_hq(seed).to(device), name="tiny_sam_hq")


#: TinyViT arguments of the tiny MobileSAM (TinyViT's input stays 1024 px).
TINY_VIT_ARGS = {
    "embed_dims": [8, 16, 32, 320],  # 320: the last merge keeps the 64 x 64 grid
    "depths": [1, 1, 1, 1],
    "num_heads": [1, 1, 1, 1],
    "window_sizes": [7, 16, 16, 16],
}


def build_tiny_mobile_sam(seed: int = 0) -> Sam:
    """MobileSAM's layout (TinyViT + SAM's prompt encoder / decoder), tiny and random."""
    from samrefiner.models.mobile_sam import build_mobile_sam

    with seeded(seed):
        return build_mobile_sam(encoder=TINY_VIT_ARGS, decoder_depth=1, decoder_mlp_dim=32)


def tiny_mobile_sam(seed: int = 0, device: str | torch.device = "cpu") -> Backend:
    """A tiny random MobileSAM behind :class:`SamBackend`."""
    return SamBackend(build_tiny_mobile_sam(seed).to(device), name="tiny_mobile_sam")


#: Hydra overrides that shrink ``sam2.1_hiera_t.yaml`` (input 256 px, width 32).
TINY_SAM2_OVERRIDES = (
    "model.image_size=256",
    "model.image_encoder.trunk.embed_dim=8",
    "model.image_encoder.trunk.stages=[1,1,2,1]",
    "model.image_encoder.trunk.global_att_blocks=[3]",  # not a pooling block
    "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "model.image_encoder.neck.d_model=32",
    "model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "model.memory_attention.d_model=32",
    "model.memory_attention.num_layers=1",
    "model.memory_attention.layer.d_model=32",
    "model.memory_attention.layer.dim_feedforward=32",
    "model.memory_attention.layer.self_attention.embedding_dim=32",
    "model.memory_attention.layer.cross_attention.embedding_dim=32",
    "model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=32",
    "model.memory_encoder.position_encoding.num_pos_feats=16",
    "model.memory_encoder.fuser.layer.dim=32",
    "model.memory_encoder.fuser.num_layers=1",
    # The video path (samrefiner.video): the memory encoder's mask branch and the
    # memory attention's rotary grid at the tiny sizes.
    "++model.memory_encoder.mask_downsampler.embed_dim=32",
    "model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
    "model.memory_attention.layer.cross_attention.feat_sizes=[16,16]",
)


def build_tiny_sam2(seed: int = 0) -> torch.nn.Module:
    """SAM 2.1 (``sam2``'s Hiera-T config, shrunk) with random weights."""
    from samrefiner.models.sam2 import build_sam2_model

    with seeded(seed):
        return build_sam2_model("configs/sam2.1/sam2.1_hiera_t.yaml", TINY_SAM2_OVERRIDES)


def tiny_sam2(seed: int = 0, device: str | torch.device = "cpu") -> Backend:
    """A tiny random SAM 2.1 behind :class:`~samrefiner.models.sam2.Sam2Backend`."""
    from samrefiner.models.sam2 import Sam2Backend

    return Sam2Backend(build_tiny_sam2(seed).to(device), name="tiny_sam2")


_TINY_HF_DECODER = {
    "hidden_size": 32,
    "mlp_dim": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "iou_head_hidden_dim": 32,
    "iou_head_depth": 2,
}


def tiny_hf_config(kind: str) -> object:
    """Tiny ``transformers`` config of ``kind``: ``"sam"``, ``"sam_hq"``, ``"sam2"``,
    ``"sam3_tracker"`` or ``"edgetam"``.

    Inputs are 256 px (224 px for SAM 3's patch 14), embeddings 16 x 16, width 32.
    """
    import transformers

    if kind == "sam_hq":
        sam = tiny_hf_config("sam")
        return transformers.SamHQConfig(
            vision_config=sam.vision_config.to_dict(),
            prompt_encoder_config=sam.prompt_encoder_config.to_dict(),
            mask_decoder_config={**_TINY_HF_DECODER, "vit_dim": 32},
        )
    if kind == "sam":
        return transformers.SamConfig(
            vision_config={
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": 256,
                "patch_size": 16,
                "mlp_dim": 64,
                "output_channels": 32,
                "global_attn_indexes": [1],
                "window_size": 4,
                "num_pos_feats": 16,
            },
            prompt_encoder_config={
                "hidden_size": 32,
                "image_size": 256,
                "patch_size": 16,
                "image_embedding_size": 16,
                "mask_input_channels": 4,
            },
            mask_decoder_config=_TINY_HF_DECODER,
        )
    if kind == "sam2":
        return transformers.Sam2Config(
            vision_config={
                "backbone_config": {
                    "model_type": "sam2_hiera_det_model",
                    "hidden_size": 8,
                    "num_attention_heads": 1,
                    "image_size": [256, 256],
                    "blocks_per_stage": [1, 1, 2, 1],
                    "embed_dim_per_stage": [8, 16, 32, 64],
                    "num_attention_heads_per_stage": [1, 1, 1, 1],
                    "window_size_per_stage": [8, 4, 14, 7],
                    "global_attention_blocks": [3],
                    "window_positional_embedding_background_size": [4, 4],
                },
                "backbone_channel_list": [64, 32, 16, 8],
                "backbone_feature_sizes": [[64, 64], [32, 32], [16, 16]],
                "fpn_hidden_size": 32,
            },
            prompt_encoder_config={
                "hidden_size": 32,
                "image_size": 256,
                "patch_size": 16,
                "mask_input_channels": 4,
            },
            mask_decoder_config=_TINY_HF_DECODER,
        )
    if kind == "sam3_tracker":
        return transformers.Sam3TrackerConfig(
            vision_config={
                "backbone_config": {
                    "model_type": "sam3_vit_model",
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 2,
                    "image_size": 224,
                    "patch_size": 14,
                    "window_size": 4,
                    "global_attn_indexes": [1],
                    "pretrain_image_size": 224,
                },
                "fpn_hidden_size": 32,
                "backbone_feature_sizes": [[64, 64], [32, 32], [16, 16]],
            },
            prompt_encoder_config={
                "hidden_size": 32,
                "image_size": 224,
                "patch_size": 14,
                "mask_input_channels": 4,
            },
            mask_decoder_config=_TINY_HF_DECODER,
        )
    if kind == "edgetam":
        # EdgeTAM's backbone is a timm RepViT-M1 (not shrinkable); the rest is tiny.
        backbone = transformers.EdgeTamConfig().vision_config.backbone_config.to_dict()
        backbone["architecture"] = "repvit_m1"
        return transformers.EdgeTamConfig(
            vision_config={
                "backbone_config": backbone,
                "backbone_channel_list": [384, 192, 96, 48],
                "backbone_feature_sizes": [[64, 64], [32, 32], [16, 16]],
                "fpn_hidden_size": 32,
            },
            prompt_encoder_config={
                "hidden_size": 32,
                "image_size": 256,
                "patch_size": 16,
                "mask_input_channels": 4,
            },
            mask_decoder_config=_TINY_HF_DECODER,
        )
    raise ValueError(f"no tiny Hugging Face config {kind!r}: use one of {list(_HF_CLASSES)}")


#: Tiny ``transformers`` kinds -> model class: the ``hf_KIND`` families of the table.
_HF_CLASSES: dict[str, str] = {
    family.name.removeprefix("hf_"): cls for cls, family in transformers_families().items()
}


def build_tiny_hf_model(kind: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random ``transformers`` model of ``kind`` (see :func:`tiny_hf_config`)."""
    import transformers

    with seeded(seed):
        return getattr(transformers, _HF_CLASSES[kind])(tiny_hf_config(kind)).eval()


def tiny_hf_image_processor(kind: str) -> object:
    """The image processor ``transformers`` maps to the model type, at the tiny model's
    input size."""
    from samrefiner.models.hf import HF_FAMILIES, default_image_processor

    config = tiny_hf_config(kind)
    size = config.prompt_encoder_config.image_size
    return default_image_processor(config, HF_FAMILIES[_HF_CLASSES[kind]], size)


def _tiny_hf(kind: str) -> Callable[..., Backend]:
    def build(seed: int = 0, device: str | torch.device = "cpu") -> Backend:
        from samrefiner.models.hf import HfBackend

        model = build_tiny_hf_model(kind, seed).to(device)
        return HfBackend(model, tiny_hf_image_processor(kind), name=f"tiny_hf_{kind}")

    build.__name__ = f"tiny_hf_{kind}"
    build.__doc__ = f"A tiny random ``transformers`` {_HF_CLASSES[kind]} behind HfBackend."
    return build


tiny_hf_sam = _tiny_hf("sam")
tiny_hf_sam_hq = _tiny_hf("sam_hq")
tiny_hf_sam2 = _tiny_hf("sam2")
tiny_hf_sam3_tracker = _tiny_hf("sam3_tracker")
tiny_hf_edgetam = _tiny_hf("edgetam")


#: Every model family's tiny random backend, by family name: ``builder(seed=0, device="cpu")``
#: (:attr:`Family.tiny <samrefiner.models.families.Family.tiny>` of each family of the one
#: table). Suites that must hold for every backend (the contract tests, adaption) run over it.
TINY_BACKENDS: dict[str, Callable[..., Backend]] = {
    name: import_object(family.tiny) for name, family in FAMILIES.items()
}

#: The optional extra each tiny backend needs (``pip install 'samrefiner[EXTRA]'``); None:
#: the base install builds it. Tests mark each family's cases with it, so the base install
#: skips them (and never builds a family whose extra is absent).
TINY_BACKEND_EXTRAS: dict[str, str | None] = {
    name: family.extra for name, family in FAMILIES.items()
}
