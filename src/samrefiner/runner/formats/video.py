"""Video sequences as a runner dataset: one job per sequence (``samrefiner video``).

Inputs (local paths):

* a **DAVIS / YouTube-VOS layout**: ``FRAMES/<sequence>/<frame>.jpg`` and
  ``LABELS/<sequence>/<frame>.png``; the output is ``OUT/<sequence>/<frame>.png``;
* **one sequence folder**: ``FRAMES/<frame>.jpg`` and ``LABELS/<frame>.png``; the output
  is ``OUT/<frame>.png``;
* **a video file** (``.mp4`` ..., decoded with OpenCV): ``LABELS/<index>.png`` named by
  the frame's 0-based index (``00005.png`` or ``5.png``); the output is ``OUT/<index>.png``,
  zero-padded like the label files (5 digits when they differ).

Labels may be sparse (any subset of the frames); the output is dense: one map per frame,
in the mode and palette of the sequence's first label map, with its ids. Frames sort by
number when every name is a number, else by name.

Bad input is the sequence's status, never a traceback: a label file with no frame of
its name (``image_missing``), a sequence with no label map (``no_labelled_frame``), a
label map that cannot be read (``mask_unreadable``) or is of another size
(``size_mismatch``), a frame that does not decode (``image_unreadable``). A bad
sequence's label files are copied to the output unchanged.

The refiner of the run is a :class:`VideoRunRefiner` (built from a
:class:`VideoRefinerSpec`), whose ``refine_whole_job`` the engines call with each
sequence's job (:func:`~samrefiner.runner.engines.steps.refine_jobs`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samrefiner.crops import MaskCrops
from samrefiner.io.binary_folder import IMAGE_EXTENSIONS
from samrefiner.io.errors import InputError
from samrefiner.io.label_maps import LabelMap, instance_masks, read_label_map, write_label_map
from samrefiner.runner.dataset import Job
from samrefiner.runner.formats.label_folders import copy_unchanged
from samrefiner.runner.journal.records import ImageRecord, ObjectRecord, SummaryPart
from samrefiner.runner.journal.status import (
    IMAGE_MISSING,
    MASK_UNREADABLE,
    NO_LABELLED_FRAME,
    SIZE_MISMATCH,
    image_error_status,
)
from samrefiner.runner.spec import RefinerSpec
from samrefiner.video.frames import VIDEO_EXTENSIONS, FrameSizeError

log = logging.getLogger("samrefiner.runner")

__all__ = ["SequenceInput", "VideoDataset", "VideoRefinerSpec", "VideoRunRefiner"]


class SequenceError(InputError):
    """Bad input of one sequence, with the status it gets."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _frame_order(paths: list[Path]) -> list[Path]:
    """Frames by number when every stem is a number, else by name."""
    if paths and all(p.stem.isdigit() for p in paths):
        return sorted(paths, key=lambda p: (int(p.stem), p.name))
    return sorted(paths, key=lambda p: p.name)


def _files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
    ]


@dataclass(frozen=True)
class SequenceInput:
    """One sequence's inputs, as the dataset found them.

    Attributes:
        name: the sequence's key (its folder's name, or the video file's stem).
        frames: frame files in order (a folder of frames), empty for a video file.
        video: the video file, or None.
        labels: frame index -> label map file.
        names: one output file stem per frame (``len(names)`` frames; for a video file
            the count is known once it is decoded: then empty).
        output: the folder the sequence's maps are written to.
        unpaired: label files matching no frame (bad input).
    """

    name: str
    frames: tuple[str, ...]
    video: str | None
    labels: dict[int, str]
    names: tuple[str, ...]
    output: str
    unpaired: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.video is not None and self.frames:
            raise ValueError(f"sequence {self.name!r}: frame files or a video file, not both")

    def problem(self) -> SequenceError | None:
        """What makes the sequence unusable before any frame is read, or None."""
        where = self.video or (str(Path(self.frames[0]).parent) if self.frames else self.output)
        if self.unpaired:
            shown = ", ".join(Path(p).name for p in self.unpaired[:3])
            return SequenceError(
                IMAGE_MISSING,
                f"{Path(self.unpaired[0]).parent}: label maps with no frame of their name in "
                f"{where}: {shown}" + (" ..." if len(self.unpaired) > 3 else ""),
            )
        if self.video is None and not self.frames:
            return SequenceError(IMAGE_MISSING, f"{self.output}: the sequence has no frames")
        if not self.labels:
            return SequenceError(NO_LABELLED_FRAME, f"{where}: no label map for any frame")
        return None

    def open_frames(self) -> Any:
        """The sequence's :class:`~samrefiner.video.frames.FrameSource`."""
        from samrefiner.video.frames import FolderFrames, VideoFileFrames

        if self.video is not None:
            return VideoFileFrames(self.video)
        return FolderFrames(list(self.frames))

    def frame_names(self, count: int) -> list[str]:
        """The output stem of each of ``count`` frames."""
        if self.names:
            return list(self.names)
        stems = [Path(p).stem for p in self.labels.values()]
        width = len(stems[0]) if stems and len({len(s) for s in stems}) == 1 else 5
        return [f"{t:0{width}d}" for t in range(count)]


class LabelFrames(Mapping[int, dict[int, np.ndarray]]):
    """A sequence's label maps, read when asked: frame index -> id -> ``H x W`` mask.

    Raises :class:`SequenceError` for a map that cannot be read or is not ``size``.
    """

    def __init__(self, files: dict[int, str], size: tuple[int, int]) -> None:
        self.files = files
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.files))

    def __getitem__(self, index: int) -> dict[int, np.ndarray]:
        label_map = read_sequence_map(self.files[index], self.size)
        ids, masks = instance_masks(label_map.labels)
        return dict(zip(ids, masks, strict=True))


def read_sequence_map(path: str, size: tuple[int, int]) -> LabelMap:
    """One label map of a sequence, checked against the frames' ``(H, W)``."""
    try:
        label_map = read_label_map(path)
    except InputError as exc:
        raise SequenceError(MASK_UNREADABLE, str(exc)) from exc
    if label_map.shape != tuple(size):
        raise SequenceError(
            SIZE_MISMATCH,
            f"{path}: label map is {label_map.shape[1]}x{label_map.shape[0]} but the frames "
            f"are {size[1]}x{size[0]} (W x H)",
        )
    return label_map


class VideoDataset:
    """Video sequences with (sparse) instance-id label maps; see the module docstring.

    Args:
        frames: a folder of sequence folders, one sequence folder, or a video file.
        labels: the label maps, in the same layout.
        output: the output folder (a local path).
    """

    name = "sequences"

    def __init__(
        self,
        frames: str | os.PathLike[str],
        labels: str | os.PathLike[str],
        output: str | os.PathLike[str],
    ) -> None:
        self.frames = Path(frames)
        self.labels = Path(labels)
        self.output = Path(output)
        if not self.labels.is_dir():
            raise InputError(f"{self.labels}: labels folder not found")
        if self.frames.is_file():
            if self.frames.suffix.lower() not in VIDEO_EXTENSIONS:
                raise InputError(
                    f"{self.frames}: not a video file ({', '.join(VIDEO_EXTENSIONS)}) nor a "
                    "folder of frames"
                )
            self._sequences = {self.frames.stem: self._video_sequence(self.frames.stem)}
        elif not self.frames.is_dir():
            raise InputError(f"{self.frames}: frames folder or video file not found")
        elif _files(self.frames, IMAGE_EXTENSIONS):
            name = self.frames.resolve().name
            self._sequences = {
                name: self._folder_sequence(name, self.frames, self.labels, self.output)
            }
        else:
            names = sorted(
                {p.name for p in self.frames.iterdir() if p.is_dir() and not p.name.startswith(".")}
                | {
                    p.name
                    for p in self.labels.iterdir()
                    if p.is_dir() and not p.name.startswith(".")
                }
            )
            if not names:
                raise InputError(f"{self.frames}: no frames and no sequence folders")
            self._sequences = {
                n: self._folder_sequence(n, self.frames / n, self.labels / n, self.output / n)
                for n in names
            }
        self.source_counts: Counter[str] = Counter()

    def _folder_sequence(
        self, name: str, frames: Path, labels: Path, output: Path
    ) -> SequenceInput:
        paths = _frame_order(_files(frames, IMAGE_EXTENSIONS))
        index = {p.stem: t for t, p in enumerate(paths)}
        label_files = sorted(_files(labels, (".png",)), key=lambda p: p.name)
        paired = {index[p.stem]: str(p) for p in label_files if p.stem in index}
        unpaired = tuple(str(p) for p in label_files if p.stem not in index)
        return SequenceInput(
            name,
            tuple(str(p) for p in paths),
            None,
            dict(sorted(paired.items())),
            tuple(p.stem for p in paths),
            str(output),
            unpaired,
        )

    def _video_sequence(self, name: str) -> SequenceInput:
        label_files = sorted(_files(self.labels, (".png",)), key=lambda p: p.name)
        paired = {int(p.stem): str(p) for p in label_files if p.stem.isdigit()}
        unpaired = tuple(str(p) for p in label_files if not p.stem.isdigit())
        return SequenceInput(
            name, (), str(self.frames), dict(sorted(paired.items())), (), str(self.output), unpaired
        )

    def keys(self) -> list[str]:
        return list(self._sequences)

    def orphans(self) -> list[ObjectRecord]:
        return []

    def load(self, key: str) -> Job:
        seq = self._sequences[key]
        problem = seq.problem()
        job = Job(key, None, MaskCrops((1, 1)), payload=seq)
        if problem is not None:
            job.image_status, job.message = problem.status, str(problem)
        return job

    def save(self, job: Job, result: Any) -> ImageRecord:
        seq: SequenceInput = job.payload
        if result is None:
            for path in [*seq.labels.values(), *seq.unpaired]:
                copy_unchanged(path, Path(seq.output) / Path(path).name)
            return ImageRecord(job.key, [], job.image_status, job.message)
        template = read_sequence_map(next(iter(seq.labels.values())), result.size)
        dtype = np.uint16 if template.mode == "I;16" else np.uint8
        top = int(np.iinfo(dtype).max)
        names = seq.frame_names(result.frame_count)
        for t in range(result.frame_count):
            labels = result.label_map(t)
            if labels.size and int(labels.max()) > top:
                raise ValueError(f"{seq.output}: id above {top} in a {template.mode} map")
            write_label_map(
                Path(seq.output) / f"{names[t]}.png", template.with_labels(labels.astype(dtype))
            )
        objects = []
        for obj in result.object_ids:
            entries = [f[obj] for f in result.frames]
            scores = [e.score for e in entries if not np.isnan(e.score)]
            objects.append(
                ObjectRecord(
                    obj,
                    "refined",
                    predicted_iou=float(np.mean(scores)) if scores else None,
                    extra={
                        "sources": dict(sorted(Counter(e.source for e in entries).items())),
                        "reasons": dict(sorted(Counter(e.reason for e in entries).items())),
                        "keyframes": result.keyframes.get(obj, []),
                    },
                )
            )
        for notice in result.notices:
            log.warning("%s: %s", seq.output, notice)
        return ImageRecord(job.key, objects)

    def finish(self, records: Any) -> None:
        """Count the per-frame sources of every sequence (:attr:`source_counts`)."""
        counts: Counter[str] = Counter()
        for record in records:
            for obj in record.objects:
                counts.update(obj.extra.get("sources", {}))
        self.source_counts = counts

    def summary_parts(self) -> list[SummaryPart]:
        """The per-frame sources of every sequence, as the summary's ``frame_sources``."""
        counts = dict(sorted(self.source_counts.items()))
        shown = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        return [SummaryPart("frame_sources", counts, f"frame sources: {shown}")]


class VideoRunRefiner:
    """The refiner of a video run: a :class:`~samrefiner.video.VideoRefiner` that refines
    whole sequence jobs (``refine_whole_job``, called by the engines)."""

    def __init__(self, video_refiner: Any) -> None:
        self.video_refiner = video_refiner

    @property
    def model(self) -> Any:
        return self.video_refiner.model

    def refine(self, image: np.ndarray, masks: np.ndarray) -> Any:
        """Refine one image (the per-frame image refiner)."""
        return self.video_refiner.refiner.refine(image, masks)

    def refine_whole_job(self, job: Job) -> Any:
        """Refine one sequence's job: its :class:`~samrefiner.video.SequenceResult`, or
        None with the job's status and message set (bad input)."""
        seq: SequenceInput = job.payload
        if job.image_status is not None:
            return None
        frames = None
        try:
            frames = seq.open_frames()
            beyond = [t for t in seq.labels if t >= len(frames)]
            if beyond:
                raise SequenceError(
                    IMAGE_MISSING,
                    f"{seq.labels[beyond[0]]}: label map of frame {beyond[0]}, but "
                    f"{frames.where} has {len(frames)} frames",
                )
            return self.video_refiner.refine_sequence(frames, LabelFrames(seq.labels, frames.size))
        except SequenceError as exc:
            job.image_status, job.message = exc.status, str(exc)
        except InputError as exc:
            status = SIZE_MISMATCH if isinstance(exc, FrameSizeError) else image_error_status(exc)
            job.image_status, job.message = status, str(exc)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        return None


@dataclass(frozen=True)
class VideoRefinerSpec(RefinerSpec):
    """A :class:`RefinerSpec` with the video method's settings (a plain dict of
    :class:`~samrefiner.video.VideoSettings` fields, so that the spec stays picklable
    without importing torch)."""

    video: dict[str, Any] = dataclasses.field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        settings = {k: v for k, v in self.video.items() if k != "offload_state"}
        return {**super().fingerprint(), "video": settings}

    def build(self) -> VideoRunRefiner:  # type: ignore[override]
        """The :class:`VideoRunRefiner` (loads the model and, for a video family, its
        video model)."""
        from samrefiner.refiner import Refiner
        from samrefiner.video import VideoRefiner, VideoSettings, video_backend_for

        settings = VideoSettings(**self.video)
        backend = self.load_backend()
        video = None
        if settings.propagate != "none":
            video = video_backend_for(backend, offload_state=settings.offload_state)
        return VideoRunRefiner(VideoRefiner(Refiner(backend, self.config), video, settings))
