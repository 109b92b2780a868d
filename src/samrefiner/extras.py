"""Optional dependencies: import one, or fail naming the extra that installs it.

Each model family beyond SAM v1 needs an extra (``pip install 'samrefiner[hq]'``, ...), as
do the integrations, adaption and the Ray engine; :func:`import_extra` is the one place
that turns a missing package into an error the command line reports as one line
(``MissingExtra`` is an ``ImportError``, so library callers can catch it as before), and
:func:`install_hint` the one spelling of the command that installs an extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the extra to install."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install 'samrefiner[{extra}]'"


#: The message of :class:`MissingExtra` by default (see :func:`import_extra`).
MISSING_EXTRA = "the {missing!r} package, needed by {what}, is not installed: {hint}"


def import_extra(module: str, extra: str, what: str, *, message: str = MISSING_EXTRA) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming the missing package.

    Args:
        module: the module to import, e.g. ``"transformers"``.
        extra: the samrefiner extra that installs it, e.g. ``"hf"``.
        what: what needs it, for the message, e.g. ``"Hugging Face models"``.
        message: the error's wording, formatted with ``missing`` (the package that failed
            to import), ``module``, ``what`` and ``hint`` (:func:`install_hint`).

    Example message: ``the 'timm' package, needed by EdgeTAM, is not installed: pip install
    'samrefiner[hf]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # The package itself may be there with one of its own dependencies missing.
        missing = exc.name or module.split(".")[0]
        text = message.format(missing=missing, module=module, what=what, hint=install_hint(extra))
        raise MissingExtra(text) from exc
