"""samrefiner: refine coarse segmentation masks by prompting Segment Anything.

Public API::

    from samrefiner import Refiner, RefineConfig, load_model
    refiner = Refiner(load_model("sam_vit_b"), RefineConfig(margin=0.1))
    result = refiner.refine(image, coarse_masks)
"""

__version__ = "0.1.0"

from samrefiner.config import RefineConfig
from samrefiner.excavation import excavate_prompts
from samrefiner.models import MODEL_NAMES, Backend, ImageEmbedding, load_model
from samrefiner.refiner import Refiner
from samrefiner.types import STATUSES, MaskPrompt, RefineResult

__all__ = [
    "MODEL_NAMES",
    "STATUSES",
    "Backend",
    "ImageEmbedding",
    "MaskPrompt",
    "RefineConfig",
    "RefineResult",
    "Refiner",
    "__version__",
    "excavate_prompts",
    "load_model",
]
