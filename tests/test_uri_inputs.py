"""COCO inputs named by URI (fsspec): the in-memory file system gives the same output as
local paths; bad URIs are reported like bad paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers_runner import build_coco
from samrefiner.cli import main
from samrefiner.io.errors import InputError
from samrefiner.io.images import read_image
from samrefiner.io.uri import is_uri, join_uri, read_uri

fsspec = pytest.importorskip("fsspec", reason="needs fsspec (a dependency of torch)")

MODEL = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--no-progress"]


@pytest.fixture
def memory_copy(tmp_path):
    """The COCO test dataset, also copied into fsspec's memory file system."""
    annotations, images = build_coco(tmp_path)
    fs = fsspec.filesystem("memory")
    root = f"/samrefiner-test-{tmp_path.name}"
    fs.pipe(f"{root}/coarse.json", annotations.read_bytes())
    for path in images.rglob("*"):
        if path.is_file():
            fs.pipe(f"{root}/images/{path.relative_to(images).as_posix()}", path.read_bytes())
    yield annotations, images, f"memory://{root}"
    fs.rm(root, recursive=True)


def test_uris_are_recognised() -> None:
    assert is_uri("s3://bucket/key") and is_uri("memory://x")
    assert not is_uri("C:\\data") and not is_uri("images/") and not is_uri(Path("a"))
    assert join_uri("s3://b/images/", "sub/x.png") == "s3://b/images/sub/x.png"


def test_coco_from_memory_uris_equals_local_paths(memory_copy, tmp_path) -> None:
    annotations, images, root = memory_copy
    local, remote = tmp_path / "local.json", tmp_path / "remote.json"
    common = ["--min-score", "0.3", "--iterations", "1", *MODEL]
    assert main(["coco", str(annotations), "--images", str(images), "-o", str(local), *common]) == 0
    uri_args = ["coco", f"{root}/coarse.json", "--images", f"{root}/images", "-o", str(remote)]
    assert main([*uri_args, *common]) == 0
    # Equal but for the messages, which name the files as they were given.
    assert without_messages(remote) == without_messages(local)
    statuses = {a["id"]: a["samrefiner"]["status"] for a in without_messages(remote)}
    assert statuses[30] == "image_missing" and statuses[40] == "image_unreadable"
    messages = [
        a["samrefiner"].get("message", "") for a in json.loads(remote.read_text())["annotations"]
    ]
    assert f"{root}/images/junk.png: cannot read image" in "".join(messages)


def without_messages(path: Path) -> list[dict]:
    annotations = json.loads(path.read_text())["annotations"]
    for ann in annotations:
        ann["samrefiner"].pop("message", None)
    return annotations


def test_bad_uris_name_the_problem(memory_copy, tmp_path, capsys) -> None:
    _, _, root = memory_copy
    with pytest.raises(InputError, match="image file not found"):
        read_image(f"{root}/images/nothing.png")
    with pytest.raises(InputError, match="cannot open this URI"):
        read_uri("nosuchprotocol://bucket/x.json")
    out = str(tmp_path / "o.json")
    assert main(["coco", f"{root}/none.json", "--images", f"{root}/images", "-o", out, *MODEL]) == 2
    assert "none.json: COCO file not found" in capsys.readouterr().err
