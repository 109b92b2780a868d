"""Refining the coarse masks of a whole sequence (docs/video.md):

1. every object's coarse mask on every labelled frame is refined by the image refiner
   (SAMRefiner's prompts, the configured model): a refined mask and its predicted IoU;
2. keyframes are picked per object (:func:`pick_keyframes`) and the video model's memory
   is seeded with their **refined** masks;
3. the video model propagates them forward (and backward) through the sequence;
4. per frame and object, :func:`decide` chooses between the propagated, the refined and
   the coarse mask by agreement, and a frame where they disagree is re-prompted with
   prompts excavated from the winning mask;
5. objects absent from a labelled frame's map stay absent there; frames without a label
   map take the propagated mask (absent where the model lost the object).

:class:`VideoRefiner` runs the steps on one sequence and returns a
:class:`~samrefiner.video.result.SequenceResult`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from samrefiner.io.masks import mask_iou
from samrefiner.types import STATUS_COLLAPSED, STATUS_EMPTY, STATUS_KEPT_COARSE
from samrefiner.video.backends import VideoBackend
from samrefiner.video.frames import FrameSource
from samrefiner.video.result import (
    SOURCE_ABSENT,
    SOURCE_KEPT_COARSE,
    SOURCE_PROPAGATED,
    SOURCE_REFINED,
    SOURCE_REPROMPTED,
    ObjectFrame,
    SequenceResult,
    pack,
    unpack,
)

log = logging.getLogger("samrefiner.video")

#: ``propagate`` settings: both directions, forward only, or none (per-frame refinement).
PROPAGATE = ("both", "forward", "none")
#: Keyframe policies besides "every N-th labelled frame" (an integer).
KEYFRAME_POLICIES = ("auto", "all")


@dataclass(frozen=True)
class VideoSettings:
    """How a sequence is refined (see docs/video.md).

    Attributes:
        keyframes: ``"auto"``: per object, the most confident refined frame of each
            stretch of ``keyframe_spacing`` frames; ``"all"``: every labelled frame;
            an integer ``N``: every N-th labelled frame of the object (its first included).
        keyframe_spacing: frames per keyframe with ``"auto"`` (>= 1).
        propagate: ``"both"``, ``"forward"`` or ``"none"`` (step 1 only: the per-frame
            refined output).
        agree_iou: IoU at or above which the propagated and refined masks agree.
        coarse_iou: IoU with the coarse mask the winner of a disagreement must reach;
            below it the coarse mask is kept.
        reprompt: re-prompt a frame where the masks disagree with prompts excavated
            from the winning mask (one round of the image refiner).
        offload_state: keep the video model's tracking state on the CPU.
    """

    keyframes: str | int = "auto"
    keyframe_spacing: int = 30
    propagate: str = "both"
    agree_iou: float = 0.8
    coarse_iou: float = 0.5
    reprompt: bool = True
    offload_state: bool = True

    def __post_init__(self) -> None:
        k = self.keyframes
        if isinstance(k, bool) or not (
            (isinstance(k, int) and k >= 1) or (isinstance(k, str) and k in KEYFRAME_POLICIES)
        ):
            raise ValueError(f"keyframes must be 'auto', 'all' or an integer >= 1, got {k!r}")
        if not isinstance(self.keyframe_spacing, int) or self.keyframe_spacing < 1:
            raise ValueError(
                f"keyframe_spacing must be an integer >= 1, got {self.keyframe_spacing!r}"
            )
        if self.propagate not in PROPAGATE:
            raise ValueError(f"propagate must be one of {PROPAGATE}, got {self.propagate!r}")
        for name in ("agree_iou", "coarse_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (a run's fingerprint)."""
        return dataclasses.asdict(self)


@dataclass
class Refined:
    """Step 1's outcome for one object on one labelled frame.

    Attributes:
        bits: the refined mask, packed (:func:`~samrefiner.video.result.pack`).
        score: its predicted IoU (NaN where the model gave none).
        status: the image refiner's status (:data:`samrefiner.types.STATUSES`).
    """

    bits: bytes
    score: float
    status: str

    @property
    def usable(self) -> bool:
        """A mask the refiner produced (not empty, not collapsed, not gated)."""
        return self.status not in (STATUS_EMPTY, STATUS_COLLAPSED, STATUS_KEPT_COARSE)


@dataclass
class Decision:
    """What :func:`decide` chose for one object on one frame.

    Attributes:
        mask: the ``H x W`` bool mask kept.
        source: one of :data:`~samrefiner.video.result.SOURCES`.
        reason: one of :data:`~samrefiner.video.result.REASONS`.
        score: the kept mask's predicted IoU (NaN for a propagated or coarse mask).
        agreement: IoU of the propagated and refined masks (NaN where one is missing).
    """

    mask: np.ndarray
    source: str
    reason: str
    score: float = math.nan
    agreement: float = math.nan

    @property
    def disputed(self) -> bool:
        """The masks disagreed and one of them won (the frame to re-prompt)."""
        return self.reason in ("refined_won", "propagated_won")

    def entry(self) -> ObjectFrame:
        return ObjectFrame.of(self.mask, self.source, self.reason, self.score, self.agreement)


def pick_keyframes(
    candidates: Mapping[int, float], policy: str | int, spacing: int = 30
) -> list[int]:
    """The keyframes of one object.

    Args:
        candidates: frame -> predicted IoU of the object's refined mask there (its
            usable refined frames).
        policy: ``"auto"``, ``"all"`` or ``N`` (see :class:`VideoSettings`).
        spacing: frames per keyframe with ``"auto"``: the object's span (first to last
            candidate) is cut into ``ceil(span / spacing)`` equal stretches and the
            most confident frame of each (the earliest on a tie) is kept.

    Returns:
        Sorted frame indices (empty when there is no candidate).
    """
    frames = sorted(candidates)
    if not frames:
        return []
    if policy == "all":
        return frames
    if isinstance(policy, int):
        return frames[::policy]
    span = frames[-1] - frames[0] + 1
    parts = max(1, math.ceil(span / spacing))
    keys = []
    for k in range(parts):
        lo = frames[0] + span * k / parts
        hi = frames[0] + span * (k + 1) / parts
        stretch = [t for t in frames if lo <= t < hi]
        if stretch:
            keys.append(max(stretch, key=lambda t: (_rank(candidates[t]), -t)))
    return sorted(keys)


def _rank(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def decide(
    coarse: np.ndarray | None,
    refined: Refined | None,
    propagated: np.ndarray | None,
    neighbours: list[np.ndarray],
    settings: VideoSettings,
    *,
    keyframe: bool = False,
) -> Decision:
    """Step 4's rules for one object on one frame.

    Args:
        coarse: the ``H x W`` coarse mask; None on a frame without a label map (an
            empty mask: the map lacks the object).
        refined: step 1's result there (None where the frame has no label map or the
            object is absent from it).
        propagated: the video model's mask (None where it did not run on this frame).
        neighbours: the refined masks of the object on the adjacent frames (the
            temporal evidence of a disagreement).
        settings: thresholds.
        keyframe: the frame seeded the video model.
    """
    if coarse is None:
        if propagated is None:
            raise ValueError("a frame without a label map needs a propagated mask to decide")
        if propagated.any():
            return Decision(propagated, SOURCE_PROPAGATED, "no_coarse_mask")
        return Decision(propagated, SOURCE_ABSENT, "propagated_empty")
    if not coarse.any() or refined is None:
        return Decision(np.zeros_like(coarse), SOURCE_ABSENT, "absent_in_coarse")
    mask = unpack(refined.bits, coarse.shape)
    if refined.status == STATUS_KEPT_COARSE:
        return Decision(coarse, SOURCE_KEPT_COARSE, "gate", refined.score)
    if keyframe:
        return Decision(mask, SOURCE_REFINED, "keyframe", refined.score)
    if propagated is None:
        return Decision(mask, SOURCE_REFINED, "no_propagation", refined.score)
    agreement = mask_iou(mask, propagated)
    if agreement >= settings.agree_iou:
        return Decision(mask, SOURCE_REFINED, "agree", refined.score, agreement)
    with_coarse = {"refined": mask_iou(mask, coarse), "propagated": mask_iou(propagated, coarse)}
    if max(with_coarse.values()) < settings.coarse_iou:
        return Decision(coarse, SOURCE_KEPT_COARSE, "no_agreement", math.nan, agreement)
    support = {
        name: (with_coarse[name] + sum(mask_iou(m, n) for n in neighbours)) / (1 + len(neighbours))
        for name, m in (("refined", mask), ("propagated", propagated))
    }
    if support["refined"] >= support["propagated"]:
        return Decision(mask, SOURCE_REFINED, "refined_won", refined.score, agreement)
    return Decision(propagated, SOURCE_PROPAGATED, "propagated_won", math.nan, agreement)


@dataclass
class _Scene:
    """What the decisions of a sequence's frames read: its objects, their keyframes,
    the packed coarse masks (frame -> object -> bits, present objects only) and step
    1's results (frame -> object -> :class:`Refined`)."""

    object_ids: list[int]
    keyframes: dict[int, list[int]]
    coarse: dict[int, dict[int, bytes]]
    refined: dict[int, dict[int, Refined]]


class VideoRefiner:
    """Refines the coarse masks of whole sequences (see the module docstring).

    Args:
        refiner: the image refiner of step 1 (a :class:`samrefiner.Refiner`, or anything
            with ``refine(image, masks) -> RefineResult``; ``with_config`` is used for
            the one-round re-prompting when it has one).
        video: the video model, or None (an image-only model: step 1 only, with a notice).
        settings: the method's settings.
    """

    def __init__(
        self,
        refiner: Any,
        video: VideoBackend | None,
        settings: VideoSettings | None = None,
    ) -> None:
        self.refiner = refiner
        self.video = video
        self.settings = settings or VideoSettings()
        with_config = getattr(refiner, "with_config", None)
        config = getattr(refiner, "config", None)
        self.reprompter = (
            with_config(dataclasses.replace(config, iterations=1))
            if with_config is not None and config is not None
            else refiner
        )

    @property
    def model(self) -> Any:
        """The image refiner's model (its device tells the runner where it runs)."""
        return getattr(self.refiner, "model", None)

    def notice(self) -> str | None:
        """The one-line notice of an image-only model, else None."""
        if self.video is None and self.settings.propagate != "none":
            name = getattr(self.model, "name", "this model")
            return (
                f"{name} is an image-only model: frames are refined one by one; temporal "
                "propagation needs a video model (SAM 2.1 sam2.1_hiera_*, or a transformers "
                "SAM 2 / SAM 3 tracker / EdgeTAM model)"
            )
        return None

    def refine_sequence(
        self, frames: FrameSource, labels: Mapping[int, Mapping[int, np.ndarray]]
    ) -> SequenceResult:
        """Refine one sequence.

        Args:
            frames: the sequence's frames.
            labels: labelled frame index -> object id -> ``H x W`` bool coarse mask (a
                labelled frame lists the objects its map holds; an object it lacks is
                absent there).

        Returns:
            Every object's mask on every frame, with its source and reason.
        """
        size = frames.size
        if not labels:
            raise ValueError(f"{frames.where}: no labelled frame")
        outside = sorted(t for t in labels if not 0 <= t < len(frames))
        if outside:
            raise ValueError(
                f"{frames.where}: label maps for frames {outside} of a {len(frames)}-frame sequence"
            )
        object_ids, coarse, refined = self._refine_frames(frames, labels)
        keyframes: dict[int, list[int]] = {}
        seeds: dict[int, dict[int, np.ndarray]] = {}
        for obj in object_ids:
            candidates = {t: r[obj].score for t, r in refined.items() if obj in r and r[obj].usable}
            keys = pick_keyframes(
                candidates, self.settings.keyframes, self.settings.keyframe_spacing
            )
            keyframes[obj] = keys
            if keys:
                seeds[obj] = {t: unpack(refined[t][obj].bits, size) for t in keys}
        decided: list[dict[int, ObjectFrame] | None] = [None] * len(frames)
        scene = _Scene(object_ids, keyframes, coarse, refined)
        if self.video is not None and self.settings.propagate != "none" and seeds:
            for t, masks in self.video.track(frames, seeds, self.settings.propagate):
                decided[t] = self._decide_frame(frames, t, scene, masks)
                del masks
        for t in range(len(frames)):
            if decided[t] is None:
                decided[t] = self._decide_frame(frames, t, scene, None)
        notice = self.notice()
        return SequenceResult(
            size,
            len(frames),
            object_ids,
            [d for d in decided if d is not None],
            keyframes,
            [notice] if notice else [],
        )

    def _refine_frames(
        self, frames: FrameSource, labels: Mapping[int, Mapping[int, np.ndarray]]
    ) -> tuple[list[int], dict[int, dict[int, bytes]], dict[int, dict[int, Refined]]]:
        """Step 1, reading each label map once: each labelled frame's present objects
        refined in one call. Returns the sorted object ids, the packed coarse masks and
        the refined ones (frame -> object -> ...)."""
        ids: set[int] = set()
        coarse: dict[int, dict[int, bytes]] = {}
        refined: dict[int, dict[int, Refined]] = {}
        for t in sorted(labels):
            masks = labels[t]
            ids.update(masks)
            present = [o for o in sorted(masks) if np.any(masks[o])]
            coarse[t] = {o: pack(masks[o]) for o in present}
            refined[t] = {}
            if not present:
                continue
            image = frames.read(t)
            out = self.refiner.refine(image, np.stack([masks[o] for o in present]))
            for k, obj in enumerate(present):
                refined[t][obj] = Refined(pack(out.masks[k]), float(out.scores[k]), out.status[k])
            del masks, out
        return sorted(ids), coarse, refined

    def _decide_frame(
        self,
        frames: FrameSource,
        t: int,
        scene: _Scene,
        propagated: dict[int, np.ndarray] | None,
    ) -> dict[int, ObjectFrame]:
        """Steps 4 and 5 on frame ``t``: every object's decision (re-prompting the
        disputed ones with the frame's image)."""
        size = frames.size
        empty = np.zeros(size, dtype=bool)
        out: dict[int, ObjectFrame] = {}
        disputed: list[tuple[int, Decision]] = []
        coarse, refined = scene.coarse, scene.refined
        for obj in scene.object_ids:
            p = None if propagated is None else propagated.get(obj)
            if t not in coarse:
                if p is None:
                    out[obj] = ObjectFrame.of(empty, SOURCE_ABSENT, "not_reached")
                    continue
                decision = decide(None, None, p, [], self.settings)
            else:
                c = coarse[t].get(obj)
                c_mask = empty if c is None else unpack(c, size)
                neighbours = [
                    unpack(refined[n][obj].bits, size)
                    for n in (t - 1, t + 1)
                    if n in refined and obj in refined[n] and refined[n][obj].usable
                ]
                decision = decide(
                    c_mask,
                    refined.get(t, {}).get(obj),
                    p,
                    neighbours,
                    self.settings,
                    keyframe=t in scene.keyframes.get(obj, ()),
                )
            if decision.disputed and self.settings.reprompt:
                disputed.append((obj, decision))
            out[obj] = decision.entry()
        if disputed:
            image = frames.read(t)
            again = self.reprompter.refine(image, np.stack([d.mask for _, d in disputed]))
            for k, (obj, decision) in enumerate(disputed):
                mask = np.asarray(again.masks[k], dtype=bool)
                if again.status[k] in (STATUS_EMPTY, STATUS_COLLAPSED, STATUS_KEPT_COARSE):
                    continue
                if mask_iou(mask, decision.mask) >= self.settings.agree_iou:
                    out[obj] = ObjectFrame.of(
                        mask,
                        SOURCE_REPROMPTED,
                        decision.reason,
                        float(again.scores[k]),
                        decision.agreement,
                    )
        return out
