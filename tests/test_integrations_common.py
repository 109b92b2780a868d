"""What the integration adapters share: extras, colour order, masks mixed with boxes."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from samrefiner import RefineConfig, Refiner
from samrefiner.integrations._common import import_extra, to_rgb
from samrefiner.mixed import refine_objects


def test_a_missing_extra_names_what_to_install(monkeypatch) -> None:
    with pytest.raises(ImportError, match=r"pip install 'samrefiner\[fiftyone\]'"):
        import_extra("samrefiner_no_such_module", "fiftyone")
    monkeypatch.setitem(sys.modules, "supervision", None)  # makes `import supervision` fail
    monkeypatch.delitem(sys.modules, "samrefiner.integrations.supervision", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'samrefiner\[supervision\]'"):
        importlib.import_module("samrefiner.integrations.supervision")


def test_importing_the_package_imports_no_toolkit(monkeypatch) -> None:
    for name in ("supervision", "fiftyone", "fiftyone.core.labels"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "samrefiner.integrations", raising=False)
    importlib.import_module("samrefiner.integrations")


def test_to_rgb_reorders_only_when_told() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(to_rgb(image, "rgb"), image)
    np.testing.assert_array_equal(to_rgb(image, "bgr"), image[:, :, ::-1])
    bgra = np.dstack([image, np.full((2, 3), 7, np.uint8)])
    np.testing.assert_array_equal(to_rgb(bgra, "bgr"), image[:, :, ::-1])
    grey = image[:, :, 0]
    np.testing.assert_array_equal(to_rgb(grey, "bgr"), np.dstack([grey] * 3))
    with pytest.raises(ValueError, match="color must be one of"):
        to_rgb(image, "BGR")


class _BoxRefiner(Refiner):
    """A Refiner that also takes boxes, each refined from the filled box (stands in for
    the box input while checking how refine_objects stitches the two groups)."""

    def refine(self, image, masks=None, *, boxes=None, **kwargs):
        if boxes is not None:
            masks = np.zeros((len(boxes), *image.shape[:2]), dtype=bool)
            for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=int)):
                masks[k, y1 : y2 + 1, x1 : x2 + 1] = True
        return super().refine(image, masks, **kwargs)


def _scene():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    masks = np.zeros((4, 48, 64), dtype=bool)
    masks[0, 5:20, 5:25] = True
    masks[2, 25:40, 30:60] = True
    boxes = np.array([[0, 0, 0, 0], [10, 20, 40, 45], [0, 0, 0, 0], [2, 2, 12, 9]], np.float32)
    return image, masks, boxes, np.array([False, True, False, True])


def test_masks_and_boxes_are_refined_in_input_order(tiny_backend) -> None:
    image, masks, boxes, from_box = _scene()
    refiner = _BoxRefiner(tiny_backend, RefineConfig(iterations=2))

    mixed = refine_objects(refiner, image, masks, boxes, from_box)

    by_mask = refiner.refine(image, masks[~from_box])
    by_box = refiner.refine(image, boxes=boxes[from_box])
    for rows, part in ((np.flatnonzero(~from_box), by_mask), (np.flatnonzero(from_box), by_box)):
        np.testing.assert_array_equal(mixed.masks[rows], part.masks)
        np.testing.assert_array_equal(mixed.scores[rows], part.scores)
        assert [mixed.status[k] for k in rows] == part.status


def test_mixed_input_with_the_refiners_own_boxes(tiny_backend) -> None:
    refiner = Refiner(tiny_backend, RefineConfig(iterations=2))
    image, masks, boxes, from_box = _scene()
    mixed = refine_objects(refiner, image, masks, boxes, from_box)
    by_mask = refiner.refine(image, masks[~from_box])
    by_box = refiner.refine(image, boxes=boxes[from_box])
    np.testing.assert_array_equal(mixed.masks[~from_box], by_mask.masks)
    np.testing.assert_array_equal(mixed.masks[from_box], by_box.masks)
    np.testing.assert_array_equal(mixed.scores[from_box], by_box.scores)


def test_masks_only_and_no_objects(tiny_backend) -> None:
    image, masks, boxes, from_box = _scene()
    refiner = Refiner(tiny_backend, RefineConfig(iterations=1))
    only_masks = refine_objects(refiner, image, masks, boxes, np.zeros(4, bool))
    expected = refiner.refine(image, masks)
    np.testing.assert_array_equal(only_masks.masks, expected.masks)
    np.testing.assert_array_equal(only_masks.scores, expected.scores)
    assert only_masks.status == expected.status == ["refined", "empty", "refined", "empty"]
    empty = refine_objects(refiner, image, masks[:0], boxes[:0], from_box[:0])
    assert empty.masks.shape == (0, 48, 64) and empty.status == []
