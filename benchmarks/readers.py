"""Readers beside a running writer: how soon a reader process's live query sees a commit, and
what reader processes cost the writer.

    python benchmarks/readers.py [--commits 2000] [--interval 0.01] [--throughput-ops 20000]
    python benchmarks/readers.py --breakdown [--throughput-ops 10000]

The ``ops_reader_lag`` and ``ops_reader_cost`` rows of ``run.py`` run the same measurements
(with a sqlite3 anchor: reader processes polling ``PRAGMA data_version``); this script is the
QuantaDB-only form with adjustable sizes, on the suite's code (``ops_model.py``,
``ops_quanta.py``). Two measurements, each with real processes (readers are child
interpreters, ``python ops_model.py reader quanta ...``):

* **lag**: the writer commits one ``Tick`` entity every 2 ms, stamped with
  ``time.monotonic_ns()`` (one clock for every process on the machine); each of 4 reader
  processes holds a live query (``where(Tick.lane == 0).watch_diff()``) and records, for every
  inserted or modified row it is told about, now minus the stamp: commit in the writer to
  emission in the reader. p50/p99/max over all readers. The reader's ``follow_interval``
  (``--interval``) bounds it: a commit waits on average half an interval for the next look.
* **writer cost**: the writer puts ``--throughput-ops`` entities as fast as it can
  (``durability="os"``), with 0 and then with 4 reader processes following it (each with a
  live query and a ``db.changes()`` consumer); ops/s and the ratio.
* ``--breakdown``: instead, what one reader process costs per writer commit (its CPU after
  it was ready, over the writer's puts) by what it holds: nothing (it only follows), a
  ``db.changes()`` consumer, the live query, both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import ops_quanta  # noqa: E402


async def breakdown(args: argparse.Namespace) -> None:
    ops = args.throughput_ops
    with tempfile.TemporaryDirectory() as tmp:
        for kind in (*ops_quanta.READER_KINDS[1:], "both"):
            puts, cpu = await ops_quanta.throughput_run(os.path.join(tmp, kind), ops, 1, args.interval, kind)
            print(f"one reader holding {kind!r:10}: {cpu * 1e6:5.1f} us of its CPU per writer commit", end="")
            print(f" (writer {puts:,.0f} puts/s)")
        print(f"cores: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")


async def main(args: argparse.Namespace) -> None:
    if args.breakdown:
        await breakdown(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        lag = await ops_quanta.lag_run(os.path.join(tmp, "lag"), args.commits, args.interval)
        print(f"lag, 4 reader processes, follow_interval={args.interval}: {json.dumps(lag)}")
        ops = args.throughput_ops
        base, _ = await ops_quanta.throughput_run(os.path.join(tmp, "t0"), ops, 0, args.interval)
        with_readers, cpu = await ops_quanta.throughput_run(os.path.join(tmp, "t4"), ops, 4, args.interval)
        print(
            f"writer throughput: {base:,.0f} puts/s alone, {with_readers:,.0f} with 4 readers "
            f"({(1 - with_readers / base) * 100:+.1f}% cost); readers' CPU per writer commit, "
            f"4 readers together: {cpu * 1e6:.0f} us; cores: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--throughput-ops", type=int, default=20000)
    parser.add_argument("--breakdown", action="store_true", help="one reader's CPU per commit by what it holds")
    asyncio.run(main(parser.parse_args()))
