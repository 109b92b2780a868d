import sys

from samrefiner.cli import main

sys.exit(main())
