"""check_clashes: outputs against inputs and each other, through links, one line each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samrefiner.io.paths import NamedPath, PathClashError, check_clashes


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``in/a.json``, ``in/img/x.png``, ``out/`` and links ``alias -> in``, ``hard.json``
    (a hard link of ``in/a.json``)."""
    (tmp_path / "in" / "img").mkdir(parents=True)
    (tmp_path / "in" / "a.json").write_text("{}")
    (tmp_path / "in" / "img" / "x.png").write_bytes(b"png")
    (tmp_path / "out").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "in", target_is_directory=True)
    os.link(tmp_path / "in" / "a.json", tmp_path / "hard.json")
    return tmp_path


# (inputs, outputs, the error's fragment or None when there is no clash); paths relative
# to the tree, (option, path, folder, private).
CLASHES = {
    "output_is_input": ([("A", "in/a.json")], [("--summary", "in/a.json")], "is the input A"),
    "output_is_input_through_a_folder_link": (
        [("A", "in/a.json")],
        [("--summary", "alias/a.json")],
        "both lead to",
    ),
    "output_is_input_through_a_hard_link": (
        [("A", "in/a.json")],
        [("--summary", "hard.json")],
        "is the input A .* \\(one file under two names\\)",
    ),
    "output_inside_input_folder": (
        [("--images", "in/img", True)],
        [("-o", "in/img/new.json")],
        "must not be, or lie inside, the input --images",
    ),
    "output_among_files_of_a_plain_input": (
        [("--images", "in/img")],
        [("-o", "in/img/o.json")],
        None,
    ),
    "input_inside_output_folder": (
        [("A", "in/a.json")],
        [("-o", "in", True)],
        "the input lies inside -o",
    ),
    "input_beside_output_file": ([("A", "in/a.json")], [("-o", "in/b.json")], None),
    "two_outputs_one_file": (
        [],
        [("-o", "out/r.json"), ("--summary", "out/r.json")],
        "is also -o",
    ),
    "output_inside_private_folder": (
        [],
        [("state", "out/s", True, True), ("--summary", "out/s/x.json")],
        "replaces as a whole",
    ),
    "output_inside_plain_output_folder": (
        [],
        [("-o", "out", True), ("--table", "out/t.csv")],
        None,
    ),
    "uri_input_never_clashes": ([("A", "s3://bucket/in/a.json")], [("-o", "in/a.json")], None),
    "absent_option_skipped": ([("A", None)], [("-o", "out/r.json"), ("--summary", None)], None),
}


def _named(tree: Path, spec: tuple) -> NamedPath:
    option, path, *kind = spec
    if path is not None and "://" not in path:
        path = str(tree / path)
    return NamedPath(option, path, *kind)


@pytest.mark.parametrize("case", sorted(CLASHES))
def test_check_clashes(tree: Path, case: str) -> None:
    inputs, outputs, fragment = CLASHES[case]
    ins = [_named(tree, s) for s in inputs]
    outs = [_named(tree, s) for s in outputs]
    if fragment is None:
        check_clashes(ins, outs)
        return
    with pytest.raises(PathClashError, match=fragment) as caught:
        check_clashes(ins, outs)
    message = str(caught.value)
    assert "\n" not in message
    named = [n for n in (*ins, *outs) if n.option in message]
    assert len(named) == 2 and all(str(n.path) in message for n in named), message
