"""The change bus: follow commits as an async iterator, as an Rx Observable, per key, and
watch the engine's background work.

    python examples/live_changes.py

* an ``async for`` consumer follows every change under ``order:`` and keeps a running total;
* a reactivex pipeline counts deletes across the whole database;
* ``db.kv.watch`` follows one key's value (latest-value semantics);
* ``db.events()`` reports the flushes and compactions the write load causes.

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from reactivex import operators as ops

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

ORDERS = 300


async def follow_orders(stream: quanta.Watch[quanta.ChangeSet]) -> tuple[int, int]:
    """Keep the sum of all order amounts up to date from the changes alone."""
    total = seen = 0
    async for change_set in stream:  # ends when the database closes
        for change in change_set.changes:
            total -= int(change.old_value or b"0")  # with_old=True: the value it replaced
            total += int(change.value or b"0")
        seen += 1
    return seen, total


async def follow_status(db: quanta.Database, out: list[bytes | None]) -> None:
    async for value in db.kv.watch(b"status"):  # the current value first, then each new one
        out.append(value)
        if value == b"done":
            return


async def follow_events(db: quanta.Database, out: list[quanta.SystemEvent]) -> None:
    async for event in db.events():
        out.append(event)


def changes_of(change_set: quanta.ChangeSet) -> tuple[quanta.Change, ...]:
    return change_set.changes


def is_delete(change: quanta.Change) -> bool:
    return change.kind == "delete"


async def main_async(path: str) -> None:
    # A small memtable, so that this little load causes flushes and compactions to watch.
    async with quanta.open(path, durability="os", memtable_bytes=64 << 10, l0_compaction_trigger=2) as db:
        orders = asyncio.create_task(follow_orders(db.changes(prefix=b"order:", with_old=True)))
        statuses: list[bytes | None] = []
        status = asyncio.create_task(follow_status(db, statuses))
        events: list[quanta.SystemEvent] = []
        background = asyncio.create_task(follow_events(db, events))
        deletes: list[int] = []
        deleted = db.observe().pipe(
            ops.flat_map(changes_of),
            ops.count(is_delete),  # the changes that are deletes
        )
        deleted.subscribe(deletes.append)  # count() emits once, when the database closes
        await asyncio.sleep(0)

        await db.kv.put(b"status", b"loading")
        for i in range(ORDERS):
            await db.kv.put(b"order:%05d" % i, b"%d" % (i % 50))
            await db.kv.put(b"blob:%05d" % i, os.urandom(512))  # filler: not an order
        async with db.transaction() as tx:  # one atomic change set: a refund and a cancellation
            await tx.kv.put(b"order:00007", b"0")
            await tx.kv.delete(b"order:00008")
        await db.kv.put(b"status", b"loading")  # the same value: a watch emits nothing
        await db.kv.put(b"status", b"done")
        await db.compact()
        expected = sum([int(v) async for _, v in db.kv.scan(prefix=b"order:")])
        await status
    # Closing the database completed every subscription.
    seen, total = await orders
    background.cancel()
    print(f"order change sets seen: {seen}, running total {total} (a fresh scan says {expected})")
    assert total == expected
    print(f"status values watched: {statuses}")
    print(f"deletes counted by the Rx pipeline: {deletes}")
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
    print(f"system events: {kinds}")
    flushed = [e for e in events if e.kind == "flush_finished"]
    if flushed:
        e = flushed[-1]
        print(f"last flush: {e.entries} entries -> tables {list(e.output_files)}, {e.duration * 1000:.1f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="quanta-changes-") as tmp:
        asyncio.run(main_async(os.path.join(tmp, "db")))


if __name__ == "__main__":
    main()
