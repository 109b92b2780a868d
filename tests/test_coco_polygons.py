"""``samrefiner coco --segmentation polygon|same``: polygons that pycocotools decodes to the
refined masks (exactly at --simplify 0), holes filled with a warning or written as RLE,
several parts as several polygons, and the runner's guarantees (resume, Ray) kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from helpers_runner import TINY_MODEL_ARGS, build_coco, run_interrupted, worker_pythonpath
from samrefiner.cli import main
from samrefiner.cli.options import HOLES_CHOICES, SEGMENTATION_CHOICES
from samrefiner.io.coco import (
    HOLE_POLICIES,
    SEGMENTATION_KINDS,
    SegmentationOutput,
    decode_segmentation,
)
from samrefiner.io.masks import mask_iou

MODEL = [*TINY_MODEL_ARGS, "--iterations", "1"]
#: The fake backend segments the bright pixels of a 64 x 64 image exactly.
FAKE = ["--model", "helpers_fake_backend:FakeBackend", "--random-weights", "--no-progress"]


def decode(segm: Any, h: int, w: int) -> np.ndarray:
    """pycocotools' own decoding of a written segmentation (polygon lists or RLE)."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    else:
        rle = {"size": segm["size"], "counts": segm["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def ring(h: int = 30, w: int = 40) -> np.ndarray:
    """A square with a square hole, and a separate small square: 2 parts, 1 hole."""
    mask = np.zeros((h, w), dtype=bool)
    mask[3:20, 3:20] = True
    mask[8:14, 8:14] = False
    mask[22:27, 30:36] = True
    return mask


def check_area_bbox(fields: dict[str, Any], h: int, w: int) -> np.ndarray:
    decoded = decode(fields["segmentation"], h, w)
    assert fields["area"] == int(decoded.sum())
    ys, xs = np.nonzero(decoded)
    box = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
    assert fields["bbox"] == box
    return decoded


def test_the_cli_choices_are_the_library_choices() -> None:
    assert SEGMENTATION_CHOICES == SEGMENTATION_KINDS
    assert HOLES_CHOICES == HOLE_POLICIES


def test_holes_are_filled_with_a_warning_or_written_as_rle() -> None:
    mask = ring()
    fields, filled = SegmentationOutput(kind="polygon").fields(mask)
    assert filled and isinstance(fields["segmentation"], list)
    assert len(fields["segmentation"]) == 2  # two parts: two polygons in one annotation
    filled_mask = mask.copy()
    filled_mask[8:14, 8:14] = True
    np.testing.assert_array_equal(check_area_bbox(fields, *mask.shape), filled_mask)

    fields, filled = SegmentationOutput(kind="polygon", holes="rle").fields(mask)
    assert not filled and isinstance(fields["segmentation"], dict)
    np.testing.assert_array_equal(check_area_bbox(fields, *mask.shape), mask)


def test_parts_without_holes_decode_exactly_at_tolerance_zero() -> None:
    mask = ring()
    mask[8:14, 8:14] = True
    mask[0, 39] = True  # a 1-pixel part in a corner of the image
    mask[29, 0:40] = True  # a part along the border
    fields, filled = SegmentationOutput(kind="polygon").fields(mask)
    assert not filled and len(fields["segmentation"]) == 4
    np.testing.assert_array_equal(check_area_bbox(fields, *mask.shape), mask)


def test_min_polygon_area_drops_specks_but_never_the_whole_object() -> None:
    mask = ring()  # parts of 253 (17 x 17 less the hole) and 30 pixels, a hole of 36
    fields, filled = SegmentationOutput(kind="polygon", min_polygon_area=31).fields(mask)
    assert len(fields["segmentation"]) == 1 and filled  # the small square goes, the hole stays
    fields, filled = SegmentationOutput(kind="polygon", min_polygon_area=40).fields(mask)
    assert len(fields["segmentation"]) == 1 and not filled  # a hole below it is a pin hole
    expected = np.zeros_like(mask)
    expected[3:20, 3:20] = True
    np.testing.assert_array_equal(check_area_bbox(fields, *mask.shape), expected)
    tiny = np.zeros((10, 10), dtype=bool)
    tiny[2:4, 2:4] = True
    tiny[6, 6] = True
    fields, _ = SegmentationOutput(kind="polygon", min_polygon_area=100).fields(tiny)
    decoded = check_area_bbox(fields, 10, 10)
    expected = np.zeros_like(tiny)
    expected[2:4, 2:4] = True
    np.testing.assert_array_equal(decoded, expected)  # the largest part is kept


def test_simplify_stays_within_the_documented_tolerance() -> None:
    yy, xx = np.mgrid[:120, :160]
    disc = (yy - 60) ** 2 / 45**2 + (xx - 80) ** 2 / 70**2 <= 1
    exact, _ = SegmentationOutput(kind="polygon").fields(disc)
    for tolerance in (1.0, 2.0):
        fields, _ = SegmentationOutput(kind="polygon", simplify=tolerance).fields(disc)
        assert sum(map(len, fields["segmentation"])) < sum(map(len, exact["segmentation"]))
        assert mask_iou(check_area_bbox(fields, 120, 160), disc) >= 0.98


def test_same_follows_each_input_annotation() -> None:
    same = SegmentationOutput(kind="same")
    assert same.kind_for([[1, 1, 5, 1, 5, 5]]) == "polygon"
    assert same.kind_for({"size": [4, 4], "counts": "04"}) == "rle"
    assert same.kind_for(None) == "rle"  # refined from its box alone
    assert SegmentationOutput(kind="polygon").kind_for(None) == "polygon"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "mesh"}, "segmentation must be one of"),
        ({"kind": "polygon", "holes": "keep"}, "holes must be one of"),
        ({"kind": "polygon", "simplify": -1.0}, "simplify must be a number >= 0"),
        ({"kind": "polygon", "min_polygon_area": float("nan")}, "min_polygon_area must be"),
        ({"simplify": 1.0}, "need segmentation polygon or same"),
    ],
)
def test_bad_settings_are_refused(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentationOutput(**options)


def coco_run(tmp_path: Path, name: str, *extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Refine the helpers' COCO file with the tiny model: ``(output, summary)``."""
    ann, images = tmp_path / "coarse.json", tmp_path / "images"
    if not ann.exists():
        build_coco(tmp_path)
    out = tmp_path / f"{name}.json"
    summary = tmp_path / f"{name}.summary.json"
    args = ["coco", str(ann), "--images", str(images), "-o", str(out), "--summary", str(summary)]
    assert main([*args, *MODEL, *extra]) == 0
    return json.loads(out.read_text()), json.loads(summary.read_text())


def test_polygon_output_decodes_to_the_refined_masks(tmp_path) -> None:
    rle_out, rle_summary = coco_run(tmp_path, "rle")
    poly_out, poly_summary = coco_run(tmp_path, "poly", "--segmentation", "polygon")
    assert explicit_rle_is_the_default(tmp_path)
    sizes = {i["id"]: (i["height"], i["width"]) for i in rle_out["images"]}
    refined = 0
    for a, b in zip(rle_out["annotations"], poly_out["annotations"], strict=True):
        assert a["samrefiner"]["status"] == b["samrefiner"]["status"]
        if "predicted_iou" not in a["samrefiner"] or "gate_reason" in a["samrefiner"]:
            assert a == b  # passed through: untouched either way
            continue
        refined += 1
        h, w = sizes[a["image_id"]]
        truth = decode(a["segmentation"], h, w)
        fields = {k: b[k] for k in ("segmentation", "area", "bbox")}
        assert isinstance(b["segmentation"], list) and b["segmentation"]
        decoded = check_area_bbox(fields, h, w)
        if "holes_filled" in b["samrefiner"].get("warnings", []):
            assert (decoded >= truth).all()  # the outer boundary: every pixel kept
        else:
            np.testing.assert_array_equal(decoded, truth)
        # The library reads it back as the same mask.
        np.testing.assert_array_equal(decode_segmentation(b["segmentation"], h, w)[0], decoded)
    assert refined >= 5
    filled = sum(
        "holes_filled" in a["samrefiner"].get("warnings", []) for a in poly_out["annotations"]
    )
    assert poly_summary["warnings"].get("holes_filled", 0) == filled
    assert poly_summary["bad_input"] == rle_summary["bad_input"]  # not bad input


def explicit_rle_is_the_default(tmp_path: Path) -> bool:
    coco_run(tmp_path, "explicit", "--segmentation", "rle")
    return (tmp_path / "explicit.json").read_bytes() == (tmp_path / "rle.json").read_bytes()


def test_same_keeps_each_annotations_kind(tmp_path) -> None:
    before = json.loads(build_coco(tmp_path)[0].read_text())["annotations"]
    out, _ = coco_run(tmp_path, "same", "--segmentation", "same", "--simplify", "1")
    for a, b in zip(before, out["annotations"], strict=True):
        if "predicted_iou" in b["samrefiner"] and "gate_reason" not in b["samrefiner"]:
            assert isinstance(b["segmentation"], list) == isinstance(a["segmentation"], list)


def test_flags_that_do_not_fit_are_one_line_errors(tmp_path, capsys) -> None:
    ann, images = build_coco(tmp_path)
    args = ["coco", str(ann), "--images", str(images), "-o", str(tmp_path / "o.json"), *MODEL]
    assert main([*args, "--simplify", "2"]) == 2
    assert "--simplify, --min-polygon-area and --holes shape polygon output" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as refused:  # the option's type refuses it
        main([*args, "--segmentation", "polygon", "--simplify", "-1"])
    assert refused.value.code == 2
    assert "--simplify: must be a number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def fake_coco(root: Path) -> tuple[Path, Path]:
    """Two 64 x 64 images whose bright pixels are a ring (a hole) and two squares; each
    with a coarse polygon over them. The fake backend refines to the bright pixels."""
    images = root / "images"
    images.mkdir(parents=True)
    entries, anns = [], []
    for image_id in (1, 2):
        pixels = np.zeros((64, 64, 3), dtype=np.uint8)
        bright = np.zeros((64, 64), dtype=bool)
        if image_id == 1:
            bright[10:40, 10:40] = True
            bright[20:30, 20:30] = False
        else:
            bright[10:20, 10:20] = True
            bright[30:45, 30:45] = True
        pixels[bright] = 255
        Image.fromarray(pixels).save(images / f"{image_id}.png")
        entries.append({"id": image_id, "file_name": f"{image_id}.png", "height": 64, "width": 64})
        anns.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": [[8.0, 8.0, 47.0, 8.0, 47.0, 47.0, 8.0, 47.0]],
                "area": 1521.0,
                "bbox": [8, 8, 39, 39],
                "iscrowd": 0,
            }
        )
    path = root / "fake.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": []}))
    return path, images


def run_fake(root: Path, name: str, *extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ann, images = (root / "fake.json", root / "images")
    out, summary = root / f"{name}.json", root / f"{name}.summary.json"
    args = ["coco", str(ann), "--images", str(images), "-o", str(out), "--summary", str(summary)]
    assert main([*args, *FAKE, "--iterations", "1", *extra]) == 0
    return json.loads(out.read_text()), json.loads(summary.read_text())


def test_holes_and_parts_through_the_command(tmp_path) -> None:
    fake_coco(tmp_path)
    out, summary = run_fake(tmp_path, "fill", "--segmentation", "polygon")
    ring_ann, parts_ann = out["annotations"]
    assert ring_ann["samrefiner"]["warnings"] == ["holes_filled"]
    assert len(ring_ann["segmentation"]) == 1
    full = np.zeros((64, 64), dtype=bool)
    full[10:40, 10:40] = True
    np.testing.assert_array_equal(decode(ring_ann["segmentation"], 64, 64), full)
    assert ring_ann["area"] == 900
    assert len(parts_ann["segmentation"]) == 2 and "warnings" not in parts_ann["samrefiner"]
    assert parts_ann["area"] == 100 + 225 and parts_ann["bbox"] == [10.0, 10.0, 35.0, 35.0]
    assert summary["warnings"] == {"holes_filled": 1}

    out, summary = run_fake(tmp_path, "rle", "--segmentation", "polygon", "--holes", "rle")
    ring_ann, parts_ann = out["annotations"]
    assert isinstance(ring_ann["segmentation"], dict) and "warnings" not in ring_ann["samrefiner"]
    assert ring_ann["area"] == 800
    assert isinstance(parts_ann["segmentation"], list)
    assert summary["warnings"] == {}


def test_polygon_resume_is_byte_identical(tmp_path, monkeypatch) -> None:
    fake_coco(tmp_path)
    run_fake(tmp_path, "whole", "--segmentation", "polygon", "--simplify", "1")
    uninterrupted = (tmp_path / "whole.json").read_bytes()
    run_interrupted(
        monkeypatch,
        lambda: run_fake(tmp_path, "again", "--segmentation", "polygon", "--simplify", "1"),
    )
    assert not (tmp_path / "again.json").exists()
    # Other polygon settings are another run: refused on resume.
    ann, images = tmp_path / "fake.json", tmp_path / "images"
    args = ["coco", str(ann), "--images", str(images), "-o", str(tmp_path / "again.json")]
    assert main([*args, *FAKE, "--iterations", "1", "--segmentation", "polygon", "--resume"]) == 2
    run_fake(tmp_path, "again", "--segmentation", "polygon", "--simplify", "1", "--resume")
    assert (tmp_path / "again.json").read_bytes() == uninterrupted


@pytest.mark.extra("ray")
@pytest.mark.usefixtures("local_ray")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_polygon_output_is_byte_identical_on_ray(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", worker_pythonpath())
    fake_coco(tmp_path)
    options = ("--segmentation", "polygon", "--simplify", "1")
    _, local_summary = run_fake(tmp_path, "local", *options)
    _, remote_summary = run_fake(tmp_path, "ray", *options, "--engine", "ray", "--workers", "1")
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()
    local_summary.pop("wall_time_s"), remote_summary.pop("wall_time_s")
    assert remote_summary == local_summary
    assert remote_summary["warnings"] == {"holes_filled": 1}


def test_the_shared_builder_serves_a_polygon_only_format() -> None:
    """A command that always writes polygons (``kinds=False``) takes --simplify and
    --min-polygon-area with the same spelling and gets polygon output."""
    import argparse

    from samrefiner.cli import CommandError
    from samrefiner.cli.options import add_polygon_args, segmentation_output
    from samrefiner.io.errors import command_line_spelling

    parser = argparse.ArgumentParser()
    add_polygon_args(parser, kinds=False)
    args = parser.parse_args(["--simplify", "1.5", "--min-polygon-area", "4"])
    assert segmentation_output(args) == SegmentationOutput("polygon", 1.5, 4.0, "fill")
    with pytest.raises(SystemExit):
        parser.parse_args(["--segmentation", "rle"])
    with pytest.raises(SystemExit):  # the option's type refuses it ...
        parser.parse_args(["--min-polygon-area", "-2"])
    bad = argparse.Namespace(simplify=0.0, min_polygon_area=-2.0)  # ... and so does the library
    with pytest.raises(CommandError, match="min_polygon_area must be a number >= 0"):
        segmentation_output(bad)
    with command_line_spelling(), pytest.raises(CommandError, match="--min-polygon-area must"):
        segmentation_output(bad)
