"""The one subscription shape and the one subscription mechanism (issue 12).

* Every watch/observe/live call returns a ``quanta.Watch``: a reactivex Observable
  (``subscribe``, ``pipe``) that is also an async iterator and an async context manager
  (``async with ... as stream``, ``aclose()``, ``start_seq``); closing the database
  completes every one of them, observers and iterators alike.
* A hot watch (``db.changes()``, ``db.events()``, ``q.live()``) subscribed before it is
  iterated hands its queue to the first observer (no unused second subscription).
* ``Queue``: the bounded queue shared by the change bus and live queries (overflow after the
  buffered items, conflation, pull mode, the backlog signal, a raising wake).
* ``ChangeBus.attach``: a synchronous subscriber runs inside the commit's publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import pytest
import reactivex
from reactive_helpers import Recorder, rest, subscribers, take
from reactivex import operators as ops

import quanta
from quanta import ChangeSet, PrimaryKey
from quanta._reactive import ChangeBus, Queue


@quanta.entity
class WatchedThing:
    id: Annotated[int, PrimaryKey()]
    n: int = 0


def every_call(db: quanta.Database) -> dict[str, Callable[[], quanta.Watch[Any]]]:
    things = db.collection(WatchedThing)
    q = things.query()
    return {
        "changes": lambda: db.changes(),
        "observe": lambda: db.observe(),
        "events": lambda: db.events(),
        "observe_events": lambda: db.observe_events(),
        "kv.watch": lambda: db.kv.watch(b"k"),
        "kv.watch_range": lambda: db.kv.watch_range(prefix=b"k"),
        "watch": lambda: q.watch(),
        "watch_diff": lambda: q.watch_diff(),
        "live": lambda: q.live(),
        "watch_count": lambda: q.watch_count(),
        "watch_min": lambda: q.watch_min(WatchedThing.n),
        "watch_max": lambda: q.watch_max(WatchedThing.n),
        "watch_sum": lambda: q.watch_sum(WatchedThing.n),
        "watch_avg": lambda: q.watch_avg(WatchedThing.n),
        "watch_object": lambda: things.watch_object(1),
        "watch_lazy": lambda: things.watch_lazy(),
    }


async def test_every_subscription_call_returns_a_watch(db: quanta.Database) -> None:
    for name, call in every_call(db).items():
        w = call()
        assert type(w) is quanta.Watch, name
        assert isinstance(w, reactivex.Observable), name
        async with w as stream:
            assert stream is w
            assert isinstance(stream.start_seq, int)
            assert not stream.closed
        assert stream.closed, name
    assert await subscribers(db) == 0
    assert "quanta.Watch" in repr(db.observe())


async def test_closing_the_database_completes_every_observer_and_iterator(db: quanta.Database) -> None:
    recorders: dict[str, Recorder] = {}
    iterators: dict[str, quanta.Watch[Any]] = {}
    for name, call in every_call(db).items():
        recorders[name] = rec = Recorder()
        call().subscribe(rec)
        iterators[name] = call().stream()
    await asyncio.sleep(0)
    await db.close()
    for name, rec in recorders.items():
        await rec.until_ended()
        assert rec.completed, name
    for name, stream in iterators.items():
        await rest(stream)  # ends (rather than hangs or raises)
        assert stream.closed, name


async def test_pipe_works_on_every_watch(db: quanta.Database) -> None:
    got: list[Any] = []
    db.observe(prefix=b"k").pipe(ops.map(lambda cs: cs.changes[0].key)).subscribe(got.append)
    db.kv.watch(b"k1").pipe(ops.filter(lambda v: v is not None)).subscribe(got.append)
    await db.kv.put(b"k1", b"v")
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(got, key=repr) == [b"k1", b"v"]


async def test_a_hot_watch_subscribed_before_it_is_iterated_hands_over_its_queue(db: quanta.Database) -> None:
    watch = db.changes()
    start = watch.start_seq
    assert await subscribers(db) == 1
    await db.kv.put(b"a", b"1")  # after the call, before the observer
    rec = Recorder()
    watch.subscribe(rec)
    assert await subscribers(db) == 1  # the observer took the call's subscription
    await db.kv.put(b"b", b"2")
    await rec.until(2)
    assert [cs.seq for cs in rec.items] == [start + 1, start + 2]
    again = Recorder()
    watch.subscribe(again)  # a second observer gets its own
    assert await subscribers(db) == 2
    async with watch as stream:  # and iterating opens one more, from now
        assert stream.start_seq == start + 2
        assert await subscribers(db) == 3
    assert await subscribers(db) == 2


async def test_a_cold_watch_subscribes_when_first_iterated(db: quanta.Database) -> None:
    watch = db.observe()
    await db.kv.put(b"a", b"1")
    assert await subscribers(db) == 0
    async with watch as stream:
        assert await subscribers(db) == 1
        await db.kv.put(b"b", b"2")
        [cs] = await take(stream, 1)
        assert cs.changes[0].key == b"b"


async def test_a_live_query_as_a_context_manager(db: quanta.Database) -> None:
    things = db.collection(WatchedThing)
    await things.put(WatchedThing(id=1, n=1))
    async with things.query().watch_diff() as diffs:
        [first] = await take(diffs, 1)
        assert [o.id for _, o in first.inserted] == [1]
        await things.put(WatchedThing(id=2, n=2))
        [second] = await take(diffs, 1)
        assert [o.id for _, o in second.inserted] == [2]
    async with things.query().live() as rows:
        assert [o.id for o in await anext(rows)] == [1, 2]


# ------------------------------------------------------------------------------- the queue


class Item:
    def __init__(self, seq: int) -> None:
        self.seq = seq


def test_a_full_queue_fails_after_its_buffered_items() -> None:
    woken: list[int] = []
    ended: list[bool] = []
    q: Queue[Item] = Queue(capacity=2, wake=lambda: woken.append(1), on_end=lambda: ended.append(True))
    assert q.push(Item(1)) and q.push(Item(2))
    assert woken == [1]  # woken when it went from empty to non-empty only
    assert not q.push(Item(3))
    assert q.done and ended == [True] and len(woken) == 2  # ended, and woken for the end
    assert isinstance(q.error, quanta.SubscriberOverflowError) and q.error.last_seq == 2
    assert [q.pop().seq, q.pop().seq] == [1, 2]  # type: ignore[attr-defined]
    assert q.drained and not q.push(Item(4))


def test_the_backlog_signal_fires_past_half_full() -> None:
    signals: list[int] = []
    q: Queue[int] = Queue(capacity=4, backlog=lambda: signals.append(len(q.buffer)))
    for i in range(4):
        q.push(i)
    assert signals == [3, 4]


def test_a_conflating_queue_keeps_the_newest_and_skips_a_repeat() -> None:
    q: Queue[str] = Queue(capacity=1, conflate=True)
    for v in ("a", "b", "c"):
        assert q.push(v)
    assert q.pop() == "c" and q.pop() is quanta._reactive.EMPTY
    q.push("c")
    assert q.pop() is quanta._reactive.EMPTY  # the same value again: not a change


def test_a_pull_queue_computes_the_item_when_asked() -> None:
    value = ["first"]
    woken: list[int] = []
    q: Queue[str] = Queue(pull=lambda: value[0], wake=lambda: woken.append(1))
    q.mark()
    q.mark()
    assert woken == [1]
    value[0] = "second"
    assert q.pop() == "second" and q.pop() is quanta._reactive.EMPTY
    q.finish()
    assert q.drained


async def test_a_raising_wake_cancels_the_queue_and_reports() -> None:
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    ended: list[bool] = []

    def wake() -> None:
        raise ValueError("consumer")

    q: Queue[int] = Queue(wake=wake, on_end=lambda: ended.append(True))
    assert q.push(1)  # the producer never sees the error
    assert q.done and q.cancelled and ended == [True] and not q.buffer
    assert isinstance(reported[0]["exception"], ValueError)


# ------------------------------------------------------------------------------- attach


async def test_attach_runs_inside_the_publish_and_ends_on_close(db: quanta.Database) -> None:
    bus = db._bus
    assert isinstance(bus, ChangeBus)
    seen: list[ChangeSet] = []
    ends: list[BaseException | None] = []
    tap = bus.attach(b"a", b"b", on_commit=seen.append, on_end=ends.append)
    assert tap.start_seq == (await db.stats())["last_seq"]
    await db.kv.put(b"a1", b"x")
    assert [c.key for cs in seen for c in cs.changes] == [b"a1"]  # before put() returned
    await db.kv.put(b"z", b"x")  # out of range
    assert len(seen) == 1
    other = bus.attach(b"", None, on_commit=seen.append, on_end=ends.append)
    other.detach()
    await db.kv.put(b"a2", b"x")
    assert len(seen) == 2
    await db.close()
    assert ends == [None]  # the detached one is not ended again
    with pytest.raises(quanta.DatabaseClosedError):
        bus.attach(b"", None, on_commit=seen.append, on_end=ends.append)
