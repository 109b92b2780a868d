"""Progress and the run's summary, shared by the engines: the progress bar, the start of a
run's :class:`~samrefiner.runner.journal.records.RunSummary` (resumed images counted,
orphan objects reported) and the log line of every bad input.
"""

from __future__ import annotations

import logging
import time

from samrefiner.runner.dataset import Dataset, SummaryContributor
from samrefiner.runner.journal.records import ImageRecord, RunSummary
from samrefiner.runner.journal.state import RunState
from samrefiner.runner.journal.status import is_bad_input

log = logging.getLogger("samrefiner.runner")

__all__ = ["Progress", "finish_dataset", "log_problems", "start_summary"]


def log_problems(record: ImageRecord, dataset_name: str) -> None:
    """Log every bad input of a record, naming the image and the object."""
    if record.image_status is not None and is_bad_input(record.image_status):
        log.warning("%s %s: %s: %s", dataset_name, record.key, record.image_status, record.message)
    for obj in record.objects:
        if is_bad_input(obj.status) and obj.status != record.image_status:
            log.warning(
                "%s %s, object %s: %s: %s",
                dataset_name,
                record.key,
                obj.id,
                obj.status,
                obj.message,
            )
        for warning in obj.warnings:
            log.warning(
                "%s %s, object %s: %s: %s",
                dataset_name,
                record.key,
                obj.id,
                warning,
                obj.message or "fixed up and refined",
            )


def start_summary(dataset: Dataset, state: RunState) -> tuple[list[str], list[str], RunSummary]:
    """The run's keys, those still to do, and a summary holding the resumed ones.

    Objects that belong to no image (:meth:`Dataset.orphans`, e.g. COCO annotations of
    unknown images) are reported and counted.
    """
    keys = dataset.keys()
    summary = RunSummary(images_total=len(keys))
    orphans = dataset.orphans()
    if orphans:
        orphan_record = ImageRecord("(no image)", orphans)
        log_problems(orphan_record, dataset.name)
        summary.add(orphan_record, counts_as_image=False)
    todo: list[str] = []
    for key in keys:
        if state.is_done(key):
            summary.add(state.read(key), resumed=True)
        else:
            todo.append(key)
    return keys, todo, summary


def finish_dataset(dataset: Dataset, state: RunState, keys: list[str], summary: RunSummary) -> None:
    """End a run: :meth:`Dataset.finish` over all the records of ``keys``, then the
    dataset's :class:`SummaryContributor` parts added to ``summary``."""
    dataset.finish(state.records(keys))
    if isinstance(dataset, SummaryContributor):
        summary.parts = list(dataset.summary_parts())


class Progress:
    """tqdm bar with images/s (the bar's rate), masks/s and ETA."""

    def __init__(self, total: int, initial: int, enabled: bool, name: str) -> None:
        self.bar = None
        self.masks = 0
        self.start = time.perf_counter()
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                unit="img",
                desc=f"samrefiner {name}",
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self, record: ImageRecord) -> None:
        self.masks += sum(o.refined for o in record.objects)
        if self.bar is not None:
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.masks / elapsed:.1f} masks/s", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
