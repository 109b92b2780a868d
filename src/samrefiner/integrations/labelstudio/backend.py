"""The Label Studio ML backend's work, without HTTP: refine the regions a task holds.

:class:`LabelStudioBackend` takes the body of Label Studio's ``/predict`` request (its
tasks, each with its ``annotations`` and ``predictions``, and the project's labelling
config) and returns one prediction per task, in order: the regions of the task's latest
annotation or prediction, each refined with :meth:`samrefiner.Refiner.refine` (a
rectangle from its box) and written back as brush RLE or polygons, keeping the region's
id, labels, ``from_name`` and ``to_name``, scored by its predicted IoU. A task that
cannot be refined gets an ``error`` instead of a ``result`` (Label Studio logs it and
stores no prediction); the other tasks are not affected.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from samrefiner._version import __version__
from samrefiner.integrations.labelstudio.config import REGION_TYPES, Control, LabelConfig
from samrefiner.integrations.labelstudio.images import ImageSource
from samrefiner.integrations.labelstudio.regions import (
    CoarseRegion,
    brush_result,
    parse_region,
    polygon_results,
)
from samrefiner.io.errors import InputError, said
from samrefiner.io.polygons import mask_to_polygons
from samrefiner.refiner import Refiner

__all__ = ["OUTPUTS", "SOURCES", "BackendSettings", "LabelStudioBackend", "TaskError"]

log = logging.getLogger("samrefiner.labelstudio")

#: Which of a task's labellings is refined (``--source``).
SOURCES = ("latest", "annotations", "predictions")
#: How refined masks are written (``--output``).
OUTPUTS = ("same", "brush", "polygon")
_BRUSH = ("brushlabels", "brush")
_POLYGON = ("polygonlabels", "polygon")


class TaskError(ValueError):
    """A task that cannot be refined; the message names the task and the problem."""


@dataclass(frozen=True)
class BackendSettings:
    """What the backend does with a task.

    Attributes:
        source: ``latest`` (the newest of the task's annotations and predictions),
            ``annotations`` or ``predictions`` (the newest of those). Cancelled
            annotations and this backend's own predictions are never refined.
        output: ``same`` (a brush region stays brush, a polygon stays polygon, a
            rectangle becomes brush, else polygon, as the config allows), ``brush`` or
            ``polygon`` (every region so, through the config's tag of that kind).
        polygon_tolerance: Douglas-Peucker tolerance of written polygons, in pixels.
        embedding_slots: image embeddings kept in memory (least recently used dropped).
        max_tasks: most tasks one request may hold.
    """

    source: str = "latest"
    output: str = "same"
    polygon_tolerance: float = 1.0
    embedding_slots: int = 4
    max_tasks: int = 1000

    def __post_init__(self) -> None:
        def name(field: str) -> str:
            return said(field, "--" + field.replace("_", "-"))

        if self.source not in SOURCES:
            raise ValueError(f"{name('source')} must be one of {SOURCES}, got {self.source!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"{name('output')} must be one of {OUTPUTS}, got {self.output!r}")
        if not (math.isfinite(self.polygon_tolerance) and self.polygon_tolerance >= 0):
            raise ValueError(
                f"{name('polygon_tolerance')} must be >= 0, got {self.polygon_tolerance}"
            )
        if self.embedding_slots < 0:
            raise ValueError(f"{name('embedding_slots')} must be >= 0, got {self.embedding_slots}")
        if self.max_tasks < 1:
            raise ValueError(f"{name('max_tasks')} must be >= 1, got {self.max_tasks}")


def _when(item: Mapping[str, Any]) -> tuple[str, int]:
    """Sort key: last change (ISO 8601 text sorts by time), then id."""
    stamp = item.get("updated_at") or item.get("created_at") or ""
    ident = item.get("id")
    return str(stamp), ident if isinstance(ident, int) else -1


class LabelStudioBackend:
    """Refines the regions of Label Studio tasks with one loaded model.

    Args:
        refiner: the refiner (its model is loaded once, here).
        model_name: the model's name, for :attr:`model_version`.
        settings: what to refine and how to write it.
        images: where task images come from.
        fingerprint: the model's weights fingerprint (None: computed here).
    """

    def __init__(
        self,
        refiner: Refiner,
        model_name: str,
        settings: BackendSettings | None = None,
        images: ImageSource | None = None,
        *,
        fingerprint: str | None = None,
    ) -> None:
        self.refiner = refiner
        self.settings = settings or BackendSettings()
        self.images = images or ImageSource()
        if fingerprint is None:
            from samrefiner.adaption.fingerprint import model_fingerprint

            fingerprint = model_fingerprint(refiner.model)
        self.model_version = f"samrefiner-{__version__}:{model_name}:{fingerprint[:12]}"
        self._embeddings: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()  # one task on the model at a time
        self.encoded = 0  # images encoded (embedding cache misses)
        self.reused = 0  # embeddings reused from memory

    # -- the protocol's calls -------------------------------------------------------

    def setup(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``/setup``: checks the project's labelling config, returns the model version."""
        schema = body.get("schema")
        if isinstance(schema, str) and schema.strip():
            LabelConfig.parse(schema)  # an InputError when it is not XML
        return {"model_version": self.model_version}

    def predict(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``/predict``: ``{"results": [one prediction per task]}``.

        Raises:
            InputError: a body without a ``tasks`` list or a readable ``label_config``,
                or with more than ``max_tasks`` tasks (the whole request fails).
        """
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise InputError("/predict: the body has no 'tasks' list")
        if len(tasks) > self.settings.max_tasks:
            raise InputError(
                f"/predict: {len(tasks)} tasks in one request, more than the "
                f"{self.settings.max_tasks} allowed ({said('max_tasks', '--max-tasks')})"
            )
        text = body.get("label_config")
        if not isinstance(text, str) or not text.strip():
            raise InputError("/predict: the body has no 'label_config'")
        config = LabelConfig.parse(text)
        return {"results": [self.predict_task(task, config) for task in tasks]}

    def predict_task(self, task: Any, config: LabelConfig) -> dict[str, Any]:
        """One task's prediction, or ``{"error": ..., "model_version": ...}`` when it
        cannot be refined (logged as a warning): a :class:`TaskError`,
        :class:`~samrefiner.integrations.labelstudio.regions.RegionError`,
        :class:`~samrefiner.integrations.labelstudio.images.ImageSourceError` or the
        refiner's ``ValueError`` (a rectangle outside the image)."""
        ident = task.get("id", "?") if isinstance(task, Mapping) else "?"
        try:
            if not isinstance(task, Mapping):
                raise TaskError("not a JSON object")
            return self._refine_task(task, config)
        except ValueError as exc:  # ours (TaskError, RegionError, ...) and the refiner's
            message = f"task {ident}: {exc}"
            log.warning("%s", message)
            return {"model_version": self.model_version, "error": message}

    # -- the work -------------------------------------------------------------------

    def source_results(self, task: Mapping[str, Any]) -> list[Any]:
        """The ``result`` list the settings pick from the task."""
        candidates: list[Mapping[str, Any]] = []
        if self.settings.source in ("latest", "annotations"):
            annotations = task.get("annotations") or []
            candidates += [
                a for a in annotations if isinstance(a, Mapping) and not a.get("was_cancelled")
            ]
        if self.settings.source in ("latest", "predictions"):
            predictions = task.get("predictions") or []
            candidates += [
                p
                for p in predictions
                if isinstance(p, Mapping) and p.get("model_version") != self.model_version
            ]
        if not candidates:
            raise TaskError(f"no {self._source_words()} to refine")
        chosen = max(candidates, key=_when)
        result = chosen.get("result")
        if not isinstance(result, list):
            raise TaskError("its labelling has no 'result' list")
        return result

    def _source_words(self) -> str:
        return {
            "latest": "annotation or prediction",
            "annotations": "annotation",
            "predictions": "prediction",
        }[self.settings.source]

    def _refine_task(self, task: Mapping[str, Any], config: LabelConfig) -> dict[str, Any]:
        data = task.get("data")
        if not isinstance(data, Mapping):
            raise TaskError("no 'data' object")
        by_image: dict[str, list[Mapping[str, Any]]] = {}
        for item in self.source_results(task):
            if not isinstance(item, Mapping):
                raise TaskError(f"a result item is not a JSON object: {item!r:.80}")
            kind = str(item.get("type", "")).lower()
            if kind not in REGION_TYPES:
                continue  # choices, text, keypoints, ...: not regions refined here
            from_name = str(item.get("from_name", ""))
            control = config.controls.get(from_name)
            if control is None:
                raise TaskError(
                    f"region {item.get('id', '?')}: from_name {from_name!r} is no control tag "
                    f"of the labelling config (its tags: {sorted(config.controls)})"
                )
            to_name = str(item.get("to_name", ""))
            if to_name not in config.images:
                raise TaskError(
                    f"region {item.get('id', '?')}: to_name {to_name!r} is no <Image> tag of "
                    f"the labelling config (its images: {sorted(config.images)})"
                )
            by_image.setdefault(to_name, []).append(item)
        if not by_image:
            raise TaskError("its labelling has no brush, polygon or rectangle region to refine")
        results: list[dict[str, Any]] = []
        scores: list[float] = []
        for to_name, items in by_image.items():
            key = config.images[to_name]
            if key not in data:
                raise TaskError(f"data has no {key!r} (the image of <Image name={to_name!r}>)")
            image = self.images.load(data[key])
            regions = [parse_region(item, *image.shape[:2]) for item in items]
            out, region_scores = self._refine_image(image, regions, config)
            results += out
            scores += region_scores
        finite = [s for s in scores if math.isfinite(s)]
        return {
            "result": results,
            "score": float(np.mean(finite)) if finite else None,
            "model_version": self.model_version,
        }

    def embedding(self, image: np.ndarray) -> Any:
        """The image's embedding: from memory when this image was encoded lately."""
        from samrefiner.adaption.fingerprint import image_digest

        key = image_digest(image)
        found = self._embeddings.get(key)
        if found is not None:
            self._embeddings.move_to_end(key)
            self.reused += 1
            return found
        embedding = self.refiner.encode(image)
        self.encoded += 1
        if self.settings.embedding_slots:
            self._embeddings[key] = embedding
            while len(self._embeddings) > self.settings.embedding_slots:
                self._embeddings.popitem(last=False)
        return embedding

    def refine_regions(self, image: np.ndarray, regions: Sequence[CoarseRegion]) -> Any:
        """``Refiner.refine`` of the regions (masks, and boxes for rectangles) on one
        image; the :class:`~samrefiner.types.RefineResult`, in region order."""
        shape = image.shape[:2]
        flags = np.array([r.box is not None for r in regions], dtype=bool)
        masks = boxes = None
        if not flags.all():
            masks = np.zeros((len(regions), *shape), dtype=bool)
            for i, region in enumerate(regions):
                if region.mask is not None:
                    masks[i] = region.mask
        if flags.any():
            boxes = np.full((len(regions), 4), np.nan)
            for i, region in enumerate(regions):
                if region.box is not None:
                    boxes[i] = region.box
        with self._lock:
            embedding = self.embedding(image)
            return self.refiner.refine(
                image, masks, boxes=boxes, from_box=flags, embedding=embedding
            )

    def _target(self, region: CoarseRegion, config: LabelConfig) -> Control:
        """The control a refined region is written through."""
        own = config.controls[region.from_name]
        output = self.settings.output
        if output == "same" and own.type in (*_BRUSH, *_POLYGON):
            return own
        kinds = {"brush": _BRUSH, "polygon": _POLYGON, "same": (*_BRUSH, *_POLYGON)}[output]
        if region.labels:  # a labelled region goes to a labels tag first
            kinds = tuple(sorted(kinds, key=lambda k: not k.endswith("labels")))
        control = config.mask_control(region.to_name, kinds)
        if control is None:
            tags = " or ".join(k.capitalize().replace("labels", "Labels") for k in kinds)
            raise TaskError(
                f"region {region.id}: the labelling config has no {tags} tag on image "
                f"{region.to_name!r} to write the refined mask with "
                f"({said('output=', '--output ')}{output})"
            )
        return control

    def _refine_image(
        self, image: np.ndarray, regions: list[CoarseRegion], config: LabelConfig
    ) -> tuple[list[dict[str, Any]], list[float]]:
        targets = [self._target(region, config) for region in regions]
        refined = self.refine_regions(image, regions)
        out: list[dict[str, Any]] = []
        scores: list[float] = []
        for region, target, mask, raw in zip(
            regions, targets, refined.masks, refined.scores, strict=True
        ):
            score = float(raw)
            scores.append(score)
            shown = score if math.isfinite(score) else None
            if not mask.any():
                log.info("region %s: the refined mask is empty; no region written", region.id)
                continue
            if target.type in _BRUSH:
                out.append(brush_result(region, mask, shown, target.name, target.type))
                continue
            tolerance = self.settings.polygon_tolerance
            polygons = mask_to_polygons(mask, tolerance=tolerance)
            if polygons.has_holes:
                brush_tag = config.mask_control(region.to_name, _BRUSH)
                if brush_tag is not None:  # a polygon cannot hold a hole: brush can
                    out.append(brush_result(region, mask, shown, brush_tag.name, brush_tag.type))
                    continue
                log.info(
                    "region %s: the refined mask has holes and the config has no brush tag: "
                    "written as polygons without them",
                    region.id,
                )
            out += polygon_results(region, mask, shown, target.name, target.type, polygons=polygons)
        return out, scores
