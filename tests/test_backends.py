"""Contract every backend in ``samrefiner.testing.TINY_BACKENDS`` must keep.

Each family's tiny random model (its own official classes) goes through the same checks:
shapes, prompt transforms against the official conventions, batching, bfloat16, the
elastic box, the whole refiner and one dataset command.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.utils.transforms import ResizeLongestSide

from conftest import extra_marks
from samrefiner import RefineConfig, Refiner
from samrefiner.cli import main
from samrefiner.models.base import Backend, ImageEmbedding
from samrefiner.testing import TINY_BACKEND_EXTRAS, TINY_BACKENDS

FAMILIES = [
    pytest.param(family, marks=extra_marks(TINY_BACKEND_EXTRAS[family]))
    for family in sorted(TINY_BACKENDS)
]

#: How each family's official predictor maps an image point to its input frame.
SQUARE = {"sam2", "hf_sam2", "hf_sam3_tracker", "hf_edgetam"}

#: The prompt encoder each family calls (hooked to see the coordinates it receives).
PROMPT_ENCODER = {
    "sam": lambda b: b.sam.prompt_encoder,
    "sam_hq": lambda b: b.sam.prompt_encoder,
    "mobile_sam": lambda b: b.sam.prompt_encoder,
    "sam2": lambda b: b.model.sam_prompt_encoder,
    "hf_sam": lambda b: b.model.prompt_encoder,
    "hf_sam_hq": lambda b: b.model.prompt_encoder,
    "hf_sam2": lambda b: b.model.prompt_encoder,
    "hf_sam3_tracker": lambda b: b.model.prompt_encoder,
    "hf_edgetam": lambda b: b.model.prompt_encoder,
}

H, W = 48, 80  # not square, so the two frame conventions differ


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


_CACHE: dict[str, Backend] = {}
_EMBEDDINGS: dict[str, ImageEmbedding] = {}


@pytest.fixture
def backend(family) -> Backend:
    if family not in _CACHE:
        _CACHE[family] = TINY_BACKENDS[family](seed=0, device="cpu")
    return _CACHE[family]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def emb(family, backend, image) -> ImageEmbedding:
    """The float32 embedding of ``image`` (encoded once per family: TinyViT is slow)."""
    if family not in _EMBEDDINGS:
        _EMBEDDINGS[family] = backend.encode(image)
    return _EMBEDDINGS[family]


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    m = np.zeros((3, H, W), dtype=bool)
    m[0, 5:25, 10:40] = True
    m[1, 20:45, 45:75] = True
    m[2, 30:40, 5:20] = True
    return m


def prompts(backend: Backend, b: int = 3) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(7)
    low_h, low_w = backend.low_res_size
    xy = rng.uniform(0, [W - 1, H - 1], (b, 2, 2)).astype(np.float32)
    corners = np.sort(rng.uniform(0, [W - 1, H - 1], (b, 2, 2)), axis=1).reshape(b, 4)
    return {
        "point_coords": torch.from_numpy(xy),
        "point_labels": torch.tensor([[1, 0], [1, -1], [1, 0]][:b]),
        "boxes": torch.from_numpy(corners.astype(np.float32)),
        "mask_input": torch.from_numpy(rng.normal(0, 5, (b, 1, low_h, low_w)).astype(np.float32)),
    }


def test_every_family_names_its_extra():
    assert set(TINY_BACKEND_EXTRAS) == set(TINY_BACKENDS)
    from conftest import EXTRA_MODULES

    assert set(TINY_BACKEND_EXTRAS.values()) - {None} <= set(EXTRA_MODULES)


def test_family_registered_with_builder_signature(family):
    built = TINY_BACKENDS[family](seed=0, device="cpu")
    assert isinstance(built, Backend)
    assert built.device.type == "cpu"
    head = built.iou_head
    assert isinstance(head, torch.nn.Module)


@pytest.mark.extra("adapt")
def test_iou_head_ends_in_the_linear_layer_lora_goes_on(backend):
    from samrefiner.adaption.lora import last_linear_name

    head = backend.iou_head
    out = head.get_submodule(last_linear_name(head))
    assert isinstance(out, torch.nn.Linear)
    assert out.out_features == 4  # one IoU per mask token (SAM's single + 3 multimask)


def test_encode_shapes(backend, emb):
    assert emb.original_size == (H, W)
    assert emb.features.ndim == 4 and emb.features.shape[0] == 1
    assert emb.features.dtype == torch.float32
    frame = backend.frame((H, W))
    assert emb.resized_size == frame.resized_size
    assert frame.low_res_size == backend.low_res_size
    for name, extra in emb.extras.items():
        assert extra.shape[0] == 1 and extra.dtype == torch.float32, name


@pytest.mark.parametrize("multimask", [True, False])
def test_decode_shapes(backend, emb, multimask):
    out = backend.decode(emb, **prompts(backend), multimask_output=multimask)
    c = 3 if multimask else 1
    if getattr(backend, "hq_token_only", False):
        c = 1
    assert out.low_res_logits.shape == (3, c, *backend.low_res_size)
    assert out.iou_predictions.shape == (3, c)
    assert out.low_res_logits.dtype == out.iou_predictions.dtype == torch.float32
    assert torch.isfinite(out.low_res_logits).all() and torch.isfinite(out.iou_predictions).all()


def test_each_prompt_kind_alone(backend, emb):
    p = prompts(backend, 2)
    for kind in (("point_coords", "point_labels"), ("boxes",), ("mask_input",)):
        given = {k: (p[k] if k in kind else None) for k in p}
        out = backend.decode(emb, **given)
        assert out.low_res_logits.shape == (2, 3, *backend.low_res_size), kind


def official_input_coords(family: str, xy: np.ndarray, size: int) -> np.ndarray:
    """Where the family's official predictor puts image points ``xy`` (``K x 2``)."""
    if family in SQUARE:  # SAM2Transforms.transform_coords(normalize=True)
        return xy / np.array([W, H]) * size
    return ResizeLongestSide(size).apply_coords(xy.copy(), (H, W))


def captured_points(family: str, args: tuple, kwargs: dict) -> torch.Tensor:
    if family.startswith("hf_"):
        return kwargs.get("input_points", args[0] if args else None)[:, 0]
    points = kwargs.get("points", args[0] if args else None)
    return points[0]


def test_prompt_transform_lands_where_the_official_predictor_puts_it(family, backend, emb):
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        seen.append(captured_points(family, args, kwargs).detach().clone())

    xy = np.array([[[0.0, 0.0], [W - 1.0, H - 1.0]], [[33.0, 7.0], [12.5, 40.0]]], np.float32)
    handle = PROMPT_ENCODER[family](backend).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        backend.decode(
            emb,
            point_coords=torch.from_numpy(xy),
            point_labels=torch.ones(2, 2, dtype=torch.int64),
            boxes=None,
            mask_input=None,
        )
    finally:
        handle.remove()
    assert len(seen) == 1
    expected = np.stack([official_input_coords(family, p, backend.input_size) for p in xy])
    np.testing.assert_allclose(seen[0].float().numpy(), expected, rtol=1e-5, atol=1e-4)


def test_batch_equals_one_by_one(backend, emb):
    p = prompts(backend)
    batched = backend.decode(emb, **p)
    for i in range(3):
        alone = backend.decode(emb, **{k: v[i : i + 1] for k, v in p.items()})
        torch.testing.assert_close(
            alone.low_res_logits[0], batched.low_res_logits[i], atol=2e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            alone.iou_predictions[0], batched.iou_predictions[i], atol=2e-5, rtol=1e-4
        )


def test_bfloat16_runs(backend, image, emb):
    reference = emb
    emb = backend.encode(image, dtype="bfloat16")
    assert emb.features.dtype == torch.float32
    out = backend.decode(emb, **prompts(backend), dtype="bfloat16")
    assert out.low_res_logits.dtype == torch.float32
    assert torch.isfinite(out.low_res_logits).all()
    ref = backend.decode(reference, **prompts(backend))
    # Same model, lower precision: close to float32 on average, not bit-equal.
    assert (out.low_res_logits - ref.low_res_logits).abs().mean() < 0.1 * (
        ref.low_res_logits.abs().mean() + 1
    )


def test_full_refine_with_elastic_box(backend, image, masks, emb):
    for config in (
        RefineConfig(iterations=2, margin=0.3),
        RefineConfig(iterations=1, selection="stability"),
    ):
        result = Refiner(backend, config).refine(image, masks, embedding=emb)
        assert result.masks.shape == masks.shape and result.masks.dtype == bool
        assert set(result.status) <= {"refined", "collapsed", "converged"}
        assert result.iterations.min() >= 1
        kept = [i for i, s in enumerate(result.status) if s != "collapsed"]
        assert np.isfinite(result.scores[kept]).all()


def test_dataset_command_end_to_end(family, tmp_path, image, masks):
    images, mask_dir, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    mask_dir.mkdir()
    Image.fromarray(image).save(images / "a.png")
    for i, m in enumerate(masks[:2]):
        Image.fromarray(m.astype(np.uint8) * 255).save(mask_dir / f"a-{i}.png")
    builder = TINY_BACKENDS[family]
    spec = f"{builder.__module__}:{builder.__name__}"
    args = ["masks", "--images", str(images), "--masks", str(mask_dir), "-o", str(out)]
    assert main([*args, "--model", spec, "--no-progress", "--iterations", "1"]) == 0
    for i in range(2):
        written = np.asarray(Image.open(out / f"a-{i}.png"))
        assert written.shape == (H, W) and set(np.unique(written)) <= {0, 255}
