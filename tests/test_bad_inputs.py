"""A corpus of broken and hostile inputs, one row per case, run through the dataset commands.

Every row must end without a traceback: either with the bad input reported under its
status (and passed through), or with a one-line error (exit 2) that leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import closed_port, extra_marks
from helpers_runner import PALETTE, box_mask, write_image
from samrefiner.cli import main
from samrefiner.io.coco import encode_rle
from samrefiner.io.label_maps import LabelMap, write_label_map

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


def masks_inputs(root: Path) -> list[str]:
    """The input options of :func:`masks_folder`'s folders."""
    return ["--images", str(root / "images"), "--masks", str(root / "masks")]


def masks_argv(root: Path, *extra: str) -> list[str]:
    return [
        "masks",
        *masks_inputs(root),
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
        err: a fragment of stderr (the one-line error, or a warning); ``{root}`` stands
            for the row's folder.
        left_behind: with exit 2, paths (relative to the folder) that must not exist.
        patch: applied (with pytest's monkeypatch) after ``build``, before the run.
        extra: the optional extra the row needs (``@pytest.mark.extra``), or None.
        rewrites: folders (relative) the run may rightly rewrite, not inputs (a cache).
    """

    name: str
    build: Callable[[Path], list[str]]
    exit_code: int = 0
    status: str | None = None
    err: str = ""
    left_behind: tuple[str, ...] = ()
    patch: Callable[[pytest.MonkeyPatch], None] | None = field(default=None)
    extra: str | None = None
    rewrites: tuple[str, ...] = ()


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


def _coco_on_ray(root: Path, address: str, *extra: str) -> list[str]:
    return _coco(root, "--engine", "ray", "--ray-address", address, *extra)


def _no_ray_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import samrefiner.cluster as cluster

    monkeypatch.setattr(cluster, "has_ray_client", lambda: False, raising=False)


def _adapt_argv(root: Path, *extra: str) -> list[str]:
    """``adapt masks`` over :func:`masks_folder` into ``root/adapter`` (needs the adapt
    extra: skipped without it), its embedding cache under ``root``."""
    masks_folder(root)
    return [
        "adapt",
        "masks",
        *masks_inputs(root),
        "-o",
        str(root / "adapter"),
        "--embedding-cache",
        str(root / "cache"),
        *MODEL,
        "--iterations",
        "1",
        *extra,
    ]


def _coco_with_adapter(root: Path, rank: int | None = None, weight: float = 0.01) -> list[str]:
    """A coco run with ``--adapter``: an adapter of the model (lora_B filled with
    ``weight``), its description's rank replaced by ``rank``."""
    from safetensors.torch import save_file

    from samrefiner.adaption import AdaptConfig, AdapterInfo, model_fingerprint, save_adapter
    from samrefiner.adaption.lora import attach_lora, lora_state
    from samrefiner.models import load_model

    backend = load_model("samrefiner.testing:tiny_sam", pretrained=False)
    layer = attach_lora(backend, 4, 8.0, 0)
    folder = root / "adapter"
    info = AdapterInfo(backend.name, model_fingerprint(backend), AdaptConfig())
    save_adapter(folder, info, backend)
    tensors = lora_state(layer)
    tensors["lora_B"].fill_(weight)
    save_file(tensors, str(folder / "adapter.safetensors"))  # bypasses save_adapter's check
    if rank is not None:
        data = json.loads((folder / "adapter.json").read_text())
        data["settings"]["rank"] = rank
        (folder / "adapter.json").write_text(json.dumps(data))
    return _coco(root, "--adapter", str(folder))


def _adapt_resume_pickled_checkpoint(root: Path) -> list[str]:
    argv = _adapt_argv(root, "--resume")
    (root / "adapter").mkdir()
    (root / "adapter" / "checkpoint.pt").write_bytes(_pickled_object())
    return argv


def _coco_cache_of_another_model(root: Path) -> list[str]:
    """A coco run whose embedding cache holds, under the model's keys, embeddings of
    another shape with valid metadata."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from samrefiner.adaption import EmbeddingCache, model_fingerprint
    from samrefiner.io.images import read_image
    from samrefiner.models import load_model

    argv = _coco(root, "--embedding-cache", str(root / "cache"))
    backend = load_model("samrefiner.testing:tiny_sam", pretrained=False)
    image = read_image(root / "images" / "a.png")
    EmbeddingCache(root / "cache").encode(backend, image, "float32", model_fingerprint(backend))
    (path,) = (root / "cache").iterdir()
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    save_file({"features": torch.zeros(1, 8, 4, 4)}, str(path), metadata=meta)
    return argv


def _hf_folder(
    root: Path, kind: str = "sam", damage: Callable[[Path], None] | None = None
) -> list[str]:
    """coco argv whose --model is a tiny ``transformers`` model's save_pretrained folder
    (its weights loaded: no --random-weights), damaged by ``damage``."""
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
NO_ADAPTER = ("adapter/adapter.json", "adapter/adapter.safetensors")


def _coco_summary_at(root: Path, rel: str) -> list[str]:
    """The COCO row with ``--summary root/rel``."""
    coco_file(root)
    argv = coco_argv(root)
    argv[argv.index("--summary") + 1] = str(root / rel)
    return argv


def _victim(root: Path) -> Path:
    """A file that hostile links point at: ``victim/`` must be left exactly as it is."""
    path = root / "victim" / "precious.txt"
    path.parent.mkdir()
    path.write_text("not samrefiner's to write")
    return path


def _summary_links_to_annotations(root: Path) -> list[str]:
    argv = _coco_summary_at(root, "link.json")
    (root / "link.json").symlink_to(root / "ann.json")
    return argv


def _inputs_inside_output(root: Path) -> list[str]:
    masks_folder(root)
    argv = masks_argv(root)
    argv[argv.index("-o") + 1] = str(root)  # holds --images and --masks
    return argv


def _adapt_json_is_annotations(root: Path) -> list[str]:
    coco_file(root)
    return [
        "adapt",
        "coco",
        str(root / "ann.json"),
        "--images",
        str(root / "images"),
        "-o",
        str(root / "adapter"),
        "--json",
        str(root / "ann.json"),
        "--embedding-cache",
        str(root / "cache"),
        *MODEL,
        "--epochs",
        "1",
        "--held-out",
        "0",
    ]


def _lock_links_to_victim(root: Path, *, hard: bool) -> list[str]:
    coco_file(root)
    lock = root / "out" / "refined.json.samrefiner-lock"
    lock.parent.mkdir()
    if hard:
        os.link(_victim(root), lock)
    else:
        lock.symlink_to(_victim(root))
    return coco_argv(root)


def _state_done_links_to_victim(root: Path) -> list[str]:
    """A state left by an interrupted run whose ``done/`` was replaced by a link."""
    from unittest import mock

    from samrefiner.runner.journal.state import RunState

    coco_file(root)
    argv = coco_argv(root)
    with mock.patch.object(RunState, "remove", lambda self: None):  # kept, as if killed
        assert main(argv) == 0
    done = root / "out" / "refined.json.samrefiner-state" / "done"
    shutil.rmtree(done)
    done.symlink_to(_victim(root).parent, target_is_directory=True)
    return [*argv, "--resume"]


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
    # issue 17: zoomray (a bbox that is not 4 finite numbers; Ray addresses that cannot work)
    Case("bbox_of_strings", lambda r: _coco(r, annotation={"bbox": ["1", "2", "3", "4"]}),
         0, "invalid_bbox", err="'bbox' must be 4 finite numbers"),
    Case("bbox_of_three_values", lambda r: _coco(r, annotation={"bbox": [1, 2, 3]}),
         0, "invalid_bbox", err="'bbox' must be 4 finite numbers, got [1, 2, 3]"),
    Case("bbox_with_nan", lambda r: _coco(r, annotation={"bbox": [1, 2, float("nan"), 4]}),
         0, "invalid_bbox", err="'bbox' must be 4 finite numbers, got [1, 2, nan, 4]"),
    Case("ray_client_not_installed", lambda r: _coco_on_ray(r, "ray://127.0.0.1:10001"), 2,
         None, err="pip install 'ray[client]'", left_behind=NO_STATE, patch=_no_ray_client,
         extra="ray"),
    Case("ray_address_refused", lambda r: _coco_on_ray(r, f"127.0.0.1:{closed_port()}"), 2,
         None, err="connection refused", left_behind=NO_STATE, extra="ray"),
    Case("ray_address_malformed", lambda r: _coco_on_ray(r, "head-node"), 2, None,
         err="is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'", left_behind=NO_STATE, extra="ray"),
    # issue 17: adapters, adapt checkpoints, embedding cache, finite numbers
    Case("adapter_rank_not_its_weights", lambda r: _coco_with_adapter(r, rank=10**9), 2, None,
         err="do not have the rank 1000000000", left_behind=NO_STATE, extra="adapt"),
    Case("adapter_weights_nan", lambda r: _coco_with_adapter(r, weight=float("nan")), 2, None,
         err="lora_B holds NaN or infinite weights", left_behind=NO_STATE, extra="adapt"),
    Case("adapter_weights_infinite", lambda r: _coco_with_adapter(r, weight=float("inf")), 2,
         None, err="lora_B holds NaN or infinite weights", left_behind=NO_STATE, extra="adapt"),
    Case("adapt_diverges", lambda r: _adapt_argv(r, "--lr", "1e30", "--epochs", "3"), 2, None,
         err="training diverged at epoch", left_behind=("adapter",), extra="adapt"),
    Case("adapt_resume_checkpoint_not_plain_tensors", _adapt_resume_pickled_checkpoint, 2, None,
         err="checkpoint.pt: not a plain tensor checkpoint", left_behind=NO_ADAPTER, extra="adapt"),
    Case("embedding_cache_of_another_model", _coco_cache_of_another_model, 0, "refined",
         err="cached embedding does not fit model", extra="adapt", rewrites=("cache",)),
    Case("zoom_context_infinite",
         lambda r: _coco(r, "--zoom-below", "128", "--zoom-context", "inf"), 2, None,
         err="argument --zoom-context: must be a finite number", left_behind=NO_STATE),
    Case("min_score_nan", lambda r: _coco(r, "--min-score", "nan"), 2, None,
         err="argument --min-score: must be a finite number", left_behind=NO_STATE),
    Case("embedding_cache_size_infinite",
         lambda r: _coco(r, "--embedding-cache", str(r / "cache"), "--embedding-cache-size",
                         "inf"), 2, None, err="argument --embedding-cache-size",
         left_behind=(*NO_STATE, "cache")),
    Case("adapt_lr_infinite", lambda r: _adapt_argv(r, "--lr", "inf"), 2, None,
         err="argument --lr: must be a finite number", left_behind=("adapter",), extra="adapt"),
    # issue 17: outputs never clobber inputs or each other; never write through a link
    Case("summary_is_the_annotations", lambda r: _coco_summary_at(r, "ann.json"), 2, None,
         err="--summary {root}/ann.json: is the input ANNOTATIONS", left_behind=NO_STATE),
    Case("summary_is_the_output", lambda r: _coco_summary_at(r, "out/refined.json"), 2, None,
         err="is also -o {root}/out/refined.json", left_behind=NO_STATE),
    Case("summary_links_to_the_annotations", _summary_links_to_annotations, 2, None,
         err="both lead to {root}/ann.json", left_behind=NO_STATE),
    Case("summary_is_the_lock_file",
         lambda r: _coco_summary_at(r, "out/refined.json.samrefiner-lock"), 2, None,
         err="is also the lock file {root}/out/refined.json.samrefiner-lock", left_behind=NO_STATE),
    Case("summary_inside_the_state_folder",
         lambda r: _coco_summary_at(r, "out/refined.json.samrefiner-state/summary.json"), 2,
         None, err="replaces as a whole", left_behind=NO_STATE),
    Case("output_folder_holds_the_inputs", _inputs_inside_output, 2, None,
         err="--images {root}/images: the input lies inside -o {root}",
         left_behind=("a.png", "summary.json")),
    Case("adapt_json_is_the_annotations", _adapt_json_is_annotations, 2, None,
         err="--json {root}/ann.json: is the input ANNOTATIONS", left_behind=("adapter", "cache")),
    Case("lock_file_links_to_a_file", lambda r: _lock_links_to_victim(r, hard=False), 2, None,
         err="refined.json.samrefiner-lock: cannot be written: is a link",
         left_behind=("out/refined.json", "out/refined.json.samrefiner-state")),
    Case("lock_file_hard_linked_to_a_file", lambda r: _lock_links_to_victim(r, hard=True), 2,
         None, err="refined.json.samrefiner-lock: cannot be written: is a link",
         left_behind=("out/refined.json", "out/refined.json.samrefiner-state")),
    Case("state_done_folder_links_elsewhere", _state_done_links_to_victim, 2, None,
         err="samrefiner-state/done: is a link"),
    Case("eval_json_is_the_ground_truth",
         lambda r: ["eval", str(coco_file(r)), str(r / "ann.json"), "--json", str(r / "ann.json"),
                    "--no-progress"], 2, None, err="--json {root}/ann.json: is the input PRED"),
    Case("make_coarse_output_is_the_ground_truth",
         lambda r: ["make-coarse", str(coco_file(r)), "-o", str(r / "ann.json"), "--no-progress"],
         2, None, err="-o {root}/ann.json: is the input GT", left_behind=("ann.iou.csv",)),
    Case("make_coarse_table_is_the_output",
         lambda r: ["make-coarse", str(coco_file(r)), "-o", str(r / "c.json"), "--table",
                    str(r / "c.json"), "--no-progress"], 2, None,
         err="--table {root}/c.json: is also -o", left_behind=("c.json",)),
    Case("split_output_holds_the_labels",
         lambda r: (instances_folder(r), ["split", "--labels", str(r / "labels"), "-o", str(r),
                                          "--no-progress"])[1], 2, None,
         err="--labels {root}/labels: the input lies inside -o", left_behind=("a-1-1.png",)),
    # issue 17: Hugging Face models and hq_token_only
    Case("hf_folder_missing_tensor", lambda r: _hf_folder(r, damage=_drop_proj_out), 2, None,
         err="1 missing keys: mask_decoder.iou_prediction_head.proj_out.weight",
         left_behind=NO_STATE, extra="hf"),
    Case("hf_folder_pickled_weights", lambda r: _hf_folder(r, damage=_pickled_bin), 2, None,
         err="pytorch_model.bin: not a plain tensor checkpoint", left_behind=NO_STATE,
         extra="hf"),
    Case("hf_edgetam_without_timm", lambda r: _hf_folder(r, "edgetam"), 2, None,
         err="the 'timm' package, needed by EdgeTamModel", left_behind=NO_STATE, patch=_no_timm,
         extra="hf"),
    Case("hq_token_only_of_another_family",
         lambda r: _coco(r, "--model", "sam_vit_b", "--hq-token-only"), 2, None,
         err="takes no option hq_token_only", left_behind=NO_STATE),
]  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    """The bytes of every file below ``root`` (a link: its target's), by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _under(files: dict[str, bytes], folder: str) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if Path(name).parts[0] == folder}


def _summary_statuses(root: Path) -> dict[str, int]:
    summary = json.loads((root / "summary.json").read_text())
    return {**summary["masks_by_status"], **summary["images_skipped"]}


@pytest.fixture
def case_extras(request: pytest.FixtureRequest, case: Case) -> None:
    """What a row's extra must have done before capsys starts (conftest.ray_data_imported)."""
    if case.extra == "ray":
        request.getfixturevalue("ray_data_imported")


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=extra_marks(c.extra), id=c.name) for c in CASES]
)
def test_bad_input_row(case: Case, case_extras, tmp_path, capsys, caplog, monkeypatch) -> None:
    root = tmp_path / case.name
    root.mkdir()
    argv = case.build(root)
    capsys.readouterr()  # what a build ran is not the row's output
    before = {n: b for n, b in _files(root).items() if Path(n).parts[0] not in case.rewrites}
    if case.patch is not None:
        case.patch(monkeypatch)
    try:
        code = main(argv)  # an exception here is a traceback: the row fails
    except SystemExit as exc:  # argparse refused an option: usage and one error line
        code = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == case.exit_code, captured.err
    assert case.err.replace("{root}", str(root)) in captured.err + caplog.text
    # Every file there before (the inputs, and what links point at) is left as it was,
    # and nothing is added to victim/ (the targets of hostile links).
    after = _files(root)
    assert {name: after.get(name) for name in before} == before
    assert _under(after, "victim") == _under(before, "victim")
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
    import samrefiner.runner.formats.coco as runner_coco

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
    from samrefiner.runner.journal.state import RunLock

    coco_file(tmp_path)
    with RunLock(tmp_path / "out" / "refined.json"):
        assert main(coco_argv(tmp_path)) == 2
        err = capsys.readouterr().err
        assert f"another samrefiner run (process {os.getpid()})" in err
        assert not (tmp_path / "out" / "refined.json.samrefiner-state").exists()
    assert main(coco_argv(tmp_path)) == 0
    assert not (tmp_path / "out" / "refined.json.samrefiner-lock").exists()


def test_an_object_lost_to_its_neighbour_is_occluded(tmp_path) -> None:
    from helpers_runner import FakeRefiner
    from samrefiner.runner import InstanceDataset, RunOptions, RunState, run_dataset

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


# issue 17: zoomray


@pytest.mark.extra("ray")
@pytest.mark.parametrize("command", ["coco", pytest.param("adapt", marks=extra_marks("adapt"))])
def test_a_ray_address_that_never_answers_is_refused_within_the_bound(
    command, ray_data_imported, tmp_path, capsys
) -> None:
    """A port that accepts connections and never answers (Ray would retry for minutes):
    one line within ``--ray-connect-timeout``, nothing left behind."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody reads or answers
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        ray_args = ["--engine", "ray", "--ray-address", address, "--ray-connect-timeout", "1"]
        if command == "coco":
            argv = _coco(tmp_path, *ray_args)
        else:
            from test_adaption_cli import dataset_args

            args = dataset_args("masks", tmp_path)
            out = ["-o", str(tmp_path / "out" / "adapter"), *MODEL]
            argv = ["adapt", *args, *out, "--embedding-cache", str(tmp_path / "out" / "cache")]
            argv += ray_args
        started = time.monotonic()
        assert main(argv) == 2
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert f"no Ray cluster at '{address}': nothing answered within 1 s" in err
    assert len(err.strip().splitlines()) == 1, err
    assert elapsed < 20  # Ray's own retries take minutes; the import of Ray some seconds
    assert not (tmp_path / "out").exists()
