"""SAM-family model backends, the model registry and checkpoint handling."""

from samrefiner.models.base import Backend, Decoded, ImageEmbedding
from samrefiner.models.download import CheckpointError, CheckpointSpec, cache_dir
from samrefiner.models.registry import MODEL_NAMES, MODELS, load_model
from samrefiner.models.sam import SamBackend

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
