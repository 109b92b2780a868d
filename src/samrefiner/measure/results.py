"""The bench result file, ``OUT/results.json``: one versioned schema for writer and readers.

``samrefiner bench`` writes it (:func:`samrefiner.measure.harness.run_bench` returns a
:class:`BenchResults`); ``samrefiner report`` and :mod:`samrefiner.measure.summary` read it
back through :meth:`BenchResults.from_json`, never by string keys of their own. The JSON
layout (``"kind": "bench"``, ``"version"``) is described field by field below; a reader
refuses a file of another kind, or of a newer version than it knows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from samrefiner.io.schema import SchemaError, check_header
from samrefiner.measure.metrics import ObjectScores

KIND = "bench"
#: Version of the file layout (bumped on incompatible changes).
FORMAT_VERSION = 1

_SCORE_FIELDS = tuple(f.name for f in dataclasses.fields(ObjectScores))


def _scores(data: dict[str, Any]) -> ObjectScores:
    return ObjectScores(**{k: data[k] for k in _SCORE_FIELDS})


@dataclass
class Quality:
    """Quality figures of one group of objects (:func:`samrefiner.measure.metrics.aggregate`)."""

    count: int
    mean_iou: float | None
    total_iou: float | None
    mean_boundary_iou: float | None
    total_boundary_iou: float | None
    mean_mba: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quality:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Cost:
    """Seconds per image by stage (``encoder``... or ``baseline``), total, masks per second."""

    stages_s_per_image: dict[str, float | None]
    total_s_per_image: float | None
    masks_per_s: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cost:
        stages = {
            k[: -len("_s_per_image")]: v
            for k, v in data.items()
            if k.endswith("_s_per_image") and k != "total_s_per_image"
        }
        return cls(stages, data["total_s_per_image"], data["masks_per_s"])

    def to_json(self) -> dict[str, Any]:
        return {
            **{f"{k}_s_per_image": v for k, v in self.stages_s_per_image.items()},
            "total_s_per_image": self.total_s_per_image,
            "masks_per_s": self.masks_per_s,
        }


@dataclass
class GateSummary:
    """How a gated method's decisions match ground truth, against its ungated twin.

    Attributes:
        against: the ungated method (same configuration and input, gate off).
        kept, worse, kept_worse, total, precision, recall: as in
            :class:`samrefiner.gate.GateScore`.
    """

    against: str
    kept: int
    worse: int
    kept_worse: int
    total: int
    precision: float | None
    recall: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateSummary:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MethodSummary:
    """One method's quality (by size group: ``all``, ``small``...) and cost; for a gated
    method with its ungated twin in the run, the gate's score (``gate``, else None)."""

    quality: dict[str, Quality]
    cost: Cost
    gate: GateSummary | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MethodSummary:
        gate = data.get("gate")
        return cls(
            {k: Quality.from_json(v) for k, v in data["quality"].items()},
            Cost.from_json(data["cost"]),
            None if gate is None else GateSummary.from_json(gate),
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "quality": {k: v.to_json() for k, v in self.quality.items()},
            "cost": self.cost.to_json(),
        }
        if self.gate is not None:
            out["gate"] = self.gate.to_json()
        return out


@dataclass
class MethodInfo:
    """A method of the run: a configuration (``config``) or a baseline (``config`` None).

    ``input`` is what the refiner got: ``masks`` (the coarse masks), or ``boxes`` /
    ``jittered_boxes`` made from them (:mod:`samrefiner.measure.configs`).
    """

    name: str
    description: str
    kind: str
    config: dict[str, Any] | None = None
    same_as: str | None = None
    input: str = "masks"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MethodInfo:
        return cls(
            data["name"],
            data["description"],
            data["kind"],
            data.get("config"),
            data.get("same_as"),
            data.get("input", "masks"),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class GroundTruthObject:
    """One ground-truth object of an image, and its coarse mask.

    ``gt`` and ``coarse`` are compressed RLE, None when masks were not kept.
    """

    id: Any
    gt_area: int
    coarse_area: int
    coarse_scores: ObjectScores
    gt: dict[str, Any] | None = None
    coarse: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroundTruthObject:
        return cls(
            data["id"],
            data["gt_area"],
            data["coarse_area"],
            _scores(data["coarse_scores"]),
            data.get("gt"),
            data.get("coarse"),
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "gt_area": self.gt_area,
            "coarse_area": self.coarse_area,
            "coarse_scores": self.coarse_scores.to_dict(),
        }
        if self.gt is not None:
            out["gt"] = self.gt
        if self.coarse is not None:
            out["coarse"] = self.coarse
        return out


@dataclass
class BenchImage:
    """One image of the run: its file, size and ground-truth objects."""

    key: str
    image: str
    height: int
    width: int
    objects: list[GroundTruthObject] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchImage:
        return cls(
            data["key"],
            data["image"],
            data["height"],
            data["width"],
            [GroundTruthObject.from_json(o) for o in data["objects"]],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "image": self.image,
            "height": self.height,
            "width": self.width,
            "objects": [o.to_json() for o in self.objects],
        }


@dataclass
class MethodObject:
    """One method's output for one object: refiner outcome, scores, mask (RLE or None).

    ``zoomed`` (refined on a crop) and ``gate_reason`` (why the quality gate kept the
    coarse mask, for status ``kept_coarse``) are written only when set.
    """

    item: str
    object: Any
    scores: ObjectScores
    score: float | None = None
    status: str | None = None
    iterations: int = 0
    prompts: dict[str, Any] | None = None
    mask: dict[str, Any] | None = None
    zoomed: bool = False
    gate_reason: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MethodObject:
        return cls(
            data["item"],
            data["object"],
            _scores(data),
            data.get("score"),
            data.get("status"),
            int(data.get("iterations") or 0),
            data.get("prompts"),
            data.get("mask"),
            bool(data.get("zoomed", False)),
            data.get("gate_reason"),
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "item": self.item,
            "object": self.object,
            "score": self.score,
            "status": self.status,
            "iterations": self.iterations,
            "prompts": self.prompts,
            **self.scores.to_dict(),
        }
        if self.zoomed:
            out["zoomed"] = True
        if self.gate_reason is not None:
            out["gate_reason"] = self.gate_reason
        if self.mask is not None:
            out["mask"] = self.mask
        return out


@dataclass
class BenchResults:
    """Everything a bench run measured (the whole ``results.json``).

    Attributes:
        created: ISO time the run ended.
        dataset, model, device: what ran (None where there was no model).
        random_weights: True when the model had random weights.
        coarse_source: the coarse-mask folder, or how they were synthesized.
        methods: the methods, in order.
        images: the images and their ground-truth objects.
        objects: per method, one record per ground-truth object (image order).
        summary: per method, quality and cost.
        counts: ``{"images": n, "objects": n}``.
        peak_rss_mb: peak resident memory of the run (None where unknown).
        wall_s: wall time of the run.
    """

    created: str
    coarse_source: str
    methods: list[MethodInfo]
    images: list[BenchImage]
    objects: dict[str, list[MethodObject]]
    summary: dict[str, MethodSummary]
    counts: dict[str, int]
    peak_rss_mb: float | None = None
    wall_s: float = 0.0
    dataset: str | None = None
    model: str | None = None
    device: str | None = None
    random_weights: bool = False

    def method(self, name: str) -> MethodInfo:
        """The method called ``name``."""
        for info in self.methods:
            if info.name == name:
                return info
        raise KeyError(name)

    @property
    def configs(self) -> list[str]:
        """Names of the refiner configurations (not baselines), in order."""
        return [m.name for m in self.methods if m.kind == "config"]

    @classmethod
    def from_json(cls, data: Any) -> BenchResults:
        """Parse ``results.json``; raises :class:`SchemaError` naming what is wrong."""
        check_header(data, KIND, FORMAT_VERSION)
        try:
            return cls(
                created=data["created"],
                coarse_source=data["coarse_source"],
                methods=[MethodInfo.from_json(m) for m in data["methods"]],
                images=[BenchImage.from_json(i) for i in data["images"]],
                objects={
                    k: [MethodObject.from_json(r) for r in v] for k, v in data["objects"].items()
                },
                summary={k: MethodSummary.from_json(v) for k, v in data["summary"].items()},
                counts=dict(data["counts"]),
                peak_rss_mb=data.get("peak_rss_mb"),
                wall_s=data.get("wall_s", 0.0),
                dataset=data.get("dataset"),
                model=data.get("model"),
                device=data.get("device"),
                random_weights=bool(data.get("random_weights", False)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"bench file does not follow its schema: {exc!r}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": FORMAT_VERSION,
            "created": self.created,
            "dataset": self.dataset,
            "model": self.model,
            "device": self.device,
            "random_weights": self.random_weights,
            "coarse_source": self.coarse_source,
            "methods": [m.to_json() for m in self.methods],
            "images": [i.to_json() for i in self.images],
            "objects": {k: [r.to_json() for r in v] for k, v in self.objects.items()},
            "summary": {k: v.to_json() for k, v in self.summary.items()},
            "counts": dict(self.counts),
            "peak_rss_mb": self.peak_rss_mb,
            "wall_s": self.wall_s,
        }
