"""SAMRefiner++ IoU adaption: teach a model's IoU head, without labels, to rank first the
candidate that agrees with the coarse masks of the user's own data; saved as a small LoRA
adapter folder.

Library use::

    from samrefiner.adaption import AdaptConfig, ListSource, Sample, train_adapter
    result = train_adapter(backend, ListSource([Sample("a", image, masks)]), "my-adapter/")
    result.info.report                       # top-1 agreement before / after

    backend = load_model("sam_vit_h", adapter="my-adapter/")   # later: refine with it
"""

from typing import TYPE_CHECKING

from samrefiner._lazy import lazy_attributes

# Names are imported on first use: the command line builds its parser (which reads the
# training defaults in ``settings``) without loading torch.
_LAZY = {
    "ADAPTER_FORMAT": "adapter",
    "AdapterInfo": "adapter",
    "apply_adapter": "adapter",
    "read_adapter": "adapter",
    "save_adapter": "adapter",
    "CachedBackend": "cache",
    "EmbeddingCache": "cache",
    "default_cache_dir": "cache",
    "ListSource": "data",
    "Sample": "data",
    "Source": "data",
    "pair_ground_truth": "data",
    "image_digest": "fingerprint",
    "model_fingerprint": "fingerprint",
    "AdaptionError": "lora",
    "adapter_disabled": "lora",
    "BOX_ONLY": "settings",
    "AdaptConfig": "settings",
    "StepInfo": "trainer",
    "TrainResult": "trainer",
    "Trainer": "trainer",
    "TrainingDiverged": "trainer",
    "train_adapter": "trainer",
}

if TYPE_CHECKING:
    from samrefiner.adaption.adapter import (
        ADAPTER_FORMAT,
        AdapterInfo,
        apply_adapter,
        read_adapter,
        save_adapter,
    )
    from samrefiner.adaption.cache import CachedBackend, EmbeddingCache, default_cache_dir
    from samrefiner.adaption.data import ListSource, Sample, Source, pair_ground_truth
    from samrefiner.adaption.fingerprint import image_digest, model_fingerprint
    from samrefiner.adaption.lora import AdaptionError, adapter_disabled
    from samrefiner.adaption.settings import BOX_ONLY, AdaptConfig
    from samrefiner.adaption.trainer import (
        StepInfo,
        Trainer,
        TrainingDiverged,
        TrainResult,
        train_adapter,
    )


__getattr__, __dir__ = lazy_attributes(
    __name__, {name: f"{__name__}.{module}" for name, module in _LAZY.items()}
)


__all__ = [
    "ADAPTER_FORMAT",
    "BOX_ONLY",
    "AdaptConfig",
    "AdapterInfo",
    "AdaptionError",
    "CachedBackend",
    "EmbeddingCache",
    "ListSource",
    "Sample",
    "Source",
    "StepInfo",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "adapter_disabled",
    "apply_adapter",
    "default_cache_dir",
    "image_digest",
    "model_fingerprint",
    "pair_ground_truth",
    "read_adapter",
    "save_adapter",
    "train_adapter",
]
