"""Images/s of the dataset runner: local engine vs Ray (1 and 2 actors), and encoder-only
vs the whole ``coco`` run on one device.

Builds a COCO file from the first ``--images`` pictures of the shared data (coarse masks:
each ground-truth object dilated by 3 px), then

* ``--mode engines``: runs it with the local engine and with ``--engine ray`` for each
  ``--actors`` count, and prints images/s per engine: *steady* (first to last finished
  image: the engine's throughput) and *total* (whole call, with Ray's start, actor start
  and model load per actor). Ray with 1 actor vs local shows the engine's own overhead;
* ``--mode encoder``: images/s of the encoder alone (``encode_batch`` on the same
  images, ``--encoder-batch`` at a time) vs the whole local-engine run (*steady*: once
  the first encoder group has finished, to the last image; *total*: from the run's
  start, model loaded before), and their ratio (total, which counts the pipeline's
  start: make the run long with ``--repeat``; the target is >= 0.9 on a GPU), for
  each ``--refine-threads`` (0: one image after another; N: the encoder runs ahead
  while N lanes refine, see ``runner/engines/lanes.py``).

``--simulate-device ENCODER_MS DECODER_MS`` replaces the model by a stand-in device, for
machines without a GPU: no model compute runs; each call holds the GIL for
``--simulate-host-ms`` (the Python that launches a real model's kernels), then each
encoded image holds the simulated device for ``ENCODER_MS`` and each decoder call for
``DECODER_MS``, one piece of work (at most 2 ms, a kernel) at a time, while the calling
thread waits with the GIL released, as a thread waiting for a GPU does. Candidates are
object-sized (the prompt's own mask, shifted). Everything else (decoding images and
masks, prompt mining, pasting, writing) is real: it shows whether the runner hides its
CPU work behind the device's.

Random weights (``--random-weights``, the default) cost what trained ones do. Examples::

    # CPU, quick check of the script (tiny model)
    python benchmarks/bench_engines.py --model samrefiner.testing:tiny_sam --images 6
    # the engines on a quiet machine, ViT-B on the CPU
    python benchmarks/bench_engines.py --model sam_vit_b --images 16 --iterations 1
    # one GPU: encoder-only vs the whole command, ViT-H in bfloat16, without and with lanes
    python benchmarks/bench_engines.py --mode encoder --device cuda --dtype bfloat16 \\
        --model sam_vit_h --images 64 --repeat 4 --refine-threads 0 4
    # no GPU: the same pipeline against a simulated device (ViT-H bf16 on an H200)
    python benchmarks/bench_engines.py --mode encoder --model samrefiner.testing:tiny_sam \\
        --simulate-device 47.6 2 --encoder-batch 8 --images 64 --repeat 8 \\
        --refine-threads 0 1 2 4
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SAMREFINER_DATA", REPO.parent / "shared" / "data"))


def build_coco(data: Path, count: int, root: Path, repeat: int = 1) -> tuple[Path, Path]:
    """A COCO file of the first ``count`` images of the manifest (all images when fewer),
    listed ``repeat`` times (as distinct image entries: a longer run, so that the start
    of the pipeline weighs less); returns ``(annotations, images_dir)``: images are
    referred to inside ``data``."""
    from PIL import Image
    from scipy import ndimage

    from samrefiner.io.coco import encode_rle

    rows = (data / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    images, annotations = [], []
    for image_id, row in enumerate(rows[:count] * repeat, start=1):
        image_rel, mask_rel = row.split("\t")[4].split(";")
        ids = np.asarray(Image.open(data / mask_rel))
        if ids.ndim == 3:
            ids = ids[..., 0]
        h, w = ids.shape
        images.append({"id": image_id, "file_name": image_rel, "width": w, "height": h})
        for value in (v for v in np.unique(ids) if v != 0):
            coarse = ndimage.binary_dilation(ids == value, iterations=3)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": encode_rle(coarse),
                    "area": float(coarse.sum()),
                    "bbox": [0, 0, 1, 1],
                    "iscrowd": 0,
                }
            )
    path = root / "coarse.json"
    categories = [{"id": 1, "name": "object"}]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path, data


#: This folder, captured by value when the factory is pickled to a Ray actor.
BENCH_DIR = str(Path(__file__).resolve().parent)


#: Longest piece of simulated device work that holds the device (ms).
SLICE_MS = 2.0


class _FairDevice:
    """A simulated device that runs one piece of work at a time, in the order the pieces
    come (first come, first served: a thread that had a piece does not go before one
    that waits, as with a plain lock)."""

    def __init__(self) -> None:
        self.turns = threading.Condition()
        self.waiting: collections.deque[object] = collections.deque()

    def run(self, seconds: float) -> None:
        ticket = object()
        with self.turns:
            self.waiting.append(ticket)
            while self.waiting[0] is not ticket:
                self.turns.wait()
        time.sleep(seconds)  # the GIL is free while the device works
        with self.turns:
            self.waiting.popleft()
            self.turns.notify_all()


def simulated_device(backend, encoder_ms: float, decoder_ms: float, host_ms: float):
    """Wrap ``backend``: a device that does one piece of work at a time, instead of the
    model's compute (see the module's docstring, ``--simulate-device``).

    No model compute runs: every image gets the same feature map (the backend's, of the
    first image), and the decoder returns empty candidates with fixed predicted IoUs,
    which the object-sized stand-in (``bench_core.object_sized_outputs``) replaces by
    object-sized ones. Each call first holds the GIL for ``host_ms`` (the Python that
    launches a real model's kernels), then waits with the GIL released while the device
    is busy: ``encoder_ms`` per image encoded, ``decoder_ms`` per decoder call, in
    slices of at most :data:`SLICE_MS` between which other threads' work gets the device.
    """
    import torch

    from samrefiner.models.base import Backend, Decoded, ImageEmbedding

    device = _FairDevice()
    features: list[torch.Tensor] = []

    def launch() -> None:  # Python work: holds the GIL
        end = time.perf_counter() + host_ms / 1000.0
        while time.perf_counter() < end:
            pass

    def busy(milliseconds: float) -> None:  # device work: the GIL is free
        # In kernel-sized slices: a GPU runs other streams' kernels between an encoder
        # pass's kernels, not only after the whole pass.
        left = milliseconds
        while left > 0:
            piece = min(left, SLICE_MS)
            device.run(piece / 1000.0)
            left -= piece

    class Simulated(Backend):
        name = f"{backend.name}+simulated-device"
        device = property(lambda self: backend.device)
        input_size = property(lambda self: backend.input_size)
        low_res_size = property(lambda self: backend.low_res_size)

        def frame(self, original_size):
            return backend.frame(original_size)

        def _embedding(self, image) -> ImageEmbedding:
            if not features:
                features.append(backend.encode(image).features)
            size = image.shape[:2]
            return ImageEmbedding(features[0], size, backend.frame(size).resized_size)

        def encode(self, image, dtype="float32"):
            return self.encode_batch([image], dtype)[0]

        def encode_batch(self, images, dtype="float32"):
            embeddings = [self._embedding(image) for image in images]
            launch()
            busy(encoder_ms * len(images))
            return embeddings

        def decode(self, embedding, *, point_coords, point_labels, boxes, mask_input, **kw):
            given = [t for t in (mask_input, boxes, point_coords) if t is not None]
            count = len(given[0])
            launch()
            busy(decoder_ms)
            logits = torch.zeros((count, 3, *backend.low_res_size))
            iou = torch.tensor([[0.9, 0.8, 0.7]]).expand(count, 3).contiguous()
            return Decoded(low_res_logits=logits, iou_predictions=iou)

    return Simulated()


def make_refiner(
    model: str,
    device: str | None,
    dtype: str,
    iterations: int,
    random: bool,
    object_sized: bool = False,
    simulate: tuple[float, float, float] | None = None,
):
    from samrefiner import RefineConfig, Refiner
    from samrefiner.models import load_model

    if random:
        # Every process (the driver, each Ray actor) must build the same random weights,
        # or the engines' outputs could not be compared.
        import torch

        torch.manual_seed(0)
    backend = load_model(model, pretrained=not random, device=device)
    if simulate is not None:
        backend = simulated_device(backend, *simulate)
    if object_sized:
        # Random weights give frame-sized masks that a trained model does not: keep the
        # real decoder's compute but object-sized candidates (bench_core.py).
        if BENCH_DIR not in sys.path:
            sys.path.insert(0, BENCH_DIR)
        from bench_core import object_sized_outputs

        backend = object_sized_outputs(backend)
    return Refiner(backend, RefineConfig(iterations=iterations, dtype=dtype))


class Timed:
    """``on_record`` hook: time of every finished image."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, record) -> None:
        self.times.append(time.perf_counter())

    def steady(self, fill: int = 1) -> float:
        """Images/s once the first ``fill`` images have finished (the pipeline is full),
        to the last: ``(n - fill) / (t[n-1] - t[fill-1])``. With ``fill`` = the encoder
        batch, images that finish in bursts of a group are not overrated."""
        if len(self.times) <= fill:
            return float("nan")
        return (len(self.times) - fill) / (self.times[-1] - self.times[fill - 1])


def simulation(args) -> tuple[float, float, float] | None:
    """``(encoder_ms, decoder_ms, host_ms)`` of ``--simulate-device``, or None."""
    if args.simulate_device is None:
        return None
    return (*args.simulate_device, args.simulate_host_ms)


def run_engine(
    args,
    annotations: Path,
    images: Path,
    out: Path,
    actors: int | None,
    refine_threads: int | None = None,
) -> dict:
    """One run (``actors`` None: the local engine); images/s steady and total."""
    from samrefiner.io.coco import load_coco
    from samrefiner.runner import CocoDataset, RunOptions, RunState, run_dataset

    dataset = CocoDataset(load_coco(annotations), images, out)
    state = RunState(out)
    state.start({"bench": True}, resume=False)
    timed = Timed()
    factory: Callable = functools.partial(  # pickled to each Ray actor
        make_refiner,
        args.model,
        args.device,
        args.dtype,
        args.iterations,
        args.random_weights,
        # The object-sized stand-in shifts each call's masks by the call count, which
        # differs between actors: the engines comparison uses the model's own outputs.
        args.outputs == "object-sized" and args.random_weights and args.mode == "encoder",
        simulation(args),
    )
    fill = 1
    if actors is None:
        from samrefiner.runner.engines.steps import device_type, encoder_batch_for

        refiner = factory()
        fill = encoder_batch_for(device_type(refiner), args.encoder_batch)
        start = time.perf_counter()
        options = RunOptions(
            progress=False, encoder_batch=args.encoder_batch, refine_threads=refine_threads
        )
        summary = run_dataset(dataset, refiner, state, options, on_record=timed)
    else:
        from samrefiner.runner.engines.ray import RayOptions, run_dataset_ray

        options = RayOptions(
            workers=actors,
            num_gpus_per_worker=args.gpus_per_actor,
            cpus_per_worker=args.cpus_per_actor,
            progress=False,
        )
        start = time.perf_counter()
        summary = run_dataset_ray(
            dataset,
            factory,
            state,
            options,
            encoder_batch=args.encoder_batch,
            refine_threads=refine_threads,
            on_record=timed,
        )
    total = time.perf_counter() - start
    state.remove()
    return {
        "images": summary.images_total,
        "masks": summary.masks_refined,
        "steady": timed.steady(fill),
        "total": summary.images_total / total,
    }


def differences(reference: Path, other: Path) -> str:
    """ "" when the files are byte-identical, else what differs."""
    if reference.read_bytes() == other.read_bytes():
        return ""
    a, b = (json.loads(p.read_text())["annotations"] for p in (reference, other))
    ids = [x["id"] for x, y in zip(a, b, strict=True) if x != y]
    fields = sorted({k for x, y in zip(a, b, strict=True) for k in x if x.get(k) != y.get(k)})
    first = next((x, y) for x, y in zip(a, b, strict=True) if x != y)
    detail = {k: (first[0][k], first[1][k]) for k in fields if k != "segmentation"}
    return f"DIFFERS: annotations {ids[:5]}, fields {fields} {detail}"


def encoder_only(args, annotations: Path, images: Path) -> float:
    """Images/s of the encoder alone on the run's images (decoded beforehand)."""
    import torch

    from samrefiner.io.images import read_image
    from samrefiner.runner.engines.steps import device_type, encoder_batch_for

    refiner = make_refiner(
        args.model,
        args.device,
        args.dtype,
        args.iterations,
        args.random_weights,
        False,
        simulation(args),
    )
    entries = json.loads(annotations.read_text())["images"]
    pictures = [read_image(images / e["file_name"]) for e in entries]
    batch = encoder_batch_for(device_type(refiner), args.encoder_batch)
    sync = torch.cuda.synchronize if refiner.model.device.type == "cuda" else (lambda: None)
    refiner.encode_batch(pictures[:batch])  # warm-up (kernels, allocator)
    sync()
    start = time.perf_counter()
    for k in range(0, len(pictures), batch):
        embeddings = refiner.encode_batch(pictures[k : k + batch])
        del embeddings
    sync()
    return len(pictures) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("engines", "encoder"), default="engines")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=16, help="images of the dataset")
    parser.add_argument(
        "--repeat", type=int, default=1, help="list the images this many times (a longer run)"
    )
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument(
        "--outputs",
        choices=("model", "object-sized"),
        default="object-sized",
        help="candidates of the model itself, or object-sized ones (default, --mode encoder only; "
        "random weights "
        "give frame-sized masks a trained model does not: see bench_core.py; ignored with "
        "--trained)",
    )
    parser.add_argument("--encoder-batch", type=int, default=None, help="default: automatic")
    parser.add_argument(
        "--trained", dest="random_weights", action="store_false", help="load the checkpoint"
    )
    parser.add_argument("--actors", type=int, nargs="*", default=[1, 2], help="Ray actors")
    parser.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--gpus-per-actor", type=float, default=None)
    parser.add_argument(
        "--refine-threads",
        type=int,
        nargs="*",
        default=[None],
        help="--mode encoder: one whole run per value (default: automatic)",
    )
    parser.add_argument(
        "--simulate-device",
        type=float,
        nargs=2,
        default=None,
        metavar=("ENCODER_MS", "DECODER_MS"),
        help="a simulated device instead of the model (see the module's docstring)",
    )
    parser.add_argument(
        "--simulate-host-ms",
        type=float,
        default=1.0,
        help="with --simulate-device: Python time per model call, GIL held (default: 1)",
    )
    args = parser.parse_args(argv)
    if args.simulate_device and (args.mode != "encoder" or args.outputs != "object-sized"):
        parser.error("--simulate-device goes with --mode encoder --outputs object-sized")
    if not (args.data / "MANIFEST.tsv").is_file():
        parser.error(f"no shared data at {args.data} (set --data or SAMREFINER_DATA)")

    work = Path(tempfile.mkdtemp(prefix="bench_engines_"))
    try:
        annotations, images = build_coco(args.data, args.images, work, args.repeat)
        print(f"model {args.model}, device {args.device or 'auto'}, dtype {args.dtype}, ", end="")
        print(f"iterations {args.iterations}, encoder batch {args.encoder_batch or 'auto'}", end="")
        if args.simulate_device:
            encoder_ms, decoder_ms = args.simulate_device
            print(
                f", simulated device: {encoder_ms:g} ms/image encoded, {decoder_ms:g} ms/decode,"
                f" {args.simulate_host_ms:g} ms host per call"
            )
        else:
            print()
        if args.mode == "encoder":
            encoder = encoder_only(args, annotations, images)
            print(f"{'run':<36}{'steady img/s':>13}{'total img/s':>13}{'/ encoder':>11}")
            print(f"{'encoder only':<36}{encoder:>13.3f}{'':>13}{1:>11.2f}")
            for lanes in args.refine_threads:
                out = work / f"local{lanes}.json"
                whole = run_engine(args, annotations, images, out, None, lanes)
                name = f"coco, refine threads {'auto' if lanes is None else lanes}"
                ratio = whole["total"] / encoder
                print(f"{name:<36}{whole['steady']:>13.3f}{whole['total']:>13.3f}{ratio:>11.2f}")
            return 0
        rows = [("local", run_engine(args, annotations, images, work / "local.json", None))]
        import ray

        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
        try:
            for actors in args.actors:
                out = work / f"ray{actors}.json"
                row = run_engine(args, annotations, images, out, actors)
                row["same"] = differences(work / "local.json", out)
                rows.append((f"ray, {actors} actor(s)", row))
        finally:
            ray.shutdown()
        first = rows[0][1]
        print(f"{rows[0][1]['images']} images, {first['masks']} masks")
        print(f"{'engine':<22}{'steady img/s':>14}{'total img/s':>13}{'vs local':>10}  output")
        for name, row in rows:
            ratio = row["steady"] / first["steady"]
            same = "" if "same" not in row else (row["same"] or "identical")
            print(f"{name:<22}{row['steady']:>14.3f}{row['total']:>13.3f}{ratio:>9.2f}x  {same}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
