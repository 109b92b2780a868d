"""Training an IoU adapter (SAMRefiner++) on images and their coarse masks, no labels.

1. **Prepare**: each image is encoded once (through the :class:`EmbeddingCache`) and every
   coarse mask is prompted with the training prompts (box only by default). The decoder
   returns three candidates; each is pasted at image size as the refiner does and
   compared with the coarse mask: the one with the highest IoU is the target. The IoU
   head's input is recorded (see :mod:`samrefiner.adaption.lora`).
2. **Train**: the decoder is frozen and nothing but the IoU head depends on the LoRA, so
   every epoch runs only the head on the recorded inputs: objects in a seeded order, the
   margin ranking loss between the target's predicted IoU and each other candidate's
   (summed, divided by ``accumulate``), one SGD step per ``accumulate`` objects. After
   each step the state is saved, so a killed run resumes where it stopped and ends with
   the same weights as an uninterrupted one. A step whose loss or weights are not finite
   stops the run (:class:`TrainingDiverged`): no adapter is written.
3. **Report**: top-1 agreement (predicted-best == coarse-best) before and after, on the
   training images and on the held-out ones; with ground truth also top-1 accuracy
   (predicted-best == GT-best, with the refinement's first-round prompts) and the mean IoU
   of the fully refined masks, before and after.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samrefiner.adaption.adapter import INFO_FILE, AdapterInfo, check_weights, save_adapter
from samrefiner.adaption.cache import EmbeddingCache
from samrefiner.adaption.data import Sample, Source
from samrefiner.adaption.fingerprint import image_digest, model_fingerprint
from samrefiner.adaption.lora import (
    AdaptionError,
    adapter_disabled,
    attach_lora,
    decode_recording,
    head_iou,
    load_lora_state,
    lora_layer,
    lora_parameters,
    lora_state,
    require_head,
)
from samrefiner.adaption.settings import AdaptConfig
from samrefiner.config import RefineConfig
from samrefiner.excavation import Excavator
from samrefiner.io.atomic import atomic_write, remove_stale_temporaries
from samrefiner.io.masks import mask_iou
from samrefiner.models.base import Backend, ImageEmbedding
from samrefiner.models.registry import load_tensor_file
from samrefiner.postprocess import paste_mask
from samrefiner.refiner import Refiner

log = logging.getLogger("samrefiner.adaption")

CHECKPOINT_FILE = "checkpoint.pt"
TRAIN, HELD_OUT = "train", "held_out"


@dataclass
class ObjectFeatures:
    """What training and the report need of one object, recorded once.

    Attributes:
        key: its image.
        head_input: ``1 x ...`` IoU-head input under the training prompts.
        columns: ``C`` head-output columns of the candidates.
        coarse_iou: ``C`` IoU of each candidate with the coarse mask.
        gt_input / gt_columns / gt_iou: the same under the refinement's first-round
            prompts, with IoUs against the ground truth (None without ground truth).
    """

    key: str
    head_input: torch.Tensor
    columns: list[int]
    coarse_iou: np.ndarray
    gt_input: torch.Tensor | None = None
    gt_columns: list[int] | None = None
    gt_iou: np.ndarray | None = None

    @property
    def target(self) -> int:
        """The candidate that agrees best with the coarse mask (first on ties)."""
        return int(np.argmax(self.coarse_iou))


class TrainingDiverged(AdaptionError):
    """An optimiser step gave a NaN or infinite loss or LoRA weight: training stopped.

    Attributes:
        epoch: the epoch of that step (from 1).
        step: the optimiser step (from 1), of ``total``.
        loss: the step's summed loss.
    """

    def __init__(self, where: Path, epoch: int, step: int, total: int, loss: float, lr: float):
        super().__init__(
            f"{where}: training diverged at epoch {epoch}, step {step} of {total} (loss "
            f"{loss:.4g}): the adapter's weights are no longer finite, so no adapter was "
            f"written; lower the learning rate (now {lr:g}) and run again"
        )
        self.epoch, self.step, self.total, self.loss = epoch, step, total, loss


@dataclass
class StepInfo:
    """Passed to the ``on_step`` callback after each optimiser step (and save)."""

    step: int
    total: int
    loss: float
    lr: float


@dataclass
class TrainResult:
    """Outcome of :func:`train_adapter`.

    Attributes:
        path: the adapter folder.
        info: what was written to its ``adapter.json`` (the report included).
        losses: the summed loss of every optimiser step, in order.
    """

    path: Path
    info: AdapterInfo
    losses: list[float] = field(default_factory=list)


def split_keys(keys: list[str], share: float, seed: int) -> set[str]:
    """The held-out keys: ``round(share * len(keys))`` of them (fewer than all), seeded."""
    if share <= 0 or len(keys) < 2:
        return set()
    count = min(math.floor(share * len(keys) + 0.5), len(keys) - 1)
    order = np.random.default_rng(seed).permutation(len(keys))
    return {keys[i] for i in order[:count]}


def _prompts(
    backend: Backend, cfg: RefineConfig, embedding: ImageEmbedding, masks: np.ndarray
) -> list[Any]:
    frame = backend.frame(embedding.original_size)
    return Excavator(frame, cfg, embedding.features).many(list(masks), cfg.thread_count())


def record_candidates(
    backend: Backend,
    cfg: RefineConfig,
    embedding: ImageEmbedding,
    masks: np.ndarray,
    references: list[np.ndarray],
) -> list[tuple[torch.Tensor, list[int], np.ndarray]]:
    """Decode the first round of ``cfg`` for each (non-empty) mask; record the head input.

    Returns, per mask: ``(head input 1 x D, C columns, C IoUs of the candidates with the
    mask's reference)`` where the candidates are pasted at image size as the refiner
    pastes them.
    """
    refiner = Refiner(backend, cfg)
    frame = backend.frame(embedding.original_size)
    prompts = _prompts(backend, cfg, embedding, masks)
    batch = cfg.batch_size(backend.device.type)
    pasted = np.zeros(embedding.original_size, dtype=bool)
    out = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        call = decode_recording(
            backend, lambda chunk=chunk: refiner.decode_prompts(embedding, chunk), cfg.dtype
        )
        logits = call.decoded.low_res_logits.cpu().numpy()
        for row in range(len(chunk)):
            reference = references[start + row]
            ious = np.zeros(logits.shape[1], dtype=np.float64)
            for c in range(logits.shape[1]):
                paste_mask(logits[row, c], frame, pasted)
                ious[c] = mask_iou(pasted, reference)
            out.append((call.head_input[row : row + 1].cpu(), call.columns[row], ious))
    return out


def _usable(sample: Sample) -> bool:
    """An image with at least one non-empty coarse mask (others are not trained on)."""
    return any(mask.any() for mask in sample.masks)


#: ``encoder(keys, fingerprint) -> count`` puts the embeddings of the images ``keys`` (of
#: the run's source, under the model fingerprint ``fingerprint``, in the run's precision)
#: into the run's :class:`EmbeddingCache` somewhere else, e.g. on the actors of a Ray
#: cluster (:func:`samrefiner.adaption.ray_embed.encode_on_ray`); returns how many it
#: encoded (not found in the cache).
Encoder = Callable[[list[str], str], int]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block (the previous count is restored).

    Training and scoring run only the IoU head on ``B x D`` rows: on such small matrices
    thread start-up and synchronisation cost more than the work, several times over when
    the machine is busy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ranking_loss(iou: torch.Tensor, targets: list[int], margin: float) -> torch.Tensor:
    """Sum over objects and non-target candidates of ``max(0, margin - (iou_t - iou_o))``.

    Args:
        iou: ``B x C`` predicted IoUs.
        targets: ``B`` target candidates.
    """
    total = iou.new_zeros(())
    for row, t in enumerate(targets):
        others = [c for c in range(iou.shape[1]) if c != t]
        x1 = iou[row, t].expand(len(others))
        x2 = iou[row, others]
        total = total + torch.nn.functional.margin_ranking_loss(
            x1, x2, torch.ones_like(x1), margin=margin, reduction="sum"
        )
    return total


class Trainer:
    """Trains an IoU adapter for ``backend`` (which carries it afterwards).

    Args:
        backend: the base model (without an adapter).
        config: training settings.
        cache: embedding cache (default: the user cache folder).
        eval_config: refinement used for the ground-truth figures (default
            :class:`RefineConfig`'s defaults).
        progress: show progress bars.
    """

    def __init__(
        self,
        backend: Backend,
        config: AdaptConfig | None = None,
        *,
        cache: EmbeddingCache | None = None,
        eval_config: RefineConfig | None = None,
        progress: bool = False,
    ) -> None:
        require_head(backend)
        self.backend = backend
        self.config = config or AdaptConfig()
        self.cache = cache or EmbeddingCache()
        self.eval_config = (eval_config or RefineConfig()).replace(dtype=self.config.dtype)
        self.progress = progress
        self.fingerprint = model_fingerprint(backend)
        self.timings: dict[str, float] = {"encode": 0.0, "prepare": 0.0, "train": 0.0}
        self.encoded = 0

    # -- preparation ------------------------------------------------------------------

    def _embed(self, image: np.ndarray) -> ImageEmbedding:
        start = time.perf_counter()
        misses = self.cache.misses
        embedding = self.cache.encode(self.backend, image, self.config.dtype, self.fingerprint)
        if self.cache.misses > misses:
            self.encoded += 1
            self.timings["encode"] += time.perf_counter() - start
        return embedding

    def cache_key(self, image: np.ndarray) -> str:
        """The embedding cache's key of ``image`` for this model and precision."""
        return self.cache.key(self.backend, self.fingerprint, image, self.config.dtype)

    def uncached(self, source: Source, keys: list[str]) -> list[str]:
        """The images of ``keys`` that :meth:`prepare` would encode: usable ones whose
        embedding is not in the cache (each image is read to find its key)."""
        return [
            key
            for key in keys
            if (sample := source.load(key)) is not None
            and _usable(sample)
            and not self.cache.path(self.cache_key(sample.image)).is_file()
        ]

    def encode_elsewhere(self, source: Source, keys: list[str], encoder: Encoder) -> None:
        """Have ``encoder`` put the embeddings :meth:`prepare` needs into the cache first
        (e.g. on a cluster); they count as this run's encodings."""
        start = time.perf_counter()
        todo = self.uncached(source, keys)
        if todo:
            self.encoded += encoder(todo, self.fingerprint)
            self.timings["encode"] += time.perf_counter() - start

    def prepare(
        self, source: Source, keys: list[str]
    ) -> tuple[list[ObjectFeatures], str, list[str]]:
        """Record every object of ``keys``; returns ``(features, data digest, used keys)``."""
        from tqdm import tqdm

        features: list[ObjectFeatures] = []
        digest = hashlib.sha256()
        used = []
        for key in tqdm(keys, desc="encoding", unit="image", disable=not self.progress):
            sample = source.load(key)
            if sample is None or not _usable(sample):
                continue
            keep = [k for k in range(len(sample.masks)) if sample.masks[k].any()]
            used.append(key)
            masks = sample.masks[keep]
            digest.update(f"{key}|{image_digest(sample.image)}|".encode())
            digest.update(np.packbits(masks).tobytes())
            embedding = self._embed(sample.image)
            start = time.perf_counter()
            recorded = record_candidates(
                self.backend, self.config.prompts, embedding, masks, list(masks)
            )
            objects = [ObjectFeatures(key, x, cols, ious) for x, cols, ious in recorded]
            if sample.gt is not None:
                self._record_gt(sample, keep, embedding, objects)
            features.extend(objects)
            self.timings["prepare"] += time.perf_counter() - start
        return features, digest.hexdigest(), used

    def _record_gt(
        self,
        sample: Sample,
        keep: list[int],
        embedding: ImageEmbedding,
        objects: list[ObjectFeatures],
    ) -> None:
        assert sample.gt is not None
        rows = [r for r, k in enumerate(keep) if sample.gt[k] is not None]
        if not rows:
            return
        masks = sample.masks[[keep[r] for r in rows]]
        gts = [g for g in (sample.gt[keep[r]] for r in rows) if g is not None]
        cfg = self.eval_config.replace(iterations=1)
        recorded = record_candidates(self.backend, cfg, embedding, masks, gts)
        for r, (x, cols, ious) in zip(rows, recorded, strict=True):
            objects[r].gt_input, objects[r].gt_columns, objects[r].gt_iou = x, cols, ious

    # -- training ---------------------------------------------------------------------

    def identity(self, data_digest: str) -> dict[str, Any]:
        """What a resumed run must share with the run that saved the checkpoint."""
        return {
            "model": self.fingerprint,
            "settings": self.config.to_dict(),
            "data": data_digest,
        }

    def train(
        self,
        features: list[ObjectFeatures],
        checkpoint: Path,
        identity: dict[str, Any],
        *,
        resume: bool,
        on_step: Callable[[StepInfo], None] | None = None,
    ) -> list[float]:
        """Run the epochs over ``features`` (the training objects); returns step losses."""
        from tqdm import tqdm

        cfg = self.config
        layer = lora_layer(require_head(self.backend))
        assert layer is not None
        params = lora_parameters(layer)
        optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.milestones), gamma=cfg.lr_decay
        )
        per_epoch = math.ceil(len(features) / cfg.accumulate)
        total = per_epoch * cfg.epochs
        done, losses = 0, []
        if resume and checkpoint.is_file():
            state = read_checkpoint(checkpoint, identity, cfg.rank)
            try:
                load_lora_state(layer, state["lora"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise AdaptionError(f"{checkpoint}: unusable training state: {exc}") from exc
            done, losses = state["step"], list(state["losses"])
        bar = tqdm(
            total=total, initial=done, desc="training", unit="step", disable=not self.progress
        )
        start = time.perf_counter()
        step = 0
        try:
            for epoch in range(cfg.epochs):
                order = np.random.default_rng([cfg.seed, epoch]).permutation(len(features))
                for g in range(per_epoch):
                    step += 1
                    if step <= done:
                        continue
                    group = [
                        features[i] for i in order[g * cfg.accumulate : (g + 1) * cfg.accumulate]
                    ]
                    loss = self._group_loss(group)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    losses.append(float(loss.detach()))
                    if not math.isfinite(losses[-1]) or not all(
                        bool(torch.isfinite(p).all()) for p in params
                    ):  # checked before the state is saved: the checkpoint stays finite
                        raise TrainingDiverged(
                            checkpoint.parent, epoch + 1, step, total, losses[-1], cfg.lr
                        )
                    self._save(checkpoint, step, layer, optimizer, scheduler, losses, identity)
                    lr = scheduler.get_last_lr()[0]
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.0e}")
                    if on_step is not None:
                        on_step(StepInfo(step, total, losses[-1], lr))
        finally:
            bar.close()
            self.timings["train"] += time.perf_counter() - start
        return losses

    def _group_loss(self, group: list[ObjectFeatures]) -> torch.Tensor:
        inputs = torch.cat([f.head_input for f in group]).to(self.backend.device)
        columns = [f.columns for f in group]
        iou = head_iou(self.backend, inputs, columns, self.config.dtype)
        loss = ranking_loss(iou, [f.target for f in group], self.config.loss_margin)
        return loss / self.config.accumulate

    @staticmethod
    def _save(
        path: Path,
        step: int,
        layer: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        losses: list[float],
        identity: dict[str, Any],
    ) -> None:
        state = {
            "step": step,
            "lora": lora_state(layer),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "losses": losses,
            "identity": identity,
        }
        with atomic_write(path) as handle:
            torch.save(state, handle)

    # -- report -----------------------------------------------------------------------

    def _predicted_best(self, objects: list[ObjectFeatures], gt: bool) -> np.ndarray:
        out = np.zeros(len(objects), dtype=np.int64)
        with one_thread():
            for k, f in enumerate(objects):
                x = f.gt_input if gt else f.head_input
                cols = f.gt_columns if gt else f.columns
                assert x is not None and cols is not None
                with torch.no_grad():
                    iou = head_iou(
                        self.backend, x.to(self.backend.device), [cols], self.config.dtype
                    )
                out[k] = int(iou[0].argmax())
        return out

    def agreement(self, objects: list[ObjectFeatures]) -> dict[str, Any]:
        """Top-1 agreement (and GT top-1 accuracy) before / after on ``objects``."""
        row: dict[str, Any] = {"objects": len(objects)}
        if not objects:
            return row
        target = np.array([f.target for f in objects])
        with adapter_disabled(self.backend):
            before = self._predicted_best(objects, gt=False)
        after = self._predicted_best(objects, gt=False)
        row["agreement_before"] = float(np.mean(before == target))
        row["agreement_after"] = float(np.mean(after == target))
        with_gt = [f for f in objects if f.gt_iou is not None]
        if with_gt:
            gt_best = np.array([int(np.argmax(f.gt_iou)) for f in with_gt])
            with adapter_disabled(self.backend):
                before = self._predicted_best(with_gt, gt=True)
            after = self._predicted_best(with_gt, gt=True)
            row["gt_objects"] = len(with_gt)
            row["gt_top1_before"] = float(np.mean(before == gt_best))
            row["gt_top1_after"] = float(np.mean(after == gt_best))
        return row

    def refined_iou(self, source: Source, keys: list[str]) -> dict[str, Any]:
        """Mean IoU with the ground truth of fully refined masks, before and after."""
        from tqdm import tqdm

        refiner = Refiner(self.backend, self.eval_config)
        scores: dict[str, list[float]] = {"before": [], "after": []}
        for key in tqdm(keys, desc="refining", unit="image", disable=not self.progress):
            sample = source.load(key)
            if sample is None or sample.gt is None:
                continue
            rows = [k for k, g in enumerate(sample.gt) if g is not None and sample.masks[k].any()]
            if not rows:
                continue
            embedding = self._embed(sample.image)
            masks = sample.masks[rows]
            for name in ("before", "after"):
                if name == "before":
                    with adapter_disabled(self.backend):
                        result = refiner.refine(sample.image, masks, embedding=embedding)
                else:
                    result = refiner.refine(sample.image, masks, embedding=embedding)
                for r, k in enumerate(rows):
                    scores[name].append(mask_iou(result.masks[r], sample.gt[k]))  # type: ignore[arg-type]
        if not scores["before"]:
            return {}
        return {
            "refined_iou_before": float(np.mean(scores["before"])),
            "refined_iou_after": float(np.mean(scores["after"])),
        }

    def report(
        self,
        source: Source,
        features: list[ObjectFeatures],
        used: list[str],
        held: set[str],
        losses: list[float],
    ) -> dict[str, Any]:
        """The before / after figures per split, step losses, encodings and timings."""
        report: dict[str, Any] = {}
        for split, keys in (
            (TRAIN, [k for k in used if k not in held]),
            (HELD_OUT, [k for k in used if k in held]),
        ):
            chosen = set(keys)
            objects = [f for f in features if f.key in chosen]
            report[split] = self.agreement(objects) | {"images": len(keys)}
            if any(f.gt_iou is not None for f in objects):
                report[split].update(self.refined_iou(source, keys))
        report["steps"] = len(losses)
        report["loss_first"] = losses[0] if losses else None
        report["loss_last"] = losses[-1] if losses else None
        report["encoded_images"] = self.encoded
        report["seconds"] = {k: round(v, 6) for k, v in self.timings.items()}
        return report


def read_checkpoint(path: Path, identity: dict[str, Any], rank: int) -> dict[str, Any]:
    """The training state :meth:`Trainer.train` saved at ``path``, for a run of
    ``identity``: plain tensors only (nothing is unpickled), the same run, a LoRA of
    ``rank`` with finite weights. Anything else is an :class:`AdaptionError` naming it."""
    try:
        state = load_tensor_file(path)
    except ValueError as exc:
        raise AdaptionError(str(exc)) from exc
    shape = {"step": int, "lora": dict, "losses": list}
    if not isinstance(state, dict) or not all(
        isinstance(state.get(k), kind) for k, kind in shape.items()
    ):
        raise AdaptionError(f"{path}: not a training checkpoint of samrefiner adapt")
    if state.get("identity") != identity:
        raise AdaptionError(
            f"{path}: saved by a run with other settings, model or data; "
            "remove it (or the output folder) to start again"
        )
    check_weights(state["lora"], rank, path)
    return state


def train_adapter(
    backend: Backend,
    source: Source,
    output: str | os.PathLike[str],
    config: AdaptConfig | None = None,
    *,
    cache: EmbeddingCache | None = None,
    eval_config: RefineConfig | None = None,
    resume: bool = False,
    progress: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    encoder: Encoder | None = None,
) -> TrainResult:
    """Train an IoU adapter on ``source`` and write it to the folder ``output``.

    ``backend`` carries the trained adapter afterwards. With ``resume`` a run that was
    killed continues from its last saved step (``output/checkpoint.pt``) and ends with the
    weights an uninterrupted run gives; the checkpoint is removed once the adapter is
    written.

    With ``encoder`` the images whose embedding is not in ``cache`` are encoded by it
    first (e.g. on a Ray cluster, the cache on storage every node shares); the rest of
    the run reads them from the cache, and its result does not depend on where they were
    encoded.

    A run whose loss or weights stop being finite (too high a learning rate) raises
    :class:`TrainingDiverged` and writes no adapter; its checkpoint is removed too (the
    run is deterministic: resuming it would diverge at the same step), and so is the
    output folder when the run created it.

    Raises:
        AdaptionError: no IoU head, no usable object, an output that already holds an
            adapter, a checkpoint without ``resume`` / of another run / that is not
            plain tensors, or a diverged run (:class:`TrainingDiverged`).
    """
    config = config or AdaptConfig()
    out = Path(output)
    checkpoint = out / CHECKPOINT_FILE
    if (out / INFO_FILE).exists():
        raise AdaptionError(f"{out}: already holds an adapter; choose another folder")
    if checkpoint.exists() and not resume:
        raise AdaptionError(
            f"{out}: holds the checkpoint of an interrupted run; resume it or remove it"
        )
    trainer = Trainer(backend, config, cache=cache, eval_config=eval_config, progress=progress)
    keys = source.keys()
    held = split_keys(keys, config.held_out, config.seed)
    if encoder is not None:
        trainer.encode_elsewhere(source, keys, encoder)
    attach_lora(backend, config.rank, config.alpha, config.seed)
    misses = trainer.cache.misses
    features, digest, used = trainer.prepare(source, keys)
    if encoder is not None and trainer.cache.misses > misses:
        log.warning(
            "%d images were encoded here after all: their embeddings were not in %s "
            "(with a cluster, it must be a folder every node shares)",
            trainer.cache.misses - misses,
            trainer.cache.root,
        )
    train_objects = [f for f in features if f.key not in held]
    if not train_objects:
        raise AdaptionError("no training object: every image is held out, empty or unusable")
    identity = trainer.identity(digest)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(out):
        log.info("removed %s, left by an interrupted write", stale)
    try:
        with one_thread():
            losses = trainer.train(
                train_objects, checkpoint, identity, resume=resume, on_step=on_step
            )
    except TrainingDiverged:
        checkpoint.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    report = trainer.report(source, features, used, held, losses)
    info = AdapterInfo(backend.name, trainer.fingerprint, config, report=report)
    save_adapter(out, info, backend)
    checkpoint.unlink(missing_ok=True)
    return TrainResult(out, info, losses)
