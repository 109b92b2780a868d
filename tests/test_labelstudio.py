"""The Label Studio ML backend: brush RLE (against the SDK's), regions, the backend's
per-task work and errors, and the HTTP protocol served in-process.

Request bodies are shaped as Label Studio 1.23 sends them (``ml/api_connector.py``:
``tasks`` serialised by ``TaskSimpleSerializer``, with ``annotations`` and
``predictions``; ``label_config``; ``project``; ``params``)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrefiner import Refiner
from samrefiner.integrations.labelstudio import brush
from samrefiner.integrations.labelstudio.backend import BackendSettings, LabelStudioBackend
from samrefiner.integrations.labelstudio.config import LabelConfig
from samrefiner.integrations.labelstudio.images import ImageSource
from samrefiner.integrations.labelstudio.regions import (
    RegionError,
    parse_region,
    polygon_results,
    polygon_to_mask,
    rectangle_to_box,
)
from samrefiner.io.polygons import mask_to_polygons

H, W = 48, 64
LABELS = '<Label value="cat"/><Label value="dog"/>'
CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image">{LABELS}</BrushLabels>
  <PolygonLabels name="poly" toName="image">{LABELS}</PolygonLabels>
  <RectangleLabels name="box" toName="image">{LABELS}</RectangleLabels>
  <Choices name="quality" toName="image"><Choice value="ok"/></Choices>
</View>"""
POLYGON_ONLY = """<View><Image name="image" value="$image"/>
  <PolygonLabels name="poly" toName="image"><Label value="cat"/></PolygonLabels>
  <RectangleLabels name="box" toName="image"><Label value="cat"/></RectangleLabels></View>"""


# -- brush RLE ------------------------------------------------------------------------


def _sdk():
    pytest.importorskip("label_studio_sdk", reason="needs label-studio-sdk (CI installs it)")
    from label_studio_sdk.converter import brush as sdk_brush

    return sdk_brush


def _random_masks(rng, count=25):
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        kind = rng.integers(3)
        if kind == 0:  # noise: many runs of one
            yield rng.random((h, w)) < rng.random()
        elif kind == 1:  # blobs
            yield np.kron(rng.random((h // 4 + 1, w // 4 + 1)) < 0.5, np.ones((4, 4), bool))[:h, :w]
        else:
            yield np.full((h, w), bool(rng.integers(2)))


def test_rle_round_trip_and_long_runs(rng):
    for mask in _random_masks(rng):
        assert np.array_equal(brush.decode_mask(brush.encode_mask(mask), *mask.shape), mask)
    # A run past 65536 values (one 16-bit block holds at most that many) and a tiny mask.
    for shape in ((300, 300), (1, 1)):
        mask = np.zeros(shape, bool)
        mask[-1, -1] = True
        assert np.array_equal(brush.decode_mask(brush.encode_mask(mask), *shape), mask)
    values = rng.integers(0, 256, 1000)
    assert np.array_equal(brush.decode_values(brush.encode_values(values)), values)


@pytest.mark.extra("labelstudio")
def test_rle_matches_the_sdk_on_random_masks(rng):
    sdk = _sdk()
    for mask in _random_masks(rng):
        ours = brush.encode_mask(mask)
        theirs = sdk.mask2rle(np.where(mask, 255, 0).astype(np.uint8))
        # The same stream; the SDK pads a byte-aligned stream with one more zero byte.
        assert ours == theirs[: len(ours)] and not any(theirs[len(ours) :])
        assert np.array_equal(brush.decode_mask(theirs, *mask.shape), mask)
        alpha = sdk.decode_rle(bytes(ours)).reshape(*mask.shape, 4)[:, :, 3]
        assert np.array_equal(alpha != 0, mask)


@pytest.mark.extra("labelstudio")
@pytest.mark.shared_data
def test_rle_matches_the_sdk_on_shared_masks(shared_data):
    sdk = _sdk()
    from samrefiner.io.images import read_mask

    masks = [read_mask(p) for p in sorted((shared_data / "davis2016").rglob("*.png"))[:2]]
    for path in sorted((shared_data / "labelme_voc2011" / "masks").glob("*.png"))[:1]:
        ids = np.asarray(Image.open(path))
        masks += [ids == v for v in np.unique(ids) if v != 0]  # each object of an id map
    assert len(masks) >= 3
    for mask in masks:
        ours = brush.encode_mask(mask)
        theirs = sdk.mask2rle(np.where(mask, 255, 0).astype(np.uint8))
        assert ours == theirs[: len(ours)]
        assert np.array_equal(brush.decode_mask(theirs, *mask.shape), mask)
        decoded = sdk.decode_rle(bytes(ours)).reshape(*mask.shape, 4)[:, :, 3] != 0
        assert np.array_equal(decoded, mask)


def test_rle_bad_streams():
    good = brush.encode_mask(np.ones((4, 5), bool))
    with pytest.raises(brush.BrushRLEError, match="shorter than its header"):
        brush.decode_values([1, 2, 3])
    with pytest.raises(brush.BrushRLEError, match="ends in the middle"):
        brush.decode_values(good[:-2] if len(good) > 8 else good[:7])
    with pytest.raises(brush.BrushRLEError, match="5 x 4 image needs 80"):
        brush.decode_mask(brush.encode_mask(np.ones((3, 3), bool)), 4, 5)
    with pytest.raises(brush.BrushRLEError, match="more than the 80 expected"):
        brush.decode_mask(brush.encode_mask(np.ones((9, 9), bool)), 4, 5)
    with pytest.raises(brush.BrushRLEError, match="list of bytes"):
        brush.decode_values([0, 300, 1])
    with pytest.raises(ValueError, match="H x W"):
        brush.encode_mask(np.ones(5, bool))


# -- regions --------------------------------------------------------------------------


def test_polygon_percent_coordinates_round_trip(rng):
    mask = np.zeros((H, W), bool)
    mask[5:30, 10:40] = True
    mask[12:16, 20:24] = False  # a hole: a Label Studio polygon cannot hold it
    mask[35:45, 50:60] = True  # a second part
    region = parse_region(_polygon_item("r1", mask), H, W)
    out = polygon_results(region, mask, 0.9, "poly", "polygonlabels", tolerance=0)
    assert [o["id"] for o in out] == ["r1", "r1_2"]
    assert all(o["value"]["polygonlabels"] == ["cat"] for o in out)
    union = np.zeros((H, W), bool)
    for o in out:
        assert o["original_width"] == W and o["original_height"] == H
        union |= polygon_to_mask(o["value"]["points"], H, W)
    filled = mask.copy()
    filled[12:16, 20:24] = True
    assert np.array_equal(union, filled)


def test_rectangle_to_box_and_rotation():
    box = rectangle_to_box({"x": 25.0, "y": 50.0, "width": 50.0, "height": 25.0}, 40, 80)
    assert box.tolist() == [20.0, 20.0, 59.0, 29.0]
    turned = rectangle_to_box(
        {"x": 50.0, "y": 0.0, "width": 25.0, "height": 50.0, "rotation": 90.0}, 40, 80
    )
    # 20 px wide, 20 px high, turned a quarter clockwise about (40, 0): x in [20, 40].
    np.testing.assert_allclose(turned, [20.0, 0.0, 39.0, 19.0], atol=1e-9)


def _brush_item(rid, mask, labels=("cat",), **extra):
    return {
        "id": rid,
        "type": "brushlabels",
        "from_name": "brush",
        "to_name": "image",
        "original_width": mask.shape[1],
        "original_height": mask.shape[0],
        "image_rotation": 0,
        "value": {"format": "rle", "rle": brush.encode_mask(mask), "brushlabels": list(labels)},
        **extra,
    }


def _polygon_item(rid, mask, labels=("cat",)):
    ring = mask_to_polygons(mask).exteriors[0]
    points = (ring * [100.0 / mask.shape[1], 100.0 / mask.shape[0]]).tolist()
    return {
        "id": rid,
        "type": "polygonlabels",
        "from_name": "poly",
        "to_name": "image",
        "original_width": mask.shape[1],
        "original_height": mask.shape[0],
        "value": {"points": points, "closed": True, "polygonlabels": list(labels)},
    }


def _rect_item(rid, xyxy, labels=("dog",)):
    x1, y1, x2, y2 = xyxy  # pixel edges
    return {
        "id": rid,
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {
            "x": 100.0 * x1 / W,
            "y": 100.0 * y1 / H,
            "width": 100.0 * (x2 - x1) / W,
            "height": 100.0 * (y2 - y1) / H,
            "rotation": 0,
            "rectanglelabels": list(labels),
        },
    }


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"id": "a", "type": "brushlabels", "value": {"rle": [1, 2], "brushlabels": []}}, "header"),
        (
            {
                "id": "b",
                "type": "brushlabels",
                "original_width": 10,
                "original_height": 10,
                "value": {"rle": [], "brushlabels": []},
            },
            "drawn on a 10 x 10 image",
        ),
        ({"id": "c", "type": "polygonlabels", "value": {"points": [[1, 2]]}}, "3 or more"),
        ({"id": "d", "type": "polygonlabels", "value": {"points": "x"}}, "3 or more|numbers"),
        (
            {
                "id": "e",
                "type": "rectanglelabels",
                "value": {"x": 1, "y": 2, "width": 0, "height": 5},
            },
            "no area",
        ),
        ({"id": "f", "type": "rectanglelabels", "value": {"x": "1"}}, "must be a number"),
        ({"id": "g", "type": "brushlabels"}, "no value"),
        (
            {
                "id": "h",
                "type": "polygonlabels",
                "value": {"points": [[0, 0], [1, 1], [0, 1]], "polygonlabels": "cat"},
            },
            "list of label names",
        ),
    ],
)
def test_bad_regions(item, match):
    with pytest.raises(RegionError, match=match):
        parse_region(item, H, W)


# -- the backend, without HTTP --------------------------------------------------------


@pytest.fixture(scope="module")
def refiner():
    from samrefiner.testing import tiny_sam

    return Refiner(tiny_sam(seed=0))


@pytest.fixture
def files(tmp_path):
    """A local-files root with two images (and a file that is no image)."""
    rng = np.random.default_rng(7)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    return tmp_path


def _url(name):
    return f"/data/local-files/?d={name}"


def _image(files, name="a.png"):
    return np.asarray(Image.open(files / name).convert("RGB"))


def _backend(refiner, files, **settings):
    return LabelStudioBackend(
        refiner,
        "tiny_sam",
        BackendSettings(**settings),
        ImageSource(local_files_root=str(files)),
        fingerprint="0" * 64,
    )


def _masks():
    a = np.zeros((H, W), bool)
    a[8:30, 6:28] = True
    b = np.zeros((H, W), bool)
    b[20:44, 34:60] = True
    return a, b


def _task(task_id, image, annotations=(), predictions=()):
    """A task as TaskSimpleSerializer writes it."""
    return {
        "id": task_id,
        "data": {"image": image},
        "annotations": [
            {
                "id": 100 + i,
                "completed_by": 1,
                "result": list(result),
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": f"2026-12-0{1 + i}T10:00:00.000000Z",
                "updated_at": f"2026-12-0{1 + i}T10:00:00.000000Z",
                "lead_time": 3.0,
                "task": task_id,
                "project": 1,
            }
            for i, result in enumerate(annotations)
        ],
        "predictions": [
            {
                "id": 200 + i,
                "model_version": "coarse-v1",
                "created_ago": "1 minute",
                "result": list(result),
                "score": 0.5,
                "cluster": None,
                "neighbors": None,
                "mislabeling": 0.0,
                "created_at": f"2026-11-0{1 + i}T10:00:00.000000Z",
                "updated_at": f"2026-11-0{1 + i}T10:00:00.000000Z",
                "model": None,
                "model_run": None,
                "task": task_id,
                "project": 1,
            }
            for i, result in enumerate(predictions)
        ],
        "is_labeled": bool(annotations),
        "project": 1,
        "meta": {},
        "inner_id": task_id,
        "total_annotations": len(annotations),
        "total_predictions": len(predictions),
    }


def _body(*tasks, config=CONFIG):
    return {
        "tasks": list(tasks),
        "project": "1.1764000000",
        "label_config": config,
        "params": {"login": None, "password": None, "context": None},
    }


def _result_mask(item):
    if item["type"] == "brushlabels":
        return brush.decode_mask(
            item["value"]["rle"], item["original_height"], item["original_width"]
        )
    return polygon_to_mask(item["value"]["points"], item["original_height"], item["original_width"])


def test_brush_polygon_rectangle_equal_refiner(refiner, files):
    """Each region type in one task: the refined masks are Refiner.refine's, pixel for
    pixel (polygons exact at tolerance 0), ids, labels and names kept."""
    a, b = _masks()
    items = [_brush_item("br", a), _polygon_item("pg", b), _rect_item("rc", (30, 4, 62, 30))]
    backend = _backend(refiner, files, polygon_tolerance=0.0)
    answer = backend.predict(_body(_task(1, _url("a.png"), predictions=[items])))
    (prediction,) = answer["results"]
    assert prediction["model_version"] == backend.model_version
    image = _image(files)
    box = rectangle_to_box(items[2]["value"], H, W)
    boxes = np.full((3, 4), np.nan)
    boxes[2] = box
    coarse = np.stack([a, b, np.zeros((H, W), bool)])
    expected = refiner.refine(image, coarse, boxes=boxes, from_box=[False, False, True])
    by_id = {}
    for item in prediction["result"]:
        by_id.setdefault(item["id"].split("_")[0], []).append(item)
    for k, rid in enumerate(("br", "pg", "rc")):
        got = np.zeros((H, W), bool)
        for item in by_id.get(rid, []):
            got |= _result_mask(item)
            assert item["to_name"] == "image"
            assert item["score"] == pytest.approx(float(expected.scores[k]))
        want = expected.masks[k]
        if rid != "br" and mask_to_polygons(want).has_holes:
            continue  # written as brush (below)
        assert np.array_equal(got, want), rid
    types = {item["id"]: (item["type"], item["from_name"]) for item in prediction["result"]}
    assert types["br"] == ("brushlabels", "brush")
    assert types["rc"] == ("brushlabels", "brush")  # a rectangle becomes a mask: brush first
    assert prediction["result"][0]["value"]["brushlabels"] == ["cat"]
    assert prediction["score"] == pytest.approx(float(np.nanmean(expected.scores)))


@pytest.mark.parametrize("output", ["brush", "polygon"])
def test_output_all_brush_or_polygon(refiner, files, output):
    a, b = _masks()
    items = [_brush_item("br", a), _polygon_item("pg", b, labels=("dog",))]
    backend = _backend(refiner, files, output=output, polygon_tolerance=0.0)
    (prediction,) = backend.predict(_body(_task(1, _url("a.png"), annotations=[items])))["results"]
    expected = refiner.refine(_image(files), np.stack([a, b]))
    kind = "brushlabels" if output == "brush" else "polygonlabels"
    for k, rid in enumerate(("br", "pg")):
        mine = [i for i in prediction["result"] if i["id"].split("_")[0] == rid]
        assert mine and all(i["type"] in (kind, "brushlabels") for i in mine)
        got = np.logical_or.reduce([_result_mask(i) for i in mine])
        if all(i["type"] == kind for i in mine) or output == "brush":
            assert np.array_equal(got, expected.masks[k])
        assert mine[0]["value"][mine[0]["type"]] == (["cat"] if rid == "br" else ["dog"])


@pytest.mark.parametrize(
    ("source", "picked"),
    [("latest", "annotation"), ("annotations", "annotation"), ("predictions", "prediction")],
)
def test_source_picks_the_labelling(refiner, files, source, picked):
    a, b = _masks()
    task = _task(
        1,
        _url("a.png"),
        annotations=[[_brush_item("ann", a)]],
        predictions=[[_brush_item("pred", b)]],
    )
    backend = _backend(refiner, files, source=source)
    (prediction,) = backend.predict(_body(task))["results"]
    assert {i["id"] for i in prediction["result"]} == {"ann" if picked == "annotation" else "pred"}


def test_own_predictions_and_cancelled_annotations_are_not_refined(refiner, files):
    a, b = _masks()
    backend = _backend(refiner, files)
    task = _task(
        1,
        _url("a.png"),
        annotations=[[_brush_item("ann", a)]],
        predictions=[[_brush_item("pred", b)]],
    )
    task["annotations"][0]["was_cancelled"] = True
    task["predictions"].append(
        {
            **task["predictions"][0],
            "id": 300,
            "model_version": backend.model_version,
            "updated_at": "2027-01-01T00:00:00Z",
            "result": [_brush_item("mine", a)],
        }
    )
    (prediction,) = backend.predict(_body(task))["results"]
    assert {i["id"] for i in prediction["result"]} == {"pred"}


def test_embedding_reused_for_one_image(refiner, files):
    a, b = _masks()
    backend = _backend(refiner, files, embedding_slots=1)
    body = _body(
        _task(1, _url("a.png"), predictions=[[_brush_item("x", a)]]),
        _task(2, _url("a.png"), predictions=[[_brush_item("y", b)]]),
        _task(3, _url("b.png"), predictions=[[_brush_item("z", a)]]),
        _task(4, _url("a.png"), predictions=[[_brush_item("w", a)]]),
    )
    results = backend.predict(body)["results"]
    assert all("result" in r for r in results)
    # a (encode), a (reuse), b (encode, evicts a: one slot), a (encode again).
    assert (backend.encoded, backend.reused) == (3, 1)
    # Reused embeddings give what refining from scratch gives.
    expected = refiner.refine(_image(files), b[None])
    got = brush.decode_mask(results[1]["result"][0]["value"]["rle"], H, W)
    assert np.array_equal(got, expected.masks[0])


def test_bad_tasks_get_their_own_error(refiner, files, tmp_path):
    """Each bad task is an error of its own; the good task between them is refined."""
    from conftest import closed_port

    a, _ = _masks()
    good = _task(1, _url("a.png"), predictions=[[_brush_item("ok", a)]])
    small = np.zeros((10, 10), bool)
    bad = [
        (_task(2, _url("broken.png"), predictions=[[_brush_item("x", a)]]), "cannot read image"),
        (
            _task(
                3, f"http://127.0.0.1:{closed_port()}/x.png", predictions=[[_brush_item("x", a)]]
            ),
            "download failed",
        ),
        (_task(4, _url("a.png"), predictions=[[_brush_item("x", small)]]), "drawn on a 10 x 10"),
        (
            _task(
                5,
                _url("a.png"),
                predictions=[
                    [
                        {
                            **_brush_item("x", a),
                            "value": {
                                "format": "rle",
                                "rle": brush.encode_mask(small),
                                "brushlabels": [],
                            },
                        }
                    ]
                ],
            ),
            "needs 12288",
        ),
        (
            _task(6, _url("a.png"), predictions=[[{**_brush_item("x", a), "from_name": "nope"}]]),
            "'nope' is no control tag",
        ),
        (
            _task(7, _url("a.png"), predictions=[[{**_brush_item("x", a), "to_name": "nope"}]]),
            "no <Image> tag",
        ),
        (_task(8, _url("a.png")), "no annotation or prediction"),
        (_task(9, "s3://bucket/a.png", predictions=[[_brush_item("x", a)]]), "s3://"),
        (
            _task(10, "/data/upload/1/a.png", predictions=[[_brush_item("x", a)]]),
            "LABEL_STUDIO_URL",
        ),
        (_task(11, _url("../../etc/passwd"), predictions=[[_brush_item("x", a)]]), "leaves"),
        (
            _task(12, _url("a.png"), predictions=[[{"type": "choices", "value": {}}]]),
            "no brush, polygon or rectangle",
        ),
        ("not a task", "not a JSON object"),
        (
            _task(
                13,
                _url("a.png"),
                predictions=[
                    [
                        {
                            **_rect_item("r", (0, 0, 10, 10)),
                            "value": {
                                "x": 150.0,
                                "y": 150.0,
                                "width": 10.0,
                                "height": 10.0,
                                "rectanglelabels": [],
                            },
                        }
                    ]
                ],
            ),
            "lies outside",
        ),
    ]
    backend = _backend(refiner, files)
    body = _body(good, *(task for task, _ in bad))
    results = backend.predict(body)["results"]
    assert len(results) == 1 + len(bad)
    assert results[0]["result"] and "error" not in results[0]
    for answer, (_, match) in zip(results[1:], bad, strict=True):
        assert "result" not in answer, answer
        assert match in answer["error"], (match, answer["error"])


def test_rectangle_without_a_mask_tag_is_an_error(refiner, files):
    config = """<View><Image name="image" value="$image"/>
      <RectangleLabels name="box" toName="image"><Label value="dog"/></RectangleLabels></View>"""
    backend = _backend(refiner, files)
    body = _body(
        _task(1, _url("a.png"), predictions=[[_rect_item("r", (2, 2, 30, 30))]]), config=config
    )
    (answer,) = backend.predict(body)["results"]
    assert "no BrushLabels" in answer["error"]


def test_polygon_with_a_hole_written_as_brush_when_the_config_allows(files):
    """A refined mask with a hole: brush when the config has a brush tag, else polygons
    of its outline (the hole filled)."""

    class HoleRefiner:
        model = None

        def __init__(self, mask):
            self.mask = mask

        def encode(self, image):
            return None

        def refine(self, image, masks, **kwargs):
            from samrefiner.types import RefineResult

            return RefineResult(
                masks=self.mask[None],
                scores=np.array([0.8], np.float32),
                prompts=[None],
                status=["refined"],
            )

    ring = np.zeros((H, W), bool)
    ring[5:25, 5:25] = True
    ring[10:15, 10:15] = False
    for config, kind in ((CONFIG, "brushlabels"), (POLYGON_ONLY, "polygonlabels")):
        backend = LabelStudioBackend(
            HoleRefiner(ring),
            "fake",
            BackendSettings(polygon_tolerance=0),
            ImageSource(local_files_root=str(files)),
            fingerprint="1" * 64,
        )
        body = _body(
            _task(1, _url("a.png"), predictions=[[_polygon_item("p", ring)]]), config=config
        )
        (answer,) = backend.predict(body)["results"]
        (item,) = answer["result"]
        assert item["type"] == kind
        if kind == "brushlabels":
            assert np.array_equal(_result_mask(item), ring)
        else:
            assert _result_mask(item)[12, 12]  # no hole in a polygon


def test_whole_request_errors(refiner, files):
    from samrefiner.io.errors import InputError

    backend = _backend(refiner, files, max_tasks=1)
    with pytest.raises(InputError, match="no 'tasks' list"):
        backend.predict({"label_config": CONFIG})
    with pytest.raises(InputError, match="more than the 1 allowed"):
        backend.predict(_body(_task(1, "x"), _task(2, "y")))
    with pytest.raises(InputError, match="not a labelling config"):
        backend.predict(_body(_task(1, "x"), config="<View"))
    config = LabelConfig.parse(CONFIG)
    assert config.images == {"image": "image"}
    assert config.controls["poly"].type == "polygonlabels"


# -- HTTP, in-process -------------------------------------------------------------------


def _client(backend, **kwargs):
    pytest.importorskip("httpx", reason="needs the [labelstudio] extra")
    from starlette.testclient import TestClient

    from samrefiner.integrations.labelstudio.app import create_app

    return TestClient(create_app(backend, **kwargs))


@pytest.mark.extra("labelstudio")
@pytest.mark.parametrize("where", ["annotations", "predictions", "both"])
def test_protocol_predict_equals_refiner(refiner, files, where):
    """Brush, polygon and rectangle tasks posted to the app: the refined masks are
    Refiner.refine's on the same coarse masks."""
    a, b = _masks()
    tasks = []
    for task_id, item in enumerate(
        [_brush_item("br", a), _polygon_item("pg", b), _rect_item("rc", (30, 4, 62, 30))], 1
    ):
        coarse = [[item]]
        older = [[_brush_item("old", b)]]
        if where == "annotations":
            tasks.append(_task(task_id, _url("a.png"), annotations=coarse))
        elif where == "predictions":
            tasks.append(_task(task_id, _url("a.png"), predictions=coarse))
        else:  # the annotation is newer than the prediction
            tasks.append(_task(task_id, _url("a.png"), annotations=coarse, predictions=older))
    backend = _backend(refiner, files, polygon_tolerance=0.0)
    with _client(backend) as client:
        assert client.get("/health").json()["status"] == "UP"
        setup = client.post(
            "/setup",
            json={
                "project": "1.1764000000",
                "schema": CONFIG,
                "hostname": "http://localhost:8080",
                "access_token": "x",
                "extra_params": None,
            },
        )
        assert setup.json() == {"model_version": backend.model_version}
        assert client.get("/versions").json() == {"versions": [backend.model_version]}
        response = client.post("/predict", json=_body(*tasks))
    assert response.status_code == 200
    results = response.json()["results"]
    image = _image(files)
    for task, answer in zip(tasks, results, strict=True):
        item = (
            task["annotations"][0]["result"][0]
            if task["annotations"]
            else task["predictions"][0]["result"][0]
        )
        if item["type"] == "rectanglelabels":
            expected = refiner.refine(image, boxes=rectangle_to_box(item["value"], H, W)[None])
        else:
            expected = refiner.refine(image, parse_region(item, H, W).mask[None])
        got = np.logical_or.reduce([_result_mask(i) for i in answer["result"]])
        if item["type"] == "polygonlabels" and mask_to_polygons(expected.masks[0]).has_holes:
            assert answer["result"][0]["type"] == "brushlabels"
        assert np.array_equal(got, expected.masks[0]), item["type"]
        assert {i["id"].split("_")[0] for i in answer["result"]} == {item["id"]}


CAPTURED = Path(__file__).resolve().parent / "data" / "labelstudio" / "predict_request.json"


@pytest.mark.extra("labelstudio")
@pytest.mark.shared_data
def test_captured_label_studio_request(refiner, shared_data):
    """The ``/predict`` body Label Studio 1.23.2 posted (tests/data/labelstudio/capture.py):
    brush, polygon and rectangle regions held by an annotation, a prediction or both (the
    annotation newer), over two shared photographs. Each task's refined masks are
    Refiner.refine's on the coarse masks of its newest labelling."""
    from samrefiner.config import RefineConfig
    from samrefiner.io.images import read_image

    refiner = refiner.with_config(RefineConfig(iterations=1))  # 15 photographs: keep it short
    body = json.loads(CAPTURED.read_text(encoding="utf-8"))
    backend = LabelStudioBackend(
        refiner,
        "tiny_sam",
        BackendSettings(polygon_tolerance=0.0),
        ImageSource(local_files_root=str(shared_data)),
        fingerprint="0" * 64,
    )
    with _client(backend) as client:
        response = client.post("/predict", json=body)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(body["tasks"])
    cases, images = set(), {}
    for task, answer in zip(body["tasks"], results, strict=True):
        where = task["data"]["case"].split("/")[1]
        held = task["annotations"] if where in ("annotations", "both") else task["predictions"]
        (item,) = held[-1]["result"]
        name = task["data"]["image"].split("?d=", 1)[1]
        if name not in images:
            image = read_image(shared_data / name)
            images[name] = image, refiner.encode(image)
        image, embedding = images[name]
        region = parse_region(item, *image.shape[:2])
        if region.box is not None:
            expected = refiner.refine(image, boxes=region.box[None], embedding=embedding)
        else:
            expected = refiner.refine(image, region.mask[None], embedding=embedding)
        mine = [i for i in answer["result"] if i["id"].split("_")[0] == item["id"]]
        assert mine and len(mine) == len(answer["result"]), (item["id"], answer)
        assert np.array_equal(np.logical_or.reduce([_result_mask(i) for i in mine]),
                              expected.masks[0]), task["data"]["case"]  # fmt: skip
        assert answer["score"] == pytest.approx(float(expected.scores[0]))
        cases.add((item["type"], where))
    kinds = ("brushlabels", "polygonlabels", "rectanglelabels")
    assert cases == {(k, w) for k in kinds for w in ("annotations", "predictions", "both")}


@pytest.mark.extra("labelstudio")
def test_protocol_errors_auth_and_limits(refiner, files, caplog):
    backend = _backend(refiner, files)
    with _client(backend, api_key="s3cret", max_body_bytes=2000) as client:
        assert client.get("/health").status_code == 401
        basic = base64.b64encode(b"anyone:s3cret").decode()
        wrong = base64.b64encode(b"anyone:nope").decode()
        assert client.get("/health", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
        ok = {"Authorization": f"Basic {basic}"}
        assert client.get("/health", headers=ok).json()["model_version"] == backend.model_version
        assert client.get("/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        big = client.post("/predict", headers=ok, content=b"{" + b" " * 3000 + b"}")
        assert big.status_code == 413 and "limit" in big.json()["error"]
        assert "/predict: request body over the 2000-byte limit" in caplog.text
        junk = client.post("/predict", headers=ok, content=b"not json")
        assert junk.status_code == 400 and "not JSON" in junk.json()["error"]
        no_tasks = client.post("/predict", headers=ok, json={"label_config": CONFIG})
        assert no_tasks.status_code == 400 and "tasks" in no_tasks.json()["error"]
        hook = client.post(
            "/webhook", headers=ok, json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}
        )
        assert hook.status_code == 201 and hook.json()["status"] == "ok"
        other = client.post("/webhook", headers=ok, json={"action": "PROJECT_UPDATED"})
        assert other.json()["status"] == "Unknown event"


@pytest.mark.extra("labelstudio")
def test_health_answers_while_a_task_runs(files):
    """A slow task holds the model; /health answers meanwhile (served by uvicorn)."""
    import urllib.request

    uvicorn = pytest.importorskip("uvicorn", reason="needs the [labelstudio] extra")
    from conftest import closed_port
    from samrefiner.integrations.labelstudio.app import create_app

    started, release = threading.Event(), threading.Event()

    class SlowRefiner:
        model = None

        def encode(self, image):
            started.set()
            release.wait(30)
            return None

        def refine(self, image, masks, **kwargs):
            from samrefiner.types import RefineResult

            return RefineResult(
                masks=np.asarray(masks),
                scores=np.ones(len(masks), np.float32),
                prompts=[None] * len(masks),
                status=["refined"] * len(masks),
            )

    backend = LabelStudioBackend(
        SlowRefiner(),
        "slow",
        BackendSettings(),
        ImageSource(local_files_root=str(files)),
        fingerprint="2" * 64,
    )
    port = closed_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(backend), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        a, _ = _masks()
        body = json.dumps(_body(_task(1, _url("a.png"), predictions=[[_brush_item("x", a)]])))
        answer: dict = {}

        def post():
            request = urllib.request.Request(
                f"{base}/predict", data=body.encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                answer.update(json.load(response))

        poster = threading.Thread(target=post)
        poster.start()
        assert started.wait(30)
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            assert json.load(response)["status"] == "UP"
        assert time.perf_counter() - t0 < 2.0
        assert poster.is_alive()  # the task is still running
        release.set()
        poster.join(30)
        assert np.array_equal(
            brush.decode_mask(answer["results"][0]["result"][0]["value"]["rle"], H, W), a
        )
    finally:
        release.set()
        server.should_exit = True
        thread.join(10)


def test_image_source_downloads_with_the_token(files):
    """An uploaded-file URL is fetched from LABEL_STUDIO_URL with the access token."""
    import http.server

    seen = {}
    payload = (files / "a.png").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen["path"], seen["auth"] = self.path, self.headers.get("Authorization")
            if self.path.endswith("missing.png"):
                self.send_error(404)
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        source = ImageSource(label_studio_url=url, api_key="abc123")
        image = source.load("/data/upload/1/a.png")
        assert np.array_equal(image, _image(files))
        assert seen == {"path": "/data/upload/1/a.png", "auth": "Token abc123"}
        jwt = ImageSource(label_studio_url=url, api_key="x.y.z")
        jwt.load(f"{url}/data/upload/1/a.png")
        assert seen["auth"] == "Bearer x.y.z"
        from samrefiner.integrations.labelstudio.images import ImageSourceError

        with pytest.raises(ImageSourceError, match="HTTP 404"):
            source.load("/data/upload/1/missing.png")
        with pytest.raises(ImageSourceError, match="larger than 100 bytes"):
            ImageSource(label_studio_url=url, max_bytes=100).load("/data/upload/1/a.png")
    finally:
        server.shutdown()


# -- the command --------------------------------------------------------------------------


@pytest.mark.extra("labelstudio")
def test_command_builds_the_backend_and_serves_it(monkeypatch, files, caplog, capsys):
    """``samrefiner serve label-studio``: the options reach the backend and the server
    (uvicorn.run stubbed); another address than localhost without a key is warned about."""
    import uvicorn

    from samrefiner.cli import main

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    argv = ["serve", "label-studio", "--model", "samrefiner.testing:tiny_sam", "--device", "cpu",
            "--port", "9911", "--host", "0.0.0.0", "--source", "predictions",
            "--output", "polygon", "--polygon-tolerance", "0", "--embedding-slots", "2",
            "--local-files-root", str(files)]  # fmt: skip
    assert main(argv) == 0
    assert (served["host"], served["port"]) == ("0.0.0.0", 9911)
    assert "without --api-key" in caplog.text
    out = capsys.readouterr().out
    assert "samrefiner-" in out and "samrefiner.testing:tiny_sam" in out
    a, _ = _masks()
    from starlette.testclient import TestClient

    with TestClient(served["app"]) as client:
        body = _body(_task(1, _url("a.png"), predictions=[[_brush_item("x", a)]]))
        (answer,) = client.post("/predict", json=body).json()["results"]
    assert {item["type"] for item in answer["result"]} <= {"polygonlabels", "brushlabels"}


@pytest.mark.extra("labelstudio")
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-request-mb", "0"], "--max-request-mb must be > 0"),
        (["--max-image-mb", "-1"], "--max-image-mb must be > 0"),
        (["--label-studio-url", "localhost:8080"], "must start with http"),
        (["--polygon-tolerance", "-1"], "--polygon-tolerance must be >= 0"),
    ],
)
def test_command_rejects_bad_options(extra, message, capsys):
    from samrefiner.cli import main

    argv = ["serve", "label-studio", "--model", "samrefiner.testing:tiny_sam", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.extra("labelstudio")
@pytest.mark.shared_data
def test_latency_benchmark_runs(shared_data):
    """benchmarks/bench_labelstudio.py prints its cold and warm rows (tiny model)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_labelstudio.py"
    argv = [sys.executable, str(script), "--data", str(shared_data), "--images", "1",
            "--model", "samrefiner.testing:tiny_sam", "--iterations", "1"]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600).stdout
    assert "images encoded 1, embeddings reused 1" in out
    rows = [line for line in out.splitlines() if line.startswith(("| cold", "| warm"))]
    assert len(rows) == 2 and all(float(row.split("|")[2]) > 0 for row in rows)
