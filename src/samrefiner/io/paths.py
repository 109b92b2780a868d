"""File names taken from inputs: kept inside the folder they are relative to.

A name that comes from an input file (a COCO ``file_name``) or a file found in an input
folder (possibly a symbolic link) must not lead outside that folder: an annotation file
could otherwise make samrefiner read any file the user can read. Such a name is
*unsafe* -- absolute, with a ``..`` part, or resolving (through symbolic links) to a place
outside the folder -- and is refused before anything is opened, unless the caller
allows it (``--allow-outside-images``).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from samrefiner.io.images import InputError
from samrefiner.io.uri import is_uri, join_uri


class UnsafePathError(InputError):
    """A file name that leads outside the folder it must stay in."""


def _lexically_unsafe(name: str) -> str | None:
    """Why ``name`` is unsafe on its face (absolute, drive, ``..``), or None."""
    for flavour in (PurePosixPath(name), PureWindowsPath(name)):
        if flavour.is_absolute() or flavour.drive or flavour.root:
            return "is an absolute path"
        if ".." in flavour.parts:
            return "contains '..'"
    return None


def check_inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Return ``path`` when it resolves (symbolic links followed) inside ``root``.

    Raises:
        UnsafePathError: it resolves outside ``root``.
    """
    base, target = Path(root).resolve(), Path(path).resolve()
    if not target.is_relative_to(base):
        raise UnsafePathError(
            f"{path}: resolves to {target}, outside {root}; pass --allow-outside-images "
            "to read it anyway"
        )
    return Path(path)


def safe_join(root: str | os.PathLike[str], name: str, *, allow_outside: bool = False) -> Path:
    """``root / name`` for a ``name`` read from an input, checked to stay inside ``root``.

    Args:
        root: the folder names are relative to (``--images``).
        name: the name from the input.
        allow_outside: skip the check (``--allow-outside-images``).

    A URI ``root`` (:mod:`samrefiner.io.uri`) gives the URI ``root/name`` (a string).

    Raises:
        UnsafePathError: ``name`` is absolute, contains ``..``, or resolves outside
            ``root`` through a symbolic link (unless ``allow_outside``).
    """
    if is_uri(root):  # an object store has no symbolic links: the name is checked alone
        why = None if allow_outside else _lexically_unsafe(name)
        if why is not None:
            raise UnsafePathError(
                f"{name!r} {why}: image names must stay inside {root}; pass "
                "--allow-outside-images to read it anyway"
            )
        return join_uri(str(root), name)  # type: ignore[return-value]
    path = Path(root) / name
    if allow_outside:
        return path
    why = _lexically_unsafe(name)
    if why is not None:
        raise UnsafePathError(
            f"{name!r} {why}: image names must stay inside {root}; pass "
            "--allow-outside-images to read it anyway"
        )
    return check_inside(root, path)
