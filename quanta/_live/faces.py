"""How a live query's items reach its consumer: the :class:`Outlet` (one per subscription)
and the two faces over it, :class:`LiveFeed` (a ``reactivex`` Observable that is also
async-iterable) and :class:`LiveStream` (an async iterator).

Delivery modes of an outlet:

* **every item** (``watch``, ``watch_diff``, ``watch_object``, the counts and aggregates,
  ``watch_lazy``): when its state changes, the outlet takes the item at once (so each item
  is the value after one commit) and queues it; the face delivers the queue on the event
  loop. At most ``capacity`` items wait; past that the subscription fails with
  ``SubscriberOverflowError`` after the queued items (as on the change bus), never skipping
  a commit silently.
* **latest value** (``live()``): a change only marks the outlet pending; the item is taken
  when the consumer asks for the next one, so a slow consumer gets the newest value and
  skips the ones in between (and a diff or list spans what it skipped). It cannot overflow.

**Coalescing** (``coalesce=seconds``): at most one item per window. A change when no window
is open is delivered at once and opens a window of ``coalesce`` seconds; changes inside the
window are held; when the window ends, if anything changed, the item for the *current*
state is delivered (one list or one merged diff, relative to what the consumer last got;
nothing if the value came back to it) and a new window opens. Windows are timed on the
subscriber's scheduler when it gave one (``subscribe(..., scheduler=TestScheduler())``:
virtual time), else on the running loop (``loop.call_later``). Closing the database
delivers a held change before completing.

Lifetimes: a subscription ends on ``dispose()`` (Rx), ``aclose()`` / leaving
``async with`` / garbage collection (streams), and when the database closes (completed) or
fails (``on_error``). Ending detaches the state from its dispatcher at once, so nothing is
kept for an abandoned subscription; the dispatcher holds the state, the state its outlet,
and the outlet only a weak reference to a stream.

Concurrency rules: event-loop thread only. ``notify`` is called inside the commit's publish
and only queues and schedules; consumers run later, on the loop or on their scheduler (an
observer on an inline scheduler runs at once; an exception escaping it ends that
subscription and is reported to the loop's exception handler, never to the commit).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .._reactive.bus import EMPTY  # ``Outlet.pop()``'s answer when nothing is due: the bus's own
from .._reactive.faces import PullStream, observe
from ..errors import SubscriberOverflowError
from .states import NOTHING

if TYPE_CHECKING:
    from .states import LiveState

__all__ = ["EMPTY", "Clock", "LiveFeed", "LiveStream", "Outlet", "loop_clock", "scheduler_clock"]

T = TypeVar("T")

Clock = Callable[[float, Callable[[], None]], Callable[[], None]]
"""``clock(delay_seconds, fn) -> cancel``: run ``fn`` once after ``delay_seconds``."""


def loop_clock() -> Clock:
    """Timers on the running asyncio loop (looked up when a timer is set)."""

    def schedule(delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        return asyncio.get_running_loop().call_later(delay, fn).cancel

    return schedule


def scheduler_clock(scheduler: abc.SchedulerBase) -> Clock:
    """Timers on a reactivex scheduler (virtual time on a ``TestScheduler``)."""

    def schedule(delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        def action(_scheduler: abc.SchedulerBase, _state: Any = None) -> None:
            fn()

        return scheduler.schedule_relative(delay, action).dispose

    return schedule


def _report(exc: BaseException) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - outlets live on the loop
        return
    loop.call_exception_handler({"message": "a live-query consumer raised; its subscription ended", "exception": exc})


class Outlet(Generic[T]):
    """One subscription's delivery queue (see the module docstring)."""

    __slots__ = (
        "_cancel_timer",
        "_held",
        "buffer",
        "cancelled",
        "capacity",
        "clock",
        "coalesce",
        "done",
        "error",
        "latest",
        "pending",
        "state",
        "wake",
    )

    def __init__(
        self,
        state: LiveState,
        *,
        latest: bool,
        capacity: int,
        coalesce: float | None,
        clock: Clock,
        wake: Callable[[], None],
    ) -> None:
        self.state = state
        self.latest = latest
        self.capacity = capacity
        self.coalesce = coalesce
        self.clock = clock
        self.wake = wake
        self.buffer: deque[T] = deque()
        self.pending = False  # latest mode: the state changed since the consumer last took
        self.done = False
        self.cancelled = False  # ended by the consumer: nothing more is delivered, not even the end
        self.error: BaseException | None = None
        self._held = False  # coalescing: a change arrived inside the open window
        self._cancel_timer: Callable[[], None] | None = None
        state.outlet = self

    # -- producer side (the state, inside a commit's publish) --------------------------------

    def notify(self) -> None:
        """The state's value may have changed."""
        if self.done:
            return
        if self.coalesce is not None:
            if self._cancel_timer is not None:
                self._held = True
                return
            self._cancel_timer = self.clock(self.coalesce, self._window_ended)
        self._deliver()

    def _window_ended(self) -> None:
        self._cancel_timer = None
        if self.done or not self._held:
            return
        self._held = False
        assert self.coalesce is not None
        self._cancel_timer = self.clock(self.coalesce, self._window_ended)
        self._deliver()

    def _deliver(self) -> None:
        if self.latest:
            if not self.pending:
                self.pending = True
                self._wake()
            return
        item = self.state.take()
        if item is NOTHING:
            return
        buf = self.buffer
        if len(buf) >= self.capacity:
            self.fail(
                SubscriberOverflowError(
                    f"the live query's consumer fell {len(buf)} items behind (its buffer holds {self.capacity}) "
                    f"and was unsubscribed after them; subscribe again for the current result, raise `buffer=`, "
                    "or use coalesce= or live() (latest value)",
                    last_seq=self.state.seq,
                )
            )
            return
        buf.append(cast(T, item))
        if len(buf) == 1:
            self._wake()

    def _wake(self) -> None:
        try:
            self.wake()
        except Exception as exc:
            # A consumer run inline (an observer on an immediate scheduler) raised through its
            # own on_error: end its subscription and report it, never fail the commit.
            self.cancel()
            _report(exc)

    def finish(self) -> None:
        """End normally after what is queued (the database closed)."""
        if self.done:
            return
        if self._held:
            self._held = False
            self._deliver()
        self._end(None)

    def fail(self, exc: BaseException) -> None:
        """End with ``exc`` after what is queued."""
        if not self.done:
            self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        self.done = True
        self.error = exc
        self._stop_timer()
        self.state.close()
        self._wake()

    # -- consumer side ----------------------------------------------------------------------

    def pop(self) -> T | Any:
        """The next item, or ``EMPTY``."""
        if self.buffer:
            return self.buffer.popleft()
        if self.pending:
            self.pending = False
            item = self.state.take()
            if item is not NOTHING:
                return item
        return EMPTY

    @property
    def drained(self) -> bool:
        """Ended, and everything queued was delivered."""
        return self.done and not self.buffer and not self.pending

    def cancel(self) -> None:
        """The consumer went away: drop what is queued and free the state now."""
        self.done = self.cancelled = True
        self.buffer.clear()
        self.pending = False
        self._stop_timer()
        self.state.close()

    def _stop_timer(self) -> None:
        cancel, self._cancel_timer = self._cancel_timer, None
        self._held = False
        if cancel is not None:
            cancel()


Opener = Callable[[Callable[[], None], Clock], Outlet[T]]
"""Opens one subscription: given the face's ``wake`` and ``clock``, returns its outlet
(whose state already holds the current value and has been told to deliver it)."""


class LiveStream(PullStream[T]):
    """An async iterator over one live subscription: ``async for rows in stream`` (optionally
    inside ``async with stream:``, which ends it on exit). Subscribed when created.

    Iteration stops when the database closes; it raises the error that ended the
    subscription otherwise (``SubscriberOverflowError``, ``DatabaseFailedError``, a read
    error). Dropping the stream (e.g. breaking out of ``async for`` over a stream nobody
    else holds) ends the subscription.
    """

    __slots__ = ()

    def __init__(self, opener: Opener[T]) -> None:
        super().__init__(lambda wake: opener(wake, loop_clock()))


class LiveFeed(Observable[T], Generic[T]):
    """A live query as a cold ``reactivex.Observable``: each ``subscribe`` (and each
    ``async for``) opens its own subscription, which emits the current value at once and
    then each new one. Items are delivered on the running asyncio loop, in a callback
    scheduled after the commit, or on the ``scheduler`` given to ``subscribe``. Disposing
    ends the subscription; closing the database completes it. If ``on_next`` raises, the
    subscription ends and the exception goes to ``on_error``.
    """

    def __init__(self, opener: Opener[T]) -> None:
        self._opener = opener
        super().__init__(self._on_subscribe)

    def __aiter__(self) -> LiveStream[T]:
        return LiveStream(self._opener)

    def stream(self) -> LiveStream[T]:
        """Subscribe now and return the async iterator."""
        return LiveStream(self._opener)

    def _on_subscribe(self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None) -> Disposable:
        opener = self._opener

        def connect(wake: Callable[[], None], scheduler: abc.SchedulerBase | None) -> Outlet[T]:
            return opener(wake, loop_clock() if scheduler is None else scheduler_clock(scheduler))

        return observe(connect, observer, scheduler)
