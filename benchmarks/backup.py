"""Online backup: how long it takes, and what it costs the writers and the event loop.

Builds a database of ``--mb`` MiB (random 100-byte values under 16-byte keys, loaded with
``put_many`` and compacted), then runs, for ``--seconds`` each, a writer task committing
single puts (``durability="sync"``) and an event-loop lag probe (``asyncio.sleep(0.001)``
and how late it wakes):

1. *baseline*: nothing else running;
2. *full_backup*: full backups into an emptied DEST, one after another until the phase ends;
3. *incremental_backup*: a flush (one new table) then an incremental backup into DEST, again
   and again.

It prints one row per phase: commits, p50/p99/max commit latency and max loop lag (for the
backup phases, only those measured while a backup ran), and the last backup's duration
(``backup_s``; ``backup_s_max`` the slowest) and how it placed the tables. ``--dest`` on another file system (for
example ``/dev/shm/...``) makes the tables copies instead of hard links.

    python benchmarks/backup.py --mb 200 [--dir /tmp/qbench] [--dest /dev/shm/qbackup] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import quanta


async def load(db: quanta.Database, mb: int) -> int:
    value_size, batch = 100, 20_000
    n = (mb << 20) // (value_size + 16)
    rnd = os.urandom
    for start in range(0, n, batch):
        await db.kv.put_many((b"key:%012d" % i, rnd(value_size)) for i in range(start, min(n, start + batch)))
    await db.compact()
    return n


async def measure(db: quanta.Database, seconds: float, work: Any = None) -> dict[str, Any]:
    """Commit latencies and loop lags over ``seconds``; with ``work`` (an async function
    returning a dict, run again and again until the time is up), only those measured while
    a ``work`` call ran count."""
    latencies: list[tuple[float, float]] = []  # (end time, latency)
    lags: list[tuple[float, float]] = []
    windows: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            await db.kv.put(b"hot:%08d" % (i % 10_000), b"v" * 100)
            now = time.perf_counter()
            latencies.append((now, now - t))
            i += 1

    async def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            lags.append((now, now - t - 0.001))

    tasks = [asyncio.create_task(writer()), asyncio.create_task(probe())]
    extra: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    await asyncio.sleep(0.2)
    while work is not None and time.perf_counter() - started < seconds:
        t = time.perf_counter()
        runs.append(await work())
        windows.append((t, time.perf_counter()))
    remaining = seconds - (time.perf_counter() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
    stop.set()
    await asyncio.gather(*tasks)

    def inside(t: float) -> bool:
        return work is None or any(a <= t <= b for a, b in windows)

    lat = sorted(x for t, x in latencies if inside(t))
    lag = [x for t, x in lags if inside(t)]
    if runs:
        extra = {**runs[-1], "runs": len(runs), "backup_s_max": max(r["backup_s"] for r in runs)}
    return {
        "commits": len(lat),
        "p50_ms": round(statistics.median(lat) * 1e3, 3) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 3) if lat else None,
        "max_ms": round(lat[-1] * 1e3, 3) if lat else None,
        "loop_lag_max_ms": round(max(lag) * 1e3, 3) if lag else None,
        **extra,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="database size in MiB (the issue asks for 1024)")
    parser.add_argument("--dir", default=None, help="where to build the database (default: a temp dir)")
    parser.add_argument("--dest", default=None, help="the backup directory (default: beside the database)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="quanta-backup-bench-")
    src = os.path.join(base, "db")
    dest = args.dest or os.path.join(base, "backup")
    for path in (src, dest):
        shutil.rmtree(path, ignore_errors=True)
    rows: dict[str, Any] = {"mb": args.mb, "src": src, "dest": dest}
    try:
        async with quanta.open(src) as db:
            t = time.perf_counter()
            rows["keys"] = await load(db, args.mb)
            rows["load_s"] = round(time.perf_counter() - t, 1)
            stats = await db.stats()
            rows["live_table_mib"] = round(stats["live_table_bytes"] / (1 << 20), 1)
            rows["baseline"] = await measure(db, args.seconds)

            async def full() -> dict[str, Any]:
                await asyncio.to_thread(shutil.rmtree, dest, True)
                info = await db.backup(dest)
                return {
                    "backup_s": round(info.seconds, 3),
                    "tables": info.tables,
                    "linked": info.linked,
                    "copied": info.copied,
                    "backup_mib": round(info.bytes / (1 << 20), 1),
                }

            rows["full_backup"] = await measure(db, args.seconds, full)

            async def incremental() -> dict[str, Any]:
                await db.flush()  # a new table since the last backup
                info = await db.backup(dest)
                return {"backup_s": round(info.seconds, 3), "reused": info.reused, "new": info.linked + info.copied}

            rows["incremental_backup"] = await measure(db, args.seconds, incremental)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
        if args.dest is not None:
            shutil.rmtree(dest, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"database {rows['mb']} MiB requested, {rows['keys']:,} keys, {rows['live_table_mib']} MiB of tables")
    for phase in ("baseline", "full_backup", "incremental_backup"):
        print(f"{phase:<20} {json.dumps(rows[phase])}")


if __name__ == "__main__":
    asyncio.run(main())
