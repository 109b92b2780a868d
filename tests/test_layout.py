"""The package's layering: every module imports its own wing and lower floors only.

:data:`LAYERS` is the direction table, top floor first. A module may import a module of a
lower floor, or of its own floor *and* wing; never a higher floor, nor a sibling wing of its
floor. Every import counts: top-level, inside functions (lazy), under ``if TYPE_CHECKING:``
(a type-only import still ties the modules' meanings together, and a checker follows it),
and a string constant that names a samrefiner module (the facades' lazy-attribute tables).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import samrefiner
from samrefiner.cli import build_parser
from samrefiner.config import RefineConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "samrefiner"


@dataclass(frozen=True)
class Layer:
    """One row of the direction table: a floor, a wing of it, and the modules it holds.

    ``modules``: a name ending in ``.*`` is a package with everything below it; any other
    name is that one module only.
    """

    floor: int
    wing: str
    modules: tuple[str, ...]

    def holds(self, module: str) -> bool:
        return any(
            module == p[:-2] or module.startswith(p[:-1]) if p.endswith(".*") else module == p
            for p in self.modules
        )


#: The direction table, top floor first.
LAYERS = [
    # The facade and the old import paths kept for callers: they may import anything.
    Layer(
        8,
        "compat",
        (
            "samrefiner",
            "samrefiner.__main__",  # `python -m samrefiner`: the command's entry
            "samrefiner.bench",
            "samrefiner.masks",
            "samrefiner.metrics",
            "samrefiner.perturb",
        ),
    ),
    Layer(7, "cli", ("samrefiner.cli.*",)),
    Layer(6, "report", ("samrefiner.report.*",)),
    Layer(5, "runner", ("samrefiner.runner.*",)),
    Layer(5, "integrations", ("samrefiner.integrations.*",)),
    Layer(5, "measure", ("samrefiner.measure.*",)),
    Layer(4, "adaption", ("samrefiner.adaption.*",)),
    Layer(3, "cluster", ("samrefiner.cluster.*",)),  # generic Ray plumbing, below both its users
    Layer(
        2,
        "core",
        (
            "samrefiner._lazy",
            "samrefiner._version",
            "samrefiner.batch",
            "samrefiner.config",
            "samrefiner.crops",
            "samrefiner.detectors.*",
            "samrefiner.excavation.*",
            "samrefiner.extras",
            "samrefiner.gate",
            "samrefiner.geometry",
            "samrefiner.mixed",
            "samrefiner.models.*",
            "samrefiner.objects",
            "samrefiner.postprocess",
            "samrefiner.refiner",
            "samrefiner.split_merge",
            "samrefiner.testing",
            "samrefiner.types",
            "samrefiner.video.*",
            "samrefiner.zoom",
        ),
    ),
    Layer(1, "io", ("samrefiner.io.*",)),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _rows(module: str) -> list[Layer]:
    return [layer for layer in LAYERS if layer.holds(module)]


def _resolve(name: str) -> str:
    """The module an import of ``name`` loads last: the longest known module it names."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _package_imports(path: Path, text: str | None = None) -> set[str]:
    """Every samrefiner module ``path`` (or ``text`` read as that file) imports, lazily or not."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here.pop()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here[: len(here) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in MODULES
            and "." in node.value  # not a bare "samrefiner" (a key, a folder name)
        ):
            names.add(node.value)
    return {_resolve(n) for n in names if n == "samrefiner" or n.startswith("samrefiner.")}


def test_every_module_has_exactly_one_row() -> None:
    misplaced = {m: [f"{r.floor}/{r.wing}" for r in _rows(m)] for m in MODULES}
    misplaced = {m: rows for m, rows in misplaced.items() if len(rows) != 1}
    assert not misplaced, f"modules in no row or in several (place them in LAYERS): {misplaced}"


def _violations() -> list[str]:
    found = []
    for module, path in MODULES.items():
        (row,) = _rows(module) or (None,)
        if row is None:
            continue  # test_every_module_has_exactly_one_row names it
        for target in sorted(_package_imports(path)):
            rows = _rows(target)
            if not rows:
                found.append(f"{module} imports {target}, which no row holds")
                continue
            (to,) = rows
            if to.floor > row.floor or (to.floor == row.floor and to.wing != row.wing):
                found.append(
                    f"{module} ({row.floor}/{row.wing}) imports {target} ({to.floor}/{to.wing})"
                )
    return found


def test_every_import_points_down_or_within_its_wing() -> None:
    found = _violations()
    assert not found, "imports against the direction table:\n" + "\n".join(found)


def test_the_table_sees_lazy_and_type_only_imports() -> None:
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from samrefiner.refiner import Refiner\n"
        "def f():\n    import samrefiner.cli.common\n    from . import coco\n"
        "LAZY = {'x': 'samrefiner.report', 'folder': 'samrefiner'}\n"
    )
    # Read as if it were io/atomic.py: the relative import resolves inside io/.
    assert _package_imports(SRC / "io" / "atomic.py", text) == {
        "samrefiner.refiner",
        "samrefiner.cli.common",
        "samrefiner.io.coco",
        "samrefiner.report",
    }


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


#: Old import paths kept for callers: (old module, new module); the old one re-exports the
#: new one's public names, the same objects.
MOVED = [
    ("samrefiner.masks", "samrefiner.io.masks"),
    ("samrefiner.metrics", "samrefiner.measure.metrics"),
    ("samrefiner.perturb", "samrefiner.measure.perturb"),
    ("samrefiner.bench.results", "samrefiner.measure.results"),
]


@pytest.mark.parametrize(("old", "new"), MOVED, ids=[old for old, _ in MOVED])
def test_old_import_paths_reexport_the_moved_names(old: str, new: str) -> None:
    before, after = importlib.import_module(old), importlib.import_module(new)
    public = getattr(after, "__all__", None) or [
        n
        for n, v in vars(after).items()
        if not n.startswith("_")
        and not inspect.ismodule(v)
        and getattr(v, "__module__", new) == new  # defined there, not imported
    ]
    assert public
    for name in public:
        assert getattr(before, name) is getattr(after, name), f"{old}.{name}"


def test_the_runners_old_module_names_import_the_moved_modules() -> None:
    """``samrefiner.runner`` in floors (formats/, engines/, journal/): every module name
    of the flat layout still imports, as the very module that moved."""
    from samrefiner.runner import OLD_MODULES

    assert len(OLD_MODULES) == 12
    for old, new in OLD_MODULES.items():
        moved = importlib.import_module(new)
        assert importlib.import_module(old) is moved, old
        assert moved.__spec__.name == new  # the alias leaves the module its own spec
        assert getattr(importlib.import_module("samrefiner.runner"), old.rsplit(".", 1)[1])
    from samrefiner.runner.pipeline import Progress, run_dataset
    from samrefiner.runner.records import RunSummary

    assert Progress.__module__ == "samrefiner.runner.progress"
    assert run_dataset.__module__ == "samrefiner.runner.engines.local"
    assert RunSummary.__module__ == "samrefiner.runner.journal.records"


def test_the_runner_is_in_floors() -> None:
    """Formats, engines and the journal each in a folder of their own, nothing else flat
    but the session's modules, the Dataset contract and progress."""
    root = Path(samrefiner.__file__).parent / "runner"
    flat = sorted(p.stem for p in root.glob("*.py"))
    assert flat == ["__init__", "dataset", "options", "progress", "session", "spec"]
    floors = {
        d.name: sorted(p.stem for p in d.glob("*.py"))
        for d in root.iterdir()
        if d.is_dir() and d.name != "__pycache__"
    }
    assert floors == {
        "engines": ["__init__", "lanes", "local", "ray", "steps"],
        "formats": [
            "__init__",
            "coco",
            "complete",
            "label",
            "label_folders",
            "labelme",
            "mask_folders",
            "video",
            "yolo",
        ],
        "journal": ["__init__", "records", "state", "status"],
    }


def test_input_error_keeps_its_old_home() -> None:
    from samrefiner.io import InputError
    from samrefiner.io.errors import InputError as moved
    from samrefiner.io.images import InputError as old

    assert InputError is moved is old


def test_the_cluster_plumbing_sits_below_the_runner_and_adaption() -> None:
    """``samrefiner.cluster`` (generic Ray plumbing) imports no samrefiner module but the
    optional-extra helper and the ground's message wording; the embedding pass on Ray
    (adaption's) and the Ray engine (the runner's) import it, and
    adaption never imports the runner."""
    assert {n for n in _imports(SRC / "cluster.py") if n.startswith("samrefiner")} <= {
        "samrefiner.extras",
        "samrefiner.io.errors",
    }
    for path in sorted((SRC / "adaption").glob("*.py")):
        names = _imports(path)
        assert not {n for n in names if n.startswith("samrefiner.runner")}, path.name
    assert "samrefiner.cluster" in _imports(SRC / "adaption" / "ray_embed.py")
    assert "samrefiner.cluster" in _imports(SRC / "runner" / "engines" / "ray.py")
