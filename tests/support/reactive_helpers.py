"""Helpers shared by the change-bus and watch tests: bounded waits on async iterators and an
Rx observer that records what it receives. Every wait fails after TIMEOUT instead of hanging."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import quanta
from quanta._storage.vfs import MemoryFileSystem, Op

T = TypeVar("T")

#: A delivery that has not happened after this long is a hang, not a slow machine.
TIMEOUT = 30.0


async def take(stream: AsyncIterator[T], n: int) -> list[T]:
    """The next ``n`` items of ``stream`` (fails, rather than hangs, if they do not come)."""

    async def go() -> list[T]:
        return [await anext(stream) for _ in range(n)]

    return await asyncio.wait_for(go(), TIMEOUT)


async def rest(stream: AsyncIterator[T]) -> list[T]:
    """Every item until the stream ends (fails if it does not end)."""

    async def go() -> list[T]:
        return [item async for item in stream]

    return await asyncio.wait_for(go(), TIMEOUT)


class Recorder:
    """An Rx observer that writes down what it receives."""

    def __init__(self, on_item: Callable[[Any], None] | None = None) -> None:
        self.items: list[Any] = []
        self.error: Exception | None = None
        self.completed = False
        self._on_item = on_item
        self._poke = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self.completed or self.error is not None

    def on_next(self, item: Any) -> None:
        assert not self.ended, "on_next after the end"
        if self._on_item is not None:
            self._on_item(item)
        self.items.append(item)
        self._poke.set()

    def on_error(self, error: Exception) -> None:
        assert not self.ended, "a second terminal notification"
        self.error = error
        self._poke.set()

    def on_completed(self) -> None:
        assert not self.ended, "a second terminal notification"
        self.completed = True
        self._poke.set()

    async def _wait(self, condition: Callable[[], bool]) -> None:
        async def go() -> None:
            while not condition():
                self._poke.clear()
                await self._poke.wait()

        await asyncio.wait_for(go(), TIMEOUT)

    async def until(self, n: int) -> None:
        """Wait until ``n`` items arrived or the subscription ended (fails after TIMEOUT)."""
        await self._wait(lambda: len(self.items) >= n or self.ended)

    async def until_ended(self) -> None:
        await self._wait(lambda: self.ended)


async def subscribers(db: quanta.Database) -> int:
    return int((await db.stats())["change_subscribers"])


class SyncFails(MemoryFileSystem):
    """A memory file system whose fsyncs of the first WAL segment (the one commits go to in a
    new database) fail with EIO once ``failing`` is set. The spare segment the background
    makes is left alone, so the failure is always the commit's."""

    def __init__(self) -> None:
        super().__init__(fail_hook=self._hook)
        self.failing = False
        self.first_wal: str | None = None

    def _hook(self, op: Op) -> None:
        if op.kind == "create" and op.path.endswith(".wal") and self.first_wal is None:
            self.first_wal = op.path
        if self.failing and op.kind == "sync" and op.path == self.first_wal:
            raise quanta.StorageIOError(f"sync failed for {op.path} (injected)", errno=errno.EIO, path=op.path)
