"""The video method's rules with controlled doubles: each rule fires where it should and
every (frame, object) records its source and reason."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers_video import FakeRefiner, FakeVideo, moving_squares
from samrefiner.io.masks import mask_iou
from samrefiner.video import (
    ObjectFrame,
    SequenceResult,
    VideoRefiner,
    VideoSettings,
    pick_keyframes,
)

SEQ = moving_squares()


def which(t: int, coarse: np.ndarray) -> int:
    """The object of frame ``t`` a coarse mask is most like."""
    return max(SEQ.truth[t], key=lambda o: mask_iou(SEQ.truth[t][o], coarse))


def perfect(t: int, coarse: np.ndarray) -> np.ndarray:
    return SEQ.truth[t][which(t, coarse)]


def truth_video(t: int, obj: int) -> np.ndarray:
    return SEQ.truth[t][obj]


def run(refiner, video, labels=None, **settings):
    vr = VideoRefiner(refiner, video, VideoSettings(**settings))
    return vr.refine_sequence(SEQ.source(), SEQ.labels() if labels is None else labels)


def test_agreeing_masks_keep_the_refined_mask_and_keyframes_are_seeded_with_refined_masks():
    # The coarse masks are dilated squares; the refiner gives the truth.
    def coarse(t, o, m):
        grown = m.copy()
        grown[1:] |= m[:-1]
        grown[:, 1:] |= m[:, :-1]
        return grown

    video = FakeVideo(truth_video)
    result = run(FakeRefiner(perfect), video, SEQ.labels(coarse=coarse))
    assert video.direction == "both"
    for obj, keys in result.keyframes.items():
        assert keys and set(video.seeds[obj]) == set(keys)
        for t in keys:  # the refined (exact) mask, never the dilated coarse one
            assert np.array_equal(video.seeds[obj][t], SEQ.truth[t][obj])
    for t in range(len(SEQ.frames)):
        for obj in (1, 2):
            entry = result.frames[t][obj]
            assert np.array_equal(entry.mask(), SEQ.truth[t][obj])
            if not SEQ.truth[t][obj].any():
                assert (entry.source, entry.reason) == ("absent", "absent_in_coarse")
            elif t in result.keyframes[obj]:
                assert (entry.source, entry.reason) == ("refined", "keyframe")
            else:
                assert (entry.source, entry.reason) == ("refined", "agree")
                assert entry.agreement == 1.0 and entry.score == pytest.approx(0.9)


def drifting(t: int, obj: int) -> np.ndarray:
    """Propagation that drifts: object 1's mask slides 6 px a frame further from frame 3."""
    mask = SEQ.truth[t][obj]
    if obj == 1 and t >= 3:
        return np.roll(mask, 6 * (t - 2), axis=1)
    return mask


@pytest.mark.parametrize("reprompt", [True, False])
def test_drifting_propagation_loses_to_the_refined_mask(reprompt):
    refiner = FakeRefiner(perfect)
    result = run(refiner, FakeVideo(drifting), keyframes=100, reprompt=reprompt)
    for t in range(3, len(SEQ.frames)):
        entry = result.frames[t][1]
        assert entry.reason == "refined_won"
        # The re-prompt (the fake gives the truth back) confirms the winner.
        assert entry.source == ("reprompted" if reprompt else "refined")
        assert np.array_equal(entry.mask(), SEQ.truth[t][1])
        assert entry.agreement < 0.8
    # Re-prompting ran once per disputed frame, on the disputed object only.
    reprompts = [c for c in refiner.calls[len(SEQ.frames) :]]
    assert reprompts == ([(t, 1) for t in range(3, len(SEQ.frames))] if reprompt else [])


def grabbing(t: int, coarse: np.ndarray) -> np.ndarray:
    """A per-frame refinement that grabs the neighbour object on frame 2."""
    obj = which(t, coarse)
    if t == 2 and obj == 1:
        return SEQ.truth[t][1] | SEQ.truth[t][2] | np.roll(SEQ.truth[t][1], 10, axis=0)
    return SEQ.truth[t][obj]


def test_a_refinement_grabbing_a_neighbour_loses_to_propagation():
    result = run(FakeRefiner(grabbing), FakeVideo(truth_video), keyframes="auto", reprompt=False)
    assert 2 not in result.keyframes[1] or result.keyframes[1] == [2]
    entry = result.frames[2][1]
    assert (entry.source, entry.reason) == ("propagated", "propagated_won")
    assert np.array_equal(entry.mask(), SEQ.truth[2][1])
    assert math.isnan(entry.score)
    assert result.frames[1][1].reason in ("agree", "keyframe")


def test_masks_that_agree_with_nothing_keep_the_coarse_mask():
    def far(t, coarse):
        return np.roll(perfect(t, coarse), 20, axis=1) if t == 5 else perfect(t, coarse)

    def lost(t, obj):
        return np.roll(SEQ.truth[t][obj], -20, axis=1) if t == 5 else SEQ.truth[t][obj]

    result = run(FakeRefiner(far), FakeVideo(lost), keyframes=100)
    entry = result.frames[5][1]
    assert (entry.source, entry.reason) == ("kept_coarse", "no_agreement")
    assert np.array_equal(entry.mask(), SEQ.truth[5][1])


def test_sparse_labels_take_the_propagated_mask_and_an_empty_one_stays_absent():
    labels = SEQ.labels(every=3)  # frames 0, 3, 6
    result = run(FakeRefiner(perfect), FakeVideo(truth_video), labels)
    for t in (1, 2, 4, 5, 7):
        for obj in (1, 2):
            entry = result.frames[t][obj]
            if SEQ.truth[t][obj].any():
                assert (entry.source, entry.reason) == ("propagated", "no_coarse_mask")
            else:  # object 2 has left the frame: the model lost it, it stays absent
                assert (entry.source, entry.reason) == ("absent", "propagated_empty")
                assert not entry.mask().any()
            assert np.array_equal(entry.mask(), SEQ.truth[t][obj])
    counts = result.sources()
    assert sum(counts.values()) == 2 * len(SEQ.frames)
    assert counts["propagated"] > 0 and counts["refined"] > 0


def test_an_object_missing_from_a_labelled_map_stays_absent_even_if_tracked():
    labels = SEQ.labels()
    del labels[3][1]  # the annotator left object 1 out of frame 3
    result = run(FakeRefiner(perfect), FakeVideo(truth_video), labels)
    entry = result.frames[3][1]
    assert (entry.source, entry.reason) == ("absent", "absent_in_coarse")
    assert not entry.mask().any()
    assert not result.label_map(3)[SEQ.truth[3][1]].any()


def test_an_object_appearing_mid_sequence_is_seeded_where_it_appears():
    labels = SEQ.labels()
    for t in range(4):
        labels[t].pop(1, None)  # object 1 enters at frame 4
    video = FakeVideo(truth_video)
    result = run(FakeRefiner(perfect), video, labels)
    assert min(result.keyframes[1]) >= 4
    assert min(video.seeds[1]) >= 4
    for t in range(4):
        assert result.frames[t][1].source == "absent"
    for t in range(4, len(SEQ.frames)):
        assert result.frames[t][1].source == "refined"


def test_no_propagation_is_the_per_frame_refinement():
    labels = SEQ.labels(every=2)
    video = FakeVideo(truth_video)
    result = run(FakeRefiner(perfect), video, labels, propagate="none")
    assert video.direction is None  # never asked
    for t in range(len(SEQ.frames)):
        for obj in (1, 2):
            entry = result.frames[t][obj]
            if t % 2:
                assert (entry.source, entry.reason) == ("absent", "not_reached")
            elif SEQ.truth[t][obj].any():
                assert entry.source == "refined" and entry.reason in ("no_propagation", "keyframe")


def test_forward_only_leaves_frames_before_the_first_keyframe_to_the_refiner():
    labels = SEQ.labels()

    def forward_from_2(t, obj):
        return SEQ.truth[t][obj] if t >= 2 else None

    result = run(FakeRefiner(perfect), FakeVideo(forward_from_2), labels, propagate="forward")
    assert (
        result.frames[0][1].reason == "no_propagation" or result.frames[0][1].reason == "keyframe"
    )
    assert result.frames[4][1].reason in ("agree", "keyframe")


def test_an_image_only_model_runs_step_one_with_a_notice():
    result = run(FakeRefiner(perfect), None)
    assert len(result.notices) == 1 and "image-only" in result.notices[0]
    assert {e.reason for f in result.frames for e in f.values()} <= {
        "no_propagation",
        "keyframe",
        "absent_in_coarse",
    }


def test_a_sequence_without_labelled_frames_is_refused():
    with pytest.raises(ValueError, match="no labelled frame"):
        run(FakeRefiner(perfect), None, {})
    with pytest.raises(ValueError, match=r"label maps for frames \[8\] of a 8-frame"):
        run(FakeRefiner(perfect), None, {8: {1: SEQ.truth[0][1]}})


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("all", [0, 2, 4, 6, 8]),
        (2, [0, 4, 8]),
        (1, [0, 2, 4, 6, 8]),
        ("auto", [4]),  # span 9 <= 30: one stretch, its most confident frame
    ],
)
def test_keyframe_policies(policy, expected):
    scores = {0: 0.5, 2: 0.7, 4: 0.95, 6: 0.9, 8: float("nan")}
    assert pick_keyframes(scores, policy, 30) == expected


def test_auto_keyframes_are_spread_through_the_sequence():
    scores = {t: 0.5 + 0.001 * t for t in range(0, 100)}
    scores[10] = 0.99
    assert pick_keyframes(scores, "auto", 25) == [10, 49, 74, 99]
    assert pick_keyframes({}, "auto") == []


def test_settings_are_validated():
    for bad in ({"keyframes": 0}, {"keyframes": "some"}, {"propagate": "back"}, {"agree_iou": 2}):
        with pytest.raises(ValueError):
            VideoSettings(**bad)


def test_result_types_check_their_fields_and_paint_by_score():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 0:3] = True
    with pytest.raises(ValueError, match="source"):
        ObjectFrame.of(mask, "guessed", "agree")
    low = ObjectFrame.of(mask, "propagated", "no_coarse_mask")
    high = ObjectFrame.of(mask[:, ::-1], "refined", "agree", 0.8)
    result = SequenceResult((4, 5), 1, [3, 7], [{3: low, 7: high}])
    labels = result.label_map(0)
    assert set(np.unique(labels[mask & mask[:, ::-1]])) == {7}
    assert labels[1, 0] == 3 and labels[1, 4] == 7 and labels[0, 0] == 0
    with pytest.raises(ValueError, match="entries"):
        SequenceResult((4, 5), 1, [3, 7], [{3: low}])
