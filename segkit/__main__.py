"""``python -m segkit``: the command line, also as launched by ``torchrun -m segkit``."""

import sys

from segkit.cli import main

sys.exit(main())
