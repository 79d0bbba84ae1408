"""How a live query's items reach its consumer: the :class:`Outlet` (one per subscription:
coalescing windows in front of the change bus's own :class:`~quanta._reactive.Queue`), drained
by the one public face, :class:`quanta.Watch`.

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
the outlet its queue, and the queue only a weak reference to a ``Watch``.

Concurrency rules: event-loop thread only. ``notify`` is called inside the commit's publish
and only queues and schedules; consumers run later, on the loop or on their scheduler (an
observer on an inline scheduler runs at once; an exception escaping it ends that
subscription and is reported to the loop's exception handler, never to the commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from reactivex import abc

from .._reactive import EMPTY, Queue
from .states import NOTHING

if TYPE_CHECKING:
    from .states import LiveState

__all__ = ["Clock", "Outlet", "clock_for", "loop_clock", "scheduler_clock"]

T = TypeVar("T")

Clock = Callable[[float, Callable[[], None]], Callable[[], None]]
"""``clock(delay_seconds, fn) -> cancel``: run ``fn`` once after ``delay_seconds``."""

OVERFLOW_HINT = "subscribe again for the current result, raise `buffer=`, or use coalesce= or live() (latest value)"


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


def clock_for(scheduler: abc.SchedulerBase | None) -> Clock:
    """The subscriber's scheduler's clock, or the running loop's."""
    return loop_clock() if scheduler is None else scheduler_clock(scheduler)


class Outlet(Generic[T]):
    """One subscription's delivery (see the module docstring): ``queue`` is what the face
    drains; the outlet decides when the state's item goes into it."""

    __slots__ = ("_cancel_timer", "_held", "clock", "coalesce", "latest", "queue", "state")

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
        self.coalesce = coalesce
        self.clock = clock
        self._held = False  # coalescing: a change arrived inside the open window
        self._cancel_timer: Callable[[], None] | None = None
        self.queue: Queue[T] = Queue(
            capacity=capacity,
            pull=self._take if latest else None,
            wake=wake,
            on_end=self._ended,
            last_seq=lambda: state.seq,
            hint=OVERFLOW_HINT,
        )
        state.outlet = self

    # -- producer side (the state, inside a commit's publish) --------------------------------

    def notify(self) -> None:
        """The state's value may have changed."""
        if self.queue.done:
            return
        if self.coalesce is not None:
            if self._cancel_timer is not None:
                self._held = True
                return
            self._cancel_timer = self.clock(self.coalesce, self._window_ended)
        self._deliver()

    def _window_ended(self) -> None:
        self._cancel_timer = None
        if self.queue.done or not self._held:
            return
        self._held = False
        assert self.coalesce is not None
        self._cancel_timer = self.clock(self.coalesce, self._window_ended)
        self._deliver()

    def _deliver(self) -> None:
        if self.latest:
            self.queue.mark()
            return
        item = self.state.take()
        if item is not NOTHING:
            self.queue.push(item)

    def _take(self) -> Any:
        item = self.state.take()
        return EMPTY if item is NOTHING else item

    def finish(self) -> None:
        """End normally after what is queued (the database closed)."""
        if self.queue.done:
            return
        if self._held:
            self._held = False
            self._deliver()
        self.queue.finish()

    def fail(self, exc: BaseException) -> None:
        """End with ``exc`` after what is queued."""
        self.queue.fail(exc)

    def _ended(self) -> None:
        """The queue ended (finished, failed, overflowed or cancelled): free the state."""
        cancel, self._cancel_timer = self._cancel_timer, None
        self._held = False
        if cancel is not None:
            cancel()
        self.state.close()
