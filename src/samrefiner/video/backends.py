"""Video models behind one small interface: seed masks on keyframes in, propagated masks
out, one frame at a time.

* :class:`Sam2VideoBackend`: the official ``sam2`` package's ``SAM2VideoPredictor``
  (``init_state``, ``add_new_mask``, ``propagate_in_video``), built from the same config
  and weights as the image model the refiner uses;
* :class:`samrefiner.video.hf.HfVideoBackend`: the ``transformers`` video models
  (``Sam2VideoModel``, ``Sam3TrackerVideoModel``, ``EdgeTamVideoModel``);
* :func:`video_backend_for`: the video counterpart of an image backend, or None for an
  image-only model (SAM v1, HQ-SAM, MobileSAM), which then runs the per-frame step only.

Frames are streamed: the predictor reads each frame through a lazy sequence
(:class:`StreamedFrames`) when it reaches it, and the per-frame memories it no longer
reads (older than its memory window) are dropped as it goes, so memory does not grow
with the sequence's features.
"""

from __future__ import annotations

import abc
import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from samrefiner.models.base import Backend
from samrefiner.video.frames import FrameSource

#: ``--propagate`` directions that run the video model.
DIRECTIONS = ("forward", "both")

#: SAM 2's input normalisation (``sam2.utils.misc.load_video_frames``' defaults).
_SAM2_MEAN = (0.485, 0.456, 0.406)
_SAM2_STD = (0.229, 0.224, 0.225)

Seeds = Mapping[int, Mapping[int, np.ndarray]]


class VideoBackend(abc.ABC):
    """A video model that tracks objects from masks given on some frames."""

    #: Label for logs and notices.
    name: str = "video"

    @abc.abstractmethod
    def track(
        self, frames: FrameSource, seeds: Seeds, direction: str
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Propagate the seed masks through the sequence.

        Args:
            frames: the sequence.
            seeds: object id -> frame index -> ``H x W`` bool mask: the masks the model's
                memory starts from (each a conditioning frame, its output as given).
            direction: ``"forward"`` (from the earliest seed to the last frame) or
                ``"both"`` (then backward from the earliest seed to frame 0).

        Yields:
            ``(frame, {object id: H x W bool mask})``, each frame at most once, in the
            order the model reaches them.
        """


class StreamedFrames:
    """The frames of a :class:`FrameSource` as the SAM 2 predictor reads its video: item
    ``i`` is frame ``i`` resized to ``size x size``, scaled to [0, 1] and normalised
    (``3 x size x size`` float32), decoded only when read."""

    def __init__(self, frames: FrameSource, size: int) -> None:
        self.frames = frames
        self.size = size
        self.mean = torch.tensor(_SAM2_MEAN, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(_SAM2_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        pixels = Image.fromarray(self.frames.read(int(index))).resize((self.size, self.size))
        image = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (image - self.mean) / self.std


class Sam2VideoBackend(VideoBackend):
    """The official ``sam2`` video predictor (``SAM2VideoPredictor``).

    Args:
        predictor: the predictor (``sam2.build_sam.build_sam2_video_predictor``).
        offload_state: keep the tracking state on the CPU (``init_state``'s
            ``offload_state_to_cpu``: less accelerator memory, slower on GPUs).
        name: label for notices.
    """

    def __init__(
        self, predictor: torch.nn.Module, *, offload_state: bool = True, name: str = "sam2"
    ) -> None:
        from sam2.sam2_video_predictor import SAM2VideoPredictor

        if not isinstance(predictor, SAM2VideoPredictor):
            raise TypeError(f"expected a SAM2VideoPredictor, got {type(predictor).__name__}")
        self.predictor = predictor.eval()
        self.offload_state = offload_state
        self.name = name

    @classmethod
    def from_image_model(
        cls, model: torch.nn.Module, *, offload_state: bool = True, name: str = "sam2"
    ) -> Sam2VideoBackend:
        """The video predictor of an image model built by
        :func:`samrefiner.models.sam2.build_sam2_model`: the same config and overrides,
        the image model's weights.

        Raises:
            ValueError: the model does not say which config built it.
        """
        from samrefiner.models.sam2 import build_sam2_video_model

        built = getattr(model, "samrefiner_build", None)
        if built is None:
            raise ValueError(
                f"{name}: the SAM 2 model does not say which sam2 config built it "
                "(build it with samrefiner.models.sam2.build_sam2_model)"
            )
        config, overrides = built
        predictor = build_sam2_video_model(config, overrides)
        predictor.load_state_dict(model.state_dict())
        return cls(predictor.to(model.device), offload_state=offload_state, name=name)

    @property
    def window(self) -> int:
        """Frames back (or ahead, tracking backward) whose memories the predictor reads:
        its memory bank (``num_maskmem`` frames at its temporal stride) and its object
        pointers (``max_obj_ptrs_in_encoder``)."""
        p = self.predictor
        return max(p.num_maskmem * p.memory_temporal_stride_for_eval, p.max_obj_ptrs_in_encoder) + 1

    def _start(self, frames: FrameSource) -> dict[str, Any]:
        """A predictor state reading ``frames`` lazily.

        ``init_state`` only reads a folder of JPEG frames (all of them, into memory):
        it is given a folder holding the first frame, and its frames are then replaced
        by :class:`StreamedFrames` of the whole sequence, as its own asynchronous loader
        does. The warm-up features it cached (of the JPEG copy) are dropped.
        """
        with tempfile.TemporaryDirectory(prefix="samrefiner-video-") as tmp:
            Image.fromarray(frames.read(0)).save(Path(tmp) / "00000.jpg", quality=100)
            state = self.predictor.init_state(
                tmp, offload_video_to_cpu=True, offload_state_to_cpu=self.offload_state
            )
        state["images"] = StreamedFrames(frames, int(self.predictor.image_size))
        state["num_frames"] = len(frames)
        state["video_height"], state["video_width"] = frames.size
        state["cached_features"] = {}
        return state

    def _forget(self, state: dict[str, Any], frame: int, reverse: bool) -> None:
        """Drop the tracked (non-conditioning) outputs the predictor will not read again
        in this pass: those more than :attr:`window` frames behind ``frame``."""
        reach = self.window
        for outputs in state["output_dict_per_obj"].values():
            memories = outputs["non_cond_frame_outputs"]
            stale = [t for t in memories if (frame - t if not reverse else t - frame) > reach]
            for t in stale:
                del memories[t]

    @torch.inference_mode()
    def track(
        self, frames: FrameSource, seeds: Seeds, direction: str
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if not any(seeds.values()):
            return
        with self._precision():
            state = self._start(frames)
            for obj in sorted(seeds):
                for frame in sorted(seeds[obj]):
                    mask = np.asarray(seeds[obj][frame], dtype=bool)
                    self.predictor.add_new_mask(state, frame, obj, mask)
        seen: set[int] = set()
        if not self.autocast:
            # The memories of the seeds, encoded here, upcast before any frame reads them.
            self.predictor.propagate_in_video_preflight(state)
            self._upcast(state)
        for reverse in (False, True) if direction == "both" else (False,):
            steps = self.predictor.propagate_in_video(state, reverse=reverse)
            while True:
                with self._precision():  # entered per step: never left on between yields
                    step = next(steps, None)
                if step is None:
                    break
                frame, obj_ids, logits = step
                self._forget(state, frame, reverse)
                if not self.autocast:
                    self._upcast(state, frame)
                if frame in seen:
                    continue
                seen.add(frame)
                masks = (logits[:, 0] > 0.0).float().cpu().numpy().astype(bool)
                yield frame, {int(o): masks[k] for k, o in enumerate(obj_ids)}

    @property
    def autocast(self) -> bool:
        """Run under bfloat16 autocast, as the official examples run the predictor on
        GPUs. Not on the CPU, where bfloat16 matrix products are far slower than float32
        ones without hardware support: there the memories the predictor stores in
        bfloat16 are upcast to float32 as they are made (:meth:`_upcast`)."""
        return self.predictor.device.type != "cpu"

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.predictor.device.type, dtype=torch.bfloat16)

    @staticmethod
    def _upcast(state: dict[str, Any], frame: int | None = None) -> None:
        """Make the stored memory features (of ``frame``, or all) float32."""
        for outputs in state["output_dict_per_obj"].values():
            for stored in (outputs["cond_frame_outputs"], outputs["non_cond_frame_outputs"]):
                for t, out in stored.items():
                    feats = out.get("maskmem_features")
                    if (frame is None or t == frame) and feats is not None:
                        out["maskmem_features"] = feats.float()


def video_backend_for(backend: Backend, *, offload_state: bool = True) -> VideoBackend | None:
    """The video model of an image backend (the same weights), or None for an image-only
    family (SAM v1, HQ-SAM, MobileSAM, or a model whose video counterpart is unknown).

    SAM 2.1 models of the ``sam2`` package get :class:`Sam2VideoBackend`; ``transformers``
    ``Sam2Model``, ``Sam3TrackerModel`` and ``EdgeTamModel`` get
    :class:`samrefiner.video.hf.HfVideoBackend` over their video classes.

    Raises:
        ValueError: a ``transformers`` model whose video class cannot be built from it
            (see :func:`samrefiner.video.hf.video_config`).
    """
    from samrefiner.models.hf import HfBackend
    from samrefiner.models.sam2 import Sam2Backend

    inner = getattr(backend, "backend", backend)  # an embedding cache wraps the model
    if isinstance(inner, Sam2Backend):
        if getattr(inner.model, "samrefiner_build", None) is None:
            return None
        return Sam2VideoBackend.from_image_model(
            inner.model, offload_state=offload_state, name=inner.name
        )
    if isinstance(inner, HfBackend):
        from samrefiner.video.hf import VIDEO_CLASSES, HfVideoBackend

        if type(inner.model).__name__ in VIDEO_CLASSES:
            try:
                return HfVideoBackend.from_image_backend(inner, offload_state=offload_state)
            except ValueError as exc:
                raise ValueError(f"{inner.name}: no video model: {exc}") from exc
    return None
