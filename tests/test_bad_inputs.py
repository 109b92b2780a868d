"""A corpus of broken and hostile inputs, one row per case, run through the dataset commands.

Every row must end without a traceback: either with the bad input reported under its
status (and passed through), or with a one-line error (exit 2) that leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samrefiner.cli import main
from samrefiner.io.coco import encode_rle
from samrefiner.io.label_maps import LabelMap, write_label_map
from test_runner_data import PALETTE, box_mask, write_image

MODEL = ["--model", "samrefiner.testing:tiny_sam", "--random-weights", "--no-progress"]
FAST = [*MODEL, "--iterations", "1", "--workers", "1"]


# --------------------------------------------------------------------------- builders


def coco_file(
    root: Path,
    *,
    image: dict[str, Any] | None = None,
    annotation: dict[str, Any] | None = None,
    extra_annotations: list[dict[str, Any]] | None = None,
    write: bool = True,
) -> Path:
    """``root/ann.json`` with one 40 x 60 image ``a.png`` and one good annotation (id 1),
    with ``image`` / ``annotation`` fields replacing the good ones."""
    if write:
        write_image(root / "images" / "a.png", 0)
    entry = {"id": 1, "file_name": "a.png", "width": 60, "height": 40, **(image or {})}
    ann = {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "segmentation": [[10, 10, 30, 10, 30, 25, 10, 25]],
        "bbox": [10, 10, 20, 15],
        "area": 300,
        "iscrowd": 0,
        **(annotation or {}),
    }
    good = {
        "id": 2,
        "image_id": 1,
        "category_id": 1,
        "segmentation": encode_rle(box_mask(35, 5, 50, 30)),
        "iscrowd": 0,
    }
    data = {
        "images": [entry],
        "annotations": [ann, good, *(extra_annotations or [])],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = root / "ann.json"
    path.write_text(json.dumps(data), encoding="utf-8")  # NaN is written as NaN
    return path


def coco_argv(root: Path, *extra: str) -> list[str]:
    return [
        "coco",
        str(root / "ann.json"),
        "--images",
        str(root / "images"),
        "-o",
        str(root / "out" / "refined.json"),
        "--summary",
        str(root / "summary.json"),
        *FAST,
        *extra,
    ]


def outside_image(root: Path) -> Path:
    """An image outside the images folder (the target of the hostile names)."""
    return write_image(root / "secret" / "s.png", 1)


def masks_folder(root: Path) -> None:
    """``images/a.png`` and ``masks/a.png`` (one object)."""
    write_image(root / "images" / "a.png", 0)
    (root / "masks").mkdir()
    Image.fromarray(box_mask(10, 10, 30, 25).astype(np.uint8) * 255).save(root / "masks" / "a.png")


def masks_argv(root: Path, *extra: str) -> list[str]:
    return [
        "masks",
        "--images",
        str(root / "images"),
        "--masks",
        str(root / "masks"),
        "-o",
        str(root / "out"),
        "--summary",
        str(root / "summary.json"),
        *FAST,
        *extra,
    ]


def instances_folder(root: Path) -> None:
    """``images/a.png`` and ``labels/a.png``: three objects, 2 inside 1's box."""
    write_image(root / "images" / "a.png", 0)
    labels = np.zeros((40, 60), np.uint8)
    labels[5:35, 5:55] = 1
    labels[15:25, 20:40] = 2  # surrounded by object 1
    labels[36:39, 2:6] = 3
    write_label_map(root / "labels" / "a.png", LabelMap(labels, "P", PALETTE))


# --------------------------------------------------------------------------- the table


@dataclass
class Case:
    """One bad input.

    Attributes:
        name: row id.
        build: writes the inputs under the folder it gets; returns the argv.
        exit_code: expected exit status.
        status: a status expected among the summary's objects or images (None: none).
        err: a fragment of stderr (the one-line error, or a warning).
        left_behind: with exit 2, paths (relative to the folder) that must not exist.
    """

    name: str
    build: Callable[[Path], list[str]]
    exit_code: int = 0
    status: str | None = None
    err: str = ""
    left_behind: tuple[str, ...] = ()
    patch: Callable[[pytest.MonkeyPatch], None] | None = field(default=None)


def _coco(root: Path, *extra: str, **kwargs: Any) -> list[str]:
    coco_file(root, **kwargs)
    return coco_argv(root, *extra)


def _coco_unsafe_symlink(root: Path) -> list[str]:
    secret = outside_image(root)
    coco_file(root)
    (root / "images" / "link.png").symlink_to(secret)
    coco_file(root, image={"file_name": "link.png"}, write=False)
    return coco_argv(root)


def _coco_allowed_outside(root: Path) -> list[str]:
    outside_image(root)
    coco_file(root, image={"file_name": "../secret/s.png"})
    return coco_argv(root, "--allow-outside-images")


def _masks_symlinked_image(root: Path) -> list[str]:
    secret = outside_image(root)
    masks_folder(root)
    (root / "images" / "a.png").unlink()
    (root / "images" / "a.png").symlink_to(secret)
    return masks_argv(root)


def _exif_rotated(root: Path) -> list[str]:
    coco_file(root)
    img = Image.open(root / "images" / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(root / "images" / "a.jpg", exif=exif.tobytes())
    coco_file(root, image={"file_name": "a.jpg"}, write=False)
    return coco_argv(root)


def _bad_checkpoint(root: Path, content: bytes | None) -> list[str]:
    coco_file(root)
    ckpt = root / "model.pth"
    if content is not None:
        ckpt.write_bytes(content)
    argv = coco_argv(root)
    argv[argv.index("--random-weights")] = "--checkpoint"
    argv.insert(argv.index("--checkpoint") + 1, str(ckpt))
    argv[argv.index("samrefiner.testing:tiny_sam")] = "sam_vit_b"
    return argv


class _NotATensor:
    """Pickled into a checkpoint: loading it would run code, so it must be refused."""


def _pickled_object() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"weights": _NotATensor()}, buf)
    return buf.getvalue()


def _foreign_weights() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"backbone.conv.weight": torch.zeros(3, 3)}, buf)
    return buf.getvalue()


def _output_under_file(root: Path) -> list[str]:
    coco_file(root)
    (root / "blocker").write_text("a file, not a folder")
    argv = coco_argv(root)
    argv[argv.index("-o") + 1] = str(root / "blocker" / "refined.json")
    return argv


def _output_under_system_folder(root: Path) -> list[str]:
    coco_file(root)
    argv = coco_argv(root)
    argv[argv.index("-o") + 1] = "/proc/samrefiner-test/refined.json"
    return argv


def _summary_unwritable(root: Path) -> list[str]:
    coco_file(root)
    (root / "blocker").write_text("a file, not a folder")
    argv = coco_argv(root)
    argv[argv.index("--summary") + 1] = str(root / "blocker" / "summary.json")
    return argv


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    import samrefiner.io.atomic as atomic

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)


def _instances_occluded(root: Path) -> list[str]:
    instances_folder(root)
    return [
        "instances",
        "--images",
        str(root / "images"),
        "--labels",
        str(root / "labels"),
        "-o",
        str(root / "out"),
        "--summary",
        str(root / "summary.json"),
        *FAST,
    ]


def _hf_folder(
    root: Path, kind: str = "sam", damage: Callable[[Path], None] | None = None
) -> list[str]:
    """coco argv whose --model is a tiny ``transformers`` model's save_pretrained folder
    (its weights loaded: no --random-weights), damaged by ``damage``."""
    pytest.importorskip("timm" if kind == "edgetam" else "transformers")
    from samrefiner.testing import build_tiny_hf_model

    coco_file(root)
    folder = root / "hf_model"
    build_tiny_hf_model(kind, seed=3).save_pretrained(folder)
    if damage is not None:
        damage(folder)
    argv = coco_argv(root)
    argv.remove("--random-weights")
    argv[argv.index("samrefiner.testing:tiny_sam")] = str(folder)
    return argv


def _drop_proj_out(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    del state["mask_decoder.iou_prediction_head.proj_out.weight"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _pickled_bin(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(_pickled_object())


def _no_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # importing it fails


NO_STATE = ("out", "out/refined.json.samrefiner-state", "out/refined.json.samrefiner-lock")

CASES = [
    # Names leading outside --images: nothing is opened.
    Case("coco_absolute_file_name", lambda r: _coco(r, image={"file_name": "/etc/passwd"}),
         1, "unsafe_path"),
    Case("coco_dotdot_file_name",
         lambda r: (outside_image(r), _coco(r, image={"file_name": "../secret/s.png"}))[1],
         1, "unsafe_path"),
    Case("coco_symlink_outside", _coco_unsafe_symlink, 1, "unsafe_path"),
    Case("coco_allow_outside_images", _coco_allowed_outside, 0, "refined"),
    Case("masks_symlinked_image", _masks_symlinked_image, 1, "unsafe_path"),
    # Decompression bombs: PIL's error (over twice the limit) and our check (over it).
    Case("image_far_over_pixel_limit", lambda r: _coco(r, "--max-image-pixels", "100"),
         1, "image_too_large"),
    Case("image_over_pixel_limit", lambda r: _coco(r, "--max-image-pixels", "2000"),
         1, "image_too_large"),
    # Malformed COCO field types: one schema per record.
    Case("annotation_id_list", lambda r: _coco(r, annotation={"id": [1]}), 0, "invalid_record"),
    Case("annotation_id_object", lambda r: _coco(r, annotation={"id": {"a": 1}}),
         0, "invalid_record"),
    Case("image_id_list", lambda r: _coco(r, annotation={"image_id": [1]}), 0, "invalid_record"),
    Case("bbox_of_strings", lambda r: _coco(r, annotation={"bbox": ["1", "2", "3", "4"]}),
         0, "invalid_record"),
    Case("score_nan", lambda r: _coco(r, annotation={"score": float("nan")}), 0, "invalid_record"),
    Case("area_infinite", lambda r: _coco(r, annotation={"area": float("inf")}),
         0, "invalid_record"),
    Case("iscrowd_string", lambda r: _coco(r, annotation={"iscrowd": "yes"}), 0, "invalid_record"),
    Case("rle_size_strings",
         lambda r: _coco(r, annotation={"segmentation": {"size": ["a", "b"], "counts": "x"}}),
         0, "invalid_segmentation"),
    Case("rle_size_one_number",
         lambda r: _coco(r, annotation={"segmentation": {"size": 40, "counts": [2400]}}),
         0, "invalid_segmentation"),
    Case("rle_counts_number",
         lambda r: _coco(r, annotation={"segmentation": {"size": [40, 60], "counts": 5}}),
         0, "invalid_segmentation"),
    Case("polygon_of_strings", lambda r: _coco(r, annotation={"segmentation": [["1", "2"]]}),
         0, "invalid_segmentation"),
    Case("segmentation_number", lambda r: _coco(r, annotation={"segmentation": 3}),
         0, "invalid_record"),
    Case("image_width_string", lambda r: _coco(r, image={"width": "60"}), 1, "invalid_record"),
    Case("image_file_name_list", lambda r: _coco(r, image={"file_name": ["a.png"]}),
         1, "invalid_record"),
    # Warnings: refined all the same.
    Case("unknown_category", lambda r: _coco(r, annotation={"category_id": 99}), 0, "refined",
         err="category_id 99"),
    Case("exif_orientation", _exif_rotated, 0, "refined", err="EXIF orientation 6"),
    # Overlapping objects: one loses its pixels to a neighbour.
    Case("instances_occluded", _instances_occluded, 0, None),
    # Model errors: one line, exit 2, before any state or output.
    Case("checkpoint_missing", lambda r: _bad_checkpoint(r, None), 2, None,
         err="checkpoint file not found", left_behind=NO_STATE),
    Case("checkpoint_truncated", lambda r: _bad_checkpoint(r, b"PK\x03\x04trunc"), 2, None,
         err="not a readable PyTorch checkpoint", left_behind=NO_STATE),
    Case("checkpoint_not_plain_tensors", lambda r: _bad_checkpoint(r, _pickled_object()), 2, None,
         err="not a plain tensor checkpoint", left_behind=NO_STATE),
    Case("checkpoint_wrong_architecture", lambda r: _bad_checkpoint(r, _foreign_weights()), 2,
         None, err="model.pth", left_behind=NO_STATE),
    Case("model_unknown", lambda r: _coco(r, "--model", "no_such_model"), 2, None,
         err="unknown model 'no_such_model'", left_behind=NO_STATE),
    Case("model_builder_returns_no_model", lambda r: _coco(r, "--model", "os:getcwd"), 2, None,
         err="returned a str, not a SAM module", left_behind=NO_STATE),
    Case("model_builder_not_callable", lambda r: _coco(r, "--model", "os:sep"), 2, None,
         err="is a str, not a function", left_behind=NO_STATE),
    Case("model_builder_other_module",
         lambda r: _coco(r, "--model", "torch.nn:Identity"), 2, None,
         err="expected a segment_anything", left_behind=NO_STATE),
    # Outputs that cannot be written: one line naming the path.
    Case("output_under_a_file", _output_under_file, 2, None, err="blocker", left_behind=("out",)),
    Case("output_under_system_folder", _output_under_system_folder, 2, None,
         err="/proc/samrefiner-test"),
    Case("summary_unwritable", _summary_unwritable, 2, None, err="blocker"),
    Case("disk_full", lambda r: _coco(r), 2, None, err="No space left on device",
         patch=_disk_full),
    # issue 17: Hugging Face models and hq_token_only
    Case("hf_folder_missing_tensor", lambda r: _hf_folder(r, damage=_drop_proj_out), 2, None,
         err="1 missing keys: mask_decoder.iou_prediction_head.proj_out.weight",
         left_behind=NO_STATE),
    Case("hf_folder_pickled_weights", lambda r: _hf_folder(r, damage=_pickled_bin), 2, None,
         err="pytorch_model.bin: not a plain tensor checkpoint", left_behind=NO_STATE),
    Case("hf_edgetam_without_timm", lambda r: _hf_folder(r, "edgetam"), 2, None,
         err="the 'timm' package, needed by EdgeTamModel", left_behind=NO_STATE, patch=_no_timm),
    Case("hq_token_only_of_another_family",
         lambda r: _coco(r, "--model", "sam_vit_b", "--hq-token-only"), 2, None,
         err="takes no option hq_token_only", left_behind=NO_STATE),
]  # fmt: skip


def _summary_statuses(root: Path) -> dict[str, int]:
    summary = json.loads((root / "summary.json").read_text())
    return {**summary["masks_by_status"], **summary["images_skipped"]}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_row(case: Case, tmp_path, capsys, caplog, monkeypatch) -> None:
    root = tmp_path / case.name
    root.mkdir()
    argv = case.build(root)
    if case.patch is not None:
        case.patch(monkeypatch)
    code = main(argv)  # an exception here is a traceback: the row fails
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == case.exit_code, captured.err
    assert case.err in captured.err + caplog.text
    if case.exit_code == 2:
        errors = [line for line in captured.err.splitlines() if "error:" in line]
        assert len(errors) == 1, captured.err
        for rel in case.left_behind:
            assert not (root / rel).exists(), rel
        assert not list(root.rglob("*.tmp")) and not list(root.rglob(".*.tmp"))
    if case.status is not None:
        assert _summary_statuses(root).get(case.status, 0) >= 1, _summary_statuses(root)
    # Inputs are never modified (the annotation file is rewritten only under -o).
    if (root / "ann.json").exists():
        json.loads((root / "ann.json").read_text())


def test_unsafe_names_open_nothing(tmp_path, monkeypatch) -> None:
    """An unsafe name is refused before the file is touched."""
    import samrefiner.runner.coco as runner_coco

    opened: list[Path] = []
    real = runner_coco.read_image
    monkeypatch.setattr(runner_coco, "read_image", lambda p: opened.append(Path(p)) or real(p))
    outside_image(tmp_path)
    coco_file(tmp_path, image={"file_name": "../secret/s.png"})
    assert main(coco_argv(tmp_path)) == 1
    assert opened == []


def test_strict_counts_every_new_status(tmp_path) -> None:
    coco_file(tmp_path, annotation={"id": [1]})
    assert main([*coco_argv(tmp_path), "--strict"]) == 3


def test_warnings_are_said_once(tmp_path, caplog) -> None:
    rle = encode_rle(box_mask(1, 1, 5, 5))
    extra = [{"id": k, "image_id": 1, "category_id": 99, "segmentation": rle} for k in (10, 11, 12)]
    coco_file(tmp_path, annotation={"category_id": 99}, extra_annotations=extra)
    assert main(coco_argv(tmp_path)) == 0
    said = [r for r in caplog.records if "category_id 99" in r.getMessage()]
    assert len(said) == 1


def test_second_run_on_the_same_output_is_refused(tmp_path, capsys) -> None:
    from samrefiner.runner.state import RunLock

    coco_file(tmp_path)
    with RunLock(tmp_path / "out" / "refined.json"):
        assert main(coco_argv(tmp_path)) == 2
        err = capsys.readouterr().err
        assert f"another samrefiner run (process {os.getpid()})" in err
        assert not (tmp_path / "out" / "refined.json.samrefiner-state").exists()
    assert main(coco_argv(tmp_path)) == 0
    assert not (tmp_path / "out" / "refined.json.samrefiner-lock").exists()


def test_an_object_lost_to_its_neighbour_is_occluded(tmp_path) -> None:
    from samrefiner.runner import InstanceDataset, RunOptions, RunState, run_dataset
    from test_runner_data import FakeRefiner

    write_image(tmp_path / "images" / "a.png", 0)
    labels = np.zeros((40, 60), np.uint8)
    labels[5:35, 5:55] = 1
    labels[10:30, 30] = 2  # a 1-px slit: object 1 (grown by 1 px, higher score) covers it
    labels[0:3, 57:60] = 3  # apart: keeps everything
    write_label_map(tmp_path / "labels" / "a.png", LabelMap(labels, "P", PALETTE))
    out = tmp_path / "out"
    state = RunState(out)
    state.start({"case": "occluded"}, resume=False)
    dataset = InstanceDataset(tmp_path / "images", tmp_path / "labels", out)
    summary = run_dataset(dataset, FakeRefiner(), state, RunOptions(progress=False))
    record = state.read("a")
    by_id = {o.id: o for o in record.objects}
    assert by_id[2].status == "occluded" and by_id[2].kept_share == 0.0
    assert by_id[1].status == "refined" and by_id[1].kept_share == 1.0
    assert by_id[3].status == "refined" and by_id[3].kept_share == 1.0
    assert summary.masks_by_status["occluded"] == 1 and summary.lost == 1
    assert summary.masks_refined == 3  # occluded objects were refined
    text = summary.format()
    assert "occluded" in text and "lost to neighbours" in text


def test_report_of_a_dataset_run_lists_every_status(tmp_path, capsys) -> None:
    coco_file(tmp_path, annotation={"id": [1]})
    assert main(coco_argv(tmp_path)) == 0
    report = tmp_path / "report"
    assert main(["report", str(tmp_path / "summary.json"), "-o", str(report), "--no-progress"]) == 0
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "invalid_record" in html and "bad input, passed through" in html
