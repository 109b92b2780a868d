"""The folder commands (instances, semantic, masks) on inputs named by URI (fsspec): the
in-memory and local file systems give the same outputs as local paths, byte for byte, and
bad files are reported and passed through as they are locally."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_runner import build_instances, build_masks, build_semantic, tree_bytes
from samrefiner.cli import main
from samrefiner.io.binary_folder import index_images, list_mask_files
from samrefiner.io.errors import InputError
from samrefiner.io.uri import as_location, list_uri_files
from samrefiner.runner.formats.mask_folders import MaskFolderDataset

fsspec = pytest.importorskip("fsspec", reason="needs fsspec (a dependency of torch)")

MODEL = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--no-progress"]
FAST = [*MODEL, "--iterations", "1"]


def with_junk_image(build: Callable[[Path], tuple[Path, Path]]) -> Callable:
    """``build`` plus an image that cannot be decoded, with a coarse file of its own."""

    def builder(root: Path) -> tuple[Path, Path]:
        images, coarse = build(root)
        (images / "junk.png").write_bytes(b"not an image")
        first = sorted(coarse.glob("*.png"))[0]
        (coarse / "junk.png").write_bytes(first.read_bytes())
        return images, coarse

    return builder


#: command -> (dataset builder, option naming the coarse folder, statuses a run must report)
COMMANDS = {
    "instances": (
        with_junk_image(build_instances),
        "--labels",
        {"image_missing", "mask_unreadable", "image_unreadable", "size_mismatch"},
    ),
    "semantic": (with_junk_image(build_semantic), "--labels", {"image_unreadable"}),
    "masks": (
        with_junk_image(build_masks),
        "--masks",
        {"image_missing", "mask_unreadable", "image_unreadable", "size_mismatch", "empty"},
    ),
}


def copy_to_memory(local: Path, root: str) -> str:
    """Copy the tree ``local`` to ``root`` in fsspec's memory file system; its URI."""
    fs = fsspec.filesystem("memory")
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe(f"{root}/{path.relative_to(local).as_posix()}", path.read_bytes())
    return f"memory://{root}"


@pytest.fixture
def memory_root(tmp_path) -> Iterator[str]:
    """A folder of the memory file system of this test's own, removed after it."""
    root = f"/samrefiner-folders-{tmp_path.name}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def uri_of(scheme: str, local: Path, memory_root: str) -> tuple[str, str]:
    """``local`` named as a URI of ``scheme`` and how messages name it: ``file`` names the
    folder in place (messages name its path), ``memory`` a copy in fsspec's memory file
    system (messages name the URI)."""
    if scheme == "file":
        return local.resolve().as_uri(), str(local.resolve())
    uri = copy_to_memory(local, f"{memory_root}/{local.name}")
    return uri, uri


def run(command: str, images: str, option: str, coarse: str, out: Path, *extra: str) -> int:
    return main([command, "--images", images, option, coarse, "-o", str(out), *FAST, *extra])


def summary_of(path: Path) -> dict:
    data = json.loads(path.read_text())
    keys = ("images_total", "images_processed", "images_skipped", "masks_total")
    return {k: data[k] for k in (*keys, "masks_by_status")}


@pytest.mark.parametrize("scheme", ["memory", "file"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_folder_command_on_uris_equals_local_paths(
    command, scheme, tmp_path, memory_root, caplog
) -> None:
    build, option, bad_statuses = COMMANDS[command]
    images, coarse = build(tmp_path / "data")
    local_out, remote_out = tmp_path / "local", tmp_path / "remote"
    local_summary, remote_summary = tmp_path / "local.json", tmp_path / "remote.json"
    assert (
        run(command, str(images), option, str(coarse), local_out, "--summary", str(local_summary))
        == 0
    )
    (image_uri, image_name), (coarse_uri, coarse_name) = (
        uri_of(scheme, images, memory_root),
        uri_of(scheme, coarse, memory_root),
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="samrefiner"):
        code = run(
            command, image_uri, option, coarse_uri, remote_out, "--summary", str(remote_summary)
        )
    assert code == 0
    assert tree_bytes(remote_out) == tree_bytes(local_out)
    assert tree_bytes(local_out)  # the run wrote its outputs
    summary = summary_of(remote_summary)
    assert summary == summary_of(local_summary)
    reported = set(summary["masks_by_status"]) | set(summary["images_skipped"])
    assert bad_statuses <= reported and summary["masks_by_status"].get("refined", 0) > 0
    # Bad inputs are reported naming them as they were given.
    log = caplog.text
    assert f"{image_name}/junk.png: cannot read image" in log
    if "mask_unreadable" in bad_statuses:
        bad = "e.png: cannot read label map" if command == "instances" else "y/2.png"
        assert f"{coarse_name}/{bad}" in log


def test_mask_statuses_and_messages_name_the_uri(tmp_path, memory_root) -> None:
    images, masks = build_masks(tmp_path)
    root = copy_to_memory(tmp_path, memory_root)
    dataset = MaskFolderDataset(f"{root}/images", f"{root}/masks", tmp_path / "out")
    local = MaskFolderDataset(images, masks, tmp_path / "out")
    keys = dataset.keys()
    assert keys == local.keys()
    for key in keys:
        job, local_job = dataset.load(key), local.load(key)
        assert job.image_status == local_job.image_status
        assert [(o.id, o.status) for o in job.passthrough] == [
            (o.id, o.status) for o in local_job.passthrough
        ]
        assert job.message == local_job.message.replace(str(masks), f"{root}/masks")
    missing = dataset.load("unmatched:z-1.png")
    assert missing.message == f"{root}/masks/z-1.png: no image matches this mask file"


def test_a_file_uri_is_a_local_folder_with_its_symbolic_link_rule(tmp_path) -> None:
    assert as_location("file:///data/a%20b") == Path("/data/a b")
    assert as_location("file://localhost/data") == Path("/data")
    assert as_location("s3://bucket/x") == "s3://bucket/x"
    images, masks = build_masks(tmp_path)
    outside = tmp_path / "outside.png"
    (images / "x.png").rename(outside)
    (images / "x.png").symlink_to(outside)
    dataset = MaskFolderDataset(images.as_uri(), masks.as_uri(), tmp_path / "out")
    job = dataset.load("x")
    assert job.image_status == "unsafe_path" and "outside" in job.message


def test_listing_a_uri_folder_follows_the_local_rules(tmp_path, memory_root) -> None:
    for rel in ("b.png", "a.jpg", "sub/c.PNG", ".hidden.png", ".git/d.png", "notes.txt"):
        path = tmp_path / "tree" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(path, format="PNG")
    uri = copy_to_memory(tmp_path / "tree", memory_root)
    assert list_uri_files(uri) == sorted(
        ["b.png", "a.jpg", "sub/c.PNG", ".hidden.png", ".git/d.png", "notes.txt"]
    )
    assert (
        list_mask_files(uri)
        == list_mask_files(tmp_path / "tree")
        == [
            Path("b.png"),
            Path("sub/c.PNG"),
        ]
    )
    remote, local = index_images(uri), index_images(tmp_path / "tree")
    assert list(remote) == list(local) == ["a", "b", "sub/c"]
    assert remote["sub/c"] == [f"{uri}/sub/c.PNG"]
    with pytest.raises(InputError, match="nothing: images folder not found"):
        index_images(f"{uri}/nothing")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_uris_are_one_line_errors(command, tmp_path, memory_root, capsys) -> None:
    build, option, _ = COMMANDS[command]
    images, coarse = build(tmp_path / "data")
    root = copy_to_memory(tmp_path / "data", memory_root)
    out = tmp_path / "out"
    cases = [
        # (images, coarse folder, output, expected message)
        ("nosuchprotocol://b/images", str(coarse), str(out), "fsspec knows no 'nosuchprotocol'"),
        (f"{root}/images", f"{root}/nothing", str(out), f"{root}/nothing: masks folder not found"),
        (f"{root}/none", str(coarse), str(out), f"{root}/none: images folder not found"),
        (str(images), str(coarse), f"{root}/out", "outputs must be local paths"),
    ]
    for image_arg, coarse_arg, out_arg, message in cases:
        code = main([command, "--images", image_arg, option, coarse_arg, "-o", out_arg, *MODEL])
        err = capsys.readouterr().err
        assert code == 2, message
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_coco_refuses_an_output_uri(tmp_path, capsys) -> None:
    annotations = tmp_path / "a.json"
    annotations.write_text("{}")
    args = ["coco", str(annotations), "--images", str(tmp_path), "-o", "s3://bucket/out.json"]
    assert main([*args, *MODEL]) == 2
    assert "--output s3://bucket/out.json: outputs must be local paths" in capsys.readouterr().err


def test_a_summary_uri_is_refused(tmp_path, capsys) -> None:
    annotations = tmp_path / "a.json"
    annotations.write_text("{}")
    args = ["coco", str(annotations), "--images", str(tmp_path), "-o", str(tmp_path / "o.json")]
    assert main([*args, *MODEL, "--summary", "s3://bucket/summary.json"]) == 2
    err = capsys.readouterr().err
    assert "--summary s3://bucket/summary.json: outputs must be local paths" in err
    assert not (tmp_path / "o.json").exists()
