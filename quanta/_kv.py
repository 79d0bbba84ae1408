"""The key-value API: ``db.kv``, batches, snapshots, and the checks every input passes.

Every argument is checked here, before the engine is asked to do anything, so a bad input
raises a :mod:`quanta.errors` exception and writes nothing. Reads are plain method calls on
the engine (no thread hop: a warm read costs microseconds, a hop ~90 us); writes await the
engine's commit path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Iterator
from contextlib import aclosing, closing
from operator import itemgetter
from typing import TypeVar

import anyio.lowlevel

from ._codec import prefix_end
from ._options import MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES
from ._reactive import DEFAULT_CAPACITY, ChangeBus, ChangeSet, Queue, Watch
from ._storage import MAX_SEQ, Engine
from .errors import (
    DatabaseClosedError,
    InvalidArgumentError,
    InvalidTypeError,
    LimitExceededError,
    ReservedKeyError,
)

__all__ = [
    "RESERVED_END",
    "RESERVED_PREFIX",
    "Batch",
    "EngineView",
    "KeyValue",
    "Snapshot",
    "SnapshotKeyValue",
    "batch_size_check",
    "check_buffer",
    "check_flag",
    "check_key",
    "check_user_key",
    "check_user_keys",
    "reserved_error",
    "check_value",
    "chunks",
    "key_range",
    "paced",
    "scan_args",
    "scan_chunks",
    "scan_parts",
    "user_ranges",
]

# The entity layer's key space (records, index entries, the catalog): every key starting with
# these two bytes (quanta/_schema/keyspace.py builds them). ``db.kv`` and ``tx.kv`` refuse to
# read, write or watch keys in it, and their scans step over it (docs/kv.md).
RESERVED_PREFIX = b"\x00Q"  # a key k is reserved iff RESERVED_PREFIX <= k < RESERVED_END
RESERVED_END = b"\x00R"  # prefix_end(RESERVED_PREFIX): the first key after the reserved space


# ---------------------------------------------------------------------- validation


def _bad_key(key: object) -> Exception:
    if not isinstance(key, bytes):
        return InvalidTypeError(f"keys must be bytes, got {type(key).__name__}")
    if not key:
        return InvalidArgumentError("keys must not be empty")
    return LimitExceededError(f"key of {len(key)} bytes exceeds the limit of {MAX_KEY_BYTES} bytes")


def check_key(key: object) -> bytes:
    if type(key) is bytes and 0 < len(key) <= MAX_KEY_BYTES:
        return key
    if isinstance(key, bytes) and 0 < len(key) <= MAX_KEY_BYTES:
        return bytes(key)  # a bytes subclass: store plain bytes
    raise _bad_key(key)


def reserved_error(key: bytes) -> ReservedKeyError:
    return ReservedKeyError(
        f"key {key[:24]!r} is in the reserved entity key space (keys starting with {RESERVED_PREFIX!r}): "
        "entity data changes only through collections and migrations "
        "(db.kv.scan(..., include_reserved=True) shows it, read-only)"
    )


def check_user_key(key: object) -> bytes:
    """``check_key``, and refuse keys in the reserved entity key space."""
    k = key if type(key) is bytes and 0 < len(key) <= MAX_KEY_BYTES else check_key(key)
    if k < RESERVED_END and k >= RESERVED_PREFIX:
        raise reserved_error(k)
    return k


def check_user_keys(keys: list[bytes]) -> None:
    """Refuse a list of checked keys if one is in the reserved space (C speed when none is
    near it: a min and a max)."""
    if keys and min(keys) < RESERVED_END and max(keys) >= RESERVED_PREFIX:
        for key in keys:
            if key[:2] == RESERVED_PREFIX:
                raise reserved_error(key)


def user_ranges(lo: bytes | None, hi: bytes | None) -> list[tuple[bytes | None, bytes | None]]:
    """``[lo, hi)`` without the reserved entity key space: zero, one or two ranges, in key
    order (an empty range stays as it is: it scans nothing)."""
    if (hi is not None and hi <= RESERVED_PREFIX) or (lo is not None and lo >= RESERVED_END):
        return [(lo, hi)]  # the common case: nowhere near the reserved space
    parts: list[tuple[bytes | None, bytes | None]] = []
    if lo is None or lo < RESERVED_PREFIX:
        parts.append((lo, RESERVED_PREFIX if hi is None else min(hi, RESERVED_PREFIX)))
    if hi is None or hi > RESERVED_END:
        parts.append((RESERVED_END if lo is None else max(lo, RESERVED_END), hi))
    return parts


def check_value(value: object) -> bytes:
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


def key_range(start: object, stop: object, prefix: object) -> tuple[bytes | None, bytes | None]:
    """``(lo, hi)`` for ``start <= key < stop`` and ``key.startswith(prefix)`` (None: unbounded)."""
    lo = _check_bound("start", start)
    hi = _check_bound("stop", stop)
    pre = _check_bound("prefix", prefix)
    if pre is not None:
        end = prefix_end(pre)
        lo = pre if lo is None else max(lo, pre)
        hi = end if hi is None else (hi if end is None else min(hi, end))
    return lo, hi


def scan_args(reverse: object, limit: object) -> None:
    if not isinstance(reverse, bool):
        raise InvalidTypeError(f"reverse must be a bool, got {type(reverse).__name__}")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidTypeError(f"limit must be an int or None, got {type(limit).__name__}")
        if limit < 0:
            raise InvalidArgumentError(f"limit must be >= 0, got {limit}")


def check_buffer(buffer: object) -> int:
    if not isinstance(buffer, int) or isinstance(buffer, bool):
        raise InvalidTypeError(f"buffer must be an int, got {type(buffer).__name__}")
    if buffer < 1:
        raise InvalidArgumentError(f"buffer must be >= 1, got {buffer}")
    return buffer


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


_PAIR_TYPES = {tuple, list}
_first, _second = itemgetter(0), itemgetter(1)
_BYTES = {bytes}


def batch_size_check(total: int) -> None:
    if total > MAX_BATCH_BYTES:
        raise LimitExceededError(f"batch of {total} bytes exceeds the limit of {MAX_BATCH_BYTES} bytes")


# ---------------------------------------------------------------------- reads shared by kv and snapshots


def _checked_keys(keys: Iterable[bytes]) -> list[bytes]:
    if isinstance(keys, (bytes, str)) or not isinstance(keys, Iterable):
        raise InvalidTypeError(f"get_many takes an iterable of bytes keys, got {type(keys).__name__}")
    keys = list(keys)
    for key in keys:
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
            check_key(key)
            return [check_key(k) for k in keys]  # normalise bytes subclasses
    return keys


class _Reader:
    """The reads shared by ``db.kv`` and ``snapshot.kv``: ``get``, ``get_many``, ``scan``, at
    the snapshot given (None: the latest committed state)."""

    __slots__ = ("_engine", "_snapshot")

    def __init__(self, engine: Engine, snapshot: int | None) -> None:
        self._engine = engine
        self._snapshot = snapshot

    def __repr__(self) -> str:
        at = "latest" if self._snapshot is None else f"seq={self._snapshot}"
        state = " closed" if self._engine.closed else ""
        return f"<quanta.{type(self).__name__} {self._engine.path!r} {at}{state}>"

    def _check(self) -> Engine:
        engine = self._engine
        if engine.closed:
            raise engine.closed_error()
        return engine

    async def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None. A key in the reserved entity key space
        raises ReservedKeyError."""
        engine = self._engine
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
            key = check_key(key)
        if key < RESERVED_END and key >= RESERVED_PREFIX:
            raise reserved_error(key)
        if engine.closed:
            raise engine.closed_error()
        snap = self._snapshot
        return engine.get(key) if snap is None else engine.get(key, snap)

    async def _get(self, key: bytes) -> bytes | None:
        """``get`` without the reserved-space check (for the entity layer)."""
        engine = self._engine
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
            key = check_key(key)
        if engine.closed:
            raise engine.closed_error()
        snap = self._snapshot
        return engine.get(key) if snap is None else engine.get(key, snap)

    async def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """Values for ``keys``, in the same order (None where absent). A key in the reserved
        entity key space raises ReservedKeyError."""
        checked = _checked_keys(keys)
        check_user_keys(checked)
        engine = self._check()
        snap = MAX_SEQ if self._snapshot is None else self._snapshot
        return engine.get_many(checked, snap)

    async def _get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """``get_many`` without the reserved-space check (for the entity layer)."""
        keys = _checked_keys(keys)
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
        include_reserved: bool = False,
    ) -> AsyncGenerator[tuple[bytes, bytes], None]:
        """Iterate ``(key, value)`` pairs with ``start <= key < stop`` (and ``key`` starting
        with ``prefix``), in key order (descending with ``reverse``), at most ``limit``.

        The scan reads one consistent snapshot: writes, flushes and compactions that happen
        while it runs are invisible to it, and no key is lost or repeated.

        The scan steps over the reserved entity key space (keys starting with ``b"\\x00Q"``:
        entity records, indexes, the catalog); ``include_reserved=True`` includes it, for
        debugging (docs/kv.md, "The reserved entity key space").
        """
        lo, hi = key_range(start, stop, prefix)
        scan_args(reverse, limit)
        if not check_flag("include_reserved", include_reserved):
            parts = user_ranges(lo, hi)
            if len(parts) != 1:
                self._check()
                return scan_parts(self._engine, parts, reverse, limit, self._snapshot)
            lo, hi = parts[0]
        self._check()
        return scan(self._engine, lo, hi, reverse, limit, self._snapshot)

    def _scan(
        self, lo: bytes | None, hi: bytes | None, reverse: bool = False, limit: int | None = None
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """``scan`` of ``[lo, hi)`` reserved space included (for the entity layer; bounds trusted)."""
        self._check()
        return scan(self._engine, lo, hi, reverse, limit, self._snapshot)

    def _scan_chunks(
        self, lo: bytes | None, hi: bytes | None, reverse: bool, first: int
    ) -> AsyncGenerator[tuple[list[bytes], list[bytes]], None]:
        """``scan_chunks`` at this reader's snapshot (for the entity layer; bounds trusted)."""
        self._check()
        return scan_chunks(self._engine, lo, hi, reverse, self._snapshot, first)

    def _view(self) -> EngineView:
        """This reader's state as a synchronous read view (for the query executor). A
        snapshot's view stays valid while the snapshot is held; ``db.kv``'s (the newest
        state, unpinned) only until the caller next yields to the event loop."""
        engine = self._check()
        return EngineView(engine, engine.visible_seq if self._snapshot is None else self._snapshot)


class EngineView:
    """A synchronous read view of the engine at sequence number ``seq``: the query
    executor's view of a snapshot (``quanta/_entity/executor.py``, ``ReadView``), and a live
    query's view of the commit being published. Nothing here awaits: a caller that yields
    between chunks (``paced``) must hold a snapshot of ``seq``."""

    __slots__ = ("engine", "seq")

    def __init__(self, engine: Engine, seq: int) -> None:
        self.engine = engine
        self.seq = seq

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of ``keys`` (trusted), None where absent."""
        return self.engine.get_many(keys, self.seq)

    def chunks(
        self, lo: bytes | None, hi: bytes | None, reverse: bool, first: int
    ) -> Generator[tuple[list[bytes], list[bytes]], None, None]:
        """The live entries of ``[lo, hi)`` as ``(keys, values)`` column chunks in scan order
        (``chunks``; a chunk may be empty)."""
        for keys, values, _ in chunks(self.engine, lo, hi, self.seq, reverse, first):
            yield keys, values

    def check(self) -> None:
        """Raise if the view cannot be read on (the database closed); ``paced`` calls it
        after each checkpoint."""
        engine = self.engine
        if engine.closed:
            raise DatabaseClosedError(f"the database at {engine.path} was closed during a scan")


_T = TypeVar("_T")


async def paced(items: Generator[_T, None, None], check: Callable[[], None]) -> AsyncGenerator[_T, None]:
    """The items of a synchronous chunk generator, with a checkpoint (other tasks run)
    and ``check()`` before each item after the first: the one way a chunked read runs
    under ``await`` (a query, a scan through a transaction) without holding the event loop,
    whatever its consumer does. The generator is closed with this one."""
    with closing(items):
        first = True
        for item in items:
            if first:
                first = False
            else:
                await anyio.lowlevel.checkpoint()
                check()
            yield item


def scan(
    engine: Engine, lo: bytes | None, hi: bytes | None, reverse: bool, limit: int | None, snapshot: int | None
) -> AsyncGenerator[tuple[bytes, bytes], None]:
    """The items of ``[lo, hi)`` at ``snapshot``: ``scan_parts`` of one range."""
    return scan_parts(engine, [(lo, hi)], reverse, limit, snapshot)


async def scan_parts(
    engine: Engine,
    parts: list[tuple[bytes | None, bytes | None]],
    reverse: bool,
    limit: int | None,
    snapshot: int | None,
) -> AsyncGenerator[tuple[bytes, bytes], None]:
    """``(key, value)`` items of several disjoint ranges (given in key order) at one snapshot
    (None: one taken now, held until the generator ends), as one scan: ``limit`` counts
    across them. One generator level per item, whatever the number of ranges: each range is
    read a chunk at a time (``scan_chunks``)."""
    if limit == 0 or not parts:
        return
    seq = engine.acquire_snapshot() if snapshot is None else snapshot
    try:
        remaining = limit
        first = 64 if limit is None else min(limit, 1024)
        for lo, hi in reversed(parts) if reverse else parts:
            async with aclosing(scan_chunks(engine, lo, hi, reverse, seq, first)) as chunks:
                async for keys, values in chunks:
                    if remaining is not None:
                        if len(keys) >= remaining:
                            for item in zip(keys[:remaining], values[:remaining], strict=True):
                                yield item
                            return
                        remaining -= len(keys)
                    for item in zip(keys, values, strict=True):
                        yield item
    finally:
        if snapshot is None:
            engine.release_snapshot(seq)


async def scan_chunks(
    engine: Engine, lo: bytes | None, hi: bytes | None, reverse: bool, snapshot: int | None, first: int = 64
) -> AsyncGenerator[tuple[list[bytes], list[bytes]], None]:
    """The live entries of ``[lo, hi)`` at ``snapshot`` (None: a snapshot taken now and held
    until the generator ends) as non-empty ``(keys, values)`` column chunks in scan order:
    ``first`` entries (about), then chunks growing 4x up to 4,096, with a checkpoint between
    chunks (``paced``: a long scan must not hold the loop even if its consumer never awaits
    anything else). For layers that work a chunk at a time: no Python frame per entry."""
    if lo is not None and hi is not None and lo >= hi:
        return
    seq = engine.acquire_snapshot() if snapshot is None else snapshot
    try:
        view = EngineView(engine, seq)
        view.check()
        async with aclosing(paced(view.chunks(lo, hi, reverse, first), view.check)) as items:
            async for keys, values in items:
                if keys:
                    yield keys, values
    finally:
        if snapshot is None:
            engine.release_snapshot(seq)


def chunks(
    engine: Engine, lo: bytes | None, hi: bytes | None, seq: int, reverse: bool, first: int = 64
) -> Iterator[tuple[list[bytes], list[bytes], bool]]:
    """The one chunked scan loop: the live entries of ``[lo, hi)`` at ``seq`` as ``(keys,
    values, last)`` column chunks in scan order (a chunk may be empty where the engine
    stepped over deleted keys; ``last``: nothing follows), ``first`` entries (about), then
    chunks growing 4x up to 4,096. Synchronous: ``scan_chunks`` drives it with a checkpoint
    between chunks; live queries read with it inside a commit's publish."""
    n = max(first, 1)
    while True:
        keys, values, bound, done = engine.scan_chunk(lo, hi, seq, n, reverse)
        yield keys, values, done
        if done:
            return
        if reverse:
            hi = bound
        else:
            lo = bound
        n = min(n * 4, 4096)


# ---------------------------------------------------------------------- writes


class KeyValue(_Reader):
    """``db.kv``: the raw key-value API. Keys and values are ``bytes``.

    Keys in the reserved entity key space (starting with ``b"\\x00Q"``) are refused with
    ``ReservedKeyError`` before anything is written, and scans step over them (docs/kv.md)."""

    __slots__ = ("_bus",)

    def __init__(self, engine: Engine, bus: ChangeBus) -> None:
        super().__init__(engine, None)
        self._bus = bus

    async def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (durable when it returns, with durability="sync")."""
        key = check_user_key(key)
        value = check_value(value)
        await self._engine.write([key], [value], len(key) + len(value))

    async def delete(self, key: bytes) -> None:
        """Remove ``key`` (a no-op if absent)."""
        key = check_user_key(key)
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
                    check_user_keys(keys)
                    total = sum(key_lens) + value_bytes
                    batch_size_check(total)
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
            k = check_user_key(k)
            if type(v) is not bytes or len(v) > MAX_VALUE_BYTES:
                v = check_value(v)
            keys.append(k)
            values.append(v)
            total += len(k) + len(v)
        batch_size_check(total)
        if keys:
            await self._engine.write(keys, values, total)

    def batch(self) -> Batch:
        """A write batch: collect puts and deletes, then ``await batch.commit()`` atomically."""
        self._check()
        return Batch(self._engine)

    # ------------------------------------------------------------------ watches

    def watch(self, key: bytes) -> Watch[bytes | None]:
        """The value of ``key`` now, then after each commit that changes it.

        A :class:`quanta.Watch`: an Observable (``.subscribe(...)``) and an async iterator
        (``async for value in ...``), subscribed when subscribed / first iterated; each
        subscription emits the current value (None if absent) first. Latest-value
        semantics: a slow consumer skips intermediate values and gets the newest, and a write
        that leaves the value as it was emits nothing. It never overflows.
        """
        key = check_user_key(key)
        self._check()
        engine, bus = self._engine, self._bus
        hi = key + b"\x00"  # the smallest key after `key`

        def opener(wake: Callable[[], None], _scheduler: object) -> Queue[bytes | None]:
            queue: Queue[bytes | None] = bus.subscribe(key, hi, conflate=True, map=_only_value, wake=wake)
            queue.push(engine.get(key))  # the same instant as start_seq: nothing runs in between
            return queue

        return Watch(opener)

    def watch_range(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        with_old: bool = False,
        buffer: int = DEFAULT_CAPACITY,
    ) -> Watch[ChangeSet]:
        """Every commit that changes a key in ``start <= key < stop`` (and starting with
        ``prefix``), as a ChangeSet holding just those keys; see ``db.observe``.

        A :class:`quanta.Watch` (an Observable and an async iterator), subscribed when
        subscribed / first iterated; each subscription starts after the last commit made
        before it.
        """
        return self._bus_feed(start, stop, prefix, with_old, buffer)

    def _bus_feed(
        self, start: object, stop: object, prefix: object, with_old: object, buffer: object, *, hot: bool = False
    ) -> Watch[ChangeSet]:
        lo, hi = key_range(start, stop, prefix)
        old = check_flag("with_old", with_old)
        capacity = check_buffer(buffer)
        self._check()
        bus = self._bus
        if lo is not None and hi is not None and lo >= hi:
            lo, hi = b"", b""  # an empty range: subscribe to nothing, still complete on close

        def opener(wake: Callable[[], None], _scheduler: object) -> Queue[ChangeSet]:
            return bus.subscribe(lo or b"", hi, with_old=old, capacity=capacity, wake=wake)

        return Watch(opener, hot=hot)


def _only_value(change_set: ChangeSet) -> bytes | None:
    return change_set.changes[-1].value


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

    def __repr__(self) -> str:
        state = "committed" if self._committed else "open"
        return f"<quanta.Batch {state} ops={len(self._keys)} bytes={self._bytes}>"

    def _check_open(self) -> None:
        if self._committed:
            raise InvalidArgumentError("this batch was already committed; create a new one")

    def put(self, key: bytes, value: bytes) -> Batch:
        """Add ``key = value`` (checked now); returns the batch, so calls chain."""
        self._check_open()
        key = check_user_key(key)
        value = check_value(value)
        batch_size_check(self._bytes + len(key) + len(value))
        self._bytes += len(key) + len(value)
        self._keys.append(key)
        self._values.append(value)
        return self

    def delete(self, key: bytes) -> Batch:
        """Add the removal of ``key`` (checked now); returns the batch, so calls chain."""
        self._check_open()
        key = check_user_key(key)
        batch_size_check(self._bytes + len(key))
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
            await self._engine.write(self._keys, self._values, self._bytes, origin="batch")


# ---------------------------------------------------------------------- snapshots


class SnapshotKeyValue(_Reader):
    """``snapshot.kv``: ``get``, ``get_many`` and ``scan`` at the snapshot's sequence number."""

    __slots__ = ()


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
        self.kv = SnapshotKeyValue(engine, self.seq)
        self._released = False

    @property
    def released(self) -> bool:
        """True once the snapshot was released."""
        return self._released

    def release(self) -> None:
        """Release the snapshot now (``aclose`` without the await). Idempotent."""
        if not self._released:
            self._released = True
            self._engine.release_snapshot(self.seq)

    async def aclose(self) -> None:
        """Release the snapshot: compaction may drop the versions it kept. Idempotent."""
        self.release()

    async def __aenter__(self) -> Snapshot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "open"
        return f"<quanta.Snapshot seq={self.seq} {state}>"
