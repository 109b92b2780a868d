"""The per-object container (samrefiner.objects) and the one refine entry for a mix of
masks and boxes (samrefiner.mixed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from samrefiner import RefineConfig, Refiner
from samrefiner.crops import MaskCrops
from samrefiner.mixed import refine_objects
from samrefiner.objects import REQUIRED, Column
from samrefiner.runner.dataset import CroppedResult
from samrefiner.types import MaskPrompt, ObjectOutcome, RefineResult


def _prompt(k: int) -> MaskPrompt:
    return MaskPrompt(np.array([[k, k]]), np.array([1]), None, False, None)


def _result(n: int, *, first: int = 0, h: int = 4, w: int = 5) -> RefineResult:
    """``n`` objects numbered from ``first``: mask k has pixel k set, score k / 10, ..."""
    masks = np.zeros((n, h, w), dtype=bool)
    for row in range(n):
        masks[row].flat[first + row] = True
    ids = range(first, first + n)
    return RefineResult(
        masks=masks,
        scores=[k / 10 for k in ids],
        prompts=[_prompt(k) for k in ids],
        status=["kept_coarse" if k % 3 == 2 else "refined" for k in ids],
        iterations=list(ids),
        timings={"decoder": 1.0 + first},
        zoomed=[k % 2 == 1 for k in ids],
        gate_reasons=["low_score" if k % 3 == 2 else None for k in ids],
        crops=first,
    )


def _rows(result: RefineResult) -> list[tuple]:
    """Every per-object value of ``result``, row by row."""
    return [
        (
            result.masks[k].tobytes(),
            float(result.scores[k]),
            None if result.prompts[k] is None else result.prompts[k].to_dict(),
            result.status[k],
            int(result.iterations[k]),
            bool(result.zoomed[k]),
            result.gate_reasons[k],
        )
        for k in range(len(result))
    ]


def test_declared_fields() -> None:
    assert RefineResult.columns() == (
        "masks",
        "scores",
        "prompts",
        "status",
        "iterations",
        "zoomed",
        "gate_reasons",
    )
    assert RefineResult.totals() == ("timings", "crops")
    assert CroppedResult.columns() == RefineResult.columns()
    assert RefineResult.column_spec("scores") == Column(np.float32)
    assert RefineResult.column_spec("zoomed").fill is False
    assert RefineResult.column_spec("prompts").fill is REQUIRED
    with pytest.raises(KeyError, match="no column 'timings'"):
        RefineResult.column_spec("timings")


@pytest.mark.parametrize(
    "indices",
    [[], [0], [3, 1], [0, 1, 2, 3, 4], [4, 4, 0]],
)
def test_take(indices: list[int]) -> None:
    full = _result(5)
    part = full.take(indices)
    assert type(part) is RefineResult
    assert _rows(part) == [_rows(full)[i] for i in indices]
    assert part.scores.dtype == np.float32 and part.iterations.dtype == np.int64
    assert part.timings == full.timings and part.crops == full.crops


@pytest.mark.parametrize("sizes", [[3], [1, 2], [2, 0, 3], [1, 1, 1, 1]])
def test_concat(sizes: list[int]) -> None:
    starts = np.cumsum([0, *sizes])[:-1].tolist()
    parts = [_result(n, first=s) for n, s in zip(sizes, starts, strict=True)]
    joined = RefineResult.concat(parts)
    assert _rows(joined) == _rows(_result(sum(sizes)))
    assert joined.timings == {"decoder": sum(1.0 + s for s in starts)}
    assert joined.crops == sum(starts)


def test_concat_needs_a_part() -> None:
    with pytest.raises(ValueError, match="at least one RefineResult"):
        RefineResult.concat([])


@pytest.mark.parametrize(
    "groups",
    [
        [[0, 1, 2, 3, 4]],
        [[4, 3, 2, 1, 0]],
        [[0, 2, 4], [1, 3]],
        [[3], [0, 4], [2, 1]],
    ],
)
def test_scatter_puts_parts_back_in_object_order(groups: list[list[int]]) -> None:
    full = _result(5)
    parts = [(g, full.take(g)) for g in groups]
    back = RefineResult.scatter(5, parts)
    assert _rows(back) == _rows(full)
    assert back.crops == full.crops * len(groups)
    assert RefineResult.gather(5, parts).masks.tobytes() == back.masks.tobytes()


@pytest.mark.parametrize("groups", [[[0, 1]], [[0, 1, 2], [2]], [[0, 5, 1, 2, 3]]])
def test_scatter_names_every_object_once(groups: list[list[int]]) -> None:
    full = _result(5)
    parts = [(g, full.take([min(i, 4) for i in g])) for g in groups]
    with pytest.raises(ValueError, match="must name each of the 3 masks once"):
        RefineResult.scatter(3, parts)


def test_put_copies_rows_in_place() -> None:
    state = RefineResult.start(np.zeros((4, 4, 5), dtype=bool))
    part = _result(2, first=1)
    state.put([3, 0], part)
    assert _rows(state.take([3, 0])) == _rows(part)
    assert state.status[1:3] == ["refined", "refined"] and np.isnan(state.scores[1:3]).all()
    crops = CroppedResult.from_results((4, 5), [_result(2)])
    with pytest.raises(TypeError, match="not MaskCrops"):
        crops.put([0], crops)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scores", [0.5], "scores has 1 entries for 2 masks"),
        ("prompts", [None] * 3, "prompts has 3 entries for 2 masks"),
        ("status", ["refined"], "status has 1 entries for 2 masks"),
        ("iterations", [1, 2, 3], "iterations has 3 entries for 2 masks"),
        ("zoomed", [True], "zoomed has 1 entries for 2 masks"),
        ("gate_reasons", [None], "gate_reasons has 1 entries for 2 masks"),
    ],
)
def test_length_checks(field: str, value: list, message: str) -> None:
    kwargs = {
        "masks": np.zeros((2, 3, 3), bool),
        "scores": [0.1, 0.2],
        "prompts": [None, None],
        "status": ["refined", "empty"],
        field: value,
    }
    with pytest.raises(ValueError, match=message):
        RefineResult(**kwargs)


def test_missing_columns_are_filled() -> None:
    result = RefineResult(np.zeros((2, 3, 3), bool), [0.1, np.nan], [None, None], ["refined"] * 2)
    assert result.iterations.tolist() == [0, 0] and result.iterations.dtype == np.int64
    assert result.zoomed.tolist() == [False, False] and result.gate_reasons == [None, None]
    assert result.timings == {} and result.crops == 0
    empty = RefineResult(np.zeros((0, 3, 3), bool), [], [], [])
    assert len(empty) == 0 and empty.zoomed.shape == (0,)


def test_rows_and_records() -> None:
    result = _result(3)
    prompt = result.prompts[2]
    row = ObjectOutcome(float(np.float32(0.2)), "kept_coarse", 2, prompt, False, "low_score")
    assert result.outcome(2) == row
    records = result.to_records()
    assert records == [o.to_record() for o in result.outcomes()]
    assert list(records[0]) == ["score", "status", "iterations", "prompts"]
    assert list(records[1]) == ["score", "status", "iterations", "prompts", "zoomed"]
    assert list(records[2]) == ["score", "status", "iterations", "prompts", "gate_reason"]
    nan = RefineResult(np.zeros((1, 2, 2), bool), [np.nan], [None], ["empty"])
    assert nan.outcome(0).score is None and nan.to_records()[0]["score"] is None


def test_cropped_result_is_the_same_container_with_crops() -> None:
    a, b = _result(2), _result(3, first=2)
    cropped = CroppedResult.from_results((4, 5), [a, b])
    assert isinstance(cropped.masks, MaskCrops)
    assert np.array_equal(cropped.masks.stack(), RefineResult.concat([a, b]).masks)
    assert cropped.timings == {"decoder": 1.0 + 3.0}
    back = CroppedResult.scatter(
        5, [([1, 3], cropped.take([1, 3])), ([0, 2, 4], cropped.take([0, 2, 4]))]
    )
    assert type(back) is CroppedResult
    assert np.array_equal(back.masks.stack(), cropped.masks.stack())
    assert back.status == cropped.status and back.gate_reasons == cropped.gate_reasons
    empty = CroppedResult.from_results((4, 5), [])
    assert len(empty) == 0 and empty.masks.shape == (4, 5)


# ---------------------------------------------------------------- a mix of masks and boxes


class _Recorder:
    """A refiner that records its calls and refines each object to its filled box or mask."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def encode(self, image: np.ndarray) -> str:
        self.calls.append({"encode": True})
        return "embedding"

    def refine(self, image, masks=None, *, boxes=None, **kwargs) -> RefineResult:
        self.calls.append({"boxes": boxes is not None, **kwargs})
        if boxes is not None:
            masks = np.zeros((len(boxes), *image.shape[:2]), dtype=bool)
            for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=int)):
                masks[k, y1 : y2 + 1, x1 : x2 + 1] = True
        n = len(masks)
        return RefineResult(
            masks,
            np.arange(n, dtype=np.float32) + (10 if boxes is not None else 0),
            [None] * n,
            ["refined"] * n,
            timings={"decoder": 1.0},
        )


@pytest.mark.parametrize(
    "from_box",
    [
        [False, False, False],
        [True, True, True],
        [False, True, False, True],
        [True, False, False, True, False],
        [True, False],
    ],
)
def test_mixed_objects_keep_their_order(from_box: list[bool]) -> None:
    n = len(from_box)
    image = np.zeros((12, 12, 3), np.uint8)
    masks = np.zeros((n, 12, 12), bool)
    boxes = np.full((n, 4), np.nan, np.float32)
    for k in range(n):
        if from_box[k]:
            boxes[k] = [k, k, k + 1, k + 1]
        else:
            masks[k, k, :] = True
    refiner = _Recorder()
    result = refine_objects(refiner, image, masks, boxes, from_box)
    for k in range(n):
        expected = np.zeros((12, 12), bool)
        if from_box[k]:
            expected[k : k + 2, k : k + 2] = True
        else:
            expected[k, :] = True
        assert np.array_equal(result.masks[k], expected)
    by_mask = [k for k in range(n) if not from_box[k]]
    by_box = [k for k in range(n) if from_box[k]]
    assert result.scores.tolist() == [
        10 + by_box.index(k) if from_box[k] else by_mask.index(k) for k in range(n)
    ]
    # One call per kind, masks first; one encoder pass when both kinds are there.
    kinds = [c["boxes"] for c in refiner.calls if "boxes" in c]
    assert kinds == [False] * bool(by_mask) + [True] * bool(by_box)
    encodes = [c for c in refiner.calls if "encode" in c]
    assert len(encodes) == int(bool(by_mask and by_box))
    assert result.timings == {"decoder": float(len(kinds))}


def test_mixed_crops_and_first_prompts_go_to_their_kind() -> None:
    from samrefiner.zoom import Crop

    image = np.zeros((12, 12, 3), np.uint8)
    masks = np.zeros((4, 12, 12), bool)
    masks[:, 1, 1] = True
    boxes = np.array([[np.nan] * 4, [0, 0, 2, 2], [np.nan] * 4, [3, 3, 5, 5]], np.float32)
    refiner = _Recorder()
    crop = Crop(0, 0, 8, 8, (1, 2, 3))
    refine_objects(
        refiner,
        image,
        MaskCrops.from_masks(masks, (12, 12)),
        boxes,
        [False, True, False, True],
        embedding="given",
        first_prompts=["p0", None, "p2", None],
        crops=[crop],
    )
    mask_call, box_call = refiner.calls
    assert mask_call["first_prompts"] == ["p0", "p2"] and "first_prompts" not in box_call
    assert mask_call["crops"] == [dataclasses.replace(crop, members=(1,))]
    assert box_call["crops"] == [dataclasses.replace(crop, members=(0, 1))]
    assert mask_call["embedding"] == box_call["embedding"] == "given"


@pytest.mark.parametrize(
    ("masks", "boxes", "from_box", "message"),
    [
        (np.zeros((2, 4, 4), bool), None, [False, True], "flagged from_box need boxes"),
        (None, np.zeros((2, 4)), [False, True], "not flagged from_box need masks"),
        (np.zeros((3, 4, 4), bool), None, [False, False], "masks has 3 entries for 2 objects"),
        (None, np.zeros((1, 4)), [True, True], "boxes has 1 entries for 2 objects"),
    ],
)
def test_mixed_input_errors(masks, boxes, from_box, message) -> None:
    with pytest.raises(ValueError, match=message):
        refine_objects(_Recorder(), np.zeros((4, 4, 3), np.uint8), masks, boxes, from_box)


def test_refiner_refine_takes_a_mix(tiny_backend) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    masks = np.zeros((3, 48, 64), bool)
    masks[0, 5:20, 5:25] = True
    masks[2, 25:40, 30:60] = True
    boxes = np.full((3, 4), np.nan, np.float32)
    boxes[1] = [10, 20, 40, 45]
    refiner = Refiner(tiny_backend, RefineConfig(iterations=2))
    mixed = refiner.refine(image, masks, boxes=boxes, from_box=[False, True, False])
    by_mask = refiner.refine(image, masks[[0, 2]])
    by_box = refiner.refine(image, boxes=boxes[[1]])
    expected = RefineResult.gather(3, [([0, 2], by_mask), ([1], by_box)])
    assert np.array_equal(mixed.masks, expected.masks)
    np.testing.assert_array_equal(mixed.scores, expected.scores)
    assert mixed.status == expected.status and mixed.to_records() == expected.to_records()
    empty = refiner.refine(image, masks[:0], boxes=boxes[:0], from_box=[])
    assert empty.masks.shape == (0, 48, 64) and empty.status == []
