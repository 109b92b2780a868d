"""Old import path of :mod:`samrefiner.measure`, kept for callers.

``samrefiner.bench.results`` (documented as the home of ``BenchResults``) is the very module
:mod:`samrefiner.measure.results`, registered under its old name, so that
``from samrefiner.bench.results import BenchResults`` hands out the same class.
"""

import sys

from samrefiner.measure import results

sys.modules[f"{__name__}.results"] = results

__all__ = ["results"]
