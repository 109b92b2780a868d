"""The SAMRefiner loop: excavate prompts, decode, keep the best candidate, iterate."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from segment_anything.modeling import Sam

from samrefiner.batch import BatchRefineResult, refine_batch
from samrefiner.config import RefineConfig
from samrefiner.excavation import Excavator
from samrefiner.gate import gate_reason
from samrefiner.geometry import Frame
from samrefiner.io.masks import (
    as_box_array,
    as_mask_stack,
    as_rgb_image,
    box_masks,
    mask_bbox,
    mask_iou,
)
from samrefiner.mixed import refine_objects
from samrefiner.models.base import Backend, Decoded, ImageEmbedding, stability_scores
from samrefiner.models.sam import SamBackend
from samrefiner.postprocess import paste_mask
from samrefiner.types import (
    POINT_PADDING,
    STATUS_COLLAPSED,
    STATUS_CONVERGED,
    STATUS_EMPTY,
    STATUS_KEPT_COARSE,
    MaskPrompt,
    RefineResult,
)
from samrefiner.zoom import Box, Crop, plan_crops, shift_prompt

STAGES = ("encoder", "excavation", "decoder", "postprocess")


def box_prompt(box: np.ndarray) -> MaskPrompt:
    """The prompt of a box input's first round: the ``(4,)`` XYXY box alone."""
    return MaskPrompt(
        points=np.zeros((0, 2), dtype=np.float32),
        point_labels=np.zeros(0, dtype=np.int64),
        box=box,
        box_expanded=False,
        mask_logits=None,
    )


def _checked_crops(crops: Sequence[Crop], n: int, size: tuple[int, int]) -> list[Crop]:
    """``crops`` given to :meth:`Refiner.refine`, checked against its ``n`` objects and
    ``(H, W)`` image (ValueError naming the crop otherwise)."""
    h, w = size
    seen: set[int] = set()
    for k, crop in enumerate(crops):
        if not (0 <= crop.y0 < crop.y1 <= h and 0 <= crop.x0 < crop.x1 <= w):
            raise ValueError(
                f"crop {k} (rows {crop.y0}:{crop.y1}, columns {crop.x0}:{crop.x1}) leaves "
                f"the {h}x{w} image"
            )
        for i in crop.members:
            if not 0 <= i < n or i in seen:
                raise ValueError(
                    f"crop {k} has member {i}: not one of the {n} objects, or in another crop"
                )
            seen.add(i)
    return list(crops)


class _Timer:
    """Seconds per stage; waits for an asynchronous device so work is charged where it ran.

    On CUDA it waits for the calling thread's current stream only: work other threads
    queue on their own streams (the runner's encoder and refining lanes, see
    :mod:`samrefiner.runner.engines.lanes`) neither waits nor is charged here.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._sync = None
        if device is not None and device.type == "cuda":
            self._sync = torch.cuda.current_stream(device).synchronize

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            self.seconds[stage] += time.perf_counter() - start


class Refiner:
    """Refines coarse masks with a SAM-family model.

    Args:
        model: a :class:`~samrefiner.models.Backend` (see :func:`samrefiner.load_model`)
            or an official ``segment_anything`` ``Sam`` module.
        config: refinement settings; defaults reproduce the reference implementation.

    Example::

        refiner = Refiner(load_model("sam_vit_b"))
        result = refiner.refine(image, coarse_masks)   # H x W x 3 uint8, N x H x W bool
        result.masks, result.scores
    """

    def __init__(self, model: Backend | Sam, config: RefineConfig | None = None) -> None:
        if isinstance(model, Sam):
            model = SamBackend(model)
        if not isinstance(model, Backend):
            raise TypeError(f"model must be a Backend or a Sam module, got {type(model).__name__}")
        self.model = model
        self.config = config or RefineConfig()
        model.require_prompts(self.config.prompt_kinds)

    def with_config(self, config: RefineConfig) -> Refiner:
        """A refiner sharing this one's model, with another configuration."""
        return Refiner(self.model, config)

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """Embed an image once, to refine several mask sets or configs against it."""
        return self.model.encode(as_rgb_image(image), self.config.dtype)

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Embed several images in one pass of the model's encoder (see
        :meth:`~samrefiner.models.Backend.encode_batch`), in order."""
        return self.model.encode_batch([as_rgb_image(image) for image in images], self.config.dtype)

    def first_round_prompts(self, masks: np.ndarray) -> list[MaskPrompt | None] | None:
        """Prompts of the first round, mined before the image is encoded.

        Lets a data pipeline excavate in background workers while the model runs; it runs
        in the calling thread (``threads`` is not used: the model has the other cores).
        Returns None when the first round needs the image embedding (elastic box,
        ``margin > 0``).

        Args:
            masks: ``N x H x W`` bool coarse masks (as given to :meth:`refine`).
        """
        cfg = self.config
        if cfg.uses_elastic_box:
            return None
        stack = as_mask_stack(masks)
        return Excavator(self.model.frame(stack.shape[1:]), cfg).many(stack, threads=1)

    def refine(
        self,
        image: np.ndarray,
        masks: np.ndarray | Sequence[np.ndarray] | None = None,
        *,
        boxes: np.ndarray | None = None,
        from_box: Sequence[bool] | np.ndarray | None = None,
        embedding: ImageEmbedding | None = None,
        first_prompts: Sequence[MaskPrompt | None] | None = None,
        crops: Sequence[Crop] | None = None,
    ) -> RefineResult:
        """Refine the coarse masks, or the boxes, or a mix of both, of one image.

        Args:
            image: ``H x W x 3`` uint8 RGB (grey and RGBA are converted).
            masks: ``N x H x W`` or ``H x W``; bool, 0/1 or 0/255.
            boxes: instead of ``masks``, ``N x 4`` XYXY pixel boxes (``x2, y2`` inclusive,
                clipped to the image), e.g. a detector's. The first round prompts the model
                with the box alone and keeps its best candidate; the configured rounds then
                refine that mask. Their coarse mask (for the quality gate and
                ``kept_coarse``) is the filled box.
            from_box: ``N`` flags for a mix of objects: object ``k`` is refined from
                ``boxes[k]`` where set, else from ``masks[k]`` (the other rows are unused),
                see :func:`refine_objects`. Results stay in input order.
            embedding: a result of :meth:`encode` for this image, to skip the encoder.
            first_prompts: a result of :meth:`first_round_prompts` for these masks, to
                skip the first round's excavation (not with ``boxes``).
            crops: crop-zoom's crops for these objects (members index ``masks`` or
                ``boxes``; an empty list: none), to refine an image's objects in several
                calls under one plan (see :meth:`plan_crops`). None: planned from these
                objects (none unless ``zoom_below`` is set).

        Returns:
            A :class:`RefineResult` with one entry per input mask or box, in order.
        """
        if from_box is not None:
            return refine_objects(
                self,
                image,
                masks,
                boxes,
                from_box,
                embedding=embedding,
                first_prompts=first_prompts,
                crops=crops,
            )
        image = as_rgb_image(image)
        if (masks is None) == (boxes is None):
            raise ValueError("refine needs either masks or boxes (exactly one of them)")
        box_array = None
        if boxes is not None:
            if first_prompts is not None:
                raise ValueError("first_prompts are mined from masks: they cannot go with boxes")
            self.model.require_prompts(("box",))
            box_array = as_box_array(boxes, image.shape[:2])
            coarse = box_masks(box_array, image.shape[:2])
        else:
            coarse = as_mask_stack(masks, image.shape[:2])
        if embedding is not None and embedding.original_size != image.shape[:2]:
            raise ValueError(
                f"embedding is for a {embedding.original_size[0]}x{embedding.original_size[1]} "
                f"image, not {image.shape[0]}x{image.shape[1]}"
            )
        if first_prompts is not None and len(first_prompts) != len(coarse):
            raise ValueError(
                f"first_prompts has {len(first_prompts)} entries for {len(coarse)} masks"
            )
        timer = _Timer(self.model.device)
        if crops is None:
            crops = self._plan_crops(coarse)
        else:
            crops = _checked_crops(crops, len(coarse), image.shape[:2])
        zoomed = {i for crop in crops for i in crop.members}
        whole = [i for i in range(len(coarse)) if i not in zoomed]
        if whole or not crops:
            if embedding is None:
                with timer("encoder"):
                    embedding = self.model.encode(image, self.config.dtype)
            state = self._refine_whole(coarse, whole, embedding, timer, first_prompts, box_array)
        else:  # every object is refined on a crop: the whole image needs no encoding
            state = RefineResult.start(coarse)
        for crop in crops:
            self._refine_crop(image, coarse, box_array, crop, state, timer)
        self._gate(coarse, state, timer)
        state.zoomed = np.isin(np.arange(len(coarse)), sorted(zoomed))
        return RefineResult.like(state, timings=dict(timer.seconds), crops=len(crops))

    def refine_batch(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        valid: torch.Tensor | None = None,
        *,
        threshold: float = 0.5,
        alpha: float | None = None,
    ) -> BatchRefineResult:
        """Refine a training batch given as tensors, on any device (:mod:`samrefiner.batch`).

        Args:
            images: ``B x 3 x H x W`` uint8, or float in [0, 1].
            masks: ``B x K x H x W`` bool, or float probabilities (coarse = ``> threshold``).
            valid: ``B x K`` bool, False for padded object slots; None: all are objects.
            threshold: probability above which a pixel is in the coarse mask.
            alpha: also return soft masks ``alpha * refined + (1 - alpha) * probability``.

        Returns:
            A :class:`~samrefiner.batch.BatchRefineResult` on the input's device: ``masks``
            ``B x K x H x W`` bool, ``scores`` ``B x K``, ``status`` ``B x K`` codes of
            :class:`~samrefiner.batch.BatchStatus`. The images are encoded in one batch
            where the backend can; each image's objects are then refined as :meth:`refine`
            refines them. Empty, all-ones and padded objects get their status and their
            coarse mask back; none raises.
        """
        return refine_batch(self, images, masks, valid, threshold=threshold, alpha=alpha)

    def _refine_whole(
        self,
        coarse: np.ndarray,
        whole: list[int],
        embedding: ImageEmbedding,
        timer: _Timer,
        first_prompts: Sequence[MaskPrompt | None] | None,
        boxes: np.ndarray | None,
    ) -> RefineResult:
        """Refine the masks ``whole`` (indices) on the whole image; the others untouched."""
        if len(whole) == len(coarse):  # no crop-zoom: the loop as it always ran
            return self._iterate(coarse, embedding, timer, first_prompts, boxes)
        state = RefineResult.start(coarse)
        part = self._iterate(
            coarse[whole],
            embedding,
            timer,
            None if first_prompts is None else [first_prompts[i] for i in whole],
            None if boxes is None else boxes[whole],
        )
        state.put(whole, part)
        return state

    def plan_crops(self, boxes: Sequence[Box | None], image_size: tuple[int, int]) -> list[Crop]:
        """Crop-zoom's crops for the objects of one image (none unless ``zoom_below`` is
        set), at most ``max_crops``: :meth:`refine` makes this plan from its objects.

        A caller that refines an image's objects in several calls (the dataset runner's
        batches) makes the plan once from all of them and gives each call its part
        (``refine(..., crops=...)``), so that the budget is per image and every object is
        refined as one call with all of them would refine it.

        Args:
            boxes: per object, its tight inclusive XYXY box (:func:`~samrefiner.io.masks.mask_bbox`
                of its coarse mask; a box input's coarse mask is its filled box), or None.
            image_size: ``(H, W)`` of the image.
        """
        if not self.config.zooms:
            return []
        return plan_crops(boxes, self.model.frame(image_size), self.config)

    def _plan_crops(self, coarse: np.ndarray) -> list[Crop]:
        """Crop-zoom's crops for these objects (none unless ``zoom_below`` is set)."""
        return self.plan_crops([mask_bbox(m) for m in coarse], coarse.shape[1:])

    def _refine_crop(
        self,
        image: np.ndarray,
        coarse: np.ndarray,
        boxes: np.ndarray | None,
        crop: Crop,
        state: RefineResult,
        timer: _Timer,
    ) -> None:
        """Refine ``crop.members`` on the crop (its own embedding and frame), paste back."""
        rows, cols = crop.window
        with timer("encoder"):
            pixels = np.ascontiguousarray(image[rows, cols])
            embedding = self.model.encode(pixels, self.config.dtype)
        members = list(crop.members)
        shifted = None
        if boxes is not None:
            offset = np.array([crop.x0, crop.y0, crop.x0, crop.y0], dtype=np.float32)
            shifted = boxes[members] - offset
        part = self._iterate(coarse[members][:, rows, cols], embedding, timer, None, shifted)
        full = np.zeros((len(members), *coarse.shape[1:]), dtype=bool)
        full[:, rows, cols] = part.masks
        part.masks = full
        part.prompts = [shift_prompt(p, crop) for p in part.prompts]
        state.put(members, part)

    def _gate(self, coarse: np.ndarray, state: RefineResult, timer: _Timer) -> None:
        """Apply the quality gate to ``state`` in place, giving each kept mask its reason."""
        if not self.config.gates:
            return
        with timer("postprocess"):
            for i, status in enumerate(state.status):
                if status == STATUS_EMPTY:
                    continue
                reason = gate_reason(coarse[i], state.masks[i], state.scores[i], self.config)
                if reason is not None:
                    state.masks[i] = coarse[i]
                    state.status[i] = STATUS_KEPT_COARSE
                    state.gate_reasons[i] = reason

    def _iterate(
        self,
        coarse: np.ndarray,
        embedding: ImageEmbedding,
        timer: _Timer,
        first_prompts: Sequence[MaskPrompt | None] | None = None,
        boxes: np.ndarray | None = None,
    ) -> RefineResult:
        """Run the rounds on ``coarse`` (``N x H x W``, the embedding's image or crop).

        With ``boxes`` (``N x 4``, same frame) a box-only round comes first.
        """
        cfg = self.config
        frame = self.model.frame(embedding.original_size)
        with timer("excavation"):
            excavator = Excavator(frame, cfg, embedding.features)
        state = RefineResult.start(coarse)
        active = [i for i in range(len(coarse)) if coarse[i].any()]
        for i in set(range(len(coarse))) - set(active):
            state.status[i] = STATUS_EMPTY
        if boxes is not None and active:
            box_prompts = {i: box_prompt(boxes[i]) for i in active}
            active = self._decode_round(embedding, frame, box_prompts, state, timer, box_only=True)

        threads = cfg.thread_count()
        for round_index in range(cfg.iterations):
            if not active:
                break
            with timer("excavation"):
                if round_index == 0 and first_prompts is not None:
                    found = [first_prompts[i] for i in active]
                else:
                    found = excavator.many([state.masks[i] for i in active], threads)
                round_prompts = dict(zip(active, found, strict=True))
            active = self._decode_round(embedding, frame, round_prompts, state, timer)
        return state

    def _decode_round(
        self,
        embedding: ImageEmbedding,
        frame: Frame,
        round_prompts: dict[int, MaskPrompt | None],
        state: RefineResult,
        timer: _Timer,
        *,
        box_only: bool = False,
    ) -> list[int]:
        """Decode one round's prompts in batches, update ``state``; return masks to go on.

        ``box_only``: the prompts' boxes are the only prompt (a box input's first round).
        """
        cfg = self.config
        batch = cfg.batch_size(self.model.device.type)
        active = list(round_prompts)
        candidate = np.zeros(embedding.original_size, dtype=bool)
        still_active = []
        for start in range(0, len(active), batch):
            chunk = active[start : start + batch]
            with timer("decoder"):
                low_res, best_iou = self._decode_best(
                    embedding, [round_prompts[i] for i in chunk], box_only=box_only
                )
            with timer("postprocess"):
                for row, i in enumerate(chunk):
                    state.prompts[i] = round_prompts[i]
                    state.iterations[i] += 1
                    if not paste_mask(low_res[row], frame, candidate):
                        state.status[i] = STATUS_COLLAPSED
                        continue
                    # An unchanged mask gives unchanged prompts, hence unchanged
                    # output: the remaining rounds cannot change it, so skip them.
                    previous = state.masks[i]
                    fixed_point = np.array_equal(candidate, previous)
                    converged = (
                        cfg.early_stop_iou is not None
                        and mask_iou(candidate, previous) >= cfg.early_stop_iou
                    )
                    state.masks[i] = candidate
                    state.scores[i] = best_iou[row]
                    if converged and not fixed_point:
                        state.status[i] = STATUS_CONVERGED
                    elif not fixed_point:
                        still_active.append(i)
        return still_active

    def decode_prompts(
        self, embedding: ImageEmbedding, prompts: list[MaskPrompt], *, box_only: bool = False
    ) -> Decoded:
        """Decode a batch of prompts as the refiner does: all candidates of each.

        The prompt parts this refiner's config uses become SAM's inputs (points padded to
        the same number of slots, tight or elastic box, mask logits); ``box_only`` gives
        the model the prompts' boxes and nothing else (a box input's first round).

        Returns:
            ``B x C`` candidates (``C`` = 3) of the ``B`` prompts.
        """
        cfg = self.config
        points = labels = boxes = mask_logits = None
        if cfg.use_points and not box_only:
            # Every prompt gets the same number of point slots: SAM's "not a point"
            # token changes the output, so padding must not depend on the batch.
            slots = 2 if cfg.uses_negative_point else 1
            points = torch.zeros((len(prompts), slots, 2), dtype=torch.float32)
            labels = torch.full((len(prompts), slots), POINT_PADDING, dtype=torch.int64)
            for row, p in enumerate(prompts):
                k = len(p.points)
                points[row, :k] = torch.from_numpy(p.points)
                labels[row, :k] = torch.from_numpy(p.point_labels)
        if cfg.use_box or box_only:
            boxes = torch.from_numpy(np.stack([p.box for p in prompts]))
        if cfg.use_mask and not box_only:
            mask_logits = torch.from_numpy(np.stack([p.mask_logits for p in prompts]))[:, None]
        return self.model.decode(
            embedding,
            point_coords=points,
            point_labels=labels,
            boxes=boxes,
            mask_input=mask_logits,
            dtype=cfg.dtype,
        )

    def _decode_best(
        self, embedding: ImageEmbedding, prompts: list[MaskPrompt | None], *, box_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode a batch; return the best candidate's low-res logits and predicted IoU.

        The best candidate is chosen by ``config.selection`` (predicted IoU or stability).
        """
        batch = [p for p in prompts if p is not None]
        if len(batch) != len(prompts):
            raise RuntimeError("an active mask produced no prompt")
        decoded = self.decode_prompts(embedding, batch, box_only=box_only)
        iou = decoded.iou_predictions
        score = iou if self.config.selection == "iou" else stability_scores(decoded.low_res_logits)
        best = score.argmax(dim=1)
        rows = torch.arange(len(batch), device=best.device)
        logits = decoded.low_res_logits[rows, best].cpu().numpy()
        return logits, iou[rows, best].cpu().numpy()
