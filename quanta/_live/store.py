"""Synchronous reads of one entity's records, for live queries: the planner's plans run
against the engine at its newest visible state, without a snapshot and without an await.

Why synchronous: a live query reads the store at two moments only, when it is opened (its
first result) and when a commit empties its cached window (a refill). Both must read
*exactly* the state the live query is at: at opening, the state its dispatcher's bus
subscription starts from; at a refill, the commit being applied (the dispatcher runs inside
the change bus's publish, right after the commit became visible and before any later one).
A read that never yields sees exactly that state with no snapshot to pin, and cannot
interleave with a commit. The engine's reads are synchronous underneath in any case (the
async scan only adds a checkpoint between chunks), so this costs the same CPU; the price is
that a live query over a very large result holds the loop while it is read (docs/live.md).

The plan contract is the one in ``quanta/_query/planner.py``; this is a second executor
beside ``quanta/_entity/executor.py``'s, yielding ``(encoded pk, stored bytes)`` so that results
can be compared by their bytes without re-encoding. Event-loop thread only.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._kv import chunks
from .._schema.info import EntityInfo
from .._schema.keyspace import record_prefix
from .._schema.linkvalues import SOURCE
from .diff import Row

if TYPE_CHECKING:
    from .._query import Plan
    from .._storage import Engine

__all__ = ["Source"]

_FIRST_CHUNK = 64
_GET_BATCH = 512


def _row_key(row: Row) -> bytes:
    return row.key


class Source:
    """The records of one entity in one engine (see the module docstring)."""

    __slots__ = ("decode", "engine", "info", "prefix")

    def __init__(self, engine: Engine, info: EntityInfo) -> None:
        self.engine = engine
        self.info = info
        self.prefix = record_prefix(info.name)[0]
        self.decode: Callable[[bytes], Any] = info.decode  # see bind_to

    def bind_to(self, database: Any) -> None:
        """Decode objects bound to ``database`` (held weakly), as its collection's reads are,
        so that the links of objects a live query emits load without an explicit source.
        For entity classes with links or backlinks only; others decode as they are."""
        if self.decode is not self.info.decode:
            return
        decode, ref = self.info.decode, weakref.ref(database)

        def bound(data: bytes) -> Any:
            obj = decode(data)
            db = ref()
            if db is not None:
                obj.__dict__[SOURCE] = db
            return obj

        self.decode = bound

    def _seq(self) -> int:
        # No closed check: a commit still in flight when close() began is published (and
        # may refill) after `closed` is set; nothing is published after the shutdown.
        return self.engine.visible_seq

    def old_values(self, keys: list[bytes], seq: int) -> list[bytes | None]:
        """The values of record ``keys`` just before commit ``seq``. Only inside the change
        bus's publish of ``seq`` (as the bus's own ``with_old``: the engine applies no later
        batch and runs no flush before the publish returns, so the versions at ``seq - 1``
        are still there)."""
        return self.engine.get_many(keys, seq - 1)

    def get(self, epk: bytes) -> bytes | None:
        """The stored bytes of the record with encoded primary key ``epk``, or None."""
        return self.engine.get_many([self.prefix + epk], self._seq())[0]

    def entries(self, plan: Plan) -> Iterator[tuple[bytes, bytes]]:
        """``(encoded pk, stored bytes)`` of every record ``plan``'s access path reaches,
        once each, in access order (the residual filter is the caller's)."""
        engine = self.engine
        seq = self._seq()
        prefix = self.prefix
        plen = len(prefix)
        ranges = plan.ranges[::-1] if plan.reverse else plan.ranges
        access = plan.access
        if access == "pk_get":
            keys = [start for start, _ in ranges]
            for key, value in zip(keys, engine.get_many(keys, seq), strict=True):
                if value is not None:
                    yield key[plen:], value
            return
        if access == "unique_get":
            found = [v for v in engine.get_many([start for start, _ in ranges], seq) if v is not None]
            for epk, value in zip(found, engine.get_many([prefix + e for e in found], seq), strict=True):
                if value is not None:
                    yield epk, value
            return
        if access in ("pk_range", "full_scan"):
            for lo, hi in ranges:
                for key, value in _scan(engine, lo, hi, seq, plan.reverse):
                    yield key[plen:], value
            return
        batch: list[bytes] = []
        for epk in self._index_pks(plan, ranges, seq):
            batch.append(epk)
            if len(batch) >= _GET_BATCH:
                yield from self._fetch(batch, seq)
                batch = []
        if batch:
            yield from self._fetch(batch, seq)

    def _index_pks(self, plan: Plan, ranges: tuple[tuple[bytes, bytes | None], ...], seq: int) -> Iterator[bytes]:
        """The encoded primary keys an index path reaches (an entry's value), first
        occurrences only when the plan dedupes."""
        seen: set[bytes] | None = set() if plan.dedupe else None
        for lo, hi in ranges:
            for _, epk in _scan(self.engine, lo, hi, seq, plan.reverse):
                if seen is not None:
                    if epk in seen:
                        continue
                    seen.add(epk)
                yield epk

    def _fetch(self, epks: list[bytes], seq: int) -> Iterator[tuple[bytes, bytes]]:
        prefix = self.prefix
        for epk, value in zip(epks, self.engine.get_many([prefix + e for e in epks], seq), strict=True):
            if value is not None:
                yield epk, value

    def matches(self, plan: Plan) -> Iterator[tuple[bytes, bytes, Any]]:
        """``(encoded pk, stored bytes, object)`` of every record matching ``plan``'s
        predicate, in access order."""
        decode = self.decode
        residual = plan.residual
        check = residual.evaluate if residual is not None else None
        for epk, data in self.entries(plan):
            obj = decode(data)
            if check is None or check(obj):
                yield epk, data, obj

    def head(self, plan: Plan, key: Callable[[Any, bytes], bytes], n: int | None) -> tuple[list[Row], bool]:
        """The first ``n`` matches of ``plan`` in result order (``key``), as rows, and
        whether they are all the matches there are (``n`` None: every match)."""
        rows: list[Row] = []
        stop = n + 1 if n is not None and plan.sorted_by_access else None
        for epk, data, obj in self.matches(plan):
            rows.append(Row(key(obj, epk), epk, data, obj))
            if stop is not None and len(rows) >= stop:
                break
        rows.sort(key=_row_key)
        complete = n is None or len(rows) <= n
        if n is not None:
            del rows[n:]
        return rows, complete

    def count(self, plan: Plan) -> int:
        """How many records match ``plan``'s predicate (no record is read when the access
        path alone decides)."""
        if plan.residual is not None or plan.access in ("pk_get", "unique_get"):
            return sum(1 for _ in self.matches(plan))
        seq = self._seq()
        ranges = plan.ranges
        if plan.access == "index_range":
            return sum(1 for _ in self._index_pks(plan, ranges, seq))
        return sum(1 for lo, hi in ranges for _ in _scan(self.engine, lo, hi, seq, False))


def _scan(engine: Engine, lo: bytes, hi: bytes | None, seq: int, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
    """Every live ``(key, value)`` with ``lo <= key < hi`` at ``seq`` (the scan loop of
    ``quanta/_kv.py``, from a small first chunk)."""
    for keys, values, _ in chunks(engine, lo, hi, seq, reverse, _FIRST_CHUNK):
        yield from zip(keys, values, strict=True)
