"""The ``transformers`` video models behind :class:`~samrefiner.video.backends.VideoBackend`:
``Sam2VideoModel``, ``Sam3TrackerVideoModel`` and ``EdgeTamVideoModel``, the video
counterparts of the image classes :class:`samrefiner.models.hf.HfBackend` drives.

The video model is built from the image model: its config from the image config's vision,
prompt-encoder and mask-decoder parts (the memory modules sized from them, see
:func:`video_config`), its weights from the image model's state dict (every image weight
has the same name in the video class) plus, for a checkpoint that holds them, the memory
modules' own weights. Tracking goes through the public API: an inference session of the
model's class, ``add_inputs_to_inference_session(..., input_masks=...)`` of its processor,
and ``propagate_in_video_iterator``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from samrefiner.extras import import_extra
from samrefiner.video.backends import DIRECTIONS, Seeds, VideoBackend
from samrefiner.video.frames import FrameSource

#: Image class -> its video class in ``transformers``.
VIDEO_CLASSES: dict[str, str] = {
    "Sam2Model": "Sam2VideoModel",
    "Sam3TrackerModel": "Sam3TrackerVideoModel",
    "EdgeTamModel": "EdgeTamVideoModel",
}

#: Video class -> the processor class whose ``add_inputs_to_inference_session`` it takes.
_PROCESSORS: dict[str, str] = {
    "Sam2VideoModel": "Sam2VideoProcessor",
    "Sam3TrackerVideoModel": "Sam3TrackerVideoProcessor",
    "EdgeTamVideoModel": "Sam2VideoProcessor",
}


#: The memory's channels. ``transformers`` 5.24 fixes the memory attention's key width at 64
#: (``kv_in_dim=64``), so the memory encoder must output 64 channels; and it stores object
#: pointers as ``(1, objects, width)``, which only its split of a pointer into 64-wide
#: tokens (done when ``fpn_hidden_size`` > 64) turns into memory tokens. A video model
#: therefore needs ``fpn_hidden_size`` a multiple of 64 and above it (256 in the released
#: models); otherwise the memory attention fails ("mat1 and mat2 shapes cannot be
#: multiplied", or "Tensors must have same number of dimensions: got 3 and 4").
MEMORY_CHANNELS = 64


def _transformers() -> Any:
    return import_extra("transformers", "hf", "the transformers video models")


def video_config(image_config: Any, video_cls: Any, **overrides: Any) -> Any:
    """The video config of an image config: its vision, prompt-encoder and mask-decoder
    configs, the input size of its prompt encoder, and memory modules as wide as its
    feature pyramid (``fpn_hidden_size``) over its coarsest feature map, with
    :data:`MEMORY_CHANNELS` memory channels. For the released models these are the video
    classes' defaults (256 wide, 64 x 64 at 1024 px); for smaller configs they keep the
    memory attention's width and rotary positions consistent with the image features.

    Raises:
        ValueError: ``fpn_hidden_size`` is not a multiple of :data:`MEMORY_CHANNELS` above it.

    Args:
        image_config: the image model's config.
        video_cls: the ``transformers`` video model class.
        overrides: more video config fields (e.g. ``num_maskmem``).
    """
    vision = image_config.vision_config
    width = int(vision.fpn_hidden_size)
    if width % MEMORY_CHANNELS or width <= MEMORY_CHANNELS:
        raise ValueError(
            f"{video_cls.__name__} needs fpn_hidden_size a multiple of {MEMORY_CHANNELS} "
            f"above it (its memory attention's key width and object-pointer split), got {width}"
        )
    side = int(image_config.prompt_encoder_config.image_size)
    fields: dict[str, Any] = {
        "memory_attention_hidden_size": width,
        "memory_encoder_hidden_size": width,
        "mask_downsampler_embed_dim": width,
        "memory_fuser_embed_dim": width,
        "memory_encoder_output_channels": MEMORY_CHANNELS,
        "memory_attention_rope_feat_sizes": [int(s) for s in vision.backbone_feature_sizes[-1]],
    }
    known = video_cls.config_class().to_dict()
    fields = {k: v for k, v in fields.items() if k in known}
    config = video_cls.config_class(
        vision_config=vision.to_dict(),
        prompt_encoder_config=image_config.prompt_encoder_config.to_dict(),
        mask_decoder_config=image_config.mask_decoder_config.to_dict(),
        **{**fields, **overrides},
    )
    config.image_size = side
    if "memory_attention_rope_feat_sizes" in fields:
        # SAM 3's image_size setter rescales the rotary grid; pin it to the features.
        config.memory_attention_rope_feat_sizes = fields["memory_attention_rope_feat_sizes"]
    return config


def video_model_from_image(model: torch.nn.Module, **overrides: Any) -> torch.nn.Module:
    """The video model of a ``transformers`` image model (see :data:`VIDEO_CLASSES`),
    holding its weights; the memory modules, which an image model lacks, are random (from a
    fixed seed: the same in every process) unless the image model came from a folder whose
    checkpoint has them (``name_or_path`` of its config), where they are read from it.

    Raises:
        ValueError: the image class has no video counterpart, or an image weight does not
            fit the video class.
    """
    transformers = _transformers()
    name = type(model).__name__
    if name not in VIDEO_CLASSES:
        raise ValueError(
            f"{name} has no transformers video counterpart ({', '.join(VIDEO_CLASSES)})"
        )
    video_cls = getattr(transformers, VIDEO_CLASSES[name])
    # Memory modules no checkpoint holds start from a fixed seed, so that every process
    # (the local engine, each Ray actor) builds the same video model from one image model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        video = video_cls(video_config(model.config, video_cls, **overrides))
    source = getattr(model.config, "name_or_path", "") or ""
    if source:
        _load_memory_weights(video, source)
    missing = video.load_state_dict(model.state_dict(), strict=False)
    if missing.unexpected_keys:
        raise ValueError(
            f"{name}: weights the video class has no place for: {missing.unexpected_keys[:5]}"
        )
    return video.to(model.device).eval()


def _load_memory_weights(video: torch.nn.Module, source: str) -> None:
    """Read the weights of ``video`` that ``source``'s checkpoint holds (a video
    checkpoint's memory modules), leaving the others as they are."""
    from pathlib import Path

    folder = Path(source)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return
    from safetensors.torch import load_file

    own = video.state_dict()
    found: dict[str, torch.Tensor] = {}
    for file in files:
        for key, value in load_file(str(file)).items():
            if key in own and own[key].shape == value.shape:
                found[key] = value
    video.load_state_dict(found, strict=False)


class _LazyFrames(Mapping[int, torch.Tensor]):
    """The frames of a :class:`FrameSource` as an inference session's ``processed_frames``:
    item ``i`` is frame ``i`` through the image processor (``3 x S x S`` float32), decoded
    only when read, so a session never holds the sequence."""

    def __init__(self, frames: FrameSource, image_processor: Any) -> None:
        self.frames = frames
        self.image_processor = image_processor

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.frames)))

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= int(index) < len(self.frames):
            raise KeyError(index)
        image = np.array(self.frames.read(int(index)))
        out = self.image_processor(images=image, return_tensors="pt")
        return out["pixel_values"][0].float()


class HfVideoBackend(VideoBackend):
    """A ``transformers`` video model (``Sam2VideoModel``, ``Sam3TrackerVideoModel``,
    ``EdgeTamVideoModel``) tracking from seed masks.

    Args:
        model: the video model.
        image_processor: the image processor of its image model (frames are preprocessed
            as the per-frame step preprocesses them).
        offload_state: keep the session's state (memories, cached features) on the CPU.
        name: label for notices.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_processor: Any,
        *,
        offload_state: bool = True,
        name: str = "hf",
    ) -> None:
        transformers = _transformers()
        cls = type(model).__name__
        if cls not in _PROCESSORS:
            raise TypeError(f"expected one of {', '.join(_PROCESSORS)}, got {cls}")
        self.model = model.eval()
        self.image_processor = image_processor
        self.offload_state = offload_state
        self.name = name
        self._session_cls = getattr(transformers, cls.removesuffix("Model") + "InferenceSession")
        side = self.side
        #: The processor whose ``add_inputs_to_inference_session`` adds the seed masks.
        self.processor = getattr(transformers, _PROCESSORS[cls])(
            image_processor=image_processor,
            video_processor=transformers.Sam2VideoVideoProcessor(
                size={"height": side, "width": side}
            ),
            target_size=side,
        )

    @classmethod
    def from_image_backend(cls, backend: Any, *, offload_state: bool = True) -> HfVideoBackend:
        """The video model of a :class:`samrefiner.models.hf.HfBackend`."""
        return cls(
            video_model_from_image(backend.model),
            backend.image_processor,
            offload_state=offload_state,
            name=backend.name,
        )

    @property
    def side(self) -> int:
        """The model's square input size."""
        return int(self.model.config.prompt_encoder_config.image_size)

    @property
    def window(self) -> int:
        """Frames back (or ahead, tracking backward) whose memories the model reads: its
        ``num_maskmem`` frames and ``max_object_pointers_in_encoder`` object pointers."""
        cfg = self.model.config
        return max(int(cfg.num_maskmem), int(cfg.max_object_pointers_in_encoder)) + 1

    def session(self, frames: FrameSource) -> Any:
        """An inference session of the model's class reading ``frames`` lazily."""
        device = self.model.device
        session = self._session_cls(
            video_height=frames.size[0],
            video_width=frames.size[1],
            inference_device=device,
            inference_state_device="cpu" if self.offload_state else device,
            video_storage_device="cpu",
            dtype=torch.float32,
        )
        session.processed_frames = _LazyFrames(frames, self.image_processor)
        return session

    def seed(self, sessions: Mapping[int, Any], seeds: Seeds) -> None:
        """Add each object's seed masks to its session with the processor's
        ``add_inputs_to_inference_session`` and run the model on each seeded frame, so
        that each becomes a conditioning frame whose output is its mask (frame by frame,
        so the objects seeded on one frame share its image features)."""
        by_frame: dict[int, list[int]] = {}
        for obj, masks in seeds.items():
            for frame in masks:
                by_frame.setdefault(int(frame), []).append(int(obj))
        for frame in sorted(by_frame):
            for obj in sorted(by_frame[frame]):
                mask = torch.from_numpy(np.asarray(seeds[obj][frame], dtype=bool))
                self.processor.add_inputs_to_inference_session(
                    sessions[obj], frame_idx=frame, obj_ids=[obj], input_masks=[mask]
                )
                self.model(inference_session=sessions[obj], frame_idx=frame)

    def _forget(self, session: Any, frame: int, reverse: bool) -> None:
        """Drop the tracked outputs the model will not read again in this pass."""
        reach = self.window
        for outputs in session.output_dict_per_obj.values():
            memories = outputs["non_cond_frame_outputs"]
            for t in [t for t in memories if (frame - t if not reverse else t - frame) > reach]:
                del memories[t]

    def masks(self, session: Any, output: Any) -> dict[int, np.ndarray]:
        """The ``H x W`` bool masks of one step's output, by object id."""
        sizes = [[session.video_height, session.video_width]]
        full = self.image_processor.post_process_masks([output.pred_masks.float()], sizes)[0]
        binary = full.reshape(len(output.object_ids), *full.shape[-2:]).cpu().numpy().astype(bool)
        return {int(o): binary[k] for k, o in enumerate(output.object_ids)}

    @torch.inference_mode()
    def track(
        self, frames: FrameSource, seeds: Seeds, direction: str
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Track each object in its own inference session (the sessions share one cache
        of image features, and are stepped frame by frame together, so each frame is
        encoded once): from the earliest seed to the last frame, then (``"both"``) back to
        frame 0, with the model's forward on each frame, as
        ``propagate_in_video_iterator`` steps it. One object per session because
        ``EdgeTamVideoModel`` (``transformers`` 5.24) fails on a frame where one object is
        seeded with a mask and another is tracked (its mask-seeded object score has one
        dimension less); objects are tracked independently by these models anyway."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        seeds = {int(o): m for o, m in seeds.items() if m}
        if not seeds:
            return
        sessions: dict[int, Any] = {}
        for obj in sorted(seeds):
            sessions[obj] = self.session(frames)
            if len(sessions) > 1:  # one cache of image features for all objects
                sessions[obj].cache = sessions[min(sessions)].cache
        self.seed(sessions, seeds)
        start = min(int(f) for masks in seeds.values() for f in masks)
        passes = [(False, range(start, len(frames)))]
        if direction == "both" and start > 0:
            passes.append((True, range(start, -1, -1)))
        seen: set[int] = set()
        for reverse, order in passes:
            for frame in order:
                masks: dict[int, np.ndarray] = {}
                for session in sessions.values():
                    output = self.model(inference_session=session, frame_idx=frame, reverse=reverse)
                    self._forget(session, frame, reverse)
                    masks.update(self.masks(session, output))
                if frame not in seen:
                    seen.add(frame)
                    yield frame, masks
