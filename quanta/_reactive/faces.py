"""The one public subscription shape, :class:`Watch`: a ``reactivex`` Observable that is also
an async iterator (and an async context manager) over a :class:`~quanta._reactive.queue.Queue`.

Every watch/observe/live call of QuantaDB returns a ``Watch`` (docs/changes.md has the table).
Two faces, two kinds of subscription:

* **Observable**: each ``subscribe`` (and each operator chain built with ``pipe``) opens its
  own queue when it subscribes, and is delivered on the running asyncio loop in a callback
  scheduled after the commit (or on the ``scheduler`` given to ``subscribe``).
* **async iterator**: a ``Watch`` iterates over *one* queue of its own, opened when the call
  returns for the "hot" calls (``db.changes()``, ``db.events()``, ``q.live()``: ``start_seq``
  is fixed before the caller awaits anything) and on first use otherwise (``async for``,
  ``async with``, ``anext``, ``start_seq``). ``w.stream()`` returns a new ``Watch`` over the
  same source whose queue is opened now: one more independent iterator.
  A hot ``Watch`` that is subscribed (``subscribe``) before it is iterated hands its queue to
  that first observer instead of keeping an unused one (from ``start_seq``; a hot live query's
  coalescing windows stay on the running loop's clock, since they were set up at the call).

Lifetimes: an iterator's queue ends when the database closes, when it fails (overflow), on
``aclose()`` / ``async with`` exit, and when the ``Watch`` is garbage collected -- breaking
out of ``async for`` over a watch nobody else holds unsubscribes at once (the queue holds
only a weak reference to its ``Watch``, and a ``Watch`` is in no reference cycle). An
observer's subscription ends on ``dispose()``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeAlias, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .queue import EMPTY

__all__ = ["Coalesce", "Opener", "Pullable", "Watch", "observe"]

Coalesce: TypeAlias = "float | timedelta | None"
"""At most one emission per this many seconds (a number or a ``timedelta``); None or 0: one
per commit that changes the value (a live query's ``coalesce=``)."""

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)


class Pullable(Protocol[T_co]):
    """What a :class:`Watch` drains (a :class:`~quanta._reactive.queue.Queue`). ``pop``
    returns ``EMPTY`` when nothing is queued; ``done`` with ``error`` None is a normal end."""

    done: bool
    cancelled: bool
    error: BaseException | None
    start_seq: int
    wake: Callable[[], None]

    @property
    def drained(self) -> bool: ...

    def pop(self) -> T_co | object: ...

    def cancel(self) -> None: ...


Opener = Callable[[Callable[[], None], abc.SchedulerBase | None], Pullable[T]]
"""Opens one subscription: ``opener(wake, scheduler)`` returns its queue (``scheduler``: the
observer's, or None for the running loop; a live query times its coalescing windows on it)."""


class Watch(Observable[T], Generic[T]):
    """A subscription to commits, events or a live query: a ``reactivex.Observable[T]``
    (``subscribe``, ``pipe``) and an async iterator (``async for item in watch``,
    ``async with watch as stream``, ``anext``, ``aclose()``), see the module docstring.

    Iteration yields what is queued, then stops when the database closes, or raises the error
    that ended the subscription (``SubscriberOverflowError`` after the buffered items,
    ``DatabaseFailedError``, a read error). ``start_seq``: the last commit before the
    iterator's subscription began (it yields what comes after). Closing the database
    completes every observer and iterator; disposing an observer ends just that one.
    If ``on_next`` raises, that subscription ends and the exception goes to ``on_error``.
    """

    def __init__(self, opener: Opener[T], *, hot: bool = False) -> None:
        super().__init__()
        self._opener = opener
        self._source: Pullable[T] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reserved = False  # hot, and not iterated yet: the first observer may take it
        if hot:
            self._open()
            self._reserved = True

    def __repr__(self) -> str:
        source = self._source
        state = "not iterated" if source is None else "closed" if source.done else f"start_seq={source.start_seq}"
        return f"<quanta.Watch {state}>"

    # -- the async iterator ----------------------------------------------------------------

    def _open(self) -> Pullable[T]:
        source = self._source
        if source is None:
            ref = weakref.ref(self)

            def wake() -> None:
                watch = ref()
                if watch is not None:
                    waiter = watch._waiter
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)

            source = self._source = self._opener(wake, None)
        self._reserved = False
        return source

    def stream(self) -> Watch[T]:
        """A new ``Watch`` over the same source, its iterator subscribed now (``start_seq``
        is fixed here): ``async with q.watch().stream() as rows: ...``."""
        return Watch(self._opener, hot=True)

    def mapped(self, fn: Callable[[T], U | object]) -> Watch[U]:
        """A new ``Watch`` over the same source whose items are ``fn(item)``; an item ``fn``
        maps to ``EMPTY`` is dropped (the layer above uses it to mask emissions: quanta/_access).
        Hot (subscribed now) when this one is. ``fn`` runs on the event loop, once per item."""
        opener = self._opener

        def mapped_opener(wake: Callable[[], None], scheduler: abc.SchedulerBase | None) -> Pullable[U]:
            mapped: Pullable[U] = _Mapped(opener(wake, scheduler), fn)
            return mapped

        return Watch(mapped_opener, hot=self._source is not None)

    @property
    def start_seq(self) -> int:
        """The last commit before the iterator's subscription (opening it if not yet)."""
        source = self._source
        return (source if source is not None else self._open()).start_seq

    @property
    def closed(self) -> bool:
        """True once the iterator can yield nothing more than what it already queued."""
        return self._source is not None and self._source.done

    def __aiter__(self) -> Self:
        self._open()
        return self

    async def __anext__(self) -> T:
        source = self._open()
        while True:
            item = source.pop()
            if item is not EMPTY:
                return cast(T, item)
            if source.done:
                error, source.error = source.error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    def _stop(self) -> None:
        """End the iterator's subscription, and an ``async for`` waiting in another task."""
        source = self._source
        if source is not None:
            source.cancel()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def aclose(self) -> None:
        """End the iterator's subscription now; queued items are dropped, and an
        ``async for`` over this watch (in any task) stops. Observers are not affected."""
        self._stop()

    def close(self) -> None:
        """``aclose`` without the await."""
        self._stop()

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def __del__(self) -> None:
        source = getattr(self, "_source", None)
        if source is not None and not source.done:
            source.cancel()

    # -- the Observable --------------------------------------------------------------------

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        source = self._source
        if self._reserved and source is not None:
            # A hot watch's queue, never iterated: the first observer takes it over.
            self._source = None
            self._reserved = False
            taken = source

            def connect(wake: Callable[[], None], _scheduler: abc.SchedulerBase | None) -> Pullable[T]:
                taken.wake = wake
                wake()  # deliver what it queued meanwhile (and its end, if it ended)
                return taken

            return observe(connect, observer, scheduler)
        return observe(self._opener, observer, scheduler)


class _Mapped(Generic[T, U]):
    """A :class:`Pullable` that maps (and may drop) the items of another (``Watch.mapped``)."""

    __slots__ = ("_fn", "_inner")

    def __init__(self, inner: Pullable[T], fn: Callable[[T], U | object]) -> None:
        self._inner = inner
        self._fn = fn

    @property
    def done(self) -> bool:
        return self._inner.done

    @done.setter
    def done(self, value: bool) -> None:
        self._inner.done = value

    @property
    def cancelled(self) -> bool:
        return self._inner.cancelled

    @cancelled.setter
    def cancelled(self, value: bool) -> None:
        self._inner.cancelled = value

    @property
    def error(self) -> BaseException | None:
        return self._inner.error

    @error.setter
    def error(self, value: BaseException | None) -> None:
        self._inner.error = value

    @property
    def start_seq(self) -> int:
        return self._inner.start_seq

    @start_seq.setter
    def start_seq(self, value: int) -> None:
        self._inner.start_seq = value

    @property
    def wake(self) -> Callable[[], None]:
        return self._inner.wake

    @wake.setter
    def wake(self, value: Callable[[], None]) -> None:
        self._inner.wake = value

    @property
    def drained(self) -> bool:
        return self._inner.drained

    def pop(self) -> U | object:
        while True:
            item = self._inner.pop()
            if item is EMPTY:
                return EMPTY
            out = self._fn(cast(T, item))
            if out is not EMPTY:
                return out

    def cancel(self) -> None:
        self._inner.cancel()


def observe(
    connect: Opener[T],
    observer: abc.ObserverBase[T],
    scheduler: abc.SchedulerBase | None,
) -> Disposable:
    """Deliver a :class:`Pullable` to an Rx ``observer``: ``connect(wake, scheduler)`` opens
    it; each wake schedules one drain (``loop.call_soon``, or on ``scheduler``), never inline.
    An ``on_next`` that raises ends the subscription and goes to ``on_error``; the end of the
    source (after its queued items) is ``on_completed`` or ``on_error``. Disposing cancels it.
    """
    scheduled = False
    ready = False  # `source` is bound: a wake before that (a first value) waits for it
    ended = False
    loop = asyncio.get_running_loop() if scheduler is None else None

    def drain(*_: Any) -> None:
        nonlocal scheduled, ended
        scheduled = False
        if ended or source.cancelled:
            return
        while True:
            item = source.pop()
            if item is EMPTY:
                break
            try:
                observer.on_next(cast(T, item))
            except Exception as exc:
                ended = True
                source.cancel()
                observer.on_error(exc)
                return
        if source.drained:
            ended = True
            error, source.error = source.error, None
            if error is not None:
                observer.on_error(cast(Exception, error))
            else:
                observer.on_completed()

    def wake() -> None:
        nonlocal scheduled
        if scheduled:
            return
        scheduled = True
        if not ready:
            return  # woken again below, once `source` exists
        if loop is not None:
            loop.call_soon(drain)
        else:
            assert scheduler is not None
            scheduler.schedule(drain)

    source = connect(wake, scheduler)  # it may queue a first item (a watch's current value)
    ready = True
    if scheduled:
        scheduled = False
        wake()
    return Disposable(source.cancel)
