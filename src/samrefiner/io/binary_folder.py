"""Folders of images and of per-object binary masks, and how their files are matched.

**Image keys.** Every image file under the images folder (searched recursively; names
starting with ``.`` are skipped) has a *key*: its path relative to the folder, with ``/``
separators and without the extension. ``images/bear/00000.jpg`` has key ``bear/00000``.
Recognised extensions: see :data:`IMAGE_EXTENSIONS`.

**Binary mask folders** hold one 0/255 (or 0/1) PNG per object. A mask file whose path
relative to the mask folder, without ``.png``, is ``R`` belongs to the image whose key is

1. ``R`` itself (one object per image: ``masks/bear/00000.png``), else
2. the folder of ``R`` (one sub-folder per image: ``masks/bear/00000/3.png``), else
3. the longest key ``K`` for which ``R`` starts with ``K-`` (a dash after the image
   name: ``masks/2007_000032-15-1.png``, the names ``samrefiner split`` writes).

A mask matching no image is reported and copied to the output unchanged. Refined masks
are written under the output folder at the same relative path as their input.

**Label-map folders** (instance ids, semantic classes) hold one PNG per image, at the
image's key: ``labels/bear/00000.png`` goes with ``images/bear/00000.jpg``.

**Folders named by URI** (``s3://bucket/images``, see :mod:`samrefiner.io.uri`) are listed
through fsspec with the same rules; their files are then URIs (strings) rather than paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from samrefiner.io.errors import InputError
from samrefiner.io.uri import as_location, is_uri, join_location, list_uri_files, uri_is_dir

#: Extensions (lower case) of the files treated as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Extension of mask and label-map files.
MASK_EXTENSION = ".png"


def _wanted(name: str, extensions: tuple[str, ...] | None = None) -> bool:
    """A listed file or folder name that counts: not hidden (``.`` first), and for a file
    (``extensions`` given) one of ``extensions``."""
    if name.startswith("."):
        return False
    return extensions is None or PurePath(name).suffix.lower() in extensions


def _walk(root: Path | str, extensions: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` (a path or a URI) with one of ``extensions``, as sorted
    relative paths."""
    found: list[Path] = []
    if is_uri(root):
        for name in list_uri_files(str(root)):
            *folders, base = name.split("/")
            if all(_wanted(f) for f in folders) and _wanted(base, extensions):
                found.append(Path(name))
    else:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if _wanted(d))
            here = Path(folder).relative_to(root)
            found.extend(here / name for name in files if _wanted(name, extensions))
    return sorted(found, key=lambda p: p.as_posix())


def file_key(relative: Path) -> str:
    """The key of a file: its relative path, ``/``-separated, without the extension."""
    return relative.with_suffix("").as_posix()


def _require_dir(path: Path | str, what: str) -> None:
    found = uri_is_dir(str(path)) if is_uri(path) else Path(path).is_dir()
    if not found:
        raise InputError(f"{path}: {what} folder not found")


def index_images(images_dir: str | os.PathLike[str]) -> dict[str, list[Path | str]]:
    """Map each image key to its file(s) (several when only the extension differs):
    paths, or URIs for an ``images_dir`` that is a URI.

    Raises:
        InputError: when the folder does not exist.
    """
    root = as_location(images_dir)
    _require_dir(root, "images")
    index: dict[str, list[Path | str]] = {}
    for rel in _walk(root, IMAGE_EXTENSIONS):
        index.setdefault(file_key(rel), []).append(join_location(root, rel))
    return index


def list_mask_files(masks_dir: str | os.PathLike[str]) -> list[Path]:
    """The ``.png`` files under ``masks_dir`` (a path or a URI) as sorted relative paths."""
    root = as_location(masks_dir)
    _require_dir(root, "masks")
    return _walk(root, (MASK_EXTENSION,))


def match_mask(relative: Path, image_keys: set[str] | dict[str, object]) -> str | None:
    """The key of the image a mask file belongs to (rules 1-3 above), or None."""
    stem = file_key(relative)
    if stem in image_keys:
        return stem
    parent = relative.parent.as_posix()
    if parent != "." and parent in image_keys:
        return parent
    best: str | None = None
    for cut in range(len(stem) - 1, 0, -1):
        if stem[cut] == "-" and stem[:cut] in image_keys:
            best = stem[:cut]
            break
    return best


@dataclass
class MaskFolderIndex:
    """Mask files grouped by image.

    Attributes:
        by_image: image key -> relative mask paths, in sorted order.
        unmatched: relative mask paths that belong to no image.
    """

    by_image: dict[str, list[Path]] = field(default_factory=dict)
    unmatched: list[Path] = field(default_factory=list)


def group_masks(
    mask_files: Iterable[Path], image_keys: set[str] | dict[str, object]
) -> MaskFolderIndex:
    """Group relative mask paths by the image they belong to (see the module rules)."""
    index = MaskFolderIndex()
    for rel in mask_files:
        key = match_mask(rel, image_keys)
        if key is None:
            index.unmatched.append(rel)
        else:
            index.by_image.setdefault(key, []).append(rel)
    return index


__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSION",
    "MaskFolderIndex",
    "file_key",
    "group_masks",
    "index_images",
    "list_mask_files",
    "match_mask",
]
