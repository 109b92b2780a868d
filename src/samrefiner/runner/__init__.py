"""The dataset runner shared by the ``coco``, ``instances``, ``semantic``, ``masks``,
``yolo`` and ``labelme`` subcommands, in floors, top down:

- the session (:mod:`.session`): one run of a dataset with the command line's guarantees,
  built from a :class:`RefinerSpec` (:mod:`.spec`: which model, how to refine) and
  :class:`RunOptions` (:mod:`.options`: how to run);
- the engines (:mod:`.engines`: local pipeline, accelerator lanes, Ray actors, and the
  per-image steps they share), with the progress bar and summary (:mod:`.progress`);
- the formats (:mod:`.formats`: COCO, label-map folders, mask folders, YOLO
  segmentation, labelme), each a
  :class:`Dataset` (:mod:`.dataset`: the contract between formats and engines, with
  :class:`Job`, one image's work);
- the journal (:mod:`.journal`: per-object and per-image records, the run's summary, the
  resumable state folder and its lock, the statuses).

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

The modules' names before this layout (``samrefiner.runner.pipeline``, ``.coco``,
``.records``, ...) still import, as the same modules (:data:`OLD_MODULES`).
"""

from samrefiner._lazy import old_module_paths
from samrefiner.runner.dataset import (
    CroppedResult,
    Dataset,
    Job,
    RefinerLike,
    SummaryContributor,
)
from samrefiner.runner.engines.lanes import RefineLanes
from samrefiner.runner.engines.local import run_dataset
from samrefiner.runner.engines.steps import prepare_prompts, refine_job, refine_jobs
from samrefiner.runner.formats.coco import CocoDataset
from samrefiner.runner.formats.label_folders import InstanceDataset, SemanticDataset
from samrefiner.runner.formats.labelme import LabelmeDataset
from samrefiner.runner.formats.mask_folders import MaskFolderDataset
from samrefiner.runner.formats.yolo import YoloDataset
from samrefiner.runner.journal.records import (
    ImageRecord,
    ObjectRecord,
    RunSummary,
    SummaryPart,
)
from samrefiner.runner.journal.state import (
    RunLock,
    RunLockedError,
    RunState,
    StateError,
    state_dir_for,
)
from samrefiner.runner.options import RunOptions
from samrefiner.runner.session import RunInterrupted, RunWriteError, run_session
from samrefiner.runner.spec import ModelLoadError, RefinerSpec

__all__ = [
    "CocoDataset",
    "CroppedResult",
    "Dataset",
    "ImageRecord",
    "InstanceDataset",
    "Job",
    "LabelmeDataset",
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
    "SummaryContributor",
    "SummaryPart",
    "YoloDataset",
    "prepare_prompts",
    "refine_job",
    "refine_jobs",
    "run_dataset",
    "run_session",
    "state_dir_for",
]

#: Old module name -> where the module lives now (imported on first use of the old name).
OLD_MODULES = {
    f"{__name__}.{old}": f"{__name__}.{new}"
    for old, new in {
        "base": "dataset",
        "coco": "formats.coco",
        "label_folders": "formats.label_folders",
        "mask_folders": "formats.mask_folders",
        "pipeline": "engines.local",
        "refining": "engines.steps",
        "lanes": "engines.lanes",
        "ray_engine": "engines.ray",
        "records": "journal.records",
        "state": "journal.state",
        "status": "journal.status",
    }.items()
}
OLD_MODULES[f"{__name__}.ray_embed"] = "samrefiner.adaption.ray_embed"
old_module_paths(OLD_MODULES)
