"""What a dataset run writes down, so it can be resumed and reported: the per-object and
per-image records and the run's summary (:mod:`.records`), the state folder with its lock
and per-image journal (:mod:`.state`), and the statuses an object or image can end in
(:mod:`.status`).
"""
