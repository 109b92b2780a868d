"""The dataset runner shared by the ``coco``, ``instances``, ``semantic`` and ``masks``
subcommands: format adapters, a prefetching pipeline, resumable state and summaries.

Library use::

    from samrefiner.runner import CocoDataset, RunState, run_dataset
    state = RunState("refined.json")
    state.start({"what": "my run"}, resume=False)
    summary = run_dataset(CocoDataset(coco, "images/", "refined.json"), refiner, state)

``refiner`` is anything with ``refine(image, masks) -> RefineResult``.
"""

from samrefiner.runner.base import Dataset, Job, RefinerLike
from samrefiner.runner.coco import CocoDataset
from samrefiner.runner.label_folders import InstanceDataset, SemanticDataset
from samrefiner.runner.mask_folders import MaskFolderDataset
from samrefiner.runner.pipeline import RunOptions, run_dataset
from samrefiner.runner.records import ImageRecord, ObjectRecord, RunSummary
from samrefiner.runner.state import RunLock, RunLockedError, RunState, StateError, state_dir_for

__all__ = [
    "CocoDataset",
    "Dataset",
    "ImageRecord",
    "InstanceDataset",
    "Job",
    "MaskFolderDataset",
    "ObjectRecord",
    "RefinerLike",
    "RunLock",
    "RunLockedError",
    "RunOptions",
    "RunState",
    "RunSummary",
    "SemanticDataset",
    "StateError",
    "run_dataset",
    "state_dir_for",
]
