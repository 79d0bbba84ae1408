"""A bounded wait for a condition that background work (a flush's file removal, a follower's
poll) makes true a moment later: it fails after ``within`` seconds instead of hanging, and it does
not assume the machine is quiet."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    """Return once ``condition()`` is true; AssertionError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not true after {within} s: {what or condition}"
        await asyncio.sleep(0.005)


class ThreadGate:
    """Holds a worker thread at a point of the test's choosing: the thread calls
    :meth:`block` (it waits until :meth:`open`), the test awaits :meth:`reached`, changes
    things, then opens the gate. Both waits are bounded."""

    def __init__(self, within: float = 20.0) -> None:
        self._reached, self._open = threading.Event(), threading.Event()
        self._within = within

    def block(self) -> None:
        self._reached.set()
        assert self._open.wait(self._within), "the gate was never opened"

    async def reached(self) -> None:
        assert await asyncio.to_thread(self._reached.wait, self._within), "the thread never reached the gate"

    def open(self) -> None:
        self._open.set()
