"""The change bus: every commit, exactly once and in commit order, to each subscriber whose key
range it touches; and the event hub that fans out the engine's system events.

Concurrency rules (read these first):

* Everything runs on the event-loop thread. The engine calls :meth:`ChangeBus.publish` from its
  apply hook, synchronously, as soon as a batch is visible (after its fsync with
  ``durability="sync"``), once per batch and in sequence order. ``publish`` never awaits and
  never blocks: it appends one ``ChangeSet`` to each matching subscription's buffer and wakes
  that subscription's consumer (which normally runs later, on the loop; an Rx observer
  subscribed with an inline scheduler runs at once -- the batch is applied already, and an
  exception escaping it ends that subscription, never the commit).
* A subscription starts at ``start_seq``, the last visible sequence number when it was made;
  it receives every matching commit with a greater seq and none before (the registration and
  the read of ``visible_seq`` happen in one synchronous step).
* Slow subscribers: each subscription holds at most ``capacity`` undelivered items. A writer
  never waits for a subscriber; the cost of a subscriber to a commit is the ``publish`` work
  (routing and building the ChangeSet), never the consumer's speed. When a buffer is full the
  subscription *fails*: it is removed from the bus, its consumer first receives everything
  buffered (every commit up to ``SubscriberOverflowError.last_seq``, with no gap), then the
  error. It never silently skips a commit. Conflating subscriptions (``db.kv.watch``) keep only
  the newest item instead and cannot overflow.
* Closing the database completes every subscription after its buffered items (or fails it
  with the error that stopped the database).

Routing (why 1,000 subscribers on other key ranges cost little): the subscriptions' range
bounds cut the key space into elementary segments; each segment holds the tuple of
subscriptions covering it, so a changed key finds its subscribers with one bisect. The table is
rebuilt lazily, on the first publish after subscriptions change. Subscriptions to the whole key
space skip routing altogether.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ..errors import DatabaseClosedError, DatabaseFailedError, QuantaError, SubscriberOverflowError

if TYPE_CHECKING:
    from .._storage import Engine, SystemEvent

__all__ = ["DEFAULT_CAPACITY", "Change", "ChangeBus", "ChangeSet", "EventHub", "Subscription"]

T = TypeVar("T")

DEFAULT_CAPACITY = 10_000
"""Undelivered items a subscription may hold before it fails with SubscriberOverflowError."""

_EMPTY: object = object()


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
    ``"batch"`` (``db.kv.batch()``) or ``"transaction"``.
    """

    seq: int
    changes: tuple[Change, ...]
    origin: str


class Subscription(Generic[T]):
    """One subscriber's bounded buffer: fed by a hub, drained by a face (an async iterator or
    an Rx observer) through :meth:`pop`.

    ``wake`` is called when the buffer goes from empty to non-empty and when the subscription
    ends; it must only schedule work, never run the consumer inline.
    """

    __slots__ = (
        "_hub",
        "_last",
        "buffer",
        "cancelled",
        "capacity",
        "conflate",
        "done",
        "error",
        "hi",
        "lo",
        "map",
        "start_seq",
        "wake",
        "with_old",
    )

    def __init__(
        self,
        hub: Hub,
        *,
        lo: bytes = b"",
        hi: bytes | None = None,
        with_old: bool = False,
        capacity: int = DEFAULT_CAPACITY,
        conflate: bool = False,
        map: Callable[[ChangeSet], T] | None = None,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._hub = hub
        self.lo = lo
        self.hi = hi
        self.with_old = with_old
        self.capacity = capacity
        self.conflate = conflate
        self.map = map
        self.wake = wake
        self.buffer: deque[T] = deque()
        self.done = False
        self.cancelled = False  # ended by the consumer: nothing more is delivered, not even the end
        self.error: BaseException | None = None
        self.start_seq = 0
        self._last: object = _EMPTY  # conflating subscriptions: the last item handed out

    def push(self, item: T) -> bool:
        """Queue one item (called by the hub); False if the subscription ended instead.
        Never blocks, never raises."""
        if self.done:
            return False
        buf = self.buffer
        if self.conflate:
            buf.clear()
        elif len(buf) >= self.capacity:
            last = getattr(buf[-1], "seq", None) if buf else None
            self.fail(
                SubscriberOverflowError(
                    f"the subscriber fell {len(buf)} items behind (its buffer holds {self.capacity}) and was "
                    f"unsubscribed; it received everything up to seq {last}, nothing after: re-read the "
                    "state and subscribe again, or raise `buffer=`",
                    last_seq=last,
                )
            )
            return False
        buf.append(item)
        if len(buf) == 1:
            self._wake()
        elif len(buf) * 2 > self.capacity:
            self._hub.backlogged()
        return True

    def _wake(self) -> None:
        try:
            self.wake()
        except Exception as exc:
            # A consumer run inline (an Rx observer on an immediate scheduler) raised through
            # its own on_error: end its subscription, report it, and never fail the commit.
            self.done = True
            self.buffer.clear()
            self._hub.remove(self)
            _report(exc)

    def pop(self) -> T | object:
        """The next item, or ``_EMPTY``. A conflating subscription skips an item equal to the
        one it handed out last (a watch emits changes of value, not writes)."""
        buf = self.buffer
        while buf:
            item = buf.popleft()
            if self.conflate:
                if item == self._last:
                    continue
                self._last = item
            return item
        return _EMPTY

    def fail(self, exc: BaseException) -> None:
        """End the subscription with ``exc`` after the buffered items."""
        if not self.done:
            self.done = True
            self.error = exc
            self._hub.remove(self)
            self._wake()

    def finish(self) -> None:
        """End the subscription normally after the buffered items."""
        if not self.done:
            self.done = True
            self._hub.remove(self)
            self._wake()

    @property
    def drained(self) -> bool:
        """Ended, and everything buffered was handed out."""
        return self.done and not self.buffer

    def cancel(self) -> None:
        """Unsubscribe now, dropping whatever is buffered (the consumer went away)."""
        self.done = True
        self.cancelled = True
        self.buffer.clear()
        self._hub.remove(self)


EMPTY = _EMPTY


def _report(exc: BaseException) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - the bus runs on the loop
        return
    loop.call_exception_handler({"message": "a change-bus consumer raised; its subscription ended", "exception": exc})


class Hub:
    """Subscriptions of one kind, all completed when the database shuts down."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._subs: dict[Subscription[object], None] = {}  # an ordered set
        self._closed = False
        engine.on_shutdown.append(self.close)

    def __len__(self) -> int:
        return len(self._subs)

    def _add(self, sub: Subscription[T]) -> Subscription[T]:
        failure = self._engine._failure
        if failure is not None:
            raise DatabaseFailedError(
                f"the database stopped after a failure: {failure!r}; close and reopen it"
            ) from failure
        if self._closed or self._engine.closed:
            raise DatabaseClosedError(f"the database at {self._engine.path} is closed")
        sub.start_seq = self._engine.visible_seq
        self._subs[sub] = None  # type: ignore[index]
        self._changed()
        return sub

    def remove(self, sub: Subscription[T]) -> None:
        if self._subs.pop(sub, _EMPTY) is not _EMPTY:  # type: ignore[arg-type]
            self._changed()

    def _changed(self) -> None:
        pass

    def backlogged(self) -> None:
        """A subscription's buffer is more than half full: let writers give the loop a turn."""
        self._engine.yield_writers = True

    def close(self, failure: BaseException | None = None) -> None:
        """Complete every subscription (fail them if the database failed)."""
        self._closed = True
        for sub in list(self._subs):
            if failure is None:
                sub.finish()
            else:
                err = DatabaseFailedError(f"the database stopped after a failure: {failure!r}")
                err.__cause__ = failure
                sub.fail(err)
        self._subs.clear()


class EventHub(Hub):
    """Fans system events out to ``db.events()`` subscribers."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)

    def subscribe(self, *, capacity: int = DEFAULT_CAPACITY, wake: Callable[[], None]) -> Subscription[SystemEvent]:
        return self._add(Subscription(self, capacity=capacity, wake=wake))

    def _changed(self) -> None:
        self._engine.on_event = self.publish if self._subs else None

    def publish(self, event: SystemEvent) -> None:
        for sub in list(self._subs):
            sub.push(event)


_CATALOG = b"\x00Qc"  # the schema catalog's reserved keys (quanta/_schema/keyspace.py)


def _is_catalog(key: bytes) -> bool:
    return key.startswith(_CATALOG)


class ChangeBus(Hub):
    """Routes each commit's changes to the subscriptions whose key ranges they touch."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._everyone: tuple[Subscription[object], ...] = ()
        self._bounds: list[bytes] = []
        self._segments: list[tuple[Subscription[object], ...]] = []
        self._dirty = False
        self.published = 0  # change sets handed to subscriptions (for stats and tests)

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
    ) -> Subscription[T]:
        """Subscribe to commits touching ``lo <= key < hi`` (``hi`` None: no upper bound)."""
        sub: Subscription[T] = Subscription(
            self, lo=lo, hi=hi, with_old=with_old, capacity=capacity, conflate=conflate, map=map, wake=wake
        )
        return self._add(sub)

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
        cover: list[list[Subscription[object]]] = [[] for _ in bounds]
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
        if origin == "transaction" and any(map(_is_catalog, keys)):
            # The entity layer's bookkeeping in a user's commit (a schema recorded on first
            # use, the auto-key counter): not part of what the user changed.
            kept = [i for i, k in enumerate(keys) if not k.startswith(_CATALOG)]
            keys, values = [keys[i] for i in kept], [values[i] for i in kept]
        if len(keys) > 1:
            latest = dict(zip(keys, values, strict=True))  # a key written twice: the last write
            if len(latest) != len(keys):
                keys, values = list(latest), list(latest.values())
        everyone = self._everyone
        matched: dict[Subscription[object], list[int]] = {}
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

    def _deliver(self, sub: Subscription[object], change_set: ChangeSet) -> None:
        mapper = sub.map
        if sub.push(change_set if mapper is None else mapper(change_set)):
            self.published += 1

    def _with_old(
        self,
        seq: int,
        keys: list[bytes],
        plain: list[Change],
        wanted: Sequence[int],
        everyone: tuple[Subscription[object], ...],
        matched: dict[Subscription[object], list[int]],
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
                    sub.fail(exc)
            return None
        result: list[Change | None] = [None] * len(plain)
        for i, previous in zip(wanted, old, strict=True):
            change = plain[i]
            result[i] = Change(change.key, change.kind, change.value, previous)
        return result
