"""``samrefiner eval`` and ``samrefiner make-coarse`` on PNG folders and COCO files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from samrefiner.cli import main
from samrefiner.io.coco import encode_rle

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [255, 255, 255] * 252


def square(shape, y1, x1, y2, x2):
    m = np.zeros(shape, dtype=bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def save_binary(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def save_ids(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(ids.astype(np.uint8))
    img.putpalette(PALETTE)
    img.save(path)


def run_json(capsys, *argv):
    assert main(["eval", *map(str, argv), "--json", "-", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_binary_pngs_hand_values(tmp_path, capsys):
    gt = square((10, 10), 2, 2, 7, 7)
    save_binary(tmp_path / "gt" / "a.png", gt)
    save_binary(tmp_path / "pred" / "a.png", square((10, 10), 2, 3, 7, 8))
    save_binary(tmp_path / "gt" / "b.png", gt)
    save_binary(tmp_path / "pred" / "b.png", gt)
    out = run_json(capsys, tmp_path / "pred", tmp_path / "gt")
    objs = {o["item"]: o for o in out["objects"]}
    assert objs["a"]["iou"] == pytest.approx(30 / 42)
    assert objs["a"]["boundary_iou"] == pytest.approx(1 / 3)
    assert objs["b"]["iou"] == 1.0 and objs["b"]["mba"] == 1.0
    summary = out["summary"]["all"]
    assert summary["count"] == 2
    assert summary["mean_iou"] == pytest.approx((30 / 42 + 1) / 2)
    assert summary["total_iou"] == pytest.approx((30 + 36) / (42 + 36))
    assert out["summary"]["small"]["count"] == 2 and out["summary"]["large"]["count"] == 0
    assert out["missing"] == [] and out["extra"] == 0


def test_eval_instance_ids_ignore_missing_and_extra(tmp_path, capsys):
    gt = np.zeros((40, 40), np.uint8)
    gt[5:15, 5:15] = 1
    gt[20:30, 20:30] = 2
    gt[15, 5:15] = 255  # VOC-style ignore band under object 1's edge
    pred = np.zeros_like(gt)
    pred[5:16, 5:15] = 1  # covers the ignore row too: not counted against it
    pred[32:36, 32:36] = 3  # no such ground-truth object
    save_ids(tmp_path / "gt" / "x.png", gt)
    save_ids(tmp_path / "pred" / "x.png", pred)
    save_ids(tmp_path / "gt" / "y.png", gt)  # no prediction at all
    out = run_json(capsys, tmp_path / "pred", tmp_path / "gt")
    scores = {(o["item"], o["object"]): o["iou"] for o in out["objects"]}
    assert scores == {("x", 1): 1.0, ("x", 2): 0.0, ("y", 1): 0.0, ("y", 2): 0.0}
    assert out["missing"] == ["y"] and out["extra"] == 1
    # Without an ignore value the band row is a wrong prediction of object 1... and 255
    # becomes an object of its own.
    out = run_json(capsys, tmp_path / "pred", tmp_path / "gt", "--ignore", "none")
    scores = {(o["item"], o["object"]): o["iou"] for o in out["objects"]}
    assert scores[("x", 1)] == pytest.approx(100 / 110) and ("x", 255) in scores
    # The old spelling (-1: none) still works for one release, with a notice.
    assert run_json(capsys, tmp_path / "pred", tmp_path / "gt", "--ignore-value", "-1") == out


@pytest.mark.parametrize("command", ["eval", "make-coarse", "bench"])
def test_ignore_has_one_spelling_and_a_deprecated_alias(command, capsys):
    from samrefiner.cli import build_parser

    parser = build_parser()
    base = {"eval": ["p", "g"], "make-coarse": ["g", "-o", "o"], "bench": ["d", "-o", "o"]}
    args = [command, *base[command]]
    assert parser.parse_args(args).ignore == 255
    assert parser.parse_args([*args, "--ignore", "none"]).ignore is None
    assert parser.parse_args([*args, "--ignore", "7"]).ignore == 7
    assert parser.parse_args([*args, "--ignore-value", "-1"]).ignore is None
    assert parser.parse_args([*args, "--ignore-value", "9"]).ignore == 9
    assert "--ignore-value is deprecated" in capsys.readouterr().err
    assert (
        "--ignore-value"
        not in parser._subparsers._group_actions[0]
        .choices[  # type: ignore[union-attr]
            command
        ]
        .format_help()
    )


def test_eval_prints_table_and_writes_csv(tmp_path, capsys):
    save_binary(tmp_path / "gt" / "a.png", square((50, 50), 10, 10, 20, 20))
    save_binary(tmp_path / "pred" / "a.png", square((50, 50), 10, 10, 20, 21))
    csv_path = tmp_path / "out" / "scores.csv"
    assert (
        main(
            [
                "eval",
                str(tmp_path / "pred"),
                str(tmp_path / "gt"),
                "--csv",
                str(csv_path),
                "--no-progress",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| subset" in text and "mIoU" in text and "mBA" in text
    assert "| all " in text and "0.9167" in text  # 121 / 132
    rows = list(csv.DictReader(csv_path.open()))
    assert rows[0]["item"] == "a" and float(rows[0]["iou"]) == pytest.approx(121 / 132)


def test_eval_errors_name_the_file(tmp_path, capsys):
    save_binary(tmp_path / "gt" / "a.png", square((10, 10), 1, 1, 5, 5))
    save_binary(tmp_path / "pred" / "a.png", square((12, 10), 1, 1, 5, 5))
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pred/a.png" in err and "differs" in err
    (tmp_path / "f.json").write_text("{}")
    assert main(["eval", str(tmp_path / "f.json"), str(tmp_path / "gt")]) == 2
    assert "two folders" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope"), str(tmp_path / "gt")]) == 2
    assert "nope: not found" in capsys.readouterr().err


def coco_dataset(masks_by_image, shape=(40, 50)):
    h, w = shape
    images = [{"id": i, "file_name": f"{i}.jpg", "height": h, "width": w} for i in masks_by_image]
    anns, next_id = [], 1
    for image_id, masks in masks_by_image.items():
        for cat, m in masks:
            anns.append(
                {
                    "id": next_id,
                    "image_id": image_id,
                    "category_id": cat,
                    "segmentation": encode_rle(m),
                    "area": int(m.sum()),
                    "iscrowd": 0,
                }
            )
            next_id += 1
    return {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}


def test_eval_coco_by_id_and_by_iou(tmp_path, capsys):
    shape = (40, 50)
    a, b = square(shape, 2, 2, 11, 11), square(shape, 20, 20, 29, 39)
    gt = coco_dataset({1: [(1, a), (2, b)]}, shape)
    gt["annotations"][0]["segmentation"] = [[2, 2, 12, 2, 12, 12, 2, 12]]  # polygon of a
    crowd = {
        "id": 99,
        "image_id": 1,
        "category_id": 1,
        "iscrowd": 1,
        "segmentation": encode_rle(square(shape, 30, 0, 39, 5)),
        "area": 60,
    }
    gt["annotations"].append(crowd)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    # A refined copy of the file: paired by id.
    pred = coco_dataset({1: [(1, square(shape, 2, 2, 11, 12)), (2, b)]}, shape)
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    out = run_json(capsys, tmp_path / "pred.json", tmp_path / "gt.json")
    by_obj = {o["object"]: o["iou"] for o in out["objects"]}
    assert by_obj == {1: pytest.approx(100 / 110), 2: 1.0}  # the crowd one is left out
    # A results file (no ids), listed in another order, with a spare detection: by IoU.
    results = [
        {"image_id": 1, "category_id": 2, "segmentation": encode_rle(b), "score": 0.9},
        {
            "image_id": 1,
            "category_id": 1,
            "segmentation": encode_rle(square(shape, 0, 40, 3, 45)),
            "score": 0.2,
        },
        {"image_id": 1, "category_id": 1, "segmentation": encode_rle(a), "score": 0.8},
    ]
    (tmp_path / "res.json").write_text(json.dumps(results))
    out = run_json(capsys, tmp_path / "res.json", tmp_path / "gt.json")
    assert {o["object"]: o["iou"] for o in out["objects"]} == {1: 1.0, 2: 1.0}
    assert out["extra"] == 1
    assert (
        main(["eval", str(tmp_path / "res.json"), str(tmp_path / "gt.json"), "--match", "id"]) == 2
    )
    assert "--match id" in capsys.readouterr().err


def test_make_coarse_pngs_keep_format_and_are_deterministic(tmp_path, capsys):
    ids = np.zeros((120, 160), np.uint8)
    ids[20:80, 20:90] = 1
    ids[60:110, 100:150] = 2
    ids[0:4, :] = 255  # ignore band is kept where no coarse object lands
    save_ids(tmp_path / "gt" / "p.png", ids)
    save_binary(tmp_path / "gt" / "sub" / "b.png", square((120, 160), 30, 30, 90, 120))
    for name, seed in (("o1", 5), ("o2", 5), ("o3", 6)):
        argv = [
            "make-coarse",
            str(tmp_path / "gt"),
            "-o",
            str(tmp_path / name),
            "--seed",
            str(seed),
            "--no-progress",
        ]
        assert main(argv) == 0
    assert "3 objects" in capsys.readouterr().out
    same = (tmp_path / "o1" / "p.png").read_bytes() == (tmp_path / "o2" / "p.png").read_bytes()
    assert same
    assert (tmp_path / "o1" / "p.png").read_bytes() != (tmp_path / "o3" / "p.png").read_bytes()
    coarse = Image.open(tmp_path / "o1" / "p.png")
    assert coarse.mode == "P" and coarse.getpalette()[:12] == PALETTE[:12]
    arr = np.asarray(coarse)
    assert set(np.unique(arr)) <= {0, 1, 2, 255} and (arr[0:4] == 255).mean() > 0.5
    binary = Image.open(tmp_path / "o1" / "sub" / "b.png")
    assert binary.mode == "L" and set(np.unique(np.asarray(binary))) == {0, 255}
    # The IoU table agrees with eval of the written files against the ground truth.
    table = {
        (r["item"], int(r["object"])): float(r["coarse_iou"])
        for r in csv.DictReader((tmp_path / "o1" / "coarse_iou.csv").open())
    }
    out = run_json(capsys, tmp_path / "o1", tmp_path / "gt")
    scored = {(o["item"], o["object"]): o["iou"] for o in out["objects"]}
    assert table.keys() == scored.keys()
    for key, iou in table.items():
        assert scored[key] == pytest.approx(iou, abs=1e-6)
        assert 0.3 < iou < 0.99


def test_make_coarse_fixed_family_and_bad_options(tmp_path, capsys):
    save_binary(tmp_path / "gt" / "a.png", square((100, 100), 20, 20, 79, 79))
    argv = [
        "make-coarse",
        str(tmp_path / "gt"),
        "-o",
        str(tmp_path / "o"),
        "--family",
        "dilate:1",
        "--no-progress",
        "--table",
        str(tmp_path / "t.csv"),
    ]
    assert main(argv) == 0
    out = np.asarray(Image.open(tmp_path / "o" / "a.png")) > 0
    assert out.sum() > 3600 and out[20:80, 20:80].all()  # only grown
    assert "dilate:1.00" in (tmp_path / "t.csv").read_text()
    with pytest.raises(SystemExit):
        main(["make-coarse", str(tmp_path / "gt"), "-o", str(tmp_path / "o"), "--family", "x"])
    assert (
        main(
            [
                "make-coarse",
                str(tmp_path / "gt"),
                "-o",
                str(tmp_path / "o"),
                "--iou-range",
                "0.9",
                "0.2",
            ]
        )
        == 2
    )
    assert "iou_range" in capsys.readouterr().err


def test_make_coarse_coco(tmp_path, capsys):
    shape = (60, 80)
    gt = coco_dataset(
        {7: [(1, square(shape, 5, 5, 40, 50)), (2, square(shape, 10, 55, 50, 75))]}, shape
    )
    gt["annotations"][1]["extra_key"] = "kept"
    gt["annotations"].append(
        {
            "id": 50,
            "image_id": 7,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": [[0, 0, 5, 0, 5, 5]],
            "area": 12,
        }
    )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert (
        main(
            [
                "make-coarse",
                str(tmp_path / "gt.json"),
                "-o",
                str(tmp_path / "c.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    coarse = json.loads((tmp_path / "c.json").read_text())
    anns = {a["id"]: a for a in coarse["annotations"]}
    assert anns[50]["segmentation"] == [[0, 0, 5, 0, 5, 5]]  # crowd untouched
    assert anns[2]["extra_key"] == "kept" and isinstance(anns[1]["segmentation"]["counts"], str)
    table = list(csv.DictReader((tmp_path / "c.iou.csv").open()))
    assert [int(r["object"]) for r in table] == [1, 2]
    out = run_json(capsys, tmp_path / "c.json", tmp_path / "gt.json")
    for row, obj in zip(table, out["objects"], strict=True):
        assert obj["iou"] == pytest.approx(float(row["coarse_iou"]), abs=1e-6)


@pytest.mark.shared_data
def test_make_coarse_then_eval_on_shared_davis(shared_data, tmp_path, capsys):
    gt_dir = shared_data / "davis2017_val" / "masks"
    assert main(["make-coarse", str(gt_dir), "-o", str(tmp_path / "c"), "--no-progress"]) == 0
    capsys.readouterr()
    out = run_json(capsys, tmp_path / "c", gt_dir)
    assert out["summary"]["all"]["count"] == 2
    assert 0.35 < out["summary"]["all"]["mean_iou"] < 0.95
