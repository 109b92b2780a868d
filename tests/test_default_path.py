"""With box input, crop-zoom and the gate off (the defaults), refinement is unchanged.

The reference here is the loop as it was before those features, rebuilt from the public
pieces (excavation, ``Backend.decode``, best predicted IoU, ``paste_mask``): the refiner
must make exactly the same model calls and return the same masks, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from samrefiner import RefineConfig, Refiner
from samrefiner.excavation import Excavator
from samrefiner.postprocess import paste_mask
from samrefiner.types import POINT_PADDING

OFF = {
    "zoom_below": None,
    "zoom_context": 2.0,
    "max_crops": 8,
    "gate_min_score": None,
    "gate_min_coarse_iou": None,
    "gate_max_area_ratio": None,
}


def test_new_fields_default_to_off():
    assert RefineConfig() == RefineConfig(**OFF)
    assert not RefineConfig().zooms and not RefineConfig().gates


class Spy:
    """Records every encode / decode of a backend (arguments as numpy)."""

    def __init__(self, backend, monkeypatch):
        self.encodes: list[tuple[int, ...]] = []
        self.decodes: list[dict] = []
        encode, decode = backend.encode, backend.decode

        def spy_encode(image, dtype="float32"):
            self.encodes.append(image.shape)
            return encode(image, dtype)

        def spy_decode(embedding, **kwargs):
            self.decodes.append(
                {k: v.numpy().copy() if torch.is_tensor(v) else v for k, v in kwargs.items()}
            )
            return decode(embedding, **kwargs)

        monkeypatch.setattr(backend, "encode", spy_encode)
        monkeypatch.setattr(backend, "decode", spy_decode)


def reference_round(backend, embedding, config, masks):
    """One round of the loop as it was: returns (masks, scores, decode arguments)."""
    frame = backend.frame(masks.shape[1:])
    prompts = Excavator(frame, config, embedding.features).many(list(masks))
    batch = config.batch_size("cpu")
    out = np.zeros_like(masks)
    scores = np.zeros(len(masks), np.float32)
    calls = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        points = torch.zeros((len(chunk), 2, 2), dtype=torch.float32)
        labels = torch.full((len(chunk), 2), POINT_PADDING, dtype=torch.int64)
        for row, p in enumerate(chunk):
            points[row, : len(p.points)] = torch.from_numpy(p.points)
            labels[row, : len(p.points)] = torch.from_numpy(p.point_labels)
        kwargs = {
            "point_coords": points,
            "point_labels": labels,
            "boxes": torch.from_numpy(np.stack([p.box for p in chunk])),
            "mask_input": torch.from_numpy(np.stack([p.mask_logits for p in chunk]))[:, None],
            "dtype": "float32",
        }
        calls.append({k: v.numpy().copy() if torch.is_tensor(v) else v for k, v in kwargs.items()})
        decoded = backend.decode(embedding, **kwargs)
        best = decoded.iou_predictions.argmax(dim=1)
        for row in range(len(chunk)):
            paste_mask(decoded.low_res_logits[row, best[row]].numpy(), frame, out[start + row])
            scores[start + row] = decoded.iou_predictions[row, best[row]]
    return out, scores, calls


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_default_path_makes_the_same_model_calls(shared_data, tiny_backend, monkeypatch, margin):
    name = "1001_3iEIq5HBY1s_00002058"
    image = np.asarray(
        Image.open(shared_data / "highres" / "images" / f"{name}.jpg").convert("RGB")
    )
    labels = np.asarray(Image.open(shared_data / "highres" / "masks" / f"{name}.png"))
    ids = [v for v in np.unique(labels) if v != 0][:5]
    masks = np.stack([labels == v for v in ids])
    config = RefineConfig(iterations=1, margin=margin)
    embedding = tiny_backend.encode(image)
    expected, scores, expected_calls = reference_round(tiny_backend, embedding, config, masks)

    spy = Spy(tiny_backend, monkeypatch)
    result = Refiner(tiny_backend, config).refine(image, masks)
    assert spy.encodes == [image.shape]
    assert len(spy.decodes) == len(expected_calls)
    for got, want in zip(spy.decodes, expected_calls, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    np.testing.assert_array_equal(result.masks, expected)
    np.testing.assert_array_equal(result.scores, scores)
    assert not result.zoomed.any() and result.crops == 0
    assert result.gate_reasons == [None] * len(masks)
    assert all("zoomed" not in r and "gate_reason" not in r for r in result.to_records())
