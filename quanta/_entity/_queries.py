"""Queries: :class:`Query` (built from a collection, immutable, planned when first run) and the
executor that runs the planner's plans (``quanta/_query/planner.py`` states the contract),
a chunk of keys at a time.

Concurrency rules: event-loop thread only. A query of a database collection runs at one
snapshot per call; a query of a transaction's collection sees its own writes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._query import Expr, Field, Order, Plan, and_, as_order, check, has_through, plan
from .._reactive import Coalesce, ResultDiff, Watch
from .._schema import EntityInfo
from ..errors import QueryError
from . import _relations
from .aggregates import Aggregate, check_aggregate
from .entries import entity_keys
from .executor import count_matches, execute
from .writes import delete_records

if TYPE_CHECKING:
    from .._txn import TransactionKeyValue
    from ._collection import Collection

__all__ = ["Query"]

E = TypeVar("E")
R = TypeVar("R")


class Query(Generic[E]):
    """A query over one collection. Built with ``where``, ``order_by``, ``limit``, ``offset``
    (each returns a new query; a query is immutable); run with ``all``, ``first``, ``count``,
    ``exists``, ``async for``, the aggregates, or ``delete``. ``explain()`` shows the plan.

    Ill-typed or impossible queries raise ``QueryError`` when built, not when run.
    """

    __slots__ = ("_coll", "_include", "_limit", "_offset", "_order", "_plan", "_plan_info", "_where")

    def __init__(
        self,
        coll: Collection[E],
        where: Expr | None,
        order: tuple[Order, ...],
        limit: int | None,
        offset: int,
        include: dict[str, Any] | None = None,
    ) -> None:
        self._coll = coll
        self._where = where
        self._order = order
        self._limit = limit
        self._offset = offset
        self._include = include
        self._plan: Plan | None = None
        self._plan_info: EntityInfo | None = None  # the planning view the plan was made for
        check(coll._info, where, order, limit, offset)  # a bad query fails when built; it is planned when run

    def _replace(self, **changes: Any) -> Query[E]:
        args: dict[str, Any] = {
            "where": self._where,
            "order": self._order,
            "limit": self._limit,
            "offset": self._offset,
        }
        args.update(changes)
        return Query(self._coll, args["where"], args["order"], args["limit"], args["offset"], self._include)

    def include(self, *paths: str) -> Query[E]:
        """Also load these links and backlinks of every result, a batch of results at a time
        (see ``Collection.load_links``): ``posts.where(...).include("author", "author.posts")``."""
        coll = self._coll
        tree = _relations.parse_paths(coll._info, paths)
        if self._include:
            tree = _merge_trees(self._include, tree)
        q = Query(coll, self._where, self._order, self._limit, self._offset, tree or None)
        q._plan, q._plan_info = self._plan, self._plan_info
        return q

    def where(self, *conditions: Any) -> Query[E]:
        for c in conditions:
            if not isinstance(c, Expr):
                raise QueryError(
                    f"where() takes conditions such as User.age >= 30, got {c!r:.60} "
                    "(a plain bool: was a comparison evaluated too early?)"
                )
        parts = ([self._where] if self._where is not None else []) + list(conditions)
        if not parts:
            return self
        return self._replace(where=parts[0] if len(parts) == 1 else and_(*parts))

    def order_by(self, *keys: Any) -> Query[E]:
        orders = []
        for k in keys:
            if not isinstance(k, (Field, Order)):
                raise QueryError(f"order_by() takes fields or quanta.desc(field), got {k!r:.60}")
            orders.append(as_order(k))
        return self._replace(order=self._order + tuple(orders))

    def limit(self, n: int | None) -> Query[E]:
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise QueryError(f"limit must be a non-negative int or None, got {n!r}")
        return self._replace(limit=n)

    def offset(self, n: int) -> Query[E]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise QueryError(f"offset must be a non-negative int, got {n!r}")
        return self._replace(offset=n)

    def plan(self) -> Plan:
        cached = self._cached_plan()
        if cached is None:
            if has_through(self._where):
                raise QueryError(
                    f"{self._where!r}: a query through a link is planned when it runs (its first step queries "
                    "the target); explain() shows both steps"
                )
            cached = self._plan = self._plain_plan()
        return cached

    def _cached_plan(self) -> Plan | None:
        """The plan made earlier, if the indexes queries may use are still the same (an index
        being rebuilt by ``db.repair()`` is hidden from a query planned before it)."""
        if self._plan is not None and self._plan_info is self._planning(self._coll._info):
            return self._plan
        return None

    def _plain_plan(self) -> Plan:
        info = self._plan_info = self._planning(self._coll._info)
        return plan(info, self._where, self._order, self._limit, self._offset)

    def _planning(self, info: EntityInfo) -> EntityInfo:
        catalog = self._coll._ctx.catalog
        if catalog is not None:
            info = catalog.planning_info(info)  # without indexes still being built
        return info

    async def _plan_at(self, reader: Any, *, ordered: bool = True) -> Plan:
        """The plan, run against ``reader``: a query through a link (``has``) first runs its
        conditions on the target there (quanta/_entity/_relations.py); any other is planned once."""
        cached = self._cached_plan() if ordered else None
        if cached is not None:
            return cached
        where = self._where
        if not has_through(where):
            if not ordered:
                return self._replace(order=())._plain_plan()
            cached = self._plan = self._plain_plan()
            return cached
        assert where is not None
        where = await _relations.materialize(where, reader, self._planning)
        order = self._order if ordered else ()
        return plan(self._planning(self._coll._info), where, order, self._limit, self._offset)

    def explain(self) -> str:
        """The chosen access path, index, key ranges, residual filter, sort and window (for a
        query through a link, ``has(...)``: both steps, and what they cost)."""
        if has_through(self._where):
            return _relations.explain_through(self, self._planning)
        return self.plan().explain()

    # ------------------------------------------------------------------ running

    async def all(self) -> list[E]:
        out: list[E] = []
        async with aclosing(self._batches()) as batches:
            async for batch in batches:
                out += batch
        return out

    async def first(self) -> E | None:
        rows = await self.limit(1 if self._limit is None else min(self._limit, 1)).all()
        return rows[0] if rows else None

    async def exists(self) -> bool:
        return await self.first() is not None

    async def count(self) -> int:
        """How many records match (within ``offset``/``limit``)."""
        coll = self._coll
        with coll._reading() as reader:
            return await count_matches(await self._plan_at(reader, ordered=False), coll._info, reader)

    async def __aiter__(self) -> AsyncIterator[E]:
        async with aclosing(self._batches()) as batches:
            async for batch in batches:
                for obj in batch:
                    yield obj

    async def _batches(self) -> AsyncGenerator[list[E], None]:
        """The result, a batch at a time, read through one snapshot (or the transaction);
        objects with links are bound, and the ``include`` paths loaded, a batch at a time."""
        coll = self._coll
        info, tree = coll._info, self._include
        with coll._reading() as reader:
            async with aclosing(execute(await self._plan_at(reader), info, reader)) as batches:
                async for batch in batches:
                    if coll._bind:
                        _relations.bind(batch, coll._source)
                        if tree:
                            await _relations.load_paths(reader, coll._source, info, batch, tree)
                    yield batch

    async def _values(self, field: Any) -> list[Any]:
        if not isinstance(field, Field) or field.owner is not self._coll._info.cls:
            raise QueryError(f"expected a field of {self._coll._info.name}, got {field!r:.60}")
        name = field.name
        return [getattr(obj, name) for obj in await self.all()]

    async def _aggregate(self, kind: str, field: Any) -> Any:
        is_float = check_aggregate(kind, field, self._coll._info, kind)
        return Aggregate.of(kind, is_float, await self._values(field))

    async def min(self, field: Any) -> Any:
        """The smallest non-None value of ``field`` among the matches, in the order
        ``order_by(field)`` uses (None if none; docs/entities.md, "Aggregates")."""
        return await self._aggregate("min", field)

    async def max(self, field: Any) -> Any:
        """The largest non-None value of ``field`` among the matches (see ``min``)."""
        return await self._aggregate("max", field)

    async def sum(self, field: Any) -> Any:
        """The sum of the non-None values of an int or float ``field`` among the matches (0
        if none); a float sum is exact, then rounded once."""
        return await self._aggregate("sum", field)

    async def avg(self, field: Any) -> float | None:
        """The mean of the non-None values of an int or float ``field`` (None if none)."""
        result: float | None = await self._aggregate("avg", field)
        return result

    async def distinct(self, field: Any) -> list[Any]:
        """The distinct values of ``field`` among the matches, in result order."""
        out: list[Any] = []
        seen: set[Any] = set()
        for value in await self._values(field):
            try:
                if value in seen:
                    continue
                seen.add(value)
            except TypeError:  # unhashable (a list field): compare by equality
                if value in out:
                    continue
            out.append(value)
        return out

    async def delete(self) -> int:
        """Delete every match (with its index entries) in one atomic batch; return how many."""
        coll = self._coll
        info = coll._info
        if not has_through(self._where):
            self.plan()  # a bad query fails here, before a transaction begins

        async def op(kv: TransactionKeyValue) -> int:
            record = entity_keys(info).record
            pk = info.primary_key
            keys: list[bytes] = []
            query_plan = await self._plan_at(kv)
            async with aclosing(execute(query_plan, info, kv)) as batches:
                async for batch in batches:
                    keys += [record(getattr(obj, pk)) for obj in batch]
            return await delete_records(info, kv, keys) if keys else 0

        return await coll._write(op)

    def __repr__(self) -> str:
        return f"<quanta.Query {self._coll._info.name} where {self._where!r}>"

    # ------------------------------------------------------------------ live (quanta/_live)
    # Live forms of the query (docs/live.md), run by the live-query layer (above this one:
    # reached through the EntityContext's ``live``, a ``LiveQueries``): the current value at once, then one emission
    # per commit that changes it, maintained incrementally. Only on a database collection
    # (a transaction's raises QueryError). ``coalesce``: at most one emission per that many
    # seconds (a number or a timedelta); ``buffer``: emissions that may wait for a slow
    # consumer (default 10,000) before SubscriberOverflowError.

    def watch(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[list[E]]:
        """The result (``all()``) now, then each new result: a ``reactivex`` Observable that
        is also async-iterable; each subscription is its own."""
        return self._coll._ctx.live.watch(self, coalesce=coalesce, buffer=buffer)

    def watch_diff(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[ResultDiff[E]]:
        """Like ``watch()``, as :class:`quanta.ResultDiff` s (removed, inserted, moved,
        modified); the first one inserts the current result."""
        return self._coll._ctx.live.watch_diff(self, coalesce=coalesce, buffer=buffer)

    def live(self, *, coalesce: Coalesce = None) -> Watch[list[E]]:
        """``async for rows in q.live()``: the result now, then the newest result whenever
        the consumer asks and it changed (latest value: a slow consumer skips results in
        between). Subscribed when called."""
        return self._coll._ctx.live.live(self, coalesce=coalesce)

    def watch_count(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[int]:
        """``count()``, live."""
        return self._coll._ctx.live.watch_count(self, coalesce=coalesce, buffer=buffer)

    def watch_min(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        """``min(field)``, live."""
        return self._coll._ctx.live.watch_aggregate(self, "min", field, coalesce=coalesce, buffer=buffer)

    def watch_max(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        """``max(field)``, live."""
        return self._coll._ctx.live.watch_aggregate(self, "max", field, coalesce=coalesce, buffer=buffer)

    def watch_sum(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        """``sum(field)``, live (int and float fields; a float sum is exact, then rounded)."""
        return self._coll._ctx.live.watch_aggregate(self, "sum", field, coalesce=coalesce, buffer=buffer)

    def watch_avg(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        """``avg(field)``, live (int and float fields)."""
        return self._coll._ctx.live.watch_aggregate(self, "avg", field, coalesce=coalesce, buffer=buffer)

    async def to_dicts(self) -> list[dict[str, Any]]:
        """The results as JSON-ready dicts (``json.dumps`` takes them as they are), one per
        object, fields in declaration order, through the mapping of ``jsonmap.py``
        (docs/operations.md, "Export and import (JSON Lines)"): datetimes as ISO 8601
        strings, UUIDs and Decimals as strings, links as the target's primary key."""
        from .jsonmap import entity_dicts

        return entity_dicts(self._coll._info, await self.all())


def _merge_trees(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge_trees(out[k], v) if k in out else v
    return out
