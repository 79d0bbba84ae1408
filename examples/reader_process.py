"""Readers beside a running writer: one process writes, two reader processes follow it.

    python examples/reader_process.py

The layout of a multi-worker web app (docs/operations.md, "Readers beside a running
writer"): exactly one process opens the database for writing; every other worker opens it
``read_only=True``, which takes no lock, never blocks the writer, and follows the writer's
commits (every ``follow_interval``, or at once with ``await db.catch_up()``), publishing
them on its own change bus, so ``db.changes()`` and live queries work in the readers too.

* the writer adds orders and marks some paid;
* each reader keeps a live query ("unpaid orders, biggest first") and prints it whenever it
  changes, then checks that its final result is what the writer wrote;
* a second writer is refused with ``DatabaseLockedError`` naming the first one's PID.

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

from quanta import Index, PrimaryKey, desc

ORDERS = 30


@quanta.entity(name="ExampleOrder")
class Order:
    id: Annotated[int, PrimaryKey()]
    amount: int
    paid: Annotated[bool, Index()] = False


async def reader(path: str, name: str, ready: Any) -> None:
    async with quanta.open(path, entities=[Order], read_only=True, follow_interval=0.01) as db:
        orders = db.collection(Order)
        unpaid = orders.where(Order.paid == False).order_by(desc(Order.amount)).limit(3)  # noqa: E712
        frames = 0

        async def screen() -> None:
            nonlocal frames
            async for rows in unpaid.watch():
                frames += 1
                print(f"  [{name}] seq {db.seq}: top unpaid {[(o.id, o.amount) for o in rows]}", flush=True)
                ready.set()  # the first frame is on screen: tell the writer

        task = asyncio.create_task(screen())
        async for last in orders.watch_object(ORDERS):  # the writer's last order: it is done
            if last is not None:
                break
        await db.catch_up()
        await asyncio.sleep(0.1)
        task.cancel()
        expected = sorted(((i, i * 37 % 100) for i in range(1, ORDERS + 1) if i % 3), key=lambda o: o[1], reverse=True)[
            :3
        ]
        final = [(o.id, o.amount) for o in await unpaid.all()]
        assert final == expected, (final, expected)
        print(f"  [{name}] followed the writer to seq {db.seq} in {frames} redraws; result checked", flush=True)


def run_reader(path: str, name: str, ready: Any) -> None:
    asyncio.run(asyncio.wait_for(reader(path, name, ready), 60))


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "shop")
        async with quanta.open(path, entities=[Order]) as db:
            orders = db.collection(Order)
            await orders.put(Order(id=0, amount=0, paid=True))  # the schema exists for readers
            try:
                await quanta.open(path, lock_timeout=0.1)
            except quanta.DatabaseLockedError as exc:
                print(f"a second writer is refused: {exc}")
            ctx = multiprocessing.get_context("spawn")
            events = [ctx.Event() for _ in (1, 2)]
            readers = [ctx.Process(target=run_reader, args=(path, f"reader {n}", ev)) for n, ev in enumerate(events, 1)]
            for proc in readers:
                proc.start()
            for ev in events:  # both readers are open and watching
                assert await asyncio.to_thread(ev.wait, 60), "a reader did not start"
            print(f"writer: adding {ORDERS} orders, paying every third")
            for i in range(1, ORDERS + 1):
                await orders.put(Order(id=i, amount=i * 37 % 100, paid=i % 3 == 0))
                await asyncio.sleep(0.01)
            for proc in readers:
                await asyncio.to_thread(proc.join, 60)
                assert proc.exitcode == 0, f"a reader failed (exit {proc.exitcode})"
        print("done: one writer, two reader processes following it")


if __name__ == "__main__":
    asyncio.run(main())
