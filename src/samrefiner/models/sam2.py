"""SAM 2.1 backend, image path only (official package ``sam2``, Hiera T / S / B+ / L).

SAM 2 differs from SAM v1 in three ways, all kept here (the refiner sees only the
:class:`~samrefiner.geometry.Frame` and :class:`~samrefiner.models.base.ImageEmbedding`):

* its input is the image resized to the square WITHOUT keeping the aspect ratio
  (:meth:`Frame.resize_square`), and its low-res logits go back to the image in one resize;
* "no memory" (``no_mem_embed``) is added to the top-level image embedding, as the
  official image predictor does for single images;
* the decoder also reads two high-resolution feature maps, kept in
  ``ImageEmbedding.extras`` (``"high_res_0"``: stride 4, ``"high_res_1"``: stride 8).

``ImageEmbedding.features`` is the 256-channel top-level (stride 16) map, which the
elastic box compares pixels with. Boxes enter as two corner points (labels 2, 3) before
the other points, as in ``SAM2ImagePredictor``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from samrefiner.extras import import_extra
from samrefiner.models.base import (
    Backend,
    Decoded,
    ImageEmbedding,
    check_image,
    to_input_frame,
    writable,
)

#: The official predictor's post-processing of single-mask outputs (``build_sam2``).
POSTPROCESSING_OVERRIDES = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)

BOX_CORNER_LABELS = (2, 3)


def import_sam2() -> Any:
    """The ``sam2`` package's model builder module, or a MissingExtra naming the extra."""
    return import_extra("sam2.build_sam", "sam2", "SAM 2.1")


def build_sam2_model(config: str, overrides: tuple[str, ...] = ()) -> torch.nn.Module:
    """A ``SAM2Base`` from one of the ``sam2`` package's own configs, random weights.

    Args:
        config: config name inside the package, e.g. ``"configs/sam2.1/sam2.1_hiera_t.yaml"``.
        overrides: extra Hydra overrides (tiny test models).
    """
    build = import_sam2()
    model = build.build_sam2(
        config,
        ckpt_path=None,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=list(overrides),
        apply_postprocessing=True,
    )
    # What built it, so that its video predictor can be built alike (samrefiner.video).
    model.samrefiner_build = (config, tuple(overrides))
    return model


def build_sam2_video_model(config: str, overrides: tuple[str, ...] = ()) -> torch.nn.Module:
    """The ``sam2`` package's ``SAM2VideoPredictor`` of one of its configs, random
    weights (``build_sam2_video_predictor``, with its video post-processing).

    Args:
        config: config name inside the package, as for :func:`build_sam2_model`.
        overrides: extra Hydra overrides, as for :func:`build_sam2_model`.
    """
    build = import_sam2()
    return build.build_sam2_video_predictor(
        config,
        ckpt_path=None,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=list(overrides),
        apply_postprocessing=True,
    )


class Sam2Backend(Backend):
    """Wraps an official ``sam2.modeling.sam2_base.SAM2Base`` module (image path only).

    Args:
        model: the model; kept reachable as the attribute ``model``.
        name: label for logs and reports.
    """

    frame_kind = "square"

    def __init__(self, model: torch.nn.Module, name: str = "sam2") -> None:
        import_sam2()
        from sam2.modeling.sam2_base import SAM2Base
        from sam2.utils.transforms import SAM2Transforms

        if not isinstance(model, SAM2Base):
            raise TypeError(f"expected a sam2 SAM2Base module, got {type(model).__name__}")
        self.model = model.eval()
        self.name = name
        with warnings.catch_warnings():
            # SAM 2 scripts its transforms with torch.jit.script, which torch now deprecates.
            warnings.filterwarnings("ignore", message=".*torch.jit.script", category=FutureWarning)
            self.transforms = SAM2Transforms(resolution=self.input_size, mask_threshold=0.0)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def input_size(self) -> int:
        return int(self.model.image_size)

    @property
    def low_res_size(self) -> tuple[int, int]:
        h, w = self.model.sam_prompt_encoder.mask_input_size
        return int(h), int(w)

    @property
    def feature_sizes(self) -> list[tuple[int, int]]:
        """``(h, w)`` of the stride-4, stride-8 and stride-16 maps the decoder reads."""
        s = self.input_size
        return [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]

    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        # forward_image narrows the two finer maps with the decoder's conv_s0 / conv_s1.
        decoder = self.model.sam_mask_decoder
        channels = (decoder.conv_s0.out_channels, decoder.conv_s1.out_channels)
        fine, (h, w) = self.feature_sizes[:2], self.feature_sizes[2]
        out = {"features": (1, int(self.model.sam_prompt_encoder.embed_dim), h, w)}
        for k, (c, (fh, fw)) in enumerate(zip(channels, fine, strict=True)):
            out[f"extras.high_res_{k}"] = (1, int(c), fh, fw)
        return out

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def iou_head(self) -> torch.nn.Module:
        return self.model.sam_mask_decoder.iou_prediction_head

    @torch.inference_mode()
    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        check_image(image)
        batch = self.transforms(writable(image))[None].to(self.device)
        model = self.model
        with self.precision(dtype):
            backbone_out = model.forward_image(batch)
            _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
            if model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        # HW x 1 x C sequences -> 1 x C x h x w maps, finest first.
        maps = [
            feat.permute(1, 2, 0).reshape(1, -1, *size).float()
            for feat, size in zip(vision_feats, self.feature_sizes, strict=True)
        ]
        return ImageEmbedding(
            features=maps[-1],
            original_size=image.shape[:2],
            resized_size=(self.input_size, self.input_size),
            extras={"high_res_0": maps[0], "high_res_1": maps[1]},
        )

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
        if "high_res_0" not in embedding.extras:
            raise ValueError(f"{self.name}: the embedding lacks SAM 2's high-res maps")
        device = self.device
        frame = self.frame(embedding.original_size)
        coords = labels = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = to_input_frame(point_coords.to(device).float(), frame)
            labels = point_labels.to(device).int()
        if boxes is not None:
            corners = to_input_frame(boxes.to(device).float().reshape(-1, 2, 2), frame)
            corner_labels = torch.tensor([BOX_CORNER_LABELS], dtype=torch.int, device=device)
            corner_labels = corner_labels.repeat(len(corners), 1)
            if coords is None:
                coords, labels = corners, corner_labels
            else:
                coords = torch.cat([corners, coords], dim=1)
                labels = torch.cat([corner_labels, labels], dim=1)
        if mask_input is not None:
            mask_input = mask_input.to(device).float()
        model = self.model
        with self.precision(dtype):
            sparse, dense = model.sam_prompt_encoder(
                points=None if coords is None else (coords, labels), boxes=None, masks=mask_input
            )
            logits, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=embedding.features.to(device),
                image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                repeat_image=sparse.shape[0] > 1,
                high_res_features=[
                    embedding.extras["high_res_0"].to(device),
                    embedding.extras["high_res_1"].to(device),
                ],
            )
        return Decoded(low_res_logits=logits.float(), iou_predictions=iou.float())
