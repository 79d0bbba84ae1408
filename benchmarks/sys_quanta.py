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
  throughout the write load;
- change-latency rows: default options with ``durability="os"`` or ``"sync"``, one database per
  durability, one subscriber at a time (``db.changes()`` or ``db.observe().subscribe``);
- fan-out rows: ``durability="os"``, ``memtable_bytes=256 MiB`` (no flush while measuring), one
  database for every configuration of a trial;
- transaction rows: default options with ``durability="sync"`` or ``"os"``, one database per
  durability (each row on its own key prefix), ``db.run_transaction(fn, retries=100)``;
- entity rows (``entities_model.py``): ``durability="sync"``. ``entity_bulk``: default options,
  ``BulkUser`` objects built before timing, then ONE ``await users.put_many(objs)`` (one atomic
  batch, records and index entries), then ``close()`` (untimed). Read rows: ``User`` entities
  loaded with one ``put_many``, then ``flush()`` and ``compact()`` (every record and index
  entry in tables, the memtable empty), ``block_cache_bytes=64 MiB``, and an untimed warm-up (see
  ``_entity_reads``); each operation is the public call awaited as the row says
  (``await users.get(pk)`` per id; one ``get_many``; ``await users.where(...)...all()`` per
  query, building the query included).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import entities_model as em
import live_model
from _harness import (
    CHANGE_WARMUP,
    ChangeReceiver,
    LagMonitor,
    Trial,
    TxnConfig,
    big_batches,
    big_metrics,
    change_items,
    change_ping_pong,
    children_max_rss,
    cpu_ns,
    fsync_probe,
    lag_summary,
    latency_summary,
    make_key,
    median,
    now_ns,
    percentile,
    proc_io,
    random_keys,
    suppress_gc_freeze,
    txn_configs,
    txn_counter,
    txn_lost_updates,
    txn_metrics,
    txn_value,
    user_bytes,
    vm_rss,
)

import quanta
from quanta import Index, PrimaryKey, between, in_

CACHE = 64 << 20
BIG_MEMTABLE = 256 << 20
FANOUT_WARMUP = 100  # untimed commits before each fan-out measurement (every configuration alike)
TXN_RETRIES = 100  # run_transaction retries: the hot rows must not give up (that would fail the trial)


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


# ---------------------------------------------------------------------------------- change bus


async def _latency_run(trial: Trial, db: Any, face: str, commits: int) -> dict[str, Any]:
    """One consumer face: one subscriber to the whole key space (``db.changes()`` read with
    ``async for``, or ``db.observe().subscribe(on_next)``), then ``commits`` single puts of
    fresh keys, one at a time (see ``change_ping_pong``); the subscriber is removed after."""
    rec = ChangeReceiver()
    task = disposable = stream = None
    if face == "iter":
        stream = db.changes()

        async def consume() -> None:
            async for cs in stream:
                t = now_ns()
                rec.take(cs.changes[0].key if len(cs.changes) == 1 else None, t)

        task = asyncio.create_task(consume())
    else:

        def on_next(cs: Any) -> None:
            t = now_ns()
            rec.take(cs.changes[0].key if len(cs.changes) == 1 else None, t)

        disposable = db.observe().subscribe(on_next)
    await asyncio.sleep(0)
    items = change_items(trial.records(), commits + CHANGE_WARMUP, b"c/%s/" % face.encode())
    out = await change_ping_pong(items, db.kv.put, rec)
    if stream is not None:
        await stream.aclose()
    if disposable is not None:
        disposable.dispose()
    if task is not None:
        task.cancel()
    return out


async def _changes(trial: Trial) -> dict[str, Any]:
    """One database per durability (fresh directory, default options), both consumer faces in
    turn; with "sync", the fdatasync time of that directory is measured first (``fsync_p50_us``,
    the median of 100 append + fdatasync) and reported with both faces."""
    p = trial.params
    out: dict[str, Any] = {}
    for durability in ("os", "sync"):
        names = {face: f"change_latency_{durability}_{face}" for face in ("iter", "rx")}
        if not any(n in trial.workloads for n in names.values()):
            continue
        path = str(trial.fresh_dir(f"quanta-changes-{durability}"))
        db = await _open(path, durability=durability)
        fsync_us = fsync_probe(path) if durability == "sync" else None
        for face, name in names.items():
            if name in trial.workloads:
                out[name] = await _latency_run(trial, db, face, p[f"change_commits_{durability}"])
                if fsync_us is not None:
                    out[name]["fsync_p50_us"] = fsync_us
        out.setdefault("_info", {})[f"stats_{durability}"] = await _stats(db)
        await db.close()
    return out


async def _fanout_run(trial: Trial, db: Any, idle: int, consumed: bool, first: int) -> dict[str, Any]:
    """One configuration of the fan-out rows: ``idle`` streams on prefixes ``idle/<j>/`` that
    nobody reads, optionally one consumed stream on the written prefix ``w/``, then
    ``FANOUT_WARMUP`` untimed puts, then ``fanout_commits`` single puts of fresh keys under
    ``w/`` (dataset values) from one task that yields (``sleep(0)``) every
    ``fanout_yield_every`` puts, with a 1 ms lag ticker running. Timed: first put to last put
    returned and, with a consumer, to the consumer holding every commit. The streams are
    closed (unsubscribed) after."""
    p = trial.params
    commits, every = p["fanout_commits"], p["fanout_yield_every"]
    streams = [db.changes(prefix=b"idle/%d/" % j) for j in range(idle)]  # held: GC would unsubscribe
    received = 0
    done = asyncio.Event()
    task = None
    if consumed:
        stream = db.changes(prefix=b"w/")
        streams.append(stream)

        async def consume() -> None:
            nonlocal received
            async for _cs in stream:
                received += 1
                if received == commits:
                    done.set()

        task = asyncio.create_task(consume())
    items = change_items(trial.records(), commits, b"w/", first)
    put = db.kv.put
    # Untimed, outside every subscribed range: the first commit after subscribing rebuilds
    # the bus's routing table (a cost of subscribing, not of each commit).
    for k, v in change_items(trial.records(), FANOUT_WARMUP, b"warmup/", first):
        await put(k, v)
    monitor = LagMonitor()
    ticker = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.01)
    before = await _stats(db)
    t = now_ns()
    for i, (k, v) in enumerate(items):
        await put(k, v)
        if i % every == every - 1:
            await asyncio.sleep(0)
    if consumed:
        await asyncio.wait_for(done.wait(), 60)
    elapsed = now_ns() - t
    monitor.stop()
    await ticker
    after = await _stats(db)
    for s in streams:
        await s.aclose()
    if task is not None:
        task.cancel()
    return {
        "commits_per_s": commits / (elapsed / 1e9),
        "lag": monitor.samples,
        "subscribers": after["change_subscribers"],
        "published": after["change_sets_published"] - before["change_sets_published"],
        "received": received,
        "table_files": after["table_files"],
    }


async def _fanout(trial: Trial) -> dict[str, Any]:
    """Every configuration, ``fanout_rounds`` times in rotating order, on ONE database
    (``durability="os"``, ``memtable_bytes=256 MiB``: nothing is flushed while measuring, which
    ``table_files = 0`` confirms; one database because QuantaDB's close costs ~0.3 s). Each row
    reports the median over rounds and its ratio to the 0-subscriber median of the same trial."""
    p = trial.params
    configs = {"fanout_0": (0, False), "fanout_10": (10, False), "fanout_1000": (1000, False)}
    configs["fanout_consumed"] = (0, True)
    # The 0-subscriber baseline always runs: the other rows report their ratio to it.
    names = [n for n in configs if n in trial.workloads or n == "fanout_0"]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    db = await _open(str(trial.fresh_dir("quanta-fanout")), durability="os", memtable_bytes=BIG_MEMTABLE)
    first = 0
    for r in range(p["fanout_rounds"]):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(await _fanout_run(trial, db, *configs[name], first))
            first += p["fanout_commits"]
    stats = await _stats(db)
    await db.close()
    base = median([x["commits_per_s"] for x in runs["fanout_0"]])
    out: dict[str, Any] = {"_info": {"stats": stats}}
    for name in names:
        if name not in trial.workloads:
            continue
        rs = runs[name]
        rate = median([x["commits_per_s"] for x in rs])
        out[name] = {
            "commits_per_s": rate,
            "vs_0_subscribers": rate / base,
            **lag_summary([s for x in rs for s in x["lag"]], "lag_"),
            "subscribers": rs[0]["subscribers"],
            "published": sum(x["published"] for x in rs),
            "received": sum(x["received"] for x in rs),
            "table_files": max(x["table_files"] for x in rs),
            "rounds": len(rs),
        }
    return out


# -------------------------------------------------------------------------------- transactions


async def _rmw(tx: Any, op: tuple[bytes, ...], calls: list[int]) -> None:
    calls[0] += 1
    values = [await tx.kv.get(k) for k in op]
    for k, v in zip(op, values, strict=True):
        await tx.kv.put(k, txn_value(txn_counter(v) + 1))


async def _txn_run(db: Any, cfg: TxnConfig) -> dict[str, Any]:
    """``cfg.count`` read-modify-write transactions through ``db.run_transaction``, split over
    ``cfg.tasks`` asyncio tasks. The counters are loaded (``put_many``) before timing."""
    await db.kv.put_many(cfg.initial())
    ops = cfg.ops()
    calls = [0]
    lat: list[int] = []

    async def worker(w: int) -> None:
        for op in ops[w :: cfg.tasks]:
            t = now_ns()
            await db.run_transaction(lambda tx, op=op: _rmw(tx, op, calls), retries=TXN_RETRIES)
            lat.append(now_ns() - t)

    before = await _stats(db)
    t = now_ns()
    await asyncio.gather(*(worker(w) for w in range(cfg.tasks)))
    elapsed = now_ns() - t
    after = await _stats(db)
    final = await db.kv.get_many(cfg.all_keys())
    committed = after["transactions_committed"] - before["transactions_committed"]
    conflicts = after["transaction_conflicts"] - before["transaction_conflicts"]
    return {
        **txn_metrics(committed, elapsed, lat),
        "conflicts_per_tx": conflicts / committed,
        "conflicts": conflicts,
        "attempts_per_tx": calls[0] / committed,
        "lost_updates": txn_lost_updates(ops, final),
    }


async def _txn(trial: Trial) -> dict[str, Any]:
    """One database per durability, shared by that durability's rows (each on its own key
    prefix): QuantaDB's close starts a worker process to flush (~0.3 s), which a database per
    row would spend 8 times per trial. The memtable (16 MiB default) never fills here."""
    out: dict[str, Any] = {}
    configs = txn_configs(trial)
    for durability in ("sync", "os"):
        mine = [c for c in configs if c.durability == durability]
        if mine:
            db = await _open(str(trial.fresh_dir(f"quanta-txn-{durability}")), durability=durability)
            for cfg in mine:
                out[cfg.name] = await _txn_run(db, cfg)
            out.setdefault("_info", {})[f"stats_{durability}"] = await _stats(db)
            await db.close()
    return out


# ------------------------------------------------------------------------------------ entities
# The same users and indexes as the sqlite3 anchor's ``users`` table (entities_model.py).


@quanta.entity
class BulkUser:
    """``entity_bulk``: one secondary index, on ``city``."""

    id: Annotated[int, PrimaryKey()]
    email: str
    name: str
    city: Annotated[str, Index()]
    age: int


@quanta.entity(indexes=[Index("city", "age")])
class User:
    """The read rows: an index on ``age`` and a composite one on ``(city, age)``."""

    id: Annotated[int, PrimaryKey()]
    email: str
    name: str
    city: str
    age: Annotated[int, Index()]


async def _entity_bulk(trial: Trial) -> dict[str, Any]:
    rows = em.user_rows(trial.records())
    objs = [BulkUser(id=i, email=e, name=n, city=c, age=a) for i, e, n, c, a in rows]
    with suppress_gc_freeze():  # the inputs are not the system's garbage (the anchor's trial alike)
        db = await _open(str(trial.fresh_dir("quanta")), durability="sync")
        users = db.collection(BulkUser)
        t, c = now_ns(), cpu_ns()
        await users.put_many(objs)
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        stats = await _stats(db)
        stored = await users.count()
        city = rows[0][3]
        by_city = await users.where(BulkUser.city == city).count()
        t = now_ns()
        await db.close()
        close_ms = (now_ns() - t) / 1e6
    if stored != len(rows) or by_city != sum(1 for r in rows if r[3] == city):
        raise em.WrongResult(f"entity_bulk: {stored} users stored ({by_city} in {city})")
    return {
        "entity_bulk": {
            "total_ms": elapsed / 1e6,
            "us_per_entity": elapsed / 1e3 / len(rows),
            "cpu_ms": cpu / 1e6,
            "stored": stored,
            "close_ms": close_ms,
        },
        "_info": {"stats_after_put_many": stats},
    }


async def _entity_query_row(
    name: str, ops: list[tuple[Callable[[], Any], str, list[em.Row]]], *, ordered: bool
) -> dict[str, Any]:
    """Time each query (building it, then ``await query.all()``); check it after its timing."""
    elapsed = cpu = entities = 0
    for build, what, expected in ops:
        t, c = now_ns(), cpu_ns()
        got = await build().all()
        elapsed += now_ns() - t
        cpu += cpu_ns() - c
        entities += len(got)
        em.check(name, what, got, expected, ordered=ordered)
    return em.query_metrics(elapsed, cpu, len(ops), entities)


async def _entity_reads(trial: Trial) -> dict[str, Any]:
    """Load the users, ``flush()`` + ``compact()``, warm up, then each row in turn.

    Warm-up (untimed, the anchor's alike): ``get_many`` of every id (every record read once),
    then the first query of each query row. (A whole untimed round of the range and composite
    queries was tried: the timed round after it was no faster.) The rows then run in order:
    ``entity_get``, ``entity_get_many``, ``entity_range_query``, ``entity_composite``,
    ``entity_in``, ``entity_scan_filter``."""
    rows = em.user_rows(trial.records())
    objs = [User(id=i, email=e, name=n, city=c, age=a) for i, e, n, c, a in rows]
    q = em.queries(rows, trial.params, trial.seed)
    ref = em.Reference(rows)
    wl = set(trial.workloads)
    out: dict[str, Any] = {}
    limit = q.range_len
    ranges = [
        (
            lambda lo=lo, hi=hi: users.where(between(User.age, lo, hi)).order_by(User.age, User.id).limit(limit),
            f"between(age, {lo}, {hi}) order by age, id limit {limit}",
            ref.range(lo, hi, limit),
        )
        for lo, hi in q.ranges
    ]
    composite = [
        (lambda c=c, y=y: users.where(User.city == c, User.age >= y), f"city == {c!r}, age >= {y}", ref.composite(c, y))
        for c, y in q.composite
    ]
    ins = [(lambda cs=cs: users.where(in_(User.city, cs)), f"in_(city, {cs})", ref.in_(cs)) for cs in q.in_sets]
    scans = [(lambda n=n: users.where(User.name == n), f"name == {n!r}", ref.scan(n)) for n in q.scan_names]
    with suppress_gc_freeze():  # the inputs and answers are not the system's garbage
        db = await _open(str(trial.fresh_dir("quanta")), durability="sync", block_cache_bytes=CACHE)
        users = db.collection(User)
        t = now_ns()
        await users.put_many(objs)
        load_ms = (now_ns() - t) / 1e6
        del objs
        await db.flush()
        await db.compact()
        stats = await _stats(db)
        await users.get_many([r[0] for r in rows])  # warm-up
        for build, _what, _exp in (ranges[0], composite[0], ins[0], scans[0]):
            await build().all()
        if "entity_get" in wl:
            pks = q.get_pks
            get = users.get
            got: list[Any] = []
            t, c = now_ns(), cpu_ns()
            for pk in pks:
                got.append(await get(pk))
            elapsed, cpu = now_ns() - t, cpu_ns() - c
            em.check_gets("entity_get", got, pks, ref)
            out["entity_get"] = {
                "us_per_op": elapsed / 1e3 / len(pks),
                "cpu_us_per_op": cpu / 1e3 / len(pks),
                "ops": len(pks),
            }
            del got
        if "entity_get_many" in wl:
            pks = q.get_pks
            t, c = now_ns(), cpu_ns()
            many = await users.get_many(pks)
            elapsed, cpu = now_ns() - t, cpu_ns() - c
            em.check_gets("entity_get_many", many, pks, ref)
            out["entity_get_many"] = {
                "us_per_entity": elapsed / 1e3 / len(pks),
                "cpu_us_per_entity": cpu / 1e3 / len(pks),
                "returned": len(many),
            }
            del many
        if "entity_range_query" in wl:
            out["entity_range_query"] = await _entity_query_row("entity_range_query", ranges, ordered=True)
        if "entity_composite" in wl:
            out["entity_composite"] = await _entity_query_row("entity_composite", composite, ordered=False)
        if "entity_in" in wl:
            out["entity_in"] = await _entity_query_row("entity_in", ins, ordered=False)
        if "entity_scan_filter" in wl:
            out["entity_scan_filter"] = await _entity_query_row("entity_scan_filter", scans, ordered=False)
        end = await _stats(db)
        plans = {what: build().explain() for build, what, _ in (ranges[0], composite[0], ins[0], scans[0])}
        await db.close()
    out["_info"] = {
        "load_ms": load_ms,
        "stats_after_compact": stats,
        "tables_after_compact": _table_count(stats),
        "stats_end": end,
        "query_plans": plans,
    }
    return out


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
    "changes": _sync(_changes),
    "fanout": _sync(_fanout),
    "txn": _sync(_txn),
    "big": _sync(_big),
    "entity_bulk": _sync(_entity_bulk),
    "entity_reads": _sync(_entity_reads),
    "live": lambda trial: live_model.run(trial, _open),
}
