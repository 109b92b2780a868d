"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Each writer writes to a temporary file in the destination folder (same file system),
flushes and fsyncs it, then ``os.replace``-s it onto the destination. On any error the
temporary file is removed and the destination is left as it was.

No write goes through a link samrefiner did not make. The temporary file is created
exclusively (``O_EXCL``, ``O_NOFOLLOW``: never an existing file or link) and its mode is
set on the open file, not by name. A symbolic link at the destination is *replaced* by
the new file (``os.replace`` renames over the link itself); the file it pointed to is
left as it was. Files samrefiner opens in place, such as a run's lock file, are opened
with :func:`open_own_file`, which refuses a link.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@functools.lru_cache(maxsize=1)
def default_file_mode() -> int:
    """Mode a newly created file gets under the process umask (``mkstemp`` uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the ``with`` block succeeds.

    Args:
        path: Destination file. Its folder is created if needed.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        encoding = None if mode == "wb" else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            chmod_open_file(handle.fileno(), tmp_name, default_file_mode())
        os.replace(tmp_name, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def chmod_open_file(fd: int, name: str, mode: int) -> None:
    """Set the mode of the open file ``fd`` (by name only where the OS cannot by handle:
    the name could meanwhile be another file, or a link)."""
    if os.chmod in os.supports_fd:
        os.chmod(fd, mode)
    else:  # Windows before Python 3.13
        os.chmod(name, mode)


#: ``os.open`` flag refusing a symbolic link as the last part of the path (0 where absent).
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

#: What :func:`open_own_file` says of a link it refuses.
LINK_REFUSED = "is a link; samrefiner does not write through a link it did not make: remove it"


def open_own_file(path: str | os.PathLike[str], flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Open (creating it when absent) a file samrefiner writes in place, such as a lock.

    Never through a link: a symbolic link at ``path`` is refused (``O_NOFOLLOW``), and so
    is anything but a regular file with a single name (writing to a hard link would change
    the file it shares with another name). Returns the file descriptor.

    Raises:
        OSError: naming ``path``; a link has :data:`LINK_REFUSED` as its ``strerror``.
    """
    if not O_NOFOLLOW and os.path.islink(path):  # no O_NOFOLLOW (Windows): check by name
        raise OSError(errno.ELOOP, LINK_REFUSED, str(path))
    try:
        fd = os.open(path, flags | O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and os.path.islink(path)):
            raise OSError(errno.ELOOP, LINK_REFUSED, str(path)) from exc
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    if st.st_nlink > 1:  # 0 is fine: another process removed it after we opened it
        os.close(fd)
        raise OSError(errno.EMLINK, LINK_REFUSED, str(path))
    return fd


# Temporary names: "." + destination name + "." + mkstemp's 8 random characters + ".tmp".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files that a killed process left behind for ``path``.

    ``path`` is an output file (its own temporaries beside it are removed) or an output
    folder (every temporary below it is removed). Returns the removed paths.
    """
    target = Path(path)
    if target.is_dir():
        candidates = [p for p in target.rglob(".*.tmp") if _TEMPORARY.match(p.name)]
    else:
        candidates = [
            p
            for p in target.parent.glob(f".{glob_escape(target.name)}.*.tmp")
            if _TEMPORARY.match(p.name)
        ]
    removed = []
    for candidate in candidates:
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob wildcards escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Serialise ``obj`` as UTF-8 JSON to ``path`` atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=indent, ensure_ascii=False)
        handle.write("\n")
