"""Error messages name an option as the caller spelled it: the library parameter for
Python callers, the flag inside the ``samrefiner`` command (``io.errors.said``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrefiner.cli import main
from samrefiner.cluster import ClusterError, RayOptions, check_room
from samrefiner.io.errors import (
    command_line_spelling,
    said,
    set_command_line_spelling,
    spelling_is_command_line,
)
from samrefiner.io.images import ImageTooLargeError
from samrefiner.io.paths import UnsafePathError, safe_join
from samrefiner.measure.evaluate import evaluate_coco
from samrefiner.runner.journal.state import RunState, StateError


def test_said_follows_the_caller_and_the_block_restores_it() -> None:
    assert not spelling_is_command_line()
    assert said("resume=True", "--resume") == "resume=True"
    with pytest.raises(RuntimeError), command_line_spelling():
        assert said("resume=True", "--resume") == "--resume"
        raise RuntimeError("a failing command")
    assert said("resume=True", "--resume") == "resume=True"  # back after the failure
    set_command_line_spelling(True)
    try:
        assert spelling_is_command_line()
    finally:
        set_command_line_spelling(False)


def _outside(tmp_path: Path) -> None:
    safe_join(tmp_path, "../elsewhere.jpg")


def _too_large(tmp_path: Path) -> None:
    raise ImageTooLargeError(tmp_path / "big.png", 10, 5)


def _resumed_with_other_settings(tmp_path: Path) -> None:
    RunState(tmp_path / "out.json").start({"iterations": 1}, resume=False)
    RunState(tmp_path / "out.json").start({"iterations": 3}, resume=True)


def _id_match_without_ids(tmp_path: Path) -> None:
    rle = {"size": [4, 4], "counts": "0@0"}
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "segmentation": rle, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "segmentation": rle, "score": 1.0}])
    )
    evaluate_coco(tmp_path / "pred.json", tmp_path / "gt.json", match="id")


def _cluster_too_small(tmp_path: Path) -> None:
    check_room(RayOptions(workers=4, cpus_per_worker=2.0), 4, 0.0, {"CPU": 2.0})


#: (what goes wrong, the exception, the library's words, the command line's words)
CASES = [
    (_outside, UnsafePathError, "allow_outside_images=True", "--allow-outside-images"),
    (_too_large, ImageTooLargeError, "RunOptions.max_image_pixels", "--max-image-pixels"),
    (_resumed_with_other_settings, StateError, "with resume=False", "without --resume"),
    (_id_match_without_ids, ValueError, "match='id'", "--match id"),
    (_cluster_too_small, ClusterError, "smaller cpus_per_worker", "smaller --cpus-per-worker"),
]


@pytest.mark.parametrize(
    ("make", "error", "library", "command_line"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_a_message_names_the_parameter_or_the_flag(
    tmp_path: Path, make, error, library: str, command_line: str
) -> None:
    for caller in ("library", "command"):
        (tmp_path / caller).mkdir()
    with pytest.raises(error) as raised:
        make(tmp_path / "library")
    assert library in str(raised.value) and command_line not in str(raised.value)
    with command_line_spelling(), pytest.raises(error) as raised:
        make(tmp_path / "command")
    assert command_line in str(raised.value) and library not in str(raised.value)


def test_the_command_names_flags_in_a_run_and_leaves_the_library_as_it_was(
    tmp_path: Path, caplog
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "../a.png", "height": 8, "width": 8}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "coarse.json").write_text(json.dumps(coco))
    argv = ["coco", str(tmp_path / "coarse.json"), "--images", str(images)]
    argv += ["-o", str(tmp_path / "out.json"), "--model", "samrefiner.testing:tiny_sam"]
    argv += ["--random-weights", "--device", "cpu", "--no-progress"]
    with caplog.at_level("WARNING", logger="samrefiner.runner"):
        assert main([*argv, "--from-boxes"]) == 1  # nothing could be processed
    assert "unsafe_path" in caplog.text
    assert "--allow-outside-images" in caplog.text
    assert "allow_outside_images=True" not in caplog.text
    assert not spelling_is_command_line()
