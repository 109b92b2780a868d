"""Old import path of :mod:`samrefiner.measure.metrics`, kept for callers: it re-exports it."""

from samrefiner.measure.metrics import *  # noqa: F403
from samrefiner.measure.metrics import __all__  # noqa: F401
