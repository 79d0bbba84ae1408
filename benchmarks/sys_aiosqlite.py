"""Anchor: SQLite through aiosqlite, the asyncio-native way most Python services reach an embedded DB.

Same configuration, schema and statements as ``sys_sqlite3`` (WAL, ``synchronous=FULL``, 64 MiB
cache, ``WITHOUT ROWID``). aiosqlite runs every call on one background thread per connection, so
each awaited statement pays a thread hop; point reads use ``execute_fetchall`` (one hop per get).
Because ~100 us a get makes 100k gets slow, the read rows cap aiosqlite at ``aiosqlite_ops``
operations (default 10k): the per-op number is unaffected, the trial is just shorter.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiosqlite
from _harness import Trial, latency_summary, now_ns, random_keys
from sys_sqlite3 import FULL, GET, PRAGMAS, PUT, RANGE, SCHEMA


async def connect(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=120)
    for pragma in PRAGMAS:
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


def bulk(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_bulk(trial))


def reads(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_reads(trial))


def write_sync(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_write_sync(trial))


def write_concurrent(trial: Trial) -> dict[str, Any]:
    return asyncio.run(_write_concurrent(trial))


GROUPS = {"bulk": bulk, "reads": reads, "write_sync": write_sync, "write_concurrent": write_concurrent}
