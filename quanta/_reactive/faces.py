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
from typing import Any, Generic, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .bus import EMPTY, Subscription

__all__ = ["Feed", "Stream"]

T = TypeVar("T")

Opener = Callable[[Callable[[], None]], Subscription[T]]
"""Makes a subscription, given the ``wake`` callback the face wants."""


class Stream(Generic[T]):
    """An async iterator over one subscription. Use ``async for item in stream`` (optionally
    inside ``async with stream:``, which unsubscribes on exit).

    ``start_seq``: the last commit before the subscription began; the stream yields commits
    after it. On overflow, iteration raises :class:`quanta.SubscriberOverflowError` after the
    buffered items; when the database closes, iteration stops after them.
    """

    __slots__ = ("__weakref__", "_sub", "_waiter")

    def __init__(self, opener: Opener[T]) -> None:
        ref = weakref.ref(self)

        def wake() -> None:
            stream = ref()
            if stream is not None:
                waiter = stream._waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

        self._waiter: asyncio.Future[None] | None = None
        self._sub = opener(wake)

    def _stop(self) -> None:
        """Unsubscribe, and end an ``async for`` waiting in another task."""
        self._sub.cancel()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def start_seq(self) -> int:
        return self._sub.start_seq

    @property
    def closed(self) -> bool:
        """True once the stream can yield nothing more than what it already buffered."""
        return self._sub.done

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        sub = self._sub
        while True:
            item = sub.pop()
            if item is not EMPTY:
                return cast(T, item)
            if sub.done:
                error, sub.error = sub.error, None
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
        """Unsubscribe now; buffered items are dropped, and an ``async for`` over this stream
        (in any task) stops."""
        self._stop()

    def close(self) -> None:
        """``aclose`` without the await."""
        self._stop()

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def __del__(self) -> None:
        sub = getattr(self, "_sub", None)
        if sub is not None and not sub.done:
            sub.cancel()


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
        scheduled = False
        ready = False  # `sub` is bound: a wake before that (a watch's first value) waits for it
        loop = asyncio.get_running_loop() if scheduler is None else None

        def drain(*_: Any) -> None:
            nonlocal scheduled
            scheduled = False
            while True:
                item = sub.pop()
                if item is EMPTY:
                    break
                try:
                    observer.on_next(cast(T, item))
                except Exception as exc:
                    sub.cancel()
                    observer.on_error(exc)
                    return
            if sub.done and not sub.buffer:
                error, sub.error = sub.error, None
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
                return  # woken again below, once `sub` exists
            if loop is not None:
                loop.call_soon(drain)
            else:
                assert scheduler is not None
                scheduler.schedule(drain)

        sub = self._opener(wake)  # an opener may queue a first item (a watch's current value)
        ready = True
        if scheduled:
            scheduled = False
            wake()
        return Disposable(sub.cancel)
