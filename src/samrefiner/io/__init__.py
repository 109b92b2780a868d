"""File I/O: everything that touches disk lives here; the library core works on arrays."""

from samrefiner.io.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from samrefiner.io.images import InputError, read_image, read_mask, write_mask_png

__all__ = [
    "InputError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_image",
    "read_mask",
    "write_mask_png",
]
