"""Loading a detector by name, as models are loaded: ``hf:ORG/NAME`` (offline, from the
Hugging Face cache), a ``save_pretrained`` folder, or a ``package.module:function``
builder returning a :class:`~samrefiner.detectors.base.Detector`.

:class:`DetectorSpec` is the plain, picklable description the runner carries (the Ray
load actors each load the detector once from it).
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.detectors.base import Detections, Detector, DetectSettings

#: Prefix of Hugging Face Hub detectors: ``load_detector("hf:ORG/NAME")``.
HF_PREFIX = "hf:"


def _is_hf(spec: str) -> bool:
    return spec.startswith(HF_PREFIX) or (
        Path(spec).is_dir() and (Path(spec) / "config.json").is_file()
    )


def _builder(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import detector builder {spec!r}: {exc}") from exc
    if not callable(builder):
        raise ValueError(f"detector builder {spec!r} is a {type(builder).__name__}, not a function")
    return builder


def _unknown(spec: str) -> ValueError:
    return ValueError(
        f"unknown detector {spec!r}: use 'hf:ORG/NAME' (from the Hugging Face cache), a "
        "save_pretrained folder, or a 'package.module:function' builder"
    )


def check_detector(name: str | os.PathLike[str]) -> None:
    """Raise the error :func:`load_detector` would raise for a detector it cannot find,
    without loading it: a folder without a config, a builder that cannot be imported.
    (An ``hf:`` name is looked for in the cache when it loads.)"""
    spec = os.fspath(name)
    if _is_hf(spec):
        return
    if ":" in spec and not Path(spec).exists():
        _builder(spec)
        return
    raise _unknown(spec)


def load_detector(
    name: str | os.PathLike[str],
    *,
    pretrained: bool = True,
    device: str | None = None,
) -> Detector:
    """Load a detector.

    Args:
        name: ``"hf:ORG/NAME"`` (a ``transformers`` zero-shot detector or SAM 3 in the local
            Hugging Face cache), a folder written by ``save_pretrained`` (model and
            processor), or ``"package.module:function"``, a builder called with no
            arguments returning a :class:`Detector`.
        pretrained: False builds a ``transformers`` detector with random weights.
        device: torch device (default CUDA when available, else CPU; builders choose
            their own).

    Raises:
        ValueError: unknown name, a detector missing from the cache or unreadable, a
            builder that returns no detector. MissingExtra: ``transformers`` is absent.
    """
    spec = os.fspath(name)
    if _is_hf(spec):
        from samrefiner.detectors.hf import load_hf_detector
        from samrefiner.models.registry import default_device

        return load_hf_detector(
            spec.removeprefix(HF_PREFIX), pretrained=pretrained, device=device or default_device()
        )
    if ":" in spec and not Path(spec).exists():
        built = _builder(spec)()
        if not isinstance(built, Detector):
            raise ValueError(
                f"detector builder {spec!r} returned a {type(built).__name__}, not a "
                "samrefiner Detector"
            )
        return built
    raise _unknown(spec)


@dataclass(frozen=True)
class DetectorSpec:
    """A detector, described: what :func:`load_detector` loads, and how detections are kept.

    The loaded detector is built on first use (:meth:`detect`) and never pickled: each
    process (each Ray actor) that receives the spec loads it once. Detection is
    serialised by a lock (the runner's loader threads share one detector).

    Attributes:
        name: see :func:`load_detector`.
        settings: thresholds, NMS and cap (:class:`DetectSettings`).
        random_weights: build a ``transformers`` detector with random weights (tests and
            speed benchmarks only).
        device: torch device (None: CUDA when available, else CPU).
    """

    name: str
    settings: DetectSettings = field(default_factory=DetectSettings)
    random_weights: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("no detector named")

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        s = self.settings
        return {
            "detector": self.name,
            "random_weights": self.random_weights,
            "box_threshold": s.box_threshold,
            "text_threshold": s.text_threshold,
            "nms_iou": s.nms_iou,
            "max_detections": s.max_detections,
        }

    def check(self) -> None:
        """:func:`check_detector` of :attr:`name`."""
        check_detector(self.name)

    def load(self) -> Detector:
        return load_detector(self.name, pretrained=not self.random_weights, device=self.device)


class LoadedDetector:
    """A :class:`DetectorSpec` and the detector it loads on first use (once per process).

    Picklable: the loaded detector stays behind, and the receiver loads its own.
    """

    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self._detector: Detector | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    def preload(self) -> None:
        """Load the detector now (else on first use).

        Raises:
            ValueError: it cannot be loaded (a missing package included), one line.
        """
        from samrefiner.extras import MissingExtra

        with self._lock:
            try:
                self._get()
            except MissingExtra as exc:
                raise ValueError(str(exc)) from exc

    def _get(self) -> Detector:
        if self._detector is None:
            self._detector = self.spec.load()
        return self._detector

    def detect(self, image: np.ndarray, classes: list[str]) -> Detections:
        """The detector's :meth:`Detector.detect` of ``image`` with the spec's settings."""
        with self._lock:
            return self._get().detect(image, classes, self.spec.settings)
