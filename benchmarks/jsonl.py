"""Throughput and peak memory of the JSON Lines export and import (quanta/_transfer).

Usage: ``python benchmarks/jsonl.py [--count 1000000] [--cache-mib 64] [--dir DIR] [--keep]``

Fills a database with ``count`` records of a typical entity (an auto key, a unique email,
an indexed city, an int, a list of str, a datetime and an Any dict), then, each in its own
child process so that each peak RSS is its own: exports it (``db.export_jsonl``), imports the
file into an empty database (``db.import_jsonl``, both passes). Prints one JSON line per
phase: seconds, records/s, MB/s of the file and the child's peak RSS (``ru_maxrss``); the
fill's RSS is shown for scale (it holds one put_many batch at a time). The databases use
``durability="os"`` (an fsync per commit would measure the disk, not the transfer) and a block
cache of ``--cache-mib`` (the default 64 MiB; a scan of a large database fills it, so it is
part of every phase's peak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import quanta


@quanta.entity(name="BenchUser")
class User:
    id: int = quanta.auto()
    email: Annotated[str, quanta.Unique()] = ""
    name: str = ""
    city: Annotated[str, quanta.Index()] = ""
    age: int = 0
    tags: list[str] = quanta.field(default_factory=list)
    created: datetime | None = None
    meta: Any = None


BATCH = 10_000
CACHE = int(os.environ.get("QUANTA_BENCH_CACHE_MIB", "64")) << 20


async def fill(path: str, count: int) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    cities = ["Oslo", "Lyon", "Kyiv", "Lima", "Pune"]
    async with quanta.open(path, entities=[User], durability="os", block_cache_bytes=CACHE) as db:
        users = db.collection(User)
        for start in range(0, count, BATCH):
            await users.put_many(
                [
                    User(
                        email=f"user{i}@example.com",
                        name=f"User {i}",
                        city=cities[i % 5],
                        age=i % 90,
                        tags=["a", f"t{i % 7}"],
                        created=t0 + timedelta(seconds=i),
                        meta={"n": i, "ok": i % 2 == 0},
                    )
                    for i in range(start, min(start + BATCH, count))
                ]
            )


async def export(path: str, file: str) -> int:
    async with quanta.open(path, durability="os", block_cache_bytes=CACHE) as db:
        report = await db.export_jsonl(file)
    return report.total


async def import_(path: str, file: str) -> int:
    async with quanta.open(path, entities=[User], durability="os", block_cache_bytes=CACHE) as db:
        report = await db.import_jsonl(file)
    return report.total


def child(phase: str, path: str, file: str, count: int) -> None:
    start = time.perf_counter()
    if phase == "fill":
        asyncio.run(fill(path, count))
        n = count
    elif phase == "export":
        n = asyncio.run(export(path, file))
    else:
        n = asyncio.run(import_(path, file))
    seconds = time.perf_counter() - start
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    size = os.path.getsize(file) if os.path.exists(file) else 0
    print(
        json.dumps(
            {
                "phase": phase,
                "records": n,
                "seconds": round(seconds, 2),
                "records_per_s": round(n / seconds),
                "file_mb_per_s": round(size / seconds / 1e6, 1) if phase != "fill" else None,
                "file_bytes": size,
                "peak_rss_mib": round(rss_kib / 1024, 1),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="where the databases and the file go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the directory")
    parser.add_argument("--cache-mib", type=int, default=64, help="block cache of each database (MiB)")
    parser.add_argument("--child", nargs=4, metavar=("PHASE", "PATH", "FILE", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        phase, path, file, count = args.child
        child(phase, path, file, int(count))
        return
    root = args.dir or tempfile.mkdtemp(prefix="quanta-jsonl-bench-")
    os.makedirs(root, exist_ok=True)
    src, dst, file = os.path.join(root, "src"), os.path.join(root, "dst"), os.path.join(root, "export.jsonl")
    os.environ["QUANTA_BENCH_CACHE_MIB"] = str(args.cache_mib)
    try:
        for phase, path in (("fill", src), ("export", src), ("import", dst)):
            subprocess.run(
                [sys.executable, __file__, "--child", phase, path, file, str(args.count)], check=True, timeout=3600
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
