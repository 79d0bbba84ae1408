"""Group commit: many asyncio tasks writing durably at once share fsyncs.

    python examples/concurrent_writers.py

With ``durability="sync"`` (the default) a write returns only after an fsync covering its
WAL record has completed. A lone writer pays one fsync per commit. When many tasks write at
once, the engine appends each batch to the WAL in sequence order and runs *one* fsync, in a
worker thread, for every batch appended before that fsync started; batches that arrive
while it runs form the next group. So ``stats()["syncs"]`` grows much more slowly than
``stats()["commits"]``: that ratio is the group-commit factor.

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    # (the database's worker processes inherit this sys.path)
    _root = str(Path(__file__).resolve().parent.parent)
    sys.path.insert(0, _root)
    import quanta

WRITES_PER_TASK = 50


async def writer(db: quanta.Database, task_id: int) -> None:
    for i in range(WRITES_PER_TASK):
        # Each put is its own atomic, durable commit.
        await db.kv.put(b"task:%03d:%04d" % (task_id, i), b"payload from task %d" % task_id)


async def run(db: quanta.Database, tasks: int) -> None:
    before = await db.stats()
    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for t in range(tasks):
            tg.create_task(writer(db, t))
    elapsed = time.perf_counter() - t0
    after = await db.stats()
    commits = after["commits"] - before["commits"]
    syncs = after["syncs"] - before["syncs"]
    ratio = f"{commits / syncs:6.1f} commits per fsync" if syncs else "no fsync at all    "
    print(
        f"{tasks:4d} concurrent writers: {commits:6,} commits, {syncs:4,} fsyncs ({ratio}), "
        f"{commits / elapsed:8,.0f} commits/s"
    )


async def main_async(path: str) -> None:
    async with quanta.open(path, durability="sync") as db:
        for tasks in (1, 10, 100, 500):
            await run(db, tasks)
        # Every acknowledged write is readable (and durable).
        n = 0
        async for _ in db.kv.scan(prefix=b"task:"):
            n += 1
        print(f"keys written: {n:,}")

    # For comparison: durability="os" hands writes to the OS without an fsync (safe against
    # a process crash, not against a power loss or kernel crash), so there are no syncs.
    async with quanta.open(path, durability="os") as db:
        await run(db, 100)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="quanta-group-commit-") as tmp:
        asyncio.run(main_async(os.path.join(tmp, "db")))


if __name__ == "__main__":
    main()
