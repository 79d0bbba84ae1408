"""Anchor: LMDB through py-lmdb, used the way its documentation recommends.

Configuration: one environment per trial, ``sync=True`` and ``metasync=True`` (the defaults: every
write transaction is durable at commit), ``map_size`` large enough never to grow. Reads run inside
one long-lived read transaction (LMDB's natural way to do many reads; a transaction per get is
reported beside it as ``get_us_txn_per_op``). Batches use ``Cursor.putmulti`` in one write
transaction.

Transaction rows: one write transaction per read-modify-write (``get`` then ``put`` per key),
from 1 or 8 threads on one environment. Rows that QuantaDB runs with ``durability="os"`` open
the environment with ``sync=False, metasync=False`` (commits reach the OS, not the disk).

Backup rows (``ops_backup`` group, see ``ops_sqlite``): the same ``ops_model.backup_batches``
(``putmulti``, one write transaction per batch); a writer thread commits single puts (one
write transaction each, synced) while ``Environment.copy(dest)`` (LMDB's hot backup, a
consistent copy from one read transaction) runs on the main thread.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from itertools import islice
from typing import Any

import lmdb
import ops_model as om
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
    txn_configs,
    txn_counter,
    txn_lost_updates,
    txn_metrics,
    txn_value,
    user_bytes,
    vm_rss,
)

MAP_SIZE = 4 << 30


def _open(path: str, map_size: int = MAP_SIZE, sync: bool = True) -> lmdb.Environment:
    return lmdb.open(path, map_size=map_size, sync=sync, metasync=sync, max_dbs=0)


def bulk(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    env = _open(str(trial.fresh_dir("lmdb")))
    t = now_ns()
    with env.begin(write=True) as txn:
        txn.cursor().putmulti(records)
    elapsed = now_ns() - t
    env.close()
    return {"bulk_insert": {"total_ms": elapsed / 1e6, "us_per_record": elapsed / 1e3 / len(records)}}


def _read_phase(env: lmdb.Environment, trial: Trial, suffix: str, keys: list[bytes]) -> dict[str, Any]:
    p = trial.params
    out: dict[str, Any] = {}
    wl = set(trial.workloads)
    with env.begin() as txn:
        for k in keys[:1000]:  # warm-up, identical for every system
            txn.get(k)
        if "get" + suffix in wl:
            misses = 0
            t, c = now_ns(), cpu_ns()
            for k in keys:
                if txn.get(k) is None:
                    misses += 1
            elapsed, cpu = now_ns() - t, cpu_ns() - c
            out["get" + suffix] = {
                "us_per_op": elapsed / 1e3 / len(keys),
                "cpu_us_per_op": cpu / 1e3 / len(keys),
                "misses": misses,
            }
        if "get_many" + suffix in wl:
            t, c = now_ns(), cpu_ns()
            values = [txn.get(k) for k in keys]
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
                cur = txn.cursor()
                cur.set_range(start)
                for _k, _v in islice(cur.iternext(), p["scan_len"]):
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
            for _k, _v in txn.cursor():
                rows += 1
            elapsed, cpu = now_ns() - t, cpu_ns() - c
            out["scan_full" + suffix] = {"total_ms": elapsed / 1e6, "cpu_ms": cpu / 1e6, "rows": rows}
    if "get" + suffix in wl:
        # Informational: a read transaction per get (what a naive wrapper would do).
        sub = keys[: min(len(keys), 20_000)]
        t = now_ns()
        for k in sub:
            with env.begin() as txn:
                txn.get(k)
        out["get" + suffix]["us_per_op_txn_per_get"] = (now_ns() - t) / 1e3 / len(sub)
    return out


def reads(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    keys = random_keys(records, trial.params["get_ops"], trial.seed + 1)
    path = str(trial.fresh_dir("lmdb"))
    env = _open(path)
    with env.begin(write=True) as txn:
        txn.cursor().putmulti(records)
    out = _read_phase(env, trial, "", keys)
    if any(w.endswith("_reopen") for w in trial.workloads):
        env.close()
        env = _open(path)
        with env.begin() as txn:  # warm pass: every key once, like every other system
            for k, _v in records:
                txn.get(k)
        out.update(_read_phase(env, trial, "_reopen", keys))
    env.close()
    return out


def write_sync(trial: Trial) -> dict[str, Any]:
    records = trial.records()[: trial.params["write_ops"]]
    env = _open(str(trial.fresh_dir("lmdb")))
    lat = []
    t0 = now_ns()
    for k, v in records:
        t = now_ns()
        with env.begin(write=True) as txn:
            txn.put(k, v)
        lat.append(now_ns() - t)
    total = now_ns() - t0
    env.close()
    return {"write_sync": {**latency_summary(lat, ""), "writes_per_s": len(records) / (total / 1e9)}}


def write_concurrent(trial: Trial) -> dict[str, Any]:
    p = trial.params
    writers, per = p["conc_writers"], p["conc_per_writer"]
    records = trial.records()[: writers * per]
    env = _open(str(trial.fresh_dir("lmdb")))
    barrier = threading.Barrier(writers + 1)

    def worker(w: int) -> None:
        mine = records[w::writers]
        barrier.wait()
        for k, v in mine:
            with env.begin(write=True) as txn:
                txn.put(k, v)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(writers)]
    for th in threads:
        th.start()
    barrier.wait()
    t = now_ns()
    for th in threads:
        th.join()
    elapsed = now_ns() - t
    with env.begin() as txn:
        count = txn.stat()["entries"]
    env.close()
    return {"write_concurrent": {"writes_per_s": len(records) / (elapsed / 1e9), "stored": count}}


def reopen(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    path = str(trial.fresh_dir("lmdb"))
    env = _open(path)
    with env.begin(write=True) as txn:
        txn.cursor().putmulti(records)
    env.close()
    t = now_ns()
    env = _open(path)
    opened = now_ns()
    with env.begin() as txn:
        txn.get(records[len(records) // 2][0])
    first = now_ns()
    env.close()
    return {"reopen": {"open_ms": (opened - t) / 1e6, "first_get_ms": (first - opened) / 1e6}}


def big(trial: Trial) -> dict[str, Any]:
    p = trial.params
    path = str(trial.fresh_dir("lmdb"))
    rss0 = vm_rss()
    io0 = proc_io().get("wchar", 0)
    env = _open(path, map_size=8 << 30)
    elapsed = 0
    ub = 0
    for batch in big_batches(trial.records(), p["big_n"], p["big_batch"]):
        ub += user_bytes(batch)
        t = now_ns()
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(batch)
        elapsed += now_ns() - t
    rss_end = vm_rss()
    env.close()
    wchar = proc_io().get("wchar", 0) - io0
    return {
        "big": {
            **big_metrics(elapsed, ub, path, wchar, rss0, rss_end),
        }
    }


def _txn_run(trial: Trial, cfg: TxnConfig) -> dict[str, Any]:
    """``cfg.count`` read-modify-write transactions split over ``cfg.tasks`` threads on one
    environment: each is one write transaction, ``get`` then ``put`` per key. LMDB admits one
    write transaction at a time (the others wait for its lock), so none aborts. A fresh
    environment per row."""
    env = _open(str(trial.fresh_dir(cfg.name)), sync=cfg.durability == "sync")
    with env.begin(write=True) as txn:
        txn.cursor().putmulti(cfg.initial())
    ops = cfg.ops()
    barrier = threading.Barrier(cfg.tasks + 1)
    errors: list[BaseException] = []
    lat: list[int] = []

    def worker(w: int) -> None:
        barrier.wait()
        try:
            for op in ops[w :: cfg.tasks]:
                t = now_ns()
                with env.begin(write=True) as txn:
                    values = [txn.get(k) for k in op]
                    for k, v in zip(op, values, strict=True):
                        txn.put(k, txn_value(txn_counter(v) + 1))
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
    with env.begin() as txn:
        final = [txn.get(k) for k in cfg.all_keys()]
    env.close()
    return {**txn_metrics(len(lat), elapsed, lat), "lost_updates": txn_lost_updates(ops, final)}


def txn(trial: Trial) -> dict[str, Any]:
    return {cfg.name: _txn_run(trial, cfg) for cfg in txn_configs(trial)}


def _backup_into(env: lmdb.Environment, dest: str) -> dict[str, Any]:
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    t = time.perf_counter()
    env.copy(dest)
    return {"bytes": os.path.getsize(os.path.join(dest, "data.mdb")), "seconds": time.perf_counter() - t}


def _count_backup(dest: str) -> int:
    copy = lmdb.open(dest, readonly=True, lock=False, max_dbs=0)
    try:
        with copy.begin() as txn:
            cur = txn.cursor()
            n = 0
            if cur.set_range(b"key:"):
                for k in cur.iternext(keys=True, values=False):
                    if not k.startswith(b"key:"):
                        break
                    n += 1
    finally:
        copy.close()
    return n


def ops_backup(trial: Trial) -> dict[str, Any]:
    p = trial.params
    env = _open(str(trial.fresh_dir("lmdb")))
    t = time.perf_counter()
    n = 0
    for batch in om.backup_batches(p["ops_backup_mib"], trial.seed):
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(batch)
        n += len(batch)
    load_s = time.perf_counter() - t

    def commit(i: int) -> None:
        with env.begin(write=True) as txn:
            txn.put(om.hot_key(i), om.HOT_VALUE)

    baseline = om.measure_threaded(commit, None, seconds=p["ops_baseline_s"])
    out: dict[str, Any] = {}
    try:
        with om.backup_dests(trial.workloads, trial.workdir) as phases:
            for rows, dest in phases:
                d = om.measure_threaded(commit, lambda dest=dest: _backup_into(env, dest), runs=p["ops_backup_runs"])
                m = om.during_metrics(d, baseline)
                m.update(keys=n, bad_backups=int(_count_backup(dest) != n), load_s=load_s)
                out.update(dict.fromkeys(rows, m))
    finally:
        env.close()
    return out


GROUPS = {
    "ops_backup": ops_backup,
    "bulk": bulk,
    "reads": reads,
    "write_sync": write_sync,
    "write_concurrent": write_concurrent,
    "reopen": reopen,
    "big": big,
    "txn": txn,
}
