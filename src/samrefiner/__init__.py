"""samrefiner: refine coarse segmentation masks by prompting Segment Anything.

Public API::

    from samrefiner import Refiner, RefineConfig, load_model
    refiner = Refiner(load_model("sam_vit_b"), RefineConfig(margin=0.1))
    result = refiner.refine(image, coarse_masks)
"""

from typing import TYPE_CHECKING

from samrefiner._lazy import lazy_attributes
from samrefiner._version import __version__

# Names are imported on first use: the command line and model-free tools (metrics,
# splitting label maps) then start without loading torch.
_LAZY = {
    "RefineConfig": "samrefiner.config",
    "excavate_prompts": "samrefiner.excavation",
    "MODEL_NAMES": "samrefiner.models",
    "Backend": "samrefiner.models",
    "ImageEmbedding": "samrefiner.models",
    "load_model": "samrefiner.adaption.loading",  # the model, then its adapter (adapter=)
    "Refiner": "samrefiner.refiner",
    "BatchRefineResult": "samrefiner.batch",
    "BatchStatus": "samrefiner.batch",
    "STATUSES": "samrefiner.types",
    "MaskPrompt": "samrefiner.types",
    "RefineResult": "samrefiner.types",
    "detect": "samrefiner.detectors",
    "load_detector": "samrefiner.detectors",
    "label_image": "samrefiner.detectors.steps",
    "complete_image": "samrefiner.detectors.steps",
}

if TYPE_CHECKING:
    from samrefiner.adaption.loading import load_model
    from samrefiner.batch import BatchRefineResult, BatchStatus
    from samrefiner.config import RefineConfig
    from samrefiner.detectors import detect, load_detector
    from samrefiner.detectors.steps import complete_image, label_image
    from samrefiner.excavation import excavate_prompts
    from samrefiner.models import MODEL_NAMES, Backend, ImageEmbedding
    from samrefiner.refiner import Refiner
    from samrefiner.types import STATUSES, MaskPrompt, RefineResult


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "MODEL_NAMES",
    "STATUSES",
    "Backend",
    "BatchRefineResult",
    "BatchStatus",
    "ImageEmbedding",
    "MaskPrompt",
    "RefineConfig",
    "RefineResult",
    "Refiner",
    "__version__",
    "complete_image",
    "detect",
    "excavate_prompts",
    "label_image",
    "load_detector",
    "load_model",
]
