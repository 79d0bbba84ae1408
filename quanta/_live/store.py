"""What a live query reads: one entity's records at the engine's newest visible state, read
through the query executor (``quanta/_entity/executor.py``: the one place plans run) without
a snapshot and without an await.

Why synchronous: a live query reads the store at two moments only, when it is opened (its
first result) and when a commit empties its cached window (a refill). Both must read
*exactly* the state the live query is at: at opening, the state its dispatcher's bus
subscription starts from; at a refill, the commit being applied (the dispatcher runs inside
the change bus's publish, right after the commit became visible and before any later one).
A read that never yields sees exactly that state with no snapshot to pin, and cannot
interleave with a commit. So this module drives the executor's synchronous core directly
(an ``EngineView`` at the visible sequence number), where a collection's query drives it
with a checkpoint between chunks; it costs the same CPU, and the price is that a live query
over a very large result holds the loop while it is read (docs/live.md).

Event-loop thread only.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._entity import match_counts, rows
from .._kv import EngineView
from .._schema import SOURCE, EntityInfo, record_prefix
from .diff import Row

if TYPE_CHECKING:
    from .._query import Plan
    from .._storage import Engine

__all__ = ["Source"]

_FIRST_CHUNK = 64


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

    def _view(self) -> EngineView:
        # No closed check: a commit still in flight when close() began is published (and
        # may refill) after `closed` is set; nothing is published after the shutdown.
        return EngineView(self.engine, self.engine.visible_seq)

    def old_values(self, keys: list[bytes], seq: int) -> list[bytes | None]:
        """The values of record ``keys`` just before commit ``seq``. Only inside the change
        bus's publish of ``seq`` (as the bus's own ``with_old``: the engine applies no later
        batch and runs no flush before the publish returns, so the versions at ``seq - 1``
        are still there)."""
        return self.engine.get_many(keys, seq - 1)

    def get(self, epk: bytes) -> bytes | None:
        """The stored bytes of the record with encoded primary key ``epk``, or None."""
        return self._view().get_many([self.prefix + epk])[0]

    def matches(self, plan: Plan) -> Iterator[tuple[bytes, bytes, Any]]:
        """``(encoded pk, stored bytes, object)`` of every record matching ``plan``'s
        predicate, in access order."""
        for chunk in rows(plan, self.info, self._view(), self.decode, _FIRST_CHUNK):
            yield from chunk

    def head(
        self, plan: Plan, key: Callable[[Any, bytes], bytes], n: int | None, *, in_order: bool = True
    ) -> tuple[list[Row], bool]:
        """The first ``n`` matches of ``plan`` in result order (``key``), as rows, and
        whether they are all the matches there are (``n`` None: every match). On a path in
        result order, reading stops one match past ``n``; ``in_order=False`` says ``plan``'s
        path yields another order than ``key``'s (see ``states.reading``): every match is
        read and sorted."""
        out: list[Row] = []
        stop = n + 1 if n is not None and in_order and plan.sorted_by_access else None
        for chunk in rows(plan, self.info, self._view(), self.decode, _FIRST_CHUNK):
            out += [Row(key(obj, epk), epk, data, obj) for epk, data, obj in chunk]
            if stop is not None and len(out) >= stop:
                break
        out.sort(key=_row_key)
        complete = n is None or len(out) <= n
        if n is not None:
            del out[n:]
        return out, complete

    def count(self, plan: Plan) -> int:
        """How many records match ``plan``'s predicate, the window not applied (no record
        is read when the access path alone decides)."""
        return sum(match_counts(plan, self.info, self._view()))
