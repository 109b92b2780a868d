"""The integration examples of README.md and docs/integrations.md run as written."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import samrefiner
from samrefiner.testing import tiny_sam

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "integrations.md"]


def _python_blocks(path, module: str) -> list[str]:
    """The ```python blocks of a document that use ``module`` (or follow one that does)."""
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    chosen, started = [], False
    for block in blocks:
        if "samrefiner.integrations." in block:
            started = module in block
        if started:
            chosen.append(block)
    return chosen


@pytest.fixture
def tiny_models(monkeypatch):
    """``load_model(...)`` gives the tiny random SAM, whatever name the example uses."""
    monkeypatch.setattr(samrefiner, "load_model", lambda *args, **kwargs: tiny_sam())


@pytest.mark.extra("supervision")
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_supervision_examples_run(doc, tiny_models, tmp_path, monkeypatch) -> None:
    import supervision as sv

    blocks = _python_blocks(doc, "samrefiner.integrations.supervision")
    assert blocks, f"{doc.name} has no supervision example"
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "image.jpg"), image)
    mask = np.zeros((1, 48, 64), dtype=bool)
    mask[0, 10:30, 15:45] = True
    detections = sv.Detections(
        xyxy=sv.mask_to_xyxy(mask).astype(float), mask=mask, class_id=np.array([0])
    )
    source = sv.DetectionDataset(
        ["a"], [str(tmp_path / "image.jpg")], {str(tmp_path / "image.jpg"): detections}
    )
    source.as_coco(
        images_directory_path=str(tmp_path / "images"),
        annotations_path=str(tmp_path / "coarse.json"),
    )
    monkeypatch.chdir(tmp_path)
    namespace = {"detections": detections}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)
    refined = namespace["refined"]
    if isinstance(refined, sv.DetectionDataset):
        assert (tmp_path / "refined.json").is_file()
        (refined,) = refined.annotations.values()
    assert list(refined.data["samrefiner_status"]) == ["refined"]


@pytest.mark.extra("fiftyone")
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_fiftyone_examples_match_the_signatures(doc) -> None:
    import fiftyone.core.labels  # noqa: F401

    blocks = _python_blocks(doc, "samrefiner.integrations.fiftyone")
    assert blocks, f"{doc.name} has no FiftyOne example"
    calls = 0
    for block in blocks:
        tree = ast.parse(block)
        functions = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("samrefiner"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    functions[alias.asname or alias.name] = getattr(module, alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                func = functions.get(node.func.id)
                if func is not None and node.func.id.startswith("refine"):
                    inspect.signature(func).bind(
                        *node.args, **{k.arg: k.value for k in node.keywords}
                    )
                    calls += 1
    assert calls, f"{doc.name}: no call of a FiftyOne adapter found"
