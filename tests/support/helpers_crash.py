"""Shared pieces of the crash and fault tests: a deterministic workload of commits, the model
states after each prefix of it, and a check that a recovered database holds one of them.

The property every recovery must keep (pebble's crash tests, leveldb's
``fault_injection_test.cc``): the database holds exactly the state after *some prefix* of the
commit sequence -- a batch is all there or not at all -- and that prefix includes every
commit that was promised durable before the crash or failure: with ``durability="sync"``,
every acknowledged one (its ``await`` returned).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

import quanta
from quanta._storage.vfs import MemoryFileSystem, _Inode

PATH = "/db"
LONG = os.environ.get("QUANTA_LONG") == "1"
#: The long sweeps join ``nox -s crash`` (``-m slow``, QUANTA_LONG=1) when QUANTA_LONG is set
#: and stay in the default ``-m "not slow"`` run, in their short form, when it is not.
LONG_MARKS = [pytest.mark.slow] if LONG else []


def slow_when_long(test: T) -> T:
    """Mark ``test`` slow when QUANTA_LONG is set (see LONG_MARKS)."""
    return pytest.mark.slow(test) if LONG else test  # type: ignore[no-any-return]


TIMEOUT = 20.0  # seconds for one recovery check; a hang is a failure, not a stuck CI job
PROBE = b"~probe"  # written after recovery; sorts after every workload key

#: Small enough that WAL rotations, flushes, compactions (L0 -> L1 -> L2) and manifest edits
#: happen every few dozen commits.
SMALL_OPTIONS: dict[str, Any] = {
    "durability": "sync",
    "memtable_bytes": 4096,
    "block_size": 256,
    "l1_target_bytes": 4096,
    "target_file_bytes": 4096,
    "compaction_executor": "loop",
}

T = TypeVar("T")
Op = tuple[bytes, bytes | None]  # (key, value); None is a delete
State = dict[bytes, bytes]


@dataclass(frozen=True)
class Commit:
    """One atomic commit. ``api`` is the public call that makes it."""

    api: str  # "put" | "delete" | "put_many" | "batch"
    ops: tuple[Op, ...]


#: A workload step: a commit, or one of "flush", "compact", "reopen" (close, then open again).
Step = Commit | str


def make_plan(
    seed: int,
    commits: int,
    *,
    keys: int = 40,
    reopen_at: Iterable[int] = (),
    flush_every: int = 37,
    compact_every: int = 91,
) -> list[Step]:
    """A deterministic mix of single puts and deletes, ``put_many`` and ``batch`` commits
    (batches repeat keys: the last operation on a key wins), with a flush and a compaction
    now and then and a reopen before each commit index in ``reopen_at``.

    Every value is unique to its commit and position (``c0042.1|...``), so a state that
    holds part of a batch cannot pass for a prefix state by coincidence.
    """
    rng = random.Random(seed)
    reopen = set(reopen_at)
    plan: list[Step] = []

    def key() -> bytes:
        return b"k%03d" % rng.randrange(keys)

    def value(i: int, j: int) -> bytes:
        return b"c%04d.%d|" % (i, j) + b"x" * rng.choice((0, 0, 8, 40, 150))

    for i in range(commits):
        if i in reopen:
            plan.append("reopen")
        roll = rng.random()
        if roll < 0.4:
            plan.append(Commit("put", ((key(), value(i, 0)),)))
        elif roll < 0.55:
            plan.append(Commit("delete", ((key(), None),)))
        elif roll < 0.75:
            n = rng.randint(2, 6)
            hot = [key() for _ in range(max(1, n - 1))]  # fewer keys than ops: repeats
            plan.append(Commit("put_many", tuple((rng.choice(hot), value(i, j)) for j in range(n))))
        else:
            n = rng.randint(2, 8)
            hot = [key() for _ in range(max(1, n - 2))]
            ops = tuple((rng.choice(hot), None if rng.random() < 0.35 else value(i, j)) for j in range(n))
            plan.append(Commit("batch", ops))
        if i % flush_every == flush_every - 1:
            plan.append("flush")
        if i % compact_every == compact_every - 1:
            plan.append("compact")
    return plan


def commits_of(plan: list[Step]) -> list[Commit]:
    return [s for s in plan if isinstance(s, Commit)]


def apply(state: State, commit: Commit) -> State:
    out = dict(state)
    for k, v in commit.ops:
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


class PrefixStates:
    """The model state after each prefix of ``commits`` (index i: the first i commits)."""

    def __init__(self, commits: list[Commit]) -> None:
        self.commits = commits
        self.states: list[State] = [{}]
        for c in commits:
            self.states.append(apply(self.states[-1], c))
        self._index: dict[frozenset[tuple[bytes, bytes]], list[int]] = {}
        for i, s in enumerate(self.states):
            self._index.setdefault(frozenset(s.items()), []).append(i)
        self.keys = sorted({k for c in commits for k, _ in c.ops})

    def matches(self, state: State) -> list[int]:
        """The prefix lengths whose state equals ``state`` (empty: no prefix does)."""
        return self._index.get(frozenset(state.items()), [])

    def describe_mismatch(self, state: State, acked: int) -> str:
        """Where ``state`` departs from the nearest prefix at or after ``acked`` (for messages)."""
        best = min(
            range(acked, len(self.states)),
            key=lambda i: len(set(self.states[i].items()) ^ set(state.items())),
            default=acked,
        )
        want = self.states[best]
        missing = sorted(k for k in want if state.get(k) != want[k])[:4]
        extra = sorted(k for k in state if k not in want)[:4]
        return f"nearest prefix {best}: wrong or missing {missing}, unexpected {extra}"


@dataclass
class WorkloadLog:
    """What a workload run did, in terms of the file-system op list (``len(fs.ops)``)."""

    acked: int = 0  # commits whose await returned
    started: int = 0  # commits whose call was made (acknowledged or not)
    #: commits made durable by a completed flush, compaction or close -- what
    #: durability="os" promises (with "sync", every acknowledged commit is durable anyway)
    flushed: int = 0
    #: (position in ``fs.ops``, event, number) in time order; events: "open" / "opened" (open
    #: called / returned), "commit" / "ack" (commit call made / its await returned).
    marks: list[tuple[int, str, int]] = field(default_factory=list)
    db: quanta.Database | None = None


async def run_workload(fs: MemoryFileSystem, plan: list[Step], log: WorkloadLog, **options: Any) -> None:
    """Open the database on ``fs``, run ``plan``, close. Exceptions propagate; ``log.db`` is
    the database that was open when one did (the caller closes it)."""
    opts = {**SMALL_OPTIONS, **options}

    opens = 0

    async def open_db() -> None:
        nonlocal opens
        log.marks.append((len(fs.ops), "open", opens))
        log.db = await quanta.open(PATH, fs=fs, **opts)
        log.marks.append((len(fs.ops), "opened", opens))
        opens += 1

    await open_db()
    for step in plan:
        db = log.db
        assert db is not None
        if isinstance(step, Commit):
            log.marks.append((len(fs.ops), "commit", log.started))
            log.started += 1
            await commit(db, step)
            log.marks.append((len(fs.ops), "ack", log.acked))
            log.acked += 1
        elif step == "flush":
            await db.flush()
            log.flushed = log.acked
        elif step == "compact":
            await db.compact()
            log.flushed = log.acked
        elif step == "reopen":
            await db.close()
            log.flushed = log.acked
            await open_db()
        else:  # pragma: no cover - a typo in a plan
            raise ValueError(step)
    assert log.db is not None
    await log.db.close()
    log.flushed = log.acked


async def commit(db: quanta.Database, c: Commit) -> None:
    if c.api == "put":
        ((k, v),) = c.ops
        assert v is not None
        await db.kv.put(k, v)
    elif c.api == "delete":
        ((k, _),) = c.ops
        await db.kv.delete(k)
    elif c.api == "put_many":
        await db.kv.put_many([(k, v) for k, v in c.ops])
    else:
        batch = db.kv.batch()
        for k, v in c.ops:
            if v is None:
                batch.delete(k)
            else:
                batch.put(k, v)
        await batch.commit()


async def read_state(db: quanta.Database, keys: list[bytes]) -> tuple[State, list[str]]:
    """Everything a full scan sees, and any disagreement between scan, reverse scan and
    point reads of ``keys`` (they must all describe one state)."""
    problems: list[str] = []
    state = {k: v async for k, v in db.kv.scan()}
    backwards = [kv async for kv in db.kv.scan(reverse=True)]
    if backwards != sorted(state.items(), reverse=True):
        problems.append("reverse scan disagrees with forward scan")
    got = await db.kv.get_many(keys)
    for k, v in zip(keys, got, strict=True):
        if state.get(k) != v:
            problems.append(f"get_many({k!r}) = {v!r:.30} but scan says {state.get(k)!r:.30}")
            break
    return state, problems


async def check_recovery(fs: MemoryFileSystem, prefixes: PrefixStates, acked: int) -> tuple[list[str], State | None]:
    """Open a crashed file system and check (a)-(d) of test_crash.py's docstring; ``acked``
    is the number of commits promised durable.

    Returns the problems found and the recovered state (None if it could not be read).
    """
    problems: list[str] = []
    state: State | None = None
    stage = "open"
    try:
        async with asyncio.timeout(TIMEOUT):
            db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
            try:
                stage = "read"
                state, disagreements = await read_state(db, prefixes.keys)
                problems += disagreements
                matches = prefixes.matches(state)
                if not matches:
                    problems.append(f"(a) state is no prefix state: {prefixes.describe_mismatch(state, acked)}")
                elif matches[-1] < acked:
                    problems.append(f"(b) lost promised commits: state after {matches[-1]} of {acked} promised durable")
                stage = "verify"
                await db.verify()
            finally:
                stage = "close"
                await db.close()
            stage = "reopen"
            db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
            try:
                again, _ = await read_state(db, prefixes.keys)
                if again != state:
                    problems.append("(d) a second reopen shows a different state")
                stage = "write after recovery"
                await db.kv.put(PROBE, b"written after recovery")
            finally:
                await db.close()
            stage = "reopen after writing"
            db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
            try:
                if await db.kv.get(PROBE) != b"written after recovery":
                    problems.append("(d) a write made after recovery did not survive a reopen")
            finally:
                await db.close()
    except TimeoutError:
        problems.append(f"{stage}: hung for {TIMEOUT} s")
    except Exception as exc:
        problems.append(f"{stage} failed: {exc!r}")
    return problems, state


def freeze(fs: MemoryFileSystem) -> MemoryFileSystem:
    """An independent copy of ``fs`` that keeps what is synced and what is merely written
    (unlike ``snapshot()``, which marks everything synced), so ``crash()`` variants can be
    taken from it later. Requires: ``fs._mutex`` held if other threads use ``fs``."""
    out = MemoryFileSystem()
    out.dirs = set(fs.dirs)
    copies: dict[int, _Inode] = {}

    def copy(inode: _Inode) -> _Inode:
        new = copies.get(id(inode))
        if new is None:
            new = copies[id(inode)] = _Inode(bytearray(inode.data), inode.synced)
        return new

    out.files = {p: copy(i) for p, i in fs.files.items()}
    out.durable = {p: copy(i) for p, i in fs.durable.items()}
    return out


def digest(fs: MemoryFileSystem) -> int:
    """A hash of the visible files and their contents (equal images recover equally)."""
    return hash(tuple(sorted((p, bytes(i.data)) for p, i in fs.files.items())))


class RecordingFS(MemoryFileSystem):
    """A MemoryFileSystem that also keeps every inode it created, in create order, so the
    bytes of each recorded ``write`` can be read back after the run (for protocol audits)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[_Inode] = []

    def create(self, path: str) -> Any:
        file = super().create(path)
        self.created.append(file._inode)
        return file


def write_summary(request: pytest.FixtureRequest, lines: list[str]) -> None:
    """Print summary lines to the terminal past output capture (so they show without ``-s``)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:  # pragma: no cover - plugins disabled
        print(*lines, sep="\n")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)
