"""The error every reader in :mod:`samrefiner.io` raises for a file it cannot use."""

from __future__ import annotations


class InputError(ValueError):
    """A file that cannot be used; the message names the file and the problem."""
