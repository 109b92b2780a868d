"""The official model names and their families, importable without torch.

The command line lists them in ``--model``'s help without loading any model package;
:data:`samrefiner.models.registry.MODELS` holds their builders and checkpoints (a test
keeps the two in step).
"""

from __future__ import annotations

#: Official model name -> family (``registry.FAMILIES``), in the order they are listed.
OFFICIAL_MODELS: dict[str, str] = {
    "sam_vit_b": "sam",
    "sam_vit_l": "sam",
    "sam_vit_h": "sam",
    "sam_hq_vit_b": "sam_hq",
    "sam_hq_vit_l": "sam_hq",
    "sam_hq_vit_h": "sam_hq",
    "sam_hq_vit_tiny": "sam_hq",
    "mobile_sam": "mobile_sam",
    "sam2.1_hiera_tiny": "sam2",
    "sam2.1_hiera_small": "sam2",
    "sam2.1_hiera_base_plus": "sam2",
    "sam2.1_hiera_large": "sam2",
}


def model_help() -> str:
    """One sentence naming every way to pick a model (``--model``'s help)."""
    return (
        f"model name ({', '.join(OFFICIAL_MODELS)}; see docs/models.md), 'hf:ORG/NAME' for a "
        "Hugging Face transformers SAM / SAM-HQ / SAM 2 / SAM 3 tracker / EdgeTAM model, a "
        "save_pretrained folder, a checkpoint file (family recognised from its weights), or a "
        "builder 'package.module:function' returning a SAM model or backend"
    )
