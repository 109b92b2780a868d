"""Options and helpers shared by the subcommands, by job, in their own modules; every
name stays importable from here:

* :mod:`samrefiner.cli.arg_types`: argparse types (every number option of every command);
* :mod:`samrefiner.cli.options`: argument definitions (``--ignore``, ``--iou-range``, the
  label-folder arguments, the model and refinement options);
* :mod:`samrefiner.cli.paths`: inputs named by path or URI, local outputs and the check
  that outputs clash with no input and no other output;
* :mod:`samrefiner.cli.building`: the options turned into a ``RefineConfig`` and a
  ``RefinerSpec``, and the model checks and builds on it.
"""

from samrefiner.cli.arg_types import (
    finite_float,
    ignore_value,
    non_negative_int,
    pixel_limit,
    positive_int,
    positive_seconds,
)
from samrefiner.cli.building import (
    build_refiner,
    check_model_args,
    check_spec,
    config_from_args,
    config_of,
    embedding_cache_of,
    load_backend,
    load_model_from_args,
    model_options,
    model_spec_of,
    spec_of,
)
from samrefiner.cli.options import (
    DEFAULT_IGNORE,
    DEFAULT_IOU_RANGE,
    URI_HELP,
    add_config_args,
    add_ignore_arg,
    add_images_arg,
    add_iou_range_arg,
    add_label_folder_args,
    add_model_args,
    add_refiner_args,
)
from samrefiner.cli.paths import (
    check_paths,
    identity,
    label_folder_inputs,
    local_or_uri,
    local_output,
    named,
    run_outputs,
)

__all__ = [
    "DEFAULT_IGNORE",
    "DEFAULT_IOU_RANGE",
    "URI_HELP",
    "add_config_args",
    "add_ignore_arg",
    "add_images_arg",
    "add_iou_range_arg",
    "add_label_folder_args",
    "add_model_args",
    "add_refiner_args",
    "build_refiner",
    "check_model_args",
    "check_paths",
    "check_spec",
    "config_from_args",
    "config_of",
    "embedding_cache_of",
    "finite_float",
    "identity",
    "ignore_value",
    "label_folder_inputs",
    "load_backend",
    "load_model_from_args",
    "local_or_uri",
    "local_output",
    "model_options",
    "model_spec_of",
    "named",
    "non_negative_int",
    "pixel_limit",
    "positive_int",
    "positive_seconds",
    "run_outputs",
    "spec_of",
]
