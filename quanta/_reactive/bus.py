"""The change bus: every commit, exactly once and in commit order, to each subscriber whose key
range it touches; and the event hub that fans out the engine's system events.

Concurrency rules (read these first):

* Everything runs on the event-loop thread. The engine calls :meth:`ChangeBus.publish` from its
  apply hook, synchronously, as soon as a batch is visible (after its fsync with
  ``durability="sync"``), once per batch and in sequence order. ``publish`` never awaits and
  never blocks: it hands one ``ChangeSet`` to each matching subscriber (a :class:`Tap`).
* Two kinds of subscriber, one routing. :meth:`ChangeBus.subscribe` (and
  :meth:`EventHub.subscribe`) returns a :class:`~quanta._reactive.queue.Queue`: the change set
  is queued and the consumer woken, to run later on the loop (an Rx observer subscribed with
  an inline scheduler runs at once -- the batch is applied already, and an exception escaping
  it ends that subscription, never the commit). :meth:`ChangeBus.attach` registers a
  synchronous callback that runs inside ``publish`` itself (the live-query dispatcher: its
  states then always reflect exactly the commits published so far).
* A subscriber starts at ``start_seq``, the last visible sequence number when it was made;
  it receives every matching commit with a greater seq and none before (the registration and
  the read of ``visible_seq`` happen in one synchronous step).
* Slow subscribers (queues): a writer never waits for a subscriber; the cost of a subscriber
  to a commit is the ``publish`` work (routing and building the ChangeSet), never the
  consumer's speed. A full queue fails with ``SubscriberOverflowError`` after its buffered
  items and is unrouted (queue.py has the rules); past half full it sets the engine's
  ``yield_writers`` flag so that an ``os``-durability writer gives the loop a turn.
  Conflating queues (``db.kv.watch``) keep only the newest item and cannot overflow.
* Closing the database ends every subscriber: queues complete after their buffered items (or
  fail with the error that stopped the database); attached callbacks get ``on_end(None)`` (or
  ``on_end(error)``).

Routing (why 1,000 subscribers on other key ranges cost little): the subscriptions' range
bounds cut the key space into elementary segments; each segment holds the tuple of
subscriptions covering it, so a changed key finds its subscribers with one bisect. The table is
rebuilt lazily, on the first publish after subscriptions change. Subscriptions to the whole key
space skip routing altogether.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import DatabaseFailedError, QuantaError
from .queue import DEFAULT_CAPACITY, Queue

if TYPE_CHECKING:
    from .._storage import Engine, SystemEvent

__all__ = ["Change", "ChangeBus", "ChangeSet", "EventHub", "Tap"]

T = TypeVar("T")

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Change:
    """One key changed by a commit. ``value`` is None for a delete; ``old_value`` is the value
    before the commit (None if the key was absent), filled only for subscribers that asked
    with ``with_old=True`` (None otherwise)."""

    key: bytes
    kind: Literal["put", "delete"]
    value: bytes | None
    old_value: bytes | None = None


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What one commit changed, as one subscriber sees it (only keys in its range).

    ``seq`` is the commit's sequence number; ``changes`` has one :class:`Change` per distinct
    key (a key written twice in one batch appears once, with its final value), in batch order.
    ``origin`` says which API made the commit: ``"kv"`` (``db.kv`` put/delete/put_many),
    ``"batch"`` (``db.kv.batch()``) or ``"transaction"``. In a read-only open following a
    writer (the WAL does not record the origin) it is ``"follower"``, or ``"transaction"`` /
    ``"schema"`` for commits that carry the entity layer's bookkeeping.
    """

    seq: int
    changes: tuple[Change, ...]
    origin: str


class Tap:
    """One subscriber as the bus routes to it: its key range, whether it wants old values, and
    where its items go. Made by :meth:`ChangeBus.subscribe` (items go to a :class:`Queue`),
    :meth:`ChangeBus.attach` (items go to a synchronous callback) or :meth:`EventHub.subscribe`.

    ``send(item)`` takes each item (a ``ChangeSet``, mapped by ``map`` first when given);
    ``end(error)`` is called once when the hub ends it (database closed: None; database failed
    or old values unreadable: the error). ``start_seq``: the last commit before it was made.
    """

    __slots__ = ("_hub", "done", "end", "hi", "lo", "map", "send", "start_seq", "with_old")

    def __init__(
        self,
        hub: Hub,
        send: Callable[[T], object],
        end: Callable[[BaseException | None], None],
        *,
        lo: bytes = b"",
        hi: bytes | None = None,
        with_old: bool = False,
        map: Callable[[ChangeSet], T] | None = None,
    ) -> None:
        self._hub = hub
        self.send: Callable[[Any], object] = send
        self.end = end
        self.lo = lo
        self.hi = hi
        self.with_old = with_old
        self.map = map
        self.start_seq = 0
        self.done = False

    def detach(self) -> None:
        """Stop routing to this subscriber now (no ``end`` call). Idempotent."""
        if not self.done:
            self.done = True
            self._hub.remove(self)

    def _stop(self, error: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self._hub.remove(self)
            self.end(error)


def _queue_tap(hub: Hub, queue: Queue[Any], **route: Any) -> Tap:
    """A tap that feeds ``queue``; the queue ending (overflow, cancel) detaches it."""

    def end(error: BaseException | None) -> None:
        if error is None:
            queue.finish()
        else:
            queue.fail(error)

    tap = Tap(hub, queue.push, end, **route)
    queue.on_end = tap.detach
    return tap


class Hub:
    """Subscribers of one kind, all ended when the database shuts down."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._subs: dict[Tap, None] = {}  # an ordered set
        self._closed = False
        engine.on_shutdown.append(self.close)

    def __len__(self) -> int:
        return len(self._subs)

    def _add(self, tap: Tap) -> Tap:
        failure = self._engine._failure
        if failure is not None:
            raise DatabaseFailedError(
                f"the database stopped after a failure: {failure!r}; close and reopen it"
            ) from failure
        if self._closed or self._engine.closed:
            raise self._engine.closed_error()
        self._engine.check_loop()  # a subscription delivers on the loop that opened the database
        tap.start_seq = self._engine.visible_seq
        self._subs[tap] = None
        self._changed()
        return tap

    def remove(self, tap: Tap) -> None:
        if self._subs.pop(tap, _MISSING) is not _MISSING:
            self._changed()

    def _changed(self) -> None:
        pass

    def backlogged(self) -> None:
        """A subscriber's buffer is more than half full: let writers give the loop a turn."""
        self._engine.yield_writers = True

    def _queue(self, capacity: int, conflate: bool, wake: Callable[[], None]) -> Queue[Any]:
        return Queue(capacity=capacity, conflate=conflate, wake=wake, backlog=self.backlogged)

    def end_all(self, error: BaseException) -> None:
        """End every current subscriber with ``error``, staying open for new ones (a
        read-only database that fell behind its writer: ReaderLagError)."""
        for tap in list(self._subs):
            tap._stop(error)

    def close(self, failure: BaseException | None = None) -> None:
        """End every subscriber (with DatabaseFailedError if the database failed)."""
        self._closed = True
        for tap in list(self._subs):
            if failure is None:
                tap._stop(None)
            else:
                err = DatabaseFailedError(f"the database stopped after a failure: {failure!r}")
                err.__cause__ = failure
                tap._stop(err)
        self._subs.clear()


class EventHub(Hub):
    """Fans system events out to ``db.events()`` subscribers."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)

    def subscribe(self, *, capacity: int = DEFAULT_CAPACITY, wake: Callable[[], None]) -> Queue[SystemEvent]:
        """A queue of every later system event (raises for a closed or failed database)."""
        queue: Queue[SystemEvent] = self._queue(capacity, False, wake)
        queue.start_seq = self._add(_queue_tap(self, queue)).start_seq
        return queue

    def _changed(self) -> None:
        self._engine.on_event = self.publish if self._subs else None

    def publish(self, event: SystemEvent) -> None:
        for tap in list(self._subs):
            tap.send(event)


class ChangeBus(Hub):
    """Routes each commit's changes to the subscribers whose key ranges they touch.

    ``hidden``: a key prefix whose writes in a user's transaction are bookkeeping, not part
    of what the user changed (the database passes its schema catalog's prefix: a schema
    recorded on first use, the auto-key counters); they are left out of that commit's
    change set. Commits of other origins (migrations) keep them."""

    def __init__(self, engine: Engine, *, hidden: bytes | None = None) -> None:
        super().__init__(engine)
        self._hidden = hidden
        self._everyone: tuple[Tap, ...] = ()
        self._bounds: list[bytes] = []
        self._segments: list[tuple[Tap, ...]] = []
        self._dirty = False
        self.published = 0  # change sets handed to subscribers (for stats and tests)

    def subscribe(
        self,
        lo: bytes,
        hi: bytes | None,
        *,
        with_old: bool = False,
        capacity: int = DEFAULT_CAPACITY,
        conflate: bool = False,
        map: Callable[[ChangeSet], T] | None = None,
        wake: Callable[[], None],
    ) -> Queue[T]:
        """A queue of the commits touching ``lo <= key < hi`` (``hi`` None: no upper bound),
        each as a ``ChangeSet`` (or ``map(change_set)``); ``queue.start_seq`` is the last
        commit before it. Raises for a closed or failed database. Cancelling the queue
        unsubscribes."""
        queue: Queue[T] = self._queue(capacity, conflate, wake)
        tap = _queue_tap(self, queue, lo=lo, hi=hi, with_old=with_old, map=map)
        queue.start_seq = self._add(tap).start_seq
        return queue

    def attach(
        self,
        lo: bytes,
        hi: bytes | None,
        *,
        on_commit: Callable[[ChangeSet], None],
        on_end: Callable[[BaseException | None], None],
        with_old: bool = False,
    ) -> Tap:
        """A synchronous subscriber: ``on_commit(change_set)`` runs *inside* ``publish``, for
        each commit touching ``lo <= key < hi``, right after it became visible and before any
        later commit is applied (the live-query dispatcher uses this). It must not await,
        block or raise (an exception would reach the engine's apply hook: catch it). No buffer,
        so no overflow; ``on_end(error)`` runs once when the database closes (None) or fails.
        ``tap.start_seq`` is the last commit before it; ``tap.detach()`` unsubscribes.
        Raises for a closed or failed database."""
        return self._add(Tap(self, on_commit, on_end, lo=lo, hi=hi, with_old=with_old))

    def _changed(self) -> None:
        self._dirty = True
        self._engine.on_apply = self.publish if self._subs else None

    def _rebuild(self) -> None:
        """Cut the key space at every subscription bound; list who covers each segment."""
        self._dirty = False
        everyone = []
        ranged = []
        for sub in list(self._subs):  # a copy: a collected stream may unsubscribe meanwhile
            if not sub.lo and sub.hi is None:
                everyone.append(sub)
            else:
                ranged.append(sub)
        self._everyone = tuple(everyone)
        bounds = sorted({sub.lo for sub in ranged} | {sub.hi for sub in ranged if sub.hi is not None})
        index = {b: i for i, b in enumerate(bounds)}
        cover: list[list[Tap]] = [[] for _ in bounds]
        for sub in ranged:
            end = len(bounds) if sub.hi is None else index[sub.hi]
            for i in range(index[sub.lo], end):
                cover[i].append(sub)
        self._bounds = bounds
        self._segments = [tuple(c) for c in cover]

    def publish(self, seq: int, keys: list[bytes], values: list[bytes | None], origin: str) -> None:
        """Hand one commit to its subscribers (the engine's apply hook; see the module doc)."""
        if self._dirty:
            self._rebuild()
        hidden = self._hidden
        if hidden is not None and origin == "transaction" and any(k.startswith(hidden) for k in keys):
            kept = [i for i, k in enumerate(keys) if not k.startswith(hidden)]
            keys, values = [keys[i] for i in kept], [values[i] for i in kept]
        if len(keys) > 1:
            latest = dict(zip(keys, values, strict=True))  # a key written twice: the last write
            if len(latest) != len(keys):
                keys, values = list(latest), list(latest.values())
        everyone = self._everyone
        matched: dict[Tap, list[int]] = {}
        if self._segments:
            bounds, segments = self._bounds, self._segments
            for i, key in enumerate(keys):
                j = bisect_right(bounds, key) - 1
                if j >= 0:
                    for sub in segments[j]:
                        hits = matched.get(sub)
                        if hits is None:
                            matched[sub] = [i]
                        else:
                            hits.append(i)
        if not everyone and not matched:
            return
        plain = [
            Change(key, "delete", None) if value is None else Change(key, "put", value)
            for key, value in zip(keys, values, strict=True)
        ]
        with_old: list[Change | None] | None = None
        if any(sub.with_old for sub in everyone):
            with_old = self._with_old(seq, keys, plain, range(len(keys)), everyone, matched)
        elif any(sub.with_old for sub in matched):
            wanted = sorted({i for sub, hits in matched.items() if sub.with_old for i in hits})
            with_old = self._with_old(seq, keys, plain, wanted, everyone, matched)
        full_plain: tuple[Change, ...] | None = None
        full_old: tuple[Change, ...] | None = None
        for sub in everyone:
            if sub.with_old and with_old is not None:
                full_old = full_old or tuple(with_old)  # type: ignore[arg-type]  # all filled
                self._deliver(sub, ChangeSet(seq, full_old, origin))
            elif not sub.with_old:
                full_plain = full_plain or tuple(plain)
                self._deliver(sub, ChangeSet(seq, full_plain, origin))
        for sub, hits in matched.items():
            if not sub.with_old:
                self._deliver(sub, ChangeSet(seq, tuple(plain[i] for i in hits), origin))
            elif with_old is not None:  # (None: reading old values failed, and failed `sub`)
                self._deliver(sub, ChangeSet(seq, tuple(with_old[i] for i in hits), origin))  # type: ignore[misc]

    def _deliver(self, sub: Tap, change_set: ChangeSet) -> None:
        mapper = sub.map
        # a queue answers False when it had ended; an attached callback answers None
        if sub.send(change_set if mapper is None else mapper(change_set)) is not False:
            self.published += 1

    def _with_old(
        self,
        seq: int,
        keys: list[bytes],
        plain: list[Change],
        wanted: Sequence[int],
        everyone: tuple[Tap, ...],
        matched: dict[Tap, list[int]],
    ) -> list[Change | None] | None:
        """Changes at positions ``wanted`` with the values before this commit, None at the
        other positions. They are read at ``seq - 1``: the engine publishes before it applies
        any later batch, and the newest version older than a key's newest is kept (the
        memtable's history, or the table holding it) at least until the next flush, which
        cannot run before this synchronous call returns. A read error fails the
        subscriptions that asked for old values; it never reaches the engine."""
        try:
            old = self._engine.get_many([keys[i] for i in wanted], seq - 1)
        except QuantaError as exc:
            for sub in [*everyone, *matched]:
                if sub.with_old:
                    sub._stop(exc)
            return None
        result: list[Change | None] = [None] * len(plain)
        for i, previous in zip(wanted, old, strict=True):
            change = plain[i]
            result[i] = Change(change.key, change.kind, change.value, previous)
        return result
