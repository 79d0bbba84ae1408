"""The maintained value of one live subscription: a query's result (or a window of it), a
count, an aggregate, one record, or a "something changed" signal.

A state is opened by reading the store once (``load``), then kept current by ``apply``,
which the dispatcher calls with the changes of each commit that may concern it, in commit
order, synchronously inside the commit's publish. When its value may have changed, a state
calls ``outlet.notify()``; the outlet pulls the next item with ``take()`` (now, or later:
see ``faces.py``), which returns the item relative to the last one taken, or ``NOTHING``
when the value is what the consumer already has. So "no emission when nothing changed" is
one comparison in one place, and a consumer that takes late (latest-value or coalescing)
gets one item that spans the commits it skipped.

Incremental maintenance (the EventReduce idea: the new result from the old result plus the
change, without re-running the query):

* **Results** (:class:`ResultState`). The state caches the *head* of the result: the first
  ``offset + limit + slack`` matches in result order (all matches without a limit), as rows
  sorted by their order key, and knows whether the head holds every match (``complete``).
  For each changed record: drop its old version if cached; if the new version matches and
  sorts before the last cached row (or the head is complete), insert it. A match that sorts
  after an incomplete head cannot change the head, so it is ignored. The head shrinks when
  matches leave; only when it no longer covers the window (``offset + limit`` rows) and more
  matches exist is it **refilled from the store**: the one place a result state reads. A
  head larger than ``offset + limit + slack`` is trimmed. Records before the window are kept
  because an arrival or departure there shifts the window.
* **Counts** (:class:`CountState`): ``total += matches(new) - matches(old)``; a window
  (``offset``/``limit``) is a clamp. No rows are kept and nothing is ever read again.
* **Aggregates without a window** (:class:`AggregateState`): a multiset of the matches'
  values keyed by their sort key (min, max), an exact running sum and a count (sum, avg).
  With a window, an aggregate is computed from the window rows of a :class:`ResultState`.
* **One record** (:class:`ObjectState`) and **any change** (:class:`LazyState`).

Where a query is re-run (the only places): opening; a refill; and, for a windowed
aggregate, the aggregate over the window rows (no store read, O(window)) after each change
of the window. The reads of opening and of a refill use the query's plan *now*
(:func:`reading`): an index that ``db.repair()`` is rebuilding is hidden from the planner,
and a plan made before the repair would read its missing entries. The result order stays
the one the state was made with; when the current plan's access path yields another order,
the read takes every match and sorts it (``Source.head``), which only happens while an
index is being rebuilt. Index entries themselves never reach a state: the dispatcher
follows the record range only (``dispatch.py``).

Concurrency rules: event-loop thread only; ``apply`` runs inside the change bus's publish
(see ``dispatch.py``) and must never await or call user code (the outlet only schedules).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._entity import Aggregate
from .._reactive import ResultDiff
from .diff import Row, diff_rows, same_rows
from .shape import same_order

if TYPE_CHECKING:
    from .._query import Plan
    from .faces import Outlet
    from .shape import OrderKey, Route
    from .store import Source

__all__ = [
    "NOTHING",
    "AggregateState",
    "Change",
    "CountState",
    "LazyState",
    "LiveState",
    "ObjectState",
    "ResultState",
]

NOTHING: Final = object()
"""``take()``'s answer when the consumer already has the current value."""

Change = tuple[bytes, Any, Any, "bytes | None"]
"""One changed record as the dispatcher hands it over: ``(encoded pk, old object or None,
new object or None, new stored bytes or None)``."""


def reading(plan: Plan, reads: Callable[[], Plan] | None) -> Plan:
    """The plan a state reads the store with now (its load, a refill): ``reads()``, the
    query's ``plan()``, which plans again when the indexes queries may use have changed
    (``db.repair()`` hides an index while it deletes and rebuilds its entries, so a plan
    made before would read missing entries); else ``plan``. The state's filter, routing and
    result order stay those of ``plan``, the plan it was made with: only the access path of
    its reads follows the catalog."""
    return plan if reads is None else reads()


def same_value(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same emitted value (NaN is the same as NaN)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    return bool(a == b) or (a != a and b != b)


class LiveState(ABC):
    """Base class: one subscription's value and its routing (see the module docstring).

    ``route``: the equality values that route changes here (None: every change of the
    collection); ``epk``: set by states that watch one record; ``lazy``: needs no decoded
    objects; ``idle``: can never change (an empty plan, ``limit(0)``); ``needs_old``: the
    changes handed to ``apply`` must carry the records' old versions (counts and aggregates
    must know whether the old version matched; the dispatcher reads old versions only while
    such a state is open). Without it, the old object in a change is ``None`` and means
    nothing.
    """

    __slots__ = ("__weakref__", "closed", "dispatcher", "outlet", "route", "seq", "start_seq")

    epk: bytes | None = None
    lazy: bool = False
    idle: bool = False
    needs_old: bool = False  # apply() needs the old versions of the changed records

    def __init__(self, route: Route | None = None) -> None:
        self.route = route
        self.outlet: Outlet[Any] | None = None
        self.dispatcher: Any = None
        self.seq = 0  # the commit the value reflects
        self.start_seq = 0
        self.closed = False

    def load(self, source: Source) -> None:  # noqa: B027 (a no-op unless a state reads the store)
        """Read the initial value (synchronously, at the engine's visible state)."""

    @abstractmethod
    def apply(self, seq: int, changes: list[Change]) -> None:
        """Apply commit ``seq``'s changes (those routed to this state)."""

    @abstractmethod
    def take(self) -> Any:
        """The value to emit now."""

    def _notify(self) -> None:
        if self.outlet is not None:
            self.outlet.notify()

    def close(self) -> None:
        """Stop receiving changes (idempotent)."""
        if not self.closed:
            self.closed = True
            if self.dispatcher is not None:
                self.dispatcher.remove(self)


# ---------------------------------------------------------------------------------- results


Render = Callable[["list[Row] | None", "list[Row]", int, int], Any]
"""``render(previous_window or None, window, head, tail) -> item or NOTHING``: the first
``head`` and the last ``tail`` rows of both windows are known to be the same row objects."""


def render_list(previous: list[Row] | None, window: list[Row], head: int, tail: int) -> Any:
    if previous is not None and same_rows(previous, window, head, tail):
        return NOTHING
    return [row.obj for row in window]


def render_diff(previous: list[Row] | None, window: list[Row], head: int, tail: int) -> Any:
    if previous is None:
        return ResultDiff(inserted=tuple((i, row.obj) for i, row in enumerate(window)))
    if same_rows(previous, window, head, tail):
        return NOTHING
    return diff_rows(previous, window, head, tail)


class ResultState(LiveState):
    """A query's result, maintained in place (see the module docstring).

    The head is two parallel Python lists, the rows and their order keys, kept sorted with
    ``bisect``: a windowed head is small (``offset + limit + slack`` rows), where plain lists
    beat any tree; an unbounded result (no limit) holds every match, and an insertion or
    removal is one ``memmove`` of the list (~10 us per 100,000 rows)."""

    __slots__ = (
        "_source",
        "by_pk",
        "cached",
        "check",
        "complete",
        "dirty",
        "emitted",
        "end",
        "keep",
        "key",
        "keys",
        "offset",
        "plan",
        "reads",
        "refills",
        "render",
        "rows",
        "same_head",
        "same_tail",
    )

    def __init__(
        self,
        plan: Plan,
        key: OrderKey,
        route: Route | None,
        render: Render,
        slack: int,
        reads: Callable[[], Plan] | None = None,
    ) -> None:
        super().__init__(route)
        self.plan = plan
        self.reads = reads
        self.key = key
        self.render = render
        where = plan.where
        self.check: Callable[[Any], bool] | None = where.evaluate if where is not None else None
        self.offset = plan.offset
        self.end: int | None = None if plan.limit is None else plan.offset + plan.limit
        self.keep: int | None = None if self.end is None else self.end + slack
        self.rows: list[Row] = []
        self.keys: list[bytes] = []
        self.by_pk: dict[bytes, Row] = {}
        self.complete = False
        self.dirty = True
        self.emitted: list[Row] | None = None
        # Since the last take: the first ``same_head`` and the last ``same_tail`` rows are
        # the row objects that were there then (no edit fell among them), so the next diff
        # skips them without a look (O(change), not O(result), per emission).
        self.same_head = 0
        self.same_tail = 0
        self.refills = 0
        self._source: Source | None = None
        # The dispatcher's index of cached records (encoded pk -> states caching it): a
        # change reaches this state through it when the old version is cached here, so no
        # old version needs reading (set by the dispatcher before ``load``).
        self.cached: dict[bytes, dict[LiveState, None]] = {}

    @property
    def idle(self) -> bool:  # type: ignore[override]
        return self.end == 0 or not self.plan.ranges

    def load(self, source: Source) -> None:
        self._source = source
        if self.idle:
            self.complete = True
            return
        self._fill(*self._head(source))

    def _head(self, source: Source) -> tuple[list[Row], bool]:
        """The head read from the store now, in this state's result order, with the plan
        :func:`reading` gives (see there: while ``db.repair()`` rebuilds an index the plan's
        access path may differ from the one the order was fixed by)."""
        plan = reading(self.plan, self.reads)
        return source.head(plan, self.key, self.keep, in_order=plan is self.plan or same_order(plan, self.plan))

    def _fill(self, rows: list[Row], complete: bool) -> None:
        self.uncache_all()
        self.rows = rows
        self.same_head = self.same_tail = 0  # the rows read again: nothing known to be the same
        self.keys = [row.key for row in rows]
        self.by_pk = {row.epk: row for row in rows}
        cached = self.cached
        for epk in self.by_pk:
            states = cached.get(epk)
            if states is None:
                cached[epk] = {self: None}
            else:
                states[self] = None
        self.complete = complete
        self.dirty = True

    def uncache_all(self) -> None:
        """Take every cached record of this state out of the dispatcher's index."""
        cached = self.cached
        for epk in self.by_pk:
            states = cached.get(epk)
            if states is not None:
                states.pop(self, None)
                if not states:
                    del cached[epk]

    def window(self) -> list[Row]:
        return self.rows[self.offset : self.end]

    def apply(self, seq: int, changes: list[Change]) -> None:
        self.seq = seq
        check = self.check
        by_pk = self.by_pk
        rows, keys = self.rows, self.keys
        end = self.end
        cached = self.cached
        for epk, _old, new, data in changes:
            row = by_pk.get(epk)
            if row is not None:  # the old version is in the head
                if row.data == data:
                    continue  # the same bytes rewritten: nothing changed
                del by_pk[epk]
                _uncache(cached, epk, self)
                i = bisect_left(keys, row.key)
                self.same_head = min(self.same_head, i)
                self.same_tail = min(self.same_tail, len(rows) - 1 - i)
                del rows[i], keys[i]
                if end is None or i < end:
                    self.dirty = True
            if new is not None and (check is None or check(new)):
                key = self.key(new, epk)
                if not self.complete and (not keys or key > keys[-1]):
                    continue  # after the cached head: it cannot be in the window
                i = bisect_left(keys, key)
                assert data is not None
                row = Row(key, epk, data, new)
                self.same_head = min(self.same_head, i)
                self.same_tail = min(self.same_tail, len(rows) - i)
                rows.insert(i, row)
                keys.insert(i, key)
                by_pk[epk] = row
                states = cached.get(epk)
                if states is None:
                    cached[epk] = {self: None}
                else:
                    states[self] = None
                if end is None or i < end:
                    self.dirty = True
        keep = self.keep
        if keep is not None and len(rows) > keep:
            for row in rows[keep:]:
                del by_pk[row.epk]
                _uncache(cached, row.epk, self)
            self.same_head = min(self.same_head, keep)
            self.same_tail = 0
            del rows[keep:], keys[keep:]
            self.complete = False
        if not self.complete and (end is None or len(rows) < end):
            assert self._source is not None
            self.refills += 1
            self._fill(*self._head(self._source))
        if self.dirty:
            self._notify()

    def take(self) -> Any:
        if not self.dirty:
            return NOTHING
        self.dirty = False
        window = self.window()
        # Rows known to be the same, in window coordinates: the window starts at ``offset``
        # of the rows; it ends where the rows end only without a limit.
        head = max(0, self.same_head - self.offset)
        tail = self.same_tail if self.end is None else 0
        item = self.render(self.emitted, window, head, tail)
        self.emitted = window
        self.same_head = self.same_tail = len(self.rows)
        return item


def _uncache(cached: dict[bytes, dict[LiveState, None]], epk: bytes, state: LiveState) -> None:
    states = cached[epk]
    del states[state]
    if not states:
        del cached[epk]


# ----------------------------------------------------------------------------------- counts


class CountState(LiveState):
    """How many records match (``query.count()``: the window is a clamp)."""

    __slots__ = ("check", "emitted", "limit", "offset", "plan", "reads", "total")

    needs_old = True

    def __init__(self, plan: Plan, route: Route | None, reads: Callable[[], Plan] | None = None) -> None:
        super().__init__(route)
        self.plan = plan
        self.reads = reads
        where = plan.where
        self.check: Callable[[Any], bool] | None = where.evaluate if where is not None else None
        self.offset = plan.offset
        self.limit = plan.limit
        self.total = 0
        self.emitted: int | None = None

    @property
    def idle(self) -> bool:  # type: ignore[override]
        return self.limit == 0 or not self.plan.ranges

    def load(self, source: Source) -> None:
        self.total = 0 if self.idle else source.count(reading(self.plan, self.reads))

    def value(self) -> int:
        n = max(self.total - self.offset, 0)
        return n if self.limit is None else min(n, self.limit)

    def apply(self, seq: int, changes: list[Change]) -> None:
        self.seq = seq
        check = self.check
        before = self.value()
        for _epk, old, new, _data in changes:
            if old is not None and (check is None or check(old)):
                self.total -= 1
            if new is not None and (check is None or check(new)):
                self.total += 1
        if self.value() != before:
            self._notify()

    def take(self) -> Any:
        value = self.value()
        if value == self.emitted:
            return NOTHING
        self.emitted = value
        return value


# ------------------------------------------------------------------------------- aggregates


def render_aggregate(kind: str, name: str, is_float: bool) -> Render:
    """A windowed aggregate: recomputed from the window's rows when the window changes."""
    last: list[Any] = []  # [the value last emitted]

    def render(previous: list[Row] | None, window: list[Row], head: int, tail: int) -> Any:
        value = Aggregate.of(kind, is_float, [getattr(row.obj, name) for row in window])
        if last and same_value(last[0], value):
            return NOTHING
        last[:] = [value]
        return value

    return render


class AggregateState(LiveState):
    """min, max, sum or avg of a field over every match (no window), maintained from each
    change in an :class:`quanta._entity.Aggregate` (the definitions ``Query.min()``...
    use: a multiset for min/max, an exact running sum for sum/avg, whatever the order of
    the changes)."""

    __slots__ = ("agg", "check", "emitted", "field", "plan", "reads")

    needs_old = True

    def __init__(
        self,
        plan: Plan,
        route: Route | None,
        kind: str,
        field: str,
        is_float: bool,
        reads: Callable[[], Plan] | None = None,
    ) -> None:
        super().__init__(route)
        self.plan = plan
        self.reads = reads
        where = plan.where
        self.check: Callable[[Any], bool] | None = where.evaluate if where is not None else None
        self.field = field
        self.agg = Aggregate(kind, is_float)
        self.emitted: list[Any] = []  # [the value last emitted]

    @property
    def idle(self) -> bool:  # type: ignore[override]
        return not self.plan.ranges

    def load(self, source: Source) -> None:
        if self.idle:
            return
        name, add = self.field, self.agg.add
        for _epk, _data, obj in source.matches(reading(self.plan, self.reads)):
            v = getattr(obj, name)
            if v is not None:
                add(v, 1)

    def value(self) -> Any:
        return self.agg.value()

    def apply(self, seq: int, changes: list[Change]) -> None:
        self.seq = seq
        check = self.check
        name = self.field
        for _epk, old, new, _data in changes:
            if old is not None and (check is None or check(old)) and (v := getattr(old, name)) is not None:
                self.agg.add(v, -1)
            if new is not None and (check is None or check(new)) and (v := getattr(new, name)) is not None:
                self.agg.add(v, 1)
        if not self.emitted or not same_value(self.emitted[0], self.value()):
            self._notify()

    def take(self) -> Any:
        value = self.value()
        if self.emitted and same_value(self.emitted[0], value):
            return NOTHING
        self.emitted = [value]
        return value


# ------------------------------------------------------------------------ records, any change


class ObjectState(LiveState):
    """One record, by primary key: the object, or None when absent."""

    __slots__ = ("data", "emitted", "epk", "obj")

    def __init__(self, epk: bytes) -> None:
        super().__init__(None)
        self.epk: bytes | None = epk
        self.data: bytes | None = None
        self.obj: Any = None
        self.emitted: list[bytes | None] = []  # [the stored bytes last emitted]

    def load(self, source: Source) -> None:
        assert self.epk is not None
        self.data = source.get(self.epk)
        self.obj = None if self.data is None else source.decode(self.data)

    def apply(self, seq: int, changes: list[Change]) -> None:
        self.seq = seq
        changed = False
        for _epk, _old, new, data in changes:  # (one change: a commit holds a key once)
            if data != self.data:
                self.obj, self.data = new, data
                changed = True
        if changed:
            self._notify()

    def take(self) -> Any:
        if self.emitted and self.emitted[0] == self.data:
            return NOTHING
        self.emitted = [self.data]
        return self.obj


class LazyState(LiveState):
    """ "Something in this collection changed": None once per commit that changed a record."""

    __slots__ = ("pending",)

    lazy = True
    needs_old = True  # to tell a change from the same bytes rewritten

    def __init__(self) -> None:
        super().__init__(None)
        self.pending = False

    def apply(self, seq: int, changes: list[Change]) -> None:
        self.seq = seq
        self.pending = True
        self._notify()

    def take(self) -> Any:
        if not self.pending:
            return NOTHING
        self.pending = False
        return None
