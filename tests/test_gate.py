"""Quality gate: keep the coarse mask when the refined one looks worse."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_fake_backend import FakeBackend, fixed
from samrefiner import RefineConfig, Refiner
from samrefiner.gate import GATE_AREA_CHANGE, GATE_LOW_SCORE, GATE_MOVED, score_gate
from samrefiner.types import STATUS_EMPTY, STATUS_KEPT_COARSE, STATUS_REFINED, RefineResult

SIDE = 64


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    out = np.zeros((SIDE, SIDE), bool)
    out[y0:y1, x0:x1] = True
    return out


COARSE = rect(20, 40, 20, 40)
IMAGE = np.zeros((SIDE, SIDE, 3), np.uint8)
ALL_RULES = {"gate_min_score": 0.5, "gate_min_coarse_iou": 0.2, "gate_max_area_ratio": 2.0}


@pytest.mark.parametrize(
    ("answer", "iou", "rules", "reason"),
    [
        (COARSE, 0.3, {"gate_min_score": 0.5}, GATE_LOW_SCORE),
        (rect(0, 10, 50, 60), 0.9, {"gate_min_coarse_iou": 0.5}, GATE_MOVED),
        # 4x the area, IoU 0.25 with the coarse mask: only the area rule fires.
        (rect(10, 50, 10, 50), 0.9, ALL_RULES, GATE_AREA_CHANGE),
        (rect(25, 35, 25, 35), 0.9, {"gate_max_area_ratio": 3.0}, GATE_AREA_CHANGE),
        (rect(19, 41, 19, 41), 0.9, ALL_RULES, None),
        (rect(0, 10, 50, 60), 0.3, {}, None),  # gate off
    ],
)
def test_each_rule_fires_and_records_its_reason(answer, iou, rules, reason):
    config = RefineConfig(iterations=1, **rules)
    result = Refiner(FakeBackend(fixed(answer, iou)), config).refine(IMAGE, COARSE)
    assert result.gate_reasons == [reason]
    assert result.scores[0] == pytest.approx(iou)
    if reason is None:
        assert result.status == [STATUS_REFINED]
        np.testing.assert_array_equal(result.masks[0], answer)
        assert "gate_reason" not in result.to_records()[0]
    else:
        assert result.status == [STATUS_KEPT_COARSE]
        np.testing.assert_array_equal(result.masks[0], COARSE)
        assert result.to_records()[0]["gate_reason"] == reason


def test_empty_masks_are_not_gated():
    config = RefineConfig(iterations=1, **ALL_RULES)
    masks = np.stack([COARSE, np.zeros_like(COARSE)])
    result = Refiner(FakeBackend(fixed(rect(0, 10, 50, 60), 0.1)), config).refine(IMAGE, masks)
    assert result.status == [STATUS_KEPT_COARSE, STATUS_EMPTY]
    assert result.gate_reasons == [GATE_LOW_SCORE, None]


def test_gated_box_input_keeps_the_filled_box():
    config = RefineConfig(iterations=1, gate_min_score=0.5)
    result = Refiner(FakeBackend(fixed(COARSE, 0.2)), config).refine(IMAGE, boxes=[[5, 6, 9, 12]])
    assert result.status == [STATUS_KEPT_COARSE]
    np.testing.assert_array_equal(result.masks[0], rect(6, 13, 5, 10))


def test_gate_config_validation():
    for bad in (
        {"gate_min_score": 0.0},
        {"gate_min_score": 1.5},
        {"gate_min_coarse_iou": float("nan")},
        {"gate_max_area_ratio": 1.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RefineConfig(**bad)
    assert not RefineConfig().gates and RefineConfig(gate_max_area_ratio=2).gates


def test_result_checks_reasons_match_statuses():
    with pytest.raises(ValueError, match="gate reason"):
        RefineResult(
            masks=np.zeros((1, 2, 2), bool),
            scores=[0.5],
            prompts=[None],
            status=[STATUS_REFINED],
            gate_reasons=[GATE_MOVED],
        )


def test_score_gate_precision_and_recall():
    kept = np.array([True, True, False, False, True])
    coarse = np.array([0.8, 0.7, 0.6, 0.5, 0.9])
    refined = np.array([0.6, 0.9, 0.4, 0.8, 0.7])  # worse: 0, 2, 4
    score = score_gate(kept, coarse, refined)
    assert (score.kept, score.worse, score.kept_worse, score.total) == (3, 3, 2, 5)
    assert score.precision == pytest.approx(2 / 3) and score.recall == pytest.approx(2 / 3)
    none = score_gate([False], [0.5], [0.9])
    assert none.precision is None and none.recall is None
    with pytest.raises(ValueError, match="must match"):
        score_gate([True], [0.5, 0.6], [0.5])


def test_eval_scores_the_gate_of_mask_folders(tmp_path, capsys):
    import json

    from PIL import Image

    from samrefiner.cli import main

    def box(x0: int, x1: int) -> np.ndarray:
        out = np.zeros((20, 40), bool)
        out[5:15, x0:x1] = True
        return out

    gt = box(10, 30)
    # object: (coarse, ungated refinement, gated output)
    cases = {
        "a": (box(10, 26), box(10, 20), "coarse"),  # worse, kept
        "b": (box(10, 22), box(10, 29), "ungated"),  # better, not kept
        "c": (box(10, 25), box(10, 21), "ungated"),  # worse, missed
        "d": (box(10, 20), box(10, 28), "coarse"),  # better, kept anyway
    }
    folders = {name: tmp_path / name for name in ("gt", "coarse", "ungated", "gated")}
    for name, (coarse, refined, gated) in cases.items():
        for folder, mask in (
            ("gt", gt),
            ("coarse", coarse),
            ("ungated", refined),
            ("gated", coarse if gated == "coarse" else refined),
        ):
            folders[folder].mkdir(exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(folders[folder] / f"{name}.png")
    out = tmp_path / "eval.json"
    args = ["eval", folders["gated"], folders["gt"], "--no-progress", "--json", out]
    code = main([str(a) for a in [*args, "--gate", folders["ungated"], folders["coarse"]]])
    assert code == 0
    text = capsys.readouterr().out
    assert "quality gate: kept 2 of 4 masks; refinement made 2 worse; 1 kept and worse" in text
    gate = json.loads(out.read_text())["gate"]
    assert gate["precision"] == 0.5 and gate["recall"] == 0.5
