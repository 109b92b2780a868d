"""Benchmark harness: refiner configurations and baselines over a dataset, quality and cost."""
