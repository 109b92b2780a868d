"""What every samrefiner file that is written and read back carries: a kind and a version.

Each such file has one schema, a dataclass with ``to_json`` / ``from_json``: the bench
results (:mod:`samrefiner.measure.results`), the refine sidecar
(:mod:`samrefiner.io.sidecar`), the run summary and the state records
(:mod:`samrefiner.runner.journal.records`). ``to_json`` writes ``"kind"`` and ``"version"``;
``from_json`` refuses another kind, or a version newer than the code knows.
"""

from __future__ import annotations

from typing import Any


class SchemaError(ValueError):
    """JSON that does not follow its schema; the message says what is wrong."""


def check_header(data: Any, kind: str, version: int, *, legacy: bool = False) -> int:
    """Check the ``kind`` and ``version`` of ``data``; return the version found.

    Args:
        data: parsed JSON.
        kind: the kind expected.
        version: the newest version this code reads.
        legacy: accept an object without ``kind`` / ``version`` (files written before
            versions were recorded) as version 1.

    Raises:
        SchemaError: not an object, another kind, or a newer version.
    """
    if not isinstance(data, dict):
        raise SchemaError(f"not a samrefiner {kind} file (not a JSON object)")
    if legacy and "kind" not in data and "version" not in data:
        return 1
    if data.get("kind") != kind:
        raise SchemaError(f'not a samrefiner {kind} file (no "kind": "{kind}")')
    found = data.get("version")
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise SchemaError(f"{kind} file without a valid version ({found!r})")
    if found > version:
        raise SchemaError(
            f"{kind} file version {found} is newer than this samrefiner reads ({version}); "
            "upgrade samrefiner"
        )
    return found
