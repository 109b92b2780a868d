"""Context-aware elastic box with hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samrefiner import RefineConfig, excavate_prompts
from samrefiner.excavation.elastic_box import EmbeddingSimilarity
from samrefiner.geometry import Frame

SIMILAR = np.array([1.0, 0.0], dtype=np.float32)
OTHER = np.array([0.0, 1.0], dtype=np.float32)


def per_pixel_embedding(similar: np.ndarray) -> np.ndarray:
    """``1 x 2 x 64 x 64`` embedding for a 64 x 64 image: one cell per image pixel."""
    emb = np.where(similar[None], SIMILAR[:, None, None], OTHER[:, None, None])
    return emb[None].astype(np.float32)


def test_each_side_judged_on_its_own_strip():
    # Mask rows / cols 20..39: box side 19, step 1.9 px, so the strips are
    # left cols 18..19, right col 40, top rows 18..19, bottom row 40.
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    similar = mask.copy()
    similar[20:40, 18:20] = True  # left strip: all similar -> grows
    similar[18:20, 20:30] = True  # top strip: 20 of 40 similar (0.5 > 0.3) -> grows
    similar[40, 20:24] = True  # bottom strip: 4 of 20 similar (0.2 <= 0.3) -> stays
    # right strip: nothing similar -> stays
    cfg = RefineConfig(margin=0.3, strength=30.0)
    (p,) = excavate_prompts(mask, cfg, per_pixel_embedding(similar))
    assert p.box.tolist() == [18.0, 18.0, 39.0, 39.0]
    assert p.box_expanded is True
    # A grown box lowers the mask prompt's amplitude to 1.
    assert np.abs(p.mask_logits).max() <= 1.0 + 1e-6

    (q,) = excavate_prompts(mask, cfg.replace(margin=0.6), per_pixel_embedding(similar))
    assert q.box.tolist() == [18.0, 20.0, 39.0, 39.0]  # only the fully similar side grows


def test_strip_outside_image_is_not_tested():
    mask = np.zeros((64, 64), bool)
    mask[1:40, 0:30] = True  # left strip would start left of column 0
    similar = np.ones((64, 64), bool)
    (p,) = excavate_prompts(mask, RefineConfig(margin=0.1), per_pixel_embedding(similar))
    # Left: floor(0 - 2.9) < 0 and top: floor(1 - 3.8) < 0 lie outside the image, so
    # those sides stay; right (29 + 2.9 -> 31) and bottom (39 + 3.8 -> 42) grow.
    assert p.box.tolist() == [0.0, 1.0, 31.0, 42.0]


def test_margin_zero_keeps_tight_box():
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    (p,) = excavate_prompts(mask, RefineConfig(margin=0.0))
    assert p.box.tolist() == [20.0, 20.0, 39.0, 39.0] and not p.box_expanded


@pytest.mark.parametrize("size", [(96, 128), (128, 96)])
def test_similarity_equals_full_upsample(size, rng):
    """The C-free cosine equals the reference's upsample-everything cosine."""
    H, W = size
    frame = Frame.resize_longest_side((H, W))
    emb = rng.standard_normal((1, 8, 64, 64)).astype(np.float32)
    sim = EmbeddingSimilarity(emb, frame)
    ch, cw = frame.embedding_cells((64, 64))
    assert (ch, cw) == ((48, 64) if H < W else (64, 48))
    query = rng.standard_normal(8).astype(np.float32)
    up = F.interpolate(
        torch.from_numpy(emb[:, :, :ch, :cw]), size=(H, W), mode="bilinear", align_corners=False
    )[0]
    up = up / up.norm(dim=0, keepdim=True)
    q = torch.from_numpy(query / np.linalg.norm(query))
    expected = (torch.einsum("chw,c->hw", up, q) > 0.5).numpy()
    got = sim.similar(query, np.arange(H), np.arange(W))
    assert (got != expected).mean() < 1e-3  # equal up to rounding at the threshold


def test_query_of_tiny_mask_falls_back_to_its_cells():
    frame = Frame.resize_longest_side((640, 640))  # 10 px per cell
    emb = np.zeros((1, 2, 64, 64), np.float32)
    emb[0, 0, 3, 4] = 5.0
    sim = EmbeddingSimilarity(emb, frame)
    mask = np.zeros((640, 640), bool)
    mask[33, 44] = True  # between sampled cell centres (nearest resize misses it)
    q = sim.query(mask)
    assert q is not None and q[0] == pytest.approx(5.0)
