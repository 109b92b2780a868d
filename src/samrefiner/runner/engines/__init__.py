"""The engines that drive a dataset run, all over the same per-image steps
(:mod:`.steps`: prompts, encoding, refinement of a :class:`~samrefiner.runner.dataset.Job`):
the local prefetching pipeline (:mod:`.local`), its overlapped refinement lanes on an
accelerator (:mod:`.lanes`) and Ray Data actors (:mod:`.ray`).
"""
