"""The ``transformers`` video backends (``Sam2VideoModel``, ``Sam3TrackerVideoModel``,
``EdgeTamVideoModel``) at tiny sizes: built from the image models with their weights,
tracking as the transformers API does when called directly, and the whole
``samrefiner video`` command on sparse labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers_video import moving_squares, write_sequence
from samrefiner import testing
from samrefiner.cli import main
from samrefiner.io.label_maps import read_label_map
from samrefiner.video import video_backend_for
from samrefiner.video.hf import VIDEO_CLASSES, HfVideoBackend, video_config

pytestmark = pytest.mark.extra("hf")

KINDS = testing.TINY_HF_VIDEO_KINDS
SEQ = moving_squares(5, (48, 64))


@pytest.mark.parametrize("kind", KINDS)
def test_the_video_model_holds_the_image_models_weights(kind):
    image = getattr(testing, f"tiny_hf_{kind}_video")()
    video = video_backend_for(image)
    assert isinstance(video, HfVideoBackend)
    assert type(video.model).__name__ == VIDEO_CLASSES[type(image.model).__name__]
    ours = video.model.state_dict()
    for name, tensor in image.model.state_dict().items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=0)


def test_a_model_too_narrow_for_the_video_memory_is_refused():
    image = testing.tiny_hf_sam2()  # 32 wide: transformers' memory needs 64 x k, k > 1
    with pytest.raises(ValueError, match="multiple of 64"):
        video_backend_for(image)
    import transformers

    config = video_config(testing.tiny_hf_config("sam2", 128), transformers.Sam2VideoModel)
    assert config.memory_attention_rope_feat_sizes == [16, 16] and config.image_size == 256


def test_sam2_tracking_matches_the_transformers_api_called_directly():
    import transformers

    image = testing.tiny_hf_sam2_video()
    video = video_backend_for(image)
    seeds = {1: {1: SEQ.truth[1][1], 3: SEQ.truth[3][1]}}
    ours = dict(video.track(SEQ.source(), seeds, "both"))

    side = 256
    processor = transformers.Sam2VideoProcessor(
        image_processor=image.image_processor,
        video_processor=transformers.Sam2VideoVideoProcessor(size={"height": side, "width": side}),
        target_size=side,
    )
    model = video.model
    session = processor.init_video_session(video=list(SEQ.frames), inference_device="cpu")
    theirs: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for t in (1, 3):
            processor.add_inputs_to_inference_session(
                session, frame_idx=t, obj_ids=[1], input_masks=[SEQ.truth[t][1]]
            )
            model(inference_session=session, frame_idx=t)
        for reverse in (False, True):
            for out in model.propagate_in_video_iterator(session, reverse=reverse):
                masks = processor.post_process_masks(
                    [out.pred_masks], original_sizes=[list(SEQ.frames[0].shape[:2])]
                )[0]
                theirs.setdefault(int(out.frame_idx), masks[0, 0].numpy().astype(bool))
    assert sorted(ours) == sorted(theirs) == list(range(len(SEQ.frames)))
    for t in ours:
        assert np.array_equal(ours[t][1], theirs[t]), t
    for t in (1, 3):  # a seeded frame's output is its seed
        assert np.array_equal(ours[t][1], SEQ.truth[t][1])


def test_each_frame_is_encoded_once_for_all_objects():
    video = video_backend_for(testing.tiny_hf_sam2_video())
    calls: list[int] = []
    encoder = video.model.vision_encoder
    hook = encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        seeds = {1: {0: SEQ.truth[0][1]}, 2: {0: SEQ.truth[0][2]}}
        frames = dict(video.track(SEQ.source(), seeds, "forward"))
    finally:
        hook.remove()
    assert sorted(frames) == list(range(5)) and set(frames[2]) == {1, 2}
    assert len(calls) == len(SEQ.frames)  # two objects, one encoding per frame


@pytest.mark.parametrize("kind", KINDS)
def test_samrefiner_video_seeds_refined_masks_and_fills_every_frame(kind, tmp_path, monkeypatch):
    from samrefiner.refiner import Refiner

    frames, labels = tmp_path / "frames" / "seq", tmp_path / "labels" / "seq"
    write_sequence(frames, labels, SEQ, every=2)  # labels on frames 0, 2, 4
    refined: list[tuple[np.ndarray, np.ndarray]] = []  # (coarse masks, refined masks)
    seeded: dict[int, dict[int, np.ndarray]] = {}
    refine, seed = Refiner.refine, HfVideoBackend.seed

    def spy_refine(self, image, masks, *args, **kwargs):
        out = refine(self, image, masks, *args, **kwargs)
        refined.append((np.asarray(masks).copy(), np.asarray(out.masks).copy()))
        return out

    def spy_seed(self, sessions, seeds):
        for obj, masks in seeds.items():
            seeded.setdefault(obj, {}).update(masks)
        return seed(self, sessions, seeds)

    monkeypatch.setattr(Refiner, "refine", spy_refine)
    monkeypatch.setattr(HfVideoBackend, "seed", spy_seed)
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    model = ["--model", f"samrefiner.testing:tiny_hf_{kind}_video", "--no-progress"]
    args = [str(tmp_path / "frames"), "--labels", str(tmp_path / "labels"), "-o", str(out)]
    assert main(["video", *args, *model, "--iterations", "1", "--summary", str(summary)]) == 0

    written = sorted(p.name for p in (out / "seq").glob("*.png"))
    assert written == [f"{t:05d}.png" for t in range(5)]  # dense from sparse labels
    for name in written:
        assert read_label_map(out / "seq" / name).shape == (48, 64)
    data = json.loads(summary.read_text())
    sources = data["frame_sources"]
    assert sum(sources.values()) == 2 * 5
    # Frames 1 and 3 have no label map: their objects come from the video model.
    assert sources.get("propagated", 0) + sources.get("absent", 0) >= 4
    assert not any("image-only" in str(v) for v in data.get("extra", {}).values())

    # Every seed is the image refiner's mask for that frame's coarse mask, never the coarse.
    assert seeded and refined
    differs = False
    for obj, masks in seeded.items():
        for t, mask in masks.items():
            assert t in (0, 2, 4)
            coarse = SEQ.truth[t][obj]
            match = [
                r[k]
                for c, r in refined
                for k in range(len(c))
                if c[k].shape == coarse.shape and np.array_equal(c[k], coarse)
            ]
            assert match and any(np.array_equal(mask, m) for m in match), (obj, t)
            differs |= not np.array_equal(mask, coarse)
    assert differs  # the random model changes some mask: seeds are not the coarse masks


def test_memory_weights_are_read_from_a_checkpoint_that_holds_them(tmp_path):
    from samrefiner.video.hf import video_model_from_image

    image = testing.build_tiny_hf_model("sam2", seed=0, width=128)
    saved = testing.build_tiny_hf_video_model("sam2", seed=1)
    with torch.no_grad():  # memory weights other than the fixed-seed ones
        for key, tensor in saved.state_dict().items():
            if key.startswith("memory_attention.") and tensor.is_floating_point():
                tensor.add_(0.5)
    saved.save_pretrained(tmp_path)
    fresh = video_model_from_image(image)
    image.config.name_or_path = str(tmp_path)  # as from_pretrained(folder) sets it
    loaded = video_model_from_image(image)
    memory = [k for k in saved.state_dict() if k.startswith("memory_attention.")]
    assert memory
    for key in memory:
        torch.testing.assert_close(loaded.state_dict()[key], saved.state_dict()[key])
    assert not all(torch.equal(fresh.state_dict()[k], saved.state_dict()[k]) for k in memory)
    for key, tensor in image.state_dict().items():  # the image weights win
        torch.testing.assert_close(loaded.state_dict()[key], tensor, rtol=0, atol=0)


@pytest.mark.extra("ray")
@pytest.mark.usefixtures("local_ray")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_the_ray_engine_writes_the_same_bytes_with_propagation(tmp_path):
    from helpers_runner import tree_bytes

    for k, name in enumerate(("a", "b")):
        seq = moving_squares(3, (48, 64), seed=k)
        write_sequence(tmp_path / "frames" / name, tmp_path / "labels" / name, seq, every=2)
    model = ["--model", "samrefiner.testing:tiny_hf_sam2_video", "--no-progress"]
    args = [str(tmp_path / "frames"), "--labels", str(tmp_path / "labels"), *model]
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        extra = ["--engine", "ray", "--workers", "1"] if engine == "ray" else []
        assert main(["video", *args, "-o", str(out), "--iterations", "1", *extra]) == 0
        outputs[engine] = tree_bytes(out)
    assert outputs["ray"] == outputs["local"] and len(outputs["local"]) == 6
