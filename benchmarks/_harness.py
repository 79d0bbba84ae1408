"""Shared pieces of the benchmark suite: the dataset, timing, machine facts, process facts.

Nothing here is timed itself. Every benchmark trial runs in its own child process (see
``run.py``), so a trial starts with a fresh heap, a fresh event loop and its own ``maxrss``;
these helpers are what every trial, QuantaDB's or an anchor's, shares so that both sides are
measured with exactly the same dataset, the same key order and the same clock.

The dataset
-----------
Record ``i`` is ``(b"user:%08d" % i, msgpack.packb({...}))``: keys ascend with ``i``; the value is a
deterministic ~100-byte msgpack dict drawn from ``random.Random(seed)``. ``run.py`` generates it
once per run and stores it as one msgpack file that each trial loads (~30 ms for 100k records),
instead of every trial regenerating it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

KEY_FORMAT = b"user:%08d"
_FIRST = ("ada", "alan", "grace", "edsger", "barbara", "donald", "ken", "dennis", "radia", "leslie")
_LAST = ("lovelace", "turing", "hopper", "dijkstra", "liskov", "knuth", "thompson", "ritchie", "perlman")
_CITY = ("Amsterdam", "Berlin", "Cairo", "Denver", "Edinburgh", "Fukuoka", "Geneva", "Helsinki", "Istanbul")


def make_key(i: int) -> bytes:
    return KEY_FORMAT % i


def make_value(rng: random.Random, i: int) -> bytes:
    first = rng.choice(_FIRST)
    last = rng.choice(_LAST)
    return msgpack.packb(
        {
            "name": f"{first.title()} {last.title()}",
            "email": f"{first}.{last}{rng.randrange(10_000)}@example.org",
            "age": rng.randrange(18, 99),
            "city": rng.choice(_CITY),
            "id": i,
            "score": round(rng.random() * 1000, 3),
            "tags": [rng.choice(("a", "b", "c", "d")) for _ in range(3)],
        }
    )


def make_records(n: int, seed: int = 42, start: int = 0) -> list[tuple[bytes, bytes]]:
    """Records ``start .. start+n-1``; the same (seed, start) always gives the same bytes."""
    rng = random.Random(seed * 1_000_003 + start)
    return [(make_key(i), make_value(rng, i)) for i in range(start, start + n)]


def big_batches(records: Sequence[tuple[bytes, bytes]], total: int, batch: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """Batches of records ``0 .. total-1`` for the 1M-key row: fresh keys, values reused
    cyclically from the dataset (generating a million msgpack dicts would take longer than
    inserting them; value reuse does not change what any system writes)."""
    n = len(records)
    for start in range(0, total, batch):
        yield [(make_key(i), records[i % n][1]) for i in range(start, min(total, start + batch))]


def write_dataset(path: Path, n: int, seed: int) -> None:
    records = make_records(n, seed)
    path.write_bytes(msgpack.packb([[k, v] for k, v in records], use_bin_type=True))


def load_dataset(path: str | Path) -> list[tuple[bytes, bytes]]:
    raw = msgpack.unpackb(Path(path).read_bytes(), raw=False, use_list=False)
    return list(raw)


def random_keys(records: Sequence[tuple[bytes, bytes]], count: int, seed: int) -> list[bytes]:
    """``count`` keys drawn uniformly (with replacement) from the records: all exist."""
    rng = random.Random(seed)
    n = len(records)
    return [records[rng.randrange(n)][0] for _ in range(count)]


def user_bytes(records: Sequence[tuple[bytes, bytes]]) -> int:
    return sum(len(k) + len(v) for k, v in records)


# --------------------------------------------------------------------------------------- timing

now_ns = time.perf_counter_ns
#: CPU time of the calling thread: immune to the OS descheduling the process, so on a loaded
#: machine it isolates what the code itself costs. Meaningful for rows whose work runs on the
#: measuring thread (every read row here except aiosqlite's, whose work runs on its own thread).
cpu_ns = time.thread_time_ns


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an unsorted sequence; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def latency_summary(ns: Sequence[int], prefix: str, unit: str = "us") -> dict[str, float]:
    """Median / p99 / max of per-op latencies given in nanoseconds, converted to ``unit``."""
    div = {"us": 1e3, "ms": 1e6}[unit]
    return {
        f"{prefix}p50_{unit}": percentile(ns, 50) / div,
        f"{prefix}p99_{unit}": percentile(ns, 99) / div,
        f"{prefix}max_{unit}": (max(ns) / div) if ns else float("nan"),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ------------------------------------------------------------------------------ event-loop lag


class LagMonitor:
    """A task that sleeps ``interval`` seconds in a loop and records how late it wakes up.

    Two numbers per tick:

    - ``samples``: the wall-clock overshoot, what any coroutine on this loop experiences. It
      includes time the loop thread was not running at all (the OS gave the core to another
      process: on a 2-core machine QuantaDB's own flush/compaction worker processes compete
      with the loop for the cores, and so does anything else running).
    - ``on_cpu``: ``min(overshoot, CPU time the loop thread used during the tick)``, an upper
      bound on the part of the overshoot spent running code on the loop (the engine's
      callbacks and the load generator), i.e. what the event loop's own work costs.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.samples: list[int] = []  # wall-clock overshoot, ns
        self.on_cpu: list[int] = []  # overshoot bounded by the loop thread's CPU time, ns
        self._stop = False

    async def run(self) -> None:
        interval_ns = int(self.interval * 1e9)
        cpu = time.thread_time_ns
        while not self._stop:
            t, c = now_ns(), cpu()
            await asyncio.sleep(self.interval)
            over = now_ns() - t - interval_ns
            self.samples.append(over)
            self.on_cpu.append(min(over, cpu() - c))

    def stop(self) -> None:
        self._stop = True


def lag_summary(samples: list[int], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}p50_ms": percentile(samples, 50) / 1e6,
        f"{prefix}p99_ms": percentile(samples, 99) / 1e6,
        f"{prefix}max_ms": (max(samples) / 1e6) if samples else float("nan"),
        f"{prefix}ticks": len(samples),
    }


# --------------------------------------------------------------- change bus and transactions rows


CHANGE_WARMUP = 200
"""Commits before the change-latency rows start recording (every system alike)."""


class ChangeReceiver:
    """The consumer side of the change-latency rows. The consumer calls ``take(key, t)`` with
    ``t = now_ns()`` taken first thing on receipt; ``take`` checks that the item is the commit
    the writer is waiting for and wakes the writer."""

    def __init__(self) -> None:
        self.got = asyncio.Event()
        self.at = 0
        self.expect: bytes | None = None
        self.received = 0
        self.mismatches = 0

    def take(self, key: bytes | None, t: int) -> None:
        self.at = t
        self.received += 1
        if key != self.expect:
            self.mismatches += 1
        self.got.set()


async def change_ping_pong(
    items: Sequence[tuple[bytes, bytes]],
    commit: Any,
    receiver: ChangeReceiver,
    *,
    after: Any = None,
    warmup: int = CHANGE_WARMUP,
) -> dict[str, float]:
    """The writer side of the change-latency rows: one commit at a time, each awaited with
    ``await commit(key, value)``; ``t1 = now_ns()`` right after it returns; then ``after(key,
    value)`` if given (the anchor's hand-off to its queue, part of what is measured); then wait
    until the consumer took it, so the next commit starts with nothing queued (latency, not
    queueing). The first ``warmup`` commits are not recorded.

    Reported, in microseconds: ``p50/p99/max_us`` = consumer's stamp - t1 (negative when the
    consumer got the commit before the writer resumed), ``from_call_*`` = consumer's stamp -
    the moment ``commit`` was called, ``put_*`` = commit call to return."""
    lat: list[int] = []
    from_call: list[int] = []
    put_lat: list[int] = []
    got = receiver.got
    # One deadline for the whole run (no per-commit timer between t1 and the writer's yield):
    # a lost change fails the trial instead of hanging it.
    async with asyncio.timeout(120 + 0.05 * len(items)):
        for i, (key, value) in enumerate(items):
            receiver.expect = key
            got.clear()
            t0 = now_ns()
            await commit(key, value)
            t1 = now_ns()
            if after is not None:
                after(key, value)
            if not got.is_set():
                await got.wait()
            if i >= warmup:
                lat.append(receiver.at - t1)
                from_call.append(receiver.at - t0)
                put_lat.append(t1 - t0)
    return {
        **latency_summary(lat, ""),
        "p999_us": percentile(lat, 99.9) / 1e3,
        "received_before_return": sum(1 for x in lat if x < 0) / len(lat) if lat else float("nan"),
        **latency_summary(from_call, "from_call_"),
        **latency_summary(put_lat, "put_"),
        "commits": len(lat),
        "mismatches": receiver.mismatches,
    }


def change_items(
    records: Sequence[tuple[bytes, bytes]], count: int, prefix: bytes, start: int = 0
) -> list[tuple[bytes, bytes]]:
    """Single-put commits of the change-bus rows: fresh keys ``prefix + %08d`` numbered from
    ``start``, the dataset's values (~100 bytes) reused cyclically."""
    return [(prefix + b"%08d" % (start + i), records[i % len(records)][1]) for i in range(count)]


#: A transaction row's value: a 20-digit counter padded to 100 bytes (the size of the dataset's
#: values), so read-modify-write is "parse, add one, format" on every system.
TXN_VALUE_PAD = b"." * 80


def txn_value(counter: int) -> bytes:
    return b"%020d" % counter + TXN_VALUE_PAD


def txn_counter(value: bytes | None) -> int:
    if value is None:
        raise ValueError("a transaction row's counter key is missing")
    return int(value[:20])


@dataclass(frozen=True)
class TxnConfig:
    """One transaction row: ``count`` read-modify-write transactions over ``keys`` counters
    (keys ``<row name>/%06d``, so rows can share a database), split over ``tasks`` tasks or
    threads, with ``durability`` ("sync" or "os")."""

    name: str
    durability: str
    keys: int
    tasks: int
    count: int
    seed: int

    def key(self, i: int) -> bytes:
        return b"%s/%06d" % (self.name.encode(), i)

    def all_keys(self) -> list[bytes]:
        return [self.key(i) for i in range(self.keys)]

    def initial(self) -> list[tuple[bytes, bytes]]:
        """The preloaded key space: every counter at zero."""
        return [(self.key(i), txn_value(0)) for i in range(self.keys)]

    def ops(self) -> list[tuple[bytes, ...]]:
        """The transactions, the same for every system (and, up to the key prefix, for both
        durabilities and task counts): each names 1 or 2 distinct keys (half and half), drawn
        uniformly at random; it reads them, then writes each back with its counter plus one.
        Task ``w`` of ``tasks`` runs ``ops[w::tasks]``."""
        rng = random.Random(self.seed + self.keys)
        out: list[tuple[bytes, ...]] = []
        for _ in range(self.count):
            a = rng.randrange(self.keys)
            if self.keys > 1 and rng.random() < 0.5:
                b = rng.randrange(self.keys - 1)
                out.append((self.key(a), self.key(b if b < a else b + 1)))
            else:
                out.append((self.key(a),))
        return out


def txn_configs(trial: Trial) -> list[TxnConfig]:
    """The transaction rows this trial runs, in row order."""
    p = trial.params
    out = []
    for durability in ("sync", "os"):
        for space, keys in (("uniform", p["txn_keys"]), ("hot", p["txn_hot_keys"])):
            for tasks in (1, 8):
                name = f"txn_{durability}_{space}_{tasks}"
                if name in trial.workloads:
                    count = p[f"txn_count_{durability}"]
                    out.append(TxnConfig(name, durability, keys, tasks, count, trial.seed))
    return out


def txn_lost_updates(ops: Sequence[tuple[bytes, ...]], final_values: Sequence[bytes | None]) -> int:
    """Increments that the final state does not account for (must be 0: every committed
    transaction added one to each of its keys, so the counters must sum to the key writes)."""
    expected = sum(len(op) for op in ops)
    return expected - sum(txn_counter(v) for v in final_values)


def txn_metrics(committed: int, elapsed_ns: int, lat: Sequence[int]) -> dict[str, float]:
    """What every system reports for one transaction configuration."""
    return {
        "tx_per_s": committed / (elapsed_ns / 1e9),
        "committed": committed,
        **latency_summary(lat, "tx_"),
    }


# ------------------------------------------------------------------------------------ trial I/O


@dataclass
class Trial:
    """What one child process is asked to do: one workload group on one system, one repeat."""

    group: str
    system: str
    repeat: int
    workloads: list[str]
    params: dict[str, Any]
    dataset: str
    workdir: str
    seed: int = 42
    _records: list[tuple[bytes, bytes]] | None = field(default=None, repr=False)

    def records(self) -> list[tuple[bytes, bytes]]:
        """The dataset, loaded once per trial (every system gets the same objects)."""
        if self._records is None:
            self._records = load_dataset(self.dataset)
        return self._records

    def fresh_dir(self, name: str) -> Path:
        path = Path(self.workdir) / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


def dir_bytes(path: str | Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total


# -------------------------------------------------------------------------------- process facts


def _status_field(name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def vm_rss() -> int | None:
    """Current resident set size in bytes (``/proc/self/status`` VmRSS)."""
    return _status_field("VmRSS")


def max_rss() -> int:
    """Peak resident set size of this process in bytes (``getrusage`` maxrss, KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def children_max_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def big_metrics(
    elapsed_ns: int, user: int, path: str | Path, wchar: int, rss_start: int | None, rss_end: int | None
) -> dict[str, float]:
    """The metrics every system reports for the 1M-key row (computed after the timing)."""
    return {
        "insert_s": elapsed_ns / 1e9,
        "user_mib": user / 2**20,
        "disk_mib": dir_bytes(path) / 2**20,
        "write_amp_wchar": wchar / user,
        "rss_start_mib": (rss_start or 0) / 2**20,
        "rss_end_mib": (rss_end or 0) / 2**20,
        "maxrss_mib": max_rss() / 2**20,
    }


def proc_io() -> dict[str, int]:
    """``/proc/self/io`` counters: ``wchar`` counts bytes passed to write(2)-like calls by any
    thread of this process (not by its child processes)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/io") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = int(v)
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _fs_type(path: str) -> str:
    best = ("", "unknown")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt, fstype = parts[1], parts[2]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best[0]):
                    best = (mnt, fstype)
    except OSError:
        pass
    return best[1]


def fsync_probe(directory: str, count: int = 100) -> float:
    """Median microseconds of append-100-bytes + fdatasync on ``directory``'s filesystem: the
    floor under every durable-write row."""
    fd, name = tempfile.mkstemp(dir=directory, prefix="fsync-probe-")
    try:
        samples = []
        for _ in range(count):
            os.write(fd, b"x" * 100)
            t = now_ns()
            os.fdatasync(fd)
            samples.append(now_ns() - t)
        return percentile(samples, 50) / 1e3
    finally:
        os.close(fd)
        os.unlink(name)


def _git_state() -> str:
    """Commit and dirtiness of the QuantaDB checkout being measured (``quanta/`` only)."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "quanta"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in quanta/" if dirty else "")


def machine_info(bench_dir: str) -> dict[str, Any]:
    import sqlite3

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "platform": platform.platform(),
        "mem_total_gib": None,
        "bench_dir": bench_dir,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "bench_fs": _fs_type(os.path.realpath(bench_dir)),
        "fdatasync_us_p50": round(fsync_probe(bench_dir), 1),
        "quanta_git": _git_state(),
        "versions": {
            "quanta-db": _version("quanta-db"),
            "msgpack": _version("msgpack"),
            "sortedcontainers": _version("sortedcontainers"),
            "anyio": _version("anyio"),
            "sqlite (library)": sqlite3.sqlite_version,
            "aiosqlite": _version("aiosqlite"),
            "plyvel": _version("plyvel"),
            "lmdb (py-lmdb)": _version("lmdb"),
        },
    }
    try:
        import lmdb

        info["versions"]["lmdb (library)"] = ".".join(map(str, lmdb.version()))
    except Exception:  # pragma: no cover - optional
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            info["mem_total_gib"] = round(kb / 2**20, 1)
    except OSError:
        pass
    return info


@contextlib.contextmanager
def suppress_gc_freeze() -> Iterator[None]:
    """Move everything allocated so far (the dataset) out of the GC's generations, so a trial's
    collections scan only what the system under test allocates. Applied to every system alike."""
    import gc

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
