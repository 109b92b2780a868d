"""The refiner configurations and baselines a benchmark compares.

Built-in configurations reproduce the reference's ablations; each is the base
:class:`RefineConfig` (the CLI's refinement options, the reference defaults unless
changed) with a few fields overridden. Beyond the reference: ``boxes`` and
``boxes-jitter`` refine from boxes instead of the coarse masks (each mask's tight box,
then the same box with every side moved by up to :data:`BOX_JITTER` of its length, seeded),
``gated`` adds the quality gate (:data:`GATE_THRESHOLDS`, for the thresholds the base leaves
off) and ``zoom`` crop-zoom (:data:`ZOOM_BELOW`, unless the base sets it). Baselines need
no model: ``coarse`` scores the coarse mask itself and ``grabcut`` refines it with
OpenCV's mask-initialised GrabCut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from samrefiner.config import RefineConfig

#: name -> (description, RefineConfig overrides).
BUILTIN_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "box": ("box prompt only", {"use_points": False, "use_mask": False}),
    "point": ("point prompts only", {"use_box": False, "use_mask": False}),
    "box+point": ("box and point prompts", {"use_mask": False}),
    "all": ("box, point and mask prompts (the reference)", {}),
    "iter1": ("all prompts, 1 iteration", {"iterations": 1}),
    "iter5": ("all prompts, 5 iterations", {"iterations": 5}),
    "elastic": ("all prompts, elastic box (margin 0.1)", {"margin": 0.1}),
    "no-elastic": ("all prompts, tight box (margin 0)", {"margin": 0.0}),
    "boxes": ("from the tight box of each coarse mask (box-only first round)", {}),
    "boxes-jitter": ("from each tight box with its sides jittered (seeded)", {}),
    "gated": ("all prompts, quality gate on", {}),
    "zoom": ("all prompts, crop-zoom for small objects", {}),
}

#: Input kinds of a configuration: the coarse masks, or boxes derived from them.
INPUT_MASKS, INPUT_BOXES, INPUT_JITTERED_BOXES = "masks", "boxes", "jittered_boxes"
#: Configurations that do not refine the coarse masks themselves.
CONFIG_INPUTS: dict[str, str] = {"boxes": INPUT_BOXES, "boxes-jitter": INPUT_JITTERED_BOXES}
#: ``boxes-jitter`` moves each box side by up to this share of the box's side length.
BOX_JITTER = 0.1
#: Gate thresholds of ``gated`` (those the base configuration leaves None).
GATE_THRESHOLDS: dict[str, float] = {
    "gate_min_score": 0.5,
    "gate_min_coarse_iou": 0.5,
    "gate_max_area_ratio": 2.0,
}
#: ``zoom_below`` of ``zoom`` when the base configuration leaves it None (SAM's 1024 frame).
ZOOM_BELOW = 128

#: Baselines that need no model.
BASELINES: dict[str, str] = {
    "coarse": "the coarse mask itself",
    "grabcut": "OpenCV GrabCut initialised with the coarse mask",
}

DEFAULT_CONFIGS: tuple[str, ...] = tuple(BUILTIN_CONFIGS)
DEFAULT_BASELINES: tuple[str, ...] = tuple(BASELINES)


@dataclass(frozen=True)
class Method:
    """One row of the benchmark.

    Attributes:
        name: Row label.
        description: One line for the tables.
        config: The refiner configuration, or None for a baseline.
        same_as: Name of an earlier method with the same configuration (computed once,
            reported under both names), else None.
        input: What the refiner gets: :data:`INPUT_MASKS` (the coarse masks),
            :data:`INPUT_BOXES` or :data:`INPUT_JITTERED_BOXES`.
    """

    name: str
    description: str
    config: RefineConfig | None = None
    same_as: str | None = None
    input: str = INPUT_MASKS

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a method needs a name")
        if self.same_as is not None and self.config is None:
            raise ValueError(f"{self.name}: only configurations can be the same as another")

    @property
    def is_baseline(self) -> bool:
        """True for ``coarse`` / ``grabcut``."""
        return self.config is None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "description": self.description,
            "kind": "baseline" if self.config is None else "config",
            "config": None if self.config is None else self.config.to_dict(),
            "same_as": self.same_as,
            "input": self.input,
        }


@dataclass
class MethodPlan:
    """The methods of a run, with the distinct configurations to compute."""

    methods: list[Method] = field(default_factory=list)

    def distinct_configs(self) -> list[Method]:
        """Config methods that are computed (those with ``same_as`` reuse another's)."""
        return [m for m in self.methods if m.config is not None and m.same_as is None]


def plan_methods(
    base: RefineConfig, configs: Sequence[str], baselines: Sequence[str]
) -> MethodPlan:
    """Resolve names to methods; baselines first, then configurations in the given order.

    Raises:
        ValueError: an unknown name (listing the known ones), or nothing to run.
    """
    unknown = [c for c in configs if c not in BUILTIN_CONFIGS]
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; known: {', '.join(BUILTIN_CONFIGS)}")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; known: {', '.join(BASELINES)}")
    if not configs and not baselines:
        raise ValueError("nothing to benchmark: give at least one configuration or baseline")
    plan = MethodPlan([Method(b, BASELINES[b]) for b in dict.fromkeys(baselines)])
    seen: dict[tuple[RefineConfig, str], str] = {}
    for name in dict.fromkeys(configs):
        description, overrides = BUILTIN_CONFIGS[name]
        cfg = base.replace(**overrides, **_feature_overrides(base, name))
        kind = CONFIG_INPUTS.get(name, INPUT_MASKS)
        plan.methods.append(Method(name, description, cfg, seen.get((cfg, kind)), kind))
        seen.setdefault((cfg, kind), name)
    return plan


def _feature_overrides(base: RefineConfig, name: str) -> dict[str, Any]:
    """The gate / zoom settings ``gated`` / ``zoom`` add to ``base`` (where it has none)."""
    if name == "gated":
        return {k: v for k, v in GATE_THRESHOLDS.items() if getattr(base, k) is None}
    if name == "zoom" and base.zoom_below is None:
        return {"zoom_below": ZOOM_BELOW}
    return {}


def ungated(config: RefineConfig) -> RefineConfig:
    """``config`` with the quality gate off (the counterpart a gated row is scored with)."""
    return config.replace(**dict.fromkeys(GATE_THRESHOLDS))
