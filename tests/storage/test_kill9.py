"""kill -9 at random moments: every acknowledged commit survives, no batch is ever partial.

A child process (tests/support/kill9_child.py) writes to a real directory with durability="sync" and
tiny memtables, so WAL rotations, flushes and compactions -- in the child's worker processes
-- run all the time. It prints the id of each commit after the commit returned. We SIGKILL
its whole process group (the child and its workers) at a random moment, sometimes while it is
still starting up or recovering, then reopen the directory here and check:

* every acknowledged commit is there, entirely;
* a commit that was in flight (issued, not acknowledged) is there entirely or not at all, and
  whichever it is stays so in every later recovery (no lost, no resurrected data);
* overwrites and deletes resolve to the newest surviving commit; nothing unknown appears;
* ``verify()`` is clean.

One directory lives through ``PER_DIR`` kill/recover cycles, so recovery also meets the
leftovers of earlier crashes. CI runs 20 cycles; the slow test runs 200 (QUANTA_LONG=1: 1000)
and prints ``kill -9: N/N survived, recovery p50/p99 ms``.

Random moments rarely hit the few milliseconds that open takes, so two more tests kill a
child deterministically at *every* file-system step of open: while it creates a new
database, and while it recovers one whose WAL holds commits.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kill9_child import (
    DELETE_BACK,
    ID_SPAN,
    batch_key,
    batch_size,
    is_batch,
    single_key,
    value_of,
    writer_key,
)

import quanta

CHILD = str(Path(__file__).parent.parent / "support" / "kill9_child.py")
LONG = os.environ.get("QUANTA_LONG") == "1"
WRITERS = 3
PER_DIR = 10  # kill/recover cycles on one directory before starting a fresh one


@dataclass
class Iteration:
    number: int
    acked: set[int] = field(default_factory=set)
    last_acked: dict[int, int] = field(default_factory=dict)  # writer -> last acknowledged id

    def issued(self) -> list[int]:
        """Every id the child may have started: acknowledged ones, plus each writer's next."""
        base = self.number * ID_SPAN
        ids = []
        for w in range(WRITERS):
            last = self.last_acked.get(w, base + w - WRITERS)
            ids.extend(range(base + w, last + WRITERS + 1, WRITERS))
        return sorted(ids)


@dataclass
class Directory:
    """One database directory and everything known about the commits made to it."""

    path: Path
    iterations: list[Iteration] = field(default_factory=list)
    verdicts: dict[int, bool] = field(default_factory=dict)  # id -> applied, fixed once seen


@dataclass
class Totals:
    cycles: int = 0
    survived: int = 0
    recovery_ms: list[float] = field(default_factory=list)
    acked: int = 0
    in_flight_applied: int = 0
    in_flight_absent: int = 0
    killed_early: int = 0
    failures: list[str] = field(default_factory=list)


# =============================================================================== the child


def run_child(path: Path, number: int, rng: random.Random, totals: Totals) -> Iteration:
    """Start the writer, SIGKILL its process group at a random moment, return its acks."""
    errlog = path.parent / f"child-{number}.err"
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, CHILD, str(path), str(number), str(WRITERS)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,  # its own process group: killpg reaches its workers too
        )
    lines: list[str] = []
    ready = threading.Event()
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            lines.append(line)
            if line == "ready\n":
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    early = rng.random() < 0.15  # during interpreter start-up, creation, open or recovery
    try:
        if early:
            totals.killed_early += 1
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            assert ready.wait(60), "the child never became ready"
            time.sleep(rng.uniform(0.02, 0.8))
        assert proc.poll() is None, f"the child died before it was killed:\n{errlog.read_text()}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        reader.join(timeout=60)
        stdout.close()
    it = Iteration(number)
    for line in lines:
        if line.endswith("\n") and line[:-1].isdigit():  # a whole line: an acknowledgement
            c = int(line)
            it.acked.add(c)
            w = (c - number * ID_SPAN) % WRITERS
            it.last_acked[w] = max(it.last_acked.get(w, c), c)
    return it


# =============================================================================== the checks


def judge(state: dict[bytes, bytes], d: Directory) -> list[str]:
    """Compare the recovered ``state`` with what the commits of ``d`` allow; list problems."""
    problems: list[str] = []
    issued: dict[int, Iteration] = {c: it for it in d.iterations for c in it.issued()}

    def applied(c: int) -> bool:
        if c not in issued:
            return False
        if not is_batch(c):
            return single_key(c) in state
        return batch_key(c, 1) in state

    known: set[bytes] = set()
    for c, it in issued.items():
        acked = c in it.acked
        if not is_batch(c):
            value = state.get(single_key(c))
            known.add(single_key(c))
            if value is not None and value != value_of(c):
                problems.append(f"commit {c}: wrong value {value!r}")
            now = value is not None
        else:
            keys = [batch_key(c, j) for j in range(batch_size(c))]
            known.update(keys)
            present = [state.get(k) for k in keys[1:]]
            n = sum(v is not None for v in present)
            if n not in (0, len(present)):
                problems.append(f"batch {c} is partial: {n} of {len(present)} puts survived")
            if any(v is not None and v != value_of(c) for v in present):
                problems.append(f"batch {c}: wrong value")
            now = n > 0
            deleter = c + DELETE_BACK * WRITERS
            key0_expected = now and not applied(deleter)
            if (keys[0] in state) != key0_expected:
                problems.append(
                    f"batch {c}: key 0 {'present' if keys[0] in state else 'absent'}, expected "
                    f"{'present' if key0_expected else 'absent'} (deleted by batch {deleter}: {applied(deleter)})"
                )
        if acked and not now:
            problems.append(f"acknowledged commit {c} is missing")
        before = d.verdicts.get(c)
        if before is not None and before != now:
            problems.append(f"commit {c} was {'applied' if before else 'absent'} after an earlier recovery, now not")
        d.verdicts[c] = now

    # overwrites: each writer's w: key holds its newest surviving batch
    for it in d.iterations:
        for w in range(WRITERS):
            key = writer_key(it.number, w)
            known.add(key)
            mine = [c for c in it.issued() if is_batch(c) and (c - it.number * ID_SPAN) % WRITERS == w and applied(c)]
            want = b"%d" % max(mine) if mine else None
            if state.get(key) != want:
                problems.append(f"{key!r} holds {state.get(key)!r}, expected {want!r}")

    strays = [k for k in state if k not in known]
    if strays:
        problems.append(f"{len(strays)} keys no issued commit wrote, e.g. {strays[:3]}")
    return problems


async def recover_and_check(d: Directory, totals: Totals) -> list[str]:
    t = time.perf_counter()
    try:
        db = await quanta.open(str(d.path), compaction_executor="loop")
    except quanta.QuantaError as exc:
        return [f"reopen failed: {exc!r}"]
    totals.recovery_ms.append((time.perf_counter() - t) * 1e3)
    try:
        state = {k: v async for k, v in db.kv.scan()}
        problems = judge(state, d)
        try:
            await db.verify()
        except quanta.CorruptionError as exc:
            problems.append(f"verify: {exc!r}")
    finally:
        await db.close()
    return problems


async def kill9_cycles(tmp_path: Path, cycles: int, seed: int) -> Totals:
    rng = random.Random(seed)
    totals = Totals()
    d = Directory(tmp_path / "db0")
    for number in range(cycles):
        if d.iterations and len(d.iterations) % PER_DIR == 0:
            d = Directory(tmp_path / f"db{number}")
        it = await asyncio.to_thread(run_child, d.path, number, rng, totals)
        d.iterations.append(it)
        totals.cycles += 1
        totals.acked += len(it.acked)
        problems = await recover_and_check(d, totals)
        in_flight = [c for c in it.issued() if c not in it.acked]
        totals.in_flight_applied += sum(d.verdicts.get(c, False) for c in in_flight)
        totals.in_flight_absent += sum(not d.verdicts.get(c, False) for c in in_flight)
        if problems:
            totals.failures.append(f"cycle {number} ({d.path.name}): " + "; ".join(problems[:5]))
            d = Directory(tmp_path / f"db{number}-fresh")  # the old one proves nothing more
        else:
            totals.survived += 1
    return totals


def report(totals: Totals, capsys: pytest.CaptureFixture[str]) -> None:
    ms = sorted(totals.recovery_ms)
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))] if ms else float("nan")
    with capsys.disabled():
        print(
            f"\nkill -9: {totals.survived}/{totals.cycles} survived, recovery p50/p99 {p50:.1f}/{p99:.1f} ms "
            f"({totals.acked} acknowledged commits; in flight at the kill: {totals.in_flight_applied} applied, "
            f"{totals.in_flight_absent} absent; {totals.killed_early} kills during start-up)"
        )


def check(totals: Totals, cycles: int) -> None:
    assert not totals.failures, "\n".join(totals.failures)
    assert totals.survived == totals.cycles == cycles
    # the test did what it claims: commits were acknowledged and in flight at kill time
    assert totals.acked > 10 * cycles
    assert totals.in_flight_applied + totals.in_flight_absent > 0


async def test_kill9_every_acknowledged_commit_survives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cycles = 20
    totals = await kill9_cycles(tmp_path, cycles, seed=20)
    report(totals, capsys)
    check(totals, cycles)


# =============================================================================== kill -9 inside open

# A child that opens the database through a file system that SIGKILLs the process just before
# its N-th mutating call (create, write, sync, rename, remove, mkdir, sync_dir): a kill -9
# landing at exactly each step of creating a database, or of recovering one. "write" mode
# leaves commits in the WAL and dies without closing (the starting point for "recover").
CHILD_DIES_IN_OPEN = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import quanta
    from quanta._storage import vfs

    mode, path, die_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = 0

    def step():
        global count
        count += 1
        if count == die_at:
            os.kill(os.getpid(), signal.SIGKILL)

    class File:
        def __init__(self, f):
            self._f, self.path = f, f.path
        def write(self, data):
            step(); self._f.write(data)
        def sync(self):
            step(); self._f.sync()
        def close(self):
            self._f.close()
        def tell(self):
            return self._f.tell()

    class DyingFS(vfs.OSFileSystem):
        def create(self, path):
            step(); return File(super().create(path))
        def rename(self, src, dst):
            step(); super().rename(src, dst)
        def remove(self, path):
            step(); super().remove(path)
        def mkdir(self, path):
            step(); super().mkdir(path)
        def sync_dir(self, path):
            step(); super().sync_dir(path)

    async def main():
        if mode == "write":
            db = await quanta.open(path)
            for i in range(20):
                await db.kv.put_many([(b"k%02d:%d" % (i, j), b"v%d" % i) for j in range(10)])
            await db.kv.delete(b"k00:0")
            os._exit(0)  # no close: the commits stay in the WAL
        await quanta.open(path, fs=DyingFS())
        print(count, flush=True)  # the open finished: report how many steps it took
        os._exit(0)

    asyncio.run(main())
    """
)

WRITTEN = {b"k%02d:%d" % (i, j): b"v%d" % i for i in range(20) for j in range(10) if (i, j) != (0, 0)}


def die_in_open(mode: str, path: Path, die_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD_DIES_IN_OPEN, mode, str(path), str(die_at)],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def kill_at_every_step_of_open(tmp_path: Path, mode: str) -> list[str]:
    template = tmp_path / "template"
    if mode == "recover":
        proc = die_in_open("write", template, 0)
        assert proc.returncode == 0, proc.stderr
    probe = tmp_path / "probe"
    if template.exists():
        shutil.copytree(template, probe)
    proc = die_in_open(mode, probe, 10**9)
    assert proc.returncode == 0, proc.stderr
    steps = int(proc.stdout)
    assert steps >= 8, steps
    want = WRITTEN if mode == "recover" else {}
    failures = []
    for n in range(1, steps + 1):
        path = tmp_path / f"die-at-{n}"
        if template.exists():
            shutil.copytree(template, path)
        proc = die_in_open(mode, path, n)
        assert proc.returncode == -signal.SIGKILL, (n, proc.returncode, proc.stderr)
        try:
            async with quanta.open(str(path), compaction_executor="loop") as db:
                got = {k: v async for k, v in db.kv.scan()}
                await db.kv.put(b"after", b"crash")  # and it takes writes
            if got != want:
                failures.append(f"killed at step {n} of {steps}: {len(got)} keys, expected {len(want)}")
        except quanta.QuantaError as exc:
            failures.append(f"killed at step {n} of {steps}: reopen failed: {exc!r}")
    return failures


async def test_kill9_at_every_step_of_creating_a_database(tmp_path: Path) -> None:
    failures = await kill_at_every_step_of_open(tmp_path, "create")
    assert not failures, "\n".join(failures)


async def test_kill9_at_every_step_of_recovery(tmp_path: Path) -> None:
    failures = await kill_at_every_step_of_open(tmp_path, "recover")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
async def test_kill9_long(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cycles = 1000 if LONG else 200
    totals = await kill9_cycles(tmp_path, cycles, seed=int(os.environ.get("QUANTA_SEED", "1")))
    report(totals, capsys)
    check(totals, cycles)
