"""``python -m samrefiner``: the ``samrefiner`` command, for environments without its script
on ``PATH``."""

from samrefiner.cli import main

raise SystemExit(main())
