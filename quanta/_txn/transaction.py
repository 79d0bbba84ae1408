"""Transactions: reads at a snapshot, buffered writes, one atomic commit, optimistic checks.

A :class:`Transaction` reads the database as of the moment it began (its ``seq``), sees its own
buffered writes, and commits them as one batch through the engine's ordered commit path (the
same one ``db.kv`` uses, so group commit applies). The commit is refused with
``ConflictError`` when a concurrent commit touched what it read, wrote or scanned (see
``conflicts.py``); nothing is written then. A transaction that wrote nothing commits for free
and never conflicts.

Limits (each a ``LimitExceededError`` at the call that crosses it, before anything is written):
buffered writes total at most ``MAX_BATCH_BYTES`` (keys plus values) and ``MAX_TX_KEYS`` distinct
keys; at most ``MAX_TX_KEYS`` distinct keys read by point reads and ``MAX_TX_RANGES`` scans.

Concurrency rules: a transaction belongs to one task at a time; its methods run on the event
loop thread. Cancellation: cancelled before its commit reached the WAL, nothing is written;
after, the commit completes (all-or-nothing, as for any write).
"""

from __future__ import annotations

import random
import warnings
from bisect import bisect_left
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from contextlib import aclosing
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio

from .._kv import (
    RESERVED_END,
    RESERVED_PREFIX,
    batch_size_check,
    check_flag,
    check_key,
    check_user_key,
    check_user_keys,
    check_value,
    chunks,
    key_range,
    paced,
    reserved_error,
    scan,
    scan_args,
    user_ranges,
)
from .._options import MAX_KEY_BYTES
from .._storage import Engine
from ..errors import (
    ConflictError,
    InvalidArgumentError,
    InvalidTypeError,
    LimitExceededError,
    ReadOnlyError,
    TransactionClosedError,
)
from .conflicts import ConflictTracker, TxState

__all__ = ["MAX_TX_KEYS", "MAX_TX_RANGES", "Transaction", "TransactionKeyValue", "Transactions"]

MAX_TX_KEYS = 1_000_000
"""Distinct keys one transaction may write, and (separately) read with point reads."""
MAX_TX_RANGES = 10_000
"""Scans one transaction may run (each is remembered for the conflict check)."""

R = TypeVar("R")
E = TypeVar("E")

if TYPE_CHECKING:
    from .._entity import Collection


class EntityLayer(Protocol):
    """What ``tx.collection(cls)`` asks of the entity layer above (the Database's
    ``quanta._entity.EntityContext`` implements it)."""

    def collection(self, cls: type[E], tx: Transaction | None = None) -> Collection[E]:
        """The collection of ``cls`` read and written in ``tx``."""
        ...


class Transactions:
    """The database's transaction manager: owns the conflict tracker and keeps the engine's
    append hook installed exactly while a read-write transaction is open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tracker = ConflictTracker()
        self.conflicts = 0  # commits refused (for stats)
        self.commits = 0
        self.entities: EntityLayer | None = None  # what tx.collection() asks (set by Database)

    def begin(self, start: int) -> TxState:
        tracker = self.tracker
        state = tracker.begin(start, () if tracker.active else self.engine.inflight())
        self.engine.on_append = self.tracker.record
        return state

    def end(self, state: TxState) -> None:
        self.tracker.end(state)
        if not self.tracker.active:
            self.engine.on_append = None


class Transaction:
    """One transaction. Use ``async with db.transaction() as tx:``; a clean exit commits, an
    exception (or cancellation) rolls back. ``tx.kv`` reads and writes; ``tx.seq`` is the
    snapshot it reads; after a commit that wrote something, ``tx.commit_seq`` is its sequence
    number."""

    __slots__ = (
        "_bytes",
        "_conflict_seq",
        "_engine",
        "_finished",
        "_manager",
        "_sorted",
        "_state",
        "_writes",
        "commit_seq",
        "kv",
        "read_only",
        "seq",
    )

    def __init__(self, engine: Engine, manager: Transactions, *, read_only: bool = False) -> None:
        engine.check_open()
        self._engine = engine
        self._manager = manager
        self.read_only = read_only
        self.seq = engine.acquire_snapshot()
        self._state: TxState | None = None if read_only else manager.begin(self.seq)
        self._writes: dict[bytes, bytes | None] = {}  # key -> value, None for a delete
        self._sorted: list[bytes] | None = None  # the written keys in order, built when a scan needs it
        self._bytes = 0
        self._finished = False
        self.commit_seq: int | None = None
        self._conflict_seq = 0  # on a refused commit: the last batch appended before it
        self.kv = TransactionKeyValue(self)

    @property
    def finished(self) -> bool:
        """True once the transaction committed or rolled back."""
        return self._finished

    def collection(self, cls: type[E]) -> Collection[E]:
        """The records of entity class ``cls``, read and written inside this transaction."""
        entities = self._manager.entities
        if entities is None:
            raise InvalidArgumentError("this transaction's manager has no entity layer: use db.transaction()")
        return entities.collection(cls, self)

    def buffered(self) -> Mapping[bytes, bytes | None]:
        """What a commit now would write: key -> value (None for a delete), a read-only view
        (for the layers above that check a commit before it happens: quanta/_access)."""
        return MappingProxyType(self._writes)

    def read_base(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of ``keys`` at the transaction's snapshot, without its own writes and
        without recording the reads (``keys`` trusted: the layers above pass keys taken from
        :meth:`buffered`, which the commit's conflict check covers already)."""
        self._check_active()
        return self._engine.get_many(keys, self.seq)

    def _check_active(self) -> None:
        if self._finished:
            raise TransactionClosedError("this transaction already committed or rolled back; start a new one")
        if self._engine.closed:
            raise self._engine.closed_error()

    def _release(self) -> None:
        self._engine.release_snapshot(self.seq)
        if self._state is not None:
            self._manager.end(self._state)
            self._state = None

    async def commit(self) -> int | None:
        """Write everything buffered, atomically; return the commit's sequence number (None if
        the transaction wrote nothing: no commit happens). Raises ConflictError if a concurrent
        commit touched what this transaction read, wrote or scanned; nothing is written then.
        A transaction commits at most once, whatever the outcome."""
        if self._finished:
            raise TransactionClosedError("this transaction already committed or rolled back; start a new one")
        self._finished = True
        try:
            if self._engine.closed:
                raise self._engine.closed_error()
            if not self._writes:
                return None
            state = self._state
            assert state is not None
            writes = self._writes
            manager = self._manager
            engine = self._engine

            def precheck() -> None:
                try:
                    manager.tracker.check(state, writes.keys())
                except ConflictError:
                    manager.conflicts += 1
                    self._conflict_seq = engine.last_seq
                    raise
                # Checked (and appended next, with no await between): this transaction no
                # longer needs tracking, so a commit while no other one is open records nothing.
                manager.tracker.end(state)

            seq = await self._engine.write(
                list(writes.keys()), list(writes.values()), self._bytes, precheck=precheck, origin="transaction"
            )
            manager.commits += 1
            self.commit_seq = seq
            return seq
        finally:
            self._release()

    async def rollback(self) -> None:
        """Discard every buffered write. Idempotent after the transaction finished."""
        if not self._finished:
            self._finished = True
            self._release()

    async def aclose(self) -> None:
        """Roll back unless the transaction already committed or rolled back (what leaving
        an ``async with`` block with an exception does). Idempotent."""
        await self.rollback()

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._finished:
            return
        if exc_type is None:
            await self.commit()
        else:
            await self.rollback()

    def __repr__(self) -> str:
        if not self._finished:
            state = "active"
        elif self.commit_seq is not None:
            state = f"committed at {self.commit_seq}"
        else:
            state = "finished"
        mode = " read-only" if self.read_only else ""
        return f"<quanta.Transaction seq={self.seq} {state}{mode} writes={len(self._writes)}>"

    def __del__(self) -> None:
        if not getattr(self, "_finished", True):
            self._finished = True
            try:
                self._release()
            except Exception:  # pragma: no cover - interpreter shutdown
                return
            warnings.warn(
                "a transaction was dropped without commit or rollback; use `async with db.transaction()`",
                ResourceWarning,
                stacklevel=2,
            )


class TransactionKeyValue:
    """``tx.kv``: reads at the transaction's snapshot plus its own writes; buffered writes."""

    __slots__ = ("_tx",)

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def __repr__(self) -> str:
        return f"<quanta.TransactionKeyValue of {self._tx!r}>"

    def _note_read(self, keys: Iterable[bytes]) -> None:
        state = self._tx._state
        if state is not None:
            reads = state.reads
            new = [key for key in keys if key not in reads]
            if len(reads) + len(set(new)) > MAX_TX_KEYS:
                raise LimitExceededError(f"a transaction may read at most {MAX_TX_KEYS} distinct keys")
            reads.update(new)

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key``: this transaction's own write if it made one, else the value
        at its snapshot. A key in the reserved entity key space raises ReservedKeyError."""
        key = check_key(key)
        if key < RESERVED_END and key >= RESERVED_PREFIX:
            raise reserved_error(key)
        return self._read(key)

    async def _get(self, key: bytes) -> bytes | None:
        """``get`` without the reserved-space check (for the entity layer)."""
        return self._read(check_key(key))

    def _read(self, key: bytes) -> bytes | None:
        tx = self._tx
        tx._check_active()
        writes = tx._writes
        if key in writes:
            return writes[key]
        self._note_read((key,))
        return tx._engine.get(key, tx.seq)

    async def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """Values for ``keys``, in order (None where absent), as ``get`` sees them."""
        if isinstance(keys, (bytes, str)) or not isinstance(keys, Iterable):
            raise InvalidTypeError(f"get_many takes an iterable of bytes keys, got {type(keys).__name__}")
        checked = [check_key(k) for k in keys]
        check_user_keys(checked)
        return self._read_many(checked)

    async def _get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """``get_many`` without the reserved-space check (for the entity layer)."""
        return self._read_many([check_key(k) for k in keys])

    def _read_many(self, checked: list[bytes]) -> list[bytes | None]:
        tx = self._tx
        tx._check_active()
        writes = tx._writes
        missing = [k for k in checked if k not in writes]
        self._note_read(missing)
        found = dict(zip(missing, tx._engine.get_many(missing, tx.seq), strict=True))
        return [writes[k] if k in writes else found[k] for k in checked]

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
        """``(key, value)`` pairs in range, in key order, as of the snapshot with this
        transaction's writes (made before the scan started) merged in.

        Conflict detection covers the whole requested range, not only the keys returned: a
        commit that puts or deletes any key in ``[start, stop)`` (and ``prefix``) after this
        transaction began makes its commit fail -- phantoms included.

        Like ``db.kv.scan``, it steps over the reserved entity key space unless
        ``include_reserved=True`` (for debugging).
        """
        lo, hi = key_range(start, stop, prefix)
        scan_args(reverse, limit)
        if not check_flag("include_reserved", include_reserved):
            parts = user_ranges(lo, hi)
            if len(parts) != 1:
                # Conflicts are tracked on the whole requested range (as before the clip: a
                # conservative superset); the reserved keys are only left out of the result.
                own = self._begin_scan(lo, hi, reverse)
                if reverse:
                    parts.reverse()
                scans = [(plo, phi, _within(own, plo, phi)) for plo, phi in parts]
                return _chained_scan(self._tx, scans, reverse, limit)
            lo, hi = parts[0]
        return _merged_scan(self._tx, lo, hi, reverse, limit, self._begin_scan(lo, hi, reverse))

    def _scan(
        self, lo: bytes | None, hi: bytes | None, reverse: bool = False, limit: int | None = None
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """``scan`` of ``[lo, hi)``, reserved space included (for the entity layer; bounds trusted)."""
        return _merged_scan(self._tx, lo, hi, reverse, limit, self._begin_scan(lo, hi, reverse))

    def _begin_scan(self, lo: bytes | None, hi: bytes | None, reverse: bool) -> list[tuple[bytes, bytes | None]]:
        """Record a scan of ``[lo, hi)`` for conflict detection; return this transaction's own
        writes in that range, in scan order."""
        tx = self._tx
        tx._check_active()
        state = tx._state
        if state is not None:
            if len(state.ranges) >= MAX_TX_RANGES:
                raise LimitExceededError(f"a transaction may run at most {MAX_TX_RANGES} scans")
            state.ranges.append((lo or b"", hi))
        if not tx._writes:
            return []
        order = tx._sorted
        if order is None:
            order = tx._sorted = sorted(tx._writes)
        i = 0 if lo is None else bisect_left(order, lo)
        j = len(order) if hi is None else bisect_left(order, hi)
        keys = order[i:j]
        if reverse:
            keys.reverse()
        return [(k, tx._writes[k]) for k in keys]

    async def _scan_chunks(
        self, lo: bytes | None, hi: bytes | None, reverse: bool, first: int
    ) -> AsyncGenerator[tuple[list[bytes], list[bytes]], None]:
        """``scan`` as non-empty column chunks (for the entity layer; bounds trusted)."""
        view = self._view()
        async with aclosing(paced(view.chunks(lo, hi, reverse, first), view.check)) as items:
            async for keys, values in items:
                if keys:
                    yield keys, values

    def _view(self) -> TransactionView:
        """This transaction's state (its snapshot with its own writes merged in) as a
        synchronous read view (for the query executor)."""
        self._tx._check_active()
        return TransactionView(self)

    async def put(self, key: bytes, value: bytes) -> None:
        """Buffer ``key = value``; written when the transaction commits. A coroutine like
        ``db.kv.put`` (so the same code runs in and out of a transaction), though it never
        suspends: the write is only buffered."""
        key = check_user_key(key)
        value = check_value(value)
        self._buffer(key, value, len(key) + len(value))

    async def delete(self, key: bytes) -> None:
        """Buffer the removal of ``key``."""
        key = check_user_key(key)
        self._buffer(key, None, len(key))

    async def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Buffer every ``(key, value)`` of ``items``; all are checked first, so a bad one
        buffers nothing."""
        if isinstance(items, (bytes, str, dict)) or not isinstance(items, Iterable):
            raise InvalidTypeError(f"put_many takes an iterable of (key, value) pairs, got {type(items).__name__}")
        keys: list[bytes] = []
        values: list[bytes | None] = []
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidTypeError(f"put_many items must be (key, value) tuples, got {item!r:.80}")
            keys.append(check_user_key(item[0]))
            values.append(check_value(item[1]))
        self._put_generated(keys, values)

    def _buffer(self, key: bytes, value: bytes | None, size: int) -> None:
        tx = self._tx
        tx._check_active()
        if tx.read_only:
            raise ReadOnlyError("this transaction was started with read_only=True")
        writes = tx._writes
        present = key in writes
        before = len(key) + len(writes[key] or b"") if present else 0
        if not present and len(writes) >= MAX_TX_KEYS:
            raise LimitExceededError(f"a transaction may write at most {MAX_TX_KEYS} distinct keys")
        batch_size_check(tx._bytes - before + size)
        tx._bytes += size - before
        if not present:
            tx._sorted = None
        writes[key] = value

    def _put_generated(self, keys: list[bytes], values: list[bytes | None]) -> None:
        """Buffer many writes of keys the layer above generated (the entity layer's records
        and index entries): checked at C speed over whole columns, one dict update. The same
        limits as ``put``/``delete``; nothing is buffered if one is crossed."""
        tx = self._tx
        tx._check_active()
        if tx.read_only:
            raise ReadOnlyError("this transaction was started with read_only=True")
        if not keys:
            return
        if min(map(len, keys)) == 0 or max(map(len, keys)) > MAX_KEY_BYTES:
            for key in keys:
                check_key(key)  # names the bad one
        writes = tx._writes
        fresh = dict(zip(keys, values, strict=True))
        replaced = [k for k in fresh if k in writes] if writes else []
        before = sum(len(k) + len(writes[k] or b"") for k in replaced)
        size = sum(map(len, fresh)) + sum(map(len, filter(None, fresh.values())))
        if len(writes) + len(fresh) - len(replaced) > MAX_TX_KEYS:
            raise LimitExceededError(f"a transaction may write at most {MAX_TX_KEYS} distinct keys")
        batch_size_check(tx._bytes - before + size)
        tx._bytes += size - before
        if len(replaced) != len(fresh):  # a key not written before: the sorted view is stale
            tx._sorted = None
        if writes:
            writes.update(fresh)
        else:  # the transaction's first writes (a bulk put_many): no copy
            tx._writes = fresh


def _within(
    own: list[tuple[bytes, bytes | None]], lo: bytes | None, hi: bytes | None
) -> list[tuple[bytes, bytes | None]]:
    return [(k, v) for k, v in own if (lo is None or k >= lo) and (hi is None or k < hi)]


class TransactionView:
    """A synchronous read view of a transaction: its snapshot with its own writes merged in,
    reads and scans recorded for conflict detection as ``tx.kv``'s are (the query
    executor's ``ReadView``, ``quanta/_entity/executor.py``)."""

    __slots__ = ("_kv",)

    def __init__(self, kv: TransactionKeyValue) -> None:
        self._kv = kv

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """``get_many`` of trusted keys, as the transaction sees them."""
        return self._kv._read_many(keys)

    def chunks(
        self, lo: bytes | None, hi: bytes | None, reverse: bool, first: int
    ) -> Generator[tuple[list[bytes], list[bytes]], None, None]:
        """The entries of ``[lo, hi)`` as the transaction sees them, as ``(keys, values)``
        column chunks in scan order (a chunk may be empty). The range is recorded for
        conflict detection when the first chunk is asked for."""
        kv = self._kv
        own = kv._begin_scan(lo, hi, reverse)
        tx = kv._tx
        base = chunks(tx._engine, lo, hi, tx.seq, reverse, first)
        if not own:
            for keys, values, _ in base:
                yield keys, values
            return
        yield from _merge_own(base, own, reverse)

    def check(self) -> None:
        """Raise if the transaction finished (or the database closed) meanwhile."""
        tx = self._kv._tx
        if tx._finished:
            raise TransactionClosedError("the transaction finished during the scan")
        if tx._engine.closed:
            raise tx._engine.closed_error()


def _merge_own(
    base: Iterator[tuple[list[bytes], list[bytes], bool]], own: list[tuple[bytes, bytes | None]], reverse: bool
) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """The engine's chunks (``base``) with a transaction's own writes in the range (``own``,
    in scan order; None: deleted) merged in: each own write goes into the chunk whose last
    key it does not pass (into the last chunk if it passes them all), so chunks stay in scan
    order and each key comes once."""
    i, n = 0, len(own)
    for keys, values, last in base:
        if i < n and (keys or last):
            j = i
            if last:
                j = n
            elif reverse:
                bound = keys[-1]
                while j < n and own[j][0] >= bound:
                    j += 1
            else:
                bound = keys[-1]
                while j < n and own[j][0] <= bound:
                    j += 1
            if j > i:
                merged = dict(zip(keys, values, strict=True))
                for key, value in own[i:j]:
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                i = j
                keys = sorted(merged, reverse=reverse)
                values = [merged[k] for k in keys]
        yield keys, values


async def _chained_scan(
    tx: Transaction,
    scans: list[tuple[bytes | None, bytes | None, list[tuple[bytes, bytes | None]]]],
    reverse: bool,
    limit: int | None,
) -> AsyncGenerator[tuple[bytes, bytes], None]:
    """``_merged_scan`` over several disjoint ranges (in scan order), as one scan: ``limit``
    counts across them."""
    remaining = limit
    for lo, hi, own in scans:
        if remaining == 0:
            return
        async with aclosing(_merged_scan(tx, lo, hi, reverse, remaining, own)) as items:
            async for item in items:
                yield item
                if remaining is not None:
                    remaining -= 1


async def _merged_scan(
    tx: Transaction,
    lo: bytes | None,
    hi: bytes | None,
    reverse: bool,
    limit: int | None,
    own: list[tuple[bytes, bytes | None]],
) -> AsyncGenerator[tuple[bytes, bytes], None]:
    """The snapshot scan with the transaction's own writes (``own``, in scan order) merged in."""
    if limit == 0:
        return
    remaining = -1 if limit is None else limit
    i = 0
    base = scan(tx._engine, lo, hi, reverse, None, tx.seq)
    try:
        async for key, value in base:
            if tx._finished:
                raise TransactionClosedError("the transaction finished during the scan")
            while i < len(own) and (own[i][0] > key if reverse else own[i][0] < key):
                own_key, own_value = own[i]
                i += 1
                if own_value is not None:
                    yield own_key, own_value
                    remaining -= 1
                    if remaining == 0:
                        return
            if i < len(own) and own[i][0] == key:
                value = own[i][1]  # type: ignore[assignment]
                i += 1
                if value is None:
                    continue  # deleted by this transaction
            yield key, value
            remaining -= 1
            if remaining == 0:
                return
        for own_key, own_value in own[i:]:
            if own_value is not None:
                yield own_key, own_value
                remaining -= 1
                if remaining == 0:
                    return
    finally:
        await base.aclose()


def check_retries(retries: object) -> int:
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise InvalidTypeError(f"retries must be an int, got {type(retries).__name__}")
    if retries < 0:
        raise InvalidArgumentError(f"retries must be >= 0, got {retries}")
    return retries


async def run_transaction(
    begin: Callable[[], Transaction], fn: Callable[[Transaction], Awaitable[R]], retries: int
) -> R:
    """Run ``fn(tx)`` in a fresh transaction and commit; on ConflictError run it again, up to
    ``retries`` more times. A retry begins once the commit that refused the attempt is
    readable (with durability="sync" it may still wait for its fsync; a retry begun earlier
    would read the old snapshot and be refused again), after a short randomized backoff
    (0.5-1 ms doubling up to ~50 ms) so that colliding tasks spread out."""
    attempt = 0
    while True:
        tx = begin()
        try:
            async with tx:
                return await fn(tx)
        except ConflictError:
            if attempt >= retries:
                raise
            # The commit that refused this one may still wait for its group's fsync: a retry
            # begun before it is readable reads the old snapshot and is refused again.
            await tx._engine.wait_visible(tx._conflict_seq)
        delay = min(0.001 * (2**attempt), 0.05)
        attempt += 1
        await anyio.sleep(delay * (0.5 + random.random() / 2))
