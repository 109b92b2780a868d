"""The error every reader in :mod:`samrefiner.io` raises for a file it cannot use, and how
an error message names an option: as the caller wrote it.

A message that tells the user what to change names a library parameter when the caller is
Python code (``allow_outside_images=True``) and the flag when it is the ``samrefiner``
command (``--allow-outside-images``)::

    >>> said("allow_outside_images=True", "--allow-outside-images")
    'allow_outside_images=True'
    >>> with command_line_spelling():
    ...     said("allow_outside_images=True", "--allow-outside-images")
    '--allow-outside-images'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = [
    "InputError",
    "command_line_spelling",
    "said",
    "set_command_line_spelling",
    "spelling_is_command_line",
]


class InputError(ValueError):
    """A file that cannot be used; the message names the file and the problem."""


# Which caller's words messages use, for the whole process: the command sets it for the
# length of one command (every thread of the run sees it); a Ray engine hands its value to
# the actors it starts (:mod:`samrefiner.runner.engines.ray`), so a run's messages read the
# same on every engine.
_command_line = False


def said(library: str, command_line: str) -> str:
    """An option as the caller spells it: ``library`` (a parameter, ``resume=False``) for
    Python callers, ``command_line`` (a flag, ``--resume``) inside the ``samrefiner``
    command."""
    return command_line if _command_line else library


def spelling_is_command_line() -> bool:
    """Whether messages name flags (inside the command), not parameters."""
    return _command_line


def set_command_line_spelling(on: bool) -> None:
    """Name flags (``on``) or parameters in messages from now on, in this process."""
    global _command_line
    _command_line = bool(on)


@contextlib.contextmanager
def command_line_spelling() -> Iterator[None]:
    """Messages name flags while the block runs (the command's whole run)."""
    before = _command_line
    set_command_line_spelling(True)
    try:
        yield
    finally:
        set_command_line_spelling(before)
