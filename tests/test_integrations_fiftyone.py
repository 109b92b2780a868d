"""samrefiner.integrations.fiftyone: labels in memory everywhere, datasets where
FiftyOne's database can start."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import import_extra

fol = import_extra("fiftyone", "fiftyone.core.labels")

import fiftyone as fo  # noqa: E402

from helpers_integrations import coarse_scene, voc_paths  # noqa: E402
from samrefiner import RefineConfig, Refiner  # noqa: E402
from samrefiner.integrations.fiftyone import (  # noqa: E402
    crop_to_box,
    expand_masks,
    refine_field,
    refine_labels,
    refine_sample,
)
from samrefiner.io.images import read_image  # noqa: E402
from samrefiner.io.label_maps import read_label_map  # noqa: E402
from samrefiner.split_merge import merge_back, split_label_map  # noqa: E402


@pytest.fixture(scope="module")
def refiner(tiny_backend) -> Refiner:
    return Refiner(tiny_backend, RefineConfig(iterations=2))


@pytest.fixture(scope="module")
def scene(shared_data):
    """RGB image and coarse masks (the last one empty)."""
    return coarse_scene(shared_data)


def _frame_size(image: np.ndarray) -> tuple[int, int]:
    return image.shape[1], image.shape[0]


def _detections(coarse: np.ndarray) -> fol.Detections:
    """One Detection per coarse mask, with every kind of field a user may set."""
    detections = []
    for k, mask in enumerate(coarse):
        cropped = crop_to_box(mask)
        box, crop = cropped if cropped else ([0.1, 0.2, 0.05, 0.04], np.zeros((3, 4), bool))
        detections.append(
            fol.Detection(
                label=f"class{k}",
                bounding_box=box,
                mask=crop,
                confidence=0.9 - 0.1 * k,
                index=k,
                tags=[f"t{k}"],
                instance=fol.Instance(),
                iscrowd=False,
                source="coarse",
                attributes={"legacy": fol.NumericAttribute(value=k)},
            )
        )
    return fol.Detections(detections=detections, note="kept")


def _assert_copied(new, old, kept=("label", "confidence", "index", "tags", "id")) -> None:
    for name in kept:
        assert new[name] == old[name], name
    assert new.instance_id == old.instance_id
    for name in ("iscrowd", "source", "attributes"):
        if old.has_field(name):
            assert new[name] == old[name], name


@pytest.mark.parametrize("size", [(854, 480), (1920, 1080), (500, 338), (7, 3)])
def test_crop_to_box_is_pasted_back_exactly_by_fiftyone(size) -> None:
    width, height = size
    rng = np.random.default_rng(width)
    for _ in range(50):
        x1, x2 = sorted(rng.integers(0, width, 2))
        y1, y2 = sorted(rng.integers(0, height, 2))
        mask = np.zeros((height, width), dtype=bool)
        mask[y1 : y2 + 1, x1 : x2 + 1] = rng.random((y2 - y1 + 1, x2 - x1 + 1)) < 0.7
        mask[y1, x1] = mask[y2, x2] = True
        box, crop = crop_to_box(mask)
        pasted = fol.Detection(bounding_box=box, mask=crop).to_segmentation(
            frame_size=size, target=1
        )
        np.testing.assert_array_equal(pasted.mask.astype(bool), mask)
    assert crop_to_box(np.zeros((height, width), dtype=bool)) is None


def test_fiftyones_own_crop_is_not_exact_so_ours_is_needed() -> None:
    # Keeps the test above honest: plain x1 / width boxes paste a column short here.
    mask = np.zeros((480, 854), dtype=bool)
    mask[10:40, 4:25] = True
    naive = fol.Detection.from_mask(mask)
    pasted = naive.to_segmentation(frame_size=(854, 480), target=1).mask.astype(bool)
    assert not np.array_equal(pasted, mask)
    box, crop = crop_to_box(mask)
    exact = fol.Detection(bounding_box=box, mask=crop).to_segmentation(frame_size=(854, 480))
    np.testing.assert_array_equal(exact.mask > 0, mask)


def test_expand_masks_pastes_detections_and_fills_polylines() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 10:30] = True
    box, crop = crop_to_box(mask)
    detections = fol.Detections(
        detections=[
            fol.Detection(bounding_box=box, mask=crop),
            fol.Detection(bounding_box=[0.1, 0.1, 0.5, 0.5]),  # no mask: empty
        ]
    )
    masks = expand_masks(detections, (40, 30))
    np.testing.assert_array_equal(masks[0], mask)
    assert masks.shape == (2, 30, 40) and not masks[1].any()

    # An outline-only closed polygon is a region: it is filled.
    square = [[(10 / 40, 5 / 30), (30 / 40, 5 / 30), (30 / 40, 20 / 30), (10 / 40, 20 / 30)]]
    polylines = fol.Polylines(polylines=[fol.Polyline(points=square, closed=True)])
    filled = expand_masks(polylines, (40, 30))[0]
    assert filled[12, 20] and filled.sum() > 0.9 * mask.sum()
    with pytest.raises(TypeError, match=r"Detections or fo\.Polylines"):
        expand_masks(fol.Classifications(), (40, 30))
    with pytest.raises(ValueError, match="bounding_box"):
        expand_masks(fol.Detections(detections=[fol.Detection(label="3d")]), (40, 30))


@pytest.mark.shared_data
def test_detections_round_trip_equals_the_refiner(refiner, scene) -> None:
    image, coarse = scene
    given = _detections(coarse)
    before = given.to_dict()
    # FiftyOne's paste of the input is what the refiner is given.
    np.testing.assert_array_equal(expand_masks(given, _frame_size(image)), coarse)
    expected = refiner.refine(image, coarse)
    assert expected.status[-1] == "empty" and "refined" in expected.status

    out = refine_labels(refiner, image, given)

    assert isinstance(out, fol.Detections) and out.note == "kept"
    np.testing.assert_array_equal(expand_masks(out, _frame_size(image)), expected.masks)
    for new, old, score, status in zip(
        out.detections, given.detections, expected.scores, expected.status, strict=True
    ):
        _assert_copied(new, old)
        assert new.samrefiner_status == status
        assert new.samrefiner_iou == (None if np.isnan(score) else float(score))
        if status == "empty":
            assert new.bounding_box == old.bounding_box
            np.testing.assert_array_equal(new.mask, old.mask)
    assert given.to_dict() == before  # the input is not modified


@pytest.mark.shared_data
def test_refined_masks_are_stored_cropped_to_their_tight_box(refiner, scene) -> None:
    image, coarse = scene
    out = refine_labels(refiner, image, _detections(coarse[:1]))
    crop = out.detections[0].mask
    assert crop.dtype == bool
    assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()


@pytest.mark.shared_data
def test_detections_without_masks_are_refined_from_their_boxes(refiner, scene) -> None:
    image, coarse = scene
    given = _detections(coarse[:-1])
    for detection in given.detections:
        detection.mask = None
    height, width = image.shape[:2]
    boxes = []
    for detection in given.detections:
        x, y, w, h = detection.bounding_box
        boxes.append(
            [int(width * x), int(height * y), int(width * (x + w)) - 1, int(height * (y + h)) - 1]
        )
    expected = refiner.refine(image, boxes=np.array(boxes, dtype=np.float32))
    out = refine_labels(refiner, image, given)
    np.testing.assert_array_equal(expand_masks(out, _frame_size(image)), expected.masks)
    assert [d.samrefiner_status for d in out.detections] == expected.status


def test_empty_labels_give_empty_labels(refiner) -> None:
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    assert refine_labels(refiner, image, fol.Detections()).detections == []
    assert refine_labels(refiner, image, fol.Polylines(polylines=[])).polylines == []
    segmentation = fol.Segmentation(mask=np.zeros((30, 40), dtype=np.uint8))
    out = refine_labels(refiner, image, segmentation)
    np.testing.assert_array_equal(out.mask, segmentation.mask)
    assert out.samrefiner_classes == out.samrefiner_iou == out.samrefiner_status == []
    assert out.id == segmentation.id


@pytest.mark.shared_data
def test_polylines_are_refined_and_traced_back(refiner, scene) -> None:
    image, coarse = scene
    polylines = [
        fol.Polyline.from_mask(mask, label=f"c{k}", tolerance=1, iscrowd=False)
        for k, mask in enumerate(coarse[:-1])
    ]
    line = fol.Polyline(points=[[(0.1, 0.1), (0.4, 0.3)]], label="wire")
    given = fol.Polylines(polylines=[*polylines, line])
    regions = expand_masks(fol.Polylines(polylines=polylines), _frame_size(image))
    expected = refiner.refine(image, regions)

    out = refine_labels(refiner, image, given, tolerance=1)

    for k, (new, old) in enumerate(zip(out.polylines[:-1], polylines, strict=True)):
        _assert_copied(new, old, kept=("label", "id", "filled"))
        assert new.closed
        assert new.samrefiner_status == expected.status[k]
        assert new.samrefiner_iou == float(expected.scores[k])
        # The refined mask, traced by FiftyOne's own Polyline.from_mask.
        traced = fol.Polyline.from_mask(expected.masks[k], tolerance=1)
        assert new.points == traced.points
    assert out.polylines[-1].points == line.points
    assert out.polylines[-1].samrefiner_status == "open_polyline"
    assert out.polylines[-1].id == line.id


@pytest.mark.shared_data
def test_semantic_segmentation_is_split_refined_and_merged(refiner, shared_data) -> None:
    image_path, _, classes_path = voc_paths(shared_data)
    image = read_image(image_path)
    labels = read_label_map(classes_path).labels
    given = fol.Segmentation(mask=labels.copy(), tags=["voc"])
    split = split_label_map(labels, ignore=255)
    assert len(split) >= 2
    expected = refiner.refine(image, split.masks)

    out = refine_labels(refiner, image, given, ignore=255)

    merged = merge_back(labels, split.class_ids, expected.masks, expected.scores, ignore=255)
    np.testing.assert_array_equal(out.mask, merged)
    assert not np.array_equal(out.mask, labels)
    assert out.id == given.id and out.tags == ["voc"]
    assert out.samrefiner_classes == split.class_ids
    assert out.samrefiner_status == expected.status
    assert out.samrefiner_iou == [float(s) for s in expected.scores]
    np.testing.assert_array_equal(given.mask, labels)
    with pytest.raises(ValueError, match="is 10x10"):
        refine_labels(refiner, image, fol.Segmentation(mask=np.zeros((10, 10), np.uint8)))
    with pytest.raises(ValueError, match="RGB-coded"):
        refine_labels(refiner, image, fol.Segmentation(mask=np.zeros((*labels.shape, 3))))


@pytest.mark.shared_data
def test_refine_sample_reads_the_image_and_writes_the_output_field(
    refiner, scene, shared_data
) -> None:
    image, coarse = scene
    sample = fo.Sample(filepath=str(voc_paths(shared_data)[0]), coarse=_detections(coarse))
    before = sample.coarse.to_dict()
    expected = refine_labels(refiner, image, sample.coarse)

    refine_sample(sample, refiner, label_field="coarse", output_field="refined")

    assert sample.coarse.to_dict() == before
    np.testing.assert_array_equal(
        expand_masks(sample.refined, _frame_size(image)),
        expand_masks(expected, _frame_size(image)),
    )
    sample["nothing"] = None
    refine_sample(sample, refiner, label_field="nothing", output_field="out")
    assert sample.out is None
    with pytest.raises(KeyError, match="no field 'missing'"):
        refine_sample(sample, refiner, label_field="missing")
    sample["flag"] = fol.Classification(label="x")
    with pytest.raises(TypeError, match="holds Classification"):
        refine_sample(sample, refiner, label_field="flag")


class _Collection:
    """The part of a FiftyOne collection refine_field uses, over in-memory samples (the
    database-backed tests below skip where no mongod can start)."""

    def __init__(self, samples, media_type="image"):
        self.samples, self.media_type, self.calls = samples, media_type, []

    def iter_samples(self, progress=False, autosave=False, batch_size=None):
        self.calls.append({"progress": progress, "autosave": autosave})
        yield from self.samples


@pytest.mark.shared_data
def test_refine_field_refines_each_sample_with_autosave(refiner, scene, shared_data) -> None:
    image, coarse = scene
    path = str(voc_paths(shared_data)[0])
    samples = [fo.Sample(filepath=path, coarse=_detections(coarse[:2])) for _ in range(2)]
    samples[1]["coarse"] = None
    collection = _Collection(samples)
    expected = refine_labels(refiner, image, samples[0].coarse)

    refine_field(collection, refiner, label_field="coarse", output_field="refined")

    assert collection.calls == [{"progress": True, "autosave": True}]
    np.testing.assert_array_equal(
        expand_masks(samples[0].refined, _frame_size(image)),
        expand_masks(expected, _frame_size(image)),
    )
    assert samples[1].refined is None
    with pytest.raises(ValueError, match="image collection, got 'video'"):
        refine_field(_Collection([], "video"), refiner, label_field="coarse")


@pytest.fixture
def database(fiftyone_database):
    """An empty dataset in the tests' private FiftyOne database (conftest.py)."""
    dataset = fo.Dataset()
    yield dataset
    dataset.delete()


@pytest.mark.shared_data
def test_refine_field_refines_and_saves_every_sample(refiner, scene, shared_data, database):
    image, coarse = scene
    path = str(voc_paths(shared_data)[0])
    database.add_samples(
        [fo.Sample(filepath=path, coarse=_detections(coarse)), fo.Sample(filepath=path)]
    )
    expected = refine_labels(refiner, image, database.first().coarse)

    refine_field(database, refiner, label_field="coarse", output_field="refined", progress=False)

    database.reload()
    first, second = list(database)
    np.testing.assert_array_equal(
        expand_masks(first.refined, _frame_size(image)),
        expand_masks(expected, _frame_size(image)),
    )
    assert [d.id for d in first.refined.detections] == [d.id for d in first.coarse.detections]
    assert second.refined is None

    refine_field(database, refiner, label_field="coarse", progress=False)
    database.reload()
    assert [d.samrefiner_status for d in database.first().coarse.detections] == [
        d.samrefiner_status for d in expected.detections
    ]


@pytest.mark.shared_data
def test_refine_field_on_a_filtered_view_refines_only_the_visible_labels(
    refiner, scene, shared_data, database
):
    image, coarse = scene
    given = _detections(coarse[:3])  # confidences 0.9, 0.8, 0.7
    database.add_sample(fo.Sample(filepath=str(voc_paths(shared_data)[0]), coarse=given))
    view = database.filter_labels("coarse", fo.ViewField("confidence") > 0.75)
    expected = refine_labels(refiner, image, fol.Detections(detections=given.detections[:2]))

    refine_field(view, refiner, label_field="coarse", progress=False)

    database.reload()
    saved = database.first().coarse.detections
    assert [d.id for d in saved] == [d.id for d in given.detections]
    for new, old in zip(saved[:2], expected.detections, strict=True):
        assert new.samrefiner_status == old.samrefiner_status
        assert new.bounding_box == old.bounding_box
        np.testing.assert_array_equal(new.mask, old.mask)
    hidden = saved[2]
    assert not hidden.has_field("samrefiner_status")
    assert hidden.bounding_box == given.detections[2].bounding_box
    np.testing.assert_array_equal(hidden.mask, given.detections[2].mask)


def test_fiftyone_uses_the_tests_own_mongod(fiftyone_database, database) -> None:
    import fiftyone.core.odm as foo

    assert fo.config.database_uri == os.environ["FIFTYONE_DATABASE_URI"] == fiftyone_database
    assert "FIFTYONE_PRIVATE_DATABASE_PORT" not in os.environ  # FiftyOne started no service
    options = foo.get_db_client().admin.command("getCmdLineOpts")["parsed"]
    assert options["net"]["bindIp"] == "127.0.0.1"
    assert fiftyone_database == f"mongodb://127.0.0.1:{options['net']['port']}/"
    dbpath = Path(options["storage"]["dbPath"])
    assert dbpath.parent.name.startswith("samrefiner-mongod-")
    assert database.name in fo.list_datasets()
