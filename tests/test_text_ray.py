"""``samrefiner label`` on the Ray engine: the same bytes as the local engine, the
detector loaded once per load actor (not once per image)."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import import_extra

ray = import_extra("ray", "ray")

import helpers_text  # noqa: E402
from helpers_runner import write_image  # noqa: E402
from samrefiner.cli import main  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("local_ray"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
    pytest.mark.extra("hf"),
]


def test_label_is_byte_identical_on_ray_and_loads_the_detector_once_per_actor(tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for k in range(6):
        write_image(images / f"im{k}.png", seed=k)
    (images / "broken.png").write_bytes(b"no image")

    def run(name: str, *engine: str) -> tuple[bytes, dict]:
        out = tmp_path / f"{name}.json"
        summary = tmp_path / f"{name}.summary.json"
        args = ["label", str(images), "--classes", "person,dog", "-o", str(out)]
        detector = ["--detector", "helpers_text:counting_detector", "--box-threshold", "0"]
        model = ["--model", "samrefiner.testing:tiny_sam", "--text-threshold", "0"]
        common = ["--max-detections", "3", "--no-progress", "--summary", str(summary)]
        assert main([*args, *detector, *model, *common, *engine]) == 0
        data = json.loads(summary.read_text())
        data.pop("wall_time_s")
        return out.read_bytes(), data

    shutil.rmtree(helpers_text.LOADS_DIR, ignore_errors=True)
    local = run("local", "--workers", "2")
    local_loads = len(list(helpers_text.LOADS_DIR.iterdir()))
    assert local_loads == 1  # the command loads it once, its loader threads share it
    shutil.rmtree(helpers_text.LOADS_DIR)
    remote = run("ray", "--engine", "ray", "--workers", "1")
    assert remote == local
    assert remote[1]["images_skipped"] == {"image_unreadable": 1}
    assert len(json.loads((tmp_path / "ray.json").read_text())["annotations"]) == 18
    # The driver's check load, then one per load actor: fewer than the 7 images.
    loads = len(list(helpers_text.LOADS_DIR.iterdir()))
    assert 2 <= loads < 7


def test_coco_complete_is_byte_identical_on_ray(tmp_path) -> None:
    from helpers_runner import build_coco

    annotations, images = build_coco(tmp_path)

    def run(name: str, *engine: str) -> tuple[bytes, dict]:
        out = tmp_path / f"{name}.json"
        summary = tmp_path / f"{name}.summary.json"
        args = ["coco", str(annotations), "--images", str(images), "-o", str(out), "--complete"]
        detector = ["--detector", "helpers_text:counting_detector", "--box-threshold", "0"]
        model = ["--model", "samrefiner.testing:tiny_sam", "--text-threshold", "0"]
        common = ["--classes", "person,dog", "--max-detections", "2", "--no-progress"]
        assert main([*args, *detector, *model, *common, "--summary", str(summary), *engine]) == 0
        data = json.loads(summary.read_text())
        data.pop("wall_time_s")
        return out.read_bytes(), data

    local = run("local")
    remote = run("ray", "--engine", "ray", "--workers", "1")
    assert remote == local
    added = [
        a
        for a in json.loads((tmp_path / "ray.json").read_text())["annotations"]
        if a["samrefiner"].get("added")
    ]
    assert added and sum(remote[1]["completion"]["added"].values()) == len(added)


def test_instances_name_classes_is_byte_identical_on_ray(tmp_path) -> None:
    """Maps and class sidecars (bad inputs among the maps) and the summary's counts are
    the local engine's."""
    from helpers_runner import build_instances, tree_bytes

    images, labels = build_instances(tmp_path)

    def run(name: str, *engine: str) -> tuple[dict[str, bytes], dict]:
        out = tmp_path / name
        summary = tmp_path / f"{name}.summary.json"
        args = ["instances", "--images", str(images), "--labels", str(labels), "-o", str(out)]
        naming = ["--name-classes", "person,dog", "--complete", "--max-detections", "2"]
        detector = ["--detector", "helpers_text:counting_detector", "--box-threshold", "0"]
        model = ["--model", "samrefiner.testing:tiny_sam", "--text-threshold", "0"]
        common = ["--no-progress", "--summary", str(summary)]
        assert main([*args, *naming, *detector, *model, *common, *engine]) == 0
        data = json.loads(summary.read_text())
        data.pop("wall_time_s")
        return tree_bytes(out), data

    local = run("local")
    remote = run("ray", "--engine", "ray", "--workers", "1")
    assert remote == local
    sidecars = sorted(k for k in local[0] if k.endswith(".classes.json"))
    # Images the detector could not see (no image, other size, unreadable map) get none.
    assert sidecars == ["a.classes.json", "c.classes.json", "f.classes.json", "seq/b.classes.json"]
    completion = local[1]["completion"]
    assert sum(completion["named"].values()) + completion["unnamed"] == 5  # a: 2, b: 2, c: 1
