"""Path rules: names taken from inputs stay inside their folder; outputs clash with nothing.

**Names from inputs.**
A name that comes from an input file (a COCO ``file_name``) or a file found in an input
folder (possibly a symbolic link) must not lead outside that folder: an annotation file
could otherwise make samrefiner read any file the user can read. Such a name is
*unsafe* -- absolute, with a ``..`` part, or resolving (through symbolic links) to a place
outside the folder -- and is refused before anything is opened, unless the caller
allows it (``--allow-outside-images``).

**Outputs against inputs** (:func:`check_clashes`). Before a command writes anything,
every path it will write (outputs, and the ones derived from them: state folder, lock
file) is compared with every path it reads and every other path it writes, after
resolving symbolic links (and, for files that exist, by identity, which catches hard
links). An output that *is* an input or another output, an output inside an input
folder, an input inside a folder the command writes into, or an output inside a folder
samrefiner replaces as a whole (a state folder) is refused in one line naming both paths
and the options that gave them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from samrefiner.io.errors import InputError, said
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


def _allow_outside() -> str:
    return said("allow_outside_images=True", "--allow-outside-images")


def check_inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Return ``path`` when it resolves (symbolic links followed) inside ``root``.

    Raises:
        UnsafePathError: it resolves outside ``root``.
    """
    base, target = Path(root).resolve(), Path(path).resolve()
    if not target.is_relative_to(base):
        raise UnsafePathError(
            f"{path}: resolves to {target}, outside {root}; pass {_allow_outside()} "
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
                f"{_allow_outside()} to read it anyway"
            )
        return join_uri(str(root), name)  # type: ignore[return-value]
    path = Path(root) / name
    if allow_outside:
        return path
    why = _lexically_unsafe(name)
    if why is not None:
        raise UnsafePathError(
            f"{name!r} {why}: image names must stay inside {root}; pass "
            f"{_allow_outside()} to read it anyway"
        )
    return check_inside(root, path)


class PathClashError(InputError):
    """An output that would replace or remove an input or another output."""


@dataclass(frozen=True)
class NamedPath:
    """A path a command reads or writes, with the option that names it.

    Attributes:
        option: how the user named it, for the error (``"--summary"``, ``"ANNOTATIONS"``,
            ``"the state folder"``).
        path: a local path, or None for an option that was not given (skipped). A URI
            (:mod:`samrefiner.io.uri`) never clashes with a local path and is skipped.
        folder: the whole tree below it belongs to it: no output may lie inside an input
            folder (it could be read back), no input inside an output folder (the
            command writes, and removes temporaries, anywhere in it).
        private: (outputs) a folder samrefiner replaces or removes as a whole (a state
            folder): no other output may lie inside it either.
    """

    option: str
    path: str | os.PathLike[str] | None
    folder: bool = False
    private: bool = False

    def __str__(self) -> str:
        return f"{self.option} {self.path}"


def _real(named: NamedPath) -> Path | None:
    """``named.path`` resolved through every symbolic link, or None (absent or a URI)."""
    if named.path is None or is_uri(named.path):
        return None
    return Path(os.path.realpath(named.path))


def _same(a: Path, b: Path) -> bool:
    """The same place: one resolved path, or one existing file (hard links, mounts)."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _inside(child: Path, folder: Path) -> bool:
    return child != folder and child.is_relative_to(folder)


def check_clashes(inputs: Iterable[NamedPath], outputs: Iterable[NamedPath]) -> None:
    """Refuse outputs that would overwrite or remove an input or another output.

    Args:
        inputs: what the command reads.
        outputs: what it writes, derived paths included (a run's state folder and lock).

    Raises:
        PathClashError: the first clash, naming both paths and their options.
    """
    ins = [(n, r) for n in inputs if (r := _real(n)) is not None]
    outs = [(n, r) for n in outputs if (r := _real(n)) is not None]
    for out, o in outs:
        for src, i in ins:
            if _same(o, i):
                raise PathClashError(
                    f"{out}: is the input {src}{_via(out, src)}; writing it would "
                    "overwrite the input: choose another output"
                )
            if src.folder and _inside(o, i):
                raise PathClashError(f"{out}: must not be, or lie inside, the input {src}")
            if out.folder and _inside(i, o):
                raise PathClashError(
                    f"{src}: the input lies inside {out}, which this command writes into; "
                    "choose an output outside the inputs"
                )
    for k, (a, ra) in enumerate(outs):
        for b, rb in outs[k + 1 :]:
            if _same(ra, rb):
                raise PathClashError(
                    f"{b}: is also {a}{_via(a, b)}; one output would replace the other"
                )
            for (outer, ro), (inner, ri) in (((a, ra), (b, rb)), ((b, rb), (a, ra))):
                if outer.private and _inside(ri, ro):
                    raise PathClashError(
                        f"{inner}: lies inside {outer}, which samrefiner replaces as a whole"
                    )


def _via(a: NamedPath, b: NamedPath) -> str:
    """How two differently named paths are one: `` (both lead to REAL)`` through symbolic
    links, `` (one file under two names)`` through a hard link; empty when named alike."""
    if os.path.abspath(a.path) == os.path.abspath(b.path):  # type: ignore[arg-type]
        return ""
    real = _real(a)
    return f" (both lead to {real})" if real == _real(b) else " (one file under two names)"
