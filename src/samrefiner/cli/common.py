"""Options and helpers shared by the subcommands: one home for each.

* the model and refinement options of every command that runs a model
  (:func:`add_refiner_args`, :func:`build_refiner`);
* argparse types (:func:`ignore_value`, :func:`pixel_limit`, :func:`non_negative_int`,
  :func:`positive_int`, :func:`finite_float`: every number option of every command,
  :func:`positive_seconds`);
* shared options (``--ignore``, ``--iou-range``, the label-folder arguments);
* inputs named by path or URI, local outputs (:func:`local_or_uri`, :func:`identity`,
  :func:`local_output`) and the check that outputs clash with no input and no other
  output (:func:`check_paths`, :func:`run_outputs`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samrefiner.cli import CommandError
from samrefiner.config import DTYPES, FIELD_HELP, SELECTIONS, RefineConfig

if TYPE_CHECKING:
    from samrefiner.io.paths import NamedPath
    from samrefiner.refiner import Refiner
    from samrefiner.runner.spec import RefinerSpec

_DEFAULTS = RefineConfig()

#: Label value of pixels that belong to nothing (VOC's boundary band), by default.
DEFAULT_IGNORE = 255

#: ``CoarseSpec``'s default, repeated so that ``--help`` need not import the perturbation
#: families (OpenCV, SciPy); a test checks that the two agree.
DEFAULT_IOU_RANGE = (0.5, 0.9)


# --------------------------------------------------------------------------- types


def _int_or_none(text: str) -> int | None:
    """An integer, or None for ``none`` (any case)."""
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from exc


def ignore_value(text: str) -> int | None:
    """argparse type of ``--ignore``: a label value in [0, 65535], or ``none``."""
    value = _int_or_none(text)
    if value is not None and not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"ignore value must be in [0, 65535], got {value}")
    return value


def pixel_limit(text: str) -> int | None:
    """argparse type of ``--max-image-pixels``: an integer >= 1, or ``none``."""
    value = _int_or_none(text)
    if value is not None and value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type of counts that may be 0."""
    return _int_at_least(text, 0)


def finite_float(text: str) -> float:
    """argparse type of every number option: a finite number. NaN and infinities are
    refused here, in one line: they slip past range checks such as ``>= 1``."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type of durations: a finite number of seconds > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


# --------------------------------------------------------------------------- shared options


class _DeprecatedIgnoreValue(argparse.Action):
    """``--ignore-value V`` (``-1``: none), the old spelling of ``--ignore``: sets ``ignore``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        try:
            value = int(values)
        except ValueError:
            parser.error(f"argument --ignore-value: expected an integer, got {values!r}")
        if value < -1 or value > 65535:
            parser.error(f"argument --ignore-value: must be -1 or in [0, 65535], got {value}")
        new = "none" if value < 0 else str(value)
        print(
            f"samrefiner: --ignore-value is deprecated and will be removed; use --ignore {new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, None if value < 0 else value)


def add_ignore_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ignore VALUE|none`` (``what``: what the value is not, e.g. "no object").

    The old spelling ``--ignore-value V`` (``-1`` for none) is accepted with a
    deprecation notice for one release; it is left out of ``--help``.
    """
    parser.add_argument(
        "--ignore",
        type=ignore_value,
        default=DEFAULT_IGNORE,
        metavar="VALUE",
        help=f"label of pixels that belong to {what}, or 'none' (default: %(default)s)",
    )
    parser.add_argument(
        "--ignore-value", dest="ignore", action=_DeprecatedIgnoreValue, help=argparse.SUPPRESS
    )


def add_iou_range_arg(parser: argparse.ArgumentParser) -> None:
    """``--iou-range LO HI`` of coarse-mask synthesis (make-coarse, bench)."""
    lo, hi = DEFAULT_IOU_RANGE
    parser.add_argument(
        "--iou-range",
        type=finite_float,
        nargs=2,
        default=DEFAULT_IOU_RANGE,
        metavar=("LO", "HI"),
        help="coarse-vs-GT IoU targets of synthesized masks are drawn uniformly from "
        f"[LO, HI] (default: {lo} {hi})",
    )


class _DeprecatedAlias(argparse.Action):
    """An old option name: stores its value like the new one, with a notice on stderr."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"samrefiner: {option_string} is deprecated and will be removed; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


#: What the help of an input folder adds: it may be a URI.
URI_HELP = "a path, or a URI that fsspec reads such as s3://bucket/"


def add_images_arg(parser: argparse.ArgumentParser) -> None:
    """``--images DIR`` of the folder-based dataset commands (a path or a URI)."""
    parser.add_argument(
        "--images", required=True, metavar="DIR", help=f"the images ({URI_HELP}images)"
    )


def add_label_folder_args(
    parser: argparse.ArgumentParser, what: str, *, old_flag: str | None = None
) -> None:
    """``--images``, ``--labels``, ``-o``, ``--ignore``, ``--refine-ignore``.

    ``--labels`` is the folder of label maps (``what``: "instance-id", "class-map");
    ``old_flag`` is a deprecated name of it, still accepted for one release.
    """
    add_images_arg(parser)
    parser.add_argument(
        "--labels",
        dest="labels",
        required=old_flag is None,  # with an alias: checked by label_folder_inputs
        default=None,
        metavar="DIR",
        help=f"the {what} PNGs, one per image, named like it (bear/00000.png for "
        f"bear/00000.jpg; {URI_HELP}labels)",
    )
    if old_flag is not None:
        parser.add_argument(
            old_flag, dest="labels", action=_DeprecatedAlias, new="--labels", help=argparse.SUPPRESS
        )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the refined maps (same names, mode and palette; a local path)",
    )
    add_ignore_arg(parser, "nothing")
    parser.add_argument(
        "--refine-ignore",
        action="store_true",
        help="let refined objects take ignore pixels (kept by default)",
    )


def label_folder_inputs(
    args: argparse.Namespace,
) -> tuple[Path | str, Path | str, Path, dict[str, Any]]:
    """The folders of :func:`add_label_folder_args` (paths checked) and resume inputs.

    Returns ``(images, labels, output, inputs)``: the input folders are paths or URIs
    (:func:`local_or_uri`); ``inputs`` is what a resumed run must share with the first
    one (part of the resume fingerprint).
    """
    if args.labels is None:
        raise CommandError("the following argument is required: --labels")
    images, labels = local_or_uri(args.images), local_or_uri(args.labels)
    output = local_output(args.output)
    check_paths(
        args,
        [named("--images", images, folder=True), named("--labels", labels, folder=True)],
        run_outputs(args, output, folder=True),
    )
    inputs = {
        "images": identity(images),
        "labels": identity(labels),
        "ignore": args.ignore,
        "refine_ignore": args.refine_ignore,
    }
    return images, labels, output, inputs


def local_or_uri(text: str) -> Path | str:
    """An input named on the command line: a URI that fsspec reads (``s3://...``, see
    :mod:`samrefiner.io.uri`) as given, anything else as a local path."""
    from samrefiner.io.uri import as_location  # lazily: --help imports no PIL / NumPy

    return as_location(text)


def identity(source: Path | str) -> str:
    """How an input is named in the resume fingerprint: its absolute path, or its URI."""
    return str(source.resolve()) if isinstance(source, Path) else source


def local_output(text: str, option: str = "--output") -> Path:
    """An output named on the command line: a local path (a shared file system mounted
    on every machine is one). A URI is refused: outputs are written atomically next to a
    state folder, which object stores do not support."""
    from samrefiner.io.uri import is_uri

    if is_uri(text):
        raise CommandError(
            f"{option} {text}: outputs must be local paths (or a shared file system mounted "
            "as one), not URIs; write the output locally and copy it to the object store"
        )
    return Path(text)


def named(option: str, path: str | os.PathLike[str] | None, **kind: bool) -> NamedPath:
    """A path and the option that names it (:class:`~samrefiner.io.paths.NamedPath`;
    ``kind``: ``folder``, ``private``)."""
    from samrefiner.io.paths import NamedPath

    return NamedPath(option, path, **kind)


def check_paths(
    args: argparse.Namespace, inputs: Sequence[NamedPath], outputs: Sequence[NamedPath]
) -> None:
    """Refuse, before anything is written, an output that is, or would remove, an input
    or another output (:func:`samrefiner.io.paths.check_clashes`), in one line.

    The model options of ``args`` join the command's own paths where it has them:
    ``--checkpoint`` and ``--adapter`` (inputs) and ``--embedding-cache`` (an output
    folder: embeddings are written into it and pruned).
    """
    from samrefiner.io.paths import PathClashError, check_clashes

    shared_in = [
        named("--checkpoint", getattr(args, "checkpoint", None)),
        named("--adapter", getattr(args, "adapter", None), folder=True),
    ]
    cache = named("--embedding-cache", getattr(args, "embedding_cache", None), folder=True)
    try:
        check_clashes([*inputs, *shared_in], [*outputs, cache])
    except PathClashError as exc:
        raise CommandError(str(exc)) from exc


def run_outputs(args: argparse.Namespace, output: Path, *, folder: bool) -> list[NamedPath]:
    """What a dataset run writes: ``-o`` (a file, or a ``folder``), its state folder and
    lock file, and ``--summary``."""
    from samrefiner.runner.state import lock_path_for, state_dir_for

    return [
        named("-o", output, folder=folder),
        named("the state folder", state_dir_for(output), folder=True, private=True),
        named("the lock file", lock_path_for(output)),
        named("--summary", args.summary),
    ]


# --------------------------------------------------------------------------- model + config


def add_model_args(parser: argparse.ArgumentParser, *, adapter: bool = True) -> Any:
    """``--model``, ``--checkpoint``, ``--device``, ``--random-weights``, the embedding
    cache options and (with ``adapter``) ``--adapter``; returns their argument group."""
    from samrefiner.models.catalog import model_help  # torch-free

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="sam_vit_h",
        help=model_help() + " (default: %(default)s)",
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
    if adapter:
        group.add_argument(
            "--adapter",
            default=None,
            metavar="DIR",
            help="IoU adapter folder written by 'samrefiner adapt' for this model: changes "
            "which of SAM's candidates is kept, never the candidates (default: none)",
        )
    group.add_argument(
        "--embedding-cache",
        default=None,
        metavar="DIR",
        help="keep image embeddings in DIR, keyed by image content and model weights, and "
        "reuse them in later runs (shared safely between runs; default: "
        + (
            "none"
            if adapter
            else "$SAMREFINER_HOME/embeddings; with --engine ray the "
            "actors write into it: a folder every node of the cluster shares"
        )
        + ")",
    )
    group.add_argument(
        "--embedding-cache-size",
        type=finite_float,
        default=4.0,
        metavar="GB",
        help="size bound of --embedding-cache; the least recently used embeddings are "
        "deleted beyond it (default: %(default)s)",
    )
    return group


def _flag_pair(group: Any, name: str, default: bool) -> None:
    flag = name.replace("_", "-")
    group.add_argument(
        f"--{flag}",
        dest=name,
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{FIELD_HELP[name]} (default: {'on' if default else 'off'})",
    )


#: Fields whose default None means "off": their value type and metavar.
_OFF_BY_DEFAULT: dict[str, tuple[Callable[[str], Any], str]] = {
    "early_stop_iou": (finite_float, "IOU"),
    "zoom_below": (int, "PX"),
    "gate_min_score": (finite_float, "IOU"),
    "gate_min_coarse_iou": (finite_float, "IOU"),
    "gate_max_area_ratio": (finite_float, "FACTOR"),
}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`RefineConfig` field, defaults taken from the dataclass.

    Fields that change results go in the "refinement" group, speed-only ones (see
    :data:`samrefiner.config.SPEED_ONLY`) in the "speed" group.
    """
    results = parser.add_argument_group("refinement (RefineConfig)")
    speed = parser.add_argument_group("speed (RefineConfig; results do not depend on these)")
    for field in dataclasses.fields(RefineConfig):
        name, default = field.name, getattr(_DEFAULTS, field.name)
        group = speed if RefineConfig.is_speed_only(name) else results
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            _flag_pair(group, name, default)
        elif name in ("dtype", "selection"):
            group.add_argument(
                flag,
                choices=DTYPES if name == "dtype" else SELECTIONS,
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
        elif name in _OFF_BY_DEFAULT:
            kind, metavar = _OFF_BY_DEFAULT[name]
            group.add_argument(
                flag,
                type=kind,
                default=default,
                metavar=metavar,
                help=f"{FIELD_HELP[name]} (default: off)",
            )
        else:
            group.add_argument(
                flag,
                type=finite_float if isinstance(default, float) else type(default),
                default=default,
                metavar=name.upper(),
                help=f"{FIELD_HELP[name]} (default: %(default)s)",
            )


def add_refiner_args(parser: argparse.ArgumentParser) -> None:
    """Every option :func:`build_refiner` reads: the model and the refinement settings.

    ``refine``, ``bench`` and every dataset command call this, so an option added here
    reaches all of them.
    """
    model = add_model_args(parser)
    model.add_argument(
        "--hq-token-only",
        action="store_true",
        help="HQ-SAM models only (sam_hq_* names and Hugging Face SAM-HQ models): keep the HQ "
        "token's mask as the one candidate, scored by the best of SAM's IoU predictions "
        "(default: SAM's three candidates, each plus the HQ mask, as the reference does)",
    )
    add_config_args(parser)


def config_from_args(args: argparse.Namespace) -> RefineConfig:
    """Build the RefineConfig from parsed options; invalid values raise ValueError."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RefineConfig)}
    return RefineConfig(**values)


def config_of(args: argparse.Namespace) -> RefineConfig:
    """The refinement settings the options give; invalid ones are a :class:`CommandError`."""
    try:
        return config_from_args(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The family options the model options set (``load_model``'s ``**options``)."""
    return {"hq_token_only": True} if getattr(args, "hq_token_only", False) else {}


def spec_of(args: argparse.Namespace, *, config: RefineConfig | None = None) -> RefinerSpec:
    """The :class:`~samrefiner.runner.spec.RefinerSpec` the model and refinement options
    describe, built once per command: what the fingerprint, the model check, the refiner
    build and the Ray actors take (never the options themselves).

    ``config`` replaces the refinement options (a command that only loads the model);
    without it they are checked here. Invalid values are a :class:`CommandError`.
    """
    from samrefiner.runner.spec import RefinerSpec  # lazily: --help imports no PIL / NumPy

    config = config_of(args) if config is None else config
    cache = getattr(args, "embedding_cache", None)
    if cache is not None and not args.embedding_cache_size > 0:
        raise CommandError(f"--embedding-cache-size must be > 0, got {args.embedding_cache_size}")
    return RefinerSpec(
        model=args.model,
        checkpoint=args.checkpoint,
        random_weights=bool(args.random_weights),
        device=args.device,
        adapter=getattr(args, "adapter", None),
        embedding_cache=cache,
        embedding_cache_bytes=int(getattr(args, "embedding_cache_size", 4.0) * (1 << 30)),
        hq_token_only=bool(getattr(args, "hq_token_only", False)),
        config=config,
    )


def model_spec_of(args: argparse.Namespace) -> RefinerSpec:
    """:func:`spec_of` for loading the model alone (the refinement options unread)."""
    return spec_of(args, config=_DEFAULTS)


def load_model_from_args(args: argparse.Namespace, *, cached: bool = True) -> Any:
    """Load the backend the options name (imports torch lazily, so ``--help`` stays fast).

    With ``--adapter`` the adapter is applied; with ``--embedding-cache`` (and ``cached``)
    the backend encodes through the cache. A model that cannot be loaded (missing or
    unreadable checkpoint, wrong architecture, unknown name, adapter of another model,
    option of another family, missing optional package) is a :class:`CommandError` naming
    the file and the problem.
    """
    return load_backend(model_spec_of(args), cached=cached)


def load_backend(spec: RefinerSpec, *, cached: bool = True) -> Any:
    """``spec.load_backend``; a model that cannot be loaded is a :class:`CommandError`."""
    from samrefiner.runner.spec import ModelLoadError

    try:
        return spec.load_backend(cached=cached)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc


def check_model_args(args: argparse.Namespace) -> None:
    """The quick checks of the model options, without loading the model: before a run
    whose workers load it elsewhere (``--engine ray``), so that a model name that does
    not exist, a missing ``--checkpoint`` or an unreadable ``--adapter`` is the same
    one-line :class:`CommandError` as when the model is loaded here.
    """
    check_spec(model_spec_of(args))


def check_spec(spec: RefinerSpec) -> None:
    """``spec.check``; a mistake is a :class:`CommandError`."""
    from samrefiner.runner.spec import ModelLoadError

    try:
        spec.check()
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc


def embedding_cache_of(args: argparse.Namespace) -> Any:
    """The :class:`~samrefiner.adaption.EmbeddingCache` the options name, or None."""
    if getattr(args, "embedding_cache", None) is None:
        return None
    if not args.embedding_cache_size > 0:
        raise CommandError(f"--embedding-cache-size must be > 0, got {args.embedding_cache_size}")
    from samrefiner.adaption import EmbeddingCache

    return EmbeddingCache(args.embedding_cache, int(args.embedding_cache_size * (1 << 30)))


def build_refiner(args: argparse.Namespace) -> Refiner:
    """The :class:`samrefiner.Refiner` the model and refinement options describe."""
    from samrefiner.runner.spec import ModelLoadError

    spec = spec_of(args)  # the settings checked before the (slow) model load
    try:
        return spec.build()
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc
