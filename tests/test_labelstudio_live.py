"""A real Label Studio (the ``label-studio`` package from PyPI, SQLite, on localhost,
offline) asks ``samrefiner serve label-studio`` for predictions of tasks holding coarse
brush, polygon and rectangle predictions over the shared images; the predictions it
stores, read back through its API, are :meth:`Refiner.refine`'s pixel for pixel.

Label Studio lives in a virtual environment of its own (its pins clash with ours):
``SAMREFINER_LABEL_STUDIO`` names its ``label-studio`` executable; the test skips
without it. ``.ci/run`` creates that environment and runs this test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, closed_port
from samrefiner import Refiner
from samrefiner.integrations.labelstudio import brush
from samrefiner.integrations.labelstudio.regions import parse_region, polygon_to_mask
from samrefiner.io.images import read_image, read_mask
from samrefiner.io.polygons import mask_to_polygons
from samrefiner.testing import tiny_sam

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio, pytest.mark.extra("labelstudio")]

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="object"/></BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="object"/></PolygonLabels>
  <RectangleLabels name="box" toName="image"><Label value="object"/></RectangleLabels>
</View>"""
TOKEN = "samrefiner" + secrets.token_hex(15)
MODEL = "samrefiner.testing:tiny_sam"
STARTUP_S = 300  # a fresh SQLite database is migrated on the first start


def _executable() -> Path:
    path = os.environ.get("SAMREFINER_LABEL_STUDIO")
    if not path:
        pytest.skip("SAMREFINER_LABEL_STUDIO (a label-studio executable) is not set")
    if not os.access(path, os.X_OK):
        pytest.skip(f"SAMREFINER_LABEL_STUDIO={path} is not an executable")
    return Path(path)


def _call(method, url, body=None, headers=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url}: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
    return json.loads(text) if text else None


def _wait(url, process, log, headers=None, seconds=STARTUP_S):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the server exited:\n{log.read_text()[-4000:]}")
        try:
            request = urllib.request.Request(url, headers=dict(headers or {}))
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer in {seconds} s:\n{log.read_text()[-4000:]}")


def _stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


@pytest.fixture(scope="module")
def images(shared_data):
    """Two shared photographs and one object mask of each (davis2016)."""
    pairs = []
    for name in ("bear_00000", "blackswan_00000"):
        found = sorted((shared_data / "davis2016").rglob(f"{name}.*"))
        image = next((p for p in found if p.suffix.lower() in (".jpg", ".jpeg")), None)
        mask = next((p for p in found if p.suffix.lower() == ".png"), None)
        if image is None or mask is None:
            pytest.skip(f"davis2016/{name} not in the shared data")
        pairs.append((image, mask))
    return shared_data, pairs


@contextlib.contextmanager
def running_label_studio(executable: Path, home: Path, root: Path) -> Iterator[str]:
    """A Label Studio on a free localhost port, its data in ``home``, its local files
    rooted at ``root``; yields its URL (the API takes ``Token`` :data:`TOKEN`)."""
    port = closed_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(root),
        "ML_BLOCK_LOCAL_IP": "false",  # the backend runs on this machine
        "SSRF_PROTECTION_ENABLED": "false",
        "LATEST_VERSION_CHECK": "false",  # offline
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    log = home / "label-studio.log"
    command = [
        str(executable), "start", "--no-browser", "--port", str(port),
        "--data-dir", str(home / "data"), "--username", "test@example.com",
        "--password", "samrefiner-test", "--user-token", TOKEN, "--enable-legacy-api-token",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=home, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/health", process, log)
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory, images):
    """A Label Studio on a free localhost port, its local files rooted at the shared data."""
    executable = _executable()
    root, _ = images
    with running_label_studio(executable, tmp_path_factory.mktemp("label-studio"), root) as url:
        yield url


@pytest.fixture(scope="module")
def backend(tmp_path_factory, images):
    """``samrefiner serve label-studio`` with the tiny random model, behind an API key."""
    root, _ = images
    home = tmp_path_factory.mktemp("backend")
    port = closed_port()
    key = secrets.token_hex(12)
    log = home / "backend.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    command = [
        sys.executable, "-m", "samrefiner", "serve", "label-studio", "--model", MODEL,
        "--port", str(port), "--local-files-root", str(root), "--polygon-tolerance", "0",
        "--api-key", key, "--device", "cpu",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL)  # fmt: skip
    auth = {"Authorization": "Basic " + base64.b64encode(f"ls:{key}".encode()).decode()}
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/health", process, log, headers=auth, seconds=120)
        yield url, key, auth, log
    finally:
        _stop(process)


def _coarse(images):
    """Per image: the tasks' coarse prediction results (brush; polygon; rectangle and
    polygon), built from the ground truth made coarse."""
    import cv2

    root, pairs = images
    tasks = []
    for k, (image_path, mask_path) in enumerate(pairs):
        truth = read_mask(mask_path)
        height, width = truth.shape
        kernel = np.ones((15, 15), np.uint8)
        grown = cv2.dilate(truth.astype(np.uint8), kernel).astype(bool)
        shrunk = cv2.erode(truth.astype(np.uint8), kernel).astype(bool)
        base = {"to_name": "image", "original_width": width, "original_height": height}
        brush_region = {
            **base, "id": f"b{k}", "type": "brushlabels", "from_name": "brush",
            "value": {"format": "rle", "rle": brush.encode_mask(grown), "brushlabels": ["object"]},
        }  # fmt: skip
        ring = max(mask_to_polygons(shrunk, tolerance=6.0).exteriors, key=len)
        polygon = {
            **base, "id": f"p{k}", "type": "polygonlabels", "from_name": "poly",
            "value": {"points": (ring * [100.0 / width, 100.0 / height]).tolist(),
                      "closed": True, "polygonlabels": ["object"]},
        }  # fmt: skip
        ys, xs = np.nonzero(truth)
        rectangle = {
            **base, "id": f"r{k}", "type": "rectanglelabels", "from_name": "box",
            "value": {"x": 100.0 * (xs.min() - 5) / width, "y": 100.0 * (ys.min() - 5) / height,
                      "width": 100.0 * (xs.max() - xs.min() + 11) / width,
                      "height": 100.0 * (ys.max() - ys.min() + 11) / height,
                      "rotation": 0, "rectanglelabels": ["object"]},
        }  # fmt: skip
        url = f"/data/local-files/?d={image_path.relative_to(root).as_posix()}"
        for results in ([brush_region], [polygon], [rectangle, {**polygon, "id": f"q{k}"}]):
            tasks.append({"data": {"image": url},
                          "predictions": [{"model_version": "coarse", "score": 0.5,
                                           "result": results}]})  # fmt: skip
    return tasks


def _mask_of(item):
    height, width = item["original_height"], item["original_width"]
    if item["type"] == "brushlabels":
        return brush.decode_mask(item["value"]["rle"], height, width)
    return polygon_to_mask(item["value"]["points"], height, width)


def test_label_studio_stores_refined_predictions(label_studio, backend, images):
    backend_url, key, auth, backend_log = backend
    headers = {"Authorization": f"Token {TOKEN}"}
    api = label_studio + "/api"
    project = _call("POST", f"{api}/projects", {"title": "samrefiner", "label_config": CONFIG},
                    headers)  # fmt: skip
    pid = project["id"]
    tasks = _coarse(images)
    _call("POST", f"{api}/projects/{pid}/import", tasks, headers)
    connection = _call("POST", f"{api}/ml", {
        "url": backend_url, "project": pid, "title": "samrefiner", "is_interactive": False,
        "auth_method": "BASIC_AUTH", "basic_auth_user": "ls", "basic_auth_pass": key,
    }, headers)  # fmt: skip
    assert connection["state"] == "CO", connection  # connected: /health and /setup answered
    version = _call("GET", f"{backend_url}/health", headers=auth)["model_version"]
    # The data manager's "Retrieve predictions" action, for every task of the project.
    started = time.perf_counter()
    _call("POST", f"{api}/dm/actions?id=retrieve_tasks_predictions&project={pid}",
          {"selectedItems": {"all": True, "excluded": []}}, headers)  # fmt: skip
    elapsed = time.perf_counter() - started
    stored = _call("GET", f"{api}/tasks?project={pid}&page_size=100&fields=all", headers=headers)
    stored = stored["tasks"] if isinstance(stored, dict) else stored
    assert len(stored) == len(tasks)
    refiner = Refiner(tiny_sam(seed=0))
    root, _ = images
    checked = 0
    for task in stored:
        predictions = _call("GET", f"{api}/predictions?task={task['id']}", headers=headers)
        ours = [p for p in predictions if p["model_version"] == version]
        coarse = [p for p in predictions if p["model_version"] == "coarse"]
        assert len(ours) == 1 and len(coarse) == 1, (task["id"], backend_log.read_text()[-3000:])
        relative = task["data"]["image"].split("?d=", 1)[1]
        image = read_image(root / relative)
        regions = [parse_region(item, *image.shape[:2]) for item in coarse[0]["result"]]
        flags = np.array([r.box is not None for r in regions])
        masks = np.stack([r.mask if r.mask is not None else np.zeros(image.shape[:2], bool)
                          for r in regions])  # fmt: skip
        boxes = np.stack([r.box if r.box is not None else np.full(4, np.nan) for r in regions])
        expected = refiner.refine(image, masks, boxes=boxes, from_box=flags)
        for k, region in enumerate(regions):
            items = [i for i in ours[0]["result"] if i["id"].split("_")[0] == region.id]
            assert items, (region.id, ours[0]["result"])
            got = np.logical_or.reduce([_mask_of(i) for i in items])
            assert np.array_equal(got, expected.masks[k]), region.id
            assert all(i["value"][i["type"]] == ["object"] for i in items)
            assert items[0]["score"] == pytest.approx(float(expected.scores[k]))
            checked += 1
        assert ours[0]["score"] == pytest.approx(float(np.nanmean(expected.scores)))
    assert checked == 8
    print(f"Label Studio retrieved {len(tasks)} refined predictions in {elapsed:.2f} s")
