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


def tiny_hf_config(kind: str, width: int = 32) -> object:
    """Tiny ``transformers`` config of ``kind``: ``"sam"``, ``"sam_hq"``, ``"sam2"``,
    ``"sam3_tracker"`` or ``"edgetam"``.

    Inputs are 256 px (224 px for SAM 3's patch 14), embeddings 16 x 16, width 32; the
    SAM 2 kinds take ``width`` (128 for :data:`TINY_HF_VIDEO_KINDS`' video models, whose
    memory needs a multiple of 64 above 64: :data:`samrefiner.video.hf.MEMORY_CHANNELS`).
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
                "fpn_hidden_size": width,
            },
            prompt_encoder_config={
                "hidden_size": width,
                "image_size": 256,
                "patch_size": 16,
                "mask_input_channels": 4,
            },
            mask_decoder_config={**_TINY_HF_DECODER, "hidden_size": width},
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
                "fpn_hidden_size": width,
                "backbone_feature_sizes": [[64, 64], [32, 32], [16, 16]],
            },
            prompt_encoder_config={
                "hidden_size": width,
                "image_size": 224,
                "patch_size": 14,
                "mask_input_channels": 4,
            },
            mask_decoder_config={**_TINY_HF_DECODER, "hidden_size": width},
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
                "fpn_hidden_size": width,
            },
            prompt_encoder_config={
                "hidden_size": width,
                "image_size": 256,
                "patch_size": 16,
                "mask_input_channels": 4,
            },
            mask_decoder_config={**_TINY_HF_DECODER, "hidden_size": width},
        )
    raise ValueError(f"no tiny Hugging Face config {kind!r}: use one of {list(_HF_CLASSES)}")


#: Tiny ``transformers`` kinds -> model class: the ``hf_KIND`` families of the table.
_HF_CLASSES: dict[str, str] = {
    family.name.removeprefix("hf_"): cls for cls, family in transformers_families().items()
}


def build_tiny_hf_model(kind: str, seed: int = 0, width: int = 32) -> torch.nn.Module:
    """A tiny random ``transformers`` model of ``kind`` (see :func:`tiny_hf_config`)."""
    import transformers

    with seeded(seed):
        return getattr(transformers, _HF_CLASSES[kind])(tiny_hf_config(kind, width)).eval()


def tiny_hf_image_processor(kind: str) -> object:
    """The image processor ``transformers`` maps to the model type, at the tiny model's
    input size."""
    from samrefiner.models.hf import HF_FAMILIES, default_image_processor

    config = tiny_hf_config(kind)
    size = config.prompt_encoder_config.image_size
    return default_image_processor(config, HF_FAMILIES[_HF_CLASSES[kind]], size)


def _tiny_hf(kind: str, width: int = 32, suffix: str = "") -> Callable[..., Backend]:
    def build(seed: int = 0, device: str | torch.device = "cpu") -> Backend:
        from samrefiner.models.hf import HfBackend

        model = build_tiny_hf_model(kind, seed, width).to(device)
        return HfBackend(model, tiny_hf_image_processor(kind), name=f"tiny_hf_{kind}{suffix}")

    build.__name__ = f"tiny_hf_{kind}{suffix}"
    build.__doc__ = f"A tiny random ``transformers`` {_HF_CLASSES[kind]} behind HfBackend."
    if suffix:
        build.__doc__ += f" {width} wide, so that its video model works (``video_backend_for``)."
    return build


tiny_hf_sam = _tiny_hf("sam")
tiny_hf_sam_hq = _tiny_hf("sam_hq")
tiny_hf_sam2 = _tiny_hf("sam2")
tiny_hf_sam3_tracker = _tiny_hf("sam3_tracker")
tiny_hf_edgetam = _tiny_hf("edgetam")

#: The tiny kinds with a ``transformers`` video model (:mod:`samrefiner.video.hf`).
TINY_HF_VIDEO_KINDS: tuple[str, ...] = ("sam2", "sam3_tracker", "edgetam")
tiny_hf_sam2_video = _tiny_hf("sam2", 128, "_video")
tiny_hf_sam3_tracker_video = _tiny_hf("sam3_tracker", 128, "_video")
tiny_hf_edgetam_video = _tiny_hf("edgetam", 128, "_video")


def build_tiny_hf_video_model(kind: str, seed: int = 0) -> torch.nn.Module:
    """The tiny random video model of ``kind`` (one of :data:`TINY_HF_VIDEO_KINDS`):
    ``Sam2VideoModel``, ``Sam3TrackerVideoModel`` or ``EdgeTamVideoModel`` built from the
    128-wide tiny image model, its image weights those of ``tiny_hf_KIND_video(seed)``."""
    from samrefiner.video.hf import video_model_from_image

    with seeded(seed):
        return video_model_from_image(build_tiny_hf_model(kind, seed, 128))


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


# --- Tiny random detectors (samrefiner.detectors) -----------------------------------------

#: The PASCAL VOC class names, in the order of their ids (1 to 20).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: Words the tiny detectors' BERT tokenizer knows (the PASCAL VOC classes and a few more);
#: any other word is ``[UNK]``, which the detectors handle like any token.
TINY_DETECTOR_WORDS: tuple[str, ...] = (
    *VOC_CLASSES,
    "traffic",
    "light",
    "table",
    "plant",
    "monitor",
    "animal",
    "object",
    "thing",
    "a",
    "an",
    "the",
    "of",
    "and",
)


def _tiny_bert_tokenizer() -> object:
    """A BERT word-piece tokenizer over :data:`TINY_DETECTOR_WORDS`, built offline."""
    import transformers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [*specials, ".", ",", *dict.fromkeys(TINY_DETECTOR_WORDS)]
    return transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)})


def _byte_characters() -> list[str]:
    """The 256 characters byte-level BPE spells bytes with (printable bytes as themselves,
    the others shifted past 255), in byte order."""
    printable = {*range(33, 127), *range(161, 173), *range(174, 256)}
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


#: Token count of the tiny CLIP tokenizer's padded texts.
_TINY_CLIP_LENGTH = 16


def _tiny_clip_tokenizer() -> object:
    """A CLIP byte-level BPE tokenizer without merges (one token per character), built
    offline: 512 character tokens, then start and end of text."""
    import transformers

    chars = _byte_characters()
    vocab = {c: i for i, c in enumerate([*chars, *(c + "</w>" for c in chars)])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=_TINY_CLIP_LENGTH)


def _tiny_swin(out: list[str]) -> dict[str, object]:
    return {
        "model_type": "swin",
        "embed_dim": 8,
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 1, 1, 1],
        "window_size": 4,
        "image_size": 64,
        "out_features": out,
    }


def _tiny_grounding_dino(kind: str) -> tuple[torch.nn.Module, object]:
    import transformers

    tokenizer = _tiny_bert_tokenizer()
    config_cls, model_cls = {
        "grounding_dino": (
            transformers.GroundingDinoConfig,
            transformers.GroundingDinoForObjectDetection,
        ),
        "mm_grounding_dino": (
            transformers.MMGroundingDinoConfig,
            transformers.MMGroundingDinoForObjectDetection,
        ),
    }[kind]
    config = config_cls(
        backbone_config=_tiny_swin(["stage2", "stage3", "stage4"]),
        text_config={
            "model_type": "bert",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 64,
        },
        num_queries=20,
        encoder_layers=1,
        decoder_layers=2,  # transformers ties the box heads of layers 1.. to layer 0's
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        d_model=32,  # its group norms take 32 groups
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=1,
        decoder_n_points=1,
        max_text_len=32,
    )
    processor = transformers.GroundingDinoProcessor(
        image_processor=transformers.GroundingDinoImageProcessor(
            size={"shortest_edge": 64, "longest_edge": 96}
        ),
        tokenizer=tokenizer,
    )
    return model_cls(config), processor


def _tiny_owlv2() -> tuple[torch.nn.Module, object]:
    import transformers

    tokenizer = _tiny_clip_tokenizer()
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    config = transformers.Owlv2Config(
        text_config={
            **layers,
            "num_attention_heads": 2,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": _TINY_CLIP_LENGTH,
            "bos_token_id": len(tokenizer) - 2,
            "eos_token_id": len(tokenizer) - 1,
            "pad_token_id": len(tokenizer) - 1,
        },
        vision_config={**layers, "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
        projection_dim=32,
    )
    processor = transformers.Owlv2Processor(
        image_processor=transformers.Owlv2ImageProcessor(size={"height": 64, "width": 64}),
        tokenizer=tokenizer,
    )
    return transformers.Owlv2ForObjectDetection(config), processor


def _tiny_clip_text(tokenizer: object, hidden: int, positions: int) -> dict[str, object]:
    n = len(tokenizer)  # type: ignore[arg-type]
    return {
        "vocab_size": n,
        "hidden_size": hidden,
        "intermediate_size": 37,
        "projection_dim": hidden,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": positions,
        "bos_token_id": n - 2,
        "eos_token_id": n - 1,
        "pad_token_id": n - 1,
    }


def _tiny_omdet_turbo() -> tuple[torch.nn.Module, object]:
    import transformers

    tokenizer = _tiny_clip_tokenizer()
    config = transformers.OmDetTurboConfig(
        backbone_config=_tiny_swin(["stage2", "stage3", "stage4"]),
        text_config=_tiny_clip_text(tokenizer, 16, 77),  # its processor pads to 77 tokens
        apply_layernorm_after_vision_backbone=False,  # its layer norm takes timm's layout
        image_size=64,
        text_projection_in_dim=16,
        text_projection_out_dim=16,
        class_embed_dim=16,  # != decoder_hidden_dim: transformers needs its task projection
        task_encoder_hidden_dim=32,
        num_queries=20,
        encoder_hidden_dim=32,
        vision_features_channels=[32, 32, 32],
        encoder_in_channels=[16, 32, 64],
        encoder_attention_heads=2,
        encoder_dim_feedforward=32,
        decoder_hidden_dim=32,
        decoder_num_heads=2,
        decoder_num_layers=1,
        decoder_dim_feedforward=32,
        decoder_num_points=1,
        cache_size=10,
    )
    processor = transformers.OmDetTurboProcessor(
        image_processor=transformers.DetrImageProcessor(
            size={"height": 64, "width": 64}, do_pad=False
        ),
        tokenizer=tokenizer,
    )
    return transformers.OmDetTurboForObjectDetection(config), processor


def _tiny_sam3() -> tuple[torch.nn.Module, object]:
    import transformers

    tokenizer = _tiny_clip_tokenizer()
    layers = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 32}
    config = transformers.Sam3Config(
        vision_config=tiny_hf_config("sam3_tracker").vision_config.to_dict(),  # type: ignore[attr-defined]
        text_config=_tiny_clip_text(tokenizer, 32, 32),
        geometry_encoder_config={**layers, "num_layers": 1},
        detr_encoder_config={**layers, "num_layers": 1},
        detr_decoder_config={**layers, "num_layers": 1, "num_queries": 10},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
    processor = transformers.Sam3Processor(
        image_processor=transformers.Sam3ImageProcessor(size={"height": 224, "width": 224}),
        tokenizer=tokenizer,
    )
    return transformers.Sam3Model(config), processor


#: Tiny random detector kinds -> ``(model, processor)`` builders (64 px inputs, width 32;
#: SAM 3: 224 px, the tiny SAM 3 tracker's vision encoder).
_TINY_DETECTORS: dict[str, Callable[[], tuple[torch.nn.Module, object]]] = {
    "grounding_dino": partial(_tiny_grounding_dino, "grounding_dino"),
    "mm_grounding_dino": partial(_tiny_grounding_dino, "mm_grounding_dino"),
    "owlv2": _tiny_owlv2,
    "omdet_turbo": _tiny_omdet_turbo,
    "sam3": _tiny_sam3,
}

#: The kinds :func:`tiny_detector` builds.
TINY_DETECTOR_KINDS: tuple[str, ...] = tuple(_TINY_DETECTORS)


def build_tiny_detector(kind: str, seed: int = 0) -> tuple[torch.nn.Module, object]:
    """A tiny random ``transformers`` detector of ``kind`` (one of
    :data:`TINY_DETECTOR_KINDS`) and its processor (tokenizer built offline)."""
    if kind not in _TINY_DETECTORS:
        raise ValueError(f"no tiny detector {kind!r}: use one of {list(TINY_DETECTOR_KINDS)}")
    with seeded(seed):
        model, processor = _TINY_DETECTORS[kind]()
    return model.eval(), processor


def save_tiny_detector(kind: str, folder: str, seed: int = 0) -> str:
    """Write a tiny random detector of ``kind`` as a ``save_pretrained`` folder (model and
    processor); returns ``folder``."""
    model, processor = build_tiny_detector(kind, seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def tiny_detector(kind: str = "grounding_dino", seed: int = 0, device: str = "cpu") -> object:
    """A tiny random detector of ``kind`` behind samrefiner's detector interface."""
    from samrefiner.detectors.hf import HF_DETECTORS

    model, processor = build_tiny_detector(kind, seed)
    detector_cls = import_object(HF_DETECTORS[type(model).__name__])
    return detector_cls(model.to(device), processor, name=f"tiny_{kind}")


def tiny_grounding_dino(seed: int = 0, device: str = "cpu") -> object:
    """A tiny random Grounding DINO detector (usable as ``--detector``
    ``samrefiner.testing:tiny_grounding_dino``)."""
    return tiny_detector("grounding_dino", seed, device)
