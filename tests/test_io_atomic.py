"""Atomic writes: all or nothing, usual permissions, stale temporaries cleaned up."""

from __future__ import annotations

import os
import stat

import pytest

from samrefiner.io import atomic_write, atomic_write_json, remove_stale_temporaries


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "out.json"
    atomic_write_json(dest, {"a": 1})
    with pytest.raises(RuntimeError), atomic_write(dest, "w") as handle:
        handle.write('{"half": ')
        raise RuntimeError("disk full")
    assert dest.read_text(encoding="utf-8").strip() == '{\n  "a": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_written_files_follow_the_umask(tmp_path):
    dest = tmp_path / "x.json"
    atomic_write_json(dest, [])
    old = os.umask(0)
    os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~old


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".a.png.ab12_XyZ.tmp", tmp_path / "sub" / ".b.png.QWErty12.tmp"]
    keep = [tmp_path / "a.png", tmp_path / ".hidden.tmp", tmp_path / "c.tmp"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)

    out = tmp_path / "refined[1].json"
    mine = tmp_path / ".refined[1].json.abcdefgh.tmp"
    other = tmp_path / ".other.json.abcdefgh.tmp"
    mine.write_bytes(b"x")
    other.write_bytes(b"x")
    assert remove_stale_temporaries(out) == [mine]
    assert other.exists()
