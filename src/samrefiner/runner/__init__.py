"""The dataset runner shared by the ``coco``, ``instances``, ``semantic`` and ``masks``
subcommands: format adapters, a prefetching pipeline, resumable state and summaries.

Library use, with the command line's guarantees (one run per output, resumable, nothing
half-written left behind; :mod:`samrefiner.runner.session`)::

    from samrefiner.runner import CocoDataset, RefinerSpec, RunOptions, run_session
    spec = RefinerSpec("sam_vit_b")
    summary = run_session(
        CocoDataset(coco, "images/", "refined.json"), spec, "refined.json", RunOptions(),
        fingerprint={"what": "my run", **spec.fingerprint()},
    )

or the engine alone, on a state you open (no lock, no clean-up)::

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
from samrefiner.runner.options import RunOptions
from samrefiner.runner.pipeline import run_dataset
from samrefiner.runner.records import ImageRecord, ObjectRecord, RunSummary
from samrefiner.runner.refining import prepare_prompts, refine_job, refine_jobs
from samrefiner.runner.session import RunInterrupted, RunWriteError, run_session
from samrefiner.runner.spec import ModelLoadError, RefinerSpec
from samrefiner.runner.state import RunLock, RunLockedError, RunState, StateError, state_dir_for

__all__ = [
    "CocoDataset",
    "CroppedResult",
    "Dataset",
    "ImageRecord",
    "InstanceDataset",
    "Job",
    "MaskFolderDataset",
    "ModelLoadError",
    "ObjectRecord",
    "RefineLanes",
    "RefinerLike",
    "RefinerSpec",
    "RunInterrupted",
    "RunLock",
    "RunLockedError",
    "RunOptions",
    "RunState",
    "RunSummary",
    "RunWriteError",
    "SemanticDataset",
    "StateError",
    "prepare_prompts",
    "refine_job",
    "refine_jobs",
    "run_dataset",
    "run_session",
    "state_dir_for",
]
