"""One refine entry for a mix of objects: some given by their coarse mask, some by a box.

:func:`refine_objects` (also :meth:`samrefiner.Refiner.refine` with ``from_box=``) is
what the ``refine`` command, the dataset runner, the integrations and the bench use to
refine an image's masks and boxes together and get the results back in input order.
Torch-free: it only calls the refiner it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.types import MaskPrompt, RefineResult
from samrefiner.zoom import Crop

if TYPE_CHECKING:  # the refiner imports torch; this module does not
    from samrefiner.models.base import ImageEmbedding


def _crops_of(crops: Sequence[Crop], rows: list[int]) -> list[Crop]:
    """``crops`` (members index all objects) for the objects ``rows`` (increasing): each
    crop's members among them, renumbered as positions in ``rows``; crops left with no
    member are dropped."""
    position = {i: k for k, i in enumerate(rows)}
    out = []
    for crop in crops:
        members = tuple(position[i] for i in crop.members if i in position)
        if members:
            out.append(dataclasses.replace(crop, members=members))
    return out


def refine_objects(
    refiner: Any,
    image: np.ndarray,
    masks: np.ndarray | MaskCrops | None,
    boxes: np.ndarray | None,
    from_box: Sequence[bool] | np.ndarray,
    *,
    embedding: ImageEmbedding | None = None,
    first_prompts: Sequence[MaskPrompt | None] | None = None,
    crops: Sequence[Crop] | None = None,
) -> RefineResult:
    """Refine one image's objects, each given by its coarse mask or by its box, in order.

    The objects given by masks go to one ``refiner.refine(image, masks)`` call and those
    given by boxes to one ``refiner.refine(image, boxes=...)`` call, masks first (a kind
    with no object makes no call): each object ends exactly as refining its kind alone
    would end it. When both calls refine objects on the whole image, the image is
    encoded once for both (``refiner.encode``). Any refiner with ``refine`` works
    (:class:`Refiner`, or the dataset runner's :class:`~samrefiner.runner.RefinerLike`);
    keywords are passed only when given.

    Args:
        refiner: the refiner.
        image: ``H x W x 3`` uint8 RGB.
        masks: ``N x H x W`` bool coarse masks, or their
            :class:`~samrefiner.crops.MaskCrops` (rows of box objects are unused; None
            when every object is a box).
        boxes: ``N x 4`` XYXY pixel boxes (rows of mask objects are unused, e.g. NaN;
            None when every object is a mask).
        from_box: ``N`` bool, True for the objects refined from their box.
        embedding: a ``refiner.encode`` result for ``image``, to skip the encoder.
        first_prompts: ``N`` first-round prompts of the mask objects
            (:meth:`Refiner.first_round_prompts`; entries of box objects are unused).
        crops: crop-zoom's crops for these ``N`` objects (members index them; empty: none);
            each call gets the crops' members of its kind. None: each call plans its own,
            as refining each kind alone would.

    Returns:
        One :class:`RefineResult` with an entry per object, in input order (timings and
        crops summed over the calls).
    """
    flags = np.asarray(from_box, dtype=bool).reshape(-1)
    n = len(flags)
    for name, given in (("masks", masks), ("boxes", boxes), ("first_prompts", first_prompts)):
        if given is not None and len(given) != n:
            raise ValueError(f"{name} has {len(given)} entries for {n} objects (from_box)")
    by_mask = np.flatnonzero(~flags).tolist()
    by_box = np.flatnonzero(flags).tolist()
    if by_mask and masks is None:
        raise ValueError("objects not flagged from_box need masks")
    if by_box and boxes is None:
        raise ValueError("objects flagged from_box need boxes")
    if n == 0:
        height, width = np.asarray(image).shape[:2]
        return RefineResult(
            masks=np.zeros((0, height, width), dtype=bool),
            scores=np.zeros(0, dtype=np.float32),
            prompts=[],
            status=[],
        )
    covered = {i for crop in crops for i in crop.members} if crops is not None else set()
    on_whole_image = sum(1 for rows in (by_mask, by_box) if set(rows) - covered)
    if embedding is None and on_whole_image > 1 and hasattr(refiner, "encode"):
        embedding = refiner.encode(image)
    parts: list[tuple[list[int], RefineResult]] = []
    for rows, boxed in ((by_mask, False), (by_box, True)):
        if not rows:
            continue
        kwargs: dict[str, Any] = {}
        if embedding is not None:
            kwargs["embedding"] = embedding
        if crops is not None:
            kwargs["crops"] = _crops_of(crops, rows)
        if boxed:
            assert boxes is not None
            box_rows = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            result = refiner.refine(image, boxes=box_rows[rows], **kwargs)
        else:
            if first_prompts is not None:
                kwargs["first_prompts"] = [first_prompts[i] for i in rows]
            result = refiner.refine(image, _mask_rows(masks, rows, n), **kwargs)
        parts.append((rows, result))
    if len(parts) == 1:
        return parts[0][1]
    return RefineResult.scatter(n, parts)


def _mask_rows(masks: np.ndarray | MaskCrops | None, rows: list[int], n: int) -> np.ndarray:
    """The ``len(rows) x H x W`` stack of ``masks``' rows (``masks`` itself for all ``n``)."""
    assert masks is not None
    if isinstance(masks, MaskCrops):
        return masks.stack(rows)
    if len(rows) == n:
        return masks
    return np.asarray(masks)[rows]
