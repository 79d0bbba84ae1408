"""QuantaDB's side of the operations rows (issue 14), and the code the standalone scripts run.

Groups (see ``workloads.py`` for the rows, ``ops_model.py`` for what the anchors share):

- ``ops_backup``: a database of ``ops_backup_mib`` MiB (``kv.put_many`` batches, then
  ``compact()``; default options, ``durability="sync"``), a writer task committing single puts
  and a loop-lag probe throughout; 1 s without a backup (baseline), then ``ops_backup_runs``
  ``await db.backup(dest)`` into an emptied directory beside the database (tables hard-linked),
  then as many into ``/dev/shm`` (another file system: every table copied). The last backup of
  each phase is opened and must hold every loaded key.
- ``ops_transfer``: ``ops_users`` ``BenchUser`` records (``durability="os"``, block cache 64 MiB);
  ``export_jsonl`` and ``import_jsonl`` (into an empty database) each in its own child process
  (peak RSS is that phase's); then ``db.repair()`` (rebuilds the unique ``email`` and the
  ``city`` index) in the trial process.
- ``ops_readers``: the writer (``durability="os"``) and 4 reader processes
  (``read_only=True, follow_interval=ops_follow_interval``). Lag: a ``Tick`` committed every
  2 ms, stamped with ``time.monotonic_ns()``; each reader's live query records emission time
  minus stamp. Writer cost: ``ops_reader_ops`` puts as fast as the writer can, with 0 and
  with 4 readers (each with a live query and a ``db.changes()`` consumer).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from datetime import datetime
from typing import Annotated, Any

import ops_model as om
from _harness import Trial

import quanta
from quanta import Index, PrimaryKey

CACHE = 64 << 20


# ------------------------------------------------------------------------------------- backup


async def load_backup_db(db: quanta.Database, mib: int, seed: int = 42) -> int:
    """Fill ``db`` with ``ops_model.backup_batches(mib)`` and compact it; the key count."""
    n = 0
    for batch in om.backup_batches(mib, seed):
        await db.kv.put_many(batch)
        n += len(batch)
    await db.compact()
    return n


async def backup_into(db: quanta.Database, dest: str) -> dict[str, Any]:
    """One full backup into an emptied ``dest``; its ``BackupInfo`` as a dict."""
    await asyncio.to_thread(shutil.rmtree, dest, True)
    info = await db.backup(dest)
    return {
        "bytes": info.bytes,
        "seconds": info.seconds,
        "tables": info.tables,
        "linked": info.linked,
        "copied": info.copied,
    }


async def count_backup(dest: str) -> int:
    """Open a backup and count the loaded keys it holds."""
    async with quanta.open(dest) as copy:
        n = 0
        async for _ in copy.kv.scan(prefix=b"key:"):
            n += 1
    return n


async def _backup(trial: Trial) -> dict[str, Any]:
    p = trial.params
    out: dict[str, Any] = {}
    async with quanta.open(trial.fresh_dir("quanta") / "db", durability="sync") as db:
        t = time.perf_counter()
        n = await load_backup_db(db, p["ops_backup_mib"], trial.seed)
        load_s = time.perf_counter() - t

        async def commit(i: int) -> None:
            await db.kv.put(om.hot_key(i), om.HOT_VALUE)

        baseline = await om.measure_async(commit, None, seconds=p["ops_baseline_s"])
        with om.backup_dests(trial.workloads, trial.workdir) as phases:
            for rows, dest in phases:
                d = await om.measure_async(commit, lambda dest=dest: backup_into(db, dest), runs=p["ops_backup_runs"])
                m = om.during_metrics(d, baseline)
                m.update(keys=n, bad_backups=int(await count_backup(dest) != n), load_s=load_s)
                out.update(dict.fromkeys(rows, m))
    return out


# ----------------------------------------------------------------------------------- transfer


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


FILL_BATCH = 10_000


async def fill(path: str, count: int, cache: int = CACHE) -> None:
    """``count`` users (``ops_model.user_record``), ``put_many`` batches of 10,000."""
    async with quanta.open(path, entities=[User], durability="os", block_cache_bytes=cache) as db:
        users = db.collection(User)
        for start in range(0, count, FILL_BATCH):
            await users.put_many([User(**om.user_record(i)) for i in range(start, min(start + FILL_BATCH, count))])


async def export(path: str, file: str, cache: int = CACHE) -> int:
    async with quanta.open(path, durability="os", block_cache_bytes=cache) as db:
        report = await db.export_jsonl(file)
    return report.total


async def import_(path: str, file: str, cache: int = CACHE) -> int:
    """Import ``file`` into the (empty) database at ``path``; the users it then holds."""
    async with quanta.open(path, entities=[User], durability="os", block_cache_bytes=cache) as db:
        report = await db.import_jsonl(file)
        stored = await db.collection(User).count()
    if stored != report.total:
        raise RuntimeError(f"import reported {report.total} records but the database holds {stored}")
    return stored


def transfer_phase(phase: str, path: str, file: str, count: int) -> int:
    """One phase in a child process (``ops_model.transfer_child``); records handled."""
    cache = int(os.environ.get("QUANTA_BENCH_CACHE_MIB", "64")) << 20
    if phase == "fill":
        asyncio.run(fill(path, count, cache))
        return count
    if phase == "export":
        return asyncio.run(export(path, file, cache))
    if phase == "import":
        return asyncio.run(import_(path, file, cache))
    raise ValueError(f"unknown phase {phase!r}")


async def _transfer(trial: Trial) -> dict[str, Any]:
    n = trial.params["ops_users"]
    wl = set(trial.workloads)
    root = trial.fresh_dir("quanta")
    src, dst, file = str(root / "src"), str(root / "dst"), str(root / "export.jsonl")
    t = time.perf_counter()
    await fill(src, n)
    out: dict[str, Any] = {"_info": {"fill_s": time.perf_counter() - t}}
    if wl & {"ops_export", "ops_export_rss", "ops_import", "ops_import_rss"}:
        exp = await asyncio.to_thread(om.run_transfer, "quanta", "export", src, file, n)
        out["ops_export"] = out["ops_export_rss"] = exp
        if wl & {"ops_import", "ops_import_rss"}:
            imp = await asyncio.to_thread(om.run_transfer, "quanta", "import", dst, file, n)
            out["ops_import"] = out["ops_import_rss"] = imp
    if "ops_repair" in wl:
        async with quanta.open(src, entities=[User], durability="os", block_cache_bytes=CACHE) as db:
            t = time.perf_counter()
            report = await db.repair()
            seconds = time.perf_counter() - t
        out["ops_repair"] = {
            "records_per_s": report.records / seconds,
            "seconds": seconds,
            "records": report.records,
            "entries": report.entries,
            "indexes": len(report.indexes),
        }
    return out


# ------------------------------------------------------------------------------------ readers


@quanta.entity(name="BenchTick")
class Tick:
    id: Annotated[int, PrimaryKey()]
    lane: Annotated[int, Index()] = 0
    stamp: int = 0


READER_STOP = 10**9
LAG_GAP_S = 0.002


READER_KINDS = ("both", "follow", "changes", "live")
"""What a reader process holds: ``both`` (the suite's readers: a live query and a
``db.changes()`` consumer), ``follow`` (nothing: it only follows), ``changes`` or ``live``."""


async def reader(path: str, interval: float, stop_id: int, kind: str = "both") -> None:
    """A reader process: a live query on lane 0 and a ``db.changes()`` consumer (``kind``:
    see :data:`READER_KINDS`); prints ``ready``, then, after it saw row ``stop_id``,
    ``{"lags": [...], "cpu": s, "seen": n}``."""
    import json

    async with quanta.open(path, entities=[Tick], read_only=True, follow_interval=interval) as db:
        ticks = db.collection(Tick)
        lags: list[int] = []
        seen = 0
        changes = db.changes() if kind in ("both", "changes") else None
        cpu0 = time.process_time()  # the CPU spent following, not starting
        print("ready", flush=True)

        async def drain() -> None:
            assert changes is not None
            async for _ in changes:
                pass

        drainer = asyncio.create_task(drain()) if changes is not None else None
        if kind in ("both", "live"):
            first = True
            async for diff in ticks.where(Tick.lane == 0).watch_diff():
                now = time.monotonic_ns()
                rows = [o for _, o in diff.inserted] + [o for _, o in diff.modified] + [o for _, _, o in diff.moved]
                if not first:  # the first diff is the result at subscription
                    lags += [now - r.stamp for r in rows if r.stamp and r.id != stop_id]
                    seen += sum(1 for r in rows if r.id != stop_id)
                first = False
                if any(r.id == stop_id for r in rows):
                    break
        else:
            # Polled, not watched: a subscription is what this kind must not hold.
            while await ticks.get(stop_id) is None:  # noqa: ASYNC110
                await asyncio.sleep(interval)
        if drainer is not None and changes is not None:
            drainer.cancel()
            await changes.aclose()
        print(json.dumps({"lags": lags, "cpu": time.process_time() - cpu0, "seen": seen}), flush=True)


async def lag_run(path: str, commits: int, interval: float, readers: int = 4) -> dict[str, Any]:
    """Commit -> live-query emission in ``readers`` reader processes (``ops_model.lag_metrics``)."""
    async with quanta.open(path, entities=[Tick], durability="os") as db:
        ticks = db.collection(Tick)
        await ticks.put(Tick(id=0, lane=1))
        procs = await asyncio.to_thread(om.start_readers, "quanta", path, readers, interval, READER_STOP)
        for i in range(1, commits + 1):
            await ticks.put(Tick(id=i % 200, lane=0, stamp=time.monotonic_ns()))
            await asyncio.sleep(LAG_GAP_S)
        await ticks.put(Tick(id=READER_STOP, lane=0, stamp=time.monotonic_ns()))
        lags, _cpu, seen = await asyncio.to_thread(om.collect_readers, procs)
    return {**om.lag_metrics(lags), "readers": len(procs), "seen": seen, "commits": commits}


async def throughput_run(path: str, ops: int, readers: int, interval: float, kind: str = "both") -> tuple[float, float]:
    """Writer puts/s, and the readers' CPU seconds per writer commit (all readers together);
    ``kind``: what each reader holds (:data:`READER_KINDS`)."""
    async with quanta.open(path, entities=[Tick], durability="os") as db:
        ticks = db.collection(Tick)
        await ticks.put(Tick(id=0, lane=1))
        procs = await asyncio.to_thread(om.start_readers, "quanta", path, readers, interval, READER_STOP, kind)
        t = time.perf_counter()
        for i in range(1, ops + 1):
            await ticks.put(Tick(id=i % 5000, lane=i % 2, stamp=0))
        elapsed = time.perf_counter() - t
        await ticks.put(Tick(id=READER_STOP, lane=0, stamp=time.monotonic_ns()))
        _, cpu, _seen = await asyncio.to_thread(om.collect_readers, procs)
    return ops / elapsed, cpu / ops


async def _readers(trial: Trial) -> dict[str, Any]:
    p = trial.params
    wl = set(trial.workloads)
    root = trial.fresh_dir("quanta")
    interval = p["ops_follow_interval"]
    out: dict[str, Any] = {}
    if "ops_reader_lag" in wl:
        out["ops_reader_lag"] = await lag_run(str(root / "lag"), p["ops_lag_commits"], interval)
    if "ops_reader_cost" in wl:
        ops = p["ops_reader_ops"]
        base, _ = await throughput_run(str(root / "t0"), ops, 0, interval)
        with_readers, cpu = await throughput_run(str(root / "t4"), ops, 4, interval)
        out["ops_reader_cost"] = om.reader_cost_metrics(base, with_readers, cpu)
    return out


def _sync(fn: Any) -> Any:
    def run(trial: Trial) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run(fn(trial))
        return result

    return run


GROUPS = {"ops_backup": _sync(_backup), "ops_transfer": _sync(_transfer), "ops_readers": _sync(_readers)}
