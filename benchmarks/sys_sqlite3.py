"""Anchor: SQLite through the standard library's ``sqlite3`` module.

Configuration: ``journal_mode=WAL``; ``synchronous=FULL`` (every commit fsyncs the WAL) in every
durable row; a 64 MiB page cache; the table ``kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID`` so the
rows live in the primary-key B-tree, like a key-value store. Writes are ``INSERT OR REPLACE`` (a
put is an upsert). Autocommit mode (``isolation_level=None``): batches are explicit
``BEGIN``/``COMMIT``. Statements are parameterized, so sqlite3's statement cache reuses them.

Transaction rows: ``BEGIN IMMEDIATE``, ``SELECT`` and ``UPDATE`` per key, ``COMMIT``, from 1 or 8
threads, each with its own connection. Rows that QuantaDB runs with ``durability="os"`` use
``synchronous=NORMAL`` (a WAL commit without fsync) instead of ``FULL``.

Entity rows (``entities_model.py``): the table ``users (id INTEGER PRIMARY KEY, email TEXT, name
TEXT, city TEXT, age INTEGER)`` (all ``NOT NULL``; a rowid table keyed by ``id``, SQLite's fastest
layout for integer keys) with the same secondary indexes as QuantaDB's entity class, the same
pragmas (``synchronous=FULL``) and ``INSERT OR REPLACE`` (QuantaDB's ``put`` is an upsert too).
Every read builds a :class:`~entities_model.UserRow` dataclass per returned row, as QuantaDB
builds an entity object.
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from typing import Any

import entities_model as em
from _harness import (
    Trial,
    TxnConfig,
    big_batches,
    big_metrics,
    cpu_ns,
    latency_summary,
    now_ns,
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

SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID"
PUT = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"
GET = "SELECT v FROM kv WHERE k = ?"
RANGE = "SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?"
FULL = "SELECT k, v FROM kv ORDER BY k"
UPDATE = "UPDATE kv SET v = ? WHERE k = ?"
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA cache_size=-65536")
#: The rows QuantaDB runs with ``durability="os"``: ``synchronous=NORMAL``, with which a WAL-mode
#: commit is not fsynced (it survives a process crash, not a power cut), as in QuantaDB.
PRAGMAS_OS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA cache_size=-65536")
PRAGMAS_BY_DURABILITY = {"sync": PRAGMAS, "os": PRAGMAS_OS}


def connect(path: str, pragmas: tuple[str, ...] = PRAGMAS) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=120)
    for pragma in pragmas:
        conn.execute(pragma)
    conn.execute(SCHEMA)
    return conn


def _load(conn: sqlite3.Connection, records: list[tuple[bytes, bytes]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(PUT, records)
    conn.execute("COMMIT")


def bulk(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    conn = connect(str(trial.fresh_dir("sqlite") / "db.sqlite"))
    t = now_ns()
    _load(conn, records)
    elapsed = now_ns() - t
    conn.close()
    return {"bulk_insert": {"total_ms": elapsed / 1e6, "us_per_record": elapsed / 1e3 / len(records)}}


def get_many(conn: sqlite3.Connection, keys: list[bytes], chunk: int = 500) -> list[bytes | None]:
    """Multi-get: ``WHERE k IN (...)`` per chunk of keys, answers put back in the asked order."""
    out: list[bytes | None] = []
    sql = f"SELECT k, v FROM kv WHERE k IN ({','.join('?' * chunk)})"
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        q = sql if len(part) == chunk else f"SELECT k, v FROM kv WHERE k IN ({','.join('?' * len(part))})"
        found = dict(conn.execute(q, part).fetchall())
        out.extend(found.get(k) for k in part)
    return out


def _read_phase(conn: sqlite3.Connection, trial: Trial, suffix: str, keys: list[bytes]) -> dict[str, Any]:
    p = trial.params
    wl = set(trial.workloads)
    out: dict[str, Any] = {}
    for k in keys[:1000]:
        conn.execute(GET, (k,)).fetchone()
    if "get" + suffix in wl:
        misses = 0
        t, c = now_ns(), cpu_ns()
        for k in keys:
            if conn.execute(GET, (k,)).fetchone() is None:
                misses += 1
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["get" + suffix] = {
            "us_per_op": elapsed / 1e3 / len(keys),
            "cpu_us_per_op": cpu / 1e3 / len(keys),
            "misses": misses,
        }
    if "get_many" + suffix in wl:
        t, c = now_ns(), cpu_ns()
        values = get_many(conn, keys)
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["get_many" + suffix] = {
            "us_per_key": elapsed / 1e3 / len(keys),
            "cpu_us_per_key": cpu / 1e3 / len(keys),
            "misses": values.count(None),
        }
    if "scan_range" + suffix in wl:
        starts = random_keys(trial.records(), p["scans"], trial.seed + 7)
        rows = 0
        t, c = now_ns(), cpu_ns()
        for start in starts:
            for _k, _v in conn.execute(RANGE, (start, p["scan_len"])):
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
        for _k, _v in conn.execute(FULL):
            rows += 1
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["scan_full" + suffix] = {"total_ms": elapsed / 1e6, "cpu_ms": cpu / 1e6, "rows": rows}
    return out


def reads(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    keys = random_keys(records, trial.params["get_ops"], trial.seed + 1)
    path = str(trial.fresh_dir("sqlite") / "db.sqlite")
    conn = connect(path)
    _load(conn, records)
    out = _read_phase(conn, trial, "", keys)
    if any(w.endswith("_reopen") for w in trial.workloads):
        conn.close()
        conn = connect(path)
        for k, _v in records:  # warm pass
            conn.execute(GET, (k,)).fetchone()
        out.update(_read_phase(conn, trial, "_reopen", keys))
    conn.close()
    return out


def write_sync(trial: Trial) -> dict[str, Any]:
    records = trial.records()[: trial.params["write_ops"]]
    conn = connect(str(trial.fresh_dir("sqlite") / "db.sqlite"))
    lat = []
    t0 = now_ns()
    for kv in records:
        t = now_ns()
        conn.execute(PUT, kv)
        lat.append(now_ns() - t)
    total = now_ns() - t0
    conn.close()
    return {"write_sync": {**latency_summary(lat, ""), "writes_per_s": len(records) / (total / 1e9)}}


def write_concurrent(trial: Trial) -> dict[str, Any]:
    """Eight threads, each with its own connection, each doing autocommit synced inserts.
    SQLite admits one writer at a time; the others wait in the busy handler (timeout 120 s)."""
    p = trial.params
    writers, per = p["conc_writers"], p["conc_per_writer"]
    records = trial.records()[: writers * per]
    path = str(trial.fresh_dir("sqlite") / "db.sqlite")
    connect(path).close()
    conns = [connect(path) for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        conn = conns[w]
        barrier.wait()
        try:
            for kv in records[w::writers]:
                conn.execute(PUT, kv)
        except BaseException as exc:  # reported, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(writers)]
    for th in threads:
        th.start()
    barrier.wait()
    t = now_ns()
    for th in threads:
        th.join()
    elapsed = now_ns() - t
    if errors:
        raise errors[0]
    stored = conns[0].execute("SELECT count(*) FROM kv").fetchone()[0]
    for c in conns:
        c.close()
    return {"write_concurrent": {"writes_per_s": len(records) / (elapsed / 1e9), "stored": stored}}


def reopen(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    path = str(trial.fresh_dir("sqlite") / "db.sqlite")
    conn = connect(path)
    _load(conn, records)
    conn.close()
    t = now_ns()
    conn = connect(path)
    opened = now_ns()
    conn.execute(GET, (records[len(records) // 2][0],)).fetchone()
    first = now_ns()
    conn.close()
    return {"reopen": {"open_ms": (opened - t) / 1e6, "first_get_ms": (first - opened) / 1e6}}


def big(trial: Trial) -> dict[str, Any]:
    p = trial.params
    directory = trial.fresh_dir("sqlite")
    rss0 = vm_rss()
    io0 = proc_io().get("wchar", 0)
    conn = connect(str(directory / "db.sqlite"))
    elapsed = 0
    ub = 0
    for batch in big_batches(trial.records(), p["big_n"], p["big_batch"]):
        ub += user_bytes(batch)
        t = now_ns()
        _load(conn, batch)
        elapsed += now_ns() - t
    rss_end = vm_rss()
    conn.close()
    wchar = proc_io().get("wchar", 0) - io0
    return {
        "big": {
            **big_metrics(elapsed, ub, directory, wchar, rss0, rss_end),
        }
    }


def _txn_run(trial: Trial, cfg: TxnConfig) -> dict[str, Any]:
    """``cfg.count`` read-modify-write transactions split over ``cfg.tasks`` threads, each with
    its own connection: ``BEGIN IMMEDIATE``, one ``SELECT`` per key, one ``UPDATE`` per key,
    ``COMMIT``. SQLite admits one writer at a time (the others wait in the busy handler), so a
    transaction never aborts. A fresh database per row."""
    path = str(trial.fresh_dir(cfg.name) / "db.sqlite")
    pragmas = PRAGMAS_BY_DURABILITY[cfg.durability]
    conn = connect(path, pragmas)
    _load(conn, cfg.initial())
    conns = [connect(path, pragmas) for _ in range(cfg.tasks)]
    ops = cfg.ops()
    barrier = threading.Barrier(cfg.tasks + 1)
    errors: list[BaseException] = []
    lat: list[int] = []

    def worker(w: int) -> None:
        c = conns[w]
        barrier.wait()
        try:
            for op in ops[w :: cfg.tasks]:
                t = now_ns()
                c.execute("BEGIN IMMEDIATE")
                values = [c.execute(GET, (k,)).fetchone()[0] for k in op]
                for k, v in zip(op, values, strict=True):
                    c.execute(UPDATE, (txn_value(txn_counter(v) + 1), k))
                c.execute("COMMIT")
                lat.append(now_ns() - t)
        except BaseException as exc:  # reported, not swallowed
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(cfg.tasks)]
    for th in pool:
        th.start()
    barrier.wait()
    t = now_ns()
    for th in pool:
        th.join()
    elapsed = now_ns() - t
    if errors:
        raise errors[0]
    final = get_many(conn, cfg.all_keys())
    for c in [conn, *conns]:
        c.close()
    return {**txn_metrics(len(lat), elapsed, lat), "lost_updates": txn_lost_updates(ops, final)}


def txn(trial: Trial) -> dict[str, Any]:
    return {cfg.name: _txn_run(trial, cfg) for cfg in txn_configs(trial)}


# ------------------------------------------------------------------------------------- entities

USERS = (
    "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, "
    "city TEXT NOT NULL, age INTEGER NOT NULL)"
)
#: The same secondary indexes as QuantaDB's entity classes (sys_quanta.py): one per group.
BULK_INDEXES = ("CREATE INDEX IF NOT EXISTS users_city ON users (city)",)
READ_INDEXES = (
    "CREATE INDEX IF NOT EXISTS users_age ON users (age)",
    "CREATE INDEX IF NOT EXISTS users_city_age ON users (city, age)",
)
PUT_USER = "INSERT OR REPLACE INTO users (id, email, name, city, age) VALUES (?, ?, ?, ?, ?)"
_COLS = "SELECT id, email, name, city, age FROM users"
GET_USER = _COLS + " WHERE id = ?"
RANGE_USERS = _COLS + " WHERE age BETWEEN ? AND ? ORDER BY age, id LIMIT ?"
COMPOSITE_USERS = _COLS + " WHERE city = ? AND age >= ?"
SCAN_USERS = _COLS + " WHERE name = ?"
_fields = operator.attrgetter(*em.FIELDS)


def _users_db(path: str, indexes: tuple[str, ...]) -> sqlite3.Connection:
    conn = connect(path)
    conn.execute(USERS)
    for sql in indexes:
        conn.execute(sql)
    return conn


def _put_users(conn: sqlite3.Connection, users: list[em.UserRow]) -> None:
    """The bulk load: one transaction, ``executemany`` over the objects' field values."""
    conn.execute("BEGIN")
    conn.executemany(PUT_USER, map(_fields, users))
    conn.execute("COMMIT")


def entity_bulk(trial: Trial) -> dict[str, Any]:
    rows = em.user_rows(trial.records())
    users = [em.UserRow(*r) for r in rows]
    with suppress_gc_freeze():  # the inputs are not the system's garbage (QuantaDB's trial alike)
        conn = _users_db(str(trial.fresh_dir("sqlite") / "db.sqlite"), BULK_INDEXES)
        t, c = now_ns(), cpu_ns()
        _put_users(conn, users)
        elapsed, cpu = now_ns() - t, cpu_ns() - c
    stored = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    city = rows[0][3]
    by_city = conn.execute("SELECT count(*) FROM users WHERE city = ?", (city,)).fetchone()[0]
    conn.close()
    if stored != len(rows) or by_city != sum(1 for r in rows if r[3] == city):
        raise em.WrongResult(f"entity_bulk: {stored} users stored ({by_city} in {city})")
    return {
        "entity_bulk": {
            "total_ms": elapsed / 1e6,
            "us_per_entity": elapsed / 1e3 / len(rows),
            "cpu_ms": cpu / 1e6,
            "stored": stored,
        }
    }


def _get_users(conn: sqlite3.Connection, pks: list[int], chunk: int = 500) -> list[em.UserRow | None]:
    """``get_many``: ``WHERE id IN (...)`` per chunk of ids, objects in the asked order."""
    out: list[em.UserRow | None] = []
    sql = f"{_COLS} WHERE id IN ({','.join('?' * chunk)})"
    for i in range(0, len(pks), chunk):
        part = pks[i : i + chunk]
        q = sql if len(part) == chunk else f"{_COLS} WHERE id IN ({','.join('?' * len(part))})"
        found = {r[0]: em.UserRow(*r) for r in conn.execute(q, part)}
        out.extend(found.get(pk) for pk in part)
    return out


def _users(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[em.UserRow]:
    return [em.UserRow(*r) for r in conn.execute(sql, args)]


def _in_sql(cities: tuple[str, ...]) -> str:
    return f"{_COLS} WHERE city IN ({','.join('?' * len(cities))})"


def _entity_query_row(
    name: str,
    conn: sqlite3.Connection,
    ops: list[tuple[str, tuple[Any, ...], list[em.Row]]],
    *,
    ordered: bool,
) -> dict[str, Any]:
    """Time each query (statement to list of objects); check it after its timing."""
    elapsed = cpu = entities = 0
    for sql, args, expected in ops:
        t, c = now_ns(), cpu_ns()
        got = _users(conn, sql, args)
        elapsed += now_ns() - t
        cpu += cpu_ns() - c
        entities += len(got)
        em.check(name, f"{sql} {args}", got, expected, ordered=ordered)
    return em.query_metrics(elapsed, cpu, len(ops), entities)


def entity_reads(trial: Trial) -> dict[str, Any]:
    """Load the users (one transaction), checkpoint the WAL into the database file (as QuantaDB
    flushes and compacts: every row in its final structure), warm up, then each row in turn
    (see sys_quanta's ``_entity_reads`` for the warm-up, which is the same here)."""
    rows = em.user_rows(trial.records())
    users = [em.UserRow(*r) for r in rows]
    q = em.queries(rows, trial.params, trial.seed)
    ref = em.Reference(rows)
    wl = set(trial.workloads)
    out: dict[str, Any] = {}
    ranges = [(RANGE_USERS, (lo, hi, q.range_len), ref.range(lo, hi, q.range_len)) for lo, hi in q.ranges]
    composite = [(COMPOSITE_USERS, (c, y), ref.composite(c, y)) for c, y in q.composite]
    in_ = [(_in_sql(cs), cs, ref.in_(cs)) for cs in q.in_sets]
    scans = [(SCAN_USERS, (n,), ref.scan(n)) for n in q.scan_names]
    with suppress_gc_freeze():  # the inputs and answers are not the system's garbage
        conn = _users_db(str(trial.fresh_dir("sqlite") / "db.sqlite"), READ_INDEXES)
        _put_users(conn, users)
        del users
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _get_users(conn, [r[0] for r in rows])  # warm-up (untimed): every user once
        for sql, args, _exp in (ranges[0], composite[0], in_[0], scans[0]):
            _users(conn, sql, args)
        if "entity_get" in wl:
            pks = q.get_pks
            got: list[em.UserRow | None] = []
            t, c = now_ns(), cpu_ns()
            for pk in pks:
                row = conn.execute(GET_USER, (pk,)).fetchone()
                got.append(None if row is None else em.UserRow(*row))
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
            many = _get_users(conn, pks)
            elapsed, cpu = now_ns() - t, cpu_ns() - c
            em.check_gets("entity_get_many", many, pks, ref)
            out["entity_get_many"] = {
                "us_per_entity": elapsed / 1e3 / len(pks),
                "cpu_us_per_entity": cpu / 1e3 / len(pks),
                "returned": len(many),
            }
            del many
        if "entity_range_query" in wl:
            out["entity_range_query"] = _entity_query_row("entity_range_query", conn, ranges, ordered=True)
        if "entity_composite" in wl:
            out["entity_composite"] = _entity_query_row("entity_composite", conn, composite, ordered=False)
        if "entity_in" in wl:
            out["entity_in"] = _entity_query_row("entity_in", conn, in_, ordered=False)
        if "entity_scan_filter" in wl:
            out["entity_scan_filter"] = _entity_query_row("entity_scan_filter", conn, scans, ordered=False)
    plans = {
        sql: [d for *_, d in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
        for sql, args, _ in (ranges[0], composite[0], in_[0], scans[0])
    }
    conn.close()
    out["_info"] = {"query_plans": plans}
    return out


GROUPS = {
    "bulk": bulk,
    "reads": reads,
    "write_sync": write_sync,
    "write_concurrent": write_concurrent,
    "reopen": reopen,
    "big": big,
    "txn": txn,
    "entity_bulk": entity_bulk,
    "entity_reads": entity_reads,
}
