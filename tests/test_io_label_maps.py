"""Label-map PNGs: palette, 8-bit and 16-bit grey round trips; instance splitting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samrefiner.io import InputError
from samrefiner.io.label_maps import (
    LabelMap,
    encode_label_map,
    instance_masks,
    label_values,
    read_label_map,
    values_outside_palette,
    write_label_map,
)

VOC_LIKE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]  # 4 colours


def _labels(rng: np.random.Generator, top: int, dtype=np.uint8) -> np.ndarray:
    return rng.integers(0, top + 1, size=(17, 23)).astype(dtype)


def test_palette_round_trip_keeps_indices_and_palette(tmp_path, rng) -> None:
    labels = _labels(rng, 3)
    write_label_map(tmp_path / "p.png", LabelMap(labels, "P", VOC_LIKE))
    img = Image.open(tmp_path / "p.png")
    assert img.mode == "P"
    back = read_label_map(tmp_path / "p.png")
    assert back.mode == "P"
    assert np.array_equal(back.labels, labels)
    assert back.palette[: len(VOC_LIKE)] == VOC_LIKE
    assert values_outside_palette(back) == []


def test_palette_transparency_is_kept(tmp_path, rng) -> None:
    img = Image.fromarray(_labels(rng, 3))
    img.putpalette(VOC_LIKE)
    img.save(tmp_path / "t.png", transparency=0)
    back = read_label_map(tmp_path / "t.png")
    assert back.transparency == 0
    write_label_map(tmp_path / "u.png", back)
    assert Image.open(tmp_path / "u.png").info.get("transparency") == 0


def test_grey_8_bit_round_trip(tmp_path, rng) -> None:
    labels = _labels(rng, 255)
    Image.fromarray(labels).save(tmp_path / "g.png")
    back = read_label_map(tmp_path / "g.png")
    assert (back.mode, back.palette) == ("L", None)
    assert np.array_equal(back.labels, labels)
    write_label_map(tmp_path / "h.png", back)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "h.png")), labels)


def test_16_bit_ids_round_trip(tmp_path, rng) -> None:
    labels = _labels(rng, 4000, np.uint16)
    labels[0, 0] = 65535
    write_label_map(tmp_path / "i.png", LabelMap(labels, "I;16"))
    back = read_label_map(tmp_path / "i.png")
    assert back.mode == "I;16"
    assert back.labels.dtype == np.uint16
    assert np.array_equal(back.labels, labels)


def test_one_bit_png_reads_as_zero_one(tmp_path) -> None:
    bits = np.zeros((5, 8), dtype=bool)
    bits[1:3, 2:6] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    back = read_label_map(tmp_path / "b.png")
    assert back.mode == "L"
    assert np.array_equal(back.labels, bits.astype(np.uint8))


def test_values_outside_palette_are_found_and_preserved(tmp_path) -> None:
    labels = np.array([[0, 1], [2, 7]], dtype=np.uint8)
    lm = LabelMap(labels, "P", VOC_LIKE[:6])  # 2 colours: values 2 and 7 have none
    assert values_outside_palette(lm) == [2, 7]
    write_label_map(tmp_path / "o.png", lm)
    assert np.array_equal(read_label_map(tmp_path / "o.png").labels, labels)


def test_colour_and_missing_files_are_input_errors(tmp_path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="mode RGB"):
        read_label_map(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="not found"):
        read_label_map(tmp_path / "absent.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read"):
        read_label_map(tmp_path / "junk.png")


@pytest.mark.parametrize(
    ("labels", "mode", "palette", "match"),
    [
        (np.zeros((2, 2, 2), np.uint8), "L", None, "H x W"),
        (np.full((2, 2), 300), "L", None, r"\[0, 255\]"),
        (np.zeros((2, 2), np.uint8), "P", None, "needs a palette"),
        (np.zeros((2, 2), np.uint8), "P", [1, 2], "RGB triples"),
        (np.zeros((2, 2), np.uint8), "L", [0, 0, 0], "no palette"),
        (np.zeros((2, 2), np.float32), "L", None, "integers"),
        (np.zeros((2, 2), np.uint8), "RGB", None, "mode must be"),
    ],
)
def test_label_map_validation(labels, mode, palette, match) -> None:
    with pytest.raises(ValueError, match=match):
        LabelMap(labels, mode, palette)


def test_instance_masks_skip_background_and_ignore() -> None:
    labels = np.array([[0, 3, 3], [255, 1, 0], [1, 1, 255]], dtype=np.uint8)
    ids, masks = instance_masks(labels, ignore=255)
    assert ids == [1, 3]
    assert masks.shape == (2, 3, 3)
    assert np.array_equal(masks[0], labels == 1)
    assert np.array_equal(masks[1], labels == 3)
    assert label_values(labels) == [1, 3, 255]


def test_encode_is_deterministic(rng) -> None:
    lm = LabelMap(_labels(rng, 3), "P", VOC_LIKE)
    assert encode_label_map(lm) == encode_label_map(lm.with_labels(lm.labels.copy()))


@pytest.mark.shared_data
def test_shared_palettes_round_trip(shared_data, tmp_path) -> None:
    paths = [
        *sorted((shared_data / "davis2017_val" / "masks").glob("*.png")),
        *sorted((shared_data / "labelme_voc2011" / "masks_class").glob("*.png"))[:2],
        *sorted((shared_data / "labelme_voc2011" / "masks").glob("*.png"))[:1],
    ]
    assert paths
    for path in paths:
        lm = read_label_map(path)
        original = Image.open(path)
        assert lm.mode == "P"
        write_label_map(tmp_path / path.name, lm)
        again = Image.open(tmp_path / path.name)
        assert again.mode == "P"
        assert np.array_equal(np.asarray(again), np.asarray(original))
        assert again.getpalette() == original.getpalette()
