"""Measuring ``samrefiner video`` output end to end: synthetic sequences with sparse
coarse labels, the command's dense output, ``eval --video`` side by side and the filmstrip."""

from __future__ import annotations

import json

from samrefiner.cli import main
from samrefiner.io.label_maps import read_label_map

MODEL = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--no-progress"]


def test_video_output_measured_and_shown(shared_data, tmp_path, capsys):
    from samrefiner.measure.sequences import SequenceSpec, write_dataset

    spec = SequenceSpec(name="s", frames=7, height=48, width=64, seed=4)
    layout = write_dataset(tmp_path / "ds", [spec], shared_data, label_every=3)
    out = tmp_path / "per-frame"
    argv = ["video", str(layout.frames), "--labels", str(layout.sparse), "-o", str(out)]
    assert main([*argv, "--propagate", "none", *MODEL]) == 0
    capsys.readouterr()
    # Dense, palette-preserving output that eval pairs with the ground truth frame by frame.
    written = sorted(p.name for p in (out / "s").iterdir())
    assert written == [f"{t:05d}.png" for t in range(7)]
    assert read_label_map(out / "s" / "00001.png").mode == "P"

    argv = ["eval", str(layout.sparse), str(out), str(layout.gt), "--video", "--json", "-"]
    assert main([*argv, "--names", "coarse", "per-frame", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    coarse, refined = report["predictions"]
    assert coarse["sequences"][0]["missing"] == ["00001", "00002", "00004", "00005"]
    assert refined["sequences"][0]["missing"] == []  # the output is dense
    for pred in (coarse, refined):
        assert set(pred["summary"]) == {"J", "F", "J&F", "stability"}
        assert all(0.0 <= v <= 1.0 for v in pred["summary"].values())
    # Per-frame refinement alone leaves an unlabelled frame's objects absent: there both
    # outputs score every object 1 where it is absent and 0 where it is present.
    j_coarse = {o["id"]: o["j"] for o in coarse["sequences"][0]["objects"]}
    j_refined = {o["id"]: o["j"] for o in refined["sequences"][0]["objects"]}
    for oid in j_coarse:
        for t in (1, 2, 4, 5):
            assert j_refined[oid][t] == j_coarse[oid][t]
    assert not read_label_map(out / "s" / "00001.png").labels.any()

    page = tmp_path / "page"
    argv = ["report", str(out), "-o", str(page), "--frames", str(layout.frames)]
    argv += ["--labels", str(layout.sparse), "--gt", str(layout.gt), "--no-progress"]
    assert main(argv) == 0
    html = (page / "index.html").read_text(encoding="utf-8")
    assert html.count('data-output="per-frame"') == 7 and "no label" in html
