"""The formats a dataset run reads and writes, one module each, each a
:class:`~samrefiner.runner.dataset.Dataset`: COCO files (:mod:`.coco`), instance and
semantic label-map folders (:mod:`.label_folders`), binary-mask folders (:mod:`.mask_folders`),
Ultralytics YOLO segmentation datasets (:mod:`.yolo`), labelme JSON folders (:mod:`.labelme`).
"""
