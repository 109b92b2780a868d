"""Per-task latency of the Label Studio backend's ``/predict``, cold and warm.

Serves ``samrefiner serve label-studio``'s app (uvicorn, on localhost) with a model of
random weights (``--model``, default ``mobile_sam`` at full size) and posts, for each of
``--images`` shared DAVIS 2016 photographs, one task holding a coarse brush region and a
coarse polygon region (the ground truth dilated / eroded): first on an empty embedding
cache (cold: the image is encoded), then a second task of the same image (warm: its
embedding is reused). Prints the median and the range of the wall time per request, as
Label Studio sees it (HTTP, JSON, image read, refinement, RLE and polygon writing).

    python benchmarks/bench_labelstudio.py [--data ../shared/data] [--model mobile_sam]
        [--images 5] [--device cpu] [--iterations 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import torch

from samrefiner import Refiner, load_model
from samrefiner.config import RefineConfig
from samrefiner.integrations.labelstudio.app import create_app
from samrefiner.integrations.labelstudio.backend import BackendSettings, LabelStudioBackend
from samrefiner.integrations.labelstudio.brush import encode_mask
from samrefiner.integrations.labelstudio.images import ImageSource
from samrefiner.io.images import read_mask
from samrefiner.io.polygons import mask_to_polygons

CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="brush" toName="image"><Label value="object"/></BrushLabels>
<PolygonLabels name="poly" toName="image"><Label value="object"/></PolygonLabels></View>"""


def task(task_id: int, url: str, truth: np.ndarray) -> dict:
    """A task with one coarse brush and one coarse polygon prediction region."""
    height, width = truth.shape
    kernel = np.ones((15, 15), np.uint8)
    grown = cv2.dilate(truth.astype(np.uint8), kernel).astype(bool)
    ring = max(mask_to_polygons(cv2.erode(truth.astype(np.uint8), kernel)).exteriors, key=len)
    base = {"to_name": "image", "original_width": width, "original_height": height}
    result = [
        {**base, "id": "b", "type": "brushlabels", "from_name": "brush",
         "value": {"format": "rle", "rle": encode_mask(grown), "brushlabels": ["object"]}},
        {**base, "id": "p", "type": "polygonlabels", "from_name": "poly",
         "value": {"points": (ring * [100.0 / width, 100.0 / height]).tolist(),
                   "polygonlabels": ["object"]}},
    ]  # fmt: skip
    prediction = {"id": task_id, "model_version": "coarse", "result": result}
    return {"id": task_id, "data": {"image": url}, "annotations": [], "predictions": [prediction]}


def post(url: str, body: dict) -> tuple[float, dict]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.load(response)
    return time.perf_counter() - start, answer


def summary(seconds: list[float]) -> str:
    ms = [1000 * s for s in seconds]
    return f"{statistics.median(ms):8.0f} | {min(ms):6.0f} - {max(ms):6.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default="mobile_sam")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=RefineConfig().iterations)
    args = parser.parse_args()
    import uvicorn

    masks = sorted((args.data / "davis2016" / "masks").glob("*_00000.png"))[: args.images]
    if not masks:
        raise SystemExit(f"no davis2016 masks under {args.data}")
    model = load_model(args.model, pretrained=False, device=args.device)
    backend = LabelStudioBackend(
        Refiner(model, RefineConfig(iterations=args.iterations)),
        args.model,
        BackendSettings(),
        ImageSource(local_files_root=str(args.data)),
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(backend), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    predict = f"http://127.0.0.1:{port}/predict"
    cold, warm = [], []
    try:
        for k, path in enumerate(masks):
            truth = read_mask(path)
            url = f"/data/local-files/?d=davis2016/images/{path.stem}.jpg"
            for times, task_id in ((cold, 2 * k), (warm, 2 * k + 1)):
                body = {"tasks": [task(task_id, url, truth)], "label_config": CONFIG}
                seconds, answer = post(predict, body)
                assert "result" in answer["results"][0], answer["results"][0]
                times.append(seconds)
    finally:
        server.should_exit = True
    threads = torch.get_num_threads()
    print(f"{args.model} (random weights) on {args.device}, {threads} torch threads, "
          f"{args.iterations} iterations, "
          f"{len(masks)} images of {truth.shape[1]} x {truth.shape[0]}, 2 regions per task; "
          f"images encoded {backend.encoded}, embeddings reused {backend.reused}")  # fmt: skip
    print("| /predict, one task | median ms | min - max ms |")
    print("|---|---|---|")
    print(f"| cold (image encoded) | {summary(cold)} |")
    print(f"| warm (embedding reused) | {summary(warm)} |")


if __name__ == "__main__":
    main()
