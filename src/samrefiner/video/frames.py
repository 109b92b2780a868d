"""The frames of one sequence, read one at a time: a folder of images, a video file, or
arrays in memory.

A :class:`FrameSource` never holds the whole sequence: the method reads a frame when it
refines it, and the video backends read each frame when they propagate through it, so a
1000-frame sequence costs one decoded frame at a time.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samrefiner.io.errors import InputError
from samrefiner.io.images import read_image
from samrefiner.io.masks import as_rgb_image

#: Video file extensions :class:`VideoFileFrames` reads (with OpenCV, part of the base install).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class FrameSizeError(InputError):
    """A frame whose size differs from the sequence's."""


class FrameSource(abc.ABC):
    """``len(source)`` frames of one size; :meth:`read` decodes frame ``index`` (0-based).

    Reading may raise :class:`~samrefiner.io.errors.InputError` naming the file and the
    problem (a frame that does not decode, a frame of another size).
    """

    #: What the frames are, for messages (a folder, a file).
    where: str = "frames"

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of every frame."""

    @abc.abstractmethod
    def _decode(self, index: int) -> np.ndarray:
        """Frame ``index`` as an ``H x W x 3`` uint8 RGB array."""

    def name(self, index: int) -> str:
        """The frame's name (its file stem, or its index)."""
        return f"{index:05d}"

    def read(self, index: int) -> np.ndarray:
        """Frame ``index``: ``H x W x 3`` uint8 RGB, checked against :attr:`size`."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.where}: no frame {index} (of {len(self)})")
        frame = as_rgb_image(self._decode(index))
        if frame.shape[:2] != self.size:
            h, w = self.size
            raise FrameSizeError(
                f"{self.where}: frame {self.name(index)} is {frame.shape[1]}x{frame.shape[0]} "
                f"but the sequence is {w}x{h} (W x H)"
            )
        return frame


class ArrayFrames(FrameSource):
    """Frames given as arrays (each ``H x W x 3`` uint8), e.g. a synthetic sequence."""

    def __init__(self, frames: Sequence[np.ndarray], where: str = "frames") -> None:
        if not len(frames):
            raise ValueError("a sequence needs at least one frame")
        self._frames = frames
        self.where = where
        self._size = (int(frames[0].shape[0]), int(frames[0].shape[1]))

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _decode(self, index: int) -> np.ndarray:
        return np.asarray(self._frames[index])


class FolderFrames(FrameSource):
    """Image files, one per frame, in the given order (a DAVIS / YouTube-VOS sequence
    folder). The size is the first frame's; the first frame is decoded here."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], where: str | None = None) -> None:
        if not paths:
            raise ValueError("a sequence needs at least one frame")
        self.paths = [Path(p) for p in paths]
        self.where = where or str(self.paths[0].parent)
        first = read_image(self.paths[0])
        self._size = (int(first.shape[0]), int(first.shape[1]))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def name(self, index: int) -> str:
        return self.paths[index].stem

    def _decode(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])


class VideoFileFrames(FrameSource):
    """The frames of a video file, decoded with OpenCV (``cv2.VideoCapture``, in the base
    install). Frames are counted by decoding the file once here; reading goes forward
    from the last frame read (a backward read reopens the file), so a forward pass
    decodes each frame once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import cv2

        self.path = Path(path)
        self.where = str(self.path)
        self._cv2 = cv2
        capture = cv2.VideoCapture(str(self.path))
        count = 0
        size = None
        try:
            if not capture.isOpened():
                raise InputError(f"{self.path}: not a video file OpenCV can decode")
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if size is None:
                    size = (int(frame.shape[0]), int(frame.shape[1]))
                count += 1
        finally:
            capture.release()
        if not count or size is None:
            raise InputError(f"{self.path}: no frame could be decoded")
        self._count = count
        self._size = size
        self._capture = None
        self._next = 0

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _decode(self, index: int) -> np.ndarray:
        if self._capture is None or index < self._next:
            if self._capture is not None:
                self._capture.release()
            self._capture = self._cv2.VideoCapture(str(self.path))
            self._next = 0
        while True:
            ok, frame = self._capture.read()
            if not ok:
                raise InputError(f"{self.path}: frame {index} does not decode")
            self._next += 1
            if self._next - 1 == index:
                return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_capture"] = None
        state["_next"] = 0
        state["_cv2"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        import cv2

        self.__dict__.update(state)
        self._cv2 = cv2

    def close(self) -> None:
        """Release the decoder (reading again reopens the file)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None
            self._next = 0


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True for a file whose extension is one of :data:`VIDEO_EXTENSIONS`."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
