"""Self-contained HTML reports of refinement runs: gallery, summary table, plots."""
