"""Checkpoint cache: download once, verify SHA-256, rename atomically."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from samrefiner.io.atomic import chmod_open_file, default_file_mode
from samrefiner.models.families import CheckpointSpec

_CHUNK = 1 << 20
log = logging.getLogger("samrefiner.models")

__all__ = [
    "CheckpointError",
    "CheckpointSpec",
    "cache_dir",
    "download_checkpoint",
    "ensure_checkpoint",
    "sha256_of",
]


class CheckpointError(RuntimeError):
    """A checkpoint could not be obtained or verified; the message says what to do."""


def cache_dir() -> Path:
    """``$SAMREFINER_HOME``, or ``~/.cache/samrefiner``."""
    env = os.environ.get("SAMREFINER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "samrefiner"


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manual_hint(spec: CheckpointSpec, dest: Path) -> str:
    checksum = f" (SHA-256 {spec.sha256})" if spec.sha256 else ""
    return (
        f"To place it by hand, download {spec.url} and save it as {dest}{checksum}, "
        "or pass its path with --checkpoint / checkpoint=."
    )


def download_checkpoint(
    spec: CheckpointSpec, dest: Path, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``spec.url`` to ``dest``, verifying its SHA-256 on the fly.

    The data goes to a temporary file beside ``dest`` that is renamed onto it only once
    the checksum matches, so a failed, interrupted or corrupt download leaves no file.
    A spec without a checksum is downloaded whole (the size is still checked) and logged
    as unverified.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(spec.url, timeout=timeout)
            except (urllib.error.URLError, OSError) as exc:
                raise CheckpointError(
                    f"cannot download {spec.filename} from {spec.url}: {exc}. "
                    + _manual_hint(spec, dest)
                ) from exc
            with response:
                announced = int(response.headers.get("Content-Length") or 0)
                total = announced or spec.size_bytes
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=spec.filename,
                    disable=not progress,
                ) as bar:
                    received = 0
                    try:
                        for chunk in iter(lambda: response.read(_CHUNK), b""):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                        raise CheckpointError(
                            f"download of {spec.filename} broke off: {exc!r}. "
                            + _manual_hint(spec, dest)
                        ) from exc
                    if announced and received != announced:
                        raise CheckpointError(
                            f"download of {spec.filename} broke off after {received} of "
                            f"{announced} bytes. " + _manual_hint(spec, dest)
                        )
            out.flush()
            os.fsync(out.fileno())
            chmod_open_file(out.fileno(), tmp, default_file_mode())
        got = digest.hexdigest()
        if spec.sha256 is None:
            log.warning("%s; its SHA-256 is %s", spec.unverified_note(), got)
        elif got != spec.sha256:
            raise CheckpointError(
                f"downloaded {spec.filename} has SHA-256 {got}, expected {spec.sha256}; "
                "the file was discarded. " + _manual_hint(spec, dest)
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def ensure_checkpoint(
    spec: CheckpointSpec, *, directory: Path | None = None, progress: bool = True
) -> Path:
    """Path of the cached checkpoint, downloading it first when absent.

    A cached file whose checksum does not match is an error (it is not overwritten
    silently: the user may have placed it by hand).
    """
    dest = (directory or cache_dir()) / spec.filename
    if dest.exists() and spec.sha256 is None:
        log.warning(spec.unverified_note())
        return dest
    if dest.exists():
        got = sha256_of(dest)
        if got != spec.sha256:
            raise CheckpointError(
                f"{dest} has SHA-256 {got}, expected {spec.sha256}: the file is corrupt or "
                "not the official one. Delete it to download it again. " + _manual_hint(spec, dest)
            )
        return dest
    return download_checkpoint(spec, dest, progress=progress)
