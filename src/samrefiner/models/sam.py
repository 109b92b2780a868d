"""Backend for the official ``segment_anything`` package (SAM ViT-B / L / H)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from samrefiner.models.base import Backend, Decoded, ImageEmbedding, check_image


class SamBackend(Backend):
    """Wraps an official :class:`segment_anything.modeling.Sam` module.

    Args:
        sam: the model; kept reachable as the attribute ``sam``.
        name: label for logs and reports.
    """

    frame_kind = "longest_side"
    #: The module class this backend wraps (HQ-SAM's subclass names its own).
    module_type: type[torch.nn.Module] = Sam

    def __init__(self, sam: Sam, name: str = "sam") -> None:
        if not isinstance(sam, self.module_type):
            raise TypeError(
                f"expected a {self.module_type.__module__}.{self.module_type.__name__} module, "
                f"got {type(sam).__name__}"
            )
        self.sam = sam.eval()
        self.name = name
        self.transform = ResizeLongestSide(self.input_size)

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @property
    def input_size(self) -> int:
        return int(self.sam.image_encoder.img_size)

    @property
    def low_res_size(self) -> tuple[int, int]:
        h, w = self.sam.prompt_encoder.mask_input_size
        return int(h), int(w)

    @property
    def module(self) -> torch.nn.Module:
        return self.sam

    @property
    def iou_head(self) -> torch.nn.Module:
        return self.sam.mask_decoder.iou_prediction_head

    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        # The encoder's output is the map the prompt encoder's dense embedding matches.
        prompt_encoder = self.sam.prompt_encoder
        h, w = prompt_encoder.image_embedding_size
        return {"features": (1, int(prompt_encoder.embed_dim), int(h), int(w))}

    def input_batch(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """SAM's preprocessing: ``1 x 3 x S x S`` normalised padded input, resized ``(h, w)``."""
        check_image(image)
        resized = self.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()
        return self.sam.preprocess(tensor[None].float()), resized.shape[:2]

    def prompt_inputs(
        self,
        size: tuple[int, int],
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None, torch.Tensor | None]:
        """Prompts moved to the device and SAM's input frame: ``(points, boxes, masks)``."""
        device = self.device
        point_prompt = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = self.transform.apply_coords_torch(point_coords.to(device).float(), size)
            point_prompt = (coords, point_labels.to(device))
        if boxes is not None:
            boxes = self.transform.apply_boxes_torch(boxes.to(device).float(), size)
        if mask_input is not None:
            mask_input = mask_input.to(device).float()
        return point_prompt, boxes, mask_input

    @torch.inference_mode()
    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        batch, resized_size = self.input_batch(image)
        with self.precision(dtype):
            features = self.sam.image_encoder(batch)
        return ImageEmbedding(
            features=features.float(),
            original_size=image.shape[:2],
            resized_size=resized_size,
        )

    @torch.inference_mode()
    def encode_batch(
        self, images: Sequence[np.ndarray], dtype: str = "float32"
    ) -> list[ImageEmbedding]:
        """Embed several images in one pass of the encoder.

        On a CUDA device each resized image is copied from pinned memory without
        blocking, so the copy and the normalisation of one image overlap the resizing
        of the next on the CPU. One image gives exactly :meth:`encode`'s embedding;
        larger batches may differ from it in the last bits (the device picks other
        matrix kernels for other batch sizes).
        """
        if len(images) <= 1:
            return [self.encode(image, dtype) for image in images]
        device = self.device
        pin = device.type == "cuda"
        inputs, resized_sizes = [], []
        for image in images:
            check_image(image)
            resized = self.transform.apply_image(image)
            tensor = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)
            if pin:
                tensor = tensor.contiguous().pin_memory()
            tensor = tensor.to(device, non_blocking=pin).contiguous()
            inputs.append(self.sam.preprocess(tensor[None].float()))
            resized_sizes.append(resized.shape[:2])
        with self.precision(dtype):
            features = self.sam.image_encoder(torch.cat(inputs)).float()
        return [
            ImageEmbedding(
                features=features[k : k + 1],
                original_size=image.shape[:2],
                resized_size=size,
            )
            for k, (image, size) in enumerate(zip(images, resized_sizes, strict=True))
        ]

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
        point_prompt, boxes, mask_input = self.prompt_inputs(
            embedding.original_size, point_coords, point_labels, boxes, mask_input
        )
        with self.precision(dtype):
            sparse, dense = self.sam.prompt_encoder(
                points=point_prompt, boxes=boxes, masks=mask_input
            )
            logits, iou = self.sam.mask_decoder(
                image_embeddings=embedding.features.to(self.device),
                image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
        return Decoded(low_res_logits=logits.float(), iou_predictions=iou.float())
