"""The catalog's narrow access to storage: chunked range reads, point reads, atomic batches.

The catalog's jobs read and write the key space in chunks (a few hundred records, a few MiB
at most), each chunk one atomic batch through the engine's ordered commit path that also
records the job's progress, so a crash between two chunks resumes at the next one.

Concurrency rules: event-loop thread only. ``read_chunk`` reads with the one chunked scan
loop (``quanta/_kv.py``'s ``scan_chunks``, at one snapshot per call), which yields to the
loop between the engine's scan chunks, so a chunk that has to step over many deleted keys (a range a
migration just cleared) does not hold the loop.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from contextlib import aclosing
from itertools import accumulate
from typing import Any

from .._kv import scan_chunks
from .._storage import Engine
from .format import pack, unpack

__all__ = ["CHUNK", "CHUNK_BYTES", "Progress", "Store"]

CHUNK = 2048
"""Records per chunk of a migration, a rewrite or an index build: large enough that the
per-batch costs (a commit, an fsync with durability="sync") are spread thin, small enough
that a chunk's objects take a few MiB."""
CHUNK_BYTES = 4 * 1024 * 1024
"""A chunk is cut short past this many bytes of records."""

Progress = Callable[[Any], None]


class Store:
    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def read_chunk(
        self, lo: bytes, hi: bytes | None, n: int = CHUNK, max_bytes: int = CHUNK_BYTES
    ) -> tuple[list[bytes], list[bytes], bytes | None]:
        """Up to ``n`` live ``(key, value)`` pairs of ``[lo, hi)`` in key order (fewer past
        ``max_bytes``), and where to continue (None: the range is exhausted). Reads the
        latest committed state (one snapshot for the call)."""
        engine = self.engine
        engine.check_open()
        keys: list[bytes] = []
        values: list[bytes] = []
        size = 0
        async with aclosing(scan_chunks(engine, lo, hi, False, None, n)) as scan:
            async for ks, vs in scan:
                sizes = list(accumulate(map(len, vs), initial=size))  # sizes[i]: after i more entries
                stop = n - len(keys)
                if sizes[-1] >= max_bytes:
                    stop = min(stop, bisect_left(sizes, max_bytes, 1))
                if stop <= len(ks):  # a limit is reached within this scan chunk
                    keys += ks[:stop]
                    values += vs[:stop]
                    return keys, values, keys[-1] + b"\x00"
                keys += ks
                values += vs
                size = sizes[-1]
        return keys, values, None

    async def count(self, lo: bytes, hi: bytes | None) -> int:
        n = 0
        cur: bytes | None = lo
        while cur is not None:
            keys, _, cur = await self.read_chunk(cur, hi, 4096, 64 * 1024 * 1024)
            n += len(keys)
        return n

    async def any(self, lo: bytes, hi: bytes | None) -> bool:
        keys, _, _ = await self.read_chunk(lo, hi, 1)
        return bool(keys)

    def get(self, key: bytes) -> bytes | None:
        self.engine.check_open()
        return self.engine.get(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self.engine.check_open()
        return self.engine.get_many(list(keys))

    def get_map(self, key: bytes) -> Any:
        data = self.get(key)
        return None if data is None else unpack(data)

    async def write(self, keys: list[bytes], values: list[bytes | None]) -> None:
        """Commit one atomic batch (a None value deletes its key)."""
        if not keys:
            return
        size = sum(map(len, keys)) + sum(len(v) for v in values if v is not None)
        await self.engine.write(keys, values, size, origin="schema")

    async def delete_range(self, lo: bytes, hi: bytes | None, on_chunk: Callable[[int], None] | None = None) -> int:
        """Delete every key of ``[lo, hi)`` in chunks (idempotent; each chunk atomic)."""
        n = 0
        cur: bytes | None = lo
        while cur is not None:
            keys, _, cur = await self.read_chunk(cur, hi, 8192)
            if keys:
                await self.write(keys, [None] * len(keys))
                n += len(keys)
                if on_chunk is not None:
                    on_chunk(n)
        return n

    @staticmethod
    def pack(value: Any) -> bytes:
        return pack(value)
