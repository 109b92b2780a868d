"""Adapters for the toolkits where users hold their masks in memory.

Each adapter is a submodule with its own optional extra, imported on demand:

* :mod:`samrefiner.integrations.supervision` (``pip install 'samrefiner[supervision]'``):
  refine ``sv.Detections`` and ``sv.DetectionDataset``;
* :mod:`samrefiner.integrations.fiftyone` (``pip install 'samrefiner[fiftyone]'``):
  refine FiftyOne ``Detections``, ``Polylines`` and ``Segmentation`` labels, in memory or
  a whole dataset field.

Importing this package imports neither toolkit.
"""
