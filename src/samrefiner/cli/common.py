"""Options shared by every subcommand that runs a model: model choice and RefineConfig."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from samrefiner.config import DTYPES, FIELD_HELP, RefineConfig

_DEFAULTS = RefineConfig()


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--checkpoint``, ``--device``, ``--random-weights``."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="sam_vit_h",
        help="model name (sam_vit_b, sam_vit_l, sam_vit_h), a checkpoint path, or a builder "
        "'package.module:function' returning a SAM model (default: %(default)s)",
    )
    group.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="weights file for --model; without it a named model's official checkpoint is "
        "taken from $SAMREFINER_HOME (default ~/.cache/samrefiner), downloaded once if absent",
    )
    group.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="build the architecture with random weights instead of loading a checkpoint "
        "(smoke tests and speed benchmarks only: the masks are meaningless)",
    )


def _flag_pair(group: Any, name: str, default: bool) -> None:
    flag = name.replace("_", "-")
    group.add_argument(
        f"--{flag}",
        dest=name,
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{FIELD_HELP[name]} (default: {'on' if default else 'off'})",
    )


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`RefineConfig` field, defaults taken from the dataclass."""
    group = parser.add_argument_group("refinement (RefineConfig)")
    for field in dataclasses.fields(RefineConfig):
        name, default = field.name, getattr(_DEFAULTS, field.name)
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            _flag_pair(group, name, default)
        elif name == "dtype":
            group.add_argument(
                flag,
                choices=DTYPES,
                default=default,
                help=f"{FIELD_HELP[name]} (default: %(default)s)",
            )
        elif name in ("max_batch", "threads"):
            group.add_argument(
                flag,
                type=int,
                default=default,
                metavar="N",
                help=f"{FIELD_HELP[name]} (default: automatic)",
            )
        elif name == "early_stop_iou":
            group.add_argument(
                flag,
                type=float,
                default=default,
                metavar="IOU",
                help=f"{FIELD_HELP[name]} (default: off)",
            )
        else:
            group.add_argument(
                flag,
                type=type(default),
                default=default,
                metavar=name.upper(),
                help=f"{FIELD_HELP[name]} (default: %(default)s)",
            )


def config_from_args(args: argparse.Namespace) -> RefineConfig:
    """Build the RefineConfig from parsed options; invalid values raise ValueError."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RefineConfig)}
    return RefineConfig(**values)


def load_model_from_args(args: argparse.Namespace) -> Any:
    """Load the backend the options name (imports torch lazily, so ``--help`` stays fast)."""
    from samrefiner.models import load_model

    return load_model(
        args.model,
        checkpoint=args.checkpoint,
        pretrained=not args.random_weights,
        device=args.device,
    )
