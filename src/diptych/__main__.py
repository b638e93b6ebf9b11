"""`python -m diptych ...` (and `torchrun ... -m diptych train ...`) runs the command line."""

import sys

from .cli import main

sys.exit(main())
