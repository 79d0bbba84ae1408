"""The key-value API in one page: put, get, delete, scan, batches and snapshots.

Run it from a checkout:

    python examples/kv_basics.py

It works in a temporary directory that is removed at the end (pass a directory as the first
argument to keep the database, for example ``python examples/kv_basics.py ./example-data``,
then look inside with ``python -m quanta stats ./example-data``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    # (the database's worker processes inherit this sys.path)
    _root = str(Path(__file__).resolve().parent.parent)
    sys.path.insert(0, _root)
    import quanta


async def tour(path: str) -> None:
    # `quanta.open` is both awaitable and an async context manager; the context manager
    # closes the database (flushing the memtable) on the way out, even on an exception.
    async with quanta.open(path) as db:
        # Keys and values are bytes. With the default durability="sync", put() returns
        # only after the write-ahead log record holding it has been fsynced.
        await db.kv.put(b"user:0001", b"Ann")
        await db.kv.put(b"user:0002", b"Bob")
        await db.kv.put(b"user:0003", b"Cy")
        await db.kv.put(b"config:theme", b"dark")

        print("get user:0002       ->", await db.kv.get(b"user:0002"))
        print("get user:9999       ->", await db.kv.get(b"user:9999"))  # absent: None
        print("get_many            ->", await db.kv.get_many([b"user:0001", b"nope", b"config:theme"]))

        await db.kv.delete(b"user:0003")
        print("after delete        ->", await db.kv.get(b"user:0003"))

        # Scans: [start, stop) in key order, or every key with a prefix; reverse and limit.
        print("scan prefix user:   ->", [(k, v) async for k, v in db.kv.scan(prefix=b"user:")])
        print("scan reverse, 1     ->", [k async for k, _ in db.kv.scan(reverse=True, limit=1)])
        print("scan [a, d)         ->", [k async for k, _ in db.kv.scan(b"a", b"d")])

        # put_many: many pairs in one atomic, durable batch (one WAL record, one fsync).
        await db.kv.put_many([(b"item:%03d" % i, b"%d" % (i * i)) for i in range(100)])
        count = 0
        async for _ in db.kv.scan(prefix=b"item:"):
            count += 1
        print("items after put_many ->", count)

        # A batch mixes puts and deletes and commits them atomically: a reader sees all of
        # them or none. Later operations on the same key win.
        batch = db.kv.batch()
        batch.put(b"user:0004", b"Dee").delete(b"user:0001").put(b"config:theme", b"light")
        await batch.commit()
        print("after batch         ->", [(k, v) async for k, v in db.kv.scan(prefix=b"user:")])

        # A snapshot is a consistent, read-only view as of the moment it was taken.
        async with db.snapshot() as snap:
            await db.kv.put(b"config:theme", b"solarized")
            print("snapshot sees       ->", await snap.kv.get(b"config:theme"))
            print("database sees       ->", await db.kv.get(b"config:theme"))

        # Bad input is rejected before anything is written, with a quanta error.
        try:
            await db.kv.put("not bytes", b"x")  # type: ignore[arg-type]
        except quanta.InvalidTypeError as exc:
            print("rejected            ->", type(exc).__name__ + ":", exc)

        # Write the memtable to a table file, then look at the counters.
        await db.flush()
        stats = await db.stats()
        print(
            f"stats               -> last_seq={stats['last_seq']} commits={stats['commits']} "
            f"table_files={stats['table_files']} flushes={stats['flushes']}"
        )

    # Reopen: everything written is still there.
    async with quanta.open(path) as db:
        print("reopened, theme     ->", await db.kv.get(b"config:theme"))


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(tour(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory(prefix="quanta-example-") as tmp:
        asyncio.run(tour(os.path.join(tmp, "db")))


if __name__ == "__main__":
    main()
