"""The one subscriber queue: what every subscription (a change-bus subscriber, a system-event
subscriber, a live query) holds between the producer and its consumer.

A :class:`Queue` is fed inside a commit's publish (or an engine event) and drained by a
:class:`~quanta._reactive.faces.Watch` on the event loop. Its rules:

* **capacity**: at most ``capacity`` undelivered items. A producer never waits: when the
  buffer is full, :meth:`Queue.push` *fails* the queue with ``SubscriberOverflowError``
  (``last_seq``: the seq of the last item it holds), so its consumer gets everything buffered,
  then the error. It never skips an item silently.
* **backlog**: when the buffer goes past half full, ``backlog()`` is called (the bus uses
  it to make writers give the loop a turn); it must only set a flag.
* three **modes**: every item (the default); ``conflate=True`` keeps only the newest item and
  skips one equal to the item handed out last (``db.kv.watch``: changes of value, not
  writes); ``pull=fn`` holds no items at all, only a *pending* mark set by :meth:`mark`, and
  computes the item with ``fn()`` when the consumer asks (``q.live()``: the latest value).
  The last two cannot overflow.
* **wake**: called when the queue goes from empty to non-empty and when it ends; it must
  only schedule work (the face sets it). If it raises (an Rx observer on an inline scheduler
  whose ``on_error`` raised), the queue is cancelled and the error goes to the loop's
  exception handler, never to the producer.
* **end**: :meth:`finish` (normal) or :meth:`fail` end it after the buffered items;
  :meth:`cancel` (the consumer went away) ends it dropping them. Each calls ``on_end`` once
  (the producer's cleanup: the bus unroutes the subscriber, a live state detaches).

Event-loop thread only; nothing here awaits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import SubscriberOverflowError

__all__ = ["DEFAULT_CAPACITY", "EMPTY", "Queue"]

T = TypeVar("T")

DEFAULT_CAPACITY = 10_000
"""Undelivered items a subscription may hold before it fails with SubscriberOverflowError."""

EMPTY: object = object()
"""What :meth:`Queue.pop` returns when nothing is due."""


def _noop() -> None:
    pass


class Queue(Generic[T]):
    """One subscription's bounded queue (see the module docstring)."""

    __slots__ = (
        "_backlog",
        "_last",
        "_last_seq",
        "_pull",
        "buffer",
        "cancelled",
        "capacity",
        "conflate",
        "done",
        "error",
        "hint",
        "on_end",
        "pending",
        "start_seq",
        "wake",
    )

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        conflate: bool = False,
        pull: Callable[[], T | object] | None = None,
        wake: Callable[[], None] = _noop,
        on_end: Callable[[], None] = _noop,
        backlog: Callable[[], None] | None = None,
        last_seq: Callable[[], int | None] | None = None,
        hint: str = "re-read the state and subscribe again, or raise `buffer=`",
    ) -> None:
        self.capacity = capacity
        self.conflate = conflate
        self.wake = wake
        self.hint = hint  # what to do after an overflow, for its message
        self.buffer: deque[T] = deque()
        self.pending = False  # pull mode: the value changed since the consumer last took it
        self.done = False
        self.cancelled = False  # ended by the consumer: nothing more is delivered, not even the end
        self.error: BaseException | None = None
        self.start_seq = 0  # the last commit before the subscription (set by its producer)
        self._pull = pull
        self.on_end = on_end
        self._backlog = backlog
        self._last_seq = last_seq
        self._last: object = EMPTY  # conflating queues: the last item handed out

    # -- producer side -------------------------------------------------------------------

    def push(self, item: T) -> bool:
        """Queue one item; False if the queue ended instead. Never blocks, never raises."""
        if self.done:
            return False
        buf = self.buffer
        if self.conflate:
            buf.clear()
        elif len(buf) >= self.capacity:
            self._overflow()
            return False
        buf.append(item)
        if len(buf) == 1:
            self._wake()
        elif len(buf) * 2 > self.capacity and self._backlog is not None:
            self._backlog()
        return True

    def mark(self) -> None:
        """Pull mode: the value changed; the consumer computes it when it asks."""
        if not self.done and not self.pending:
            self.pending = True
            self._wake()

    def _overflow(self) -> None:
        buf = self.buffer
        if self._last_seq is not None:
            last = self._last_seq()
        else:
            last = getattr(buf[-1], "seq", None) if buf else None
        self.fail(
            SubscriberOverflowError(
                f"the subscriber fell {len(buf)} items behind (its buffer holds {self.capacity}) and was "
                f"unsubscribed after them; it received everything up to seq {last}, nothing after: {self.hint}",
                last_seq=last,
            )
        )

    def _wake(self) -> None:
        try:
            self.wake()
        except Exception as exc:
            # A consumer run inline (an Rx observer on an immediate scheduler) raised through
            # its own on_error: end its subscription, report it, and never fail the producer.
            self.cancel()
            _report(exc)

    def fail(self, exc: BaseException) -> None:
        """End with ``exc`` after the buffered items."""
        if not self.done:
            self.done = True
            self.error = exc
            self.on_end()
            self._wake()

    def finish(self) -> None:
        """End normally after the buffered items."""
        if not self.done:
            self.done = True
            self.on_end()
            self._wake()

    # -- consumer side -------------------------------------------------------------------

    def pop(self) -> T | object:
        """The next item, or ``EMPTY``."""
        buf = self.buffer
        while buf:
            item = buf.popleft()
            if self.conflate:
                if item == self._last:
                    continue
                self._last = item
            return item
        if self.pending:
            self.pending = False
            assert self._pull is not None
            return self._pull()
        return EMPTY

    @property
    def drained(self) -> bool:
        """Ended, and everything queued was handed out."""
        return self.done and not self.buffer and not self.pending

    def cancel(self) -> None:
        """Unsubscribe now, dropping whatever is queued (the consumer went away)."""
        self.cancelled = True
        self.buffer.clear()
        self.pending = False
        if not self.done:
            self.done = True
            self.on_end()


def _report(exc: BaseException) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - queues live on the loop
        return
    loop.call_exception_handler({"message": "a subscriber's consumer raised; its subscription ended", "exception": exc})
