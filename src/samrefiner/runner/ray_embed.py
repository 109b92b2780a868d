"""Where adaption's embedding pass on Ray used to live: see :mod:`samrefiner.adaption.ray_embed`.

Its names stay importable from here.
"""

from samrefiner.adaption.ray_embed import ModelMismatchError, encode_on_ray

__all__ = ["ModelMismatchError", "encode_on_ray"]
