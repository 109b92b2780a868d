"""Checkpoint download / cache, ``load_model`` and the SAM backend, all offline.

Downloads go to an ``http.server`` started on 127.0.0.1 inside the test; models are the
tiny random SAM of :mod:`samrefiner.testing` registered under a test name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from conftest import closed_port
from samrefiner.geometry import Frame
from samrefiner.models import (
    CheckpointError,
    CheckpointSpec,
    ImageEmbedding,
    SamBackend,
    cache_dir,
    load_model,
    registry,
)
from samrefiner.models.download import download_checkpoint, ensure_checkpoint
from samrefiner.models.registry import ModelEntry
from samrefiner.testing import build_tiny_sam

BODY = b"samrefiner test checkpoint\n" * 200
BODY_SHA = hashlib.sha256(BODY).hexdigest()
TEST_MODEL = "tiny_test"


# --------------------------------------------------------------------------- server


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (behaviour, payload)``; records every request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _head(self, length: int | None = None, chunked: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _hang_up(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        behaviour, payload = server.routes.get(self.path, ("status", 404))
        if behaviour == "ok":
            self._head(len(payload))
            self.wfile.write(payload)
        elif behaviour == "status":
            self.send_error(payload)
        elif behaviour == "truncate":  # announce the full length, send half, hang up
            self._head(len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            self._hang_up()
        elif behaviour == "truncate_chunked":  # announce a chunk, send part of it, hang up
            self._head(chunked=True)
            self.wfile.write(b"%x\r\n" % len(payload) + payload[: len(payload) // 2])
            self._hang_up()
        elif behaviour == "stall":  # send half, then nothing until the test ends
            self._head(len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            server.release.wait(30)
            self.close_connection = True
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(behaviour)


class LocalServer:
    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.requests = []
        self.httpd.release = threading.Event()
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def routes(self) -> dict:
        return self.httpd.routes

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


@pytest.fixture
def server():
    srv = LocalServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.release.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(5)


def spec_for(url: str, sha: str = BODY_SHA, filename: str = "weights.pth") -> CheckpointSpec:
    return CheckpointSpec(filename, url, sha, len(BODY))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- download


def test_download_good_file_lands_in_place(server, tmp_path):
    server.routes["/w.pth"] = ("ok", BODY)
    dest = tmp_path / "cache" / "nested" / "weights.pth"  # parent folders do not exist yet
    got = download_checkpoint(spec_for(server.url("/w.pth")), dest, progress=False)
    assert got == dest
    assert dest.read_bytes() == BODY
    assert listing(dest.parent) == ["weights.pth"]  # no .part temp left
    assert server.requests == ["/w.pth"]


def test_download_wrong_checksum_discards_file(server, tmp_path):
    server.routes["/w.pth"] = ("ok", BODY)
    expected = "0" * 64
    dest = tmp_path / "weights.pth"
    with pytest.raises(CheckpointError) as info:
        download_checkpoint(spec_for(server.url("/w.pth"), sha=expected), dest, progress=False)
    msg = str(info.value)
    assert expected in msg and BODY_SHA in msg  # expected and actual hash
    assert server.url("/w.pth") in msg and str(dest) in msg  # how to place it by hand
    assert "--checkpoint" in msg
    assert listing(tmp_path) == []


@pytest.mark.parametrize("code", [404, 500])
def test_download_http_error(server, tmp_path, code):
    server.routes["/w.pth"] = ("status", code)
    dest = tmp_path / "weights.pth"
    with pytest.raises(CheckpointError, match=str(code)) as info:
        download_checkpoint(spec_for(server.url("/w.pth")), dest, progress=False)
    assert str(dest) in str(info.value) and "weights.pth" in str(info.value)
    assert listing(tmp_path) == []


def test_download_connection_refused(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/w.pth"  # nothing listens there
    with pytest.raises(CheckpointError, match=r"cannot download weights\.pth"):
        download_checkpoint(spec_for(url), tmp_path / "weights.pth", progress=False)
    assert listing(tmp_path) == []


def test_download_server_hangs_up_mid_transfer(server, tmp_path):
    server.routes["/w.pth"] = ("truncate", BODY)
    with pytest.raises(CheckpointError, match=BODY_SHA):
        download_checkpoint(
            spec_for(server.url("/w.pth")), tmp_path / "weights.pth", progress=False
        )
    assert listing(tmp_path) == []


def test_download_chunked_response_cut_short(server, tmp_path):
    server.routes["/w.pth"] = ("truncate_chunked", BODY)
    with pytest.raises(CheckpointError):
        download_checkpoint(
            spec_for(server.url("/w.pth")), tmp_path / "weights.pth", progress=False
        )
    assert listing(tmp_path) == []


def test_download_stalled_transfer_times_out(server, tmp_path):
    server.routes["/w.pth"] = ("stall", BODY)
    with pytest.raises(CheckpointError, match="broke off"):
        download_checkpoint(
            spec_for(server.url("/w.pth")), tmp_path / "weights.pth", progress=True, timeout=1.0
        )
    assert listing(tmp_path) == []


# --------------------------------------------------------------------------- cache


def test_cache_dir_honours_samrefiner_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("SAMREFINER_HOME", str(tmp_path / "models"))
    assert cache_dir() == tmp_path / "models"
    monkeypatch.setenv("SAMREFINER_HOME", "~/weights")
    assert cache_dir() == tmp_path / "user" / "weights"
    monkeypatch.delenv("SAMREFINER_HOME")
    assert cache_dir() == tmp_path / "user" / ".cache" / "samrefiner"


def test_ensure_checkpoint_downloads_into_cache_dir_once(server, monkeypatch, tmp_path):
    monkeypatch.setenv("SAMREFINER_HOME", str(tmp_path / "home"))
    server.routes["/w.pth"] = ("ok", BODY)
    spec = spec_for(server.url("/w.pth"))
    first = ensure_checkpoint(spec, progress=False)
    assert first == tmp_path / "home" / "weights.pth"
    assert first.read_bytes() == BODY
    assert ensure_checkpoint(spec, progress=False) == first
    assert server.requests == ["/w.pth"]  # the second call used the cached file


def test_unverifiable_checkpoint_is_downloaded_and_said_so(server, tmp_path, caplog):
    """No published checksum: the file is kept, and the log says it was not verified."""
    server.routes["/w.pth"] = ("ok", BODY)
    spec = CheckpointSpec("weights.pth", server.url("/w.pth"), None)
    with caplog.at_level("WARNING", logger="samrefiner.models"):
        got = ensure_checkpoint(spec, directory=tmp_path, progress=False)
        assert got.read_bytes() == BODY
        assert "could not be verified" in caplog.text and BODY_SHA in caplog.text
        caplog.clear()
        assert ensure_checkpoint(spec, directory=tmp_path, progress=False) == got  # cached
        assert "could not be verified" in caplog.text
    assert server.requests == ["/w.pth"]


def test_ensure_checkpoint_uses_valid_cached_file_without_network(server, tmp_path):
    (tmp_path / "weights.pth").write_bytes(BODY)
    spec = spec_for(server.url("/w.pth"))  # the route would 404 if it were asked
    assert ensure_checkpoint(spec, directory=tmp_path) == tmp_path / "weights.pth"
    assert server.requests == []


def test_ensure_checkpoint_refuses_corrupt_cached_file(server, tmp_path):
    corrupt = BODY[:-1] + b"?"
    (tmp_path / "weights.pth").write_bytes(corrupt)
    server.routes["/w.pth"] = ("ok", BODY)
    with pytest.raises(CheckpointError) as info:
        ensure_checkpoint(spec_for(server.url("/w.pth")), directory=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "weights.pth") in msg and BODY_SHA in msg
    assert hashlib.sha256(corrupt).hexdigest() in msg and "Delete it" in msg
    assert (tmp_path / "weights.pth").read_bytes() == corrupt  # not overwritten silently
    assert server.requests == []


@pytest.mark.parametrize(
    "name",
    [
        "sam_hq_vit_b",
        "sam_hq_vit_l",
        "sam_hq_vit_h",
        "sam_hq_vit_tiny",
        "mobile_sam",
        "sam2.1_hiera_tiny",
        "sam2.1_hiera_small",
        "sam2.1_hiera_base_plus",
        "sam2.1_hiera_large",
    ],
)
def test_optional_family_checkpoints_are_verified(name, tmp_path):
    """A file placed under an optional family's official name is checked, not trusted."""
    spec = registry.MODELS[name].checkpoint
    (tmp_path / spec.filename).write_bytes(BODY)
    with pytest.raises(CheckpointError) as info:
        ensure_checkpoint(spec, directory=tmp_path, progress=False)
    assert f"{BODY_SHA}, expected {spec.sha256}" in str(info.value)
    assert (tmp_path / spec.filename).read_bytes() == BODY


# --------------------------------------------------------------------------- load_model


def state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def seed1_state() -> dict[str, torch.Tensor]:
    """Weights of a tiny SAM different from the builder's default (seed 0)."""
    return build_tiny_sam(seed=1).state_dict()


@pytest.fixture
def tiny_entry(monkeypatch, tmp_path):
    """Registers the tiny SAM as a named model whose checkpoint must never be fetched."""
    entry = ModelEntry(
        build=build_tiny_sam,
        checkpoint=CheckpointSpec("tiny_test.pth", "http://127.0.0.1:9/never", "0" * 64),
        embed_dim=32,
    )
    monkeypatch.setitem(registry.MODELS, TEST_MODEL, entry)
    monkeypatch.setenv("SAMREFINER_HOME", str(tmp_path / "home"))
    return entry


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ensure_checkpoint must not be called")

    monkeypatch.setattr(registry, "ensure_checkpoint", refuse)


def assert_weights(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    assert got.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(got[key], value), key


def probe(backend) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder output for one fixed image and prompt."""
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    decoded = backend.decode(
        backend.encode(image),
        point_coords=torch.tensor([[[20.0, 10.0], [5.0, 30.0]]]),
        point_labels=torch.tensor([[1, 0]]),
        boxes=torch.tensor([[4.0, 2.0, 40.0, 30.0]]),
        mask_input=None,
    )
    return decoded.low_res_logits, decoded.iou_predictions


def test_load_model_random_weights(tiny_entry, no_download):
    backend = load_model(TEST_MODEL, pretrained=False, device="cpu")
    assert isinstance(backend, SamBackend)
    assert isinstance(backend.sam, Sam) and not backend.sam.training
    assert backend.name == TEST_MODEL
    assert backend.device == torch.device("cpu")
    assert backend.input_size == 256
    assert backend.low_res_size == (64, 64)
    assert_weights(backend.sam, build_tiny_sam().state_dict())


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_load_model_checkpoint_strict_and_identical(
    tiny_entry, no_download, seed1_state, tmp_path, wrapper
):
    path = tmp_path / "tiny.pth"
    torch.save(seed1_state if wrapper is None else {wrapper: seed1_state, "epoch": 3}, path)
    backend = load_model(TEST_MODEL, checkpoint=path, device="cpu")  # pretrained=True ignored
    assert_weights(backend.sam, seed1_state)
    reference = SamBackend(build_tiny_sam(seed=1))
    other = SamBackend(build_tiny_sam(seed=0))
    logits, iou = probe(backend)
    ref_logits, ref_iou = probe(reference)
    assert torch.equal(logits, ref_logits) and torch.equal(iou, ref_iou)
    assert not torch.equal(logits, probe(other)[0])  # the weights made a difference


def test_load_model_recognises_architecture_of_checkpoint_file(tiny_entry, seed1_state, tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(seed1_state, path)
    backend = load_model(path, device="cpu")
    assert backend.name == TEST_MODEL
    assert_weights(backend.sam, seed1_state)


def test_load_model_checkpoint_missing_key(tiny_entry, seed1_state, tmp_path):
    state = dict(seed1_state)
    del state["mask_decoder.iou_token.weight"]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 missing keys: mask_decoder\.iou_token\.weight"):
        load_model(TEST_MODEL, checkpoint=path, device="cpu")


def test_load_model_checkpoint_extra_key(tiny_entry, seed1_state, tmp_path):
    state = {**seed1_state, "extra_head.weight": torch.zeros(2)}
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 unexpected keys: extra_head\.weight") as info:
        load_model(TEST_MODEL, checkpoint=path, device="cpu")
    assert str(path) in str(info.value) and "missing" not in str(info.value)


def test_load_model_checkpoint_wrong_shapes(tiny_entry, tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(build_tiny_sam(embed_dim=48).state_dict(), path)
    with pytest.raises(ValueError, match=r"image_encoder\.pos_embed") as info:
        load_model(TEST_MODEL, checkpoint=path, device="cpu")
    assert str(path) in str(info.value)


def test_load_model_rejects_non_checkpoint_files(tiny_entry, tmp_path):
    text = tmp_path / "notes.pth"
    text.write_bytes(b"this is not a checkpoint\n")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as info:
        load_model(TEST_MODEL, checkpoint=text, device="cpu")
    assert str(text) in str(info.value)
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as info:
        load_model(text, device="cpu")  # as a path, architecture to be guessed
    assert str(text) in str(info.value)

    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], a_list)
    with pytest.raises(ValueError, match="expected a state dict, got list") as info:
        load_model(TEST_MODEL, checkpoint=a_list, device="cpu")
    assert str(a_list) in str(info.value)

    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        load_model(TEST_MODEL, checkpoint=tmp_path / "absent.pth", device="cpu")


def test_load_model_unrecognised_architecture(tmp_path):
    path = tmp_path / "tiny.pth"  # no test entry registered: embed_dim 32 matches no model
    torch.save(build_tiny_sam().state_dict(), path)
    with pytest.raises(
        ValueError, match=r"cannot tell which architecture.*SAM checkpoint of width 32"
    ) as info:
        load_model(path, device="cpu")
    assert str(path) in str(info.value) and "sam_vit_b" in str(info.value)


def test_load_model_pretrained_downloads_then_uses_cache(
    server, monkeypatch, tmp_path, tiny_entry, seed1_state
):
    payload = state_bytes(seed1_state)
    server.routes["/tiny_test.pth"] = ("ok", payload)
    spec = CheckpointSpec(
        "tiny_test.pth", server.url("/tiny_test.pth"), hashlib.sha256(payload).hexdigest()
    )
    monkeypatch.setitem(
        registry.MODELS, TEST_MODEL, dataclasses.replace(tiny_entry, checkpoint=spec)
    )
    home = tmp_path / "home"  # SAMREFINER_HOME, set by tiny_entry

    backend = load_model(TEST_MODEL, device="cpu")
    assert listing(home) == ["tiny_test.pth"]
    assert (home / "tiny_test.pth").read_bytes() == payload
    assert_weights(backend.sam, seed1_state)

    again = load_model(TEST_MODEL, device="cpu")
    assert_weights(again.sam, seed1_state)
    assert server.requests == ["/tiny_test.pth"]


def test_load_model_pretrained_bad_download_leaves_cache_empty(server, monkeypatch, tmp_path):
    server.routes["/tiny_test.pth"] = ("ok", BODY)
    entry = ModelEntry(
        build=build_tiny_sam,
        checkpoint=CheckpointSpec("tiny_test.pth", server.url("/tiny_test.pth"), "1" * 64),
        embed_dim=32,
    )
    monkeypatch.setitem(registry.MODELS, TEST_MODEL, entry)
    monkeypatch.setenv("SAMREFINER_HOME", str(tmp_path / "home"))
    with pytest.raises(CheckpointError, match="1" * 64):
        load_model(TEST_MODEL, device="cpu")
    assert listing(tmp_path / "home") == []


def test_load_model_builder_specs(seed1_state, tmp_path):
    backend = load_model("samrefiner.testing:tiny_sam", device="cpu")
    assert isinstance(backend, SamBackend) and backend.name == "tiny_sam"
    assert (backend.input_size, backend.low_res_size) == (256, (64, 64))
    assert_weights(backend.sam, build_tiny_sam(seed=0).state_dict())

    path = tmp_path / "tiny.pth"
    torch.save(seed1_state, path)
    loaded = load_model("samrefiner.testing:tiny_sam", checkpoint=path, device="cpu")
    assert_weights(loaded.sam, seed1_state)

    bare = load_model("samrefiner.testing:build_tiny_sam", device="cpu")  # returns a Sam
    assert isinstance(bare, SamBackend) and bare.name == "samrefiner.testing:build_tiny_sam"

    for spec in ("samrefiner.testing:no_such_builder", "no_such_module_xyz:build"):
        with pytest.raises(ValueError, match="cannot import model builder"):
            load_model(spec, device="cpu")


def test_load_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'sam_vit_x'") as info:
        load_model("sam_vit_x", device="cpu")
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):
        assert name in str(info.value)


def test_check_model_says_what_load_model_says_without_building(tmp_path):
    """The quick check of a Ray driver: the same errors, no model built, nothing read."""
    from samrefiner.models.registry import check_model

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read by the check")
    for spec, checkpoint in (
        ("sam_vit_x", None),
        ("no_such_module_xyz:build", None),
        ("os:sep", None),
        ("samrefiner.testing:tiny_sam", tmp_path / "missing.pth"),
        ("sam_vit_b", tmp_path / "missing.pth"),
        ("hf:org/name", weights),
    ):
        with pytest.raises((ValueError, FileNotFoundError)) as expected:
            load_model(spec, checkpoint=checkpoint, device="cpu")
        with pytest.raises(type(expected.value)) as found:
            check_model(spec, checkpoint=checkpoint)
        assert str(found.value) == str(expected.value)
    # Fine as far as the check can tell (the weights are read where the model is built).
    for spec, checkpoint in (
        ("sam_vit_h", None),
        ("sam_vit_h", weights),
        (weights, None),
        ("samrefiner.testing:tiny_sam", None),
        ("hf:org/name", None),
    ):
        check_model(spec, checkpoint=checkpoint)


# --------------------------------------------------------------------------- backend


def test_sam_backend_rejects_other_modules():
    with pytest.raises(TypeError, match="Linear"):
        SamBackend(torch.nn.Linear(2, 2))


def test_sam_backend_frame_is_sam_geometry_and_cached(tiny_backend):
    frame = tiny_backend.frame((30, 40))
    assert frame is tiny_backend.frame((np.int64(30), 40))
    assert (frame.original_size, frame.input_size) == ((30, 40), 256)
    assert (frame.resized_size, frame.low_res_size) == ((192, 256), (64, 64))
    assert isinstance(frame, Frame)


def test_sam_backend_encode(tiny_backend):
    image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    emb = tiny_backend.encode(image)
    assert tuple(emb.features.shape) == (1, 32, 16, 16)
    assert emb.features.dtype == torch.float32
    assert (emb.original_size, emb.resized_size) == ((30, 40), (192, 256))
    for bad in (image.astype(np.float32), image[..., 0], image[..., :2]):
        with pytest.raises(ValueError, match="H x W x 3 uint8"):
            tiny_backend.encode(bad)


def test_sam_backend_matches_official_predictor(tiny_backend):
    image = np.random.default_rng(2).integers(0, 256, (48, 36, 3), dtype=np.uint8)
    points = torch.tensor([[[10.0, 12.0], [30.0, 40.0]], [[5.0, 5.0], [0.0, 47.0]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    boxes = torch.tensor([[2.0, 3.0, 30.0, 44.0], [0.0, 0.0, 35.0, 47.0]])
    masks = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))

    emb = tiny_backend.encode(image)
    got = tiny_backend.decode(
        emb, point_coords=points, point_labels=labels, boxes=boxes, mask_input=masks
    )
    assert tuple(got.low_res_logits.shape) == (2, 3, 64, 64)
    assert tuple(got.iou_predictions.shape) == (2, 3)

    predictor = SamPredictor(tiny_backend.sam)
    predictor.set_image(image)
    size = image.shape[:2]
    _, iou, low_res = predictor.predict_torch(
        predictor.transform.apply_coords_torch(points, size),
        labels,
        predictor.transform.apply_boxes_torch(boxes, size),
        masks,
        multimask_output=True,
        return_logits=True,
    )
    torch.testing.assert_close(emb.features, predictor.features)
    torch.testing.assert_close(got.low_res_logits, low_res)
    torch.testing.assert_close(got.iou_predictions, iou)

    boxes_only = tiny_backend.decode(
        emb, point_coords=None, point_labels=None, boxes=boxes[:1], mask_input=None
    )
    assert tuple(boxes_only.low_res_logits.shape) == (1, 3, 64, 64)


def test_backend_precision(tiny_backend):
    with tiny_backend.precision("float32"):
        assert not torch.is_autocast_enabled("cpu")
    with tiny_backend.precision("bfloat16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="float16"), tiny_backend.precision("float16"):
        pass

    image = np.random.default_rng(3).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    emb = tiny_backend.encode(image, dtype="bfloat16")
    assert emb.features.dtype == torch.float32 and torch.isfinite(emb.features).all()
    out = tiny_backend.decode(
        emb,
        point_coords=torch.tensor([[[3.0, 4.0]]]),
        point_labels=torch.tensor([[1]]),
        boxes=None,
        mask_input=None,
        dtype="bfloat16",
    )
    assert out.low_res_logits.dtype == torch.float32 and out.iou_predictions.dtype == torch.float32


def test_image_embedding_validation():
    with pytest.raises(ValueError, match=r"1 x C x h x w, got shape \(32, 16, 16\)"):
        ImageEmbedding(torch.zeros(32, 16, 16), (30, 40), (192, 256))
    with pytest.raises(ValueError, match=r"got shape \(2, 32, 16, 16\)"):
        ImageEmbedding(torch.zeros(2, 32, 16, 16), (30, 40), (192, 256))
    emb = ImageEmbedding(torch.zeros(1, 8, 4, 4), np.array([30, 40]), (np.int64(192), 256.0))
    assert emb.original_size == (30, 40) and emb.resized_size == (192, 256)
    assert all(type(v) is int for v in (*emb.original_size, *emb.resized_size))
    assert emb.extras == {}
