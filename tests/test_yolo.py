"""``samrefiner yolo``: Ultralytics YOLO segmentation datasets refined in their own format."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers_runner import (
    TINY_MODEL_ARGS,
    IdentityRefiner,
    box_mask,
    run_interrupted,
    tree_bytes,
    write_image,
)
from samrefiner.cli import main
from samrefiner.io.images import read_image
from samrefiner.io.label_maps import read_label_map
from samrefiner.io.masks import mask_iou
from samrefiner.io.polygons import joined_ring, mask_to_polygons
from samrefiner.io.yolo import label_path_for, load_yolo_data, parse_line, polygon_line
from samrefiner.runner import RunState
from samrefiner.runner.engines.local import run_dataset
from samrefiner.runner.formats.yolo import YoloDataset

H, W = 40, 60


def ring_text(mask: np.ndarray, class_id: int = 0) -> str:
    h, w = mask.shape
    return polygon_line(class_id, joined_ring(mask_to_polygons(mask)), h, w)


def two_parts_with_hole() -> np.ndarray:
    mask = box_mask(5, 5, 25, 30)
    mask[10:15, 10:15] = False  # a hole
    mask[20:35, 40:55] = True  # a second part
    return mask


def build_yolo(root: Path) -> Path:
    """A dataset YAML with a train folder and a val list file, and every kind of line."""
    ds = root / "ds"
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        write_image(ds / "images" / "train" / f"{name}.png", seed)
    write_image(ds / "images" / "val" / "d.png", 4)
    (ds / "images" / "train" / "e.png").write_bytes(b"not an image")
    labels = ds / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text(
        "\n".join(
            [
                ring_text(box_mask(5, 5, 20, 25), 0),
                "1 0.5 0.5 0.2 0.3",  # a box
                "",  # blank: dropped
                "0 0.1 0.1 0.2",  # too few values
                "x 0.1 0.1 0.2 0.2 0.3 0.3",  # not a number
                "0 0.1 0.1 0.2 0.2 0.3",  # odd coordinate count
                "2 0.5 0.5 0.0 0.1",  # zero-width box
                "0 0.2 0.2 0.2 0.2 0.2 0.2",  # an empty polygon
                ring_text(two_parts_with_hole(), 3),
            ]
        )
        + "\n"
    )
    (labels / "b.txt").write_text("0 1.2 -0.1 0.5 0.5 0.5 0.9\n")  # clipped to the image
    (labels / "e.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # unreadable image
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no image
    (ds / "labels" / "val").mkdir(parents=True)
    (ds / "labels" / "val" / "d.txt").write_text(ring_text(box_mask(30, 10, 50, 30), 1) + "\n")
    (ds / "val.txt").write_text("./images/val/d.png\n")
    data = {"train": "images/train", "val": "val.txt", "names": {0: "a", 1: "b", 2: "c", 3: "d"}}
    (ds / "data.yaml").write_text(yaml.safe_dump(data))
    return ds / "data.yaml"


def run_identity(data_yaml: Path, out: Path, **kwargs) -> dict:
    state = RunState(out)
    state.start({}, resume=False)
    summary = run_dataset(
        YoloDataset(load_yolo_data(data_yaml), out, **kwargs), IdentityRefiner(), state
    )
    state.remove()
    return summary.to_json()


def test_lines_parse_and_format() -> None:
    line = parse_line("3 0.1 0.2 0.3 0.2 0.3 0.4")
    assert line.class_id == 3 and line.points.shape == (3, 2) and not line.is_box
    box = parse_line("1 0.5 0.5 0.2 0.4")
    assert box.is_box and box.box_xyxy(10, 10) == [4.0, 3.0, 5.0, 6.0]
    for text, status in (
        ("0 0.1 0.1 0.2", "invalid_polygon"),
        ("a 0 0 1 1", "invalid_record"),
        ("-1 0 0 1 1", "invalid_record"),
        ("1.5 0 0 1 1", "invalid_record"),
        ("0 0.5 0.5 0 1", "invalid_bbox"),
        ("0 0.1 0.1 0.2 0.2 nan 0.3", "invalid_polygon"),
    ):
        with pytest.raises(ValueError) as info:
            parse_line(text)
        assert info.value.status == status, text
    assert (
        label_path_for(Path("x/images/images/train/a.jpg")).as_posix()
        == "x/images/labels/train/a.txt"
    )


def test_random_masks_with_parts_and_holes_read_back_exactly() -> None:
    """Noise masks (dozens of parts, holes, parts touching at corners, the border): one
    joined ring per mask reads back as the same pixels."""
    rng = np.random.default_rng(7)
    for k in range(8):
        mask = rng.random((20, 30)) < (0.3 + 0.05 * k)
        line = parse_line(ring_text(mask, 2))
        assert (line.mask(20, 30)[0] == mask).all(), k
    one = np.zeros((H, W), dtype=bool)
    one[0, W - 1] = True  # a single pixel in a corner
    assert (parse_line(ring_text(one)).mask(H, W)[0] == one).all()


def test_shared_masks_round_trip_through_yolo_lines(shared_data: Path) -> None:
    """Every object of the shared label maps, written as one YOLO line and read back:
    exact at tolerance 0 (parts and holes joined by bridges), close at 1 px."""
    maps = sorted((shared_data / "davis2017_testdev" / "masks").glob("*.png"))[:6]
    maps += sorted((shared_data / "labelme_voc2011" / "masks").glob("*.png"))
    ious = []
    for path in maps:
        labels = read_label_map(path).labels
        h, w = labels.shape
        for value in np.unique(labels):
            if value in (0, 255):
                continue
            mask = labels == value
            line = parse_line(ring_text(mask, 1))
            back, outside = line.mask(h, w)
            assert not outside and (back == mask).all(), (path.name, value)
            simple = polygon_line(1, joined_ring(mask_to_polygons(mask, tolerance=1.0)), h, w)
            ious.append(mask_iou(parse_line(simple).mask(h, w)[0], mask))
    assert len(ious) > 20 and np.mean(ious) > 0.95


def test_dataset_round_trip_with_an_identity_refiner(tmp_path: Path) -> None:
    data_yaml = build_yolo(tmp_path)
    before = tree_bytes(tmp_path / "ds")
    out = tmp_path / "out"
    summary = run_identity(data_yaml, out)
    assert tree_bytes(tmp_path / "ds") == before  # inputs untouched
    assert summary["masks_by_status"] == {
        "refined": 5,
        "invalid_polygon": 2,
        "invalid_record": 1,
        "invalid_bbox": 1,
        "empty": 1,
        "image_unreadable": 1,
        "image_missing": 1,
    }
    assert summary["warnings"] == {"clipped": 1}
    assert summary["masks_from_box"] == 1
    a = (out / "labels" / "train" / "a.txt").read_text().splitlines()
    src = [s for s in (tmp_path / "ds/labels/train/a.txt").read_text().splitlines() if s]
    assert len(a) == len(src)  # one line per object, the blank one dropped
    assert a[2:7] == src[2:7]  # unusable lines unchanged
    first, boxed, merged = parse_line(a[0]), parse_line(a[1]), parse_line(a[7])
    assert (first.mask(H, W)[0] == box_mask(5, 5, 20, 25)).all()
    assert boxed.class_id == 1 and not boxed.is_box  # the box came back as a polygon
    assert (boxed.mask(H, W)[0] == box_mask(24, 14, 35, 25)).all()
    assert merged.class_id == 3 and (merged.mask(H, W)[0] == two_parts_with_hole()).all()
    # An unusable image: its labels copied byte for byte; an orphan label file too.
    for name in ("e.txt", "orphan.txt"):
        assert (out / "labels/train" / name).read_bytes() == (
            tmp_path / "ds/labels/train" / name
        ).read_bytes()
    # Images in place (a label-less image too), the list file and YAML rewritten.
    for name in ("train/a.png", "train/c.png", "val/d.png"):
        assert (
            read_image(out / "images" / name) == read_image(tmp_path / "ds/images" / name)
        ).all()
    assert (out / "val.txt").read_text() == "./images/val/d.png\n"
    written = yaml.safe_load((out / "data.yaml").read_text())
    assert written["path"] == str(out.resolve())
    assert written["train"] == "images/train" and written["val"] == "val.txt"
    assert written["names"] == {0: "a", 1: "b", 2: "c", 3: "d"}
    assert (out / "labels/val/d.txt").read_text() == (tmp_path / "ds/labels/val/d.txt").read_text()


def test_images_folder_alone_and_copies(tmp_path: Path) -> None:
    build_yolo(tmp_path)
    out = tmp_path / "out"
    summary = run_identity(tmp_path / "ds" / "images" / "val", out, link_images=False)
    assert summary["masks_refined"] == 1
    assert sorted(tree_bytes(out)) == ["images/val/d.png", "labels/val/d.txt"]
    image = out / "images" / "val" / "d.png"
    assert os.stat(image).st_ino != os.stat(tmp_path / "ds/images/val/d.png").st_ino


def test_bad_datasets_are_one_line_errors(tmp_path: Path, capsys) -> None:
    data_yaml = build_yolo(tmp_path)
    out = ["-o", str(tmp_path / "out"), *TINY_MODEL_ARGS]
    for content, words in (
        ("[1, 2]", "must be a mapping"),
        ("names: [a]\n", "no split"),
        ("train: nowhere\n", "does not exist"),
        ("train: images/train\nkpt_shape: [17, 3]\n", "pose dataset"),
        ("train: ../../\n", "outside the dataset root"),
        ("train: [\n", "cannot read the dataset YAML"),
    ):
        data_yaml.write_text(content)
        assert main(["yolo", str(data_yaml), *out]) == 2
        assert words in capsys.readouterr().err
    assert main(["yolo", str(tmp_path / "ds" / "labels"), *out]) == 2
    assert "'images' folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refines_resumes_and_refuses_to_clash(tmp_path: Path, monkeypatch, caplog) -> None:
    data_yaml = build_yolo(tmp_path)
    out = tmp_path / "out"
    args = ["yolo", str(data_yaml), "-o", str(out), *TINY_MODEL_ARGS]
    caplog.set_level(logging.WARNING, logger="samrefiner.runner")
    assert main([*args, "--simplify", "1", "--summary", str(tmp_path / "s.json")]) == 0
    assert any("invalid_polygon" in r.getMessage() for r in caplog.records)
    whole = tree_bytes(out)
    for line in (out / "labels/train/a.txt").read_text().splitlines()[:2]:
        assert not parse_line(line).is_box
    # Interrupted after the first image, then resumed: the same bytes.
    import shutil

    shutil.rmtree(out)
    run_interrupted(monkeypatch, lambda: main([*args, "--simplify", "1"]))
    assert main([*args, "--simplify", "2", "--resume"]) == 2  # other settings
    assert main([*args, "--simplify", "1", "--resume"]) == 0
    assert tree_bytes(out) == whole
    assert main(["yolo", str(data_yaml), "-o", str(tmp_path / "ds"), *TINY_MODEL_ARGS]) == 2


#: Run in a child process: importing Ultralytics patches ``PIL.Image.open`` for the whole
#: process (an unreadable image then raises ImportError for its HEIF plugin).
ULTRALYTICS_READER = """
import json, sys
from pathlib import Path
import numpy as np
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset, polygon2mask
data = check_det_dataset(sys.argv[1])
loaded = YOLODataset(img_path=data["train"], data=data, task="segment", imgsz=64, augment=False)
out = {"nc": data["nc"], "train": data["train"], "labels": {}}
drawn = {}
for label in loaded.labels:
    h, w = label["shape"]
    name = Path(label["im_file"]).name
    out["labels"][name] = len(label["segments"])
    for k, s in enumerate(label["segments"]):
        drawn[f"{name}:{k}"] = polygon2mask((h, w), [s * [w, h]]).astype(bool)
np.savez_compressed(sys.argv[2], **drawn)
print(json.dumps(out))
"""


@pytest.mark.extra("ultralytics")
def test_ultralytics_reads_the_refined_dataset(tmp_path: Path, shared_data: Path) -> None:
    """Ultralytics' own dataset checker and loader read our output: every image, every
    object as one segment, nothing corrupt; its rasterisation (``polygon2mask``) of each
    segment is the object within a pixel's outline."""
    ds = tmp_path / "ds"
    objects = {}
    for path in sorted((shared_data / "davis2017_testdev" / "masks").glob("*.png"))[:4]:
        labels = read_label_map(path).labels
        image = shared_data / "davis2017_testdev" / "images" / f"{path.stem}.jpg"
        (ds / "images" / "train").mkdir(parents=True, exist_ok=True)
        (ds / "labels" / "train").mkdir(parents=True, exist_ok=True)
        os.symlink(image, ds / "images" / "train" / image.name)
        masks = [labels == v for v in np.unique(labels) if v not in (0, 255)]
        lines = [ring_text(m, k % 2) for k, m in enumerate(masks)]
        (ds / "labels" / "train" / f"{path.stem}.txt").write_text("\n".join(lines) + "\n")
        objects[image.name] = masks
    (ds / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/train", "names": ["a", "b"]})
    )
    run_identity(ds / "data.yaml", tmp_path / "out", allow_outside_images=True)
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp_path / "settings"), YOLO_OFFLINE="1")
    reader = [sys.executable, "-c", ULTRALYTICS_READER]
    child = subprocess.run(
        [*reader, str(tmp_path / "out" / "data.yaml"), str(tmp_path / "drawn.npz")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    read = json.loads(child.stdout.strip().splitlines()[-1])
    assert read["nc"] == 2 and Path(read["train"]) == (tmp_path / "out/images/train").resolve()
    assert sorted(read["labels"]) == sorted(objects)
    drawn = np.load(tmp_path / "drawn.npz")
    ious = []
    for name, count in read["labels"].items():
        assert count == len(objects[name])  # one segment per object, none corrupt
        for k, mask in enumerate(objects[name]):
            ious.append(mask_iou(drawn[f"{name}:{k}"], mask))
    assert min(ious) > 0.9 and np.mean(ious) > 0.95


@pytest.mark.extra("ray")
@pytest.mark.usefixtures("local_ray")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_ray_engine_writes_the_same_bytes(tmp_path: Path) -> None:
    data_yaml = build_yolo(tmp_path)

    def run(name: str, *engine: str) -> dict[str, bytes]:
        out = tmp_path / name
        assert main(["yolo", str(data_yaml), "-o", str(out), *TINY_MODEL_ARGS, *engine]) == 0
        files = tree_bytes(out)
        written = yaml.safe_load(files.pop("data.yaml"))
        assert written.pop("path") == str(out.resolve())  # the YAML names its own folder
        files["data.yaml"] = yaml.safe_dump(written).encode()
        return files

    local = run("local")
    assert run("ray", "--engine", "ray", "--workers", "1") == local
    assert len(local) == 12  # every image, label file, list file and the YAML


def test_list_entries_outside_the_root_are_kept_and_counted(tmp_path: Path) -> None:
    data_yaml = build_yolo(tmp_path)
    other = tmp_path / "other"
    write_image(other / "images" / "x.png", 9)
    (other / "labels").mkdir(parents=True)
    (other / "labels" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.4 0.4 0.2 0.2\n")
    (tmp_path / "ds" / "val.txt").write_text(f"./images/val/d.png\n{other / 'images' / 'x.png'}\n")
    out = tmp_path / "out"
    summary = run_identity(data_yaml, out)
    assert summary["masks_by_status"]["unsafe_path"] == 2
    assert summary["images_skipped"]["unsafe_path"] == 1
    assert (out / "val.txt").read_text() == f"./images/val/d.png\n{other / 'images' / 'x.png'}\n"
    assert not (out / "other").exists()
