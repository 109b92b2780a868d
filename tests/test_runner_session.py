"""The library session (samrefiner.runner.run_session): the command line's guarantees for
a Python caller; the RefinerSpec the Ray actors receive; the run's own image limit."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
from PIL import Image

from helpers_runner import COCO_MIN_SCORE, TINY_MODEL_ARGS, FakeRefiner, build_coco, tree_bytes
from samrefiner.cli import main
from samrefiner.io.coco import load_coco
from samrefiner.runner import (
    CocoDataset,
    RefinerSpec,
    RunLock,
    RunLockedError,
    RunOptions,
    RunState,
    RunWriteError,
    run_dataset,
    run_session,
    state_dir_for,
)

QUIET = RunOptions(workers=1, prefetch=2, progress=False)


def _coco(tmp_path, out):
    ann_path, images = build_coco(tmp_path)
    return ann_path, images, CocoDataset(load_coco(ann_path), images, out, min_score=COCO_MIN_SCORE)


def test_the_library_run_refuses_a_second_run_exactly_as_the_command_line(tmp_path, capsys) -> None:
    out = tmp_path / "out" / "refined.json"
    ann_path, images, dataset = _coco(tmp_path, out)
    argv = ["coco", str(ann_path), "--images", str(images), "-o", str(out)]
    argv += [*TINY_MODEL_ARGS, "--min-score", str(COCO_MIN_SCORE)]
    with RunLock(out):
        with pytest.raises(RunLockedError) as refused:
            run_session(dataset, FakeRefiner(), out, QUIET, fingerprint={"case": 1})
        assert main(argv) == 2
        cli_error = capsys.readouterr().err
    assert f"another samrefiner run (process {os.getpid()})" in str(refused.value)
    assert cli_error == f"samrefiner coco: error: {refused.value}\n"
    assert not state_dir_for(out).exists() and not out.exists()
    # Once the lock is free, the library run goes through and leaves only its output.
    summary = run_session(dataset, FakeRefiner(), out, QUIET, fingerprint={"case": 1})
    assert summary.images_processed > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["refined.json"]


def test_the_library_run_writes_what_the_engine_alone_writes(tmp_path) -> None:
    outs = [tmp_path / "a" / "refined.json", tmp_path / "b" / "refined.json"]
    _, _, dataset = _coco(tmp_path, outs[0])
    state = RunState(outs[0])
    outs[0].parent.mkdir()
    state.start({"case": 2}, resume=False)
    alone = run_dataset(dataset, FakeRefiner(), state, QUIET)
    state.remove()
    _, _, dataset = _coco(tmp_path, outs[1])
    session = run_session(dataset, FakeRefiner(), outs[1], QUIET, fingerprint={"case": 2})
    assert outs[0].read_bytes() == outs[1].read_bytes()
    a, b = alone.to_json(), session.to_json()
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert a == b


def test_the_library_run_resumes_and_refuses_another_fingerprint(tmp_path, caplog) -> None:
    from samrefiner.runner import StateError

    out = tmp_path / "out" / "refined.json"
    _, _, dataset = _coco(tmp_path, out)
    stop = RuntimeError("stop after the first image")

    def crash(record) -> None:
        raise stop

    with pytest.raises(RuntimeError):
        run_session(dataset, FakeRefiner(), out, QUIET, fingerprint={"v": 1}, on_record=crash)
    assert state_dir_for(out).is_dir()  # kept for a resumed run
    with pytest.raises(StateError, match="other settings"):
        run_session(dataset, FakeRefiner(), out, QUIET, fingerprint={"v": 2}, resume=True)
    summary = run_session(dataset, FakeRefiner(), out, QUIET, fingerprint={"v": 1}, resume=True)
    assert summary.images_resumed == 1
    assert not state_dir_for(out).exists()


def test_an_unwritable_output_is_refused_before_any_work(tmp_path) -> None:
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "refined.json"
    _, _, dataset = _coco(tmp_path, out)
    with pytest.raises(RunWriteError, match=r"cannot be written: .*is not a folder"):
        run_session(dataset, FakeRefiner(), out, QUIET, fingerprint={})


def test_the_ray_engine_needs_a_spec(tmp_path) -> None:
    from samrefiner.cluster import RayOptions

    out = tmp_path / "out.json"
    _, _, dataset = _coco(tmp_path, out)
    with pytest.raises(TypeError, match="RefinerSpec"):
        run_session(dataset, FakeRefiner(), out, RunOptions(ray=RayOptions()), fingerprint={})


def test_unpickling_the_actors_build_function_imports_no_cli() -> None:
    """What each Ray actor receives (the spec's bound ``build``, adapt's ``load_backend``)
    is plain data: loading it in a fresh process loads no ``samrefiner.cli`` module."""
    import functools

    from samrefiner.cli import build_parser
    from samrefiner.cli.common import model_spec_of, spec_of

    args = build_parser().parse_args(["coco", "a.json", "--images", "i", "-o", "o.json"])
    blobs = [
        pickle.dumps(spec_of(args).build),
        pickle.dumps(functools.partial(model_spec_of(args).load_backend, cached=False)),
    ]
    code = (
        "import pickle, sys\n"
        "for blob in sys.stdin.buffer.read().split(b'<cut>'):\n"
        "    pickle.loads(blob)\n"
        "print(sorted(m for m in sys.modules if m.startswith('samrefiner.cli')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=b"<cut>".join(blobs),
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout
    assert out.decode().strip() == "[]"


def test_the_spec_fingerprint_is_the_command_lines(tmp_path) -> None:
    from samrefiner.cli import build_parser
    from samrefiner.cli.common import spec_of
    from samrefiner.cli.dataset_run import fingerprint

    argv = ["coco", "a.json", "--images", "i", "-o", "o.json", "--adapter", str(tmp_path)]
    args = build_parser().parse_args([*argv, "--iterations", "3", "--threads", "2"])
    spec = spec_of(args)
    assert spec == RefinerSpec(
        adapter=str(tmp_path), config=spec.config, embedding_cache_bytes=4 << 30
    )
    assert spec.config.iterations == 3 and spec.config.threads == 2
    printed = fingerprint(args, {"x": 1})
    assert printed["model"] == spec.fingerprint()["model"]
    assert printed["model"]["adapter"] == str(tmp_path.resolve())
    assert printed["config"] == spec.config.result_settings()
    assert printed["limits"] == {"max_image_pixels": 89_478_485, "allow_outside_images": False}


def test_the_image_limit_is_the_runs_not_the_process(tmp_path) -> None:
    """``RunOptions.max_image_pixels`` applies to the run's reads only: PIL's process-wide
    limit is neither read nor changed, and another run keeps its own."""
    before = Image.MAX_IMAGE_PIXELS
    outs = [tmp_path / "small" / "refined.json", tmp_path / "big" / "refined.json"]
    statuses = []
    for out, limit in zip(outs, (100, None), strict=True):
        _, _, dataset = _coco(tmp_path, out)
        options = RunOptions(workers=1, prefetch=2, progress=False, max_image_pixels=limit)
        run_session(dataset, FakeRefiner(), out, options, fingerprint={})
        entries = [a["samrefiner"]["status"] for a in json.loads(out.read_text())["annotations"]]
        statuses.append(entries)
        assert before == Image.MAX_IMAGE_PIXELS
    assert "image_too_large" in statuses[0] and "image_too_large" not in statuses[1]
    assert tree_bytes(outs[1].parent)  # written


def test_run_options_refuse_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="max_image_pixels"):
        RunOptions(max_image_pixels=0)


def test_a_run_limit_above_pils_own_guard_opens_the_image(tmp_path, monkeypatch) -> None:
    """PIL refuses images over twice its process-wide limit by itself; a read whose own
    limit admits one opens it all the same, and leaves PIL's limit as it was."""
    from samrefiner.io.images import ImageTooLargeError, image_pixel_limit, read_image

    path = tmp_path / "image.png"
    Image.new("RGB", (8, 5)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(ImageTooLargeError, match="image has 40 pixels, more than the limit of 10"):
        read_image(path)  # outside a run: PIL's limit
    for limit in (None, 40):
        with image_pixel_limit(limit):
            assert read_image(path).shape == (5, 8, 3)
        assert Image.MAX_IMAGE_PIXELS == 10
    with image_pixel_limit(39), pytest.raises(ImageTooLargeError, match="limit of 39 "):
        read_image(path)
