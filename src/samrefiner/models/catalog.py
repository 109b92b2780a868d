"""The official model names and their families, importable without torch.

The command line lists them in ``--model``'s help without loading any model package;
both come from the one table of :mod:`samrefiner.models.families`, which also feeds
:data:`samrefiner.models.registry.MODELS` (builders and checkpoints).
"""

from __future__ import annotations

from samrefiner.models.families import MODEL_SPECS

#: Official model name -> family (``families.FAMILIES``), in the order they are listed.
OFFICIAL_MODELS: dict[str, str] = {name: spec.family for name, spec in MODEL_SPECS.items()}


def model_help() -> str:
    """One sentence naming every way to pick a model (``--model``'s help)."""
    return (
        f"model name ({', '.join(OFFICIAL_MODELS)}; see docs/models.md), 'hf:ORG/NAME' for a "
        "Hugging Face transformers SAM / SAM-HQ / SAM 2 / SAM 3 tracker / EdgeTAM model, a "
        "save_pretrained folder, a checkpoint file (family recognised from its weights), or a "
        "builder 'package.module:function' returning a SAM model or backend"
    )
