"""File pins: files that something outside the version (a backup) still reads.

A compaction or flush makes tables and WAL segments obsolete and removes them once the
manifest edit that drops them is durable. A backup takes its picture of the database (a
version plus the WAL segments holding the memtables) at one instant on the event loop and
then reads those files in worker threads for as long as the copy takes; if a compaction
removed one meanwhile, the backup would fail (or, worse, on a file system that reuses
names, read the wrong file). So the backup *pins* the files of its picture, and the engine's
removal of an obsolete file that is pinned is *deferred* until the last pin on it goes.

This is RocksDB's ``DisableFileDeletions``/``EnableFileDeletions`` made per file: writers,
flushes and compactions go on as usual; only the deletions of the pinned files wait.

Concurrency: used from the event loop (``pin``, ``unpin``) and from worker threads (the
engine removes files in threads, through :meth:`FilePins.remove`); a lock guards the state.
Nothing is ever held across I/O: removal happens after the lock is released.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from .vfs import FileSystem

__all__ = ["FilePins"]


class FilePins:
    """Pinned paths (with counts) and the removals deferred because of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._deferred: set[str] = set()

    def pin(self, paths: Iterable[str]) -> list[str]:
        """Pin ``paths``; return them (the token to hand back to :meth:`unpin`)."""
        token = list(paths)
        with self._lock:
            self._counts.update(token)
        return token

    def unpin(self, token: list[str]) -> list[str]:
        """Drop the pins of ``token``; return the deferred removals now due (the caller removes
        them, off the event loop)."""
        due: list[str] = []
        with self._lock:
            for path in token:
                self._counts[path] -= 1
                if self._counts[path] <= 0:
                    del self._counts[path]
                    if path in self._deferred:
                        self._deferred.discard(path)
                        due.append(path)
        return due

    def remove(self, fs: FileSystem, paths: Iterable[str]) -> None:
        """Remove each of ``paths`` now, or later if it is pinned (sync; runs in a thread)."""
        now: list[str] = []
        with self._lock:
            for path in paths:
                if self._counts[path] > 0:
                    self._deferred.add(path)
                else:
                    self._counts.pop(path, None)
                    now.append(path)
        for path in now:
            fs.remove(path)

    def pinned(self) -> set[str]:
        with self._lock:
            return {p for p, n in self._counts.items() if n > 0}
