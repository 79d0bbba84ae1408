"""The operations rows (issue 14): what QuantaDB and its anchors share, and the child processes.

Used by ``ops_quanta.py`` (QuantaDB's side of the ``ops_*`` groups), by the anchors' modules
(``sys_sqlite3.py``, ``sys_aiosqlite.py``, ``sys_lmdb.py``) and by the standalone scripts
``backup.py``, ``jsonl.py`` and ``readers.py``. This module does not import ``quanta``, so an
anchor's child process does not pay for (or measure the memory of) importing it.

- **Backup** data: ``backup_records(mib)``, random 100-byte values under 16-byte keys ``key:%012d``;
  the writer beside a backup commits single puts of ``hot:%08d`` keys. ``measure_async`` (a
  writer task and a loop-lag probe on the event loop) and ``measure_threaded`` (a writer thread,
  for the synchronous anchors) run a ``work`` callable again and again (the backups) and keep
  the commit latencies and loop lags taken while a ``work`` call ran; ``during_metrics`` turns
  them into the rows' metrics.
- **Transfer** data: ``user_record(i)``, one user (the JSON shape both systems export).
  Export and import phases run in a child process each (``transfer_child``), and each peak RSS
  is that phase's own (``VmHWM``, reset when the phase starts).
- **Readers**: ``start_readers`` / ``collect_readers`` run reader child processes (QuantaDB's
  follower, or the sqlite poll loop) that print ``ready``, then one JSON line at the end.

Children: ``python ops_model.py transfer SYSTEM PHASE PATH FILE COUNT`` and ``python ops_model.py
reader SYSTEM PATH INTERVAL STOP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# ------------------------------------------------------------------------------------- backup

BACKUP_VALUE_SIZE = 100
BACKUP_BATCH = 20_000
HOT_KEYS = 10_000
HOT_VALUE = b"v" * 100


def backup_count(mib: int) -> int:
    """Keys in a backup database of ``mib`` MiB of user data (16-byte keys, 100-byte values)."""
    return (mib << 20) // (BACKUP_VALUE_SIZE + 16)


def backup_batches(mib: int, seed: int = 42) -> Iterator[list[tuple[bytes, bytes]]]:
    """The backup database's records in batches of ``BACKUP_BATCH``, keys ascending; random
    (incompressible) values, the same bytes for the same seed."""
    rng = random.Random(seed)
    n = backup_count(mib)
    for start in range(0, n, BACKUP_BATCH):
        yield [(b"key:%012d" % i, rng.randbytes(BACKUP_VALUE_SIZE)) for i in range(start, min(n, start + BACKUP_BATCH))]


#: The rows measured by the backups beside the database (one set of trials, three rows).
SAME_FS_ROWS = ("ops_backup", "ops_backup_commit", "ops_backup_loop_lag")


@contextlib.contextmanager
def backup_dests(workloads: list[str], workdir: str) -> Iterator[list[tuple[tuple[str, ...], str]]]:
    """``(rows, dest)`` for each backup phase the trial asked for: beside the database (the
    same file system), then in a temporary directory on ``/dev/shm`` (another one), removed
    afterwards."""
    wl = set(workloads)
    phases: list[tuple[tuple[str, ...], str]] = []
    shm = None
    if wl & set(SAME_FS_ROWS):
        phases.append((SAME_FS_ROWS, os.path.join(workdir, "backup")))
    if "ops_backup_copy" in wl:
        if not os.path.isdir("/dev/shm"):
            raise RuntimeError("ops_backup_copy needs /dev/shm (another file system)")
        shm = tempfile.mkdtemp(prefix="quanta-bench-backup-", dir="/dev/shm")
        phases.append((("ops_backup_copy",), os.path.join(shm, "backup")))
    try:
        yield phases
    finally:
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)


def hot_key(i: int) -> bytes:
    return b"hot:%08d" % (i % HOT_KEYS)


class During:
    """Commit latencies and loop lags, each stamped with its end time, and the windows in
    which the work ran; ``inside`` keeps what ended inside a window (all of it without work)."""

    def __init__(self) -> None:
        self.latencies: list[tuple[float, float]] = []
        self.lags: list[tuple[float, float]] = []
        self.windows: list[tuple[float, float]] = []
        self.results: list[dict[str, Any]] = []

    def inside(self, samples: list[tuple[float, float]]) -> list[float]:
        if not self.windows:
            return [x for _t, x in samples]
        return [x for t, x in samples if any(a <= t <= b for a, b in self.windows)]


async def measure_async(
    commit: Callable[[int], Awaitable[None]],
    work: Callable[[], Awaitable[dict[str, Any]]] | None,
    *,
    runs: int | None = None,
    seconds: float | None = None,
    warmup: float = 0.2,
    lag_interval: float = 0.001,
) -> During:
    """A writer task (``await commit(i)`` again and again) and a probe (``asyncio.sleep
    (lag_interval)`` and how late it wakes) on the running loop; after ``warmup`` seconds,
    ``await work()`` ``runs`` times or until ``seconds`` passed (without ``work``: just wait
    ``seconds``)."""
    d = During()
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            await commit(i)
            now = time.perf_counter()
            d.latencies.append((now, now - t))
            i += 1

    async def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(lag_interval)
            now = time.perf_counter()
            d.lags.append((now, now - t - lag_interval))

    tasks = [asyncio.create_task(writer()), asyncio.create_task(probe())]
    try:
        await asyncio.sleep(warmup)
        started = time.perf_counter()
        while work is not None and _more(d, runs, seconds, started):
            t = time.perf_counter()
            d.results.append(await work())
            d.windows.append((t, time.perf_counter()))
        if work is None and seconds:
            await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return d


def measure_threaded(
    commit: Callable[[int], None],
    work: Callable[[], dict[str, Any]] | None,
    *,
    runs: int | None = None,
    seconds: float | None = None,
    warmup: float = 0.2,
) -> During:
    """``measure_async`` for a synchronous system: the writer is a thread (``commit(i)``), the
    work runs on the calling thread; no event loop, so no loop lag."""
    d = During()
    stop = threading.Event()
    failure: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                t = time.perf_counter()
                commit(i)
                now = time.perf_counter()
                d.latencies.append((now, now - t))
                i += 1
        except BaseException as exc:  # reported by the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        time.sleep(warmup)
        started = time.perf_counter()
        while work is not None and _more(d, runs, seconds, started):
            t = time.perf_counter()
            d.results.append(work())
            d.windows.append((t, time.perf_counter()))
        if work is None and seconds:
            time.sleep(seconds)
    finally:
        stop.set()
        thread.join(timeout=60)
    if failure:
        raise failure[0]
    return d


def _more(d: During, runs: int | None, seconds: float | None, started: float) -> bool:
    if runs is not None and len(d.results) >= runs:
        return False
    return seconds is None or time.perf_counter() - started < seconds


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q / 100))]


def during_metrics(d: During, baseline: During | None = None) -> dict[str, Any]:
    """The backup rows' metrics: MB/s of the backups (median; ``bytes`` and ``seconds`` of each
    run), commit latency p50/p99/max and loop lag p99/max during them, in milliseconds."""
    lat = d.inside(d.latencies)
    lag = d.inside(d.lags)
    out: dict[str, Any] = {
        "mb_per_s": statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in d.results) if d.results else None,
        "backup_s": statistics.median(r["seconds"] for r in d.results) if d.results else None,
        "backup_mib": d.results[-1]["bytes"] / 2**20 if d.results else None,
        "backups": len(d.results),
        "commits_during": len(lat),
        "commit_p50_ms": _pct(lat, 50) * 1e3,
        "commit_p99_ms": _pct(lat, 99) * 1e3,
        "commit_max_ms": max(lat) * 1e3 if lat else float("nan"),
    }
    if d.lags:
        out["loop_lag_p99_ms"] = _pct(lag, 99) * 1e3
        out["loop_lag_max_ms"] = max(lag) * 1e3 if lag else float("nan")
    if baseline is not None:
        base = baseline.inside(baseline.latencies)
        out["baseline_commit_p99_ms"] = _pct(base, 99) * 1e3
        out["baseline_commit_max_ms"] = max(base) * 1e3 if base else float("nan")
        if baseline.lags:
            out["baseline_loop_lag_max_ms"] = max(baseline.inside(baseline.lags)) * 1e3
    for key in ("tables", "linked", "copied"):
        if d.results and key in d.results[-1]:
            out[key] = d.results[-1][key]
    return out


# ----------------------------------------------------------------------------------- transfer

USER_CITIES = ("Oslo", "Lyon", "Kyiv", "Lima", "Pune")
USER_T0 = datetime(2024, 1, 1, tzinfo=UTC)


def user_record(i: int) -> dict[str, Any]:
    """User ``i`` of the transfer and repair rows (``id`` is ``i + 1``, QuantaDB's auto key)."""
    return {
        "email": f"user{i}@example.com",
        "name": f"User {i}",
        "city": USER_CITIES[i % 5],
        "age": i % 90,
        "tags": ["a", f"t{i % 7}"],
        "created": USER_T0 + timedelta(seconds=i),
        "meta": {"n": i, "ok": i % 2 == 0},
    }


def maxrss_mib() -> float:
    """``ru_maxrss`` of this process (KiB on Linux). On Linux it is inherited through fork and
    exec: a child's starts at its parent's peak, so it is reported for reference only."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mib() -> float:
    """Resident set size of this process now (``VmRSS``), NaN without ``/proc``."""
    return _status_mib("VmRSS")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0:
    ``/proc/self/clear_refs``); False when that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak RSS of this process since it started or since ``reset_peak_rss`` (``VmHWM``)."""
    return _status_mib("VmHWM")


def transfer_child(system: str, phase: str, path: str, file: str, count: int) -> dict[str, Any]:
    """In the child: run one phase (``fill``, ``export`` or ``import``) of ``system`` and
    measure it: seconds, records/s, the file's MB/s and memory. The peak is reset when the
    phase starts (``reset_peak_rss``), so ``peak_rss_mib`` is the phase's own absolute peak
    (``VmHWM``: the interpreter and the imports included) and ``rss_growth_mib`` = that peak
    minus the RSS when the phase started. ``maxrss_mib`` (``ru_maxrss``) is for reference:
    on Linux it starts at the parent's peak."""
    if system == "quanta":
        import ops_quanta as side
    else:
        import ops_sqlite as side  # type: ignore[no-redef]
    start = rss_mib()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs): no per-phase memory figure")
    t = time.perf_counter()
    n = side.transfer_phase(phase, path, file, count)
    seconds = time.perf_counter() - t
    peak = peak_rss_mib()
    size = os.path.getsize(file) if os.path.exists(file) else 0
    return {
        "phase": phase,
        "records": n,
        "seconds": seconds,
        "records_per_s": n / seconds,
        "file_mb_per_s": size / seconds / 1e6 if phase != "fill" else None,
        "file_bytes": size,
        "rss_start_mib": start,
        "peak_rss_mib": peak,
        "rss_growth_mib": peak - start,
        "rss_end_mib": rss_mib(),
        "maxrss_mib": maxrss_mib(),
    }


def run_transfer(system: str, phase: str, path: str, file: str, count: int, timeout: float = 900) -> dict[str, Any]:
    """Run ``transfer_child`` in a fresh interpreter; its result."""
    out = subprocess.run(
        [sys.executable, str(HERE / "ops_model.py"), "transfer", system, phase, path, file, str(count)],
        check=True,
        timeout=timeout,
        capture_output=True,
        text=True,
        env=_child_env(),
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _child_env() -> dict[str, str]:
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + old if old else "")}


# ------------------------------------------------------------------------------------ readers


def start_readers(
    system: str, path: str, n: int, interval: float, stop: int, kind: str = "both"
) -> list[subprocess.Popen[str]]:
    """``n`` reader processes of ``system`` following the database at ``path``; returns once
    every one is ready (has opened and subscribed). Each stops when it sees row ``stop``.
    ``kind``: what a QuantaDB reader holds (``ops_quanta.READER_KINDS``)."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "ops_model.py"), "reader", system, path, str(interval), str(stop), kind],
            stdout=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        for _ in range(n)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a {system} reader process did not start (said {line!r})")
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    return procs


def collect_readers(procs: list[subprocess.Popen[str]], timeout: float = 120) -> tuple[list[int], float, int]:
    """Every reader's lags (ns), the CPU seconds the readers used in all after they were ready
    (following the writer, not starting up), and how many rows they saw in all."""
    lags: list[int] = []
    cpu = 0.0
    seen = 0
    for p in procs:
        assert p.stdout is not None
        try:
            out = json.loads(p.stdout.readline())
            p.wait(timeout=timeout)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        lags += out["lags"]
        cpu += out["cpu"]
        seen += out["seen"]
    return lags, cpu, seen


def lag_metrics(lags_ns: list[int]) -> dict[str, Any]:
    ms = sorted(x / 1e6 for x in lags_ns)
    return {
        "samples": len(ms),
        "p50_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": _pct(ms, 99),
        "max_ms": ms[-1] if ms else float("nan"),
    }


def reader_cost_metrics(alone: float, with_readers: float, cpu_per_commit: float, readers: int = 4) -> dict[str, Any]:
    """The writer-cost row: throughput with ``readers`` reader processes over throughput alone."""
    return {
        "vs_no_readers": with_readers / alone,
        "cost_pct": (1 - with_readers / alone) * 100,
        "ops_per_s_alone": alone,
        "ops_per_s_with_readers": with_readers,
        "reader_cpu_us_per_commit": cpu_per_commit * 1e6,
        "readers": readers,
    }


def reader_child(system: str, path: str, interval: float, stop: int, kind: str) -> None:
    if system == "quanta":
        import ops_quanta

        asyncio.run(ops_quanta.reader(path, interval, stop, kind))
    else:
        import ops_sqlite

        ops_sqlite.ops_reader(path, interval, stop)


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind == "transfer":
        print(json.dumps(transfer_child(rest[0], rest[1], rest[2], rest[3], int(rest[4]))), flush=True)
    elif kind == "reader":
        reader_child(rest[0], rest[1], float(rest[2]), int(rest[3]), rest[4])
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
