"""Routing commits to live queries: one registry per database, one dispatcher per entity
class with live subscriptions, one change-bus subscription per dispatcher.

A dispatcher subscribes once to its entity's record range (``NS "r" (entity, ...)``) when
its first live state opens, and unsubscribes when its last one ends. Index entries need no
subscription: they change only together with their record, in the same commit. The
dispatcher indexes its states so that a commit costs the work of the states it concerns,
not of every state:

* by record (``watch_object``): encoded primary key -> states;
* by field value (queries with a routable equality, see ``shape.py``): field -> value ->
  states, probed with the new value of each changed record (and the old one, when old
  versions are read; for ``contains`` routes, with each element);
* by cached record: encoded primary key -> the result states whose head holds that record.
  This is how a record that *leaves* a result (updated to another value, or deleted) finds
  it without its old version: a result only cares about a departure from its head;
* everything else ("scans": ranges only, no predicate...): every change goes to them;
* lazy watches get one signal per commit that changed any record;
* idle states (a plan that proves the result empty, ``limit(0)``) get nothing.

Old versions. Results and records do not need the old version of a changed record (the
head holds what it needs; a record state compares bytes). Counts, aggregates and lazy
watches do (did the old version match? was anything really changed?), so while one of them
is open the dispatcher reads the changed records' previous values itself: one batched read
at ``seq - 1`` inside the publish (``Source.old_values``, the same read the bus does for
``with_old`` subscribers), and drops changes that rewrote the same bytes. Each changed
record is decoded once per commit, however many states see it.

Concurrency rules (read these first):

* Everything runs on the event-loop thread. The dispatcher's bus subscription is
  *synchronous* (``ChangeBus.attach``): ``ChangeBus.publish`` hands it each commit inside the engine's apply hook,
  right after the commit became visible and before any later commit is applied, and the
  dispatcher applies it to every concerned state there and then. So a state's value always
  reflects exactly one committed prefix of history, a refill reads exactly the commit being
  applied (``store.py``), and a state opened between two commits (registration and first
  read in one synchronous step) starts exactly after the first of them. Consumers are only
  *scheduled* from here (``faces.py``).
* The cost of live queries to a commit is this routing plus the maintenance of the
  concerned states, paid inside the commit (docs/live.md has the figures).
* Nothing here may fail a commit. An error while applying a commit to one state (a read
  error during a refill) ends that state's subscription with the error; an error in the
  dispatcher itself ends every subscription of its entity with it and is reported to the
  loop's exception handler.
* Closing the database completes the bus subscription, and with it every live state
  (``outlet.finish``: delivered what was queued, then completed); a database failure fails
  them with the bus's ``DatabaseFailedError``.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from .._reactive import ChangeBus, ChangeSet, Tap
from .._schema import EntityInfo, record_prefix
from .states import Change, LiveState, ResultState
from .store import Source

if TYPE_CHECKING:
    from .._storage import Engine

__all__ = ["Dispatcher", "LiveRegistry"]

_MISSING: Any = object()

StateSet = dict[LiveState, None]  # an insertion-ordered set: states see commits in the order they opened


def _report(exc: BaseException) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - the bus publishes on the loop
        return
    loop.call_exception_handler({"message": "live-query maintenance failed; its subscriptions ended", "exception": exc})


class Dispatcher:
    """The live states of one entity class in one database (see the module docstring)."""

    def __init__(self, registry: LiveRegistry, info: EntityInfo) -> None:
        self.registry = registry
        self.bus = registry.bus
        self.engine = registry.engine
        self.info = info
        self.source = Source(self.engine, info)
        lo, hi = record_prefix(info.name)
        self.lo, self.hi = lo, hi
        self.tap: Tap | None = None
        self.states: StateSet = {}
        self.objects: dict[bytes, StateSet] = {}
        self.fields: dict[str, dict[Any, StateSet]] = {}
        self.elements: dict[str, dict[Any, StateSet]] = {}
        self.scans: StateSet = {}
        self.lazies: StateSet = {}
        self.idle: StateSet = {}
        self.cached: dict[bytes, StateSet] = {}  # encoded pk -> result states caching that record
        self.needs_old = 0  # open states that need the old versions of changed records

    def __len__(self) -> int:
        return len(self.states)

    # -- opening and closing states ---------------------------------------------------------

    def open(self, state: LiveState) -> None:
        """Read ``state``'s current value and route every later commit to it, in one
        synchronous step (nothing can commit in between)."""
        engine = self.engine
        if engine.closed:
            raise engine.closed_error()
        if self.tap is None:  # (attach raises for a closed or failed database)
            self.tap = self.bus.attach(self.lo, self.hi, on_commit=self.publish, on_end=self.ended)
        if isinstance(state, ResultState):
            state.cached = self.cached
        try:
            state.load(self.source)
        except BaseException:
            if isinstance(state, ResultState):
                state.uncache_all()
            if not self.states:
                self._release()
            raise
        state.start_seq = state.seq = engine.visible_seq
        state.dispatcher = self
        self.states[state] = None
        self.needs_old += state.needs_old
        if state.idle:
            self.idle[state] = None
        elif state.lazy:
            self.lazies[state] = None
        elif state.epk is not None:
            self.objects.setdefault(state.epk, {})[state] = None
        elif state.route is None:
            self.scans[state] = None
        else:
            table = (self.elements if state.route.elements else self.fields).setdefault(state.route.name, {})
            for value in state.route.values:
                table.setdefault(value, {})[state] = None

    def remove(self, state: LiveState) -> None:
        """Stop routing to ``state`` (``state.close()`` calls this); the last one out
        unsubscribes the dispatcher from the bus."""
        if self.states.pop(state, _MISSING) is _MISSING:
            return
        self.needs_old -= state.needs_old
        if isinstance(state, ResultState):
            state.uncache_all()
        if state.idle:
            del self.idle[state]
        elif state.lazy:
            del self.lazies[state]
        elif state.epk is not None:
            _discard(self.objects, state.epk, state)
        elif state.route is None:
            self.scans.pop(state, None)
        else:
            table = (self.elements if state.route.elements else self.fields)[state.route.name]
            for value in state.route.values:
                _discard(table, value, state)
            if not table:
                del (self.elements if state.route.elements else self.fields)[state.route.name]
        if not self.states:
            self._release()

    def _release(self) -> None:
        tap, self.tap = self.tap, None
        if tap is not None:
            tap.detach()
        self.registry.dropped(self)

    # -- commits ----------------------------------------------------------------------------

    def publish(self, change_set: ChangeSet) -> None:
        """Apply one commit to the states it concerns (called inside the bus's publish)."""
        try:
            self._publish(change_set)
        except Exception as exc:
            _report(exc)
            self._end_all(exc)

    def _publish(self, change_set: ChangeSet) -> None:
        seq = change_set.seq
        changes = change_set.changes
        olds: list[bytes | None] | None = None
        if self.needs_old:
            olds = self.source.old_values([c.key for c in changes], seq)
            if all(old == c.value for old, c in zip(olds, changes, strict=True)):
                return  # the same bytes rewritten: nothing changed
            for state in list(self.lazies):
                if not state.closed and state.start_seq < seq:
                    state.apply(seq, [])
        objects, cached, fields, elements, scans = self.objects, self.cached, self.fields, self.elements, self.scans
        if not (objects or cached or fields or elements or scans):
            return
        plen = len(self.lo)
        decode = self.source.decode
        touched: dict[LiveState, list[Change]] = {}
        for n, c in enumerate(changes):
            data = c.value
            old_data = None if olds is None else olds[n]
            if old_data is not None and old_data == data:
                continue
            epk = c.key[plen:]
            new = None if data is None else decode(data)
            old = None if old_data is None else decode(old_data)
            item: Change = (epk, old, new, data)
            hit: StateSet = {}
            if objects:
                found = objects.get(epk)
                if found:
                    hit.update(found)
            found = cached.get(epk)
            if found:
                hit.update(found)
            for name, table in fields.items():
                for obj in (old, new):
                    if obj is not None:
                        found = table.get(getattr(obj, name))
                        if found:
                            hit.update(found)
            for name, table in elements.items():
                for obj in (old, new):
                    if obj is not None:
                        for element in getattr(obj, name) or ():
                            found = table.get(element)
                            if found:
                                hit.update(found)
            if scans:
                hit.update(scans)
            for state in hit:
                items = touched.get(state)
                if items is None:
                    touched[state] = [item]
                else:
                    items.append(item)
        for state, items in touched.items():
            if state.closed or state.start_seq >= seq:
                continue  # ended by an earlier state's consumer, or opened during this publish
            try:
                state.apply(seq, items)
            except Exception as exc:
                _end(state, exc)

    def ended(self, error: BaseException | None) -> None:
        """The bus subscription ended (database closed, or failed): end every state."""
        self._end_all(error)

    def _end_all(self, error: BaseException | None) -> None:
        for state in list(self.states):
            _end(state, error)
        self._release()


def _end(state: LiveState, error: BaseException | None) -> None:
    outlet = state.outlet
    if outlet is None:
        state.close()
    elif error is None:
        outlet.finish()
    else:
        outlet.fail(error)


def _discard(index: dict[Any, StateSet], key: Any, state: LiveState) -> None:
    states = index.get(key)
    if states is not None:
        states.pop(state, None)
        if not states:
            del index[key]


class LiveRegistry:
    """The live queries of one database: a dispatcher per entity class in use.

    It is kept by the database's ``LiveQueries`` (``api.py``) and holds the bus and the
    engine weakly, so it keeps nothing alive on its own; dispatchers hold them strongly,
    and exist only while live states do."""

    def __init__(self, bus: ChangeBus, engine: Engine) -> None:
        self._bus = weakref.ref(bus)
        self._engine = weakref.ref(engine)
        self.dispatchers: dict[type, Dispatcher] = {}

    @property
    def bus(self) -> ChangeBus:
        bus = self._bus()
        assert bus is not None  # (only used while the database is referenced)
        return bus

    @property
    def engine(self) -> Engine:
        engine = self._engine()
        assert engine is not None
        return engine

    def dispatcher(self, info: EntityInfo) -> Dispatcher:
        d = self.dispatchers.get(info.cls)
        if d is None:
            d = self.dispatchers[info.cls] = Dispatcher(self, info)
        return d

    def dropped(self, d: Dispatcher) -> None:
        if self.dispatchers.get(d.info.cls) is d:
            del self.dispatchers[d.info.cls]

    def __len__(self) -> int:
        """Live states open in this database."""
        return sum(len(d) for d in self.dispatchers.values())
