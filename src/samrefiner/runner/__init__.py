"""The dataset runner shared by the ``coco``, ``instances``, ``semantic`` and ``masks``
subcommands: format adapters, a prefetching pipeline, resumable state and summaries.

Library use::

    from samrefiner.runner import CocoDataset, RunState, run_dataset
    state = RunState("refined.json")
    state.start({"what": "my run"}, resume=False)
    summary = run_dataset(CocoDataset(coco, "images/", "refined.json"), refiner, state)

``refiner`` is anything with ``refine(image, masks) -> RefineResult``. The per-image
pieces are plain functions over picklable inputs, for other engines to drive:
``Dataset.load(key) -> Job``, :func:`prepare_prompts`, :func:`refine_job` ->
:class:`CroppedResult` (:func:`refine_jobs` for a group encoded together,
:class:`RefineLanes` to overlap the encoder with the refinement),
``Dataset.save(job, result) -> ImageRecord``, ``Dataset.finish``.
"""

from samrefiner.runner.base import CroppedResult, Dataset, Job, RefinerLike
from samrefiner.runner.coco import CocoDataset
from samrefiner.runner.label_folders import InstanceDataset, SemanticDataset
from samrefiner.runner.lanes import RefineLanes
from samrefiner.runner.mask_folders import MaskFolderDataset
from samrefiner.runner.pipeline import RunOptions, run_dataset
from samrefiner.runner.records import ImageRecord, ObjectRecord, RunSummary
from samrefiner.runner.refining import prepare_prompts, refine_job, refine_jobs
from samrefiner.runner.state import RunLock, RunLockedError, RunState, StateError, state_dir_for

__all__ = [
    "CocoDataset",
    "CroppedResult",
    "Dataset",
    "ImageRecord",
    "InstanceDataset",
    "Job",
    "MaskFolderDataset",
    "ObjectRecord",
    "RefineLanes",
    "RefinerLike",
    "RunLock",
    "RunLockedError",
    "RunOptions",
    "RunState",
    "RunSummary",
    "SemanticDataset",
    "StateError",
    "prepare_prompts",
    "refine_job",
    "refine_jobs",
    "run_dataset",
    "state_dir_for",
]
