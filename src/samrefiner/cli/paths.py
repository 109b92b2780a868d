"""The paths a command names: inputs by path or URI (:func:`local_or_uri`,
:func:`identity`), local outputs (:func:`local_output`), the label-folder inputs
(:func:`label_folder_inputs`) and the check that outputs clash with no input and no other
output (:func:`check_paths`, :func:`run_outputs`), before anything is written."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samrefiner.cli import CommandError

if TYPE_CHECKING:
    from samrefiner.io.paths import NamedPath


def label_folder_inputs(
    args: argparse.Namespace,
) -> tuple[Path | str, Path | str, Path, dict[str, Any]]:
    """The folders of :func:`add_label_folder_args` (paths checked) and resume inputs.

    Returns ``(images, labels, output, inputs)``: the input folders are paths or URIs
    (:func:`local_or_uri`); ``inputs`` is what a resumed run must share with the first
    one (part of the resume fingerprint).
    """
    if args.labels is None:
        raise CommandError("the following argument is required: --labels")
    images, labels = local_or_uri(args.images), local_or_uri(args.labels)
    output = local_output(args.output)
    check_paths(
        args,
        [named("--images", images, folder=True), named("--labels", labels, folder=True)],
        run_outputs(args, output, folder=True),
    )
    inputs = {
        "images": identity(images),
        "labels": identity(labels),
        "ignore": args.ignore,
        "refine_ignore": args.refine_ignore,
    }
    return images, labels, output, inputs


def local_or_uri(text: str) -> Path | str:
    """An input named on the command line: a URI that fsspec reads (``s3://...``, see
    :mod:`samrefiner.io.uri`) as given, anything else as a local path."""
    from samrefiner.io.uri import as_location  # lazily: --help imports no PIL / NumPy

    return as_location(text)


def identity(source: Path | str) -> str:
    """How an input is named in the resume fingerprint: its absolute path, or its URI."""
    return str(source.resolve()) if isinstance(source, Path) else source


def local_output(text: str, option: str = "--output") -> Path:
    """An output named on the command line: a local path (a shared file system mounted
    on every machine is one). A URI is refused: outputs are written atomically next to a
    state folder, which object stores do not support."""
    from samrefiner.io.uri import is_uri

    if is_uri(text):
        raise CommandError(
            f"{option} {text}: outputs must be local paths (or a shared file system mounted "
            "as one), not URIs; write the output locally and copy it to the object store"
        )
    return Path(text)


def named(option: str, path: str | os.PathLike[str] | None, **kind: bool) -> NamedPath:
    """A path and the option that names it (:class:`~samrefiner.io.paths.NamedPath`;
    ``kind``: ``folder``, ``private``)."""
    from samrefiner.io.paths import NamedPath

    return NamedPath(option, path, **kind)


def check_paths(
    args: argparse.Namespace, inputs: Sequence[NamedPath], outputs: Sequence[NamedPath]
) -> None:
    """Refuse, before anything is written, an output that is, or would remove, an input
    or another output (:func:`samrefiner.io.paths.check_clashes`), in one line.

    The model options of ``args`` join the command's own paths where it has them:
    ``--checkpoint`` and ``--adapter`` (inputs) and ``--embedding-cache`` (an output
    folder: embeddings are written into it and pruned).
    """
    from samrefiner.io.paths import PathClashError, check_clashes

    shared_in = [
        named("--checkpoint", getattr(args, "checkpoint", None)),
        named("--adapter", getattr(args, "adapter", None), folder=True),
    ]
    cache = named("--embedding-cache", getattr(args, "embedding_cache", None), folder=True)
    try:
        check_clashes([*inputs, *shared_in], [*outputs, cache])
    except PathClashError as exc:
        raise CommandError(str(exc)) from exc


def run_outputs(args: argparse.Namespace, output: Path, *, folder: bool) -> list[NamedPath]:
    """What a dataset run writes: ``-o`` (a file, or a ``folder``), its state folder and
    lock file, and ``--summary``."""
    from samrefiner.runner.journal.state import lock_path_for, state_dir_for

    return [
        named("-o", output, folder=folder),
        named("the state folder", state_dir_for(output), folder=True, private=True),
        named("the lock file", lock_path_for(output)),
        named("--summary", args.summary),
    ]
