"""The public face of the storage layer: ``quanta.open``, ``Database``, ``db.kv``, batches,
snapshots.

Every argument is checked here, before the engine is asked to do anything, so a bad input
raises a :mod:`quanta.errors` exception and writes nothing. Reads are plain method calls on
the engine (no thread hop: a warm read costs microseconds, a hop ~90 us); writes await the
engine's commit path.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from operator import itemgetter
from types import TracebackType
from typing import Any

import anyio.lowlevel
import anyio.to_thread

from ._options import MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options
from ._storage import MAX_SEQ, Engine
from .errors import DatabaseClosedError, InvalidArgumentError, InvalidTypeError, LimitExceededError

__all__ = ["Batch", "Database", "KeyValue", "Snapshot", "open"]


# ---------------------------------------------------------------------- validation


def _bad_key(key: object) -> Exception:
    if not isinstance(key, bytes):
        return InvalidTypeError(f"keys must be bytes, got {type(key).__name__}")
    if not key:
        return InvalidArgumentError("keys must not be empty")
    return LimitExceededError(f"key of {len(key)} bytes exceeds the limit of {MAX_KEY_BYTES} bytes")


def _check_key(key: object) -> bytes:
    if type(key) is bytes and 0 < len(key) <= MAX_KEY_BYTES:
        return key
    if isinstance(key, bytes) and 0 < len(key) <= MAX_KEY_BYTES:
        return bytes(key)  # a bytes subclass: store plain bytes
    raise _bad_key(key)


def _check_value(value: object) -> bytes:
    if type(value) is bytes and len(value) <= MAX_VALUE_BYTES:
        return value
    if not isinstance(value, bytes):
        raise InvalidTypeError(f"values must be bytes, got {type(value).__name__}")
    if len(value) > MAX_VALUE_BYTES:
        raise LimitExceededError(f"value of {len(value)} bytes exceeds the limit of {MAX_VALUE_BYTES} bytes")
    return bytes(value)


def _check_bound(name: str, bound: object) -> bytes | None:
    if bound is None:
        return None
    if not isinstance(bound, bytes):
        raise InvalidTypeError(f"{name} must be bytes or None, got {type(bound).__name__}")
    return bytes(bound)


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


_PAIR_TYPES = {tuple, list}
_first, _second = itemgetter(0), itemgetter(1)
_BYTES = {bytes}


def _batch_size_check(total: int) -> None:
    if total > MAX_BATCH_BYTES:
        raise LimitExceededError(f"batch of {total} bytes exceeds the limit of {MAX_BATCH_BYTES} bytes")


# ---------------------------------------------------------------------- reads shared by kv and snapshots


class _Reader:
    __slots__ = ("_engine", "_snapshot")

    def __init__(self, engine: Engine, snapshot: int | None) -> None:
        self._engine = engine
        self._snapshot = snapshot

    def _check(self) -> Engine:
        engine = self._engine
        if engine.closed:
            raise DatabaseClosedError(f"the database at {engine.path} is closed")
        return engine

    async def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        engine = self._engine
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
            key = _check_key(key)
        if engine.closed:
            raise DatabaseClosedError(f"the database at {engine.path} is closed")
        snap = self._snapshot
        return engine.get(key) if snap is None else engine.get(key, snap)

    async def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """Values for ``keys``, in the same order (None where absent)."""
        if isinstance(keys, (bytes, str)) or not isinstance(keys, Iterable):
            raise InvalidTypeError(f"get_many takes an iterable of bytes keys, got {type(keys).__name__}")
        keys = list(keys)
        for key in keys:
            if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
                _check_key(key)
                keys = [_check_key(k) for k in keys]  # normalise bytes subclasses
                break
        engine = self._check()
        snap = MAX_SEQ if self._snapshot is None else self._snapshot
        return engine.get_many(keys, snap)

    def scan(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """Iterate ``(key, value)`` pairs with ``start <= key < stop`` (and ``key`` starting
        with ``prefix``), in key order (descending with ``reverse``), at most ``limit``.

        The scan reads one consistent snapshot: writes, flushes and compactions that happen
        while it runs are invisible to it, and no key is lost or repeated.
        """
        lo = _check_bound("start", start)
        hi = _check_bound("stop", stop)
        pre = _check_bound("prefix", prefix)
        if not isinstance(reverse, bool):
            raise InvalidTypeError(f"reverse must be a bool, got {type(reverse).__name__}")
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool):
                raise InvalidTypeError(f"limit must be an int or None, got {type(limit).__name__}")
            if limit < 0:
                raise InvalidArgumentError(f"limit must be >= 0, got {limit}")
        if pre is not None:
            end = _prefix_end(pre)
            lo = pre if lo is None else max(lo, pre)
            hi = end if hi is None else (hi if end is None else min(hi, end))
        self._check()
        return _scan(self._engine, lo, hi, reverse, limit, self._snapshot)


async def _scan(
    engine: Engine, lo: bytes | None, hi: bytes | None, reverse: bool, limit: int | None, snapshot: int | None
) -> AsyncIterator[tuple[bytes, bytes]]:
    if limit == 0 or (lo is not None and hi is not None and lo >= hi):
        return
    seq = engine.acquire_snapshot() if snapshot is None else snapshot
    try:
        n = 64 if limit is None else min(limit, 1024)
        remaining = limit
        while True:
            if engine.closed:
                raise DatabaseClosedError(f"the database at {engine.path} was closed during a scan")
            keys, values, bound, done = engine.scan_chunk(lo, hi, seq, n, reverse)
            if remaining is not None:
                if len(keys) >= remaining:
                    for item in zip(keys[:remaining], values[:remaining], strict=True):
                        yield item
                    return
                remaining -= len(keys)
            for item in zip(keys, values, strict=True):
                yield item
            if done:
                return
            if reverse:
                hi = bound
            else:
                lo = bound
            n = min(n * 4, 4096)
            # Between chunks, let other tasks run: a long scan must not hold the loop even
            # if its consumer never awaits anything else.
            await anyio.lowlevel.checkpoint()
    finally:
        if snapshot is None:
            engine.release_snapshot(seq)


# ---------------------------------------------------------------------- writes


class KeyValue(_Reader):
    """``db.kv``: the raw key-value API. Keys and values are ``bytes``."""

    __slots__ = ()

    async def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (durable when it returns, with durability="sync")."""
        key = _check_key(key)
        value = _check_value(value)
        await self._engine.write([key], [value], len(key) + len(value))

    async def delete(self, key: bytes) -> None:
        """Remove ``key`` (a no-op if absent)."""
        key = _check_key(key)
        await self._engine.write([key], [None], len(key))

    async def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Store every ``(key, value)`` pair in one atomic batch: all or nothing."""
        if isinstance(items, (bytes, str)) or not isinstance(items, Iterable):
            raise InvalidTypeError(f"put_many takes an iterable of (key, value) pairs, got {type(items).__name__}")
        pairs = items if type(items) is list else list(items)
        if not pairs:
            return
        # Fast path: every check at C speed over whole columns; any doubt falls through to
        # the item-by-item loop below, which names the first bad item.
        if set(map(type, pairs)) <= _PAIR_TYPES and set(map(len, pairs)) == {2}:
            keys, values = list(map(_first, pairs)), list(map(_second, pairs))
            if set(map(type, keys)) == _BYTES and set(map(type, values)) == _BYTES:
                key_lens = list(map(len, keys))
                value_bytes = sum(map(len, values))
                if min(key_lens) > 0 and max(key_lens) <= MAX_KEY_BYTES and max(map(len, values)) <= MAX_VALUE_BYTES:
                    total = sum(key_lens) + value_bytes
                    _batch_size_check(total)
                    await self._engine.write(keys, values, total)
                    return
        await self._put_many_checked(pairs)

    async def _put_many_checked(self, items: list[tuple[bytes, bytes]]) -> None:
        keys: list[bytes] = []
        values: list[bytes | None] = []
        total = 0
        for item in items:
            if type(item) is not tuple or len(item) != 2:
                if not isinstance(item, (tuple, list)) or len(item) != 2:
                    raise InvalidTypeError(f"put_many items must be (key, value) pairs, got {item!r:.60}")
            k, v = item
            if type(k) is not bytes or not 0 < len(k) <= MAX_KEY_BYTES:
                k = _check_key(k)
            if type(v) is not bytes or len(v) > MAX_VALUE_BYTES:
                v = _check_value(v)
            keys.append(k)
            values.append(v)
            total += len(k) + len(v)
        _batch_size_check(total)
        if keys:
            await self._engine.write(keys, values, total)

    def batch(self) -> Batch:
        """A write batch: collect puts and deletes, then ``await batch.commit()`` atomically."""
        self._check()
        return Batch(self._engine)


class Batch:
    """Puts and deletes applied atomically by :meth:`commit` (later operations on the same
    key win). Each operation is checked when added; a batch commits at most once."""

    __slots__ = ("_bytes", "_committed", "_engine", "_keys", "_values")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._keys: list[bytes] = []
        self._values: list[bytes | None] = []
        self._bytes = 0
        self._committed = False

    def __len__(self) -> int:
        return len(self._keys)

    def _check_open(self) -> None:
        if self._committed:
            raise InvalidArgumentError("this batch was already committed; create a new one")

    def put(self, key: bytes, value: bytes) -> Batch:
        self._check_open()
        key = _check_key(key)
        value = _check_value(value)
        _batch_size_check(self._bytes + len(key) + len(value))
        self._bytes += len(key) + len(value)
        self._keys.append(key)
        self._values.append(value)
        return self

    def delete(self, key: bytes) -> Batch:
        self._check_open()
        key = _check_key(key)
        _batch_size_check(self._bytes + len(key))
        self._bytes += len(key)
        self._keys.append(key)
        self._values.append(None)
        return self

    async def commit(self) -> None:
        """Write every operation atomically (durably, with durability="sync").

        A batch commits at most once: calling ``commit`` again raises InvalidArgumentError
        even if the first call failed or was cancelled (a cancelled commit may still have
        happened; read to find out, then build a new batch)."""
        self._check_open()
        # Single use, whatever the outcome: after a cancellation the commit may have
        # happened (it is all-or-nothing, not undone), so a retry could apply it twice.
        self._committed = True
        if self._keys:
            await self._engine.write(self._keys, self._values, self._bytes)


# ---------------------------------------------------------------------- snapshots


class Snapshot:
    """A consistent, read-only view of the database as of the moment it was taken.

    Use as ``async with db.snapshot() as snap:``; ``snap.kv`` has ``get``, ``get_many`` and
    ``scan``. The versions it reads are kept (compaction will not drop them) until it is
    released on exit, so do not hold one longer than needed.
    """

    __slots__ = ("_engine", "_released", "kv", "seq")

    def __init__(self, engine: Engine) -> None:
        engine.check_open()
        self._engine = engine
        self.seq = engine.acquire_snapshot()
        self.kv = _Reader(engine, self.seq)
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._engine.release_snapshot(self.seq)

    async def __aenter__(self) -> Snapshot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------------- the database


class Database:
    """An open QuantaDB database. Create with ``await quanta.open(path)`` or
    ``async with quanta.open(path) as db``; always ``await db.close()``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.kv = KeyValue(engine, None)

    @property
    def path(self) -> str:
        return self._engine.path

    @property
    def options(self) -> Options:
        return self._engine.opts

    @property
    def closed(self) -> bool:
        return self._engine.closed

    def snapshot(self) -> Snapshot:
        """Take a snapshot now (see :class:`Snapshot`)."""
        return Snapshot(self._engine)

    async def flush(self) -> None:
        """Write the memtable to a table file and wait until it is durable there."""
        self._engine.check_writable()
        await self._engine.flush()

    async def compact(self) -> None:
        """Flush, then compact all data down into the deepest non-empty level."""
        self._engine.check_writable()
        await self._engine.compact()

    async def verify(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Read every block of every live table and check checksums, order and counts.

        Raises CorruptionError naming the file on damage; returns ``{"tables", "entries"}``.
        ``progress(done, total)`` is called from a worker thread after each table.
        """
        self._engine.check_open()
        return await anyio.to_thread.run_sync(self._engine.verify_tables, progress)

    async def stats(self) -> dict[str, Any]:
        """Counters and sizes: levels, memtables, bytes written, cache, stalls."""
        e = self._engine
        e.check_open()
        s = e.stats
        levels = e.level_summary()
        live = sum(lv["bytes"] for lv in levels)
        written = s.bytes_written_wal + s.bytes_written_flush + s.bytes_written_compaction
        return {
            "path": e.path,
            "last_seq": e.visible_seq,
            "memtable_bytes": e.mem.approximate_bytes,
            "memtable_entries": len(e.mem),
            "immutable_memtables": len(e.imms),
            "levels": levels,
            "live_table_bytes": live,
            "table_files": sum(lv["files"] for lv in levels),
            "commits": s.commits,
            "syncs": s.syncs,
            "flushes": s.flushes,
            "compactions": s.compactions,
            "trivial_moves": s.trivial_moves,
            "write_stalls": s.write_stalls,
            "stall_seconds": s.stall_seconds,
            "user_bytes_written": s.user_bytes_written,
            "bytes_written_wal": s.bytes_written_wal,
            "bytes_written_tables": s.bytes_written_flush + s.bytes_written_compaction,
            "bytes_written_flush": s.bytes_written_flush,
            "bytes_written_compaction": s.bytes_written_compaction,
            "write_amplification": (written / s.user_bytes_written) if s.user_bytes_written else 0.0,
            "block_cache": dataclasses.asdict(e.cache.stats),
            "open_snapshots": len(e.snapshots),
            "recovered_wal_batches": e.recovered_wal_batches,
            "recovery_tail": e.recovery_tail,
        }

    async def close(self) -> None:
        """Flush, finish background work and release the directory. Idempotent."""
        await self._engine.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<quanta.Database {self.path!r} {state}>"

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and not engine.closed:
            warnings.warn(f"{self!r} was never closed; `await db.close()`", ResourceWarning, stacklevel=2)


class _Opening:
    """What :func:`open` returns: await it for a Database, or use it with ``async with``."""

    def __init__(self, path: str, opts: Options) -> None:
        self._path = path
        self._opts = opts
        self._db: Database | None = None

    async def _open(self) -> Database:
        engine = await Engine.open(self._path, self._opts)
        return Database(engine)

    def __await__(self) -> Generator[Any, None, Database]:
        return self._open().__await__()

    async def __aenter__(self) -> Database:
        self._db = await self._open()
        return self._db

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()


def open(path: str | os.PathLike[str], **options: Any) -> _Opening:
    """Open (creating if needed) the database in directory ``path``.

    ``db = await quanta.open(path, durability="sync")`` or ``async with quanta.open(path) as db``.
    Options are checked here, before anything touches the disk; see :class:`quanta.Options`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise InvalidArgumentError("path must be a non-empty directory path")
    return _Opening(path, Options.from_kwargs(options))
