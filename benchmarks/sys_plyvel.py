"""Anchor: LevelDB through plyvel, the C++ LSM that QuantaDB's design follows.

Configuration: defaults (4 MiB write buffer, snappy compression) plus a 10-bit bloom filter and a
64 MiB block cache, the same cache budget QuantaDB gets in the read rows. Durable writes use
``sync=True`` (WAL fsynced before the write returns); LevelDB does its own group commit across
threads. Iterators are closed after each range scan.
"""

from __future__ import annotations

import threading
from itertools import islice
from typing import Any

import plyvel
from _harness import (
    Trial,
    big_batches,
    big_metrics,
    cpu_ns,
    latency_summary,
    now_ns,
    proc_io,
    random_keys,
    user_bytes,
    vm_rss,
)


def _open(path: str) -> plyvel.DB:
    return plyvel.DB(path, create_if_missing=True, bloom_filter_bits=10, lru_cache_size=64 << 20)


def bulk(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    db = _open(str(trial.fresh_dir("plyvel")))
    t = now_ns()
    with db.write_batch(sync=True) as wb:
        for k, v in records:
            wb.put(k, v)
    elapsed = now_ns() - t
    db.close()
    return {"bulk_insert": {"total_ms": elapsed / 1e6, "us_per_record": elapsed / 1e3 / len(records)}}


def _read_phase(db: plyvel.DB, trial: Trial, suffix: str, keys: list[bytes]) -> dict[str, Any]:
    p = trial.params
    wl = set(trial.workloads)
    out: dict[str, Any] = {}
    for k in keys[:1000]:
        db.get(k)
    if "get" + suffix in wl:
        misses = 0
        t, c = now_ns(), cpu_ns()
        for k in keys:
            if db.get(k) is None:
                misses += 1
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["get" + suffix] = {
            "us_per_op": elapsed / 1e3 / len(keys),
            "cpu_us_per_op": cpu / 1e3 / len(keys),
            "misses": misses,
        }
    if "get_many" + suffix in wl:
        # LevelDB has no multi-get; a comprehension over get() is what a caller would write.
        t, c = now_ns(), cpu_ns()
        values = [db.get(k) for k in keys]
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
            with db.iterator(start=start) as it:
                for _k, _v in islice(it, p["scan_len"]):
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
        with db.iterator() as it:
            for _k, _v in it:
                rows += 1
        elapsed, cpu = now_ns() - t, cpu_ns() - c
        out["scan_full" + suffix] = {"total_ms": elapsed / 1e6, "cpu_ms": cpu / 1e6, "rows": rows}
    return out


def reads(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    keys = random_keys(records, trial.params["get_ops"], trial.seed + 1)
    path = str(trial.fresh_dir("plyvel"))
    db = _open(path)
    with db.write_batch(sync=True) as wb:
        for k, v in records:
            wb.put(k, v)
    out = _read_phase(db, trial, "", keys)
    if any(w.endswith("_reopen") for w in trial.workloads):
        db.close()
        db = _open(path)
        for k, _v in records:  # warm pass
            db.get(k)
        out.update(_read_phase(db, trial, "_reopen", keys))
    db.close()
    return out


def write_sync(trial: Trial) -> dict[str, Any]:
    records = trial.records()[: trial.params["write_ops"]]
    db = _open(str(trial.fresh_dir("plyvel")))
    lat = []
    t0 = now_ns()
    for k, v in records:
        t = now_ns()
        db.put(k, v, sync=True)
        lat.append(now_ns() - t)
    total = now_ns() - t0
    db.close()
    return {"write_sync": {**latency_summary(lat, ""), "writes_per_s": len(records) / (total / 1e9)}}


def write_concurrent(trial: Trial) -> dict[str, Any]:
    p = trial.params
    writers, per = p["conc_writers"], p["conc_per_writer"]
    records = trial.records()[: writers * per]
    db = _open(str(trial.fresh_dir("plyvel")))
    barrier = threading.Barrier(writers + 1)

    def worker(w: int) -> None:
        barrier.wait()
        for k, v in records[w::writers]:
            db.put(k, v, sync=True)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(writers)]
    for th in threads:
        th.start()
    barrier.wait()
    t = now_ns()
    for th in threads:
        th.join()
    elapsed = now_ns() - t
    stored = sum(1 for _ in db.iterator(include_value=False))
    db.close()
    return {"write_concurrent": {"writes_per_s": len(records) / (elapsed / 1e9), "stored": stored}}


def reopen(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    path = str(trial.fresh_dir("plyvel"))
    db = _open(path)
    with db.write_batch(sync=True) as wb:
        for k, v in records:
            wb.put(k, v)
    db.close()
    t = now_ns()
    db = _open(path)
    opened = now_ns()
    db.get(records[len(records) // 2][0])
    first = now_ns()
    db.close()
    return {"reopen": {"open_ms": (opened - t) / 1e6, "first_get_ms": (first - opened) / 1e6}}


def big(trial: Trial) -> dict[str, Any]:
    p = trial.params
    path = str(trial.fresh_dir("plyvel"))
    rss0 = vm_rss()
    io0 = proc_io().get("wchar", 0)
    db = _open(path)
    elapsed = 0
    ub = 0
    for batch in big_batches(trial.records(), p["big_n"], p["big_batch"]):
        ub += user_bytes(batch)
        t = now_ns()
        with db.write_batch(sync=True) as wb:
            for k, v in batch:
                wb.put(k, v)
        elapsed += now_ns() - t
    rss_end = vm_rss()
    t = now_ns()
    db.close()  # waits for the running background compaction
    close_s = (now_ns() - t) / 1e9
    wchar = proc_io().get("wchar", 0) - io0
    return {
        "big": {
            **big_metrics(elapsed, ub, path, wchar, rss0, rss_end),
            "close_s": close_s,
        }
    }


GROUPS = {
    "bulk": bulk,
    "reads": reads,
    "write_sync": write_sync,
    "write_concurrent": write_concurrent,
    "reopen": reopen,
    "big": big,
}
