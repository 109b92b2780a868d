"""COCO I/O: polygons, uncompressed and compressed RLE, files, and their bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samrefiner.io import InputError
from samrefiner.io.coco import (
    SegmentationError,
    compressed_counts_lengths,
    decode_segmentation,
    encode_rle,
    load_coco,
    rle_area_bbox,
    segmentation_fields,
    write_coco,
)


def column_major_runs(mask: np.ndarray) -> list[int]:
    """Run lengths of a mask read down the columns, starting with background (the spec)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    runs, value, count = [], 0, 0
    for pixel in flat:
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    runs.append(count)
    return runs


def random_mask(rng: np.random.Generator, h: int = 23, w: int = 31) -> np.ndarray:
    mask = rng.random((h, w)) < 0.3
    mask[rng.integers(0, h), :] = True  # long runs exercise multi-character counts
    return mask


def test_rle_is_column_major() -> None:
    mask = np.zeros((2, 2), dtype=bool)
    mask[0, 1] = True  # row 0, column 1: the third pixel in column-major order
    assert column_major_runs(mask) == [2, 1, 1]
    rle = encode_rle(mask)
    assert rle["size"] == [2, 2]
    assert isinstance(rle["counts"], str)
    assert compressed_counts_lengths(rle["counts"]) == [2, 1, 1]


def test_compressed_rle_round_trip_and_parser(rng: np.random.Generator) -> None:
    for _ in range(20):
        mask = random_mask(rng)
        rle = encode_rle(mask)
        assert compressed_counts_lengths(rle["counts"]) == column_major_runs(mask)
        decoded, warnings = decode_segmentation(rle, *mask.shape)
        assert warnings == []
        assert np.array_equal(decoded, mask)


def test_mask_starting_with_foreground_has_leading_zero_run() -> None:
    mask = np.ones((3, 4), dtype=bool)
    mask[2, 3] = False
    assert compressed_counts_lengths(encode_rle(mask)["counts"])[0] == 0
    assert np.array_equal(decode_segmentation(encode_rle(mask), 3, 4)[0], mask)


def test_uncompressed_rle_decodes(rng: np.random.Generator) -> None:
    mask = random_mask(rng)
    segm = {"size": list(mask.shape), "counts": column_major_runs(mask)}
    decoded, _ = decode_segmentation(segm, *mask.shape)
    assert np.array_equal(decoded, mask)


def test_polygon_decodes_like_pycocotools() -> None:
    poly = [[2.0, 2.0, 12.0, 2.0, 12.0, 9.0, 2.0, 9.0]]
    decoded, warnings = decode_segmentation(poly, 15, 20)
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 15, 20)))
    assert warnings == []
    assert np.array_equal(decoded, expected.astype(bool))
    assert decoded[5, 5] and not decoded[12, 15]


def test_polygon_outside_image_is_clipped_and_says_so() -> None:
    poly = [[-5.0, -5.0, 30.0, -5.0, 30.0, 8.0, -5.0, 8.0]]
    decoded, warnings = decode_segmentation(poly, 15, 20)
    inside = [[0.0, 0.0, 20.0, 0.0, 20.0, 8.0, 0.0, 8.0]]
    assert warnings == ["clipped"]
    assert np.array_equal(decoded, decode_segmentation(inside, 15, 20)[0])
    assert decoded[:8].all() and not decoded[9:].any()


@pytest.mark.parametrize(
    ("segm", "status"),
    [
        ([[1.0, 1.0, 5.0, 5.0]], "invalid_polygon"),  # 2 points
        ([[1.0, 1.0, 5.0, 1.0, 5.0]], "invalid_polygon"),  # odd number of values
        ([[1.0, float("nan"), 5.0, 1.0, 5.0, 5.0]], "invalid_polygon"),
        ([[1.0, 1.0, float("inf"), 1.0, 5.0, 5.0]], "invalid_polygon"),
        ([], "invalid_polygon"),
        ([["a", 1, 2, 3, 4, 5]], "invalid_segmentation"),
        ({"size": [9, 9], "counts": "00"}, "size_mismatch"),
        ({"size": [10, 12], "counts": [5, 5]}, "invalid_segmentation"),  # covers 10 of 120
        ({"size": [10, 12], "counts": "Z\x7f"}, "invalid_segmentation"),
        ({"size": [10, 12], "counts": "0"}, "invalid_segmentation"),
        ({"size": [10, 12], "counts": 7}, "invalid_segmentation"),
        ("polygon", "invalid_segmentation"),
        (None, "no_segmentation"),
    ],
)
def test_bad_segmentations_have_exact_status(segm: object, status: str) -> None:
    with pytest.raises(SegmentationError) as info:
        decode_segmentation(segm, 10, 12)
    assert info.value.status == status


def test_overflowing_compressed_rle_is_rejected_before_decoding() -> None:
    # One run of 1000 pixels in a 10 x 12 mask: pycocotools would write past the buffer.
    counts = encode_rle(np.zeros((40, 25), dtype=bool))["counts"]
    with pytest.raises(SegmentationError, match="cover 1000 pixels"):
        decode_segmentation({"size": [10, 12], "counts": counts}, 10, 12)


def test_area_and_bbox_follow_coco_conventions() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    fields = segmentation_fields(mask)
    assert fields["area"] == 18
    assert fields["bbox"] == [3.0, 2.0, 6.0, 3.0]
    assert rle_area_bbox(encode_rle(np.zeros((4, 4), dtype=bool))) == (0, [0.0, 0.0, 0.0, 0.0])


def _dataset() -> dict:
    return {
        "info": {"description": "test"},
        "images": [{"id": 1, "file_name": "a.png", "width": 12, "height": 10}],
        "annotations": [
            {
                "id": 5,
                "image_id": 1,
                "category_id": 2,
                "segmentation": [[1, 1, 5, 1, 5, 5]],
                "area": 8.0,
                "bbox": [1, 1, 4, 4],
                "iscrowd": 0,
                "extra": {"k": [1, 2]},
            },
        ],
        "categories": [{"id": 2, "name": "thing"}],
    }


def test_load_dataset_and_write_back_byte_stable(tmp_path) -> None:
    src = tmp_path / "gt.json"
    src.write_text(json.dumps(_dataset()))
    coco = load_coco(src)
    assert coco.kind == "dataset"
    assert list(coco.images) == [1]
    assert coco.annotations[0] is coco.data["annotations"][0]
    write_coco(tmp_path / "a.json", coco)
    write_coco(tmp_path / "b.json", load_coco(tmp_path / "a.json"))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert json.loads((tmp_path / "a.json").read_text()) == _dataset()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_results_file_needs_image_info(tmp_path) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_dataset()))
    res = tmp_path / "res.json"
    res.write_text(
        json.dumps(
            [
                {
                    "image_id": 1,
                    "category_id": 2,
                    "score": 0.5,
                    "segmentation": encode_rle(np.ones((10, 12), dtype=bool)),
                }
            ]
        )
    )
    with pytest.raises(InputError, match="lists no images"):
        load_coco(res)
    coco = load_coco(res, image_info=gt)
    assert coco.kind == "results"
    assert coco.annotations[0]["score"] == 0.5
    assert coco.images[1]["file_name"] == "a.png"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"images": []}),
        json.dumps([1, 2]),
    ],
)
def test_malformed_files_raise_input_error(tmp_path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError):
        load_coco(path, image_info=path)


def test_malformed_image_entries_are_recorded_not_raised(tmp_path) -> None:
    images = [
        {"id": 1},  # no file_name
        {"id": 2, "file_name": ["a.png"]},
        {"id": 3, "file_name": "c.png", "width": "60", "height": 40},
        {"id": [4], "file_name": "d.png"},  # no usable id: left out
        "not an object",
        {"id": 5, "file_name": "e.png", "width": 60, "height": 40},
    ]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 7}]}))
    coco = load_coco(path)
    assert sorted(coco.images) == [1, 2, 3, 5]
    assert sorted(coco.invalid_images) == [1, 2, 3]
    assert "'width' must be an integer" in coco.invalid_images[3]
    assert coco.category_ids == {7}


def test_duplicate_image_ids_are_listed(tmp_path) -> None:
    data = _dataset()
    data["images"].append({"id": 1, "file_name": "b.png"})
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    coco = load_coco(path)
    assert coco.duplicate_image_ids == [1]
    assert coco.images[1]["file_name"] == "a.png"
