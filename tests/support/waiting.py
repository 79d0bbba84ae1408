"""A bounded wait for a condition that background work (a flush's file removal, a follower's
poll) makes true a moment later: it fails after ``within`` seconds instead of hanging, and it does
not assume the machine is quiet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    """Return once ``condition()`` is true; AssertionError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not true after {within} s: {what or condition}"
        await asyncio.sleep(0.005)
