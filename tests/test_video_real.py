"""The method on sequences built from the shared data (real DAVIS cut-outs moving over a
real background, one leaving and re-entering the frame, one appearing mid-sequence),
with exact ground truth and coarse maps from the coarse-mask families."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_data_dir
from helpers_video import FakeRefiner, FakeVideo
from samrefiner.io.masks import mask_iou
from samrefiner.measure.sequences import SequenceSpec, build_sequence
from samrefiner.video import ArrayFrames, VideoRefiner, VideoSettings

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(
    not (DATA / "davis2016").is_dir(), reason="needs the shared data ($SAMREFINER_DATA)"
)


@pytest.fixture(scope="module")
def sequence():
    seq = build_sequence(SequenceSpec(name="real", frames=12, height=96, width=160, seed=3), DATA)
    frames = seq.frames.copy()
    frames[:, 0, 0, 0] = np.arange(len(frames))  # the frame index, for the doubles
    return seq, frames


def masks_of(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(v): labels == v for v in np.unique(labels) if v}


@pytest.mark.parametrize("every", [1, 4])
def test_true_masks_survive_every_rule_on_a_real_sequence(sequence, every):
    """With a refiner and a tracker that both give the truth, the dense output is the
    ground truth on every frame: objects leaving, re-entering and appearing late
    included, whether the coarse maps are dense or on every 4th frame."""
    seq, frames = sequence
    gt = seq.gt

    def refine(t, coarse):
        truth = masks_of(gt[t])
        return truth[max(truth, key=lambda o: mask_iou(truth[o], coarse))]

    labels = {t: masks_of(seq.coarse[t]) for t in range(0, len(frames), every)}
    video = FakeVideo(lambda t, obj: gt[t] == obj)
    result = VideoRefiner(FakeRefiner(refine), video, VideoSettings()).refine_sequence(
        ArrayFrames(list(frames)), labels
    )
    for t in range(len(frames)):
        assert np.array_equal(result.label_map(t), gt[t]), t
    late = max(o.id for o in seq.objects)
    first = min(t for t in range(len(frames)) if (gt[t] == late).any())
    assert first > 0 and min(result.keyframes[late]) >= first
    for t in range(first):
        assert result.frames[t][late].source == "absent"
    exits = [o for o in seq.objects if o.kind == "exits"]
    assert exits and not all(exits[0].visible)
    for t, visible in enumerate(exits[0].visible):
        assert (result.frames[t][exits[0].id].source == "absent") == (not visible)
    if every > 1:
        assert result.sources()["propagated"] > 0
