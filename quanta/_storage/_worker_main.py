"""Entry point of a worker process: ``python -m quanta._storage._worker_main``.

Kept apart from ``worker.py`` because the package imports ``worker``; running an imported
module with ``-m`` would execute it twice.
"""

import sys

from .worker import _serve

_serve(sys.stdin.buffer, sys.stdout.buffer)
