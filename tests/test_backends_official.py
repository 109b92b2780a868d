"""The HQ-SAM and SAM 2.1 backends give what the official predictors give (tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrefiner.postprocess import paste_mask
from samrefiner.testing import tiny_sam2, tiny_sam_hq

IMAGE = np.random.default_rng(2).integers(0, 256, (48, 72, 3), dtype=np.uint8)
POINTS = torch.tensor([[[10.0, 12.0], [60.0, 40.0]], [[5.0, 5.0], [0.0, 47.0]]])
LABELS = torch.tensor([[1, 0], [1, -1]])
BOXES = torch.tensor([[2.0, 3.0, 50.0, 44.0], [0.0, 0.0, 71.0, 47.0]])


@pytest.mark.extra("hq")
def test_hq_backend_matches_official_hq_predictor():
    from segment_anything_hq import SamPredictor

    backend = tiny_sam_hq()
    masks = torch.randn(2, 1, *backend.low_res_size, generator=torch.Generator().manual_seed(0))
    emb = backend.encode(IMAGE)
    got = backend.decode(
        emb, point_coords=POINTS, point_labels=LABELS, boxes=BOXES, mask_input=masks
    )
    predictor = SamPredictor(backend.sam)
    predictor.set_image(IMAGE)
    size = IMAGE.shape[:2]
    _, iou, low_res = predictor.predict_torch(
        predictor.transform.apply_coords_torch(POINTS, size),
        LABELS,
        predictor.transform.apply_boxes_torch(BOXES, size),
        masks,
        multimask_output=True,
        return_logits=True,
        hq_token_only=False,
    )
    torch.testing.assert_close(emb.features, predictor.features)
    # The official predictor returns the best of our three candidates (each + HQ mask).
    best = got.iou_predictions.argmax(dim=1)
    rows = torch.arange(2)
    torch.testing.assert_close(got.low_res_logits[rows, best], low_res[:, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.iou_predictions[rows, best], iou[:, 0])


@pytest.mark.extra("sam2")
def test_sam2_backend_matches_official_image_predictor():
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    backend = tiny_sam2()
    masks = torch.randn(2, 1, *backend.low_res_size, generator=torch.Generator().manual_seed(0))
    emb = backend.encode(IMAGE)
    got = backend.decode(
        emb, point_coords=POINTS, point_labels=LABELS, boxes=BOXES, mask_input=masks
    )
    predictor = SAM2ImagePredictor(backend.model)
    predictor._bb_feat_sizes = backend.feature_sizes  # the predictor assumes 1024 px
    predictor.set_image(IMAGE)
    mask_input, coords, labels, boxes = predictor._prep_prompts(
        POINTS.numpy(), LABELS.numpy(), BOXES.numpy(), masks.numpy(), normalize_coords=True
    )
    image_masks, iou, low_res = predictor._predict(
        coords, labels, boxes, mask_input, multimask_output=True, return_logits=True
    )
    torch.testing.assert_close(emb.features, predictor._features["image_embed"])
    torch.testing.assert_close(got.low_res_logits.clamp(-32, 32), low_res, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.iou_predictions, iou, atol=1e-5, rtol=1e-4)
    # The frame carries the low-res logits back to the image as the predictor does.
    frame = backend.frame(IMAGE.shape[:2])
    out = np.zeros(IMAGE.shape[:2], dtype=bool)
    for b in range(2):
        for c in range(3):
            paste_mask(got.low_res_logits[b, c].numpy(), frame, out)
            expected = (image_masks[b, c] > 0).numpy()
            assert np.count_nonzero(out != expected) <= 2, (b, c)
