"""QuantaDB under the same workloads as the anchors, through its public API only.

Every measured operation is the public coroutine awaited once per operation, exactly as the row
says: a "get" row awaits ``db.kv.get(key)`` per key, a scan row iterates ``db.kv.scan(...)`` with
``async for``. Nothing is cached on the benchmark side. Configuration per row:

- durable rows (bulk insert, single and concurrent writes, 1M keys): ``durability="sync"``;
- read rows, memtable phase: ``memtable_bytes=256 MiB`` so all N records stay in the memtable
  (checked: the number of tables at measurement time is reported);
- read rows, reopen phase: ``flush()``, ``compact()``, ``close()``, reopen with
  ``block_cache_bytes=64 MiB``, one ``get`` per key to warm the cache, then measure;
- reopen row: N individual ``put`` calls with ``durability="os"``, ``close()``, then time
  ``await quanta.open(path)``;
- loop-lag row: ``durability="os"`` and a small memtable so that flushes and compactions run
  throughout the write load.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import (
    Trial,
    big_batches,
    big_metrics,
    children_max_rss,
    cpu_ns,
    latency_summary,
    make_key,
    now_ns,
    percentile,
    proc_io,
    random_keys,
    user_bytes,
    vm_rss,
)

import quanta

CACHE = 64 << 20
BIG_MEMTABLE = 256 << 20


async def _open(path: str, **options: Any) -> Any:
    return await quanta.open(path, **options)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return repr(value)


async def _stats(db: Any) -> dict[str, Any]:
    try:
        return _jsonable(await db.stats())  # type: ignore[no-any-return]
    except Exception as exc:  # stats are context; a failure is reported, not fatal
        return {"error": repr(exc)}


def _table_count(stats: dict[str, Any]) -> int | None:
    """Number of SSTables according to ``stats()["levels"]``, whatever shape it has."""
    if isinstance(stats.get("table_files"), int):
        return stats["table_files"]  # type: ignore[no-any-return]
    levels = stats.get("levels")
    if levels is None:
        return None
    items = levels.values() if isinstance(levels, dict) else levels
    total = 0
    for level in items:
        if isinstance(level, int):
            total += level
        elif isinstance(level, dict):
            for key in ("files", "file_count", "count", "tables", "num_files"):
                if isinstance(level.get(key), int):
                    total += level[key]
                    break
                if isinstance(level.get(key), list):
                    total += len(level[key])
                    break
        elif isinstance(level, list):
            total += len(level)
    return total


def _write_amp(stats: dict[str, Any], ubytes: int) -> float | None:
    wal, tables = stats.get("bytes_written_wal"), stats.get("bytes_written_tables")
    if not isinstance(wal, int) or not isinstance(tables, int):
        return None
    return (wal + tables) / ubytes


# ---------------------------------------------------------------------------------------- bulk


async def _bulk(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    db = await _open(str(trial.fresh_dir("quanta")), durability="sync")
    t = now_ns()
    await db.kv.put_many(records)
    elapsed = now_ns() - t
    stats = await _stats(db)
    t = now_ns()
    await db.close()
    close_ms = (now_ns() - t) / 1e6
    return {
        "bulk_insert": {
            "total_ms": elapsed / 1e6,
            "us_per_record": elapsed / 1e3 / len(records),
            "close_ms": close_ms,
        },
        "_info": {"stats_after_put_many": stats},
    }


# --------------------------------------------------------------------------------------- reads


async def _read_phase(db: Any, trial: Trial, suffix: str, keys: list[bytes]) -> dict[str, Any]:
    p = trial.params
    wl = set(trial.workloads)
    out: dict[str, Any] = {}
    for k in keys[:1000]:
        await db.kv.get(k)
    if "get" + suffix in wl:
        misses = 0
        t, c = now_ns(), cpu_ns()
        for k in keys:
            if await db.kv.get(k) is None:
                misses += 1
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["get" + suffix] = {
            "us_per_op": elapsed / 1e3 / len(keys),
            "cpu_us_per_op": cpu / 1e3 / len(keys),
            "misses": misses,
        }
    if "get_many" + suffix in wl:
        t, c = now_ns(), cpu_ns()
        values = await db.kv.get_many(keys)
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["get_many" + suffix] = {
            "us_per_key": elapsed / 1e3 / len(keys),
            "cpu_us_per_key": cpu / 1e3 / len(keys),
            "misses": sum(1 for v in values if v is None),
            "returned": len(values),
        }
    if "scan_range" + suffix in wl:
        starts = random_keys(trial.records(), p["scans"], trial.seed + 7)
        rows = 0
        limit = p["scan_len"]
        t, c = now_ns(), cpu_ns()
        for start in starts:
            async for _k, _v in db.kv.scan(start=start, limit=limit):
                rows += 1
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["scan_range" + suffix] = {
            "us_per_scan": elapsed / 1e3 / len(starts),
            "cpu_us_per_scan": cpu / 1e3 / len(starts),
            "rows": rows,
        }
    if "scan_full" + suffix in wl:
        rows = 0
        t, c = now_ns(), cpu_ns()
        async for _k, _v in db.kv.scan():
            rows += 1
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["scan_full" + suffix] = {"total_ms": elapsed / 1e6, "cpu_ms": cpu / 1e6, "rows": rows}
    return out


async def _reads(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    keys = random_keys(records, trial.params["get_ops"], trial.seed + 1)
    path = str(trial.fresh_dir("quanta"))
    info: dict[str, Any] = {}
    db = await _open(path, durability="sync", memtable_bytes=BIG_MEMTABLE, block_cache_bytes=CACHE)
    await db.kv.put_many(records)
    stats = await _stats(db)
    info["stats_memtable_phase"] = stats
    info["tables_memtable_phase"] = _table_count(stats)
    out = await _read_phase(db, trial, "", keys)
    for row in out.values():
        row["tables"] = info["tables_memtable_phase"]  # the harness requires 0: memtable-resident
    if any(w.endswith("_reopen") for w in trial.workloads):
        await db.flush()
        await db.compact()
        await db.close()
        t = now_ns()
        db = await _open(path, durability="sync", memtable_bytes=BIG_MEMTABLE, block_cache_bytes=CACHE)
        info["reopen_ms"] = (now_ns() - t) / 1e6
        t = now_ns()
        for k, _v in records:  # warm pass: every key once
            await db.kv.get(k)
        info["warm_pass_us_per_get"] = (now_ns() - t) / 1e3 / len(records)
        stats = await _stats(db)
        info["stats_reopen_phase"] = stats
        info["tables_reopen_phase"] = _table_count(stats)
        out.update(await _read_phase(db, trial, "_reopen", keys))
    await db.close()
    out["_info"] = info
    return out


# -------------------------------------------------------------------------------------- writes


async def _write_sync(trial: Trial) -> dict[str, Any]:
    records = trial.records()[: trial.params["write_ops"]]
    db = await _open(str(trial.fresh_dir("quanta")), durability="sync")
    lat = []
    t0 = now_ns()
    for k, v in records:
        t = now_ns()
        await db.kv.put(k, v)
        lat.append(now_ns() - t)
    total = now_ns() - t0
    stats = await _stats(db)
    await db.close()
    return {
        "write_sync": {**latency_summary(lat, ""), "writes_per_s": len(records) / (total / 1e9)},
        "_info": {"stats": stats},
    }


async def _write_concurrent(trial: Trial) -> dict[str, Any]:
    p = trial.params
    writers, per = p["conc_writers"], p["conc_per_writer"]
    records = trial.records()[: writers * per]
    db = await _open(str(trial.fresh_dir("quanta")), durability="sync")
    lat: list[int] = []

    async def worker(w: int) -> None:
        for k, v in records[w::writers]:
            t = now_ns()
            await db.kv.put(k, v)
            lat.append(now_ns() - t)

    t = now_ns()
    await asyncio.gather(*(worker(w) for w in range(writers)))
    elapsed = now_ns() - t
    stored = 0
    async for _k, _v in db.kv.scan():
        stored += 1
    stats = await _stats(db)
    await db.close()
    return {
        "write_concurrent": {
            "writes_per_s": len(records) / (elapsed / 1e9),
            "stored": stored,
            **latency_summary(lat, "put_"),
        },
        "_info": {"stats": stats},
    }


# -------------------------------------------------------------------------------------- reopen


async def _timed_open(path: str, probe: bytes) -> tuple[float, float, dict[str, Any]]:
    t = now_ns()
    db = await _open(path)
    opened = now_ns()
    await db.kv.get(probe)
    first = now_ns()
    stats = await _stats(db)
    await db.close()
    return (opened - t) / 1e6, (first - opened) / 1e6, stats


async def _reopen(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    probe = records[len(records) // 2][0]
    # 1. N individual puts (durability="os"), then close.
    path = str(trial.fresh_dir("quanta-puts"))
    db = await _open(path, durability="os")
    t = now_ns()
    for k, v in records:
        await db.kv.put(k, v)
    load_s = (now_ns() - t) / 1e9
    t = now_ns()
    await db.close()
    close_ms = (now_ns() - t) / 1e6
    open_ms, first_ms, stats = await _timed_open(path, probe)
    # 2. One put_many batch, then close.
    path2 = str(trial.fresh_dir("quanta-batch"))
    db = await _open(path2, durability="sync")
    await db.kv.put_many(records)
    await db.close()
    open2_ms, first2_ms, stats2 = await _timed_open(path2, probe)
    return {
        "reopen": {
            "open_ms": open_ms,
            "first_get_ms": first_ms,
            "close_ms": close_ms,
            "open_ms_after_batch": open2_ms,
            "first_get_ms_after_batch": first2_ms,
            "load_puts_per_s": len(records) / load_s,
        },
        "_info": {
            "stats_after_reopen_puts": stats,
            "tables_after_reopen_puts": _table_count(stats),
            "stats_after_reopen_batch": stats2,
        },
    }


# ------------------------------------------------------------------------------------ loop lag


async def _loop_lag(trial: Trial) -> dict[str, Any]:
    p = trial.params
    n, yield_every = p["lag_puts"], p["lag_yield_every"]
    rng = random.Random(trial.seed + 99)
    values = [v for _k, v in trial.records()]
    # Random keys over a key space of n/2: overlapping tables and overwrites, so compaction
    # has real merging to do (ascending keys would let it move files without merging).
    keyspace = max(1, n // 2)
    ops = [(make_key(rng.randrange(keyspace)), values[i % len(values)]) for i in range(n)]
    db = await _open(str(trial.fresh_dir("quanta")), durability="os", memtable_bytes=p["lag_memtable"])
    monitor = LagMonitor()
    ticker = asyncio.create_task(monitor.run())
    await asyncio.sleep(p["lag_idle_s"])
    idle, idle_cpu = list(monitor.samples), list(monitor.on_cpu)
    mark = len(monitor.samples)
    put_lat: list[int] = []
    slices: list[int] = []  # wall time the writer held the loop between its own yields
    t0 = ts = now_ns()
    for i, (k, v) in enumerate(ops):
        t = now_ns()
        await db.kv.put(k, v)
        put_lat.append(now_ns() - t)
        if i % yield_every == yield_every - 1:
            slices.append(now_ns() - ts)
            await asyncio.sleep(0)  # the load generator gives the loop a turn, like any app would
            ts = now_ns()
    write_s = (now_ns() - t0) / 1e9
    during, during_cpu = monitor.samples[mark:], monitor.on_cpu[mark:]
    stats_writes = await _stats(db)
    mark = len(monitor.samples)
    t = now_ns()
    await db.flush()
    await db.compact()
    drain_s = (now_ns() - t) / 1e9
    during_compact = monitor.samples[mark:]
    stats_end = await _stats(db)
    monitor.stop()
    await ticker
    t = now_ns()
    await db.close()
    close_ms = (now_ns() - t) / 1e6
    return {
        "loop_lag": {
            **lag_summary(during, ""),
            **lag_summary(during_cpu, "on_cpu_"),
            **lag_summary(idle, "idle_"),
            "idle_on_cpu_p99_ms": percentile(idle_cpu, 99) / 1e6,
            **lag_summary(during_compact, "compact_"),
            "writer_slice_p50_ms": percentile(slices, 50) / 1e6,
            "writer_slice_p99_ms": percentile(slices, 99) / 1e6,
            **latency_summary(put_lat, "put_"),
            "puts_per_s": n / write_s,
            "flush_compact_s": drain_s,
            "close_ms": close_ms,
            "flushes": stats_writes.get("flushes"),
            "compactions": stats_writes.get("compactions"),
            "write_stalls": stats_writes.get("write_stalls"),
            "stall_seconds": stats_writes.get("stall_seconds"),
            "yield_every": yield_every,
            "memtable_mib": p["lag_memtable"] / 2**20,
            "loadavg_1min": os.getloadavg()[0],
        },
        "_info": {"stats_after_writes": stats_writes, "stats_end": stats_end},
    }


# ------------------------------------------------------------------------------------- 1M keys


async def _big(trial: Trial) -> dict[str, Any]:
    p = trial.params
    path = str(trial.fresh_dir("quanta"))
    rss0 = vm_rss()
    io0 = proc_io().get("wchar", 0)
    db = await _open(path, durability="sync")
    elapsed = 0
    ub = 0
    for batch in big_batches(trial.records(), p["big_n"], p["big_batch"]):
        ub += user_bytes(batch)
        t = now_ns()
        await db.kv.put_many(batch)
        elapsed += now_ns() - t
    t = now_ns()
    await db.flush()
    flush_s = (now_ns() - t) / 1e9
    stats = await _stats(db)
    rss_end = vm_rss()
    t = now_ns()
    await db.close()
    close_s = (now_ns() - t) / 1e9
    wchar = proc_io().get("wchar", 0) - io0
    live = stats.get("live_table_bytes")
    return {
        "big": {
            **big_metrics(elapsed, ub, path, wchar, rss0, rss_end),
            "flush_s": flush_s,
            "close_s": close_s,
            "live_table_mib": live / 2**20 if isinstance(live, int) else None,
            "write_amp": _write_amp(stats, ub),
            "children_maxrss_mib": children_max_rss() / 2**20,
        },
        "_info": {"stats_after_flush": stats},
    }


def _sync(fn: Callable[[Trial], Awaitable[dict[str, Any]]]) -> Callable[[Trial], dict[str, Any]]:
    def run(trial: Trial) -> dict[str, Any]:
        return asyncio.run(fn(trial))  # type: ignore[arg-type]

    return run


GROUPS = {
    "bulk": _sync(_bulk),
    "reads": _sync(_reads),
    "write_sync": _sync(_write_sync),
    "write_concurrent": _sync(_write_concurrent),
    "reopen": _sync(_reopen),
    "loop_lag": _sync(_loop_lag),
    "big": _sync(_big),
}
