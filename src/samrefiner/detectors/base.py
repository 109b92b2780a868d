"""The detector interface: class names in, boxes, scores and labels out.

A :class:`Detector` turns an image and a list of class names into :class:`Candidates`
(every query's box and its score for each class, optionally its instance mask);
:meth:`Detector.detect` keeps the confident ones as :class:`Detections` with the rules of
:class:`DetectSettings` (score threshold, text threshold where the detector has one,
class-wise non-maximum suppression, a cap on their number). A backend implements
:meth:`Detector.candidates` only, so every detector filters the same way.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from samrefiner.io.masks import as_rgb_image


def check_classes(classes: Sequence[str]) -> list[str]:
    """``classes`` as a list of distinct, non-empty, stripped names (ValueError otherwise)."""
    names = [str(c).strip() for c in classes]
    if not names:
        raise ValueError("no class names given")
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise ValueError(f"class name #{empty[0]} is empty")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"class names given twice: {', '.join(twice)}")
    return names


@dataclass(frozen=True)
class DetectSettings:
    """How detections are kept.

    Attributes:
        box_threshold: a query is kept when its best class score reaches it (0..1).
        text_threshold: detectors that score each text token (Grounding DINO): a class
            counts for a query only when its best token's score reaches it (0..1); others
            ignore it.
        nms_iou: class-wise non-maximum suppression: of two boxes of one class with a
            box IoU above it, the lower-scored is dropped (1 keeps every box).
        max_detections: at most this many detections per image, the highest scores first
            (None: no limit).
    """

    box_threshold: float = 0.3
    text_threshold: float = 0.25
    nms_iou: float = 0.5
    max_detections: int | None = 100

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold", "nms_iou"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.max_detections is not None and (
            not isinstance(self.max_detections, int) or self.max_detections < 1
        ):
            raise ValueError(
                f"max_detections must be a positive integer, got {self.max_detections!r}"
            )


@dataclass
class Candidates:
    """A detector's raw output for one image, before :meth:`Detector.detect` filters it.

    Attributes:
        boxes: ``Q x 4`` float32 XYXY boxes in image pixels.
        scores: ``Q x C`` float32 scores in [0, 1] of each query for each class (0 where
            a class does not count for the query, e.g. below the text threshold).
        masks: ``Q x H x W`` bool instance masks, or None (only SAM 3 gives them).
    """

    boxes: np.ndarray
    scores: np.ndarray
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.scores.ndim != 2 or len(self.scores) != len(self.boxes):
            raise ValueError(
                f"scores must be Q x C for {len(self.boxes)} boxes, got shape {self.scores.shape}"
            )
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.ndim != 3 or len(self.masks) != len(self.boxes):
                raise ValueError(
                    f"masks must be Q x H x W for {len(self.boxes)} boxes, got shape "
                    f"{self.masks.shape}"
                )


@dataclass
class Detections:
    """The objects a detector found in one image.

    Attributes:
        boxes: ``N x 4`` float32 XYXY boxes in image pixels, highest score first.
        scores: ``N`` float32 scores in [0, 1].
        labels: ``N`` int64 indices into :attr:`classes`.
        classes: the class names the image was searched for.
        masks: ``N x H x W`` bool instance masks (SAM 3), or None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = len(self.boxes)
        if len(self.scores) != n or len(self.labels) != n:
            raise ValueError(
                f"{n} boxes but {len(self.scores)} scores and {len(self.labels)} labels"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels must index the {len(self.classes)} classes")
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.ndim != 3 or len(self.masks) != n:
                raise ValueError(f"masks must be N x H x W for {n} boxes")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def names(self) -> list[str]:
        """``N`` class names of the detections."""
        return [self.classes[int(k)] for k in self.labels]


def select(candidates: Candidates, classes: list[str], settings: DetectSettings) -> Detections:
    """Keep ``candidates`` by ``settings``: each query's best class and its score, those
    reaching ``box_threshold``, class-wise NMS at ``nms_iou``, at most ``max_detections``
    (highest scores first; ties keep the query order)."""
    if candidates.scores.shape[1] != len(classes):
        raise ValueError(
            f"the detector scored {candidates.scores.shape[1]} classes for {len(classes)} names"
        )
    if len(candidates.boxes) == 0:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0), list(classes))
    labels = candidates.scores.argmax(axis=1)
    scores = candidates.scores[np.arange(len(labels)), labels]
    keep = np.flatnonzero((scores >= settings.box_threshold) & (scores > 0))
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if settings.nms_iou < 1 and len(keep):
        from torchvision.ops import batched_nms

        boxes = torch.from_numpy(candidates.boxes[keep]).double()
        kept = batched_nms(
            boxes,
            torch.from_numpy(scores[keep]).double(),
            torch.from_numpy(labels[keep]),
            settings.nms_iou,
        ).numpy()
        keep = keep[np.sort(kept)]  # batched_nms returns by score: keep the stable order
    if settings.max_detections is not None:
        keep = keep[: settings.max_detections]
    masks = None if candidates.masks is None else candidates.masks[keep]
    return Detections(candidates.boxes[keep], scores[keep], labels[keep], list(classes), masks)


class Detector(abc.ABC):
    """An open-vocabulary detector.

    Subclasses implement :meth:`candidates`; :meth:`detect` filters them. Attributes:
    ``name`` (for logs and records), ``text_threshold`` (True when the detector scores
    text tokens and honours :attr:`DetectSettings.text_threshold`), ``gives_masks`` (True
    when its detections carry instance masks).
    """

    name: str = "detector"
    text_threshold: bool = False
    gives_masks: bool = False

    @abc.abstractmethod
    def candidates(
        self, image: np.ndarray, classes: list[str], settings: DetectSettings
    ) -> Candidates:
        """Every query of ``image`` (``H x W x 3`` uint8 RGB) scored for ``classes``."""

    def detect(
        self,
        image: np.ndarray,
        classes: Sequence[str],
        settings: DetectSettings | None = None,
    ) -> Detections:
        """The objects of ``classes`` in ``image`` (``H x W x 3`` uint8 RGB), filtered by
        ``settings`` (default :class:`DetectSettings`)."""
        image = as_rgb_image(image)
        names = check_classes(classes)
        settings = settings or DetectSettings()
        with torch.inference_mode():
            found = self.candidates(image, names, settings)
        h, w = image.shape[:2]
        if found.masks is not None and found.masks.shape[1:] != (h, w):
            raise ValueError(f"{self.name}: masks are not {h} x {w}")
        found.boxes[:, [0, 2]] = found.boxes[:, [0, 2]].clip(0, w - 1)
        found.boxes[:, [1, 3]] = found.boxes[:, [1, 3]].clip(0, h - 1)
        return select(found, names, settings)
