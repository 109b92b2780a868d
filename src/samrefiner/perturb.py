"""Old import path of :mod:`samrefiner.measure.perturb`, kept for callers: it re-exports it."""

from samrefiner.measure.perturb import *  # noqa: F403
from samrefiner.measure.perturb import __all__  # noqa: F401
