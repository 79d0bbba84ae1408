"""Readers beside a running writer: how soon a reader process's live query sees a commit, and
what reader processes cost the writer.

    python benchmarks/readers.py [--commits 2000] [--interval 0.01] [--throughput-ops 20000]

Two measurements, each with real processes (readers are child interpreters):

* **lag**: the writer commits one ``Tick`` entity every 2 ms, stamped with
  ``time.monotonic_ns()`` (one clock for every process on the machine); each of 4 reader
  processes holds a live query (``where(Tick.lane == 0).watch_diff()``) and records, for every
  inserted or modified row it is told about, now minus the stamp: commit in the writer to
  emission in the reader. p50/p99/max over all readers. The reader's ``follow_interval``
  (``--interval``) bounds it: a commit waits on average half an interval for the next look.
* **writer cost**: the writer puts ``--throughput-ops`` entities as fast as it can
  (``durability="os"``), with 0 and then with 4 reader processes following it (each with a
  live query and a ``db.changes()`` consumer); ops/s and the ratio.

Not part of ``run.py``'s suite yet (no anchor runs this workload); the figures go in the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

from quanta import Index, PrimaryKey


@quanta.entity(name="BenchTick")
class Tick:
    id: Annotated[int, PrimaryKey()]
    lane: Annotated[int, Index()] = 0
    stamp: int = 0


async def reader(path: str, interval: float, stop_id: int) -> None:
    async with quanta.open(path, entities=[Tick], read_only=True, follow_interval=interval) as db:
        ticks = db.collection(Tick)
        lags: list[int] = []
        changes = db.changes()
        print("ready", flush=True)

        async def drain() -> None:
            async for _ in changes:
                pass

        drainer = asyncio.create_task(drain())
        first = True
        async for diff in ticks.where(Tick.lane == 0).watch_diff():
            now = time.monotonic_ns()
            rows = [o for _, o in diff.inserted] + [o for _, o in diff.modified] + [o for _, _, o in diff.moved]
            if not first:  # the first diff is the result at subscription
                lags += [now - r.stamp for r in rows if r.stamp]
            first = False
            if any(r.id == stop_id for r in rows):
                break
        drainer.cancel()
        await changes.aclose()
        print(json.dumps({"lags": lags, "cpu": time.process_time()}), flush=True)


def start_readers(path: str, n: int, interval: float, stop_id: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--reader", path, str(interval), str(stop_id)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return procs


def collect(procs: list[subprocess.Popen[str]]) -> tuple[list[int], float]:
    """Every reader's lags, and the CPU seconds the readers used in all."""
    lags: list[int] = []
    cpu = 0.0
    for p in procs:
        assert p.stdout is not None
        out = json.loads(p.stdout.readline())
        lags += out["lags"]
        cpu += out["cpu"]
        p.wait(timeout=120)
    return lags, cpu


async def lag_run(path: str, commits: int, interval: float) -> dict[str, float]:
    async with quanta.open(path, entities=[Tick], durability="os") as db:
        ticks = db.collection(Tick)
        await ticks.put(Tick(id=0, lane=1))
        stop_id = 10**9
        procs = await asyncio.to_thread(start_readers, path, 4, interval, stop_id)
        for i in range(1, commits + 1):
            await ticks.put(Tick(id=i % 200, lane=0, stamp=time.monotonic_ns()))
            await asyncio.sleep(0.002)
        await ticks.put(Tick(id=stop_id, lane=0, stamp=time.monotonic_ns()))
        lags = sorted((await asyncio.to_thread(collect, procs))[0])
    ms = [x / 1e6 for x in lags]
    return {
        "samples": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(len(ms) * 0.99) - 1],
        "max_ms": ms[-1],
    }


async def throughput_run(path: str, ops: int, readers: int, interval: float) -> tuple[float, float]:
    """Writer puts/s, and the readers' CPU seconds per writer commit (all readers together)."""
    async with quanta.open(path, entities=[Tick], durability="os") as db:
        ticks = db.collection(Tick)
        await ticks.put(Tick(id=0, lane=1))
        stop_id = 10**9
        procs = await asyncio.to_thread(start_readers, path, readers, interval, stop_id)
        t = time.perf_counter()
        for i in range(1, ops + 1):
            await ticks.put(Tick(id=i % 5000, lane=i % 2, stamp=0))
        elapsed = time.perf_counter() - t
        await ticks.put(Tick(id=stop_id, lane=0, stamp=time.monotonic_ns()))
        _, cpu = await asyncio.to_thread(collect, procs)
    return ops / elapsed, cpu / ops


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lag = await lag_run(os.path.join(tmp, "lag"), args.commits, args.interval)
        print(f"lag, 4 reader processes, follow_interval={args.interval}: {json.dumps(lag)}")
        base, _ = await throughput_run(os.path.join(tmp, "t0"), args.throughput_ops, 0, args.interval)
        with_readers, cpu = await throughput_run(os.path.join(tmp, "t4"), args.throughput_ops, 4, args.interval)
        print(
            f"writer throughput: {base:,.0f} puts/s alone, {with_readers:,.0f} with 4 readers "
            f"({(1 - with_readers / base) * 100:+.1f}% cost); readers' CPU per writer commit, "
            f"4 readers together: {cpu * 1e6:.0f} us; cores: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        asyncio.run(reader(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--commits", type=int, default=2000)
        parser.add_argument("--interval", type=float, default=0.01)
        parser.add_argument("--throughput-ops", type=int, default=20000)
        asyncio.run(main(parser.parse_args()))
