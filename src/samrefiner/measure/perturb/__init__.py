"""Synthetic coarse masks: degrade a ground-truth mask the ways real coarse masks are wrong.

Every family is a function ``(mask, strength, rng) -> mask`` on ``H x W`` bool masks,
``strength`` in [0, 1] (0 leaves the mask unchanged, 1 is the strongest degradation the
family models) and sizes relative to the object's scale ``sqrt(area)``. The families
(:data:`FAMILIES`): ``boundary_noise``, ``dilate``, ``erode``, ``polygon``, ``lowres``,
``mask_head``, ``missing_part``, ``spurious_blobs`` and ``holes``; each function's
docstring says what it models and how strength scales it.

:func:`synthesize` draws one or two families and, by default, tunes their strengths so
that the coarse-vs-GT IoU hits a target drawn uniformly from ``iou_range`` (0.5 to 0.9).
Everything is deterministic given the seed: :func:`object_rng` derives an independent
stream per ``(seed, key, object index)``, so one object's coarse mask does not depend on
which other objects were synthesized before it.
"""

from samrefiner.measure.perturb.families import (
    FAMILIES,
    Family,
    apply,
    boundary_noise,
    dilate,
    erode,
    holes,
    lowres,
    mask_head,
    missing_part,
    object_rng,
    polygon,
    spurious_blobs,
)
from samrefiner.measure.perturb.mix import (
    DEFAULT_WEIGHTS,
    IOU_TOLERANCE,
    TOP_UP_FAMILIES,
    CoarseSpec,
    synthesize,
    synthesize_stack,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "FAMILIES",
    "IOU_TOLERANCE",
    "TOP_UP_FAMILIES",
    "CoarseSpec",
    "Family",
    "apply",
    "boundary_noise",
    "dilate",
    "erode",
    "holes",
    "lowres",
    "mask_head",
    "missing_part",
    "object_rng",
    "polygon",
    "spurious_blobs",
    "synthesize",
    "synthesize_stack",
]
