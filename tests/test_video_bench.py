"""The video rows of ``samrefiner bench`` (samrefiner.measure.video_bench)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_video import FakeRefiner, FakeVideo
from samrefiner.cli import main
from samrefiner.io import InputError
from samrefiner.measure.sequences import SequenceSpec, build_sequence
from samrefiner.measure.video import VideoScores, score_sequence
from samrefiner.measure.video_bench import (
    ROWS,
    VideoBenchResults,
    coarse_labels,
    run_video_bench,
    video_bench_markdown,
)


@pytest.fixture(scope="module")
def sequences(shared_data):
    specs = [
        SequenceSpec(name="a", frames=8, height=48, width=80, seed=11),
        SequenceSpec(name="b", frames=6, height=48, width=64, seed=12, late_objects=0),
    ]
    return [build_sequence(s, shared_data) for s in specs]


def coarse_scores(sequences, every):
    scored = []
    for seq in sequences:
        labelled = set(seq.labelled_frames(every))
        frames = (
            (f"{t:05d}", seq.gt[t], seq.coarse[t] if t in labelled else None)
            for t in range(seq.spec.frames)
        )
        scored.append(score_sequence(seq.spec.name, frames, ignore=None))
    return VideoScores("coarse", "", scored)


def test_coarse_labels_sparse(sequences):
    seq = sequences[0]
    labels = coarse_labels(seq, 3)
    assert sorted(labels) == [0, 3, 6]
    for t, masks in labels.items():
        assert sorted(masks) == sorted(int(v) for v in np.unique(seq.coarse[t]) if v)
        for oid, m in masks.items():
            assert np.array_equal(m, seq.coarse[t] == oid)


def test_rows_with_identity_refiner_and_perfect_propagation(sequences):
    current = {}

    def propagate(t, obj):
        return current["seq"].gt[t] == obj

    refiner = FakeRefiner(lambda t, m: m)  # refinement returns the coarse mask
    video = FakeVideo(propagate)

    # The fake video reads the sequence being refined: run one sequence at a time.
    results = []
    for seq in sequences:
        current["seq"] = seq
        results.append(run_video_bench([seq], refiner, video, label_every=2))
    for seq, res in zip(sequences, results, strict=True):
        assert [r.label for r in res.rows] == list(ROWS)
        coarse, per_frame, vid = res.rows
        want = coarse_scores([seq], 2)
        assert coarse.j == pytest.approx(want.j) and coarse.stability == want.stability
        # Refining to the coarse mask gives the coarse output back, frame by frame.
        assert per_frame.j == pytest.approx(coarse.j) and per_frame.f == pytest.approx(coarse.f)
        # Unlabelled frames get the (perfect) propagated masks: better than leaving them.
        assert vid.j > per_frame.j
        assert vid.sources.get("propagated", 0) > 0
        assert per_frame.frames_per_s > 0 and coarse.frames_per_s is None
        assert res.frames == seq.spec.frames and res.label_every == 2


def test_results_json_and_markdown(sequences):
    res = run_video_bench(sequences, FakeRefiner(lambda t, m: m), None, label_every=1)
    back = VideoBenchResults.from_json(json.loads(json.dumps(res.to_json())))
    assert back == res
    assert res.sequences == ["a", "b"] and res.frames == 14
    assert res.notices and "image-only" in res.notices[0]  # no video backend
    text = video_bench_markdown(res)
    assert "| per-frame |" in text and "| video " in text and "image-only" in text
    with pytest.raises(InputError, match="not a video bench result"):
        VideoBenchResults.from_json({**res.to_json(), "rows": []})


def test_bench_command_video_rows(shared_data, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["bench", str(shared_data), "-o", str(out), "--video", "1", "--video-frames", "6"]
    argv += ["--video-size", "48", "64", "--label-every", "2", "--no-progress"]
    argv += ["--model", "samrefiner.testing:tiny_sam", "--random-weights"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| per-frame |" in text and "random weights" in text
    res = VideoBenchResults.from_json(json.loads((out / "video.json").read_text()))
    assert res.model == "tiny_sam" and res.random_weights and res.frames == 6
    assert (out / "video.md").read_text().startswith("Video: 1 synthetic sequences")
    bad = [*argv[:4], "--video", "0"]
    assert main(bad) == 2
