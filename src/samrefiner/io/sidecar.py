"""The refine sidecar, ``<image>.samrefiner.json``: written by ``samrefiner refine``, read
back by ``samrefiner report``. One versioned schema for both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from samrefiner.io.schema import SchemaError, check_header

SIDECAR_SUFFIX = ".samrefiner.json"
KIND = "refine"
#: Version of the sidecar layout (files written before it was recorded read as 1).
FORMAT_VERSION = 1


@dataclass
class SidecarMask:
    """One refined mask: its files and the refiner's outcome.

    Attributes:
        input, output: the coarse mask file and the refined mask file, as given / written.
        score: SAM's predicted IoU (None when SAM gave nothing that was kept).
        status: the refiner's status (``refined``, ``converged``, ``empty``, ``collapsed``).
        iterations: rounds run.
        prompts: the last round's prompts (points, labels, box, whether it grew) or None.
    """

    input: str
    output: str
    status: str
    score: float | None = None
    iterations: int = 0
    prompts: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SidecarMask:
        return cls(
            input=str(data["input"]),
            output=str(data["output"]),
            status=str(data["status"]),
            score=data.get("score"),
            iterations=int(data.get("iterations") or 0),
            prompts=data.get("prompts"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "status": self.status,
            "iterations": self.iterations,
            "prompts": self.prompts,
            "input": self.input,
            "output": self.output,
        }


@dataclass
class RefineSidecar:
    """What ``samrefiner refine`` did to the masks of one image.

    Attributes:
        image: the image file, as given.
        model: the model's name.
        config: the :class:`~samrefiner.config.RefineConfig` as a dict.
        masks: one entry per mask, in the order given.
        timings: seconds per stage.
        wall_seconds: wall time of the refinement.
    """

    image: str
    model: str
    config: dict[str, Any]
    masks: list[SidecarMask] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> RefineSidecar:
        """Parse a sidecar; raises :class:`SchemaError` naming what is wrong."""
        check_header(data, KIND, FORMAT_VERSION, legacy=True)
        try:
            return cls(
                image=str(data["image"]),
                model=str(data.get("model", "")),
                config=dict(data.get("config", {})),
                masks=[SidecarMask.from_json(m) for m in data["masks"]],
                timings=dict(data.get("timings", {})),
                wall_seconds=float(data.get("wall_seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"refine sidecar does not follow its schema: {exc!r}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": FORMAT_VERSION,
            "image": self.image,
            "model": self.model,
            "config": self.config,
            "masks": [m.to_json() for m in self.masks],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "wall_seconds": round(self.wall_seconds, 4),
        }
