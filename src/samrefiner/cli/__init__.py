"""The ``samrefiner`` command line: a thin layer over the library.

Each subcommand lives in its own module of this package, which defines ``add_parser``
(registering the subcommand and its options) and the function it runs. To add one, write
the module and append its name to :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from samrefiner._version import __version__

#: Modules of this package that define subcommands, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "refine",
    "eval",
    "make_coarse",
    "bench",
    "report",
    "coco",
    "instances",
    "semantic",
    "masks",
    "split",
    "adapt",
    "yolo",
    "labelme",
    "serve",
    "label",
    "video",
)


class CommandError(Exception):
    """An error the CLI reports as one line on stderr, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(message: str) -> str:
    """The first line of ``message``, without terminal escape codes (errors are one line)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samrefiner",
        description="Refine coarse segmentation masks with Segment Anything (SAMRefiner).",
    )
    parser.add_argument("--version", action="version", version=f"samrefiner {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (repeatable)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"samrefiner.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samrefiner`` command. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Imported here: samrefiner.io loads PIL and pycocotools, which --help does not need.
    from samrefiner.io.errors import command_line_spelling

    try:
        with command_line_spelling():  # messages name flags, not library parameters
            return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"samrefiner {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A file that cannot be written or read (read-only folder, full disk): atomic
        # writes left no half-written file; name the path and the problem in one line.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"samrefiner {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"samrefiner {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["SUBCOMMANDS", "CommandError", "build_parser", "main"]
