"""Matching mask files to images: the documented naming rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrefiner.io import InputError
from samrefiner.io.binary_folder import (
    file_key,
    group_masks,
    index_images,
    list_mask_files,
    match_mask,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_index_images_is_recursive_sorted_and_skips_hidden(tmp_path) -> None:
    for name in [
        "b.jpg",
        "a.PNG",
        "seq/00001.jpg",
        "seq/00000.jpeg",
        ".hidden.jpg",
        ".cache/x.jpg",
        "notes.txt",
        "dup.jpg",
        "dup.png",
    ]:
        touch(tmp_path / name)
    index = index_images(tmp_path)
    assert list(index) == ["a", "b", "dup", "seq/00000", "seq/00001"]
    assert [p.name for p in index["dup"]] == ["dup.jpg", "dup.png"]
    assert index["seq/00000"] == [tmp_path / "seq" / "00000.jpeg"]


def test_missing_folders_are_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="images folder not found"):
        index_images(tmp_path / "nope")
    with pytest.raises(InputError, match="masks folder not found"):
        list_mask_files(tmp_path / "nope")


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ("bear_00000.png", "bear_00000"),  # rule 1: same name
        ("bmx/00000.png", "bmx/00000"),  # rule 1 in a sub-folder
        ("bear_00000/1.png", "bear_00000"),  # rule 2: one folder per image
        ("bear_00000/sub/1.png", None),  # only the direct folder counts
        ("bear_00000-3.png", "bear_00000"),  # rule 3: dash suffix
        ("2007_1-15-1.png", "2007_1"),  # the names `samrefiner split` writes
        ("bmx-trees-2.png", "bmx-trees"),  # longest image name wins over "bmx"
        ("bmx-2.png", "bmx"),
        ("bmx/00000-7.png", "bmx"),  # rule 2 (folder "bmx") comes before rule 3
        ("bear_000001.png", None),  # a longer name is not a dash suffix
        ("other.png", None),
    ],
)
def test_match_mask_rules(mask: str, expected: str | None) -> None:
    keys = {"bear_00000", "bmx", "bmx-trees", "bmx/00000", "2007_1"}
    assert match_mask(Path(mask), keys) == expected


def test_group_masks_keeps_order_and_lists_unmatched(tmp_path) -> None:
    for name in ["a-2.png", "a-1.png", "b/x.png", "zz.png", "a.txt"]:
        touch(tmp_path / name)
    files = list_mask_files(tmp_path)
    assert [f.as_posix() for f in files] == ["a-1.png", "a-2.png", "b/x.png", "zz.png"]
    grouped = group_masks(files, {"a": 1, "b": 1})
    assert {k: [p.as_posix() for p in v] for k, v in grouped.by_image.items()} == {
        "a": ["a-1.png", "a-2.png"],
        "b": ["b/x.png"],
    }
    assert [p.as_posix() for p in grouped.unmatched] == ["zz.png"]


def test_file_key() -> None:
    assert file_key(Path("seq/00000.png")) == "seq/00000"
    assert file_key(Path("a.b.png")) == "a.b"
