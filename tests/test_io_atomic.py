"""Atomic writes: all or nothing, usual permissions, stale temporaries cleaned up, no
write through a link."""

from __future__ import annotations

import json
import os
import stat

import pytest

from samrefiner.io import atomic_write, atomic_write_json, remove_stale_temporaries
from samrefiner.io.atomic import open_own_file


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


def test_the_mode_is_set_on_the_temporary_file_not_on_what_its_name_leads_to(tmp_path, monkeypatch):
    """Another process swapping the temporary file for a link mid-write changes nothing."""
    import samrefiner.io.atomic as atomic

    victim = tmp_path / "victim.txt"
    victim.write_text("not ours")
    victim.chmod(0o600)
    real_fsync = atomic.os.fsync

    def swap_after_fsync(fd: int) -> None:
        real_fsync(fd)
        (tmp := next(tmp_path.glob(".out.json.*.tmp"))).unlink()
        tmp.symlink_to(victim)

    monkeypatch.setattr(atomic.os, "fsync", swap_after_fsync)
    atomic_write_json(tmp_path / "out.json", {"a": 1})
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert victim.read_text() == "not ours"


def test_a_link_at_the_destination_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("not ours")
    dest = tmp_path / "out.json"
    dest.symlink_to(victim)
    atomic_write_json(dest, {"a": 1})
    assert victim.read_text() == "not ours"
    assert not dest.is_symlink() and json.loads(dest.read_text()) == {"a": 1}


@pytest.mark.parametrize("kind", ["symlink", "hard link"])
def test_open_own_file_refuses_a_link(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("not ours")
    path = tmp_path / "own.lock"
    if kind == "symlink":
        path.symlink_to(victim)
    else:
        os.link(victim, path)
    with pytest.raises(OSError, match="is a link") as caught:
        open_own_file(path)
    assert caught.value.filename == str(path)
    assert victim.read_text() == "not ours"


def test_open_own_file_creates_and_reopens_a_plain_file(tmp_path):
    path = tmp_path / "own.lock"
    fd = open_own_file(path)
    os.write(fd, b"first")
    os.close(fd)
    fd = open_own_file(path)
    assert os.read(fd, 16) == b"first"
    os.close(fd)
