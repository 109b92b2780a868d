"""Wall time per image of the label path on this machine: a full-size Grounding DINO
(Swin-T + BERT-base, the 'tiny' checkpoint's architecture) with random weights, then the
SAM-family model (``mobile_sam``, random weights) refining each box.

Random weights make the detections meaningless (their number is fixed by
``--max-detections`` at a zero threshold): this measures cost, never quality. The
tokenizer is the tiny offline one of :mod:`samrefiner.testing` (the class names are a few
tokens either way). Prints the detector's and the refiner's seconds per image (library
calls), and the ``samrefiner label`` command's wall time per image (its summary).

    python benchmarks/bench_label.py [--data ../shared/data] [--model mobile_sam]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from samrefiner import RefineConfig, Refiner, load_model
from samrefiner.cli import main
from samrefiner.detectors import DetectSettings, load_detector
from samrefiner.io.images import read_image


def write_grounding_dino_tiny(folder: Path) -> Path:
    """A full-size Grounding DINO tiny config and a processor (no weights) in ``folder``."""
    import transformers

    from samrefiner.testing import _tiny_bert_tokenizer

    config = transformers.GroundingDinoConfig()  # Swin-T backbone, BERT-base text encoder
    config.architectures = ["GroundingDinoForObjectDetection"]
    config.save_pretrained(folder)
    processor = transformers.GroundingDinoProcessor(
        image_processor=transformers.GroundingDinoImageProcessor(),  # 800 / 1333 px
        tokenizer=_tiny_bert_tokenizer(),
    )
    processor.save_pretrained(folder)
    return folder


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", default="labelme_voc2011/images", help="folder under --data")
    parser.add_argument("--model", default="mobile_sam")
    parser.add_argument("--classes", default="person,dog,car")
    parser.add_argument("--max-detections", type=int, default=10)
    args = parser.parse_args(argv)
    images = args.data / args.images
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    classes = args.classes.split(",")
    settings = DetectSettings(0.0, 0.0, nms_iou=1.0, max_detections=args.max_detections)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_grounding_dino_tiny(Path(tmp) / "gdino")
        start = time.perf_counter()
        detector = load_detector(folder, pretrained=False, device="cpu")
        load_s = time.perf_counter() - start
        params = sum(p.numel() for p in detector.model.parameters()) / 1e6
        refiner = Refiner(load_model(args.model, pretrained=False, device="cpu"), RefineConfig())
        detect_s = refine_s = 0.0
        for path in paths:
            image = read_image(path)
            start = time.perf_counter()
            found = detector.detect(image, classes, settings)
            detect_s += time.perf_counter() - start
            start = time.perf_counter()
            refiner.refine(image, boxes=found.boxes)
            refine_s += time.perf_counter() - start
        out, summary = Path(tmp) / "labels.json", Path(tmp) / "summary.json"
        code = main(
            [
                "label",
                str(images),
                "--classes",
                args.classes,
                "-o",
                str(out),
                "--detector",
                str(folder),
                "--random-detector-weights",
                "--model",
                args.model,
                "--random-weights",
                "--device",
                "cpu",
                "--box-threshold",
                "0",
                "--text-threshold",
                "0",
                "--nms-iou",
                "1",
                "--max-detections",
                str(args.max_detections),
                "--no-progress",
                "--summary",
                str(summary),
            ]
        )
        if code != 0:
            raise SystemExit(code)
        wall = json.loads(summary.read_text())["wall_time_s"]
        n = len(paths)
        print(f"CPU threads: {torch.get_num_threads()}; images: {n} from {images}")
        print(f"detector: Grounding DINO tiny, random weights, {params:.0f} M parameters")
        print(f"  (built in {load_s:.1f} s); refiner: {args.model}, random weights")
        print(f"detections per image: {args.max_detections}")
        print("| step | s / image |")
        print("|---|---|")
        print(f"| detect (library) | {detect_s / n:.2f} |")
        print(f"| refine boxes (library) | {refine_s / n:.2f} |")
        print(f"| samrefiner label, whole run | {wall / n:.2f} |")


if __name__ == "__main__":
    main_()
