"""The executor: runs the planner's plans (``quanta/_query/planner.py`` states the contract)
against a reader (a snapshot's or a transaction's ``kv``), a chunk of keys at a time.
Queries, counts, queries through links (``_relations.py``) and deletes by query run here.

Concurrency rules: event-loop thread only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

from msgpack import packb as _packb

from .._query import And, Compare, Expr, Plan
from .._schema import EntityInfo
from ..errors import CorruptionError
from .entries import entity_keys
from .records import find_bad_record

__all__ = ["count_matches", "execute"]


async def execute(p: Plan, info: EntityInfo, reader: Any) -> AsyncGenerator[list[Any], None]:
    """Run plan ``p`` against ``reader`` (a snapshot's or a transaction's ``kv``): the
    matching records, decoded, filtered and windowed, in result order, a batch at a time
    (the contract is in ``quanta/_query/planner.py``). Batches, not single records: a
    query's cost is per chunk of keys (C-level slicing, ``map``), not per-record frames."""
    if p.limit == 0:
        return
    residual = p.residual
    matches = residual.evaluate if residual is not None else None
    needles = _needles(residual, info) if residual is not None else ()
    decode = info.decode
    skip, limit = p.offset, p.limit
    sorted_by_access = p.sorted_by_access
    # The first chunk: with a window and no filter, exactly what the window needs.
    first = min(skip + limit, 4096) if sorted_by_access and limit is not None and residual is None else 256
    found: list[Any] = []
    async with aclosing(_raw_records(p, info, reader, first)) as source:
        async for values in source:
            for needle in needles:
                values = [v for v in values if needle in v]
            try:
                objs = list(map(decode, values))
            except CorruptionError as exc:
                raise await find_bad_record(info, reader, values, exc) from exc
            if matches is not None:
                objs = list(filter(matches, objs))
            if not sorted_by_access:
                found += objs
                continue
            if skip:
                if len(objs) <= skip:
                    skip -= len(objs)
                    continue
                objs = objs[skip:]
                skip = 0
            if limit is not None:
                if len(objs) >= limit:
                    yield objs[:limit]
                    return
                limit -= len(objs)
            if objs:
                yield objs
    if not sorted_by_access:
        end = None if limit is None else skip + limit
        yield p.sort(found)[skip:end]


async def _raw_records(p: Plan, info: EntityInfo, reader: Any, first: int) -> AsyncGenerator[list[bytes], None]:
    """The stored records the access path reaches (before the residual filter), in access
    order, a batch at a time."""
    prefix = entity_keys(info).record_prefix
    access = p.access
    if access in ("pk_get", "unique_get"):
        keys = [start for start, _ in p.ranges]
        if p.reverse:  # the lookups, like ranges, in the plan's direction
            keys.reverse()
        values = [v for v in await reader._get_many(keys) if v is not None]
        if access == "unique_get":  # a unique entry's value is its record's encoded primary key
            values = [v for v in await reader._get_many([prefix + v for v in values]) if v is not None]
        if values:
            yield values
        return
    ranges: Sequence[tuple[bytes, bytes | None]] = p.ranges[::-1] if p.reverse else p.ranges
    if access in ("pk_range", "full_scan"):
        for start, stop in ranges:
            async with aclosing(reader._scan_chunks(start, stop, p.reverse, first)) as chunks:
                async for _, values in chunks:
                    yield values
        return
    # Every index entry's value is its record's encoded primary key (canonical: equal bytes,
    # equal keys), so the record key needs no decoding.
    seen: set[bytes] | None = set() if p.dedupe else None
    for start, stop in ranges:
        async with aclosing(reader._scan_chunks(start, stop, p.reverse, first)) as chunks:
            async for _, epks in chunks:
                if seen is not None:
                    epks = [e for e in dict.fromkeys(epks) if e not in seen]
                    seen.update(epks)
                if epks:
                    records = await reader._get_many([prefix + e for e in epks])
                    yield [r for r in records if r is not None]


async def count_matches(p: Plan, info: EntityInfo, reader: Any) -> int:
    """How many records ``p`` yields. Without a residual filter the access path's entries
    are counted as they are (an index entry exists exactly when its record does: both are
    written in one batch), so nothing is read twice or decoded."""
    if p.residual is not None or p.access in ("pk_get", "unique_get"):
        n = 0
        async with aclosing(execute(p, info, reader)) as batches:
            async for batch in batches:
                n += len(batch)
        return n
    if p.limit == 0:
        return 0
    n = 0
    seen: set[bytes] | None = set() if p.dedupe else None
    for start, stop in p.ranges:
        async with aclosing(reader._scan_chunks(start, stop, False, 1024)) as chunks:
            async for _, values in chunks:
                if seen is None:
                    n += len(values)
                else:
                    before = len(seen)
                    seen.update(values)
                    n += len(seen) - before
    n = max(0, n - p.offset)
    return n if p.limit is None else min(n, p.limit)


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
