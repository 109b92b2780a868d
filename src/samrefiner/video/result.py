"""The typed result of refining one sequence: per frame and object, the mask kept, which
source won and why, and the scores behind the decision."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

#: Where a frame's mask of an object came from.
SOURCE_REFINED = "refined"  # the per-frame image refinement (step 1)
SOURCE_PROPAGATED = "propagated"  # the video model's propagated mask (step 3)
SOURCE_KEPT_COARSE = "kept_coarse"  # the coarse mask, kept
SOURCE_REPROMPTED = "reprompted"  # the image model re-prompted with the winner's points
SOURCE_ABSENT = "absent"  # the object is not in the frame (empty mask)
SOURCES: tuple[str, ...] = (
    SOURCE_REFINED,
    SOURCE_PROPAGATED,
    SOURCE_KEPT_COARSE,
    SOURCE_REPROMPTED,
    SOURCE_ABSENT,
)

#: Why a source won (see docs/video.md, "The rules").
REASONS: tuple[str, ...] = (
    "keyframe",  # the frame seeded the video model with its refined mask
    "agree",  # propagated and refined masks agree: the refined mask is kept
    "refined_won",  # they disagree; the refined mask agrees better with coarse + neighbours
    "propagated_won",  # they disagree; the propagated mask agrees better
    "no_agreement",  # they disagree and neither agrees with the coarse mask: coarse kept
    "gate",  # the image refiner's quality gate kept the coarse mask
    "no_propagation",  # no propagated mask on this frame (--propagate none / forward)
    "no_coarse_mask",  # frame without a label map: the propagated mask
    "absent_in_coarse",  # labelled frame whose map lacks the object
    "propagated_empty",  # frame without a label map where the video model lost the object
    "not_reached",  # frame without a label map and no propagated mask
)


def pack(mask: np.ndarray) -> bytes:
    """An ``H x W`` bool mask as COCO compressed run-length counts (``pycocotools``):
    a few hundred bytes for an object, so a sequence's masks take little memory."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return bytes(rle["counts"])


def unpack(bits: bytes, size: tuple[int, int]) -> np.ndarray:
    """The ``H x W`` bool mask :func:`pack` gave ``bits`` for."""
    h, w = size
    return mask_utils.decode({"size": [h, w], "counts": bits}).astype(bool)


@dataclass
class ObjectFrame:
    """One object on one frame.

    Attributes:
        bits: the kept mask's compressed runs (:func:`pack`); read it with :meth:`mask`.
        size: ``(H, W)`` of the mask.
        source: one of :data:`SOURCES`.
        reason: one of :data:`REASONS`.
        score: the kept mask's predicted IoU where the image model gave one, else NaN.
        agreement: IoU between the propagated and the per-frame refined masks (NaN where
            either is missing).
    """

    bits: bytes
    size: tuple[int, int]
    source: str
    reason: str
    score: float = math.nan
    agreement: float = math.nan

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}, got {self.reason!r}")
        if not isinstance(self.bits, bytes):
            raise ValueError(
                f"bits must be the mask's compressed runs (bytes), got {type(self.bits)}"
            )
        self.size = (int(self.size[0]), int(self.size[1]))
        self.score = float(self.score)
        self.agreement = float(self.agreement)

    @classmethod
    def of(
        cls,
        mask: np.ndarray,
        source: str,
        reason: str,
        score: float = math.nan,
        agreement: float = math.nan,
    ) -> ObjectFrame:
        """An entry from an ``H x W`` bool ``mask``."""
        mask = np.asarray(mask, dtype=bool)
        return cls(
            pack(mask), (int(mask.shape[0]), int(mask.shape[1])), source, reason, score, agreement
        )

    def mask(self) -> np.ndarray:
        """The kept ``H x W`` bool mask."""
        return unpack(self.bits, self.size)


@dataclass
class SequenceResult:
    """The refined masks of one sequence.

    Attributes:
        size: ``(H, W)`` of the frames.
        frame_count: frames of the sequence.
        object_ids: the objects, in the order their masks are painted.
        frames: per frame (``frame_count`` entries), object id -> :class:`ObjectFrame`;
            every object has an entry on every frame (``absent`` where it is not there).
        keyframes: per object, the frames that seeded the video model.
        notices: one-line notes for the user (an image-only model, ...).
    """

    size: tuple[int, int]
    frame_count: int
    object_ids: list[int]
    frames: list[dict[int, ObjectFrame]] = field(default_factory=list)
    keyframes: dict[int, list[int]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.frames) != self.frame_count:
            raise ValueError(f"{len(self.frames)} frames of results for {self.frame_count} frames")
        ids = set(self.object_ids)
        for t, entries in enumerate(self.frames):
            if set(entries) != ids:
                raise ValueError(f"frame {t} has entries {sorted(entries)}, not {sorted(ids)}")
            for entry in entries.values():
                if tuple(entry.size) != tuple(self.size):
                    raise ValueError(f"frame {t}: a {entry.size} mask in a {self.size} sequence")

    def mask(self, frame: int, obj: int) -> np.ndarray:
        """The ``H x W`` bool mask of object ``obj`` on ``frame``."""
        return self.frames[frame][obj].mask()

    def sources(self) -> Counter[str]:
        """How many (frame, object) entries each source won, absent ones included."""
        return Counter(e.source for entries in self.frames for e in entries.values())

    def reasons(self) -> Counter[str]:
        """How many (frame, object) entries each reason decided."""
        return Counter(e.reason for entries in self.frames for e in entries.values())

    def label_map(self, frame: int, dtype: type = np.uint16) -> np.ndarray:
        """``H x W`` id map of ``frame``: each object's id where its mask is; where masks
        overlap the higher score wins (NaN lowest, then the earlier object)."""
        labels = np.zeros(self.size, dtype=dtype)
        best = np.full(self.size, -np.inf, dtype=np.float32)
        for obj in self.object_ids:
            entry = self.frames[frame][obj]
            if entry.source == SOURCE_ABSENT:
                continue
            score = -1.0 if math.isnan(entry.score) else entry.score
            claim = entry.mask() & (score > best)
            labels[claim] = obj
            best[claim] = score
        return labels
