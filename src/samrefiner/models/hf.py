"""Hugging Face ``transformers`` backend: SAM-family models from the Hub or a local folder.

``load_model("hf:ORG/NAME")`` (or a folder written by ``save_pretrained``) loads a
``SamModel``, ``SamHQModel``, ``Sam2Model``, ``Sam3TrackerModel`` (SAM 3's point / box /
mask predictor) or ``EdgeTamModel`` with the conventions of its processor:

* SAM and SAM-HQ resize the image's longest side and pad (SAM v1's frame); SAM 2, SAM 3
  tracker and EdgeTAM stretch it over the square (:meth:`Frame.resize_square`) and add
  the "no memory" embedding (``get_image_embeddings`` does);
* the image is preprocessed by the repository's own image processor when it ships one,
  else by the family's default processor at the model's input size;
* prompts go to the model in its input frame, one image-batch row per prompt.

Models come from the local Hugging Face cache (``$HF_HOME``) when the network is absent
or ``HF_HUB_OFFLINE=1``; a model in neither place is an error naming the repository and
the cache path.

SAM-HQ gives the reference's candidates (SAM's three, each plus the HQ mask; ``transformers``
sorts them by predicted IoU, which does not change the one kept). EdgeTAM's IoU head was
not distilled: prefer ``RefineConfig(selection="stability")``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samrefiner.geometry import Frame
from samrefiner.models.base import Backend, Decoded, ImageEmbedding, check_image, to_input_frame

INSTALL_HINT = "pip install 'samrefiner[hf]'"


@dataclass(frozen=True)
class HfFamily:
    """How samrefiner drives one ``transformers`` model class."""

    square: bool  # SAM 2 convention: stretch to the square, multi-scale features
    processor: str  # default image processor class
    hq: bool = False


#: ``transformers`` model classes samrefiner can drive, by class name.
HF_FAMILIES: dict[str, HfFamily] = {
    "SamModel": HfFamily(square=False, processor="SamImageProcessor"),
    "SamHQModel": HfFamily(square=False, processor="SamImageProcessor", hq=True),
    "Sam2Model": HfFamily(square=True, processor="Sam2ImageProcessor"),
    "Sam3TrackerModel": HfFamily(square=True, processor="Sam2ImageProcessor"),
    "EdgeTamModel": HfFamily(square=True, processor="Sam2ImageProcessor"),
}


#: Repositories of a larger model whose promptable part samrefiner drives: a full SAM 3
#: checkpoint (``facebook/sam3``) loads as its point / box / mask tracker, as transformers'
#: SAM 3 tracker documentation does.
LOADED_AS: dict[str, str] = {"Sam3Model": "Sam3TrackerModel"}


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(f"Hugging Face models need transformers: {INSTALL_HINT}") from exc
    return transformers


def hf_cache_dir() -> Path:
    """Where ``huggingface_hub`` keeps downloaded models (``$HF_HUB_CACHE`` / ``$HF_HOME``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def load_hf_model(
    repo: str, *, pretrained: bool = True, device: str | torch.device = "cpu"
) -> HfBackend:
    """Load a SAM-family ``transformers`` model by Hub name or folder.

    Args:
        repo: ``ORG/NAME`` on the Hub or a local folder written by ``save_pretrained``.
        pretrained: False builds the architecture from its config with random weights.
        device: torch device.
    """
    transformers = _import_transformers()

    def not_found(exc: Exception) -> ValueError:
        return ValueError(
            f"cannot load Hugging Face model {repo!r}: not a local folder and not (completely) "
            f"in the Hugging Face cache {hf_cache_dir()} (HF_HUB_OFFLINE="
            f"{os.environ.get('HF_HUB_OFFLINE', '0')}): {exc}"
        )

    try:
        config = transformers.AutoConfig.from_pretrained(repo)
    except OSError as exc:
        raise not_found(exc) from exc
    names = [*(config.architectures or []), _model_class_name(transformers, config)]
    names = [LOADED_AS.get(n, n) for n in names if n]
    name = next((n for n in names if n in HF_FAMILIES), None)
    if name is None:
        raise ValueError(
            f"{repo}: model type {config.model_type!r} is not a SAM-family model samrefiner "
            f"can drive ({', '.join(HF_FAMILIES)})"
        )
    model_cls = getattr(transformers, name)
    if not isinstance(config, model_cls.config_class):  # e.g. a full SAM 3 repository
        config = model_cls.config_class.from_pretrained(repo)
    try:
        model = model_cls.from_pretrained(repo) if pretrained else model_cls(config)
    except OSError as exc:
        raise not_found(exc) from exc
    family = HF_FAMILIES[name]
    processor = _image_processor(transformers, repo, family, _input_size(model))
    return HfBackend(model.to(device).eval(), processor, name=f"hf:{repo}")


def _model_class_name(transformers: Any, config: Any) -> str | None:
    """The class ``AutoModel`` would build for ``config`` (configs without ``architectures``)."""
    try:
        return transformers.AutoModel._model_mapping[type(config)].__name__
    except (AttributeError, KeyError):
        return None


def _input_size(model: torch.nn.Module) -> int:
    return int(model.config.prompt_encoder_config.image_size)


def _image_processor(transformers: Any, repo: str, family: HfFamily, size: int) -> Any:
    """The repository's image processor, else the family's default at ``size`` px."""
    try:
        return transformers.AutoImageProcessor.from_pretrained(repo)
    except (OSError, ValueError):
        return default_image_processor(transformers, family, size)


def default_image_processor(transformers: Any, family: HfFamily, size: int) -> Any:
    """The family's default image processor, resizing to ``size`` px."""
    cls = getattr(transformers, family.processor)
    if family.square:
        return cls(size={"height": size, "width": size})
    return cls(size={"longest_edge": size}, pad_size={"height": size, "width": size})


class HfBackend(Backend):
    """Wraps a SAM-family ``transformers`` model (see :data:`HF_FAMILIES`).

    Args:
        model: the model; kept reachable as the attribute ``model``.
        image_processor: its ``transformers`` image processor.
        name: label for logs and reports.
    """

    def __init__(self, model: torch.nn.Module, image_processor: Any, name: str = "hf") -> None:
        family = HF_FAMILIES.get(type(model).__name__)
        if family is None:
            raise TypeError(f"expected one of {', '.join(HF_FAMILIES)}, got {type(model).__name__}")
        self.model = model.eval()
        self.family = family
        self.image_processor = image_processor
        self.name = name
        self._frame = functools.lru_cache(maxsize=8)(self._build_frame)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def input_size(self) -> int:
        return _input_size(self.model)

    @property
    def low_res_size(self) -> tuple[int, int]:
        cfg = self.model.config.prompt_encoder_config
        side = 4 * (cfg.image_size // cfg.patch_size)
        return side, side

    @property
    def iou_head(self) -> torch.nn.Module:
        return self.model.mask_decoder.iou_prediction_head

    def to(self, device: str | torch.device) -> HfBackend:
        """Move the model to ``device`` (in place) and return self."""
        self.model.to(device)
        return self

    def _build_frame(self, original_size: tuple[int, int]) -> Frame:
        build = Frame.resize_square if self.family.square else Frame.resize_longest_side
        return build(original_size, self.input_size, self.low_res_size)

    def frame(self, original_size: tuple[int, int]) -> Frame:
        return self._frame((int(original_size[0]), int(original_size[1])))

    @torch.inference_mode()
    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        check_image(image)
        pixels = self.image_processor(images=image, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, torch.float32)
        frame = self.frame(image.shape[:2])
        extras: dict[str, torch.Tensor] = {}
        with self.precision(dtype):
            out = self.model.get_image_embeddings(pixels)
        if self.family.square:  # finest first; the last is the top-level map
            features = out[-1]
            extras = {f"high_res_{i}": m.float() for i, m in enumerate(out[:-1])}
        elif self.family.hq:
            features, intermediate = out
            extras = {"interm": intermediate[0].float()}
        else:
            features = out
        return ImageEmbedding(
            features=features.float(),
            original_size=image.shape[:2],
            resized_size=frame.resized_size,
            extras=extras,
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
        device = self.device
        frame = self.frame(embedding.original_size)
        sizes = [len(t) for t in (point_coords, boxes, mask_input) if t is not None]
        if not sizes:
            raise ValueError("decode needs at least one prompt")
        b = sizes[0]
        # One image-batch row per prompt: transformers adds the dense (mask) embedding per
        # image, so prompts with different masks cannot share a row.
        inputs: dict[str, Any] = {"multimask_output": multimask_output}
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = to_input_frame(point_coords.to(device).float(), frame)
            inputs["input_points"] = coords[:, None]
            inputs["input_labels"] = point_labels.to(device).long()[:, None]
        if boxes is not None:
            corners = to_input_frame(boxes.to(device).float().reshape(-1, 2, 2), frame)
            inputs["input_boxes"] = corners.reshape(-1, 1, 4)
        if mask_input is not None:
            inputs["input_masks"] = mask_input.to(device).float()
        features = embedding.features.to(device).expand(b, -1, -1, -1)
        if self.family.square:
            maps = [embedding.extras[f"high_res_{i}"] for i in range(len(embedding.extras))]
            inputs["image_embeddings"] = [m.to(device).expand(b, -1, -1, -1) for m in maps] + [
                features
            ]
        else:
            inputs["image_embeddings"] = features
        if self.family.hq:
            inputs["intermediate_embeddings"] = [
                embedding.extras["interm"].to(device).expand(b, -1, -1, -1)
            ]
            inputs["hq_token_only"] = False
        with self.precision(dtype):
            out = self.model(**inputs)
        return Decoded(
            low_res_logits=out.pred_masks[:, 0].float(),
            iou_predictions=out.iou_scores[:, 0].float(),
        )
