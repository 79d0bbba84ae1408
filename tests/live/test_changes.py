"""The change bus (``db.changes``, ``db.observe``) and system events (``db.events``,
``db.observe_events``), as a user sees them.

Every test that takes the ``db`` / ``db_factory`` fixtures runs twice: on the in-memory file
layer and on a real temporary directory (where flushes and compactions run in worker
processes). Each section states one part of the contract; the assertions are the spec.

Sections: what a commit publishes (one ChangeSet per commit and subscriber, deduplicated,
never partial, its origin), ordering and exactly-once under concurrent writers with flushes
and compactions running, where a subscription starts, visibility and durability at delivery,
``with_old``, slow subscribers (overflow), unsubscribing, close / failure / read-only,
routing (a Hypothesis property against a brute-force filter, and 1,000 subscribers),
virtual time (``reactivex.testing.TestScheduler``), bad arguments, stats, and system events.

How the tests wait: a stream is read with a timeout (``take`` / ``rest``) so that a missing
delivery fails the test instead of hanging it; an Rx observer is a :class:`Recorder`. No
assertion depends on wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reactive_helpers import TIMEOUT, Recorder, SyncFails, rest, subscribers, take
from reactivex.scheduler import ImmediateScheduler
from reactivex.testing import TestScheduler

import quanta
from quanta import Change, ChangeSet, SystemEvent
from quanta._storage.vfs import MemoryFileSystem

OpenFn = Callable[..., Awaitable[quanta.Database]]
T = TypeVar("T")


# Tiny memtables and tables: every few writes make a flush, and compactions follow.
SMALL = {
    "memtable_bytes": 4096,
    "block_size": 256,
    "l0_compaction_trigger": 2,
    "l1_target_bytes": 8192,
    "target_file_bytes": 4096,
}


# =============================================================================== helpers


def put(key: bytes, value: bytes, old: bytes | None = None) -> Change:
    return Change(key, "put", value, old)


def delete(key: bytes, old: bytes | None = None) -> Change:
    return Change(key, "delete", None, old)


async def last_seq(db: quanta.Database) -> int:
    return int((await db.stats())["last_seq"])


def by_key(changes: tuple[Change, ...]) -> dict[bytes, Change]:
    """The changes of one ChangeSet by key (and a check that no key appears twice)."""
    out = {c.key: c for c in changes}
    assert len(out) == len(changes), f"a key appears twice in one ChangeSet: {changes}"
    return out


def db_files(db_factory: Any, suffix: str) -> set[int]:
    """Numbers of the files named ``NNNNNN<suffix>`` in the test database's directory."""
    fs = db_factory.fs
    names = fs.listdir(db_factory.path) if fs is not None else os.listdir(db_factory.path)
    return {int(name[: -len(suffix)]) for name in names if name.endswith(suffix)}


# =============================================================================== what a commit publishes


async def test_each_kind_of_commit_publishes_one_change_set_with_its_origin(db: quanta.Database) -> None:
    stream = db.changes()
    await db.kv.put(b"a", b"1")
    await db.kv.delete(b"a")
    await db.kv.put_many([(b"b", b"2"), (b"c", b"3")])
    await db.kv.batch().put(b"d", b"4").delete(b"b").commit()
    async with db.transaction() as tx:
        await tx.kv.put(b"e", b"5")
        await tx.kv.delete(b"c")
    s = stream.start_seq
    *plain, tx_set = await take(stream, 5)
    assert plain == [
        ChangeSet(s + 1, (put(b"a", b"1"),), "kv"),
        ChangeSet(s + 2, (delete(b"a"),), "kv"),
        ChangeSet(s + 3, (put(b"b", b"2"), put(b"c", b"3")), "kv"),
        ChangeSet(s + 4, (put(b"d", b"4"), delete(b"b")), "batch"),
    ]
    # a transaction buffers its writes by key: their order in the ChangeSet is not the call order
    assert (tx_set.seq, tx_set.origin) == (s + 5, "transaction")
    assert by_key(tx_set.changes) == {b"e": put(b"e", b"5"), b"c": delete(b"c")}


async def test_a_change_set_carries_the_seq_the_commit_got(db: quanta.Database) -> None:
    stream = db.changes()
    async with db.transaction() as tx:
        await tx.kv.put(b"k", b"v")
    [cs] = await take(stream, 1)
    assert cs.seq == tx.commit_seq == await last_seq(db)


async def test_run_transaction_publishes_only_the_attempt_that_committed(db: quanta.Database) -> None:
    await db.kv.put(b"n", b"0")
    stream = db.changes()
    attempts = 0

    async def bump(tx: quanta.Transaction) -> None:
        nonlocal attempts
        attempts += 1
        n = int(await tx.kv.get(b"n") or b"0")
        if attempts == 1:
            await db.kv.put(b"n", b"10")  # a concurrent commit: this attempt conflicts
        await tx.kv.put(b"n", b"%d" % (n + 1))

    await db.run_transaction(bump)
    assert attempts == 2
    assert await take(stream, 2) == [
        ChangeSet(stream.start_seq + 1, (put(b"n", b"10"),), "kv"),
        ChangeSet(stream.start_seq + 2, (put(b"n", b"11"),), "transaction"),
    ]


async def test_an_empty_value_is_a_put_not_a_delete(db: quanta.Database) -> None:
    stream = db.changes()
    await db.kv.put(b"k", b"")
    [cs] = await take(stream, 1)
    assert cs.changes == (Change(b"k", "put", b"", None),)


async def test_a_key_written_twice_in_one_batch_appears_once_with_its_final_value(db: quanta.Database) -> None:
    stream = db.changes()
    old_stream = db.changes(with_old=True)
    await db.kv.put(b"x", b"before")
    batch = db.kv.batch()
    batch.put(b"x", b"1").put(b"y", b"2").put(b"x", b"3").delete(b"y").put(b"z", b"4").delete(b"x").put(b"x", b"5")
    await batch.commit()
    await db.kv.put_many([(b"p", b"1"), (b"p", b"2"), (b"q", b"3")])
    _, cs, many = await take(stream, 3)
    assert by_key(cs.changes) == {b"x": put(b"x", b"5"), b"y": delete(b"y"), b"z": put(b"z", b"4")}
    assert by_key(many.changes) == {b"p": put(b"p", b"2"), b"q": put(b"q", b"3")}
    _, cs_old, _ = await take(old_stream, 3)
    # old values are the values before the commit, not before the second write in it
    assert by_key(cs_old.changes) == {
        b"x": put(b"x", b"5", old=b"before"),
        b"y": delete(b"y", old=None),
        b"z": put(b"z", b"4", old=None),
    }


async def test_changes_of_distinct_keys_keep_batch_order(db: quanta.Database) -> None:
    stream = db.changes()
    keys = [b"m", b"c", b"x", b"a", b"q"]  # not sorted: the order is the batch's, not the key order
    await db.kv.put_many([(k, k) for k in keys])
    [cs] = await take(stream, 1)
    assert [c.key for c in cs.changes] == keys


async def test_a_100_key_batch_arrives_as_one_change_set_never_partial(db_factory: OpenFn) -> None:
    db = await db_factory(**SMALL)  # the batch overfills the memtable: it rotates around it
    everything = db.changes()
    ranged = db.changes(start=b"key:030", stop=b"key:060")
    rec = Recorder()
    db.observe(prefix=b"key:09").subscribe(rec)
    items = [(b"key:%03d" % i, b"v" * 80) for i in range(100)]
    await db.kv.put_many(items)
    await db.kv.put(b"marker", b"")
    whole, marker = await take(everything, 2)
    assert whole.changes == tuple(put(k, v) for k, v in items)
    assert marker.changes == (put(b"marker", b""),)
    [part] = await take(ranged, 1)
    assert part.seq == whole.seq
    assert part.changes == tuple(put(k, v) for k, v in items[30:60])
    await rec.until(1)
    assert rec.items == [ChangeSet(whole.seq, tuple(put(k, v) for k, v in items[90:]), "kv")]


async def test_commits_that_write_nothing_publish_nothing(db: quanta.Database) -> None:
    stream = db.changes()
    rec = Recorder()
    db.observe().subscribe(rec)
    await db.kv.put_many([])
    await db.kv.batch().commit()
    async with db.transaction() as tx:
        await tx.kv.get(b"a")  # reads only: no commit
    async with db.transaction(read_only=True) as ro:
        await ro.kv.get(b"a")
    with contextlib.suppress(RuntimeError):
        async with db.transaction() as rolled_back:
            await rolled_back.kv.put(b"never", b"1")
            raise RuntimeError("roll back")
    await db.kv.put(b"marker", b"1")
    [cs] = await take(stream, 1)
    assert cs == ChangeSet(stream.start_seq + 1, (put(b"marker", b"1"),), "kv")
    await rec.until(1)
    assert rec.items == [cs]


async def test_a_conflicting_transaction_publishes_nothing(db: quanta.Database) -> None:
    stream = db.changes()
    tx = db.transaction()
    await tx.kv.get(b"k")
    await tx.kv.put(b"k", b"from tx")
    await db.kv.put(b"k", b"from kv")
    with pytest.raises(quanta.ConflictError):
        await tx.commit()
    await db.kv.put(b"marker", b"1")
    assert [cs.changes for cs in await take(stream, 2)] == [(put(b"k", b"from kv"),), (put(b"marker", b"1"),)]


# =============================================================================== exactly once, in commit order


async def test_concurrent_writers_with_flushes_and_compactions_see_every_commit_once_in_order(
    db_factory: OpenFn,
) -> None:
    """8 writer tasks (puts, put_many, batches with repeated keys and deletes, transactions)
    and a task forcing flushes and compactions, on a 4 KiB memtable that flushes on its own
    every few commits. A stream and an observer each see every commit exactly once, in
    commit order (seqs contiguous from start_seq to the last commit), each ChangeSet equal
    to what its writer committed; each consumer finds the commit applied when it gets it."""
    db = await db_factory(**SMALL)
    writers, rounds = 8, 24
    stream = db.changes()
    start = stream.start_seq
    stale: list[tuple[int, int]] = []  # (change set seq, visible seq) when a consumer saw it too early

    def check_applied(cs: ChangeSet) -> None:
        snap = db.snapshot()
        if snap.seq < cs.seq:
            stale.append((cs.seq, snap.seq))
        snap.release()

    rec = Recorder(on_item=check_applied)
    db.observe().subscribe(rec)
    expected: dict[bytes, tuple[str, dict[bytes, Change]]] = {}  # tag -> (origin, changes)
    tx_seqs: dict[bytes, int] = {}

    async def writer(w: int) -> None:
        for i in range(rounds):
            tag = b"w%d-%03d" % (w, i)  # every commit's first put carries its tag
            value = tag + b"." * 70

            def key(n: int, w: int = w, i: int = i) -> bytes:
                return b"%d/%d/%d" % (w, i % 5, n)  # writers' keys are disjoint: no conflicts

            if i % 4 == 0:
                await db.kv.put(key(0), value)
                changes = [put(key(0), value)]
                origin = "kv"
            elif i % 4 == 1:
                items = [(key(n), value + b"%d" % n) for n in range(3)]
                await db.kv.put_many(items)
                changes = [put(k, v) for k, v in items]
                origin = "kv"
            elif i % 4 == 2:
                await db.kv.batch().put(key(0), b"first").put(key(0), value).delete(key(1)).commit()
                changes = [put(key(0), value), delete(key(1))]
                origin = "batch"
            else:
                async with db.transaction() as tx:
                    await tx.kv.put(key(2), value)
                    await tx.kv.delete(key(0))
                assert tx.commit_seq is not None
                tx_seqs[tag] = tx.commit_seq
                changes = [put(key(2), value), delete(key(0))]
                origin = "transaction"
            expected[tag] = (origin, {c.key: c for c in changes})

    async def consume() -> list[ChangeSet]:
        seen = []
        async for cs in stream:
            check_applied(cs)
            seen.append(cs)
        return seen

    async def maintenance() -> None:
        for _ in range(3):
            await db.flush()
            await asyncio.sleep(0)
            await db.compact()

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(asyncio.gather(maintenance(), *(writer(w) for w in range(writers))), 120)
    stats = await db.stats()
    assert stats["flushes"] > 3 and stats["compactions"] + stats["trivial_moves"] > 0  # the work did run
    await db.close()
    seen = await asyncio.wait_for(consumer, TIMEOUT)
    await rec.until_ended()

    assert [cs.seq for cs in seen] == list(range(start + 1, stats["last_seq"] + 1))
    assert len(seen) == writers * rounds
    for cs in seen:
        tag = next(c.value for c in cs.changes if c.kind == "put")[:6]  # type: ignore[index]
        origin, changes = expected.pop(tag)
        assert (cs.origin, by_key(cs.changes)) == (origin, changes)
        if tag in tx_seqs:
            assert cs.seq == tx_seqs[tag]
    assert expected == {}
    assert rec.items == seen and rec.completed and rec.error is None
    assert stale == []


async def test_old_values_follow_commit_order_when_commits_share_one_fsync(db_factory: OpenFn) -> None:
    """Concurrent puts to one key are committed in groups (one fsync each); the value before
    each commit is the value the previous commit wrote."""
    db = await db_factory(**SMALL)
    stream = db.changes(with_old=True)
    ranged = db.changes(prefix=b"hot", with_old=True)
    await asyncio.gather(*(db.kv.put(b"hot", b"%03d" % i + b"." * 100) for i in range(60)))
    await asyncio.gather(*(db.kv.put(b"hot", b"%03d" % i) for i in range(60, 90)))
    await db.close()
    for seen in (await rest(stream), await rest(ranged)):
        assert len(seen) == 90
        [first] = seen[0].changes
        assert first.old_value is None
        for before, after in itertools.pairwise(seen):
            assert after.changes[0].old_value == before.changes[0].value


# =============================================================================== where a subscription starts


async def test_a_subscriber_that_joins_later_sees_only_later_commits(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"a", b"1")
    await db.close()
    db = await db_factory()  # reopened: the seqs go on from the recovered ones
    await db.kv.put(b"b", b"2")
    before = await last_seq(db)
    assert before >= 2
    stream = db.changes()
    assert stream.start_seq == before
    await db.kv.put(b"c", b"3")
    [cs] = await take(stream, 1)
    assert cs == ChangeSet(before + 1, (put(b"c", b"3"),), "kv")


async def test_a_commit_in_flight_when_the_subscription_starts_is_delivered(db: quanta.Database) -> None:
    """With durability="sync" a commit is appended, then fsynced, then visible; a stream made
    in between starts before it (start_seq is the last visible commit) and receives it."""
    writing = asyncio.create_task(db.kv.put(b"in flight", b"1"))
    await asyncio.sleep(0)  # appended to the WAL, fsync not done
    stats = await db.stats()
    assert stats["last_seq"] < stats["commits"]  # precondition: the commit is not visible yet
    stream = db.changes()
    assert stream.start_seq == stats["last_seq"]
    await writing
    [cs] = await take(stream, 1)
    assert cs == ChangeSet(stream.start_seq + 1, (put(b"in flight", b"1"),), "kv")


async def test_an_observable_is_cold_each_subscription_starts_when_it_is_made(db: quanta.Database) -> None:
    feed = db.observe()  # not subscribed yet: nothing is buffered for it
    assert await subscribers(db) == 0
    await db.kv.put(b"before", b"1")
    early, late = Recorder(), Recorder()
    feed.subscribe(early)
    await db.kv.put(b"middle", b"2")
    feed.subscribe(late)
    assert await subscribers(db) == 2
    await db.kv.put(b"after", b"3")
    await early.until(2)
    await late.until(1)
    assert [cs.changes[0].key for cs in early.items] == [b"middle", b"after"]
    assert [cs.changes[0].key for cs in late.items] == [b"after"]


async def test_each_stream_of_an_observable_is_its_own_subscription(db: quanta.Database) -> None:
    feed = db.observe()
    first = aiter(feed)  # a watch's own iterator: subscribed at first use
    assert aiter(feed) is first
    await db.kv.put(b"a", b"1")
    second = feed.stream()  # one more, subscribed now
    await db.kv.put(b"b", b"2")
    assert await subscribers(db) == 2
    assert [cs.changes[0].key for cs in await take(first, 2)] == [b"a", b"b"]
    assert [cs.changes[0].key for cs in await take(second, 1)] == [b"b"]


# =============================================================================== visibility and durability at delivery


async def test_a_consumer_that_reads_the_store_on_delivery_sees_the_commit(db: quanta.Database) -> None:
    stream = db.changes()
    rec = Recorder(on_item=lambda cs: seen_by_observer.append((cs.seq, db.snapshot().seq)))
    seen_by_observer: list[tuple[int, int]] = []
    db.observe().subscribe(rec)

    async def reader() -> list[bytes | None]:
        values = []
        for _ in range(20):
            cs = await anext(stream)
            values.append(await db.kv.get(cs.changes[0].key))
        return values

    reading = asyncio.create_task(reader())
    for i in range(20):
        await db.kv.put(b"k%02d" % i, b"v%02d" % i)
    assert await asyncio.wait_for(reading, TIMEOUT) == [b"v%02d" % i for i in range(20)]
    await rec.until(20)
    assert all(visible >= seq for seq, visible in seen_by_observer)


async def test_with_sync_durability_a_change_set_is_delivered_only_after_its_fsync() -> None:
    """The consumer wakes and, at once, simulates a power loss: the commit it was told about
    must survive it."""
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, durability="sync")
    try:
        stream = db.changes()
        crashed: list[MemoryFileSystem] = []

        async def consumer() -> None:
            for _ in range(5):
                await anext(stream)
                crashed.append(fs.crash())

        consuming = asyncio.create_task(consumer())
        await asyncio.sleep(0)  # the consumer waits on the stream
        for i in range(5):
            await db.kv.put(b"k%d" % i, b"v")
        await asyncio.wait_for(consuming, TIMEOUT)
    finally:
        await db.close()
    for i, after_crash in enumerate(crashed):
        reopened = await quanta.open("/db", fs=after_crash)
        try:
            assert await reopened.kv.get_many([b"k%d" % j for j in range(i + 1)]) == [b"v"] * (i + 1)
        finally:
            await reopened.close()


# =============================================================================== with_old


async def test_with_old_carries_the_value_before_the_commit(db: quanta.Database) -> None:
    old = db.changes(with_old=True)
    plain = db.changes()
    await db.kv.put(b"a", b"1")  # created
    await db.kv.put(b"a", b"2")  # overwritten (the old value is in the memtable)
    await db.flush()
    await db.kv.put(b"a", b"3")  # overwritten (the old value is in a table file)
    await db.kv.delete(b"a")  # deleted
    await db.kv.delete(b"a")  # deleted again: it was absent
    await db.kv.batch().put(b"a", b"4").delete(b"a").commit()  # created and deleted in one batch
    await db.kv.put_many([(b"a", b"5"), (b"b", b"")])
    expected = [
        (put(b"a", b"1", old=None),),
        (put(b"a", b"2", old=b"1"),),
        (put(b"a", b"3", old=b"2"),),
        (delete(b"a", old=b"3"),),
        (delete(b"a", old=None),),
        (delete(b"a", old=None),),
        (put(b"a", b"5", old=None), put(b"b", b"", old=None)),
    ]
    assert [cs.changes for cs in await take(old, 7)] == expected
    without = [tuple(Change(c.key, c.kind, c.value, None) for c in changes) for changes in expected]
    assert [cs.changes for cs in await take(plain, 7)] == without


async def test_with_old_on_a_key_range_and_on_an_observer(db: quanta.Database) -> None:
    await db.kv.put_many([(b"user:1", b"ann"), (b"item:1", b"pen")])
    stream = db.changes(prefix=b"user:", with_old=True)
    rec = Recorder()
    db.observe(start=b"item:", stop=b"item;", with_old=True).subscribe(rec)
    await db.kv.put_many([(b"user:1", b"bob"), (b"item:1", b"ink"), (b"user:2", b"cy")])
    [cs] = await take(stream, 1)
    assert cs.changes == (put(b"user:1", b"bob", old=b"ann"), put(b"user:2", b"cy", old=None))
    await rec.until(1)
    assert rec.items[0].changes == (put(b"item:1", b"ink", old=b"pen"),)


# =============================================================================== slow subscribers


async def test_an_overflowing_stream_yields_everything_buffered_then_raises(db: quanta.Database) -> None:
    stream = db.changes(buffer=3)
    s = stream.start_seq
    for i in range(6):
        await db.kv.put(b"k", b"%d" % i)  # the writer never waits for the consumer
    assert await subscribers(db) == 0  # removed from the bus at the overflow
    assert stream.closed
    got = []
    with pytest.raises(quanta.SubscriberOverflowError) as info:
        async for cs in stream:
            got.append(cs)
    assert [cs.seq for cs in got] == [s + 1, s + 2, s + 3]
    assert info.value.last_seq == s + 3
    assert await rest(stream) == []  # the error is raised once; then the stream is over


@pytest.mark.parametrize("face", ["stream", "observer"])
async def test_a_writer_loop_that_never_waits_does_not_starve_its_consumers(db_factory: OpenFn, face: str) -> None:
    """durability="os" commits never suspend on their own, so a loop of puts would keep every
    consumer from running and overflow it. Once a buffer is half full, the next commit yields
    to the loop once: 5,000 commits through a 100-change-set buffer all arrive."""
    db = await db_factory(durability="os")
    got: list[int] = []
    if face == "stream":
        stream = db.changes(buffer=100)

        async def consume() -> None:
            async for cs in stream:
                got.append(cs.seq)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
    else:
        errors: list[Exception] = []
        db.observe(buffer=100).subscribe(lambda cs: got.append(cs.seq), on_error=errors.append)
    for i in range(5000):
        await db.kv.put(b"k%d" % i, b"v")
    await db.close()
    if face == "stream":
        await asyncio.wait_for(consumer, 30)
    else:
        await asyncio.sleep(0)
        assert errors == []
    assert got == list(range(1, 5001))


async def test_an_overflow_after_partial_consumption_leaves_no_gap(db: quanta.Database) -> None:
    stream = db.changes(buffer=2)
    s = stream.start_seq
    await db.kv.put(b"k", b"1")
    await db.kv.put(b"k", b"2")
    [first] = await take(stream, 1)
    await db.kv.put(b"k", b"3")  # the buffer is full again
    await db.kv.put(b"k", b"4")  # overflow
    await db.kv.put(b"k", b"5")
    got = [first]
    with pytest.raises(quanta.SubscriberOverflowError) as info:
        async for cs in stream:
            got.append(cs)
    assert [cs.seq for cs in got] == [s + 1, s + 2, s + 3]
    assert info.value.last_seq == got[-1].seq


async def test_a_stream_with_buffer_1_keeps_up_with_a_consumer_that_keeps_up(db: quanta.Database) -> None:
    stream = db.changes(buffer=1)
    for i in range(10):
        await db.kv.put(b"k", b"%d" % i)
        [cs] = await take(stream, 1)
        assert cs.changes == (put(b"k", b"%d" % i),)
    assert await subscribers(db) == 1


async def test_an_overflowing_observer_gets_every_buffered_item_then_on_error(db: quanta.Database) -> None:
    rec = Recorder()
    db.observe(buffer=2).subscribe(rec)
    s = await last_seq(db)
    # 20 concurrent commits share one fsync and are published in one step: no delivery can
    # run in between, so the 2-item buffer overflows
    await asyncio.gather(*(db.kv.put(b"k%02d" % i, b"v") for i in range(20)))
    assert await subscribers(db) == 0
    await rec.until_ended()
    assert [cs.seq for cs in rec.items] == [s + 1, s + 2]
    assert isinstance(rec.error, quanta.SubscriberOverflowError)
    assert rec.error.last_seq == s + 2
    assert not rec.completed


async def test_a_slow_subscriber_does_not_disturb_the_others(db: quanta.Database) -> None:
    slow = db.changes(buffer=1)
    fast = db.changes()
    for i in range(5):
        await db.kv.put(b"k", b"%d" % i)
    assert len(await take(fast, 5)) == 5
    await db.kv.put(b"k", b"5")
    [cs] = await take(fast, 1)
    assert cs.changes == (put(b"k", b"5"),)
    assert len(await take(slow, 1)) == 1
    with pytest.raises(quanta.SubscriberOverflowError):
        await take(slow, 1)


# =============================================================================== unsubscribing


async def test_aclose_unsubscribes_and_drops_what_was_buffered(db: quanta.Database) -> None:
    stream = db.changes()
    await db.kv.put(b"k", b"1")
    assert await subscribers(db) == 1
    await stream.aclose()
    assert await subscribers(db) == 0 and stream.closed
    await db.kv.put(b"k", b"2")
    assert await rest(stream) == []


async def test_aclose_ends_an_iteration_waiting_in_another_task(db: quanta.Database) -> None:
    stream = db.changes()

    async def consume() -> list[ChangeSet]:
        return [cs async for cs in stream]

    consumer = asyncio.create_task(consume())
    try:
        await asyncio.sleep(0)  # the consumer now waits for a change set
        assert not consumer.done()
        await stream.aclose()
        for _ in range(10):  # a woken consumer finishes within a few turns of the loop
            await asyncio.sleep(0)
        assert consumer.done()
        assert consumer.result() == []
    finally:
        consumer.cancel()


async def test_leaving_async_with_unsubscribes(db: quanta.Database) -> None:
    async with db.changes() as stream:
        await db.kv.put(b"k", b"1")
        [cs] = await take(stream, 1)
        assert cs.changes == (put(b"k", b"1"),)
        assert await subscribers(db) == 1
    assert await subscribers(db) == 0
    await db.kv.put(b"k", b"2")
    assert await rest(stream) == []


async def test_a_stream_nobody_holds_is_collected_and_unsubscribed(db: quanta.Database) -> None:
    stream = db.changes()
    events = db.events()
    await db.kv.put(b"k", b"1")  # something buffered: the bus must not keep the stream alive
    ref = weakref.ref(stream)
    assert (await db.stats())["event_subscribers"] == 1
    del stream, events
    assert ref() is None  # no reference cycle: collected at once
    stats = await db.stats()
    assert stats["change_subscribers"] == 0 and stats["event_subscribers"] == 0
    gc.collect()
    await db.kv.put(b"k", b"2")  # publishing to nobody


async def test_breaking_out_of_async_for_unsubscribes(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"0")
    writer = asyncio.create_task(db.kv.put_many([(b"k%d" % i, b"v") for i in range(3)]))
    async for cs in db.changes():
        assert len(cs.changes) == 3
        break
    await writer
    assert await subscribers(db) == 0


async def test_disposing_an_observer_unsubscribes_and_stops_delivery(db: quanta.Database) -> None:
    gone, control = Recorder(), Recorder()
    subscription = db.observe().subscribe(gone)
    db.observe().subscribe(control)
    await db.kv.put(b"k", b"1")
    await gone.until(1)
    subscription.dispose()
    assert await subscribers(db) == 1
    await db.kv.put(b"k", b"2")
    await control.until(2)  # the disposed observer would have had its turn before this
    assert [cs.changes[0].value for cs in gone.items] == [b"1"]
    assert not gone.ended


async def test_disposing_with_a_delivery_pending_delivers_nothing_more(db: quanta.Database) -> None:
    """The first observer's on_next disposes the second, whose delivery of the same commit
    is already scheduled: it must not run."""
    second = Recorder()
    subscriptions = []
    first = Recorder(on_item=lambda cs: subscriptions[0].dispose())
    db.observe().subscribe(first)
    subscriptions.append(db.observe().subscribe(second))
    await db.kv.put(b"k", b"1")
    await first.until(1)
    control = Recorder()
    db.observe().subscribe(control)
    await db.kv.put(b"k", b"2")
    await control.until(1)
    assert second.items == [] and not second.ended
    assert await subscribers(db) == 2


async def test_an_on_next_that_raises_ends_the_subscription_with_on_error(db: quanta.Database) -> None:
    boom = ValueError("consumer bug")

    def on_item(cs: ChangeSet) -> None:
        raise boom

    failing = Recorder(on_item=on_item)
    db.observe().subscribe(failing)
    await db.kv.put(b"k", b"1")
    await failing.until_ended()
    assert failing.error is boom
    assert await subscribers(db) == 0
    control = Recorder()
    db.observe().subscribe(control)
    await db.kv.put(b"k", b"2")
    await control.until(1)  # the failed observer would have had its turn before this
    assert failing.items == [] and failing.error is boom
    assert await db.kv.get(b"k") == b"2"  # the commit path is unaffected


# =============================================================================== close, failure, read-only


@pytest.mark.parametrize("durability", ["sync", "os"])
async def test_close_ends_streams_and_observers_after_every_acknowledged_commit(
    db_factory: OpenFn, durability: str
) -> None:
    """Commits in flight when close() starts are delivered; commits refused by close are not;
    then every stream ends (StopAsyncIteration) and every observer completes."""
    db = await db_factory(durability=durability)
    stream = db.changes()
    ranged = db.changes(prefix=b"k01")
    events = db.events()
    rec = Recorder()
    db.observe().subscribe(rec)

    async def write(i: int) -> bool:
        try:
            await db.kv.put(b"k%03d" % i, b"v")
        except quanta.DatabaseClosedError:
            return False
        return True

    early = [asyncio.create_task(write(i)) for i in range(40)]
    await asyncio.sleep(0)  # these are appended
    if durability == "sync":
        stats = await db.stats()
        assert stats["last_seq"] < stats["commits"]  # precondition: commits are in flight
    late = [asyncio.create_task(write(i)) for i in range(40, 50)]  # they start after close() did
    await db.close()
    acked = await asyncio.gather(*early, *late)
    assert all(acked[:40]) and not any(acked[40:])

    received = await rest(stream)
    assert {c.key for cs in received for c in cs.changes} == {b"k%03d" % i for i in range(40)}
    assert [c.key for cs in await rest(ranged) for c in cs.changes] == [b"k%03d" % i for i in range(10, 20)]
    kinds = [e.kind for e in await rest(events)]
    assert "flush_finished" in kinds  # close flushed the memtable, and the stream saw it
    await rec.until_ended()
    assert rec.completed and rec.error is None and rec.items == received
    assert await rest(stream) == []  # an ended stream stays ended


async def test_subscribing_to_a_closed_database_raises(db: quanta.Database) -> None:
    feed = db.observe()
    await db.close()
    with pytest.raises(quanta.DatabaseClosedError):
        db.changes()
    with pytest.raises(quanta.DatabaseClosedError):
        db.observe()
    with pytest.raises(quanta.DatabaseClosedError):
        db.events()
    with pytest.raises(quanta.DatabaseClosedError):
        db.observe_events()
    rec = Recorder()
    feed.subscribe(rec)  # made while open, subscribed after close
    assert isinstance(rec.error, quanta.DatabaseClosedError)
    with pytest.raises(quanta.DatabaseClosedError):
        async for _ in feed:
            pass


async def test_a_read_only_database_takes_subscriptions_and_completes_them_on_close(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    await db.close()
    ro = await db_factory(read_only=True)
    stream = ro.changes()
    events = ro.events()
    rec = Recorder()
    ro.observe(prefix=b"k").subscribe(rec)
    stats = await ro.stats()
    assert stats["change_subscribers"] == 2 and stats["event_subscribers"] == 1
    assert stream.start_seq == stats["last_seq"] >= 1
    await ro.close()
    assert await rest(stream) == []
    assert await rest(events) == []
    await rec.until_ended()
    assert rec.completed and rec.items == []


async def test_a_failed_database_ends_subscriptions_with_database_failed_error() -> None:
    fs = SyncFails()
    db = await quanta.open("/db", fs=fs)
    try:
        await db.kv.put(b"ok", b"1")
        stream = db.changes()
        events = db.events()
        rec = Recorder()
        db.observe().subscribe(rec)
        fs.failing = True
        with pytest.raises(quanta.DatabaseFailedError):
            await db.kv.put(b"lost", b"2")
        [failed] = await take(events, 1)
        assert failed.kind == "database_failed" and "injected" in (failed.error or "")
    finally:
        await db.close()
    with pytest.raises(quanta.DatabaseFailedError) as info:
        await rest(stream)  # the commit whose fsync failed was never published
    assert isinstance(info.value.__cause__, quanta.StorageIOError)
    with pytest.raises(quanta.DatabaseFailedError):
        await rest(events)
    await rec.until_ended()
    assert rec.items == [] and isinstance(rec.error, quanta.DatabaseFailedError)


async def test_the_database_failed_event_carries_its_time() -> None:
    fs = SyncFails()
    db = await quanta.open("/db", fs=fs)
    try:
        events = db.events()
        fs.failing = True
        with pytest.raises(quanta.DatabaseFailedError):
            await db.kv.put(b"lost", b"2")
        [failed] = await take(events, 1)
        assert failed.kind == "database_failed"
        assert failed.time > 0
    finally:
        await db.close()


# =============================================================================== routing


def in_range(key: bytes, prefix: bytes | None, start: bytes | None, stop: bytes | None) -> bool:
    """The brute-force filter the routing table must agree with."""
    return (
        (prefix is None or key.startswith(prefix)) and (start is None or key >= start) and (stop is None or key < stop)
    )


ALPHABET = b"ab\x00\xff"
KEYS = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=3).map(bytes)
BOUNDS = st.one_of(st.none(), st.just(b""), st.lists(st.sampled_from(ALPHABET), max_size=3).map(bytes))
WRITES = st.lists(st.tuples(KEYS, st.one_of(st.none(), st.binary(max_size=2))), min_size=1, max_size=8)
COMMITS = st.lists(st.tuples(st.sampled_from(["kv", "batch", "transaction"]), WRITES), max_size=7)
SUBSCRIPTIONS = st.lists(
    st.fixed_dictionaries(
        {
            "prefix": BOUNDS,
            "start": BOUNDS,
            "stop": BOUNDS,
            "with_old": st.booleans(),
            "face": st.sampled_from(["stream", "observer"]),
            "after": st.integers(0, 7),  # subscribe after this many commits
            "until": st.one_of(st.none(), st.integers(0, 7)),  # unsubscribe after this many
        }
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, database=None)
@given(subs=SUBSCRIPTIONS, commits=COMMITS, durability=st.sampled_from(["sync", "os"]))
def test_routing_delivers_exactly_what_a_brute_force_filter_predicts(
    subs: list[dict[str, Any]], commits: list[tuple[str, list[tuple[bytes, bytes | None]]]], durability: str
) -> None:
    """Random subscriptions (prefix, start/stop, empty and overlapping ranges, joining and
    leaving between commits) and random commits: each subscriber receives exactly the
    change sets a brute-force filter over a dict model predicts."""
    asyncio.run(check_routing(subs, commits, durability))


async def check_routing(
    subs: list[dict[str, Any]], commits: list[tuple[str, list[tuple[bytes, bytes | None]]]], durability: str
) -> None:
    db = await quanta.open("/db", fs=MemoryFileSystem(), durability=durability)
    model: dict[bytes, bytes] = {}
    # subscribed before commit `joins`, unsubscribed before commit `leaves` (None: at close)
    joins = [min(sub["after"], len(commits)) for sub in subs]
    leaves = [
        sub["until"] if sub["until"] is not None and joins[i] <= sub["until"] <= len(commits) else None
        for i, sub in enumerate(subs)
    ]
    expected: list[list[ChangeSet]] = [[] for _ in subs]
    streams: dict[int, quanta.Watch[ChangeSet]] = {}
    received: dict[int, list[ChangeSet]] = {}
    observers: dict[int, tuple[Recorder, Any]] = {}
    try:
        for n in range(len(commits) + 1):
            for i, sub in enumerate(subs):
                args = (sub["start"], sub["stop"])
                if joins[i] == n:
                    if sub["face"] == "stream":
                        streams[i] = db.changes(*args, prefix=sub["prefix"], with_old=sub["with_old"])
                        assert streams[i].start_seq == n
                    else:
                        rec = Recorder()
                        feed = db.observe(*args, prefix=sub["prefix"], with_old=sub["with_old"])
                        observers[i] = (rec, feed.subscribe(rec))
                if leaves[i] == n:
                    if i in streams:  # read what it has (aclose drops undelivered items), then leave
                        received[i] = await take(streams[i], len(expected[i]))
                        await streams[i].aclose()
                    else:
                        await observers[i][0].until(len(expected[i]))  # its deliveries so far
                        observers[i][1].dispose()
            if n == len(commits):
                break
            api, writes = commits[n]
            final = dict(writes)  # the last write of each key wins
            if api == "kv" and len(writes) == 1:
                [(key, value)] = writes
                if value is None:
                    await db.kv.delete(key)
                else:
                    await db.kv.put(key, value)
            elif api == "kv" and all(v is not None for _, v in writes):
                await db.kv.put_many(writes)  # type: ignore[arg-type]
            elif api == "transaction":
                async with db.transaction() as tx:
                    for key, value in writes:
                        if value is None:
                            await tx.kv.delete(key)
                        else:
                            await tx.kv.put(key, value)
            else:
                api = "batch"
                batch = db.kv.batch()
                for key, value in writes:
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
                await batch.commit()
            for i, sub in enumerate(subs):
                leave = leaves[i]
                if joins[i] <= n and (leave is None or leave > n):
                    changes = tuple(
                        Change(
                            key,
                            "delete" if value is None else "put",
                            value,
                            model.get(key) if sub["with_old"] else None,
                        )
                        for key, value in final.items()
                        if in_range(key, sub["prefix"], sub["start"], sub["stop"])
                    )
                    if changes:
                        expected[i].append(ChangeSet(n + 1, changes, api))
            for key, value in final.items():
                if value is None:
                    model.pop(key, None)
                else:
                    model[key] = value
    finally:
        await db.close()
    for i, sub in enumerate(subs):
        if i in streams:
            got = received.get(i, []) + await rest(streams[i])
        else:
            rec = observers[i][0]
            if leaves[i] is None:
                await rec.until_ended()
                assert rec.completed
            else:
                assert not rec.ended
            got = rec.items
        canonical = [(cs.seq, cs.origin, by_key(cs.changes)) for cs in got]
        assert canonical == [(cs.seq, cs.origin, by_key(cs.changes)) for cs in expected[i]], sub


async def test_a_thousand_subscribers_on_other_prefixes_receive_nothing(db: quanta.Database) -> None:
    others = [db.changes(prefix=b"other:%04d:" % i) for i in range(1000)]
    mine = db.changes(prefix=b"mine:")
    published = (await db.stats())["change_sets_published"]
    await db.kv.put_many([(b"mine:%02d" % i, b"v") for i in range(50)])
    for i in range(20):
        await db.kv.put(b"mine:%02d" % i, b"w")
    stats = await db.stats()
    assert stats["change_subscribers"] == 1001
    assert stats["change_sets_published"] == published + 21  # handed to `mine` only
    assert len(await take(mine, 21)) == 21
    await db.kv.put_many([(b"other:0007:x", b"1"), (b"other:0999:", b"2"), (b"other:1000:", b"3")])
    assert (await db.stats())["change_sets_published"] == published + 23
    [seven] = await take(others[7], 1)
    [last] = await take(others[999], 1)
    assert seven.changes == (put(b"other:0007:x", b"1"),)
    assert last.changes == (put(b"other:0999:", b"2"),)


async def test_ranges_are_half_open_and_prefixes_stop_at_their_last_key(db: quanta.Database) -> None:
    ranged = db.changes(start=b"b", stop=b"d")
    prefixed = db.changes(prefix=b"a\xff")
    top = db.changes(prefix=b"\xff\xff")
    empty = db.changes(start=b"x", stop=b"x")
    inverted = db.changes(start=b"y", stop=b"x")
    disjoint = db.changes(prefix=b"a", start=b"b")
    keys = [b"a", b"a\xff", b"a\xff\xff\x00", b"b", b"b\x00", b"c\xff", b"d", b"\xff", b"\xff\xff", b"\xff\xff\x01"]
    await db.kv.put_many([(k, b"") for k in keys])
    await db.close()

    def keys_of(seen: list[ChangeSet]) -> list[bytes]:
        return [c.key for cs in seen for c in cs.changes]

    assert keys_of(await rest(ranged)) == [b"b", b"b\x00", b"c\xff"]
    assert keys_of(await rest(prefixed)) == [b"a\xff", b"a\xff\xff\x00"]
    assert keys_of(await rest(top)) == [b"\xff\xff", b"\xff\xff\x01"]
    assert await rest(empty) == [] and await rest(inverted) == [] and await rest(disjoint) == []


# =============================================================================== virtual time


async def test_an_observer_on_a_test_scheduler_gets_items_only_when_virtual_time_advances(
    db: quanta.Database,
) -> None:
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.observe().subscribe(observer, scheduler=scheduler)
    await db.kv.put(b"a", b"1")
    await db.kv.put(b"b", b"2")
    for _ in range(5):
        await asyncio.sleep(0)  # the event loop runs; the observer's scheduler does not
    assert observer.messages == []
    scheduler.advance_by(1)
    assert [(m.value.kind, m.value.value.changes) for m in observer.messages] == [
        ("N", (put(b"a", b"1"),)),
        ("N", (put(b"b", b"2"),)),
    ]
    await db.kv.put(b"c", b"3")
    assert len(observer.messages) == 2
    scheduler.advance_by(1)
    assert [m.value.value.changes for m in observer.messages[2:]] == [(put(b"c", b"3"),)]


async def test_an_observer_whose_scheduler_never_advances_overflows(db: quanta.Database) -> None:
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.observe(buffer=3).subscribe(observer, scheduler=scheduler)
    s = await last_seq(db)
    for i in range(10):
        await db.kv.put(b"k", b"%d" % i)  # the writer never waits for the observer
    assert observer.messages == []
    assert await subscribers(db) == 0
    scheduler.advance_by(1)
    kinds = [m.value.kind for m in observer.messages]
    assert kinds == ["N", "N", "N", "E"]
    assert [m.value.value.seq for m in observer.messages[:3]] == [s + 1, s + 2, s + 3]
    error = observer.messages[3].value.exception
    assert isinstance(error, quanta.SubscriberOverflowError) and error.last_seq == s + 3


async def test_on_a_test_scheduler_close_completes_after_the_buffered_items(db: quanta.Database) -> None:
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.observe().subscribe(observer, scheduler=scheduler)
    await db.kv.put(b"k", b"1")
    await db.close()
    assert observer.messages == []
    scheduler.advance_by(1)
    assert [m.value.kind for m in observer.messages] == ["N", "C"]


async def test_on_a_test_scheduler_dispose_before_advancing_delivers_nothing(db: quanta.Database) -> None:
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    subscription = db.observe().subscribe(observer, scheduler=scheduler)
    await db.kv.put(b"k", b"1")
    subscription.dispose()
    assert await subscribers(db) == 0
    scheduler.advance_by(1)
    assert observer.messages == []


async def test_an_observer_that_raises_on_an_inline_scheduler_cannot_break_a_commit() -> None:
    db = await quanta.open("/db", fs=MemoryFileSystem())
    hit = asyncio.Event()
    loop_errors: list[dict[str, Any]] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        loop_errors.append(context)
        hit.set()

    asyncio.get_running_loop().set_exception_handler(handler)

    def on_next(cs: ChangeSet) -> None:
        raise ValueError("consumer bug")

    db.observe().subscribe(on_next, scheduler=ImmediateScheduler())
    writing = asyncio.create_task(db.kv.put(b"k", b"1"))
    failed = asyncio.create_task(hit.wait())
    try:
        await asyncio.wait({writing, failed}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.wait_for(writing, TIMEOUT)  # the commit completed regardless
        assert await db.kv.get(b"k") == b"1"
        # The consumer's error was not swallowed: reported once to the loop, its subscription ended.
        assert [type(c.get("exception")) for c in loop_errors] == [ValueError]
        assert await subscribers(db) == 0
        await db.kv.put(b"k", b"2")
        assert await db.kv.get(b"k") == b"2" and len(loop_errors) == 1
    finally:
        writing.cancel()
        failed.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(db.close(), TIMEOUT)


# =============================================================================== bad arguments


BAD_ARGUMENTS = [
    ({"prefix": "user:"}, quanta.InvalidTypeError),
    ({"start": 1}, quanta.InvalidTypeError),
    ({"stop": bytearray(b"z")}, quanta.InvalidTypeError),
    ({"buffer": 0}, quanta.InvalidArgumentError),
    ({"buffer": -5}, quanta.InvalidArgumentError),
    ({"buffer": 1.5}, quanta.InvalidTypeError),
    ({"buffer": "10"}, quanta.InvalidTypeError),
    ({"buffer": True}, quanta.InvalidTypeError),
    ({"buffer": None}, quanta.InvalidTypeError),
    ({"with_old": 1}, quanta.InvalidTypeError),
    ({"with_old": None}, quanta.InvalidTypeError),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_ARGUMENTS)
async def test_bad_arguments_raise_and_subscribe_nothing(
    db: quanta.Database, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        db.changes(**kwargs)
    with pytest.raises(error):
        db.observe(**kwargs)
    assert await subscribers(db) == 0


@pytest.mark.parametrize(("buffer", "error"), [(0, quanta.InvalidArgumentError), (2.0, quanta.InvalidTypeError)])
async def test_bad_event_buffers_raise(db: quanta.Database, buffer: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        db.events(buffer=buffer)
    with pytest.raises(error):
        db.observe_events(buffer=buffer)
    assert (await db.stats())["event_subscribers"] == 0


async def test_bytes_subclasses_are_accepted_as_bounds(db: quanta.Database) -> None:
    class Tagged(bytes):
        pass

    stream = db.changes(prefix=Tagged(b"a"), start=Tagged(b"ab"), stop=Tagged(b"ac"))
    await db.kv.put_many([(b"aa", b""), (b"abz", b""), (b"ac", b"")])
    [cs] = await take(stream, 1)
    assert [c.key for c in cs.changes] == [b"abz"]


# =============================================================================== stats


async def test_stats_count_subscribers_and_published_change_sets(db: quanta.Database) -> None:
    before = await db.stats()
    assert (before["change_subscribers"], before["event_subscribers"], before["change_sets_published"]) == (0, 0, 0)
    everything = db.changes()
    users = db.changes(prefix=b"user:")
    observer = db.observe().subscribe(Recorder())
    events = db.events()
    db.observe_events().subscribe(Recorder())
    stats = await db.stats()
    assert stats["change_subscribers"] == 3 and stats["event_subscribers"] == 2
    await db.kv.put(b"user:1", b"a")  # to all three
    await db.kv.put(b"item:1", b"b")  # to two
    assert (await db.stats())["change_sets_published"] == 5
    await users.aclose()
    observer.dispose()
    await events.aclose()
    stats = await db.stats()
    assert stats["change_subscribers"] == 1 and stats["event_subscribers"] == 1
    await db.kv.put(b"user:2", b"c")
    assert (await db.stats())["change_sets_published"] == 6
    assert len(await take(everything, 3)) == 3


# =============================================================================== system events


def pairs(events: list[SystemEvent], kind: str) -> list[tuple[SystemEvent, SystemEvent]]:
    """``(started, finished)`` of each job of ``kind`` ("flush", "compaction", "write_stall");
    checks every finished job was started first and no job is left half-reported."""
    started = {e.job: e for e in events if e.kind == f"{kind}_started"}
    finished = [e for e in events if e.kind == f"{kind}_finished"]
    assert len(started) == len([e for e in events if e.kind == f"{kind}_started"]), "a job number was reused"
    assert sorted(started) == sorted(e.job for e in finished)
    for e in finished:
        assert events.index(started[e.job]) < events.index(e)
    return [(started[e.job], e) for e in finished]


async def test_flush_reports_started_and_finished_with_the_new_level_0_tables(db_factory: OpenFn) -> None:
    db = await db_factory()
    events = db.events()
    await db.kv.put_many([(b"k%03d" % i, b"v" * 10) for i in range(100)])
    await db.kv.delete(b"never written")  # a tombstone is an entry too
    tables_before = db_files(db_factory, ".sst")
    await db.flush()
    new_tables = db_files(db_factory, ".sst") - tables_before
    started, finished = await take(events, 2)
    assert started.kind == "flush_started" and finished.kind == "flush_finished"
    assert started.job == finished.job > 0
    assert (started.level, started.output_level, finished.level, finished.output_level) == (None, 0, None, 0)
    assert started.entries == 101 and finished.entries == 101
    assert set(finished.output_files) == new_tables and new_tables
    assert finished.output_bytes > 0 and finished.input_files == ()
    assert started.duration == 0.0 and finished.duration >= 0.0
    assert 0 < started.time <= finished.time
    assert not finished.trivial and finished.error is None
    stats = await db.stats()
    assert stats["levels"][0]["files"] == len(new_tables)


async def test_compact_reports_the_compaction_with_its_input_and_output_tables(db_factory: OpenFn) -> None:
    db = await db_factory()
    for round in range(2):  # two level-0 tables (4 would trigger a compaction by itself)
        await db.kv.put_many([(b"k%03d" % i, b"%d" % round) for i in range(50)])
        await db.flush()
    level0 = db_files(db_factory, ".sst")
    assert len(level0) == 2
    events = db.events()
    await db.compact()
    await db.close()
    [(started, finished)] = pairs(await rest(events), "compaction")
    assert (started.level, started.output_level) == (finished.level, finished.output_level) == (0, 1)
    assert set(started.input_files) == set(finished.input_files) == level0
    assert started.input_bytes == finished.input_bytes > 0
    assert started.output_files == () and finished.output_files
    assert finished.entries == 50  # the older version of each key is gone
    assert not finished.trivial
    assert db_files(db_factory, ".sst") == set(finished.output_files)


async def test_background_work_reports_every_flush_compaction_and_write_stall(db_factory: OpenFn) -> None:
    """A 4 KiB memtable, one immutable memtable and writes stopping at 2 level-0 tables: the
    writer outruns the background work, so flushes, compactions and stalls all happen. At
    any moment the events delivered so far match the counters in stats()."""
    db = await db_factory(
        durability="os",  # writes do not wait for fsyncs: they outrun the flusher
        memtable_bytes=4096,
        max_immutable_memtables=1,
        l0_compaction_trigger=2,
        l0_stop_writes_trigger=2,
    )
    scheduler = TestScheduler()  # delivery on demand: everything published so far
    observer = scheduler.create_observer()
    db.observe_events().subscribe(observer, scheduler=scheduler)
    for i in range(150):
        await db.kv.put(b"k%04d" % (i % 100), b"x" * 300)
    stats = await db.stats()
    scheduler.advance_by(1)
    events: list[SystemEvent] = [m.value.value for m in observer.messages]
    assert {m.value.kind for m in observer.messages} == {"N"}
    counts = Counter(e.kind for e in events)
    assert counts["flush_finished"] == stats["flushes"] > 0
    assert counts["compaction_finished"] == stats["compactions"] + stats["trivial_moves"] > 0
    assert counts["write_stall_finished"] == stats["write_stalls"] > 0
    await db.close()
    scheduler.advance_by(1)
    assert observer.messages[-1].value.kind == "C"
    events = [m.value.value for m in observer.messages[:-1]]
    flushes, compactions, stalls = pairs(events, "flush"), pairs(events, "compaction"), pairs(events, "write_stall")
    for _, finished in flushes:
        assert finished.output_level == 0 and finished.output_files and finished.entries > 0
    for started, finished in compactions:
        assert finished.output_level == finished.level + 1  # type: ignore[operator]
        assert started.input_files == finished.input_files
        if finished.trivial:
            assert finished.output_files == finished.input_files
    for _, finished in stalls:
        assert finished.duration >= 0.0
    jobs = [e.job for e in events if e.kind.endswith("_started")]
    assert len(jobs) == len(set(jobs))  # one job counter for every kind of work


async def test_an_overflowing_event_stream_raises_after_its_buffered_events(db: quanta.Database) -> None:
    events = db.events(buffer=1)
    await db.kv.put(b"k", b"v")
    await db.flush()  # two events; room for one
    assert (await db.stats())["event_subscribers"] == 0
    [started] = await take(events, 1)
    assert started.kind == "flush_started"
    with pytest.raises(quanta.SubscriberOverflowError):
        await take(events, 1)


async def test_observe_events_delivers_events_and_completes_on_close(db: quanta.Database) -> None:
    rec = Recorder()
    db.observe_events().subscribe(rec)
    await db.kv.put(b"k", b"v")
    await db.flush()
    await rec.until(2)
    assert [e.kind for e in rec.items] == ["flush_started", "flush_finished"]
    await db.close()
    await rec.until_ended()
    assert rec.completed
    assert all(isinstance(e, SystemEvent) for e in rec.items)


async def test_events_are_not_change_sets_and_change_sets_are_not_events(db: quanta.Database) -> None:
    events = db.events()
    changes = db.changes()
    await db.kv.put(b"k", b"v")
    await db.flush()
    await db.close()
    assert [e.kind for e in await rest(events)] == ["flush_started", "flush_finished"]
    assert [cs.changes for cs in await rest(changes)] == [(put(b"k", b"v"),)]
