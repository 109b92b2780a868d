"""``samrefiner labelme``: labelme JSON folders refined in their own format."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_runner import (
    TINY_MODEL_ARGS,
    IdentityRefiner,
    box_mask,
    run_interrupted,
    tree_bytes,
    write_image,
)
from samrefiner.cli import main
from samrefiner.io.labelme import mask_shape, read_labelme, shape_mask
from samrefiner.runner import RunState
from samrefiner.runner.engines.local import run_dataset
from samrefiner.runner.formats.labelme import LabelmeDataset

H, W = 40, 60


def shape(label, points, shape_type="polygon", group_id=None, **more):
    return {
        "label": label,
        "points": [[float(x), float(y)] for x, y in points],
        "group_id": group_id,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
        "mask": None,
        **more,
    }


def rect(x1, y1, x2, y2):
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def holed() -> np.ndarray:
    mask = box_mask(30, 5, 50, 20)
    mask[10:14, 38:42] = False
    return mask


def labelme_file(image_path: str, shapes: list, image_data: str | None = None, **more) -> dict:
    return {
        "version": "5.4.1",
        "flags": {"reviewed": False},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": image_data,
        "imageHeight": H,
        "imageWidth": W,
        **more,
    }


def build_labelme(root: Path) -> Path:
    folder = root / "lm"
    write_image(folder / "a.png", 1)
    shapes = [
        shape("cat", rect(5, 5, 20, 25), description="a cat", flags={"x": True}, extra=7),
        shape("box", [(22, 2), (34, 12)], "rectangle"),
        shape("ball", [(45, 30), (45, 35)], "circle"),
        mask_shape(shape("holed", []), holed()),
        shape("dog", rect(2, 30, 8, 36), group_id=1),
        shape("dog", rect(12, 30, 18, 36), group_id=1),
        shape("pt", [(3, 3)], "point"),
        shape("path", [(1, 1), (5, 5), (9, 1)], "linestrip"),
        shape("bad", [(1, 1), (2, 2)]),  # too few points
        shape("flat", [(5, 5), (5, 9)], "rectangle"),  # no area
        shape("broken", [(1, 1), (3, 3)], "mask", mask="%%%"),
    ]
    (folder / "a.json").write_text(json.dumps(labelme_file("a.png", shapes, custom=1), indent=2))
    buffer = io.BytesIO()
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(buffer, format="PNG")
    embedded = base64.b64encode(buffer.getvalue()).decode()
    (folder / "b.json").write_text(
        json.dumps(labelme_file("gone.png", [shape("x", rect(10, 10, 30, 30))], embedded))
    )
    (folder / "c.json").write_text(
        json.dumps(labelme_file("nowhere.png", [shape("y", rect(1, 1, 9, 9))]))
    )
    (folder / "d.json").write_text("{not json")
    write_image(folder / "sub" / "e.png", 5, h=H + 1)
    (folder / "sub" / "e.json").write_text(
        json.dumps(labelme_file("e.png", [shape("z", rect(1, 1, 9, 9))]))
    )
    return folder


def run_identity(folder: Path, out: Path, **kwargs) -> dict:
    state = RunState(out)
    state.start({}, resume=False)
    summary = run_dataset(LabelmeDataset(folder, out, **kwargs), IdentityRefiner(), state)
    state.remove()
    return summary.to_json()


def object_masks(path: Path) -> dict[tuple[str, object], np.ndarray]:
    """(label, group) -> the union of its refinable shapes, as this module reads them."""
    file = read_labelme(path)
    h, w = file.height, file.width
    out: dict = {}
    for group in file.groups():
        first = file.shapes[group[0]]
        key = (
            first["label"],
            first.get("group_id") if first.get("group_id") is not None else group[0],
        )
        try:
            masks = [shape_mask(file.shapes[k], h, w)[0] for k in group]
        except ValueError:  # a shape that cannot be used (kept as it is)
            continue
        union = np.logical_or.reduce(masks)
        out[key] = union
    return out


def test_folder_round_trip_with_an_identity_refiner(tmp_path: Path) -> None:
    folder = build_labelme(tmp_path)
    before = tree_bytes(folder)
    out = tmp_path / "out"
    summary = run_identity(folder, out)
    assert tree_bytes(folder) == before
    assert summary["masks_by_status"] == {
        "refined": 6,
        "invalid_polygon": 1,
        "invalid_bbox": 1,
        "invalid_segmentation": 1,
        "image_missing": 1,
        "mask_unreadable": 1,
        "size_mismatch": 1,
    }
    assert summary["masks_from_box"] == 1
    written = json.loads((out / "a.json").read_text())
    source = json.loads((folder / "a.json").read_text())
    assert {k: v for k, v in written.items() if k != "shapes"} == {
        k: v for k, v in source.items() if k != "shapes"
    }
    kinds = [(s["label"], s["shape_type"]) for s in written["shapes"]]
    assert kinds == [
        ("cat", "polygon"),
        ("box", "polygon"),
        ("ball", "polygon"),
        ("holed", "mask"),  # a polygon cannot hold its hole
        ("dog", "polygon"),  # two parts of group 1: two polygons
        ("dog", "polygon"),
        ("pt", "point"),
        ("path", "linestrip"),
        ("bad", "polygon"),
        ("flat", "rectangle"),
        ("broken", "mask"),
    ]
    cat = written["shapes"][0]
    assert (cat["description"], cat["flags"], cat["extra"]) == ("a cat", {"x": True}, 7)
    assert written["shapes"][4]["group_id"] == written["shapes"][5]["group_id"] == 1
    assert written["shapes"][6:] == source["shapes"][6:]  # untouched shapes
    assert (shape_mask(written["shapes"][3], H, W)[0] == holed()).all()
    assert (shape_mask(written["shapes"][1], H, W)[0] == box_mask(22, 2, 33, 11)).all()
    refined, coarse = object_masks(out / "a.json"), object_masks(folder / "a.json")
    assert refined.keys() == coarse.keys()
    assert all((refined[k] == coarse[k]).all() for k in coarse)
    # imageData kept, the image beside its JSON, unusable files copied byte for byte.
    assert (
        json.loads((out / "b.json").read_text())["imageData"]
        == json.loads((folder / "b.json").read_text())["imageData"]
    )
    assert (out / "a.png").read_bytes() == (folder / "a.png").read_bytes()
    for name in ("c.json", "d.json", "sub/e.json"):
        assert (out / name).read_bytes() == (folder / name).read_bytes()


def test_shared_labelme_files_round_trip(tmp_path: Path, shared_data: Path) -> None:
    """The shared labelme files (real annotations): refined by an identity refiner, every
    object reads back as the same pixels (tolerance 0), and close at --simplify 1."""
    folder = tmp_path / "voc"
    shutil.copytree(shared_data / "labelme_voc2011" / "polygons_json", folder)
    for image in (shared_data / "labelme_voc2011" / "images").glob("*.jpg"):
        shutil.copy(image, folder / image.name)
    summary = run_identity(folder, tmp_path / "exact")
    assert summary["masks_refined"] == summary["masks_total"] == 14
    simple = run_identity(folder, tmp_path / "simple", tolerance=1.0)
    assert simple["masks_refined"] == 14
    for path in sorted(folder.glob("*.json")):
        coarse = object_masks(path)
        assert object_masks(tmp_path / "exact" / path.name).keys() == coarse.keys()
        for key, mask in object_masks(tmp_path / "exact" / path.name).items():
            assert (mask == coarse[key]).all(), (path.name, key)
        for key, mask in object_masks(tmp_path / "simple" / path.name).items():
            inter, union = (mask & coarse[key]).sum(), (mask | coarse[key]).sum()
            assert inter / union > 0.9, (path.name, key)


def test_image_paths_may_leave_the_json_folder_but_not_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "lm"
    write_image(folder / "images" / "a.png", 1)
    write_image(tmp_path / "outside.png", 2)
    for name, image_path in (("a", "..\\images\\a.png"), ("b", "../../outside.png")):
        content = labelme_file(image_path, [shape("x", rect(10, 10, 30, 30))])
        (folder / "json" / f"{name}.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / "json" / f"{name}.json").write_text(json.dumps(content))
    summary = run_identity(folder, tmp_path / "out")
    assert summary["masks_by_status"] == {"refined": 1, "unsafe_path": 1}
    assert (tmp_path / "out" / "images" / "a.png").is_file()
    assert sorted(tree_bytes(tmp_path / "out")) == ["images/a.png", "json/a.json", "json/b.json"]
    allowed = run_identity(folder, tmp_path / "allowed", allow_outside_images=True)
    assert allowed["masks_refined"] == 2
    assert not (tmp_path / "allowed" / "outside.png").exists()  # not part of the folder


def test_cli_and_resume_give_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    folder = build_labelme(tmp_path)
    out = tmp_path / "out"
    args = ["labelme", str(folder), "-o", str(out), *TINY_MODEL_ARGS]
    assert main(args) == 0
    whole = tree_bytes(out)
    shutil.rmtree(out)
    run_interrupted(monkeypatch, lambda: main(args))
    assert main([*args, "--resume"]) == 0
    assert tree_bytes(out) == whole
    assert main(["labelme", str(folder), "-o", str(folder / "x"), *TINY_MODEL_ARGS]) == 2


#: Run in a child process: importing labelme lifts PIL's decompression-bomb limit
#: (``PIL.Image.MAX_IMAGE_PIXELS = None``) for the whole process.
LABELME_READER = """
import json, sys
from pathlib import Path
import numpy as np
from labelme._label_file import read_label_file
from labelme.utils.shape import shapes_to_label
drawn = {}
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    loaded = read_label_file(str(path))  # the image beside it, every shape
    size = (json.loads(path.read_text())["imageHeight"], json.loads(path.read_text())["imageWidth"])
    for k, shape in enumerate(loaded.shapes):
        if shape["label"] in ("bad", "flat") or shape["shape_type"] not in ("polygon", "mask"):
            continue
        _, instances = shapes_to_label(size, [shape], {shape["label"]: 1})
        drawn[f"{path.name}:{k}:{shape['shape_type']}"] = instances > 0
np.savez_compressed(sys.argv[2], **drawn)
"""


@pytest.mark.extra("labelme")
def test_labelmes_own_reader_reads_the_refined_files(tmp_path: Path, shared_data: Path) -> None:
    """labelme's label-file reader loads every output file (shapes, mask PNGs, the image
    beside it); its own rasterisation (``shapes_to_label``) of each shape is ours within
    a pixel's outline, and exact for mask shapes."""
    folder = tmp_path / "voc"
    shutil.copytree(shared_data / "labelme_voc2011" / "polygons_json", folder)
    for image in (shared_data / "labelme_voc2011" / "images").glob("*.jpg"):
        shutil.copy(image, folder / image.name)
    build = build_labelme(tmp_path)
    shutil.copy(build / "a.png", folder / "a.png")
    a = json.loads((build / "a.json").read_text())
    a["shapes"] = [s for s in a["shapes"] if s["label"] != "broken"]  # labelme refuses it too
    (folder / "a.json").write_text(json.dumps(a))
    out = tmp_path / "out"
    run_identity(folder, out)
    child = subprocess.run(
        [sys.executable, "-c", LABELME_READER, str(out), str(tmp_path / "drawn.npz")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    drawn = np.load(tmp_path / "drawn.npz")
    ious, kinds = [], []
    for key in drawn.files:
        name, k, kind = key.split(":")
        file = read_labelme(out / name)
        mask = shape_mask(file.shapes[int(k)], file.height, file.width)[0]
        theirs = drawn[key]
        ious.append((mask & theirs).sum() / (mask | theirs).sum())
        kinds.append(kind)
        if kind == "mask":
            assert ious[-1] == 1.0
    assert len(ious) >= 20 and "mask" in kinds
    assert np.mean(ious) > 0.9 and min(ious) > 0.6


@pytest.mark.extra("ray")
@pytest.mark.usefixtures("local_ray")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_ray_engine_writes_the_same_bytes(tmp_path: Path) -> None:
    folder = build_labelme(tmp_path)

    def run(name: str, *engine: str) -> dict[str, bytes]:
        out = tmp_path / name
        assert main(["labelme", str(folder), "-o", str(out), *TINY_MODEL_ARGS, *engine]) == 0
        return tree_bytes(out)

    local = run("local")
    assert run("ray", "--engine", "ray", "--workers", "1") == local
    assert sorted(local) == [
        "a.json",
        "a.png",
        "b.json",
        "c.json",
        "d.json",
        "sub/e.json",
        "sub/e.png",
    ]
