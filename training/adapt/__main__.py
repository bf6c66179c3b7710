"""python -m training.adapt (see training/adapt/cli.py)."""

import sys

from .cli import main

sys.exit(main())
