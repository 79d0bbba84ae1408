"""``python -m quanta``: see :mod:`quanta._cli`."""

import sys

from ._cli import main

sys.exit(main())
