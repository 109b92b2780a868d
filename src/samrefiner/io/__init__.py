"""File I/O: everything that touches disk lives here; the library core works on arrays."""

from samrefiner.io.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    remove_stale_temporaries,
)
from samrefiner.io.coco import CocoFile, load_coco, write_coco
from samrefiner.io.errors import InputError
from samrefiner.io.images import (
    ImageTooLargeError,
    read_image,
    read_mask,
    write_mask_png,
)
from samrefiner.io.label_maps import LabelMap, read_label_map, write_label_map

__all__ = [
    "CocoFile",
    "ImageTooLargeError",
    "InputError",
    "LabelMap",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_coco",
    "read_image",
    "read_label_map",
    "read_mask",
    "remove_stale_temporaries",
    "write_coco",
    "write_label_map",
    "write_mask_png",
]
