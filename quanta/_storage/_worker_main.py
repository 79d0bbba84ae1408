"""Entry point of a worker process: ``python -m quanta._storage._worker_main``.

Kept apart from ``worker.py`` because the package imports ``worker``; running an imported
module with ``-m`` would execute it twice.
"""

import os
import sys

from .worker import _serve

# Background merging yields the CPU to the process that serves the application: on a
# machine with few cores the event loop's latency matters more than compaction's speed
# (RocksDB lowers its compaction threads' priority the same way). Back-pressure slows
# writers if compaction falls behind.
try:
    os.nice(10)
except OSError:  # not permitted here: run at normal priority
    pass

_serve(sys.stdin.buffer, sys.stdout.buffer)
