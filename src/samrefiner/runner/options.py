"""The options of a dataset run, one object for both engines (local and Ray)."""

from __future__ import annotations

from dataclasses import dataclass

from samrefiner.cluster import RayOptions
from samrefiner.io.images import DEFAULT_MAX_IMAGE_PIXELS
from samrefiner.runner.engines.steps import DEFAULT_FRAME_BYTES

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "RunOptions"]


@dataclass(frozen=True)
class RunOptions:
    """How a dataset is run, by either engine.

    Attributes:
        workers: background loader threads (0: load in the calling thread).
        prefetch: images loaded ahead of the model (>= 1).
        progress: show a tqdm progress bar on stderr.
        frame_bytes: most bytes of full-frame masks handed to the refiner at once (the
            masks of an image go in batches of ``frame_bytes // (H * W)``); the runner
            otherwise holds masks as box-local crops. Results do not depend on it.
        encoder_batch: images the model encodes together (None: automatic for the
            refiner's device, see :func:`~samrefiner.runner.engines.steps.encoder_batch_for`).
        refine_threads: images refined at once, each on a thread (and CUDA stream) of
            its own, while the encoder runs ahead on another (0: refine one image after
            another in the calling thread; None: automatic, 4 on CUDA devices, else 0, see
            :func:`~samrefiner.runner.engines.lanes.lanes_for`). Results do not depend on it.
        max_image_pixels: images (and masks, label maps) with more pixels are bad input,
            ``image_too_large`` (a guard against decompression bombs; None: no limit).
            The run's own limit, applied where its images are read
            (:func:`~samrefiner.io.images.image_pixel_limit`), not a process setting.
        ray: the Ray engine's cluster and pools (:class:`~samrefiner.cluster.RayOptions`);
            None: the local engine. Read by :func:`samrefiner.runner.session.run_session`
            and :func:`~samrefiner.runner.engines.ray.run_dataset_ray`; ``workers`` and
            ``prefetch`` are the local engine's.
    """

    workers: int = 2
    prefetch: int = 4
    progress: bool = True
    frame_bytes: int = DEFAULT_FRAME_BYTES
    encoder_batch: int | None = None
    refine_threads: int | None = None
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    ray: RayOptions | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {self.prefetch}")
        if self.frame_bytes < 1:
            raise ValueError(f"frame_bytes must be >= 1, got {self.frame_bytes}")
        if self.encoder_batch is not None and self.encoder_batch < 1:
            raise ValueError(f"encoder_batch must be >= 1 or None, got {self.encoder_batch}")
        if self.refine_threads is not None and self.refine_threads < 0:
            raise ValueError(f"refine_threads must be >= 0 or None, got {self.refine_threads}")
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1 or None, got {self.max_image_pixels}")
