"""Who may open a database directory at the same time.

The rules: one writer at a time, in this process or any other; any number of read-only opens
together and beside the writer (they take no lock, so they never block it: they follow it,
see tests/storage/test_readers.py); a refused open fails at once (well under 100 ms) with
DatabaseLockedError naming the holder's PID, or waits up to ``lock_timeout``; and the lock
goes away with its holder -- on close, and when the holding process dies, even by SIGKILL.

Same-process rules run on both file layers (the ``db_factory`` fixture); cross-process rules
need real files and use child interpreters (``python -c``) that time their own open.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import quanta

OpenFn = Callable[..., Awaitable[quanta.Database]]

FAST = 0.1  # seconds: a refused open must not wait for the lock

# A child interpreter that tries to open the database and reports what happened, timing only
# the open itself (interpreter start-up and imports are not the engine's business). A refused
# open is tried three times and the fastest counts: a machine busy with other tests can stall
# any one attempt, but an open that waits for the lock is slow every time.
CHILD_TRY_OPEN = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import quanta

    async def main(path, read_only):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            try:
                db = await quanta.open(path, read_only=read_only, create_if_missing=False)
            except quanta.QuantaError as exc:
                times.append(time.perf_counter() - t)
                error = exc
                continue
            break
        else:
            return {"outcome": type(error).__name__, "message": str(error), "seconds": min(times)}
        seconds = time.perf_counter() - t
        value = await db.kv.get(b"k")
        await db.close()
        return {"outcome": "opened", "seconds": seconds, "value": value.decode() if value else None}

    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2] == "ro"))))
    """
)

# A child that opens the database, writes enough to start a flush worker process, says so,
# and then waits to be killed.
CHILD_HOLD = textwrap.dedent(
    """
    import asyncio, sys
    import quanta

    async def main(path, read_only):
        db = await quanta.open(path, read_only=read_only, memtable_bytes=4096)
        if not read_only:
            for i in range(100):
                await db.kv.put(b"hold%03d" % i, b"x" * 100)
            await db.flush()
        print("holding", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2] == "ro"))
    """
)


def try_open_in_child(path: Path, *, read_only: bool = False) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_TRY_OPEN, str(path), "ro" if read_only else "rw"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


class Holder:
    """A child process holding the database open (its own session, so its workers die with it)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_HOLD, str(path), "ro" if read_only else "rw"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "holding", f"holder failed to start (exit {self.proc.poll()})"

    def kill(self, *, whole_group: bool = True) -> None:
        if whole_group:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            self.proc.kill()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
async def made(tmp_path: Path) -> Path:
    """A real database directory holding k = v, closed."""
    path = tmp_path / "db"
    async with quanta.open(str(path)) as db:
        await db.kv.put(b"k", b"v")
    return path


async def timed_open_fails(open_: Callable[[], Awaitable[quanta.Database]]) -> float:
    """The fastest of three refused opens (see CHILD_TRY_OPEN for why three)."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        with pytest.raises(quanta.DatabaseLockedError):
            await open_()
        times.append(time.perf_counter() - t)
    return min(times)


# =============================================================================== one process


async def test_a_second_writer_in_the_same_process_is_refused_at_once(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    assert await timed_open_fails(db_factory) < FAST
    assert await db.kv.get(b"k") == b"v"  # the holder is unaffected
    await db.kv.put(b"k2", b"v2")


async def test_the_same_directory_by_another_spelling_is_the_same_database(made: Path) -> None:
    async with quanta.open(str(made)):
        other = os.path.join(str(made), "..", made.name)
        with pytest.raises(quanta.DatabaseLockedError):
            await quanta.open(other)
        link = made.parent / "link"
        link.symlink_to(made)
        with pytest.raises(quanta.DatabaseLockedError):
            await quanta.open(str(link))


async def test_read_only_opens_share_the_directory_with_each_other_and_a_writer(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    await db.close()
    readers = [await db_factory(read_only=True) for _ in range(3)]
    for reader in readers:
        assert await reader.kv.get(b"k") == b"v"
    db = await db_factory()  # readers never keep the writer out
    await db.kv.put(b"k", b"w")
    for reader in readers:
        assert await reader.catch_up() == db.seq
        assert await reader.kv.get(b"k") == b"w"
        await reader.close()
    await db.close()


async def test_a_read_only_open_beside_a_writer_sees_its_state_and_blocks_nothing(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    reader = await db_factory(read_only=True)
    assert await reader.kv.get(b"k") == b"v"
    assert reader.seq == db.seq
    await db.kv.put(b"k2", b"v2")
    await db.flush()
    await db.close()  # the writer closes (and could reopen) while the reader is open
    db = await db_factory()
    await db.kv.put(b"k3", b"v3")
    await reader.catch_up()
    assert await reader.kv.get_many([b"k", b"k2", b"k3"]) == [b"v", b"v2", b"v3"]
    with pytest.raises(quanta.ReadOnlyError):
        await reader.kv.put(b"x", b"y")
    await reader.close()
    await db.close()


async def test_lock_timeout_waits_for_the_writer_to_leave(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    t = time.perf_counter()
    with pytest.raises(quanta.DatabaseLockedError, match=r"waited 0\.2 s"):
        await db_factory(lock_timeout=0.2)
    assert 0.2 <= time.perf_counter() - t < 5
    loop = asyncio.get_running_loop()
    lag: list[float] = []

    async def ticker() -> None:  # the wait must not block the event loop
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.01)
            lag.append(loop.time() - t0 - 0.01)

    tick = asyncio.create_task(ticker())
    waiting = asyncio.create_task(db_factory(lock_timeout=30))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await db.close()
    second = await asyncio.wait_for(waiting, 10)
    tick.cancel()
    assert await second.kv.get(b"k") == b"v"
    assert max(lag) < 0.2, lag
    await second.close()


@pytest.mark.parametrize("bad", [-1, float("nan"), 1e9, "1", True])
def test_lock_timeout_and_follow_interval_are_validated(bad: object) -> None:
    for name in ("lock_timeout", "follow_interval"):
        with pytest.raises(quanta.InvalidArgumentError):
            quanta.Options.from_kwargs({name: bad})


async def test_close_releases_the_lock(db_factory: OpenFn) -> None:
    for i in range(3):
        db = await db_factory()
        await db.kv.put(b"k", b"%d" % i)
        await db.close()
    db = await db_factory()
    assert await db.kv.get(b"k") == b"2"


async def test_a_refused_open_does_not_steal_or_break_the_holders_lock(db_factory: OpenFn) -> None:
    db = await db_factory()
    for _ in range(5):
        with pytest.raises(quanta.DatabaseLockedError):
            await db_factory()
    await db.kv.put(b"still", b"mine")
    await db.close()
    db = await db_factory()
    assert await db.kv.get(b"still") == b"mine"


async def test_a_failed_open_releases_the_lock(made: Path) -> None:
    with pytest.raises(quanta.DatabaseExistsError):
        await quanta.open(str(made), error_if_exists=True)
    async with quanta.open(str(made)) as db:
        assert await db.kv.get(b"k") == b"v"


# =============================================================================== other processes


async def test_a_writer_in_another_process_is_refused_within_100_ms(made: Path) -> None:
    async with quanta.open(str(made)) as db:
        await db.kv.put(b"k", b"parent")
        result = try_open_in_child(made)
        assert result["outcome"] == "DatabaseLockedError", result
        assert result["seconds"] < FAST, result  # type: ignore[operator]
        assert str(made) in str(result["message"])
        assert f"(process {os.getpid()})" in str(result["message"]), result  # names the holder
        result = try_open_in_child(made, read_only=True)  # a reader opens beside the writer
        assert result == {**result, "outcome": "opened", "value": "parent"}, result
    result = try_open_in_child(made)
    assert result["outcome"] == "opened" and result["value"] == "parent", result


async def test_read_only_opens_in_several_processes_coexist_with_a_writer(made: Path) -> None:
    async with quanta.open(str(made), read_only=True) as db:
        result = try_open_in_child(made, read_only=True)
        assert result == {**result, "outcome": "opened", "value": "v"}, result
        result = try_open_in_child(made)  # a writer opens beside the readers
        assert result == {**result, "outcome": "opened", "value": "v"}, result
        assert await db.kv.get(b"k") == b"v"


async def test_a_reader_in_another_process_never_keeps_the_writer_out(made: Path) -> None:
    holder = Holder(made, read_only=True)
    try:
        async with quanta.open(str(made)) as db:
            await db.kv.put(b"k", b"w")
        async with quanta.open(str(made), read_only=True) as db:
            assert await db.kv.get(b"k") == b"w"
    finally:
        holder.kill()


async def test_the_lock_dies_with_a_killed_holder(made: Path) -> None:
    holder = Holder(made)
    try:
        assert await timed_open_fails(lambda: quanta.open(str(made))) < FAST
    finally:
        holder.kill()
    async with quanta.open(str(made)) as db:
        assert await db.kv.get(b"k") == b"v"
        assert await db.kv.get(b"hold099") == b"x" * 100  # flushed before the kill


async def test_the_lock_dies_with_the_holder_even_if_its_workers_outlive_it(made: Path) -> None:
    """Worker processes must not inherit the lock: SIGKILL the holder alone (its flush worker
    is orphaned, not killed) and the directory is free at once."""
    holder = Holder(made)
    try:
        holder.kill(whole_group=False)
        async with quanta.open(str(made)) as db:
            assert await db.kv.get(b"hold000") == b"x" * 100
    finally:
        try:
            os.killpg(holder.proc.pid, signal.SIGKILL)  # the orphaned workers, if still there
        except ProcessLookupError:
            pass
