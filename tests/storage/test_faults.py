"""I/O errors at every point: each failure surfaces as a documented error and loses nothing
that was acknowledged.

A workload (open, single puts and deletes, ``put_many`` and ``batch`` commits, flushes, a
manual compaction, a reopen, close) runs on a ``FaultInjectingFileSystem`` that fails its
N-th file operation, for N = 1, 2, ... until the workload finishes without meeting the
fault; for each errno (EIO, ENOSPC, EROFS) the fault is transient (that one operation) or
persistent (the disk is gone). At every fault point:

* the failure reaches the caller, within a timeout, as ``StorageIOError`` or
  ``DatabaseFailedError`` (``BackgroundError`` included) with the injected errno in its
  ``__cause__`` chain -- never a bare ``OSError``, another error class or a hang;
* while the database stays open after the failure, writes are refused (DatabaseFailedError);
* closing afterwards may raise a ``QuantaError`` but nothing else, and releases the directory;
* the files as the process left them (``snapshot()``) and as a power loss would leave them
  (``crash()``) both open to a state after some prefix of the commits that includes every
  acknowledged one (no partial batch), and ``verify()`` passes;
* after a transient fault the same file system opens again and takes writes; after a
  persistent one, opening it fails with ``StorageIOError`` instead of hanging.

Separately: after a failed WAL fsync the database refuses every write with
``DatabaseFailedError`` until it is reopened, even if the disk has recovered, and the
failed commits are invisible meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from helpers_crash import (
    LONG,
    PATH,
    SMALL_OPTIONS,
    TIMEOUT,
    PrefixStates,
    WorkloadLog,
    check_recovery,
    commits_of,
    make_plan,
    run_workload,
    slow_when_long,
    write_summary,
)

import quanta
from quanta._storage.format import HEADER_SIZE
from quanta._storage.vfs import FaultInjectingFileSystem, MemoryFileSystem, Op
from quanta.errors import DatabaseFailedError, StorageIOError

ERRNOS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC, "EROFS": errno.EROFS}
PLAN = make_plan(3, 40, reopen_at=[20], flush_every=10, compact_every=25)
PREFIXES = PrefixStates(commits_of(PLAN))
#: Without QUANTA_LONG, EIO is injected at every point and the other errnos at every STRIDE-th
#: (the engine does not branch on errno, but the error text and chaining are checked for each).
STRIDE = 1 if LONG else 5
SUMMARY: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    write_summary(request, SUMMARY)


class FaultFS(FaultInjectingFileSystem):
    """Remembers which operation the injected fault hit first."""

    failed_op: Op | None = None

    def _maybe_fail(self, op: Op) -> None:
        try:
            super()._maybe_fail(op)
        except StorageIOError:
            if self.failed_op is None:
                self.failed_op = op
            raise


def carries_errno(exc: BaseException, err: int) -> bool:
    """Whether ``exc`` or an exception it was raised from is a StorageIOError with ``err``."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, StorageIOError) and cur.errno == err:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


@dataclass
class FaultOutcome:
    hit: bool  # the workload reached the fault point
    surfaced: str | None = None  # the class of the error the caller saw (None: none did)
    failed_op: Op | None = None
    problems: list[str] = field(default_factory=list)


async def run_fault_point(fail_at: int, err: int, persistent: bool) -> FaultOutcome:
    fs = FaultFS(fail_at, err=err, persistent=persistent)
    log = WorkloadLog()
    out = FaultOutcome(hit=False)

    def saw(exc: BaseException, when: str) -> None:
        if out.surfaced is None:
            out.surfaced = type(exc).__name__
        if not isinstance(exc, (StorageIOError, DatabaseFailedError)):
            out.problems.append(f"{when} raised {exc!r}, not StorageIOError or DatabaseFailedError")
        elif not carries_errno(exc, err):
            out.problems.append(f"{when} raised {exc!r} without the injected errno in its cause chain")

    try:
        async with asyncio.timeout(TIMEOUT):
            await run_workload(fs, PLAN, log)
    except TimeoutError:
        out.problems.append(f"the workload hung for {TIMEOUT} s")
    except Exception as exc:  # anything but the documented errors is a problem (saw() says which)
        saw(exc, "the workload")
    if fs.failed == 0:
        assert not out.problems, out.problems
        return out
    out.hit = True
    out.failed_op = fs.failed_op
    db = log.db
    if db is not None and not db.closed and out.surfaced is not None:
        # the failure is fatal: no write is accepted (and none reaches the WAL) until reopen
        try:
            await db.kv.put(b"~after the failure", b"x")
            out.problems.append("a write after the failure was accepted")
        except DatabaseFailedError:
            pass
        except Exception as exc:
            out.problems.append(f"a write after the failure raised {exc!r}, not DatabaseFailedError")
    if db is not None and not db.closed:
        try:
            async with asyncio.timeout(TIMEOUT):
                await db.close()
        except TimeoutError:
            out.problems.append(f"close hung for {TIMEOUT} s")
        except Exception as exc:
            saw(exc, "close")
        if not db.closed:
            out.problems.append("close returned but the database is still open")

    # The files as the process left them, and as a power loss would.
    for view, image in (("files", fs.snapshot()), ("power loss", fs.crash())):
        problems, _ = await check_recovery(image, PREFIXES, log.acked)
        out.problems += [f"{view}: {p}" for p in problems]
    # The same file system, live: the lock must have been released.
    if not persistent:
        problems, _ = await check_recovery(fs, PREFIXES, log.acked)
        out.problems += [f"same fs after the fault passed: {p}" for p in problems]
    else:
        try:
            async with asyncio.timeout(TIMEOUT):
                db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
            await db.close()
            out.problems.append("open succeeded on a file system that fails every write")
        except TimeoutError:
            out.problems.append("open on the dead disk hung")
        except StorageIOError:
            pass
        except Exception as exc:
            out.problems.append(f"open on the dead disk raised {exc!r}, not StorageIOError")
    return out


@slow_when_long
@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
@pytest.mark.parametrize("errname", list(ERRNOS))
async def test_io_error_at_every_point_surfaces_as_a_documented_error_and_loses_nothing_acknowledged(
    errname: str, persistent: bool, record_property: Callable[[str, object], None]
) -> None:
    err = ERRNOS[errname]
    stride = 1 if errname == "EIO" else STRIDE
    offset = 1 + (err % stride)  # different errnos sample different points
    surfaced: Counter[str] = Counter()
    swallowed: Counter[str] = Counter()
    violations: list[str] = []
    points = 0
    n = offset
    while True:
        out = await run_fault_point(n, err, persistent)
        if not out.hit:
            break
        points += 1
        where = (
            f"fault at op {n} ({out.failed_op.kind} {os.path.basename(out.failed_op.path)})" if out.failed_op else ""
        )
        if out.surfaced is None:
            assert out.failed_op is not None
            swallowed[f"{out.failed_op.kind} {_kind_of(out.failed_op.path)}"] += 1
        else:
            surfaced[out.surfaced] += 1
        violations += [f"{where}: {p}" for p in out.problems]
        n += stride
        assert n < 5000, "the workload never stops meeting faults"
    assert points > 0
    mode = "persistent" if persistent else "transient"
    line = (
        f"faults[{errname}, {mode}]: {points} fault points (every {stride}), surfaced as "
        f"{dict(sorted(surfaced.items()))}, handled without an error {dict(sorted(swallowed.items()))}, "
        f"{len(violations)} violations"
    )
    SUMMARY.append(line)
    record_property("summary", line)
    if violations:
        pytest.fail("\n".join([line, *violations[:25]]))
    # A fault may go unreported only where nothing depends on the operation: removing an
    # obsolete file, or the spare WAL segment at close.
    assert set(swallowed) <= {"remove wal", "remove sst", "remove manifest", "remove tmp"}, line


def _kind_of(path: str) -> str:
    base = os.path.basename(path)
    if base.endswith(".tmp"):
        return "tmp"
    if base.startswith("MANIFEST"):
        return "manifest"
    return base.rsplit(".", 1)[-1] if "." in base else base


# --------------------------------------------------------------------------- a failed WAL fsync


class FailWalSyncFS(MemoryFileSystem):
    """Once ``armed``, fails with EIO the next fsync that covers committed WAL records (not a
    new segment's header); ``persistent``: every WAL fsync from then on fails too.
    ``failures`` counts the failed fsyncs of committed records."""

    def __init__(self, *, persistent: bool) -> None:
        super().__init__(fail_hook=self._hook)
        self.armed = False
        self.tripped = False
        self.persistent = persistent
        self.failures = 0

    def _hook(self, op: Op) -> None:
        if op.kind != "sync" or not op.path.endswith(".wal"):
            return
        inode = self.files[op.path]
        covers_commits = HEADER_SIZE <= inode.synced < len(inode.data)
        if (self.armed and covers_commits) or (self.persistent and self.tripped):
            self.failures += covers_commits
            self.armed, self.tripped = False, True
            raise StorageIOError(f"fsync failed for {op.path} (injected)", errno=errno.EIO, path=op.path)


async def refused(call: Callable[[], Awaitable[object]]) -> DatabaseFailedError:
    with pytest.raises(DatabaseFailedError) as info:
        await call()
    return info.value


@pytest.mark.parametrize("settle", [False, True], ids=["at-once", "after-background-settles"])
@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
async def test_after_a_failed_wal_fsync_every_write_is_refused_until_reopen(persistent: bool, settle: bool) -> None:
    """``settle``: let the event loop run (background tasks react to the failure) before the
    checks; at once, the checks below run without yielding to the loop. (Settled, writes and
    reads used to raise DatabaseClosedError: the engine closed itself after any failure, BUG-3.)"""
    fs = FailWalSyncFS(persistent=persistent)
    db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    await db.kv.put(b"acked", b"1")

    fs.armed = True
    failure = await refused(lambda: db.kv.put(b"failed", b"2"))
    assert fs.failures == 1
    assert not isinstance(failure, quanta.BackgroundError)  # a foreground failure
    assert carries_errno(failure, errno.EIO)
    if settle:
        await asyncio.sleep(0.05)

    # Never retry a failed fsync and trust it -- even when the disk works again.
    assert await db.kv.get(b"failed") is None  # the failed commit is not visible
    assert await db.kv.get(b"acked") == b"1"  # reads still work
    await refused(lambda: db.kv.put(b"later", b"3"))
    await refused(lambda: db.kv.delete(b"acked"))
    await refused(lambda: db.kv.put_many([(b"x", b"1"), (b"y", b"2")]))
    await refused(lambda: db.kv.batch().put(b"z", b"1").commit())
    await refused(db.flush)
    await refused(db.compact)
    assert fs.failures == 1  # refused up front: nothing more reached the WAL
    try:
        await db.close()
    except quanta.QuantaError:
        pass  # close may report the failure again
    assert db.closed

    # a transient fault has passed: reopen in place; a persistent one: from a copy of the files
    reopen_fs = fs.snapshot() if persistent else fs
    db = await quanta.open(PATH, fs=reopen_fs, **SMALL_OPTIONS)
    try:
        assert await db.kv.get(b"acked") == b"1"
        # the failed commit was never acknowledged: it may or may not have reached the disk
        assert await db.kv.get(b"failed") in (None, b"2")
        assert await db.kv.get(b"later") is None
        await db.kv.put(b"after reopen", b"4")
        assert await db.kv.get(b"after reopen") == b"4"
    finally:
        await db.close()


async def test_every_writer_in_a_failed_group_commit_is_refused_and_none_is_visible() -> None:
    """Eight concurrent writers: the first starts an fsync, the other seven join the next
    group while it runs. The fsync fails: every one of them is refused (none is told its
    write is durable), none of their writes is visible, and after reopening their writes may
    reappear only in commit order."""
    fs = FailWalSyncFS(persistent=False)
    db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    await db.kv.put(b"acked", b"1")
    fs.armed = True
    keys = [b"w%d" % i for i in range(8)]
    results = await asyncio.gather(*(db.kv.put(k, b"v") for k in keys), return_exceptions=True)
    assert all(isinstance(r, DatabaseFailedError) for r in results), results
    assert fs.failures == 1
    assert await db.kv.get_many(keys) == [None] * len(keys)
    assert [kv async for kv in db.kv.scan()] == [(b"acked", b"1")]
    try:
        await db.close()
    except quanta.QuantaError:
        pass
    db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    try:
        assert await db.kv.get(b"acked") == b"1"
        got = await db.kv.get_many(keys)
        # unacknowledged writes may reappear, but only as a prefix of the commit order
        present = [v is not None for v in got]
        assert present == sorted(present, reverse=True), got
    finally:
        await db.close()


# --------------------------------------------------------------------------- regressions
# Minimal reproductions of engine bugs the sweep above found (BUG-3, BUG-1).


class FailSpareWalFS(MemoryFileSystem):
    """Fails the creation of the second WAL segment (the background spare) with EIO."""

    def __init__(self) -> None:
        super().__init__(fail_hook=self._hook)
        self.wals = 0

    def _hook(self, op: Op) -> None:
        if op.kind == "create" and op.path.endswith(".wal"):
            self.wals += 1
            if self.wals == 2:
                raise StorageIOError(f"create failed for {op.path} (injected)", errno=errno.EIO, path=op.path)


async def test_a_background_failure_is_reported_by_every_write_and_by_close() -> None:
    """Documented (engine.py, errors.py): after a background failure writes raise
    BackgroundError and close() re-raises it. The supervisor task used to end once its
    workers stopped on ``_failure`` and call ``_shutdown()`` in its ``finally``: the database
    closed itself, writes (and reads) raised DatabaseClosedError, and close() returned early
    on ``self.closed`` without reporting the failure to anyone (BUG-3)."""
    fs = FailSpareWalFS()
    db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    await asyncio.sleep(0.05)  # the background spare-segment maker runs and fails
    assert fs.wals == 2
    with pytest.raises(quanta.BackgroundError) as info:
        await db.kv.put(b"k", b"v")
    assert carries_errno(info.value, errno.EIO)
    with pytest.raises(quanta.BackgroundError):
        await db.close()


async def test_an_io_error_while_creating_a_database_does_not_make_the_directory_unusable() -> None:
    """ENOSPC while open() creates a new database (here: writing the first MANIFEST) is
    reported as StorageIOError and leaves 000001.wal behind without CURRENT. Nothing was ever
    committed, so once space is freed open() must create the database -- it used to raise
    CorruptionError ("database files present but CURRENT is missing") forever (BUG-1)."""
    failing = True

    def first_manifest_write_fails(op: Op) -> None:
        nonlocal failing
        if failing and op.kind == "write" and "MANIFEST" in op.path:
            failing = False
            raise StorageIOError("write failed (injected)", errno=errno.ENOSPC, path=op.path)

    fs = MemoryFileSystem(fail_hook=first_manifest_write_fails)
    with pytest.raises(StorageIOError):
        await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    assert "CURRENT" not in fs.listdir(PATH)
    db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    try:
        await db.kv.put(b"k", b"v")
        assert await db.kv.get(b"k") == b"v"
    finally:
        await db.close()
