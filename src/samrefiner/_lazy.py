"""Package attributes imported on first use (PEP 562), so light entry points (the command
line's parser, metrics, label-map tools) start without loading torch; and the old names of
moved modules, resolved on first use."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        table: attribute name -> the module that defines it (imported on first access;
            the value is then kept in the package, so later accesses cost nothing).
    """

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``old`` module names and hands out the module now at ``new`` (the very object)."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = dict(table)
        self.own_specs: dict[str, Any] = {}

    def find_spec(self, fullname: str, path: object, target: object = None) -> Any:
        if fullname not in self.table:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(self.table[spec.name])
        self.own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        """Nothing to run (the module ran under its own name); importlib has just set
        ``__spec__`` to the old name's spec, so give the module its own back."""
        module.__spec__ = self.own_specs.pop(module.__spec__.name)


def old_module_paths(table: Mapping[str, str]) -> None:
    """Keep moved modules importable by their old names, on first use.

    Args:
        table: old dotted module name -> the module's new name. ``import old`` (or
            ``from package import old``) imports ``new`` and binds that same module object
            under the old name, so both spellings hand out the same classes; nothing is
            imported until an old name is asked for.
    """
    sys.meta_path.append(_OldPath(table))
