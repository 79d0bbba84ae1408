"""The two faces of a subscription: an async iterator and a ``reactivex`` Observable.

Both drain a :class:`~quanta._reactive.bus.Subscription` on the event loop, never inside the
commit that fed it. A :class:`Stream` is subscribed when it is created (so ``start_seq`` is
fixed before the caller awaits anything); a :class:`Feed` is a cold Observable: each
``subscribe`` (and each ``async for``) makes its own subscription.

Lifetimes: a stream ends when the database closes, when it fails (overflow), on ``aclose()``
/ ``async with`` exit, and when it is garbage collected -- breaking out of ``async for`` over
a stream nobody else holds unsubscribes at once. An observer's subscription ends on
``dispose()``. The hub holds a subscription, never the face, so an abandoned face cannot keep
itself alive.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .bus import EMPTY, Subscription

__all__ = ["Feed", "PullStream", "Pullable", "Stream", "observe"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Opener = Callable[[Callable[[], None]], Subscription[T]]
"""Makes a subscription, given the ``wake`` callback the face wants."""


class Pullable(Protocol[T_co]):
    """What a :class:`PullStream` drains: a bus :class:`~quanta._reactive.bus.Subscription`,
    or a live query's outlet. ``pop`` returns ``EMPTY`` when nothing is queued; ``done`` with
    ``error`` None means a normal end."""

    done: bool
    cancelled: bool
    error: BaseException | None

    @property
    def drained(self) -> bool: ...

    def pop(self) -> T_co | object: ...

    def cancel(self) -> None: ...


class PullStream(Generic[T]):
    """An async iterator over one :class:`Pullable` (``async for item in stream``, optionally
    inside ``async with stream:``, which ends it on exit), subscribed when created.

    Iteration yields what is queued, then stops when the source ends normally or raises the
    error that ended it. ``aclose()``/``close()`` end it now, waking an ``async for`` waiting
    in another task; dropping the stream (e.g. breaking out of ``async for`` over a stream
    nobody else holds) ends it too: the source holds only a weak reference to the stream.
    """

    __slots__ = ("__weakref__", "_source", "_waiter")

    def __init__(self, connect: Callable[[Callable[[], None]], Pullable[T]]) -> None:
        ref = weakref.ref(self)

        def wake() -> None:
            stream = ref()
            if stream is not None:
                waiter = stream._waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

        self._waiter: asyncio.Future[None] | None = None
        self._source = connect(wake)

    def _stop(self) -> None:
        """End the subscription, and an ``async for`` waiting in another task."""
        self._source.cancel()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def closed(self) -> bool:
        """True once the stream can yield nothing more than what it already queued."""
        return self._source.done

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        source = self._source
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

    async def aclose(self) -> None:
        """End the subscription now; queued items are dropped, and an ``async for`` over this
        stream (in any task) stops."""
        self._stop()

    def close(self) -> None:
        """``aclose`` without the await."""
        self._stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def __del__(self) -> None:
        source = getattr(self, "_source", None)
        if source is not None and not source.done:
            source.cancel()


class Stream(PullStream[T]):
    """An async iterator over one change-bus subscription (see :class:`PullStream`).

    ``start_seq``: the last commit before the subscription began; the stream yields commits
    after it. On overflow, iteration raises :class:`quanta.SubscriberOverflowError` after the
    buffered items; when the database closes, iteration stops after them.
    """

    __slots__ = ()

    def __init__(self, opener: Opener[T]) -> None:
        super().__init__(opener)

    @property
    def start_seq(self) -> int:
        sub = self._source
        assert isinstance(sub, Subscription)
        return sub.start_seq


class Feed(Observable[T], Generic[T]):
    """A cold ``reactivex.Observable`` over the bus: each subscription (and each
    ``async for``) gets its own bus subscription.

    Items are delivered on the running asyncio loop, in a callback scheduled after the commit
    (or on the ``scheduler`` given to ``subscribe``, e.g. a ``TestScheduler``). Disposing
    unsubscribes; closing the database completes the observer; an overflow calls
    ``on_error(SubscriberOverflowError)`` after the buffered items. If ``on_next`` raises,
    the subscription ends and the exception goes to ``on_error``.
    """

    def __init__(self, opener: Opener[T]) -> None:
        self._opener = opener
        super().__init__(self._on_subscribe)

    def __aiter__(self) -> Stream[T]:
        return Stream(self._opener)

    def stream(self) -> Stream[T]:
        """Subscribe now and return the async iterator (``start_seq`` is fixed here)."""
        return Stream(self._opener)

    def _on_subscribe(self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None) -> Disposable:
        opener = self._opener
        return observe(lambda wake, _scheduler: opener(wake), observer, scheduler)


def observe(
    connect: Callable[[Callable[[], None], abc.SchedulerBase | None], Pullable[T]],
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
