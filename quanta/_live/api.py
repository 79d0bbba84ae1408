"""The entry points behind ``Query.watch()`` & co. and ``Collection.watch_object()`` /
``watch_lazy()``: argument checks, then a face whose opener makes a state, opens it on its
dispatcher and hands it to an outlet.

Every check runs when the method is called (before anything is subscribed): a live query
of a transaction's collection, a closed database, a bad ``coalesce`` or ``buffer``, a field
of another entity or of the wrong type each raise a :mod:`quanta.errors` exception there.
The ``Watch`` subscriptions are opened on ``subscribe`` / first iteration (each observer its
own); ``live()`` subscribes at once, like ``db.changes()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .._entity import AGGREGATES, check_aggregate
from .._kv import check_buffer
from .._reactive import DEFAULT_CAPACITY, Coalesce, Queue, ResultDiff, Watch
from .._schema import record_prefix
from ..errors import InvalidArgumentError, InvalidTypeError, QueryError
from .dispatch import LiveRegistry
from .faces import Outlet, clock_for
from .shape import order_key, routes
from .states import (
    AggregateState,
    CountState,
    LazyState,
    LiveState,
    ObjectState,
    Render,
    ResultState,
    render_aggregate,
    render_diff,
    render_list,
)

if TYPE_CHECKING:
    from .._entity import Collection, EntityContext, Query
    from .._reactive import ChangeBus
    from .._storage import Engine

__all__ = [
    "LiveQueries",
    "live",
    "watch",
    "watch_aggregate",
    "watch_count",
    "watch_diff",
    "watch_lazy",
    "watch_object",
    "registry_of",
]

E = TypeVar("E")
T = TypeVar("T")


SLACK_MAX = 32
"""A windowed result caches up to this many matches past its window (half the limit, at
least 4), so that removals from the window rarely need a refill from the store."""


def _slack(limit: int | None) -> int:
    return 0 if limit is None else min(SLACK_MAX, max(4, limit // 2))


def _database(coll: Collection[Any]) -> EntityContext:
    if coll.transaction is not None:
        raise QueryError(
            f"a live query of {coll._info.name} needs the database's collection (db.collection(...)): "
            "a transaction's collection sees writes that are not committed, and live queries follow commits"
        )
    context = coll.context
    context.engine.check_open()
    return context


def _coalesce(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidTypeError(f"coalesce must be a number of seconds or a timedelta, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgumentError(f"coalesce must be >= 0 seconds, got {value!r}")
    return seconds or None


def _buffer(value: object) -> int:
    return DEFAULT_CAPACITY if value is None else check_buffer(value)


def _opener(
    coll: Collection[Any], make: Callable[[], LiveState], *, latest: bool, buffer: object, coalesce: object
) -> Callable[[Callable[[], None], Any], Queue[Any]]:
    context = _database(coll)
    capacity = _buffer(buffer)
    seconds = _coalesce(coalesce)
    info = coll._info

    def opener(wake: Callable[[], None], scheduler: Any) -> Queue[Any]:
        state = make()
        clock = clock_for(scheduler)
        outlet: Outlet[Any] = Outlet(state, latest=latest, capacity=capacity, coalesce=seconds, clock=clock, wake=wake)
        dispatcher = registry_of(context).dispatcher(info)
        if coll._bind:  # objects with links load them through the database
            dispatcher.source.bind_to(coll._source)
        dispatcher.open(state)
        outlet.queue.start_seq = state.start_seq
        if not state.lazy:
            outlet.notify()  # the current value, at once
        return outlet.queue

    return opener


def _results(query: Query[Any], render: Callable[[], Render]) -> Callable[[], LiveState]:
    """A factory of result states for ``query`` (the plan, order key and route are worked
    out once; ``render()`` makes each subscription its own renderer). Each state reads the
    store with ``query.plan()`` at the time (``states.reading``: the indexes a query may use
    change while ``db.repair()`` rebuilds them)."""
    plan = query.plan()
    info = query._coll._info
    key = order_key(plan, info)
    route = routes(plan.where, info)
    slack = _slack(plan.limit)
    return lambda: ResultState(plan, key, route, render(), slack, query.plan)


# ------------------------------------------------------------------------------------ queries


def watch(query: Query[E], *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[list[E]]:
    make = _results(query, lambda: render_list)
    return Watch(_opener(query._coll, make, latest=False, buffer=buffer, coalesce=coalesce))


def watch_diff(query: Query[E], *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[ResultDiff[E]]:
    make = _results(query, lambda: render_diff)
    return Watch(_opener(query._coll, make, latest=False, buffer=buffer, coalesce=coalesce))


def live(query: Query[E], *, coalesce: Coalesce = None) -> Watch[list[E]]:
    make = _results(query, lambda: render_list)
    return Watch(_opener(query._coll, make, latest=True, buffer=None, coalesce=coalesce), hot=True)


def watch_count(query: Query[Any], *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[int]:
    plan = query.plan()
    route = routes(plan.where, query._coll._info)
    return Watch(
        _opener(
            query._coll, lambda: CountState(plan, route, query.plan), latest=False, buffer=buffer, coalesce=coalesce
        )
    )


def watch_aggregate(
    query: Query[Any], kind: str, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None
) -> Watch[Any]:
    """``query.min/max/sum/avg(field)``, live."""
    assert kind in AGGREGATES
    info = query._coll._info
    is_float = check_aggregate(kind, field, info, f"watch_{kind}")
    plan = query.plan()
    make: Callable[[], LiveState]
    if plan.limit is not None or plan.offset:
        make = _results(query, lambda: render_aggregate(kind, field.name, is_float))
    else:
        route = routes(plan.where, info)
        make = lambda: AggregateState(plan, route, kind, field.name, is_float, query.plan)  # noqa: E731
    return Watch(_opener(query._coll, make, latest=False, buffer=buffer, coalesce=coalesce))


# -------------------------------------------------------------------------------- collections


def watch_object(
    coll: Collection[E], pk: Any, *, coalesce: Coalesce = None, buffer: int | None = None
) -> Watch[E | None]:
    epk = coll._pk_key(pk)[len(record_prefix(coll._info.name)[0]) :]  # checks the key's type
    return Watch(_opener(coll, lambda: ObjectState(epk), latest=False, buffer=buffer, coalesce=coalesce))


def watch_lazy(coll: Collection[Any], *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[None]:
    return Watch(_opener(coll, LazyState, latest=False, buffer=buffer, coalesce=coalesce))


# ------------------------------------------------------------------------------ per database


class LiveQueries:
    """The live-query layer of one database, as the entity layer reaches it (its
    ``EntityContext.live``; the protocol is ``quanta._entity.LiveQueries``): the entry
    points above, and the registry of dispatchers (one per entity class in use)."""

    __slots__ = ("registry",)

    def __init__(self, bus: ChangeBus, engine: Engine) -> None:
        self.registry = LiveRegistry(bus, engine)

    def watch(self, query: Query[E], *, coalesce: Coalesce, buffer: int | None) -> Watch[list[E]]:
        return watch(query, coalesce=coalesce, buffer=buffer)

    def watch_diff(self, query: Query[E], *, coalesce: Coalesce, buffer: int | None) -> Watch[ResultDiff[E]]:
        return watch_diff(query, coalesce=coalesce, buffer=buffer)

    def live(self, query: Query[E], *, coalesce: Coalesce) -> Watch[list[E]]:
        return live(query, coalesce=coalesce)

    def watch_count(self, query: Query[Any], *, coalesce: Coalesce, buffer: int | None) -> Watch[int]:
        return watch_count(query, coalesce=coalesce, buffer=buffer)

    def watch_aggregate(
        self, query: Query[Any], kind: str, field: Any, *, coalesce: Coalesce, buffer: int | None
    ) -> Watch[Any]:
        return watch_aggregate(query, kind, field, coalesce=coalesce, buffer=buffer)

    def watch_object(self, coll: Collection[E], pk: Any, *, coalesce: Coalesce, buffer: int | None) -> Watch[E | None]:
        return watch_object(coll, pk, coalesce=coalesce, buffer=buffer)

    def watch_lazy(self, coll: Collection[Any], *, coalesce: Coalesce, buffer: int | None) -> Watch[None]:
        return watch_lazy(coll, coalesce=coalesce, buffer=buffer)


def registry_of(context: EntityContext) -> LiveRegistry:
    """The registry of the database whose entity context is ``context``."""
    live = context.live
    assert isinstance(live, LiveQueries)
    return live.registry
