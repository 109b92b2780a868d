"""The dataset subcommands end to end with the tiny random SAM (and the shared data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers_runner import (
    COCO_EXPECTED,
    MASKS_EXPECTED,
    build_coco,
    build_masks,
    tree_bytes,
)
from samrefiner.cli import main
from samrefiner.io.coco import decode_segmentation, encode_rle
from samrefiner.io.label_maps import read_label_map
from samrefiner.runner.journal.state import RunState
from samrefiner.split_merge import split_label_map

MODEL = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--no-progress"]
FAST = [*MODEL, "--iterations", "1"]
REFINED = {"refined", "collapsed"}  # random weights may collapse a mask


def statuses(path: Path) -> list[tuple[int, str]]:
    return [
        (a["id"], a["samrefiner"]["status"]) for a in json.loads(path.read_text())["annotations"]
    ]


def test_coco_cli_end_to_end(tmp_path, capsys) -> None:
    ann, images = build_coco(tmp_path)
    out = tmp_path / "out" / "refined.json"
    args = ["coco", str(ann), "--images", str(images), "-o", str(out), "--min-score", "0.3"]
    assert main([*args, *FAST, "--summary", str(tmp_path / "s.json")]) == 0
    for ann_id, status in statuses(out):
        expected = COCO_EXPECTED[ann_id]
        assert status in REFINED if expected == "refined" else status == expected
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["images_processed"] == 3 and summary["masks_total"] == 21
    assert "mean predicted IoU" in capsys.readouterr().out
    assert not (tmp_path / "out" / "refined.json.samrefiner-state").exists()
    assert main([*args, *FAST, "--strict"]) == 3


def test_coco_cli_resume_after_crash_is_byte_identical(tmp_path, monkeypatch) -> None:
    ann, images = build_coco(tmp_path)
    out = tmp_path / "refined.json"
    args = ["coco", str(ann), "--images", str(images), "-o", str(out), *FAST]
    assert main(args) == 0
    uninterrupted = out.read_bytes()
    out.unlink()

    class Killed(BaseException):
        pass

    real_write = RunState.write

    def write_then_die(self, record):
        real_write(self, record)
        if record.key == "5":  # the second usable image
            raise Killed

    monkeypatch.setattr(RunState, "write", write_then_die)
    with pytest.raises(Killed):
        main(args)
    monkeypatch.setattr(RunState, "write", real_write)
    assert not out.exists()
    assert main([*args[:-2], "--iterations", "2", "--resume"]) == 2  # other settings
    # Speed-only settings may change on resume.
    assert main([*args, "--threads", "1", "--max-batch", "3", "--resume"]) == 0
    assert out.read_bytes() == uninterrupted


def test_cli_user_errors(tmp_path, capsys) -> None:
    ann, images = build_coco(tmp_path)
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            [
                {
                    "image_id": 1,
                    "category_id": 1,
                    "score": 0.5,
                    "segmentation": encode_rle(np.ones((40, 60), bool)),
                }
            ]
        )
    )
    assert (
        main(
            ["coco", str(results), "--images", str(images), "-o", str(tmp_path / "o.json"), *MODEL]
        )
        == 2
    )
    assert "lists no images" in capsys.readouterr().err
    assert (
        main(
            [
                "coco",
                str(results),
                "--image-info",
                str(ann),
                "--images",
                str(images),
                "-o",
                str(tmp_path / "o.json"),
                *FAST,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "masks",
                "--images",
                str(images),
                "--masks",
                str(images),
                "-o",
                str(images / "refined"),
                *MODEL,
            ]
        )
        == 2
    )
    assert "must not be, or lie inside" in capsys.readouterr().err
    assert (
        main(
            [
                "masks",
                "--images",
                str(images),
                "--masks",
                str(tmp_path / "none"),
                "-o",
                str(tmp_path / "x"),
                *MODEL,
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "coco",
                str(ann),
                "--images",
                str(images),
                "-o",
                str(tmp_path / "p.json"),
                *MODEL,
                "--margin",
                "2",
            ]
        )
        == 2
    )


def test_nothing_processed_exits_1(tmp_path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "ghost.png")
    images.mkdir()
    out = tmp_path / "out"
    assert (
        main(["masks", "--images", str(images), "--masks", str(masks), "-o", str(out), *MODEL]) == 1
    )
    assert (out / "ghost.png").read_bytes() == (masks / "ghost.png").read_bytes()


def test_masks_cli_passes_every_bad_file_through(tmp_path) -> None:
    images, masks = build_masks(tmp_path)
    out = tmp_path / "out"
    assert (
        main(["masks", "--images", str(images), "--masks", str(masks), "-o", str(out), *FAST]) == 0
    )
    written = tree_bytes(out)
    assert sorted(written) == sorted(MASKS_EXPECTED)
    for name, status in MASKS_EXPECTED.items():
        if status != "refined":
            assert written[name] == (masks / name).read_bytes()
        else:
            assert set(np.unique(np.asarray(Image.open(out / name)))) <= {0, 255}


def test_split_cli_names_and_strict(tmp_path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    lab = np.zeros((30, 40), np.uint8)
    lab[2:10, 2:10] = 4
    lab[20:28, 30:38] = 4
    lab[12:18, 12:18] = 2
    Image.fromarray(lab).save(labels / "img.png")
    (labels / "bad.png").write_bytes(b"x")
    out = tmp_path / "inst"
    assert main(["split", "--labels", str(labels), "-o", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img-2-1.png", "img-4-1.png", "img-4-2.png"]
    assert np.array_equal(
        np.asarray(Image.open(out / "img-4-2.png")) > 0, split_label_map(lab).masks[2]
    )
    assert (
        main(["split", "--labels", str(labels), "-o", str(out), "--no-progress", "--strict"]) == 3
    )


# --- the shared ground truth ------------------------------------------------------------


def copy_pairs(src_images: Path, src_masks: Path, names: list[str], root: Path):
    images, masks = root / "images", root / "masks"
    for name in names:
        image = next(src_images.glob(f"{name}.*"))
        (images / image.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, images / image.name)
        (masks / f"{name}.png").parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src_masks / f"{name}.png", masks / f"{name}.png")
    return images, masks


@pytest.mark.shared_data
def test_instances_cli_on_davis_palettes(shared_data, tmp_path) -> None:
    names = ["bmx-trees_00000"]
    images, masks = copy_pairs(
        shared_data / "davis2017_val" / "images",
        shared_data / "davis2017_val" / "masks",
        names,
        tmp_path,
    )
    out = tmp_path / "out"
    assert (
        main(["instances", "--images", str(images), "--labels", str(masks), "-o", str(out), *FAST])
        == 0
    )
    src, dst = read_label_map(masks / f"{names[0]}.png"), read_label_map(out / f"{names[0]}.png")
    assert dst.mode == "P" and dst.palette == src.palette
    assert set(np.unique(dst.labels)) <= set(np.unique(src.labels))


@pytest.mark.shared_data
def test_semantic_and_split_cli_on_voc_class_maps(shared_data, tmp_path) -> None:
    voc = shared_data / "labelme_voc2011"
    names = ["2011_000003", "2011_000006"]
    images, labels = copy_pairs(voc / "images", voc / "masks_class", names, tmp_path)
    out = tmp_path / "out"
    assert (
        main(["semantic", "--images", str(images), "--labels", str(labels), "-o", str(out), *FAST])
        == 0
    )
    for name in names:
        src, dst = read_label_map(labels / f"{name}.png"), read_label_map(out / f"{name}.png")
        assert dst.palette == src.palette
        assert np.array_equal(dst.labels == 255, src.labels == 255)  # ignore kept exactly
        assert set(np.unique(dst.labels)) <= set(np.unique(src.labels)) | {0}
    inst = tmp_path / "inst"
    assert main(["split", "--labels", str(labels), "-o", str(inst), "--no-progress"]) == 0
    for name in names:
        split = split_label_map(read_label_map(labels / f"{name}.png").labels, ignore=255)
        files = sorted(inst.glob(f"{name}-*.png"))
        assert len(files) == len(split)
    refined = tmp_path / "inst_refined"
    assert (
        main(["masks", "--images", str(images), "--masks", str(inst), "-o", str(refined), *FAST])
        == 0
    )
    assert sorted(p.name for p in refined.iterdir()) == sorted(p.name for p in inst.iterdir())


@pytest.mark.shared_data
def test_coco_cli_on_voc_ground_truth(shared_data, tmp_path) -> None:
    """A COCO file built from VOC instance maps: polygons for some objects, RLE for others."""
    voc = shared_data / "labelme_voc2011"
    names = ["2011_000003", "2011_000025"]
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    for image_id, name in enumerate(names, start=1):
        shutil.copy(voc / "images" / f"{name}.jpg", images_dir / f"{name}.jpg")
        labels = read_label_map(voc / "masks" / f"{name}.png").labels
        h, w = labels.shape
        coco["images"].append({"id": image_id, "file_name": f"{name}.jpg", "width": w, "height": h})
        for obj in [v for v in np.unique(labels) if v not in (0, 255)]:
            mask = labels == obj
            if obj % 2:
                contours, _ = cv2.findContours(
                    mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                )
                segm = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
            else:
                segm = encode_rle(mask)
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": segm,
                    "iscrowd": 0,
                }
            )
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps(coco))
    out = tmp_path / "refined.json"
    assert main(["coco", str(ann), "--images", str(images_dir), "-o", str(out), *FAST]) == 0
    refined = json.loads(out.read_text())
    assert len(refined["annotations"]) == len(coco["annotations"])
    by_image = {im["id"]: im for im in refined["images"]}
    for a in refined["annotations"]:
        assert a["samrefiner"]["status"] in REFINED
        im = by_image[a["image_id"]]
        mask, _ = decode_segmentation(a["segmentation"], im["height"], im["width"])
        assert a["area"] == int(mask.sum())


def test_labels_is_the_label_map_folder_of_every_command(tmp_path, capsys) -> None:
    from samrefiner.cli import build_parser

    parser = build_parser()
    for command in ("instances", "semantic"):
        args = parser.parse_args([command, "--images", "i", "--labels", "L", "-o", "o"])
        assert args.labels == "L"
    # instances' old --masks (instance maps, unlike masks' --masks) is a deprecated alias.
    args = parser.parse_args(["instances", "--images", "i", "--masks", "L", "-o", "o"])
    assert args.labels == "L"
    assert "--masks is deprecated" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["instances", "--images", str(tmp_path), "-o", str(out), *MODEL]) == 2
    assert "required: --labels" in capsys.readouterr().err
