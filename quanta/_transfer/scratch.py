"""A scratch key-value store on disk for an import's validation pass.

Checking a file against itself (a primary key or a unique value given twice, a link to a
record further down) needs to remember something per line. Kept in a dict, that memory
grows with the file; here it goes into a throw-away QuantaDB engine in a temporary
directory (the engine's memtable bounds what stays in memory; the rest is in its tables),
deleted when the import ends. Writes are batched, one per chunk of lines, with durability
``"os"`` (nothing here must survive a crash).

Concurrency rules: event-loop thread only; one owner (the import).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from types import TracebackType

from .._codec import prefix_end
from .._kv import scan_chunks
from .._options import resolve_options
from .._storage import Engine

__all__ = ["Scratch"]


class Scratch:
    """``async with Scratch(near) as s``: ``get_many``, ``put``, ``scan_prefix``."""

    def __init__(self, near: str) -> None:
        self._near = near
        self._dir: str | None = None
        self._engine: Engine | None = None

    async def __aenter__(self) -> Scratch:
        try:
            self._dir = tempfile.mkdtemp(prefix=".quanta-import-", dir=self._near)
        except OSError:  # a read-only directory: the system's temporary directory instead
            self._dir = tempfile.mkdtemp(prefix="quanta-import-")
        opts = resolve_options(
            None,
            {
                "durability": "os",
                "memtable_bytes": 8 << 20,
                "block_cache_bytes": 8 << 20,
                "compaction_executor": "loop",
            },
        )
        self._engine = await Engine.open(os.path.join(self._dir, "db"), opts)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._engine is not None:
                await self._engine.close()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self.engine.get_many(keys)

    async def put(self, keys: list[bytes], values: list[bytes]) -> None:
        if keys:
            await self.engine.write(keys, list(values), sum(map(len, keys)) + sum(map(len, values)))

    async def scan_prefix(self, prefix: bytes) -> AsyncIterator[tuple[bytes, bytes]]:
        """Every ``(key, value)`` whose key starts with ``prefix``, in key order, a chunk of
        keys in memory at a time."""
        async for keys, values in scan_chunks(self.engine, prefix, prefix_end(prefix), False, None, 1024):
            for kv in zip(keys, values, strict=True):
                yield kv
