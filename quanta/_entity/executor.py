"""The executor: the one place the planner's plans run (``quanta/_query/planner.py`` states
the contract), a chunk of keys at a time.

A plan runs against a :class:`ReadView`, a consistent synchronous view of the key space:

* a snapshot (``snapshot.kv._view()``, ``quanta._kv.EngineView``): a database
  collection's queries, counts and aggregates, one snapshot per call;
* a transaction (``tx.kv._view()``, ``quanta._txn.TransactionView``): its snapshot with its
  own writes merged in, reads recorded for conflict detection (a transaction's queries,
  and deletes by query);
* the engine's newest state inside a commit's publish (an ``EngineView`` at the visible
  sequence number): live queries, when they open and when a refill reads their window
  again (``quanta/_live/store.py``).

The core is synchronous generators, one step per chunk of keys (C-level slicing and
``map`` within a chunk, no Python frame per record): :func:`reached` (the stored records an
access path reaches), :func:`objects` and :func:`rows` (the matches, decoded and filtered),
:func:`results` (in result order, windowed), :func:`match_counts` (how many match). Two
ways to drive them:

* :func:`execute` and :func:`count_matches` run under ``await`` with a checkpoint between
  chunks (``quanta._kv.paced``), so a long query never holds the event loop;
* live queries iterate the same generators without yielding: a read inside a publish
  must see exactly the commit being published, and nothing can interleave with it.

Concurrency rules: event-loop thread only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import aclosing
from typing import Any, Protocol

from msgpack import packb as _packb

from .._codec import prefix_end
from .._kv import paced
from .._query import And, Compare, Expr, Plan
from .._schema import EntityInfo
from ..errors import CorruptionError
from .entries import entity_keys
from .records import bad_record

__all__ = ["ReadView", "clamp", "count_matches", "execute", "match_counts", "objects", "reached", "results", "rows"]


class ReadView(Protocol):
    """What the executor reads through (see the module docstring). Keys are trusted (built
    by the entity layer); nothing here awaits."""

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of ``keys``, in order, None where absent."""

    def chunks(
        self, lo: bytes | None, hi: bytes | None, reverse: bool, first: int
    ) -> Generator[tuple[list[bytes], list[bytes]], None, None]:
        """The entries of ``[lo, hi)`` as ``(keys, values)`` column chunks in scan order,
        ``first`` entries (about) then growing; a chunk may be empty."""

    def check(self) -> None:
        """Raise if the view cannot be read on (database closed, transaction finished)."""


Decode = Callable[[bytes], Any]

# ---------------------------------------------------------------------- the synchronous core


def reached(
    p: Plan, info: EntityInfo, view: ReadView, first: int, keyed: bool
) -> Generator[tuple[list[bytes] | None, list[bytes]], None, None]:
    """``(encoded primary keys, stored records)`` of the records ``p``'s access path reaches,
    once each, in access order (the residual filter is not applied), a chunk at a time; the
    keys only when ``keyed`` (else None: slicing them costs a little per record). A chunk may
    be empty (a step where nothing was found: a chance for a driver to let others run)."""
    prefix = entity_keys(info).record_prefix
    plen = len(prefix)
    access = p.access
    ranges = p.ranges[::-1] if p.reverse else p.ranges  # lookups and ranges in the plan's direction
    if access in ("pk_get", "unique_get"):
        keys = [start for start, _ in ranges]
        values = view.get_many(keys)
        if access == "unique_get":  # a unique entry's value is its record's encoded primary key
            epks = [v for v in values if v is not None]
            values = view.get_many([prefix + e for e in epks])
        else:
            epks = [k[plen:] for k in keys]
        if keyed:
            found = [(e, v) for e, v in zip(epks, values, strict=True) if v is not None]
            yield [e for e, _ in found], [v for _, v in found]
        else:
            yield None, [v for v in values if v is not None]
        return
    if access in ("pk_range", "full_scan"):
        for start, stop in ranges:
            for rkeys, records in view.chunks(start, stop, p.reverse, first):
                yield ([k[plen:] for k in rkeys] if keyed else None), records
        return
    # An index path. Every entry's value is its record's encoded primary key (canonical:
    # equal bytes, equal keys), so the record key needs no decoding.
    seen: set[bytes] | None = set() if p.dedupe else None
    for start, stop in ranges:
        for _, epks in view.chunks(start, stop, p.reverse, first):
            if seen is not None:
                epks = [e for e in dict.fromkeys(epks) if e not in seen]
                seen.update(epks)
            if not epks:
                yield ([] if keyed else None), []
                continue
            fetched = view.get_many([prefix + e for e in epks])
            if keyed:
                found = [(e, r) for e, r in zip(epks, fetched, strict=True) if r is not None]
                yield [e for e, _ in found], [r for _, r in found]
            else:
                yield None, [r for r in fetched if r is not None]


def objects(p: Plan, info: EntityInfo, view: ReadView, decode: Decode, first: int) -> Generator[list[Any], None, None]:
    """The records matching ``p``'s predicate, decoded, in access order, a chunk at a time
    (a chunk may be empty). A record that cannot be decoded raises the CorruptionError
    naming its key."""
    residual = p.residual
    matches = residual.evaluate if residual is not None else None
    needles = _needles(residual, info) if residual is not None else ()
    for _, values in reached(p, info, view, first, False):
        for needle in needles:
            values = [v for v in values if needle in v]
        try:
            objs = list(map(decode, values))
        except CorruptionError as exc:
            raise _bad_value(info, view, decode, values, exc) from exc
        yield list(filter(matches, objs)) if matches is not None else objs


def rows(
    p: Plan, info: EntityInfo, view: ReadView, decode: Decode, first: int
) -> Generator[list[tuple[bytes, bytes, Any]], None, None]:
    """``objects`` with their keys and stored bytes: ``(encoded pk, stored bytes, object)``
    of every match, in access order, a chunk at a time (for live queries, which compare
    results by their bytes)."""
    residual = p.residual
    matches = residual.evaluate if residual is not None else None
    needles = _needles(residual, info) if residual is not None else ()
    prefix = entity_keys(info).record_prefix
    for epks, values in reached(p, info, view, first, True):
        assert epks is not None
        pairs = list(zip(epks, values, strict=True))
        for needle in needles:
            pairs = [(e, v) for e, v in pairs if needle in v]
        out: list[tuple[bytes, bytes, Any]] = []
        for epk, data in pairs:
            try:
                obj = decode(data)
            except CorruptionError as exc:
                raise bad_record(info, prefix + epk, exc) from exc
            if matches is None or matches(obj):
                out.append((epk, data, obj))
        yield out


def results(
    p: Plan, info: EntityInfo, view: ReadView, decode: Decode | None = None
) -> Generator[list[Any], None, None]:
    """The query's result: the matches in result order, windowed (``offset``, ``limit``), a
    chunk at a time (a chunk may be empty). With a window and no filter on a path already in
    result order, the first chunk is exactly what the window needs."""
    if p.limit == 0 or not p.ranges:
        return
    skip, limit = p.offset, p.limit
    sorted_by_access = p.sorted_by_access
    first = min(skip + limit, 4096) if sorted_by_access and limit is not None and p.residual is None else 256
    chunks = objects(p, info, view, info.decode if decode is None else decode, first)
    if not sorted_by_access:
        found: list[Any] = []
        for objs in chunks:
            found += objs
            yield []
        end = None if limit is None else skip + limit
        yield p.sort(found)[skip:end]
        return
    for objs in chunks:
        if skip:
            if len(objs) <= skip:
                skip -= len(objs)
                yield []
                continue
            objs = objs[skip:]
            skip = 0
        if limit is not None:
            if len(objs) >= limit:
                yield objs[:limit]
                return
            limit -= len(objs)
        yield objs


def match_counts(p: Plan, info: EntityInfo, view: ReadView) -> Generator[int, None, None]:
    """How many records match ``p``'s predicate (the window not applied: see ``clamp``), as
    partial counts, one per chunk. Without a residual filter the access path's entries are
    counted as they are (an index entry exists exactly when its record does: both are
    written in one batch), so nothing is read twice or decoded."""
    if not p.ranges:
        return
    if p.residual is not None or p.access in ("pk_get", "unique_get"):
        for objs in objects(p, info, view, info.decode, 256):
            yield len(objs)
        return
    seen: set[bytes] | None = set() if p.dedupe else None
    for start, stop in p.ranges:
        for _, values in view.chunks(start, stop, False, 1024):
            if seen is None:
                yield len(values)
            else:
                before = len(seen)
                seen.update(values)
                yield len(seen) - before


def clamp(p: Plan, n: int) -> int:
    """``n`` matches seen through ``p``'s window (``offset``, then ``limit``)."""
    n = max(0, n - p.offset)
    return n if p.limit is None else min(n, p.limit)


# ---------------------------------------------------------------------- drivers under await


async def execute(p: Plan, info: EntityInfo, reader: Any) -> AsyncGenerator[list[Any], None]:
    """Run plan ``p`` against ``reader`` (a snapshot's or a transaction's ``kv``): the
    query's result, decoded, filtered, ordered and windowed, a non-empty batch at a time,
    with a checkpoint between chunks."""
    view: ReadView = reader._view()
    async with aclosing(paced(results(p, info, view), view.check)) as batches:
        async for batch in batches:
            if batch:
                yield batch


async def count_matches(p: Plan, info: EntityInfo, reader: Any) -> int:
    """How many records ``p`` yields (its window applied), with a checkpoint between chunks."""
    if p.limit == 0:
        return 0
    view: ReadView = reader._view()
    n = 0
    async with aclosing(paced(match_counts(p, info, view), view.check)) as counts:
        async for k in counts:
            n += k
    return clamp(p, n)


# ---------------------------------------------------------------------- helpers


def _bad_value(
    info: EntityInfo, view: ReadView, decode: Decode, values: list[bytes], exc: CorruptionError
) -> CorruptionError:
    """``bad_record`` for a chunk decoded without its keys: the first value that fails is
    looked up by a scan of the entity's records (a rare path)."""
    for value in values:
        try:
            decode(value)
        except CorruptionError:
            rprefix = entity_keys(info).record_prefix
            for keys, datas in view.chunks(rprefix, prefix_end(rprefix), False, 1024):
                for key, data in zip(keys, datas, strict=True):
                    if data == value:
                        return bad_record(info, key, exc)
            break
    return exc


def _needles(residual: Expr, info: EntityInfo) -> tuple[bytes, ...]:
    """Byte strings every stored record matching ``residual`` must contain: the msgpack form
    of each ``str`` equality ANDed into it (a record stores a str field as exactly that
    form). A record without one cannot match, so it is skipped undecoded; the residual still
    decides for the rest."""
    out: list[bytes] = []
    for term in residual.items if isinstance(residual, And) else (residual,):
        if isinstance(term, Compare) and term.op == "==" and type(term.value) is str and len(term.value) >= 2:
            f = info.field(term.field.name)
            if f.base is str:
                try:
                    out.append(_packb(term.value))
                except UnicodeEncodeError:  # a lone surrogate: stored in another form
                    continue
    return tuple(out)
