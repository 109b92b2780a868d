"""argparse types of the options: every number option of every command is checked here,
in one line (:func:`ignore_value`, :func:`pixel_limit`, :func:`positive_int`,
:func:`non_negative_int`, :func:`finite_float`, :func:`positive_seconds`)."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def _int_or_none(text: str) -> int | None:
    """An integer, or None for ``none`` (any case)."""
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from exc


def ignore_value(text: str) -> int | None:
    """argparse type of ``--ignore``: a label value in [0, 65535], or ``none``."""
    value = _int_or_none(text)
    if value is not None and not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"ignore value must be in [0, 65535], got {value}")
    return value


def pixel_limit(text: str) -> int | None:
    """argparse type of ``--max-image-pixels``: an integer >= 1, or ``none``."""
    value = _int_or_none(text)
    if value is not None and value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type of counts that may be 0."""
    return _int_at_least(text, 0)


def finite_float(text: str) -> float:
    """argparse type of every number option: a finite number. NaN and infinities are
    refused here, in one line: they slip past range checks such as ``>= 1``."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type of durations: a finite number of seconds > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type of sizes and tolerances that may be 0: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value
