"""Cancelling every public coroutine mid-way (httpcore's tests/test_cancellations.py, for QuantaDB).

The promise (quanta/_storage/engine.py, "Concurrency rules"): a cancelled commit is
all-or-nothing -- before its WAL append nothing is written, after it the commit completes --
and flush/compact/close only ask background tasks for work, so cancelling them never leaves
anything half-done. After any cancellation the database still works, closes cleanly, and a
reopen shows exactly the state it showed before closing. No warning may escape
(filterwarnings=error turns ResourceWarnings and "never awaited" into failures).

Cancellation comes two ways, at random points: a plain asyncio ``task.cancel()`` after a
random number of event-loop turns, and anyio's level-triggered ``move_on_after`` with tiny
timeouts (which also cancels every later await inside the scope).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import pytest

import quanta
from quanta._storage.vfs import OSFileSystem, WritableFile

OpenFn = Callable[..., Awaitable[quanta.Database]]

# Small memtables: commits regularly rotate the WAL and wait for flushes, so cancellation
# lands in back-pressure and rotation too, not only in the fsync wait.
SMALL = {
    "memtable_bytes": 16 * 1024,
    "block_size": 512,
    "l0_compaction_trigger": 2,
    "l1_target_bytes": 64 * 1024,
    "target_file_bytes": 16 * 1024,
}
ITERATIONS = 40


async def cancel_after_turns(make: Callable[[], Coroutine[Any, Any, object]], turns: int) -> str:
    """Run ``make()`` as a task, cancel it after ``turns`` event-loop turns; say how it ended."""
    task = asyncio.ensure_future(make())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "completed"


async def cancel_after_seconds(make: Callable[[], Coroutine[Any, Any, object]], seconds: float) -> str:
    with anyio.move_on_after(seconds) as scope:
        await make()
    return "cancelled" if scope.cancelled_caught else "completed"


async def cancel_randomly(make: Callable[[], Coroutine[Any, Any, object]], rng: random.Random) -> str:
    if rng.random() < 0.6:
        return await cancel_after_turns(make, rng.randrange(12))
    return await cancel_after_seconds(make, rng.choice([0, 1e-5, 1e-4, 5e-4, 2e-3]))


async def state(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan()}


# =============================================================================== writes

# Each write kind makes commit number i, recognisable afterwards, and says how to judge it.
# A commit is "applied" or "absent"; anything in between is a failure.


def check_put(st: dict[bytes, bytes], i: int) -> str:
    return "applied" if st.get(b"put:%04d" % i) == b"%d" % i else "absent"


def check_delete(st: dict[bytes, bytes], i: int) -> str:
    value = st.get(b"del:%04d" % i)
    assert value in (None, b"before"), value
    return "applied" if value is None else "absent"


BIG = 500  # put_many items


def check_put_many(st: dict[bytes, bytes], i: int) -> str:
    n = sum(1 for j in range(BIG) if st.get(b"pm%04d:%05d" % (i, j)) == b"%d" % i)
    assert n in (0, BIG), f"put_many {i}: {n} of {BIG} items visible"
    return "applied" if n else "absent"


M = 20  # batch puts


def check_batch(st: dict[bytes, bytes], i: int) -> str:
    puts = sum(1 for j in range(M) if st.get(b"b%04d:%02d" % (i, j)) == b"%d" % i)
    marker = b"marker:%04d" % i in st
    assert (puts, marker) in ((M, False), (0, True)), f"batch {i}: {puts} of {M} puts, marker deleted={not marker}"
    return "applied" if puts else "absent"


async def prepare(db: quanta.Database, kind: str, i: int) -> Callable[[], Coroutine[Any, Any, object]]:
    if kind == "put":
        return lambda: db.kv.put(b"put:%04d" % i, b"%d" % i)
    if kind == "delete":
        await db.kv.put(b"del:%04d" % i, b"before")
        return lambda: db.kv.delete(b"del:%04d" % i)
    if kind == "put_many":
        items = [(b"pm%04d:%05d" % (i, j), b"%d" % i) for j in range(BIG)]
        return lambda: db.kv.put_many(items)
    await db.kv.put(b"marker:%04d" % i, b"x")
    batch = db.kv.batch()
    for j in range(M):
        batch.put(b"b%04d:%02d" % (i, j), b"%d" % i)
    batch.delete(b"marker:%04d" % i)
    return batch.commit


CHECKS = {"put": check_put, "delete": check_delete, "put_many": check_put_many, "batch": check_batch}


@pytest.mark.parametrize("kind", list(CHECKS))
async def test_a_cancelled_write_is_all_or_nothing_now_and_after_reopen(db_factory: OpenFn, kind: str) -> None:
    rng = random.Random(kind)
    check = CHECKS[kind]
    db = await db_factory(**SMALL)
    outcomes: dict[tuple[str, str], int] = {}
    for i in range(ITERATIONS):
        make = await prepare(db, kind, i)
        how = await cancel_randomly(make, rng)
        verdict = check(await state(db), i)  # atomic at this instant
        if how == "completed":
            assert verdict == "applied", f"commit {i} returned but is not visible"
        outcomes[how, verdict] = outcomes.get((how, verdict), 0) + 1
        await db.kv.put(b"probe", b"%d" % i)  # the database still takes writes
    await db.kv.put(b"sentinel", b"1")  # orders after every cancelled commit that was appended
    before = await state(db)
    verdicts = [check(before, i) for i in range(ITERATIONS)]
    assert outcomes.get(("cancelled", "absent"), 0) + outcomes.get(("cancelled", "applied"), 0) > ITERATIONS // 3
    await db.close()

    db = await db_factory(**SMALL)
    after = await state(db)
    assert after == before, "reopen changed what the database held"
    assert [check(after, i) for i in range(ITERATIONS)] == verdicts
    await db.verify()


async def test_cancelled_writes_from_many_tasks_at_once_stay_atomic(db_factory: OpenFn) -> None:
    """Twenty writers share group commits; a random half are cancelled mid-flight."""
    rng = random.Random(3)
    db = await db_factory(**SMALL)
    for round_ in range(8):
        base = round_ * 20
        makes = [await prepare(db, "batch", base + k) for k in range(20)]
        tasks = [asyncio.ensure_future(make()) for make in makes]
        for _ in range(rng.randrange(6)):
            await asyncio.sleep(0)
        victims = rng.sample(tasks, 10)
        for task in victims:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
        st = await state(db)
        for k, r in enumerate(results):
            verdict = check_batch(st, base + k)
            if r is None:
                assert verdict == "applied"
    await db.kv.put(b"sentinel", b"1")
    before = await state(db)
    await db.close()
    db = await db_factory()
    assert await state(db) == before


async def test_a_batch_whose_cancelled_commit_was_applied_cannot_be_committed_again(db_factory: OpenFn) -> None:
    db = await db_factory()
    applied_then_recommitted = 0
    for turns in range(1, 12):
        batch = db.kv.batch().put(b"k", b"batch %d" % turns)
        how = await cancel_after_turns(batch.commit, turns)
        await db.kv.put(b"sentinel", b"%d" % turns)  # the cancelled commit, if appended, is applied now
        if how == "cancelled" and await db.kv.get(b"k") == b"batch %d" % turns:
            await db.kv.put(b"k", b"newer")
            try:
                await batch.commit()  # must be refused: it was committed
            except quanta.InvalidArgumentError:
                continue
            applied_then_recommitted += 1
            assert await db.kv.get(b"k") == b"newer", "a re-committed batch overwrote a newer write"
    assert applied_then_recommitted == 0


# =============================================================================== flush, compact, verify


async def fill(db: quanta.Database, tag: int, n: int = 300) -> dict[bytes, bytes]:
    items = {b"f%05d" % j: b"%d:%d" % (tag, j) for j in range(n)}
    await db.kv.put_many(items.items())
    return items


@pytest.mark.parametrize("method", ["flush", "compact", "verify"])
async def test_cancelled_flush_compact_and_verify_leave_the_database_whole(db_factory: OpenFn, method: str) -> None:
    rng = random.Random(method)
    db = await db_factory(**SMALL)
    model: dict[bytes, bytes] = {}
    cancelled = 0
    for i in range(20):
        model.update(await fill(db, i, n=rng.randrange(50, 400)))
        how = await cancel_randomly(getattr(db, method), rng)
        cancelled += how == "cancelled"
        assert await state(db) == model
    assert cancelled > 5
    await db.compact()  # background work is not wedged
    assert (await db.stats())["levels"][0]["files"] == 0
    assert await state(db) == model
    await db.verify()
    await db.close()
    db = await db_factory()
    assert await state(db) == model
    await db.verify()


# =============================================================================== close and open


async def test_a_cancelled_close_can_be_completed_by_closing_again(db_factory: OpenFn) -> None:
    rng = random.Random(5)
    model: dict[bytes, bytes] = {}
    for i in range(4):
        db = await db_factory(**SMALL)
        assert await state(db) == model
        model.update(await fill(db, i, n=200))
        await cancel_randomly(db.close, rng)
        if not db.closed:
            assert await state(db) == model  # still open and whole
        await db.close()
        assert db.closed
    db = await db_factory()
    assert await state(db) == model


async def test_a_cancelled_close_still_completes_in_the_background(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    try:
        assert await cancel_after_turns(db.close, 2) == "cancelled"
        with anyio.move_on_after(2):
            while not db.closed:  # noqa: ASYNC110 - polling a property: there is no event to wait on
                await asyncio.sleep(0.01)
        assert db.closed
    finally:
        await db.close()


async def test_async_with_under_a_timeout_still_closes_the_database(db_factory: OpenFn, backend: str) -> None:
    db = await db_factory()  # create it, then use the context-manager form
    await db.close()
    opts: dict[str, Any] = {"fs": db_factory.fs} if backend == "memory" else {}  # type: ignore[attr-defined]
    opening = quanta.open(db_factory.path, **opts)  # type: ignore[attr-defined]
    with anyio.move_on_after(0.05):
        async with opening as db:
            await db.kv.put(b"k", b"v")
            await anyio.sleep(5)
    try:
        assert db.closed
        async with quanta.open(db_factory.path, **opts) as again:  # type: ignore[attr-defined]
            assert await again.kv.get(b"k") == b"v"
    finally:
        await db.close()


class SlowCreateFS(OSFileSystem):
    """Real files, but creating one takes 20 ms: recovery runs long enough for a cancellation
    to land inside it every time."""

    def create(self, path: str) -> WritableFile:
        time.sleep(0.02)
        return super().create(path)


async def test_a_cancelled_open_leaves_the_database_whole_and_free(tmp_path: Any) -> None:
    """Cancelled at random points of recovery (which may finish in its thread after the
    cancellation, but must never race the next open), the next open -- right away -- finds
    the database whole and writable."""
    path = str(tmp_path / "db")
    db = await quanta.open(path)
    model = await fill(db, 0)
    await db.close()
    rng = random.Random(13)
    for i in range(12):
        fs = SlowCreateFS() if i % 2 else None
        opened: quanta.Database | None = None
        if i % 3:  # anyio timeout
            with anyio.move_on_after(rng.choice([0, 5e-4, 2e-3, 1e-2, 3e-2])):
                opened = await quanta.open(path, fs=fs)
        else:  # asyncio task.cancel() after a few loop turns
            task = asyncio.ensure_future(quanta.open(path, fs=fs)._open())
            for _ in range(rng.randrange(1, 8)):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                opened = await task
        if opened is not None:  # the open won the race
            await opened.close()
        async with quanta.open(path) as db:  # at once: no DatabaseLockedError, no half-recovered state
            assert await state(db) == model
            model.update(await fill(db, i + 1, n=20))
    async with quanta.open(path) as db:
        assert await state(db) == model
        await db.verify()


async def test_open_under_an_anyio_timeout_either_opens_or_leaves_nothing(db_factory: OpenFn) -> None:
    db = await db_factory()
    await fill(db, 0)
    await db.close()
    for seconds in (0, 1e-5, 1e-4, 1e-3, 5e-3):
        db = None
        with anyio.move_on_after(seconds):
            db = await db_factory()
        if db is not None:
            await db.close()
        db = await db_factory()  # the directory is free again
        assert len(await state(db)) == 300
        await db.close()


# =============================================================================== scans and reads


async def test_a_cancelled_scan_releases_its_snapshot_and_the_database_works_on(db_factory: OpenFn) -> None:
    db = await db_factory(**SMALL)
    model = await fill(db, 0, n=2000)
    rng = random.Random(9)

    async def scan_slowly() -> None:
        async for _ in db.kv.scan(reverse=rng.random() < 0.5):
            await asyncio.sleep(0)

    for _ in range(10):
        await cancel_randomly(scan_slowly, rng)
    gc.collect()  # abandoned async generators are finalised by the loop ...
    for _ in range(5):
        await asyncio.sleep(0)  # ... which runs their aclose() soon after
    assert (await db.stats())["open_snapshots"] == 0
    model.update(await fill(db, 1, n=2000))
    await db.compact()
    assert await state(db) == model


async def test_cancelled_reads_change_nothing(db: quanta.Database) -> None:
    model = await fill(db, 0)
    rng = random.Random(11)
    for _ in range(20):
        await cancel_randomly(lambda: db.kv.get(b"f00001"), rng)
        await cancel_randomly(lambda: db.kv.get_many(list(model)), rng)
        await cancel_randomly(db.stats, rng)
    assert await state(db) == model
    assert (await db.stats())["open_snapshots"] == 0
