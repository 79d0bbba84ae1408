"""``db.kv.watch`` and ``db.kv.watch_range``, as a user sees them.

``watch(key)`` is a value feed with latest-value semantics: each subscription emits the
current value (None if absent) and then the value after each commit that changes it; a slow
consumer gets the newest value and skips the ones in between, a write that leaves the value
as it was emits nothing, and it never overflows. ``watch_range`` is the change bus
(``db.observe``) on a key range. Both are ``reactivex`` Observables and async iterables;
each subscription (and each ``async for``) is its own.

Every test that takes the ``db`` / ``db_factory`` fixtures runs on the in-memory file layer
and on a real temporary directory. Timing-dependent behaviour (conflation, overflow) is
tested on virtual time with ``reactivex.testing.TestScheduler``, or with a consumer that
simply does not read; no assertion depends on wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from reactive_helpers import TIMEOUT, Recorder, rest, subscribers, take
from reactivex.scheduler import ImmediateScheduler
from reactivex.testing import TestScheduler

import quanta
from quanta import Change, ChangeSet
from quanta._storage.vfs import MemoryFileSystem

OpenFn = Callable[..., Awaitable[quanta.Database]]
T = TypeVar("T")


# =============================================================================== helpers


def values(scheduler_messages: list[Any]) -> list[Any]:
    """The on_next values recorded by a TestScheduler observer (and a check that there is
    nothing else)."""
    assert all(m.value.kind == "N" for m in scheduler_messages), scheduler_messages
    return [m.value.value for m in scheduler_messages]


def put(key: bytes, value: bytes, old: bytes | None = None) -> Change:
    return Change(key, "put", value, old)


# =============================================================================== watch: emissions


async def test_an_observer_gets_the_current_value_then_each_new_one(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"1")
    rec = Recorder()
    db.kv.watch(b"k").subscribe(rec)
    await rec.until(1)
    assert rec.items == [b"1"]
    await db.kv.put(b"k", b"2")
    await rec.until(2)
    await db.kv.delete(b"k")
    await rec.until(3)
    await db.kv.put(b"k", b"3")
    await rec.until(4)
    assert rec.items == [b"1", b"2", None, b"3"]


async def test_an_async_iterator_gets_the_current_value_then_each_new_one(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"1")
    watch = aiter(db.kv.watch(b"k"))
    assert await take(watch, 1) == [b"1"]
    await db.kv.put(b"k", b"2")
    assert await take(watch, 1) == [b"2"]
    await db.kv.delete(b"k")
    assert await take(watch, 1) == [None]


async def test_a_key_never_written_starts_as_none(db: quanta.Database) -> None:
    watch = aiter(db.kv.watch(b"missing"))
    assert await take(watch, 1) == [None]
    await db.kv.put(b"missing", b"now here")
    assert await take(watch, 1) == [b"now here"]


async def test_the_current_value_is_read_from_wherever_it_lives(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"flushed", b"in a table")
    await db.flush()
    await db.kv.put(b"compacted", b"deeper")
    await db.compact()
    await db.kv.put(b"fresh", b"in the memtable")
    assert await take(aiter(db.kv.watch(b"flushed")), 1) == [b"in a table"]
    assert await take(aiter(db.kv.watch(b"compacted")), 1) == [b"deeper"]
    assert await take(aiter(db.kv.watch(b"fresh")), 1) == [b"in the memtable"]
    await db.close()
    db = await db_factory()  # reopened: the value comes back from the WAL / tables
    assert await take(aiter(db.kv.watch(b"fresh")), 1) == [b"in the memtable"]


async def test_an_empty_value_is_a_value_not_none(db: quanta.Database) -> None:
    watch = aiter(db.kv.watch(b"k"))
    assert await take(watch, 1) == [None]
    await db.kv.put(b"k", b"")
    assert await take(watch, 1) == [b""]
    await db.kv.delete(b"k")
    assert await take(watch, 1) == [None]


async def test_every_kind_of_commit_updates_a_watch_with_its_final_value(db: quanta.Database) -> None:
    watch = aiter(db.kv.watch(b"k"))
    assert await take(watch, 1) == [None]
    await db.kv.put_many([(b"a", b"x"), (b"k", b"from put_many")])
    assert await take(watch, 1) == [b"from put_many"]
    await db.kv.batch().put(b"k", b"ignored").put(b"k", b"from batch").commit()
    assert await take(watch, 1) == [b"from batch"]
    async with db.transaction() as tx:
        await tx.kv.put(b"k", b"ignored")
        await tx.kv.put(b"k", b"from transaction")
    assert await take(watch, 1) == [b"from transaction"]
    await db.kv.batch().put(b"k", b"ignored").delete(b"k").commit()
    assert await take(watch, 1) == [None]


async def test_writes_that_leave_the_value_as_it_was_emit_nothing(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"same")
    watch = aiter(db.kv.watch(b"k"))
    rec = Recorder()
    db.kv.watch(b"k").subscribe(rec)
    assert await take(watch, 1) == [b"same"]
    await rec.until(1)
    await db.kv.put(b"k", b"same")  # rewritten, unchanged
    await db.kv.batch().put(b"k", b"other").put(b"k", b"same").commit()  # changed and back in one batch
    await db.kv.delete(b"gone")
    watch_gone = aiter(db.kv.watch(b"gone"))
    assert await take(watch_gone, 1) == [None]
    await db.kv.delete(b"gone")  # deleting what is absent
    await db.kv.put(b"k", b"changed")  # the first real change
    await db.kv.put(b"gone", b"back")
    assert await take(watch, 1) == [b"changed"]
    assert await take(watch_gone, 1) == [b"back"]
    await rec.until(2)
    assert rec.items == [b"same", b"changed"]


async def test_a_watch_ignores_every_other_key(db: quanta.Database) -> None:
    scheduler = TestScheduler()  # delivery after each commit, on demand
    observer = scheduler.create_observer()
    db.kv.watch(b"key").subscribe(observer, scheduler=scheduler)
    # neighbours in key order, keys it is a prefix of, and keys that are prefixes of it
    for other in [b"key\x00", b"key\x01", b"keyz", b"key\xff", b"ke", b"kez", b"k", b"kex"]:
        await db.kv.put(other, b"not mine")
        scheduler.advance_by(1)
        assert values(observer.messages) == [None], other
    await db.kv.put_many([(b"key\x00", b"1"), (b"key", b"mine"), (b"kez", b"2")])
    scheduler.advance_by(1)
    assert values(observer.messages) == [None, b"mine"]


# =============================================================================== watch: latest value


async def test_a_slow_async_consumer_skips_to_the_newest_value(db: quanta.Database) -> None:
    watch = aiter(db.kv.watch(b"k"))
    assert await take(watch, 1) == [None]
    for i in range(50):
        await db.kv.put(b"k", b"%d" % i)  # the consumer is not reading
    assert await take(watch, 1) == [b"49"]
    await db.close()
    assert await rest(watch) == []  # nothing in between is left over


async def test_on_virtual_time_only_the_newest_value_is_delivered(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"0")
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.kv.watch(b"k").subscribe(observer, scheduler=scheduler)
    scheduler.advance_by(1)
    assert values(observer.messages) == [b"0"]
    for i in range(1, 6):
        await db.kv.put(b"k", b"%d" % i)
    assert values(observer.messages) == [b"0"]  # virtual time has not moved
    scheduler.advance_by(1)
    assert values(observer.messages) == [b"0", b"5"]


async def test_the_initial_value_is_superseded_by_a_newer_one_before_delivery(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"initial")
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.kv.watch(b"k").subscribe(observer, scheduler=scheduler)
    await db.kv.put(b"k", b"newer")
    scheduler.advance_by(1)
    assert values(observer.messages) == [b"newer"]


async def test_changes_that_end_where_the_consumer_last_was_emit_nothing(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"A")
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.kv.watch(b"k").subscribe(observer, scheduler=scheduler)
    scheduler.advance_by(1)
    await db.kv.put(b"k", b"B")
    await db.kv.put(b"k", b"A")  # back to what the observer has
    scheduler.advance_by(1)
    assert values(observer.messages) == [b"A"]
    await db.kv.delete(b"k")
    scheduler.advance_by(1)
    assert values(observer.messages) == [b"A", None]


async def test_a_watch_never_overflows() -> None:
    """More commits than the default buffer of any other subscription (10,000) while the
    observer's scheduler never runs: the watch holds one value, not a backlog."""
    db = await quanta.open("/db", fs=MemoryFileSystem(), durability="os")
    try:
        scheduler = TestScheduler()
        observer = scheduler.create_observer()
        db.kv.watch(b"k").subscribe(observer, scheduler=scheduler)
        bounded = scheduler.create_observer()
        db.observe().subscribe(bounded, scheduler=scheduler)  # the contrast: it overflows
        for i in range(10_001):
            await db.kv.put(b"k", b"%d" % i)
        assert await subscribers(db) == 1
        scheduler.advance_by(1)
        assert values(observer.messages) == [b"10000"]
        assert bounded.messages[-1].value.kind == "E"
        assert isinstance(bounded.messages[-1].value.exception, quanta.SubscriberOverflowError)
    finally:
        await db.close()


# =============================================================================== watch: lifetime


async def test_closing_the_database_completes_a_watch(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"1")
    rec = Recorder()
    db.kv.watch(b"k").subscribe(rec)
    watch = aiter(db.kv.watch(b"k"))
    await rec.until(1)
    assert await take(watch, 1) == [b"1"]
    await db.kv.put(b"k", b"2")
    await db.close()
    await rec.until_ended()
    assert rec.completed and rec.error is None
    assert rec.items == [b"1", b"2"]
    assert await rest(watch) == [b"2"]  # the last value, then the end


async def test_on_virtual_time_close_completes_after_the_newest_value(db: quanta.Database) -> None:
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.kv.watch(b"k").subscribe(observer, scheduler=scheduler)
    await db.kv.put(b"k", b"last")
    await db.close()
    scheduler.advance_by(1)
    assert [m.value.kind for m in observer.messages] == ["N", "C"]
    assert observer.messages[0].value.value == b"last"


async def test_each_subscription_starts_from_the_value_at_that_moment(db: quanta.Database) -> None:
    feed = db.kv.watch(b"k")  # cold: nothing is subscribed yet
    assert await subscribers(db) == 0
    await db.kv.put(b"k", b"1")
    first = feed.stream()
    await db.kv.put(b"k", b"2")
    second = feed.stream()
    assert await subscribers(db) == 2
    assert await take(first, 1) == [b"2"]  # the newest: 1 was superseded before it was read
    assert await take(second, 1) == [b"2"]
    await db.kv.put(b"k", b"3")
    assert await take(first, 1) == [b"3"]
    assert await take(second, 1) == [b"3"]


async def test_disposing_or_closing_a_watch_unsubscribes(db: quanta.Database) -> None:
    rec = Recorder()
    subscription = db.kv.watch(b"k").subscribe(rec)
    stream = db.kv.watch(b"k").stream()
    assert await subscribers(db) == 2
    await rec.until(1)
    subscription.dispose()
    await stream.aclose()
    assert await subscribers(db) == 0
    control = aiter(db.kv.watch(b"k"))
    assert await take(control, 1) == [None]
    await db.kv.put(b"k", b"1")
    assert await take(control, 1) == [b"1"]  # the disposed observer would have had its turn
    assert rec.items == [None] and not rec.ended
    assert await rest(stream) == []


async def test_breaking_out_of_async_for_over_a_watch_unsubscribes(db: quanta.Database) -> None:
    async for value in db.kv.watch(b"k"):
        assert value is None
        break
    assert await subscribers(db) == 0


async def test_watching_a_closed_database_raises(db: quanta.Database) -> None:
    feed = db.kv.watch(b"k")
    ranged = db.kv.watch_range(b"a", b"z")
    await db.close()
    with pytest.raises(quanta.DatabaseClosedError):
        db.kv.watch(b"k")
    with pytest.raises(quanta.DatabaseClosedError):
        db.kv.watch_range(b"a", b"z")
    for made_before_close in (feed, ranged):
        rec = Recorder()
        made_before_close.subscribe(rec)  # type: ignore[attr-defined]
        assert isinstance(rec.error, quanta.DatabaseClosedError)
        with pytest.raises(quanta.DatabaseClosedError):
            async for _ in made_before_close:  # type: ignore[attr-defined]
                pass


async def test_a_read_only_database_can_be_watched_and_completes_on_close(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"stored")
    await db.close()
    ro = await db_factory(read_only=True)
    rec = Recorder()
    ro.kv.watch(b"k").subscribe(rec)
    ranged = ro.kv.watch_range(prefix=b"k").stream()
    await rec.until(1)
    await ro.close()
    await rec.until_ended()
    assert rec.items == [b"stored"] and rec.completed
    assert await rest(ranged) == []


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("k", quanta.InvalidTypeError),
        (None, quanta.InvalidTypeError),
        (b"", quanta.InvalidArgumentError),
        (b"k" * (quanta.MAX_KEY_BYTES + 1), quanta.LimitExceededError),
    ],
)
async def test_watching_a_bad_key_raises(db: quanta.Database, key: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        db.kv.watch(key)
    assert await subscribers(db) == 0


async def test_a_watch_on_an_inline_scheduler_gets_its_values() -> None:
    db = await quanta.open("/db", fs=MemoryFileSystem())
    try:
        await db.kv.put(b"k", b"1")
        rec = Recorder()
        subscription = db.kv.watch(b"k").subscribe(rec, scheduler=ImmediateScheduler())
        assert rec.error is None
        assert rec.items == [b"1"]
        await asyncio.wait_for(db.kv.put(b"k", b"2"), TIMEOUT)
        assert rec.items == [b"1", b"2"]
        subscription.dispose()
        assert await subscribers(db) == 0
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(db.close(), TIMEOUT)


# =============================================================================== watch_range


async def test_watch_range_delivers_the_commits_that_touch_the_range_as_an_observable(db: quanta.Database) -> None:
    rec = Recorder()
    db.kv.watch_range(b"b", b"d").subscribe(rec)  # start <= key < stop
    await db.kv.put_many([(b"a", b"1"), (b"b", b"2"), (b"c\xff", b"3"), (b"d", b"4")])
    await db.kv.put(b"z", b"outside")
    await db.kv.delete(b"b")
    await rec.until(2)
    assert [(cs.origin, cs.changes) for cs in rec.items] == [
        ("kv", (put(b"b", b"2"), put(b"c\xff", b"3"))),
        ("kv", (Change(b"b", "delete", None),)),
    ]
    assert rec.items[1].seq == rec.items[0].seq + 2  # the commit to b"z" is not in range


async def test_watch_range_as_an_async_iterator(db: quanta.Database) -> None:
    stream = aiter(db.kv.watch_range(prefix=b"user:"))
    await db.kv.put_many([(b"user:1", b"ann"), (b"users", b"no"), (b"user:2", b"bob")])
    async with db.transaction() as tx:
        await tx.kv.put(b"user:3", b"cy")
    cs1, cs2 = await take(stream, 2)
    assert cs1.changes == (put(b"user:1", b"ann"), put(b"user:2", b"bob"))
    assert (cs2.origin, cs2.changes) == ("transaction", (put(b"user:3", b"cy"),))


async def test_watch_range_without_bounds_is_every_commit(db: quanta.Database) -> None:
    stream = aiter(db.kv.watch_range())
    await db.kv.put(b"\x00", b"low")
    await db.kv.put(b"\xff" * 10, b"high")
    assert [cs.changes[0].key for cs in await take(stream, 2)] == [b"\x00", b"\xff" * 10]


async def test_watch_range_delivers_what_observe_delivers(db: quanta.Database) -> None:
    ranged = aiter(db.kv.watch_range(b"k2", b"k7", prefix=b"k", with_old=True))
    observed = aiter(db.observe(b"k2", b"k7", prefix=b"k", with_old=True))  # the same arguments as watch_range
    for i in range(10):
        await db.kv.put_many([(b"k%d" % i, b"v%d" % i), (b"k%d" % (9 - i), b"w%d" % i)])
    await db.close()
    got = await rest(ranged)
    assert got == await rest(observed)
    assert {c.key for cs in got for c in cs.changes} == {b"k%d" % i for i in range(2, 7)}


async def test_watch_range_with_old_values(db: quanta.Database) -> None:
    await db.kv.put(b"r:1", b"before")
    stream = aiter(db.kv.watch_range(prefix=b"r:", with_old=True))
    await db.kv.put_many([(b"r:1", b"after"), (b"r:2", b"new")])
    await db.kv.delete(b"r:1")
    cs1, cs2 = await take(stream, 2)
    assert cs1.changes == (put(b"r:1", b"after", old=b"before"), put(b"r:2", b"new", old=None))
    assert cs2.changes == (Change(b"r:1", "delete", None, b"after"),)


async def test_each_iterator_over_watch_range_starts_when_it_begins(db: quanta.Database) -> None:
    feed = db.kv.watch_range(prefix=b"k")
    await db.kv.put(b"k1", b"before anyone")
    first = aiter(feed)
    await db.kv.put(b"k2", b"")
    second = feed.stream()
    await db.kv.put(b"k3", b"")
    assert [cs.changes[0].key for cs in await take(first, 2)] == [b"k2", b"k3"]
    assert [cs.changes[0].key for cs in await take(second, 1)] == [b"k3"]
    stream = feed.stream()  # subscribed here, not when first iterated
    assert stream.start_seq == (await db.stats())["last_seq"]


async def test_watch_range_overflows_on_virtual_time_that_never_advances(db: quanta.Database) -> None:
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    db.kv.watch_range(prefix=b"k", buffer=2).subscribe(observer, scheduler=scheduler)
    for i in range(5):
        await db.kv.put(b"k", b"%d" % i)
    assert await subscribers(db) == 0
    scheduler.advance_by(1)
    kinds = [m.value.kind for m in observer.messages]
    assert kinds == ["N", "N", "E"]
    second = observer.messages[1].value.value
    assert second.changes == (put(b"k", b"1"),)
    assert observer.messages[2].value.exception.last_seq == second.seq


async def test_an_overflowing_watch_range_stream_raises_after_its_buffer(db: quanta.Database) -> None:
    stream = db.kv.watch_range(prefix=b"k", buffer=1).stream()
    await db.kv.put(b"k", b"1")
    await db.kv.put(b"k", b"2")
    [cs] = await take(stream, 1)
    assert cs.changes == (put(b"k", b"1"),)
    with pytest.raises(quanta.SubscriberOverflowError) as info:
        await take(stream, 1)
    assert info.value.last_seq == cs.seq


async def test_an_empty_range_receives_nothing_and_completes_on_close(db: quanta.Database) -> None:
    rec = Recorder()
    db.kv.watch_range(b"m", b"m").subscribe(rec)
    inverted = db.kv.watch_range(b"z", b"a").stream()
    outside_prefix = db.kv.watch_range(b"a", b"b", prefix=b"x").stream()
    await db.kv.put_many([(b"a", b""), (b"m", b""), (b"x", b""), (b"z", b"")])
    await db.close()
    await rec.until_ended()
    assert rec.items == [] and rec.completed
    assert await rest(inverted) == [] and await rest(outside_prefix) == []


async def test_closing_the_database_completes_watch_range(db: quanta.Database) -> None:
    rec = Recorder()
    db.kv.watch_range(prefix=b"k").subscribe(rec)
    stream = db.kv.watch_range(prefix=b"k").stream()
    await db.kv.put(b"k1", b"v")
    await db.close()
    await rec.until_ended()
    assert rec.completed and len(rec.items) == 1
    assert [cs.changes for cs in await rest(stream)] == [(put(b"k1", b"v"),)]


BAD_RANGE_ARGUMENTS = [
    ({"start": "a"}, quanta.InvalidTypeError),
    ({"stop": 5}, quanta.InvalidTypeError),
    ({"prefix": memoryview(b"k")}, quanta.InvalidTypeError),
    ({"buffer": 0}, quanta.InvalidArgumentError),
    ({"buffer": 2.5}, quanta.InvalidTypeError),
    ({"buffer": False}, quanta.InvalidTypeError),
    ({"with_old": "yes"}, quanta.InvalidTypeError),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_RANGE_ARGUMENTS)
async def test_watch_range_rejects_bad_arguments(
    db: quanta.Database, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        db.kv.watch_range(**kwargs)
    assert await subscribers(db) == 0


async def test_watch_range_change_sets_are_change_sets(db: quanta.Database) -> None:
    stream = aiter(db.kv.watch_range())
    await db.kv.put(b"k", b"v")
    [cs] = await take(stream, 1)
    assert isinstance(cs, ChangeSet) and cs == ChangeSet(cs.seq, (put(b"k", b"v"),), "kv")
