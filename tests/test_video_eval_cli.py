"""``samrefiner eval --video``: DAVIS measures and stability for several outputs side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samrefiner.cli import main
from samrefiner.measure.video import VideoEvalReport, evaluate_video_folders


@pytest.fixture(scope="module")
def layout(shared_data, tmp_path_factory):
    from samrefiner.measure.sequences import SequenceSpec, write_dataset

    specs = [
        SequenceSpec(name="one", frames=7, height=48, width=80, seed=5),
        SequenceSpec(name="two", frames=6, height=48, width=64, seed=6, late_objects=0),
    ]
    return write_dataset(tmp_path_factory.mktemp("video"), specs, shared_data, label_every=2)


def test_side_by_side_json(layout, capsys):
    argv = ["eval", layout.coarse, layout.sparse, layout.gt, layout.gt, "--video"]
    argv += ["--no-progress", "--json", "-", "--names", "coarse", "sparse", "truth"]
    assert main([str(a) for a in argv]) == 0
    data = json.loads(capsys.readouterr().out)
    report = VideoEvalReport.from_json(data)
    assert [p.label for p in report.predictions] == ["coarse", "sparse", "truth"]
    assert [s.name for s in report.predictions[0].sequences] == ["one", "two"]
    coarse = evaluate_video_folders(layout.coarse, layout.gt, "coarse")
    assert data["predictions"][0]["summary"] == coarse.summary()
    assert data["predictions"][2]["summary"] == {"J": 1.0, "F": 1.0, "J&F": 1.0, "stability": 1.0}
    assert data["predictions"][1]["sequences"][1]["missing"] == ["00001", "00003", "00005"]
    assert data["bound_th"] == 0.008 and data["ignore"] == 255


def test_table_and_json_file(layout, capsys, tmp_path):
    out = tmp_path / "scores.json"
    argv = ["eval", layout.coarse, layout.gt, layout.gt, "--video", "--no-progress"]
    assert main([str(a) for a in [*argv, "--json", out]]) == 0
    text = capsys.readouterr().out
    assert "| one      | Coarse" in text and "| two      | Annotations" in text
    assert "mean over objects:" in text
    report = VideoEvalReport.from_json(json.loads(out.read_text()))
    # Folder names label the outputs.
    assert [p.label for p in report.predictions] == ["Coarse", "Annotations"]
    line = next(r for r in text.splitlines() if r.startswith("| Coarse "))
    assert f"{report.predictions[0].jf:.4f}" in line


def write_map(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(ids, np.uint8), mode="L").save(path)


def test_refusals(layout, tmp_path, capsys):
    gt, coarse = str(layout.gt), str(layout.coarse)
    assert main(["eval", coarse, coarse, gt, "--no-progress"]) == 2  # several PRED
    assert "--video" in capsys.readouterr().err
    assert main(["eval", coarse, gt, "--video", "--csv", str(tmp_path / "x.csv")]) == 2
    assert main(["eval", coarse, gt, "--video", "--names", "a", "b"]) == 2
    assert main(["eval", coarse, gt, "--video", "--bound-th", "0"]) == 2
    assert main(["eval", coarse, gt, "--names", "x"]) == 2  # --names without --video
    # A predicted map of another size is named.
    write_map(tmp_path / "gt" / "s" / "00000.png", np.zeros((8, 8)))
    write_map(tmp_path / "pred" / "s" / "00000.png", np.zeros((9, 8)))
    argv = ["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--video", "--no-progress"]
    assert main(argv) == 2
    assert "00000.png: size 8x9 differs" in capsys.readouterr().err


def test_single_sequence_folders(tmp_path, capsys):
    gt = np.zeros((3, 20, 20), np.uint8)
    gt[:, 5:15, 5:15] = 1
    for t in range(3):
        write_map(tmp_path / "gt" / f"{t:05d}.png", gt[t])
        write_map(tmp_path / "pred" / f"{t:05d}.png", gt[t])
    argv = ["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--video", "--json", "-"]
    assert main([*argv, "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["predictions"][0]["sequences"]] == ["gt"]
    assert data["predictions"][0]["summary"]["J&F"] == 1.0
