"""Refining the coarse masks of whole video sequences with a video model's memory
(docs/video.md): :class:`VideoRefiner` over a :class:`FrameSource`, with the video
backends of :mod:`samrefiner.video.backends`."""

from samrefiner.video.backends import Sam2VideoBackend, VideoBackend, video_backend_for
from samrefiner.video.frames import ArrayFrames, FolderFrames, FrameSource, VideoFileFrames
from samrefiner.video.hf import HfVideoBackend
from samrefiner.video.method import (
    PROPAGATE,
    Decision,
    Refined,
    VideoRefiner,
    VideoSettings,
    decide,
    pick_keyframes,
)
from samrefiner.video.result import REASONS, SOURCES, ObjectFrame, SequenceResult

__all__ = [
    "PROPAGATE",
    "REASONS",
    "SOURCES",
    "ArrayFrames",
    "Decision",
    "FolderFrames",
    "FrameSource",
    "HfVideoBackend",
    "ObjectFrame",
    "Refined",
    "Sam2VideoBackend",
    "SequenceResult",
    "VideoBackend",
    "VideoFileFrames",
    "VideoRefiner",
    "VideoSettings",
    "decide",
    "pick_keyframes",
    "video_backend_for",
]
