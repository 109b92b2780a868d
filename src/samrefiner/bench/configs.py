"""The refiner configurations and baselines a benchmark compares.

Built-in configurations reproduce the reference's ablations; each is the base
:class:`RefineConfig` (the CLI's refinement options, the reference defaults unless
changed) with a few fields overridden. Baselines need no model: ``coarse`` scores the
coarse mask itself and ``grabcut`` refines it with OpenCV's mask-initialised GrabCut.
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
}

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
    """

    name: str
    description: str
    config: RefineConfig | None = None
    same_as: str | None = None

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
    seen: dict[RefineConfig, str] = {}
    for name in dict.fromkeys(configs):
        description, overrides = BUILTIN_CONFIGS[name]
        cfg = base.replace(**overrides)
        plan.methods.append(Method(name, description, cfg, seen.get(cfg)))
        seen.setdefault(cfg, name)
    return plan
