"""Boxes in, masks out: ``Refiner.refine(image, boxes=...)``."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_fake_backend import DecodeCall, FakeBackend, echo, logits_of
from samrefiner import RefineConfig, Refiner
from samrefiner.io.masks import as_box_array, box_masks
from samrefiner.types import STATUS_REFINED

SIDE = 64


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    out = np.zeros((SIDE, SIDE), bool)
    out[y0:y1, x0:x1] = True
    return out


CANDIDATES = [rect(12, 20, 10, 18), rect(14, 38, 12, 28), rect(0, 64, 0, 64)]
IOUS = np.array([0.3, 0.8, 0.5], dtype=np.float32)


def box_then_echo(call: DecodeCall, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Box-only prompts get three chosen candidates; mask prompts are echoed back."""
    if call.box_only:
        return np.stack([logits_of(c) for c in CANDIDATES]), IOUS
    return echo(call, row)


@pytest.fixture
def image() -> np.ndarray:
    return np.zeros((SIDE, SIDE, 3), np.uint8)


def test_first_round_is_the_box_alone_then_samrefiner_rounds(image):
    backend = FakeBackend(box_then_echo)
    box = [10.0, 12.0, 30.0, 40.0]
    result = Refiner(backend, RefineConfig(iterations=3)).refine(image, boxes=np.array([box]))
    first = backend.calls[0]
    assert first.box_only and first.multimask_output
    np.testing.assert_array_equal(first.boxes, [box])
    # The best predicted IoU (candidate 1) is kept, then refined by the normal rounds:
    # the echo returns it unchanged, so the first normal round reaches a fixed point.
    second = backend.calls[1]
    assert second.point_coords is not None and second.mask_input is not None
    np.testing.assert_array_equal(second.mask_input[0, 0] > 0, CANDIDATES[1])
    np.testing.assert_array_equal(result.masks[0], CANDIDATES[1])
    assert result.status == [STATUS_REFINED] and result.iterations.tolist() == [2]
    assert result.scores[0] == pytest.approx(0.9)
    assert len(backend.calls) == 2 and len(backend.encoded) == 1


def test_boxes_batch_keeps_order(image):
    backend = FakeBackend(box_then_echo)
    boxes = np.array([[1, 1, 5, 5], [10, 12, 30, 40], [50, 50, 63, 63]], dtype=np.float32)
    result = Refiner(backend, RefineConfig(iterations=1, max_batch=2)).refine(image, boxes=boxes)
    assert len(result) == 3
    box_calls = [c for c in backend.calls if c.box_only]
    np.testing.assert_array_equal(np.concatenate([c.boxes for c in box_calls]), boxes)


def test_no_boxes_gives_an_empty_result(image):
    result = Refiner(FakeBackend(box_then_echo)).refine(image, boxes=np.zeros((0, 4)))
    assert result.masks.shape == (0, SIDE, SIDE) and result.status == []


def test_box_array_validation():
    np.testing.assert_array_equal(as_box_array([1, 2, 3, 4], (10, 10)), [[1, 2, 3, 4]])
    assert as_box_array([], (10, 10)).shape == (0, 4)
    np.testing.assert_array_equal(as_box_array([[-5, 2, 30, 4]], (10, 20)), [[0, 2, 19, 4]])
    for bad, message in [
        ([[1, 2, 3]], "N x 4"),
        ([[3, 2, 1, 4]], "box 0 must satisfy"),
        ([[0, 0, 1, 1], [1, np.nan, 2, 3]], "box 1 has a NaN"),
        ([[12, 0, 15, 3]], "outside the 10x10"),
        (np.array([["a", "b", "c", "d"]]), "numbers"),
    ]:
        with pytest.raises(ValueError, match=message):
            as_box_array(np.asarray(bad) if not isinstance(bad, np.ndarray) else bad, (10, 10))
    filled = box_masks(as_box_array([[1.4, 2.6, 3.5, 4.0]], (8, 8)), (8, 8))
    np.testing.assert_array_equal(np.argwhere(filled[0]).min(0), [3, 1])
    np.testing.assert_array_equal(np.argwhere(filled[0]).max(0), [4, 4])


def test_refine_input_errors(image):
    refiner = Refiner(FakeBackend(box_then_echo))
    mask = rect(5, 10, 5, 10)
    with pytest.raises(ValueError, match="either masks or boxes"):
        refiner.refine(image, mask, boxes=[[1, 1, 4, 4]])
    with pytest.raises(ValueError, match="either masks or boxes"):
        refiner.refine(image)
    with pytest.raises(ValueError, match="cannot go with boxes"):
        refiner.refine(image, boxes=[[1, 1, 4, 4]], first_prompts=[None])
    with pytest.raises(ValueError, match="outside"):
        refiner.refine(image, boxes=[[70, 1, 80, 4]])


def test_boxes_with_tiny_sam(tiny_backend, rng):
    image = rng.integers(0, 256, (90, 140, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 59, 39], [70, 50, 129, 84]], dtype=np.float32)
    result = Refiner(tiny_backend, RefineConfig(iterations=2)).refine(image, boxes=boxes)
    assert result.masks.shape == (2, 90, 140)
    assert all(1 <= it <= 3 for it in result.iterations)
    assert np.isfinite(result.scores).all() or "collapsed" in result.status


def test_boxes_need_a_model_that_takes_box_prompts(image):
    backend = FakeBackend()
    backend.prompts = frozenset({"points", "mask"})
    refiner = Refiner(backend, RefineConfig(use_box=False, margin=0.0))
    with pytest.raises(ValueError, match="does not accept box prompts"):
        refiner.refine(image, boxes=np.array([[2, 2, 10, 10]], np.float32))
    assert not backend.calls and not backend.encoded
