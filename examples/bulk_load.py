"""Bulk loading: 100,000 records with put_many, then reopen, verify and read the counters.

    python examples/bulk_load.py [RECORDS]

``put_many`` commits a whole list of pairs as one atomic batch: one WAL record, one fsync,
one memtable update, so the per-record cost is a few C-level list operations. Splitting the
load into batches of 10,000 (as here) bounds the memory of each batch and lets flushes start
while the load is still running; one batch of 100,000 works too (the limit is
``quanta.MAX_BATCH_BYTES``).

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

BATCH = 10_000


def record(i: int) -> tuple[bytes, bytes]:
    # Fixed-width decimal keys sort in numeric order; values are ~100 bytes.
    return b"order:%09d" % i, b'{"id": %d, "customer": "c%05d", "total": %d.%02d, "status": "shipped"}' % (
        i,
        i % 50_000,
        i % 997,
        i % 100,
    )


async def load(path: str, records: int) -> None:
    # A small memtable makes this run exercise flushes and compaction; the default is 16 MiB.
    async with quanta.open(path, memtable_bytes=4 << 20) as db:
        t0 = time.perf_counter()
        for start in range(0, records, BATCH):
            await db.kv.put_many([record(i) for i in range(start, min(start + BATCH, records))])
        elapsed = time.perf_counter() - t0
        print(f"loaded {records:,} records in {elapsed:.2f} s ({records / elapsed:,.0f} records/s)")
        s = await db.stats()
        print(
            f"  commits={s['commits']} syncs={s['syncs']} flushes={s['flushes']} "
            f"write_stalls={s['write_stalls']} memtable={s['memtable_entries']:,} entries"
        )
    # close() flushed the memtable and waited for background work: the WAL is empty now.

    t0 = time.perf_counter()
    async with quanta.open(path) as db:
        print(f"reopened in {(time.perf_counter() - t0) * 1e3:.1f} ms")

        # Point reads and a range scan on the reopened database.
        key, value = record(records // 2)
        assert await db.kv.get(key) == value
        first = [k async for k, _ in db.kv.scan(start=b"order:000050000", limit=3)]
        print("scan from order:000050000 ->", [k.decode() for k in first])

        # verify() reads every block of every live table from disk (not the cache) and
        # checks checksums, ordering and counts; it runs in a worker thread.
        t0 = time.perf_counter()
        result = await db.verify()
        print(
            f"verify: {result.tables} tables, {result.entries:,} entries in {(time.perf_counter() - t0) * 1e3:.0f} ms"
        )
        assert result.entries == records

        await db.compact()  # everything into the deepest non-empty level
        s = await db.stats()
        levels = ", ".join(
            f"L{lv['level']}: {lv['files']} files / {lv['bytes'] / 2**20:.1f} MiB" for lv in s["levels"] if lv["files"]
        )
        print(f"after compact: {levels}")
        print(
            f"  compactions={s['compactions']} trivial_moves={s['trivial_moves']} "
            f"block cache hits={s['block_cache']['hits']} misses={s['block_cache']['misses']}"
        )


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(prefix="quanta-bulk-") as tmp:
        asyncio.run(load(os.path.join(tmp, "db"), records))


if __name__ == "__main__":
    main()
