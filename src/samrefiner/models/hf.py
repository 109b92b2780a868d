"""Hugging Face ``transformers`` backend: SAM-family models from the Hub or a local folder.

``load_model("hf:ORG/NAME")`` (or a folder written by ``save_pretrained``) loads a
``SamModel``, ``SamHQModel``, ``Sam2Model``, ``Sam3TrackerModel`` (SAM 3's point / box /
mask predictor) or ``EdgeTamModel`` with the conventions of its processor:

* SAM and SAM-HQ resize the image's longest side and pad (SAM v1's frame); SAM 2, SAM 3
  tracker and EdgeTAM stretch it over the square (:meth:`Frame.resize_square`) and add
  the "no memory" embedding (``get_image_embeddings`` does);
* the image is preprocessed by the repository's own image processor when it ships one,
  else by the processor ``transformers`` maps to the model type, at the model's input size;
* prompts go to the model in its input frame, one image-batch row per prompt.

Weights load strictly, as the native families' checkpoints do: missing, unexpected or
reshaped tensors are an error naming them and the folder, and a pickled
``pytorch_model.bin`` holding Python objects is refused without unpickling them.

``hf:`` names resolve from the local Hugging Face cache (``$HF_HOME``) first, without
touching the network; only a model that is not (completely) there is fetched, in one
attempt with a short timeout, and not at all with ``HF_HUB_OFFLINE=1``. A model found in
neither place is an error naming the repository and the cache path.

SAM-HQ gives the reference's candidates (SAM's three, each plus the HQ mask; ``transformers``
sorts them by predicted IoU, which does not change the one kept), or with
``hq_token_only=True`` the HQ mask alone (scored by the best IoU prediction), as
:class:`~samrefiner.models.hq.HqSamBackend` does. EdgeTAM's IoU head was not distilled:
prefer ``RefineConfig(selection="stability")``.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path
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
from samrefiner.models.families import Family, check_options, transformers_families
from samrefiner.models.weights import check_keys, refused_pickle

#: What needs the ``hf`` extra, in its error.
_WHAT = "Hugging Face models"

#: Seconds the one Hub request of a model absent from the cache may take.
HUB_TIMEOUT_S = 10.0

#: Files of a ``save_pretrained`` folder holding an image processor's settings.
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


#: ``transformers`` model classes samrefiner can drive, by class name: their families in
#: :data:`samrefiner.models.families.FAMILIES` (frame, HQ token, options, packages needed).
HF_FAMILIES: dict[str, Family] = transformers_families()


#: Repositories of a larger model whose promptable part samrefiner drives: a full SAM 3
#: checkpoint (``facebook/sam3``) loads as its point / box / mask tracker, as transformers'
#: SAM 3 tracker documentation does.
LOADED_AS: dict[str, str] = {"Sam3Model": "Sam3TrackerModel"}


def _import_transformers() -> Any:
    return import_extra("transformers", "hf", _WHAT)


def _import_hub() -> Any:
    return import_extra("huggingface_hub", "hf", _WHAT)


def hf_cache_dir() -> Path:
    """Where ``huggingface_hub`` keeps downloaded models (``$HF_HUB_CACHE`` / ``$HF_HOME``)."""
    return Path(_import_hub().constants.HF_HUB_CACHE)


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (transformers' messages span several)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def model_folder(repo: str) -> Path:
    """The local folder holding ``repo``'s files.

    A folder is itself. A Hub name resolves to its snapshot in the Hugging Face cache
    without any network request; only when the cache lacks its config or weights is it
    fetched, in one attempt with a :data:`HUB_TIMEOUT_S` timeout (never with
    ``HF_HUB_OFFLINE=1``). Errors name the repository and the cache path at once.
    """
    folder = Path(repo)
    if folder.is_dir():
        return folder
    hub = _import_hub()
    try:
        config = hub.try_to_load_from_cache(repo, "config.json")
    except ValueError as exc:  # huggingface_hub's HFValidationError
        raise ValueError(
            f"{repo!r}: neither a folder nor a Hugging Face repository name: {_one_line(exc)}"
        ) from exc
    if isinstance(config, str) and _has_weights(Path(config).parent):
        return Path(config).parent
    absent = f"Hugging Face model {repo!r} is not (completely) in the Hugging Face cache " + str(
        hf_cache_dir()
    )
    if hub.constants.is_offline_mode():
        raise ValueError(
            f"{absent} and HF_HUB_OFFLINE is set: download it once with network access "
            f"(hf download {repo}) or name a save_pretrained folder"
        )
    return _download(hub, repo, absent)


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin"))


def _download(hub: Any, repo: str, absent: str) -> Path:
    """Fetch ``repo``'s top-level config files and weights (safetensors when it has them)."""
    endpoint = hub.constants.ENDPOINT
    try:
        info = hub.HfApi().model_info(repo, timeout=HUB_TIMEOUT_S)
    except hub.errors.RepositoryNotFoundError as exc:
        raise ValueError(
            f"{absent}, and the Hub ({endpoint}) has no such model (or it is private or gated: "
            "log in with 'hf auth login')"
        ) from exc
    except Exception as exc:  # the HTTP client's own connection / timeout / status errors
        raise ValueError(
            f"{absent}, and the Hub ({endpoint}) could not be reached: {_one_line(exc)}"
        ) from exc
    names = [s.rfilename for s in info.siblings or [] if "/" not in s.rfilename]
    weights = [n for n in names if n.endswith(".safetensors")]
    weights = weights or [n for n in names if n.endswith(".bin")]
    wanted = [n for n in names if n.endswith(".json")] + weights
    try:
        return Path(hub.snapshot_download(repo, allow_patterns=wanted, etag_timeout=HUB_TIMEOUT_S))
    except Exception as exc:  # as above: the download's network and file errors alike
        raise ValueError(
            f"{repo}: downloading it from the Hub ({endpoint}) failed: {_one_line(exc)}"
        ) from exc


def load_hf_model(
    repo: str,
    *,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    **options: Any,
) -> HfBackend:
    """Load a SAM-family ``transformers`` model by Hub name or folder.

    Args:
        repo: ``ORG/NAME`` on the Hub or a local folder written by ``save_pretrained``.
        pretrained: False builds the architecture from its config with random weights.
        device: torch device.
        options: backend options of the model's family (``hq_token_only`` for SAM-HQ).

    Raises:
        ValueError: the model cannot be found or read, its weights do not fit it exactly,
            or it takes no such option. MissingExtra: a package it needs is not installed.
    """
    transformers = _import_transformers()
    folder = model_folder(repo)
    label = f"hf:{repo}"
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}: cannot read the model's config: {_one_line(exc)}") from exc
    names = [*(config.architectures or []), _model_class_name(transformers, config)]
    names = [LOADED_AS.get(n, n) for n in names if n]
    name = next((n for n in names if n in HF_FAMILIES), None)
    if name is None:
        raise ValueError(
            f"{repo}: model type {config.model_type!r} is not a SAM-family model samrefiner "
            f"can drive ({', '.join(HF_FAMILIES)})"
        )
    family = HF_FAMILIES[name]
    check_options(label, name, family.options, options)
    for package in family.needs:
        import_extra(package, "hf", f"{name} ({label})")
    model_cls = getattr(transformers, name)
    if not isinstance(config, model_cls.config_class):  # e.g. a full SAM 3 repository
        config = model_cls.config_class.from_pretrained(folder, local_files_only=True)
    if pretrained:
        model = _load_strictly(transformers, model_cls, folder, config)
    else:
        model = model_cls(config)
    processor = image_processor(transformers, folder, config, family, _input_size(model))
    return HfBackend(model.to(device).eval(), processor, name=label, **options)


@contextlib.contextmanager
def _no_load_report(transformers: Any) -> Iterator[None]:
    """Silence ``transformers``' load report: mismatches are refused with their keys."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _load_strictly(transformers: Any, model_cls: Any, folder: Path, config: Any) -> Any:
    """``model_cls.from_pretrained(folder)`` in float32; any missing, unexpected or
    reshaped tensor is a ValueError naming it (``transformers`` would initialise the
    missing ones randomly and ignore the others)."""
    try:
        with _no_load_report(transformers):
            model, info = model_cls.from_pretrained(
                folder,
                config=config,
                local_files_only=True,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # reported below, with the other mismatches
                dtype=torch.float32,
            )
    except pickle.UnpicklingError as exc:  # torch's weights-only loader refused objects
        pickles = sorted(folder.glob("*.bin"))
        raise ValueError(refused_pickle(", ".join(map(str, pickles)) or folder)) from exc
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"{folder}: cannot load the model's weights: {_one_line(exc)}") from exc
    check_keys(
        folder,
        model_cls.__name__,
        missing=sorted(info["missing_keys"]),
        unexpected=sorted(info["unexpected_keys"]),
        mismatched=[
            f"{key} {tuple(file)} != {tuple(model)}"
            for key, file, model in sorted(info["mismatched_keys"])
        ],
    )
    return model


def _model_class_name(transformers: Any, config: Any) -> str | None:
    """The class ``AutoModel`` would build for ``config`` (configs without ``architectures``)."""
    try:
        return transformers.AutoModel._model_mapping[type(config)].__name__
    except (AttributeError, KeyError):
        return None


def _input_size(model: torch.nn.Module) -> int:
    return int(model.config.prompt_encoder_config.image_size)


def image_processor(transformers: Any, folder: Path, config: Any, family: Family, size: int) -> Any:
    """The folder's own image processor, else :func:`default_image_processor`."""
    if not any((folder / name).is_file() for name in _PROCESSOR_FILES):
        return default_image_processor(config, family, size)
    try:
        return transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{folder}: cannot read the model's image processor: {_one_line(exc)}"
        ) from exc


def default_image_processor(config: Any, family: Family, size: int) -> Any:
    """The image processor ``transformers`` maps to ``config``'s model type (SAM 3's
    normalisation for the SAM 3 tracker, SAM 2's for SAM 2 and EdgeTAM, ...), resizing to
    ``size`` px in the family's frame."""
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    try:
        classes = IMAGE_PROCESSOR_MAPPING[type(config)]
    except KeyError as exc:
        raise ValueError(
            f"transformers maps no image processor to model type {config.model_type!r}"
        ) from exc
    cls = classes.get("torchvision") or next(c for c in classes.values() if c is not None)
    if family.square:
        return cls(size={"height": size, "width": size})
    return cls(size={"longest_edge": size}, pad_size={"height": size, "width": size})


class HfBackend(Backend):
    """Wraps a SAM-family ``transformers`` model (see :data:`HF_FAMILIES`).

    Args:
        model: the model; kept reachable as the attribute ``model``.
        image_processor: its ``transformers`` image processor.
        name: label for logs and reports.
        hq_token_only: SAM-HQ only: one candidate, the HQ token's mask, scored by the best
            of SAM's IoU predictions (default: SAM's candidates, each plus the HQ mask).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_processor: Any,
        name: str = "hf",
        *,
        hq_token_only: bool = False,
    ) -> None:
        family = HF_FAMILIES.get(type(model).__name__)
        if family is None:
            raise TypeError(f"expected one of {', '.join(HF_FAMILIES)}, got {type(model).__name__}")
        if hq_token_only and not family.hq:
            raise ValueError(
                f"{name}: hq_token_only needs a SAM-HQ model, not a {type(model).__name__}"
            )
        self.hq_token_only = hq_token_only
        self.model = model.eval()
        self.family = family
        self.image_processor = image_processor
        self.name = name
        self.frame_kind = family.frame

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

    @torch.inference_mode()
    def encode(self, image: np.ndarray, dtype: str = "float32") -> ImageEmbedding:
        check_image(image)
        pixels = self.image_processor(images=writable(image), return_tensors="pt")["pixel_values"]
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
            inputs["hq_token_only"] = self.hq_token_only
        with self.precision(dtype):
            out = self.model(**inputs)
        iou = out.iou_scores[:, 0].float()
        if self.hq_token_only:  # one mask (the HQ token's), SAM's IoU predictions beside it
            iou = iou.max(dim=1, keepdim=True).values
        return Decoded(low_res_logits=out.pred_masks[:, 0].float(), iou_predictions=iou)
