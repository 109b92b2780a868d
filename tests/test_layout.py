"""The package's layering: the outer ring (cli) points inward, never the other way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from samrefiner.cli import build_parser
from samrefiner.config import RefineConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "samrefiner"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in sorted(SRC.rglob("*.py"))
        if "cli" not in p.relative_to(SRC).parts
        and p != SRC / "__main__.py"  # `python -m samrefiner`: the command's entry, above cli
    ],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_nothing_below_cli_imports_argparse_or_the_cli(path: Path) -> None:
    bad = {n for n in _imports(path) if n == "argparse" or n.startswith("samrefiner.cli")}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_importing_the_runner_loads_no_cli_module() -> None:
    code = "import sys, samrefiner.runner; print([m for m in sys.modules if 'samrefiner.cli' in m])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_uses_elastic_box() -> None:
    assert not RefineConfig().uses_elastic_box  # margin 0: tight box
    assert RefineConfig(margin=0.1).uses_elastic_box
    assert not RefineConfig(margin=0.1, use_box=False).uses_elastic_box


def test_speed_only_settings_are_split_from_result_settings() -> None:
    cfg = RefineConfig(max_batch=3, threads=2)
    assert cfg.speed_settings() == {"max_batch": 3, "threads": 2}
    assert set(cfg.result_settings()) | set(cfg.speed_settings()) == set(cfg.to_dict())
    assert not set(cfg.result_settings()) & set(cfg.speed_settings())
    # The resume fingerprint keeps only result settings: speed ones may change.
    assert cfg.result_settings() == RefineConfig().result_settings()
    assert cfg.replace(iterations=2).result_settings() != cfg.result_settings()


def test_speed_options_are_listed_apart_in_help() -> None:
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = sub["coco"].format_help()
    speed = text[text.index("speed (RefineConfig") :]
    assert "--max-batch" in speed and "--threads" in speed
    assert "--margin" not in speed


def test_the_cluster_plumbing_sits_below_the_runner_and_adaption() -> None:
    """``samrefiner.cluster`` (generic Ray plumbing) imports no samrefiner module; the
    embedding pass on Ray (adaption's) and the Ray engine (the runner's) import it, and
    adaption never imports the runner."""
    assert not {n for n in _imports(SRC / "cluster.py") if n.startswith("samrefiner")}
    for path in sorted((SRC / "adaption").glob("*.py")):
        names = _imports(path)
        assert not {n for n in names if n.startswith("samrefiner.runner")}, path.name
    assert "samrefiner.cluster" in _imports(SRC / "adaption" / "ray_embed.py")
    assert "samrefiner.cluster" in _imports(SRC / "runner" / "ray_engine.py")
