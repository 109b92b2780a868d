"""The measuring wing: metrics, synthetic coarse masks and the benchmark harness.

:mod:`~samrefiner.measure.metrics` scores masks against ground truth,
:mod:`~samrefiner.measure.perturb` degrades ground truth into coarse masks, and the
harness (:mod:`~samrefiner.measure.harness`) runs refiner configurations and baselines
over a dataset, writing :class:`~samrefiner.measure.results.BenchResults`. The commands
``eval``, ``make-coarse`` and ``bench`` are its front ends (docs/measure.md). For video:
:mod:`~samrefiner.measure.video` (DAVIS J, F, J&F, temporal stability),
:mod:`~samrefiner.measure.sequences` (synthetic sequences with exact ground truth) and
:mod:`~samrefiner.measure.video_bench` (the video rows of ``bench``); docs/video.md.
"""
