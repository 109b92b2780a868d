"""Inputs named by URI (``s3://bucket/images``, ``gs://...``), read through fsspec.

Cluster data usually lives in object stores. The inputs of the dataset commands (the
COCO annotation file, and the image, label-map and mask folders) may be given as URIs
that `fsspec <https://filesystem-spec.readthedocs.io>`_ understands; every other path is
a local path, as before, and so is a ``file://`` URI. Outputs are always local paths (or
a shared file system mounted as one). The protocol's own package must be installed
(``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``); credentials come from that package's
usual places (environment, config files, instance roles), as for Ray Data's own readers.

A URI is recognised by its ``scheme://`` prefix (so ``C:\\data`` stays a path).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from samrefiner.io.errors import InputError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(text: Any) -> bool:
    """True when ``text`` is a string with a ``scheme://`` prefix."""
    return isinstance(text, str) and _SCHEME.match(text) is not None


def join_uri(root: str, name: str) -> str:
    """``root/name`` with one ``/`` between them (``name`` is ``/``-separated)."""
    return root.rstrip("/") + "/" + name.lstrip("/")


def as_location(path: str | os.PathLike[str]) -> Path | str:
    """An input location: a URI kept as the string it is (``Path`` would fold its
    ``//``), anything else as a local :class:`~pathlib.Path`.

    A ``file://`` URI of this machine is the local path it names, so that the rules of
    local folders (symbolic links that lead outside, :mod:`samrefiner.io.paths`) hold
    for it too.
    """
    if not is_uri(path):
        return Path(path)
    text = str(path)
    parts = urlsplit(text)
    if parts.scheme.lower() == "file" and parts.netloc in ("", "localhost"):
        return Path(url2pathname(parts.path))
    return text


def join_location(root: Path | str, relative: str | PurePath) -> Path | str:
    """The file ``relative`` (a relative path) under the folder ``root``, a path or a URI."""
    if is_uri(root):
        name = relative.as_posix() if isinstance(relative, PurePath) else relative
        return join_uri(str(root), name)
    return Path(root) / relative


def _filesystem(uri: str) -> tuple[Any, str]:
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - fsspec comes with the install
        raise InputError(f"{uri}: reading URIs needs fsspec (pip install fsspec)") from exc
    try:
        return url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        protocol = uri.split("://", 1)[0]
        known = fsspec.available_protocols()
        hint = "" if protocol in known else f" (fsspec knows no '{protocol}' protocol)"
        raise InputError(
            f"{uri}: cannot open this URI{hint}: {exc}; install the protocol's package, "
            "e.g. s3fs for s3://, gcsfs for gs://"
        ) from exc


def _ask(uri: str, question: str) -> bool:
    """The file system's answer to ``question`` (``"isfile"``, ``"isdir"``) about ``uri``."""
    fs, path = _filesystem(uri)
    try:
        return bool(getattr(fs, question)(path))
    except OSError as exc:
        raise InputError(f"{uri}: cannot be checked: {exc}") from exc


def uri_is_file(uri: str) -> bool:
    """True when ``uri`` names an existing file."""
    return _ask(uri, "isfile")


def uri_is_dir(uri: str) -> bool:
    """True when ``uri`` names a folder (in an object store: a prefix that has objects)."""
    return _ask(uri, "isdir")


def list_uri_files(uri: str) -> list[str]:
    """Every file under the folder ``uri``, recursively, as sorted ``/``-separated paths
    relative to it (an object store's folder markers are left out).

    Raises:
        InputError: the folder cannot be listed (the message names the URI).
    """
    fs, path = _filesystem(uri)
    try:
        found = fs.find(path, withdirs=False)
    except OSError as exc:
        raise InputError(f"{uri}: cannot list this folder: {exc}") from exc
    base = path.rstrip("/") + "/"
    names = (str(f)[len(base) :] for f in found if str(f).startswith(base))
    return sorted(name for name in names if name and not name.endswith("/"))


def read_uri(uri: str, what: str = "input") -> bytes:
    """The bytes of the file ``uri``.

    Raises:
        InputError: no such file, or it cannot be read (the message names the URI).
    """
    fs, path = _filesystem(uri)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError as exc:
        raise InputError(f"{uri}: {what} file not found") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{uri}: cannot read {what}: {exc}") from exc
