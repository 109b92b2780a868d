"""SAM-family model backends, the model registry and checkpoint handling.

:mod:`~samrefiner.models.families` is the one table of families and official models
(torch-free); :mod:`~samrefiner.models.registry` builds them (:func:`load_model`);
:mod:`~samrefiner.models.weights` reads and checks checkpoint files;
:mod:`~samrefiner.models.download` fetches the official ones. Names are imported on first
use, so :mod:`samrefiner.models.catalog` (the official names, for the command line's help)
loads without torch.
"""

from typing import TYPE_CHECKING

from samrefiner._lazy import lazy_attributes

_LAZY = {
    "Backend": "samrefiner.models.base",
    "Decoded": "samrefiner.models.base",
    "ImageEmbedding": "samrefiner.models.base",
    "CheckpointError": "samrefiner.models.download",
    "CheckpointSpec": "samrefiner.models.download",
    "cache_dir": "samrefiner.models.download",
    "MODELS": "samrefiner.models.registry",
    "MODEL_NAMES": "samrefiner.models.registry",
    "load_model": "samrefiner.models.registry",
    "SamBackend": "samrefiner.models.sam",
}

if TYPE_CHECKING:
    from samrefiner.models.base import Backend, Decoded, ImageEmbedding
    from samrefiner.models.download import CheckpointError, CheckpointSpec, cache_dir
    from samrefiner.models.registry import MODEL_NAMES, MODELS, load_model
    from samrefiner.models.sam import SamBackend


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "Backend",
    "CheckpointError",
    "CheckpointSpec",
    "Decoded",
    "ImageEmbedding",
    "SamBackend",
    "cache_dir",
    "load_model",
]
