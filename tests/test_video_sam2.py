"""The SAM 2.1 video backend (the official ``sam2`` predictor) at tiny sizes: it tracks
as the predictor does on its own JPEG folder, streams frames, forgets what it will not
read again, and runs the whole method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers_video import moving_squares
from samrefiner import Refiner
from samrefiner.config import RefineConfig
from samrefiner.io.images import read_image
from samrefiner.io.masks import mask_iou
from samrefiner.testing import tiny_sam, tiny_sam2
from samrefiner.video import (
    ArrayFrames,
    FolderFrames,
    Sam2VideoBackend,
    VideoRefiner,
    VideoSettings,
    video_backend_for,
)
from samrefiner.video.backends import StreamedFrames

SEQ = moving_squares(4, (64, 80))


@pytest.fixture(scope="module")
def backends():
    pytest.importorskip("sam2")
    image = tiny_sam2()
    return image, video_backend_for(image)


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """The sequence as the predictor's own JPEG folder, and its frames as decoded."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("jpegs")
    for t, frame in enumerate(SEQ.frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder, FolderFrames(sorted(folder.glob("*.jpg")))


@pytest.mark.extra("sam2")
def test_the_video_predictor_has_the_image_models_weights(backends):
    image, video = backends
    assert isinstance(video, Sam2VideoBackend)
    ours = video.predictor.state_dict()
    for name, tensor in image.model.state_dict().items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=0)


@pytest.mark.extra("sam2")
def test_streamed_frames_are_the_predictors_own(backends, jpeg_folder):
    from sam2.utils.misc import load_video_frames_from_jpg_images

    _, video = backends
    folder, frames = jpeg_folder
    size = int(video.predictor.image_size)
    official, h, w = load_video_frames_from_jpg_images(
        str(folder), size, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    streamed = StreamedFrames(frames, size)
    assert (h, w) == frames.size and len(streamed) == len(official)
    for t in range(len(official)):
        torch.testing.assert_close(streamed[t], official[t], atol=1e-5, rtol=0)


@pytest.mark.extra("sam2")
def test_tracking_matches_the_official_predictor_on_its_jpeg_folder(backends, jpeg_folder):
    _, video = backends
    folder, frames = jpeg_folder
    seeds = {1: {1: SEQ.truth[1][1]}, 2: {0: SEQ.truth[0][2], 3: SEQ.truth[3][2]}}

    class Autocast(Sam2VideoBackend):
        autocast = True  # bfloat16 as on GPUs, and as the official examples run it

    ours = dict(Autocast(video.predictor).track(frames, seeds, "both"))
    float32 = dict(video.track(frames, seeds, "both"))  # the CPU path: float32 memories
    predictor = video.predictor
    theirs = {}
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the official examples run it
        state = predictor.init_state(str(folder), offload_video_to_cpu=True)
        for obj in sorted(seeds):
            for t in sorted(seeds[obj]):
                predictor.add_new_mask(state, t, obj, seeds[obj][t])
        for reverse in (False, True):
            for t, ids, logits in predictor.propagate_in_video(state, reverse=reverse):
                masks = (logits[:, 0] > 0).numpy()
                theirs.setdefault(t, {int(o): masks[k] for k, o in enumerate(ids)})
    assert sorted(ours) == sorted(theirs) == list(range(len(SEQ.frames)))
    for t in ours:
        for obj in (1, 2):
            assert np.array_equal(ours[t][obj], theirs[t][obj]), (t, obj)
            # Precision alone separates the CPU path from the official one.
            assert mask_iou(float32[t][obj], theirs[t][obj]) > 0.9, (t, obj)


@pytest.mark.extra("sam2")
def test_memories_beyond_the_window_are_dropped(backends):
    _, video = backends
    held: list[int] = []

    class Short(Sam2VideoBackend):
        window = 1

        def _forget(self, state, frame, reverse):
            super()._forget(state, frame, reverse)
            held.append(
                max(len(o["non_cond_frame_outputs"]) for o in state["output_dict_per_obj"].values())
            )

    short = Short(video.predictor)
    seq = moving_squares(6, (64, 80))
    frames = dict(short.track(seq.source(), {1: {0: seq.truth[0][1]}}, "forward"))
    assert sorted(frames) == list(range(6))
    assert held and max(held) <= 2  # the frame just tracked and the one before it


@pytest.mark.extra("sam2")
def test_the_whole_method_with_a_tiny_sam2(backends):
    image, video = backends
    refiner = Refiner(image, RefineConfig(iterations=1))
    vr = VideoRefiner(refiner, video, VideoSettings(keyframes="auto"))
    labels = SEQ.labels(every=2)  # sparse: frames 0 and 2
    result = vr.refine_sequence(ArrayFrames(SEQ.frames), labels)
    assert result.frame_count == 4 and result.object_ids == [1, 2]
    assert not result.notices
    for keys in result.keyframes.values():
        assert keys and set(keys) <= {0, 2}
    for t in (1, 3):  # no label map: the propagated mask, or absent where it is lost
        for obj in (1, 2):
            assert result.frames[t][obj].reason in ("no_coarse_mask", "propagated_empty")
    for t in (0, 2):
        for obj in (1, 2):
            assert result.frames[t][obj].source in ("refined", "reprompted", "kept_coarse")
    assert sum(result.sources().values()) == 8


def test_an_image_only_model_has_no_video_backend():
    backend = tiny_sam()
    assert video_backend_for(backend) is None
    vr = VideoRefiner(Refiner(backend, RefineConfig(iterations=1)), None)
    labels = {t: masks for t, masks in SEQ.labels().items() if t < 2}
    result = vr.refine_sequence(ArrayFrames(SEQ.frames[:2]), labels)
    assert "tiny_sam is an image-only model" in result.notices[0]
    assert {e.source for f in result.frames for e in f.values()} <= {"refined", "absent"}


def test_folder_frames_refuse_a_frame_of_another_size(tmp_path):
    from PIL import Image

    Image.fromarray(SEQ.frames[0]).save(tmp_path / "0.png")
    Image.fromarray(SEQ.frames[1][:32]).save(tmp_path / "1.png")
    frames = FolderFrames([tmp_path / "0.png", tmp_path / "1.png"])
    assert np.array_equal(frames.read(0), read_image(tmp_path / "0.png"))
    with pytest.raises(ValueError, match="frame 1 is 80x32 but the sequence is 80x64"):
        frames.read(1)


@pytest.mark.extra("sam2")
def test_the_video_benchmark_runs_with_a_tiny_model():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_video.py"
    args = ["--frames", "3", "--size", "80x48", "--every", "2", "--modes", "image,video"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--model", "samrefiner.testing:tiny_sam2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()[2:]
    rows = [line.split() for line in lines if line.split()[0].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("3", "image"), ("3", "video")]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)
    parts = [line for line in lines if "memory attention" in line]  # the video row's parts
    assert len(parts) == 1 and "encoder (predictor)" in parts[0]
