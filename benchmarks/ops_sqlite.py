"""Anchor: SQLite (``sqlite3``) on the operations rows (issue 14); see ``ops_quanta.py``.

- ``ops_backup``: the ``kv`` table of ``sys_sqlite3`` (WAL, ``synchronous=FULL``) holding the
  same ``ops_model.backup_batches`` (one transaction per batch); a writer thread with its own
  connection commits single ``INSERT OR REPLACE`` puts throughout; each backup is
  ``Connection.backup(dest)`` (SQLite's online backup API, all pages in one step, from another
  connection) into a fresh file beside the database, then into ``/dev/shm``. The last backup
  of each phase is opened and must hold every loaded key.
- ``ops_transfer``: ``users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name, city,
  age, tags, created, meta)`` with an index on ``city`` (the same two indexes as QuantaDB's
  ``BenchUser``, one unique), ``synchronous=NORMAL`` (QuantaDB runs ``durability="os"``);
  ``tags`` and ``meta`` are JSON text, ``created`` ISO 8601 text. Export: a header line (the
  schema SQL), then ``SELECT`` in ``id`` order and one ``json.dumps`` per row, in the shape
  QuantaDB writes (``{"entity": ..., "record": {...}}``, ``tags``/``meta`` as JSON values).
  Import into an empty database (table and indexes created first): ``json.loads`` per line and
  one ``executemany`` in one transaction. Each phase in its own child process. Repair:
  ``REINDEX users`` (rebuilds both indexes), then ``PRAGMA integrity_check`` (untimed).
- ``ops_readers``: ``tick (id INTEGER PRIMARY KEY, lane, stamp, seq)`` with indexes on ``lane``
  and ``seq``, WAL, ``synchronous=NORMAL``; the writer sets ``seq`` to its commit counter. Each
  reader process polls ``PRAGMA data_version`` every ``ops_follow_interval`` seconds and, when it
  changed, reads the changed rows (``WHERE seq > last``): what a SQLite application does to
  follow another process's writes. Lag is read time minus the writer's stamp, lane-0 rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime
from typing import Any

import ops_model as om
from _harness import Trial
from sys_sqlite3 import PRAGMAS, PRAGMAS_OS, PUT, connect

# ------------------------------------------------------------------------------------- backup


def load_backup_db(conn: sqlite3.Connection, mib: int, seed: int) -> int:
    n = 0
    for batch in om.backup_batches(mib, seed):
        conn.execute("BEGIN")
        conn.executemany(PUT, batch)
        conn.execute("COMMIT")
        n += len(batch)
    return n


def remove_db_files(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def backup_into(src: str, dest: str) -> dict[str, Any]:
    """One online backup of ``src`` into a fresh ``dest`` file, from a connection of its own."""
    remove_db_files(dest)
    t = time.perf_counter()
    source = sqlite3.connect(src, isolation_level=None)
    target = sqlite3.connect(dest, isolation_level=None)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return {"bytes": os.path.getsize(dest), "seconds": time.perf_counter() - t}


def count_backup(dest: str) -> int:
    conn = sqlite3.connect(dest)
    try:
        row = conn.execute("SELECT count(*) FROM kv WHERE k >= ? AND k < ?", (b"key:", b"key;")).fetchone()
    finally:
        conn.close()
    return int(row[0])


def _backup(trial: Trial) -> dict[str, Any]:
    p = trial.params
    path = str(trial.fresh_dir("sqlite3") / "db.sqlite")
    conn = connect(path, PRAGMAS)
    t = time.perf_counter()
    n = load_backup_db(conn, p["ops_backup_mib"], trial.seed)
    load_s = time.perf_counter() - t

    def commit(i: int) -> None:
        conn.execute(PUT, (om.hot_key(i), om.HOT_VALUE))

    baseline = om.measure_threaded(commit, None, seconds=p["ops_baseline_s"])

    out: dict[str, Any] = {}
    try:
        with om.backup_dests(trial.workloads, trial.workdir) as phases:
            for rows, dest in phases:
                d = om.measure_threaded(commit, lambda dest=dest: backup_into(path, dest), runs=p["ops_backup_runs"])
                m = om.during_metrics(d, baseline)
                m.update(keys=n, bad_backups=int(count_backup(dest) != n), load_s=load_s)
                out.update(dict.fromkeys(rows, m))
    finally:
        conn.close()
    return out


# ----------------------------------------------------------------------------------- transfer

USERS_SCHEMA = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, "
    "city TEXT NOT NULL, age INTEGER NOT NULL, tags TEXT NOT NULL, created TEXT, meta TEXT)",
    "CREATE INDEX users_city ON users (city)",
)
PUT_USER = "INSERT INTO users (id, email, name, city, age, tags, created, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
BATCH = 10_000


def _users_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS_OS:
        conn.execute(pragma)
    for sql in USERS_SCHEMA:
        conn.execute(sql.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS").replace("INDEX", "INDEX IF NOT EXISTS"))
    return conn


def _row(i: int) -> tuple[Any, ...]:
    r = om.user_record(i)
    created = r["created"].isoformat() if r["created"] is not None else None
    return (i + 1, r["email"], r["name"], r["city"], r["age"], json.dumps(r["tags"]), created, json.dumps(r["meta"]))


def fill(path: str, count: int) -> None:
    conn = _users_db(path)
    try:
        for start in range(0, count, BATCH):
            conn.execute("BEGIN")
            conn.executemany(PUT_USER, (_row(i) for i in range(start, min(start + BATCH, count))))
            conn.execute("COMMIT")
    finally:
        conn.close()


def export(path: str, file: str) -> int:
    conn = _users_db(path)
    n = 0
    dumps, loads = json.dumps, json.loads
    try:
        with open(file, "w", encoding="utf-8") as f:
            schema = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
            f.write(dumps({"format": "sqlite-jsonl", "version": 1, "schema": schema}) + "\n")
            for i, email, name, city, age, tags, created, meta in conn.execute("SELECT * FROM users ORDER BY id"):
                record = {
                    "id": i,
                    "email": email,
                    "name": name,
                    "city": city,
                    "age": age,
                    "tags": loads(tags),
                    "created": created,
                    "meta": loads(meta) if meta is not None else None,
                }
                f.write(dumps({"entity": "BenchUser", "record": record}) + "\n")
                n += 1
    finally:
        conn.close()
    return n


def import_(path: str, file: str) -> int:
    """Import into an empty database; the users it then holds."""
    conn = _users_db(path)
    dumps, loads = json.dumps, json.loads

    def rows() -> Any:
        with open(file, encoding="utf-8") as f:
            next(f)  # the header
            for line in f:
                r = loads(line)["record"]
                if r["created"] is not None:
                    datetime.fromisoformat(r["created"])  # validated, as QuantaDB's import does
                tags, meta = dumps(r["tags"]), dumps(r["meta"])
                yield (r["id"], r["email"], r["name"], r["city"], r["age"], tags, r["created"], meta)

    try:
        conn.execute("BEGIN")
        conn.executemany(PUT_USER, rows())
        conn.execute("COMMIT")
        return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
    finally:
        conn.close()


def transfer_phase(phase: str, path: str, file: str, count: int) -> int:
    """One phase in a child process (``ops_model.transfer_child``); records handled."""
    if phase == "fill":
        fill(path, count)
        return count
    if phase == "export":
        return export(path, file)
    if phase == "import":
        return import_(path, file)
    raise ValueError(f"unknown phase {phase!r}")


def _transfer(trial: Trial) -> dict[str, Any]:
    n = trial.params["ops_users"]
    wl = set(trial.workloads)
    root = trial.fresh_dir("sqlite3")
    src, dst, file = str(root / "src.sqlite"), str(root / "dst.sqlite"), str(root / "export.jsonl")
    t = time.perf_counter()
    fill(src, n)
    out: dict[str, Any] = {"_info": {"fill_s": time.perf_counter() - t}}
    if wl & {"ops_export", "ops_export_rss", "ops_import", "ops_import_rss"}:
        out["ops_export"] = out["ops_export_rss"] = om.run_transfer("sqlite3", "export", src, file, n)
        if wl & {"ops_import", "ops_import_rss"}:
            out["ops_import"] = out["ops_import_rss"] = om.run_transfer("sqlite3", "import", dst, file, n)
    if "ops_repair" in wl:
        conn = _users_db(src)
        try:
            t = time.perf_counter()
            conn.execute("REINDEX users")
            seconds = time.perf_counter() - t
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            records = int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
            indexes = int(conn.execute("SELECT count(*) FROM pragma_index_list('users')").fetchone()[0])
        finally:
            conn.close()
        out["ops_repair"] = {
            "records_per_s": records / seconds,
            "seconds": seconds,
            "records": records,
            "indexes": indexes,
            "integrity_ok": int(ok),
        }
    return out


# ------------------------------------------------------------------------------------ readers

TICK_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tick (id INTEGER PRIMARY KEY, lane INTEGER, stamp INTEGER, seq INTEGER)",
    "CREATE INDEX IF NOT EXISTS tick_lane ON tick (lane)",
    "CREATE INDEX IF NOT EXISTS tick_seq ON tick (seq)",
)
PUT_TICK = "INSERT OR REPLACE INTO tick (id, lane, stamp, seq) VALUES (?, ?, ?, ?)"
READER_STOP = 10**9


def _tick_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    for pragma in PRAGMAS_OS:
        conn.execute(pragma)
    for sql in TICK_SCHEMA:
        conn.execute(sql)
    return conn


def ops_reader(path: str, interval: float, stop_id: int) -> None:
    """A reader process: poll ``PRAGMA data_version``; on a change, read the rows changed
    since the last look. Prints ``ready``, then (after row ``stop_id``) its lags as JSON."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    version = conn.execute("PRAGMA data_version").fetchone()[0]
    last = conn.execute("SELECT coalesce(max(seq), 0) FROM tick").fetchone()[0]
    lags: list[int] = []
    seen = 0
    cpu0 = time.process_time()  # the CPU spent following, not starting
    print("ready", flush=True)
    done = False
    while not done:
        time.sleep(interval)
        v = conn.execute("PRAGMA data_version").fetchone()[0]
        if v == version:
            continue
        version = v
        rows = conn.execute("SELECT id, lane, stamp, seq FROM tick WHERE seq > ? ORDER BY seq", (last,)).fetchall()
        now = time.monotonic_ns()
        for i, lane, stamp, seq in rows:
            last = seq
            if i == stop_id:
                done = True
            elif lane == 0:
                seen += 1
                if stamp:
                    lags.append(now - stamp)
    conn.close()
    print(json.dumps({"lags": lags, "cpu": time.process_time() - cpu0, "seen": seen}), flush=True)


def lag_run(path: str, commits: int, interval: float, readers: int = 4) -> dict[str, Any]:
    conn = _tick_db(path)
    try:
        conn.execute(PUT_TICK, (0, 1, 0, 0))
        procs = om.start_readers("sqlite3", path, readers, interval, READER_STOP)
        for i in range(1, commits + 1):
            conn.execute(PUT_TICK, (i % 200, 0, time.monotonic_ns(), i))
            time.sleep(0.002)
        conn.execute(PUT_TICK, (READER_STOP, 0, time.monotonic_ns(), commits + 1))
        lags, _cpu, seen = om.collect_readers(procs)
    finally:
        conn.close()
    return {**om.lag_metrics(lags), "readers": len(procs), "seen": seen, "commits": commits}


def throughput_run(path: str, ops: int, readers: int, interval: float) -> tuple[float, float]:
    conn = _tick_db(path)
    try:
        conn.execute(PUT_TICK, (0, 1, 0, 0))
        procs = om.start_readers("sqlite3", path, readers, interval, READER_STOP)
        put = conn.execute
        t = time.perf_counter()
        for i in range(1, ops + 1):
            put(PUT_TICK, (i % 5000, i % 2, 0, i))
        elapsed = time.perf_counter() - t
        conn.execute(PUT_TICK, (READER_STOP, 0, time.monotonic_ns(), ops + 1))
        _lags, cpu, _seen = om.collect_readers(procs)
    finally:
        conn.close()
    return ops / elapsed, cpu / ops


def _readers(trial: Trial) -> dict[str, Any]:
    p = trial.params
    wl = set(trial.workloads)
    root = trial.fresh_dir("sqlite3")
    interval = p["ops_follow_interval"]
    out: dict[str, Any] = {}
    if "ops_reader_lag" in wl:
        out["ops_reader_lag"] = lag_run(str(root / "lag.sqlite"), p["ops_lag_commits"], interval)
    if "ops_reader_cost" in wl:
        ops = p["ops_reader_ops"]
        base, _ = throughput_run(str(root / "t0.sqlite"), ops, 0, interval)
        with_readers, cpu = throughput_run(str(root / "t4.sqlite"), ops, 4, interval)
        out["ops_reader_cost"] = om.reader_cost_metrics(base, with_readers, cpu)
    return out


GROUPS = {"ops_backup": _backup, "ops_transfer": _transfer, "ops_readers": _readers}
