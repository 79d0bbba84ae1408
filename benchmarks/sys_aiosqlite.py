"""Anchor: SQLite through aiosqlite, the asyncio-native way most Python services reach an embedded DB.

Same configuration, schema and statements as ``sys_sqlite3`` (WAL, ``synchronous=FULL``, 64 MiB
cache, ``WITHOUT ROWID``). aiosqlite runs every call on one background thread per connection, so
each awaited statement pays a thread hop; point reads use ``execute_fetchall`` (one hop per get).
Because ~100 us a get makes 100k gets slow, the read rows cap aiosqlite at ``aiosqlite_ops``
operations (default 10k): the per-op number is unaffected, the trial is just shorter.

Change-bus and transaction rows: see ``_latency_run``, ``_fanout`` and ``_txn_run``. Rows that
QuantaDB runs with ``durability="os"`` use ``synchronous=NORMAL`` instead of ``FULL``.

Backup rows (``ops_backup`` group, see ``ops_sqlite``): the same database and writer as the
sqlite3 anchor, but the writer is a task on its own aiosqlite connection and each backup is
``await conn.backup(target)`` on another (all pages in one step, on aiosqlite's thread), so the
event-loop lag during a backup is measured as for QuantaDB.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from typing import Any

import aiosqlite
import ops_model as om
from _harness import (
    CHANGE_WARMUP,
    ChangeReceiver,
    LagMonitor,
    Trial,
    TxnConfig,
    change_items,
    change_ping_pong,
    fsync_probe,
    lag_summary,
    latency_summary,
    median,
    now_ns,
    random_keys,
    txn_configs,
    txn_counter,
    txn_lost_updates,
    txn_metrics,
    txn_value,
)
from ops_sqlite import count_backup, load_backup_db, remove_db_files
from sys_sqlite3 import FULL, GET, PRAGMAS, PRAGMAS_BY_DURABILITY, PRAGMAS_OS, PUT, RANGE, SCHEMA, UPDATE


async def connect(path: str, pragmas: tuple[str, ...] = PRAGMAS) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=120)
    for pragma in pragmas:
        await conn.execute(pragma)
    await conn.execute(SCHEMA)
    return conn


async def _load(conn: aiosqlite.Connection, records: list[tuple[bytes, bytes]]) -> None:
    await conn.execute("BEGIN")
    await conn.executemany(PUT, records)
    await conn.execute("COMMIT")


async def _bulk(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    conn = await connect(str(trial.fresh_dir("aiosqlite") / "db.sqlite"))
    t = now_ns()
    await _load(conn, records)
    elapsed = now_ns() - t
    await conn.close()
    return {"bulk_insert": {"total_ms": elapsed / 1e6, "us_per_record": elapsed / 1e3 / len(records)}}


async def _get_many(conn: aiosqlite.Connection, keys: list[bytes], chunk: int = 500) -> list[bytes | None]:
    out: list[bytes | None] = []
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        rows = await conn.execute_fetchall(f"SELECT k, v FROM kv WHERE k IN ({','.join('?' * len(part))})", part)
        found = dict(rows)  # type: ignore[arg-type]
        out.extend(found.get(k) for k in part)
    return out


async def _read_phase(conn: aiosqlite.Connection, trial: Trial, suffix: str, keys: list[bytes]) -> dict[str, Any]:
    p = trial.params
    wl = set(trial.workloads)
    out: dict[str, Any] = {}
    keys = keys[: p["aiosqlite_ops"]]
    for k in keys[:1000]:
        await conn.execute_fetchall(GET, (k,))
    if "get" + suffix in wl:
        misses = 0
        t = now_ns()
        for k in keys:
            if not await conn.execute_fetchall(GET, (k,)):
                misses += 1
        elapsed = now_ns() - t
        out["get" + suffix] = {"us_per_op": elapsed / 1e3 / len(keys), "misses": misses, "ops": len(keys)}
    if "get_many" + suffix in wl:
        t = now_ns()
        values = await _get_many(conn, keys)
        elapsed = now_ns() - t
        out["get_many" + suffix] = {"us_per_key": elapsed / 1e3 / len(keys), "misses": values.count(None)}
    if "scan_range" + suffix in wl:
        starts = random_keys(trial.records(), p["scans"], trial.seed + 7)
        rows = 0
        t = now_ns()
        for start in starts:
            async with conn.execute(RANGE, (start, p["scan_len"])) as cur:
                async for _row in cur:
                    rows += 1
        elapsed = now_ns() - t
        out["scan_range" + suffix] = {"us_per_scan": elapsed / 1e3 / len(starts), "rows": rows}
    if "scan_full" + suffix in wl:
        rows = 0
        t = now_ns()
        async with conn.execute(FULL) as cur:
            async for _row in cur:
                rows += 1
        elapsed = now_ns() - t
        out["scan_full" + suffix] = {"total_ms": elapsed / 1e6, "rows": rows}
    return out


async def _reads(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    keys = random_keys(records, trial.params["get_ops"], trial.seed + 1)
    path = str(trial.fresh_dir("aiosqlite") / "db.sqlite")
    conn = await connect(path)
    await _load(conn, records)
    out = await _read_phase(conn, trial, "", keys)
    if any(w.endswith("_reopen") for w in trial.workloads):
        await conn.close()
        conn = await connect(path)
        # Warm pass through the same library; one statement is enough to pull every page in.
        async with conn.execute(FULL) as cur:
            async for _row in cur:
                pass
        out.update(await _read_phase(conn, trial, "_reopen", keys))
    await conn.close()
    return out


async def _write_sync(trial: Trial) -> dict[str, Any]:
    records = trial.records()[: trial.params["write_ops"]]
    conn = await connect(str(trial.fresh_dir("aiosqlite") / "db.sqlite"))
    lat = []
    t0 = now_ns()
    for kv in records:
        t = now_ns()
        await conn.execute(PUT, kv)
        lat.append(now_ns() - t)
    total = now_ns() - t0
    await conn.close()
    return {"write_sync": {**latency_summary(lat, ""), "writes_per_s": len(records) / (total / 1e9)}}


async def _write_concurrent(trial: Trial) -> dict[str, Any]:
    """Eight tasks, each with its own aiosqlite connection (so its own thread)."""
    p = trial.params
    writers, per = p["conc_writers"], p["conc_per_writer"]
    records = trial.records()[: writers * per]
    path = str(trial.fresh_dir("aiosqlite") / "db.sqlite")
    await (await connect(path)).close()
    conns = [await connect(path) for _ in range(writers)]

    async def worker(w: int) -> None:
        for kv in records[w::writers]:
            await conns[w].execute(PUT, kv)

    t = now_ns()
    await asyncio.gather(*(worker(w) for w in range(writers)))
    elapsed = now_ns() - t
    stored = (await conns[0].execute_fetchall("SELECT count(*) FROM kv"))[0][0]  # type: ignore[index]
    for c in conns:
        await c.close()
    return {"write_concurrent": {"writes_per_s": len(records) / (elapsed / 1e9), "stored": stored}}


# ----------------------------------------------------------------- change bus and transactions


async def _latency_run(trial: Trial, durability: str, commits: int) -> dict[str, Any]:
    """The change-latency anchor: each commit is one autocommit ``INSERT`` (insert + commit)
    awaited through aiosqlite; when it returns, the writer puts the row into an
    ``asyncio.Queue`` that a listener task awaits (``change_ping_pong``'s ``after``), so the
    hand-off to the queue is inside the measured interval, as the bus's delivery is for
    QuantaDB."""
    path = trial.fresh_dir(f"aiosqlite-changes-{durability}")
    conn = await connect(str(path / "db.sqlite"), PRAGMAS_BY_DURABILITY[durability])
    fsync_us = fsync_probe(str(path)) if durability == "sync" else None
    queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
    rec = ChangeReceiver()

    async def listener() -> None:
        while True:
            key, _value = await queue.get()
            t = now_ns()
            rec.take(key, t)

    task = asyncio.create_task(listener())
    await asyncio.sleep(0)
    items = change_items(trial.records(), commits + CHANGE_WARMUP, b"c/")
    out = await change_ping_pong(
        items,
        lambda k, v: conn.execute(PUT, (k, v)),
        rec,
        after=lambda k, v: queue.put_nowait((k, v)),
    )
    task.cancel()
    await conn.close()
    if fsync_us is not None:
        out["fsync_p50_us"] = fsync_us
    return out


async def _changes(trial: Trial) -> dict[str, Any]:
    """One measurement per durability, reported under both consumer rows (an asyncio.Queue
    listener is the anchor for the async iterator and for the Rx observer alike)."""
    out: dict[str, Any] = {}
    for durability in ("os", "sync"):
        names = [f"change_latency_{durability}_{face}" for face in ("iter", "rx")]
        if any(n in trial.workloads for n in names):
            res = await _latency_run(trial, durability, trial.params[f"change_commits_{durability}"])
            out.update({n: res for n in names if n in trial.workloads})
    return out


async def _fanout(trial: Trial) -> dict[str, Any]:
    """The fan-out rows' anchor (0 subscribers): single autocommit ``INSERT``s of the same
    records, one writer task, ``synchronous=NORMAL`` (no fsync per commit, like
    ``durability="os"``), a fresh database per round, 100 untimed inserts first, the same
    1 ms lag ticker running."""
    p = trial.params
    commits = p["fanout_aiosqlite_commits"]
    items = change_items(trial.records(), commits, b"w/")
    rates: list[float] = []
    lag: list[int] = []
    for _ in range(p["fanout_rounds"]):
        conn = await connect(str(trial.fresh_dir("aiosqlite-fanout") / "db.sqlite"), PRAGMAS_OS)
        for kv in change_items(trial.records(), 100, b"warmup/"):
            await conn.execute(PUT, kv)
        monitor = LagMonitor()
        ticker = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.01)
        t = now_ns()
        for kv in items:
            await conn.execute(PUT, kv)
        elapsed = now_ns() - t
        monitor.stop()
        await ticker
        lag.extend(monitor.samples)
        await conn.close()
        rates.append(commits / (elapsed / 1e9))
    return {"fanout_0": {"commits_per_s": median(rates), **lag_summary(lag, "lag_"), "rounds": len(rates)}}


async def _txn_run(trial: Trial, cfg: TxnConfig) -> dict[str, Any]:
    """``cfg.count`` read-modify-write transactions from ``cfg.tasks`` asyncio tasks sharing ONE
    connection, serialized by an ``asyncio.Lock`` (aiosqlite runs one connection's statements
    on one thread, so transactions on it cannot overlap): under the lock ``BEGIN IMMEDIATE``,
    ``SELECT`` and ``UPDATE`` per key, ``COMMIT``, each awaited (one thread hop each). A fresh
    database per row."""
    path = str(trial.fresh_dir(cfg.name) / "db.sqlite")
    conn = await connect(path, PRAGMAS_BY_DURABILITY[cfg.durability])
    await _load(conn, cfg.initial())
    ops = cfg.ops()
    lock = asyncio.Lock()
    lat: list[int] = []

    async def worker(w: int) -> None:
        for op in ops[w :: cfg.tasks]:
            t = now_ns()
            async with lock:
                await conn.execute("BEGIN IMMEDIATE")
                values = [(await conn.execute_fetchall(GET, (k,)))[0][0] for k in op]  # type: ignore[index]
                for k, v in zip(op, values, strict=True):
                    await conn.execute(UPDATE, (txn_value(txn_counter(v) + 1), k))
                await conn.execute("COMMIT")
            lat.append(now_ns() - t)

    t = now_ns()
    await asyncio.gather(*(worker(w) for w in range(cfg.tasks)))
    elapsed = now_ns() - t
    final = await _get_many(conn, cfg.all_keys())
    await conn.close()
    return {**txn_metrics(len(lat), elapsed, lat), "lost_updates": txn_lost_updates(ops, final)}


async def _txn(trial: Trial) -> dict[str, Any]:
    return {cfg.name: await _txn_run(trial, cfg) for cfg in txn_configs(trial)}


def bulk(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_bulk(trial))


def reads(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_reads(trial))


def write_sync(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_write_sync(trial))


def write_concurrent(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_write_concurrent(trial))


async def _backup(trial: Trial) -> dict[str, Any]:
    p = trial.params
    path = str(trial.fresh_dir("aiosqlite") / "db.sqlite")
    loader = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        loader.execute(pragma)
    loader.execute(SCHEMA)
    t = time.perf_counter()
    n = load_backup_db(loader, p["ops_backup_mib"], trial.seed)
    load_s = time.perf_counter() - t
    loader.close()
    writer = await connect(path)
    source = await connect(path)

    async def commit(i: int) -> None:
        await writer.execute(PUT, (om.hot_key(i), om.HOT_VALUE))

    async def backup_into(dest: str) -> dict[str, Any]:
        await asyncio.to_thread(remove_db_files, dest)
        t = time.perf_counter()
        target = sqlite3.connect(dest, isolation_level=None, check_same_thread=False)
        try:
            await source.backup(target, pages=-1)
        finally:
            target.close()
        seconds = time.perf_counter() - t
        return {"bytes": await asyncio.to_thread(os.path.getsize, dest), "seconds": seconds}

    baseline = await om.measure_async(commit, None, seconds=p["ops_baseline_s"])
    out: dict[str, Any] = {}
    try:
        with om.backup_dests(trial.workloads, trial.workdir) as phases:
            for rows, dest in phases:
                d = await om.measure_async(commit, lambda dest=dest: backup_into(dest), runs=p["ops_backup_runs"])
                m = om.during_metrics(d, baseline)
                m.update(keys=n, bad_backups=int(count_backup(dest) != n), load_s=load_s)
                out.update(dict.fromkeys(rows, m))
    finally:
        await writer.close()
        await source.close()
    return out


GROUPS = {
    "ops_backup": lambda trial: asyncio.run(_backup(trial)),
    "bulk": bulk,
    "reads": reads,
    "write_sync": write_sync,
    "write_concurrent": write_concurrent,
    "changes": lambda trial: asyncio.run(_changes(trial)),
    "fanout": lambda trial: asyncio.run(_fanout(trial)),
    "txn": lambda trial: asyncio.run(_txn(trial)),
}
