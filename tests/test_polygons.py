"""Masks as polygons and back (samrefiner.io.polygons): exact at tolerance 0, holes and
parts kept apart, COCO's polygon lists decoded by pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samrefiner.io.masks import mask_iou
from samrefiner.io.polygons import Polygons, mask_to_polygons, ring_area


def _mask(shape: tuple[int, int], *boxes: tuple[int, int, int, int], off=(), then=()) -> np.ndarray:
    """Pixels of ``boxes`` (y0, x0, y1, x1), less those of ``off``, plus those of ``then``."""
    mask = np.zeros(shape, dtype=bool)
    for value, group in ((True, boxes), (False, off), (True, then)):
        for y0, x0, y1, x1 in group:
            mask[y0:y1, x0:x1] = value
    return mask


SQUARE = (0, 0, 6, 6)


#: (name, mask, exteriors, holes)
CASES = [
    ("one_pixel", _mask((5, 5), (2, 2, 3, 3)), 1, 0),
    ("box", _mask((6, 8), (1, 2, 4, 6)), 1, 0),
    ("whole_image", np.ones((4, 6), dtype=bool), 1, 0),
    ("touches_every_border", _mask((6, 6), (0, 0, 6, 2), (0, 0, 2, 6), (4, 0, 6, 6)), 1, 0),
    ("two_parts", _mask((8, 10), (1, 1, 3, 3), (4, 5, 7, 9)), 2, 0),
    ("hole", _mask((7, 7), (1, 1, 6, 6), off=[(3, 3, 4, 4)]), 1, 1),
    (
        "island_in_a_hole",
        _mask((9, 9), (0, 0, 9, 9), off=[(2, 2, 7, 7)], then=[(4, 4, 5, 5)]),
        2,
        1,
    ),
    ("two_holes", _mask((7, 9), (1, 1, 6, 8), off=[(2, 2, 3, 3), (3, 5, 5, 7)]), 1, 2),
    ("corner_touch", _mask((4, 4), (0, 0, 2, 2), (2, 2, 4, 4)), 2, 0),
    # Parts touching at a corner are apart (4-connected), so holes touching at a corner
    # are one (8-connected): one pinched ring.
    ("holes_touching_at_a_corner", _mask((6, 6), SQUARE, off=[(1, 1, 3, 3), (3, 3, 5, 5)]), 1, 1),
    ("empty", np.zeros((3, 3), dtype=bool), 0, 0),
]


@pytest.mark.parametrize(
    ("mask", "exteriors", "holes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_tracing_at_tolerance_0_gives_the_mask_back(mask, exteriors: int, holes: int) -> None:
    polygons = mask_to_polygons(mask)
    assert (len(polygons.exteriors), len(polygons.holes)) == (exteriors, holes)
    assert all(ring_area(r) > 0 for r in polygons.exteriors)
    assert all(ring_area(r) < 0 for r in polygons.holes)
    assert (polygons.to_mask() == mask).all()
    assert polygons.has_holes == bool(holes)


def test_rings_run_along_pixel_edges_corners_only() -> None:
    polygons = mask_to_polygons(_mask((6, 8), (1, 2, 4, 6)))
    assert polygons.exteriors[0].tolist() == [[2, 1], [6, 1], [6, 4], [2, 4]]
    assert ring_area(polygons.exteriors[0]) == 12.0  # the 3 x 4 pixels, exactly


def test_random_masks_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(1, 16, 2)
        mask = rng.random((h, w)) < rng.random()
        assert (mask_to_polygons(mask).to_mask() == mask).all()


def test_coco_lists_decode_with_pycocotools_to_the_mask_without_its_holes() -> None:
    mask = _mask((7, 7), (1, 1, 6, 6), off=[(3, 3, 4, 4)])
    polygons = mask_to_polygons(mask)
    rles = mask_utils.frPyObjects(polygons.coco(), 7, 7)
    decoded = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    assert (decoded == _mask((7, 7), (1, 1, 6, 6))).all()  # COCO polygons hold no hole


def test_min_area_drops_specks_and_pin_holes() -> None:
    mask = _mask((10, 10), (1, 1, 8, 8), (9, 9, 10, 10), off=[(4, 4, 5, 5)])
    polygons = mask_to_polygons(mask, min_area=2)
    assert (len(polygons.exteriors), len(polygons.holes)) == (1, 0)
    assert (polygons.to_mask() == _mask((10, 10), (1, 1, 8, 8))).all()


def test_a_tolerance_drops_corners_and_keeps_the_shape_close() -> None:
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 30) ** 2 < 20**2
    exact = mask_to_polygons(disc)
    ious = []
    for tolerance in (0.5, 1.0, 2.0, 4.0):
        simple = mask_to_polygons(disc, tolerance=tolerance)
        assert len(simple.exteriors[0]) <= len(exact.exteriors[0])
        back = simple.to_mask()
        ious.append(mask_iou(back, disc))
    assert len(mask_to_polygons(disc, tolerance=2.0).exteriors[0]) < len(exact.exteriors[0])
    assert ious[0] == 1.0 and min(ious[:3]) > 0.98 and ious[3] > 0.9  # radius 20 px


def test_a_small_object_survives_any_tolerance() -> None:
    for mask in (_mask((9, 9), (4, 4, 5, 5)), _mask((9, 9), (2, 2, 3, 8))):  # a dot, a line
        for tolerance in (1.0, 2.0, 8.0):
            assert (mask_to_polygons(mask, tolerance=tolerance).to_mask() == mask).all()


def test_bad_rings_and_masks_are_refused() -> None:
    with pytest.raises(ValueError, match="K x 2"):
        Polygons((np.zeros((2, 2)),), (), 4, 4)
    with pytest.raises(ValueError, match="mask"):
        mask_to_polygons(np.full((3, 3), 7))  # a label map, not a mask


def test_shared_masks_round_trip_exactly(shared_data) -> None:
    paths = sorted((shared_data / "davis2017_val" / "masks").glob("*.png"))
    paths += sorted((shared_data / "labelme_voc2011" / "masks").glob("*.png"))
    assert paths
    for path in paths:
        labels = np.asarray(Image.open(path))
        for value in np.unique(labels):
            if value in (0, 255):
                continue
            mask = labels == value
            assert (mask_to_polygons(mask).to_mask() == mask).all(), (path.name, value)


def test_the_modules_example_runs() -> None:
    import doctest

    from samrefiner.io import polygons

    assert doctest.testmod(polygons).failed == 0
