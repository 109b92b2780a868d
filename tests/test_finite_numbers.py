"""Numbers are finite: every float option of every command refuses NaN and infinities in
the parser, and the settings dataclasses refuse them naming the field."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from samrefiner.cli import build_parser, main
from samrefiner.config import RefineConfig

NON_FINITE = ("nan", "inf", "-inf", "NaN", "Infinity")


def _parsers(parser: argparse.ArgumentParser, name: str = "samrefiner"):
    """``(command name, parser)`` of every command and subcommand, nested ones included."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub}")


def _number_options() -> list[tuple[str, argparse.Action]]:
    """Every option whose type parses ``1.5`` as a float."""
    found = []
    for command, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or not callable(action.type):
                continue
            try:
                value = action.type("1.5")
            except (argparse.ArgumentTypeError, TypeError, ValueError):
                continue
            if isinstance(value, float):
                found.append((f"{command} {action.option_strings[-1]}", action))
    return found


NUMBER_OPTIONS = _number_options()


def test_the_walk_finds_the_float_options_of_every_kind_of_command() -> None:
    names = {name for name, _ in NUMBER_OPTIONS}
    for expected in (
        "samrefiner refine --zoom-context",
        "samrefiner refine --box",
        "samrefiner coco --min-score",
        "samrefiner bench --gamma",
        "samrefiner make-coarse --iou-range",
        "samrefiner masks --cpus-per-worker",
        "samrefiner adapt coco --lr",
        "samrefiner adapt semantic --held-out",
        "samrefiner instances --embedding-cache-size",
    ):
        assert expected in names


@pytest.mark.parametrize(("name", "action"), NUMBER_OPTIONS, ids=[n for n, _ in NUMBER_OPTIONS])
def test_every_float_option_refuses_nan_and_infinities(name: str, action) -> None:
    assert action.type("2.5") == 2.5
    for text in NON_FINITE:
        with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number"):
            action.type(text)


def test_a_non_finite_option_is_one_line_exit_2(tmp_path, capsys) -> None:
    argv = ["refine", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--zoom-below", "64", "--zoom-context", "inf"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [
        "samrefiner refine: error: argument --zoom-context: must be a finite number, got 'inf'"
    ]
    assert not (tmp_path / "out").exists()


def _float_fields(cls) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        if "float" in str(f.type):
            out.append(f.name)
    return out


@pytest.mark.parametrize("field", _float_fields(RefineConfig))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_refine_config_refuses_non_finite_numbers_naming_the_field(field: str, bad) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        RefineConfig(**{field: bad})


def test_the_float_fields_are_found() -> None:
    assert {"margin", "gamma", "strength", "zoom_context", "gate_max_area_ratio"} <= set(
        _float_fields(RefineConfig)
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_adapt_config_refuses_non_finite_numbers_naming_the_field(bad) -> None:
    from samrefiner.adaption.settings import AdaptConfig

    fields = _float_fields(AdaptConfig)
    assert {"alpha", "loss_margin", "lr", "weight_decay", "lr_decay", "held_out"} <= set(fields)
    for field in fields:
        with pytest.raises(ValueError, match=rf"^{field} must be"):
            AdaptConfig(**{field: bad})
    # From an adapter description too (JSON allows NaN and Infinity).
    data = AdaptConfig().to_dict() | {"lr": bad}
    with pytest.raises(ValueError, match="lr must be a finite number"):
        AdaptConfig.from_dict(data)
