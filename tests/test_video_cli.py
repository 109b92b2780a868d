"""``samrefiner video`` end to end: layouts, sparse labels, dense palette-preserving
output, sources in the summary, bad input as statuses, resume and the Ray engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers_runner import tree_bytes
from helpers_video import moving_squares, write_sequence
from samrefiner.cli import main
from samrefiner.io.label_maps import read_label_map
from samrefiner.runner.journal.state import RunState

MODEL = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--no-progress"]
FAST = [*MODEL, "--iterations", "1"]
SIZE = (48, 64)


def davis(root, sequences=(("bear", 4, 1), ("cows", 3, 2))):
    """``root/frames/<seq>`` and ``root/labels/<seq>``: (name, frames, label every)."""
    for k, (name, n, every) in enumerate(sequences):
        seq = moving_squares(n, SIZE, seed=k)
        write_sequence(root / "frames" / name, root / "labels" / name, seq, every)
    return root / "frames", root / "labels"


def test_davis_layout_sparse_labels_give_dense_palette_maps(tmp_path, capsys):
    frames, labels = davis(tmp_path)
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    args = ["video", str(frames), "--labels", str(labels), "-o", str(out), *FAST]
    assert main([*args, "--propagate", "none", "--summary", str(summary)]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == [f"bear/{t:05d}.png" for t in range(4)] + [
        f"cows/{t:05d}.png" for t in range(3)
    ]
    for name in written:
        label_map = read_label_map(out / name)
        assert (
            label_map.mode == "P"
            and label_map.palette[:12] == read_label_map(labels / "bear/00000.png").palette[:12]
        )
        assert label_map.shape == SIZE
        assert set(np.unique(label_map.labels)) <= {0, 1, 2}
    # cows is labelled on frames 0 and 2 only: without propagation frame 1 stays empty.
    assert not read_label_map(out / "cows/00001.png").labels.any()
    data = json.loads(summary.read_text())
    sources = data["frame_sources"]
    assert sum(sources.values()) == 2 * (4 + 3)  # every (frame, object), two objects each
    assert sources["absent"] >= 2 and sources.get("refined", 0) + sources.get("kept_coarse", 0) > 0
    assert "frame sources:" in capsys.readouterr().out


def test_an_image_only_model_says_so_and_refines_the_labelled_frames(tmp_path, caplog):
    frames, labels = davis(tmp_path, (("bear", 3, 1),))
    out = tmp_path / "out"
    assert main(["video", str(frames), "--labels", str(labels), "-o", str(out), *FAST]) == 0
    assert "image-only model" in caplog.text
    assert len(list(out.rglob("*.png"))) == 3


def test_one_sequence_folder_and_16_bit_labels(tmp_path):
    seq = moving_squares(3, SIZE)
    write_sequence(tmp_path / "f", tmp_path / "l", seq, 1, ext=".png", mode="I;16")
    out = tmp_path / "out"
    args = ["video", str(tmp_path / "f"), "--labels", str(tmp_path / "l"), "-o", str(out)]
    assert main([*args, *FAST, "--propagate", "none"]) == 0
    maps = sorted(out.glob("*.png"))
    assert [p.name for p in maps] == ["00000.png", "00001.png", "00002.png"]
    assert all(read_label_map(p).mode == "I;16" for p in maps)


def test_a_video_file_with_labels_named_by_frame_index(tmp_path):
    import cv2

    seq = moving_squares(5, SIZE)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, SIZE[::-1])
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4")
    for frame in seq.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    labels = tmp_path / "labels"
    labels.mkdir()
    for t in (0, 3):
        lab = np.zeros(SIZE, np.uint8)
        for obj, mask in seq.truth[t].items():
            lab[mask] = obj
        Image.fromarray(lab).save(labels / f"{t:03d}.png")
    out = tmp_path / "out"
    args = ["video", str(video), "--labels", str(labels), "-o", str(out), *FAST]
    assert main([*args, "--propagate", "none"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{t:03d}.png" for t in range(5)]
    assert read_label_map(out / "000.png").mode == "L"


def test_bad_sequences_get_a_status_and_the_rest_is_refined(tmp_path, capsys, caplog):
    frames, labels = davis(
        tmp_path,
        (
            ("good", 2, 1),
            ("small", 2, 1),
            ("broken", 2, 1),
            ("unpaired", 2, 1),
            ("bare", 2, 9),
            ("tall", 2, 1),
        ),
    )
    Image.fromarray(np.zeros((SIZE[0] + 2, SIZE[1], 3), np.uint8)).save(frames / "tall/00001.jpg")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(labels / "small/00001.png")
    (frames / "broken/00001.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.zeros(SIZE, np.uint8)).save(labels / "unpaired/00099.png")
    for p in (labels / "bare").iterdir():
        p.unlink()
    out, summary = tmp_path / "out", tmp_path / "s.json"
    args = ["video", str(frames), "--labels", str(labels), "-o", str(out), *FAST]
    assert main([*args, "--propagate", "none", "--summary", str(summary)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    skipped = json.loads(summary.read_text())["images_skipped"]
    assert skipped == {
        "size_mismatch": 2,
        "image_unreadable": 1,
        "image_missing": 1,
        "no_labelled_frame": 1,
    }
    assert len(list((out / "good").glob("*.png"))) == 2
    # A bad sequence's label maps are passed through unchanged.
    assert (out / "small/00001.png").read_bytes() == (labels / "small/00001.png").read_bytes()
    assert "00099.png" in caplog.text and "broken/00001.jpg: cannot read image" in caplog.text


def test_resume_after_a_crash_is_byte_identical(tmp_path, monkeypatch):
    frames, labels = davis(tmp_path, (("a", 2, 1), ("b", 2, 1), ("c", 2, 1)))
    out = tmp_path / "out"
    args = ["video", str(frames), "--labels", str(labels), "-o", str(out), *FAST]
    args += ["--propagate", "none"]
    assert main(args) == 0
    uninterrupted = tree_bytes(out)

    class Killed(BaseException):
        pass

    real_write = RunState.write
    done = []

    def write_then_die(self, record):
        real_write(self, record)
        done.append(record.key)
        if record.key == "b":
            raise Killed

    import shutil

    shutil.rmtree(out)
    monkeypatch.setattr(RunState, "write", write_then_die)
    with pytest.raises(Killed):
        main(args)
    monkeypatch.setattr(RunState, "write", real_write)
    assert done == ["a", "b"]
    assert main([*args[:-2], "--propagate", "forward", "--resume"]) == 2  # other settings
    refined = []
    monkeypatch.setattr(
        RunState,
        "write",
        lambda self, record: (refined.append(record.key), real_write(self, record)),
    )
    assert main([*args, "--resume"]) == 0
    assert refined == ["c"]  # finished sequences are not refined again
    assert tree_bytes(out) == uninterrupted


@pytest.mark.extra("ray")
@pytest.mark.usefixtures("local_ray")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_the_ray_engine_writes_the_same_bytes(tmp_path):
    frames, labels = davis(tmp_path, (("a", 2, 1), ("b", 3, 2)))
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        args = ["video", str(frames), "--labels", str(labels), "-o", str(out), *FAST]
        extra = ["--engine", "ray", "--workers", "1"] if engine == "ray" else []
        assert main([*args, "--propagate", "none", *extra]) == 0
        outputs[engine] = tree_bytes(out)
    assert outputs["ray"] == outputs["local"] and len(outputs["local"]) == 5


@pytest.mark.extra("sam2")
def test_sam2_propagation_fills_the_unlabelled_frames(tmp_path):
    frames, labels = davis(tmp_path, (("cows", 3, 2),))
    out, summary = tmp_path / "out", tmp_path / "s.json"
    args = ["video", str(frames), "--labels", str(labels), "-o", str(out)]
    model = ["--model", "samrefiner.testing:tiny_sam2", "--no-progress", "--iterations", "1"]
    assert main([*args, *model, "--summary", str(summary)]) == 0
    sources = json.loads(summary.read_text())["frame_sources"]
    assert sum(sources.values()) == 6
    # Frame 1 has no label map: its objects are propagated (or lost: absent).
    assert sources.get("propagated", 0) + sources.get("absent", 0) >= 2
    assert len(list(out.rglob("*.png"))) == 3


@pytest.mark.slow
def test_sigkill_then_resume_redoes_only_the_unfinished_sequences(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers_runner import worker_pythonpath

    frames, labels = davis(tmp_path, tuple((f"s{k}", 3, 1) for k in range(8)))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "samrefiner.cli", "video", str(frames), "--labels"]
    command += [str(labels), "-o", str(out), *FAST, "--propagate", "none"]
    env = {**os.environ, "PYTHONPATH": worker_pythonpath()}
    subprocess.run(command, check=True, env=env, capture_output=True)
    uninterrupted = tree_bytes(out)
    assert len(uninterrupted) == 24
    import shutil

    shutil.rmtree(out)
    done = tmp_path / "out.samrefiner-state" / "done"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if done.is_dir() and len(list(done.glob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(done.glob("*.json")))
    assert 2 <= finished < 8, "the run ended before it could be killed"
    resumed = subprocess.run(
        [*command, "--resume", "--summary", str(tmp_path / "s.json")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["images_resumed"] == finished and summary["images_processed"] == 8
    assert tree_bytes(out) == uninterrupted
