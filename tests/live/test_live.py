"""Live queries (quanta/_live), as a user sees them: ``q.watch()``, ``q.watch_diff()``,
``q.live()``, ``q.watch_count()`` and the aggregates, ``users.watch_object(pk)``,
``users.watch_lazy()``.

What is proved here (the random-history oracle is ``test_live_oracle.py``):

* emissions: the current value at once, then one per commit that changes it, in commit
  order, one per transaction however many records it touches, none for a commit that
  changes nothing (the same bytes rewritten, a record outside the window, another entity);
* diffs: the first inserts the current result; moves and modifications are reported with
  the right indices, and every diff applied to the previous result gives the new one;
* latest value for ``live()``; the subscriber's scheduler and coalescing on virtual time
  (``reactivex.testing.TestScheduler``), and coalescing on the loop;
* incremental maintenance: a commit reaches only the states its values route to; a
  windowed result refills from the store only when removals empty its head;
* lifetimes: dispose, ``aclose``, leaving ``async for``, garbage collection and cancelled
  consumers free the state (10,000 created and disposed leave nothing); closing the database
  completes every live query, a failed database fails them, a closed one refuses new ones;
* failure paths: bad arguments raise quanta errors when the method is called, a live query
  of a transaction's collection raises ``QueryError``, a slow consumer overflows with
  ``SubscriberOverflowError``, a raising observer or a failing refill ends only its own
  subscription.

Timing-dependent behaviour is tested on virtual time, or by a consumer that does not read;
one coalescing test runs on the loop and asserts nothing about wall-clock time.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

import pytest
from reactive_helpers import TIMEOUT, Recorder, SyncFails, rest, subscribers, take
from reactivex.scheduler import ImmediateScheduler
from reactivex.testing import TestScheduler

import quanta
from quanta import Index, PrimaryKey, ResultDiff, Unique, desc
from quanta._live import registry_of
from quanta._live.diff import Row, diff_rows
from quanta._live.states import LiveState, ResultState
from quanta._live.store import Source
from quanta._storage.vfs import MemoryFileSystem

OpenFn = Callable[..., Awaitable[quanta.Database]]


@quanta.entity(indexes=[Index("city", "age")])
class User:
    id: Annotated[int, PrimaryKey(auto=True)]
    name: Annotated[str, Index()]
    city: str
    age: int = 0
    score: float = 0.0
    email: Annotated[str | None, Unique()] = None
    tags: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)


@quanta.entity
class Pet:
    id: Annotated[int, PrimaryKey()]
    name: str = ""


@pytest.fixture
async def mem_db() -> AsyncIterator[quanta.Database]:
    """The in-memory file layer, ``durability="os"``: these tests are about the live layer."""
    db = await quanta.open("/db", fs=MemoryFileSystem(), durability="os")
    yield db
    await db.close()


def names(rows: list[User] | None) -> list[str] | None:
    return None if rows is None else [u.name for u in rows]


def values(messages: list[Any]) -> list[Any]:
    """The on_next values a TestScheduler observer recorded (and a check there is nothing else)."""
    assert all(m.value.kind == "N" for m in messages), messages
    return [m.value.value for m in messages]


def registry(db: quanta.Database) -> Any:
    return registry_of(db._entities)


async def settle() -> None:
    """Let the deliveries a commit scheduled run (they are loop callbacks)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def populate(db: quanta.Database) -> quanta.Collection[User]:
    users = db.collection(User)
    await users.put_many(
        [
            User(name="Ann", city="Oslo", age=30),
            User(name="Bob", city="Rome", age=40),
            User(name="Cy", city="Oslo", age=20),
            User(name="Di", city="Oslo", age=50),
        ]
    )
    return users


# =============================================================================== watch()


async def test_watch_emits_the_current_result_then_each_new_one(db: quanta.Database) -> None:
    users = await populate(db)
    rec = Recorder()
    users.where(User.city == "Oslo").order_by(User.name).limit(2).watch().subscribe(rec)
    await rec.until(1)
    assert names(rec.items[0]) == ["Ann", "Cy"]
    await users.put(User(name="Al", city="Oslo"))  # enters the window
    await rec.until(2)
    await users.delete(1)  # Ann leaves; Cy comes back into the window
    await rec.until(3)
    assert [names(r) for r in rec.items] == [["Ann", "Cy"], ["Al", "Ann"], ["Al", "Cy"]]


async def test_no_emission_for_a_commit_that_does_not_change_the_result(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    pets = mem_db.collection(Pet)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    q = users.where(User.city == "Oslo").order_by(User.name).limit(2)
    q.watch().subscribe(observer, scheduler=scheduler)
    scheduler.advance_by(1)
    assert [names(r) for r in values(observer.messages)] == [["Ann", "Cy"]]
    ann = await users.get(1)
    assert ann is not None
    await users.put(ann)  # the same bytes again
    await users.put(User(name="Zed", city="Oslo"))  # matches, but sorts after the window
    di = await users.get(4)
    assert di is not None
    di.age = 51
    await users.put(di)  # a match outside the window changes
    await users.put(User(name="Eve", city="Rome"))  # does not match
    await pets.put(Pet(id=1))  # another entity
    await mem_db.kv.put(b"raw", b"key")  # not an entity at all
    async with mem_db.transaction() as tx:  # a transaction that nets out to nothing
        t = tx.collection(User)
        await t.put(User(id=99, name="Tmp", city="Oslo"))
        await t.delete(99)
    scheduler.advance_by(1)
    assert len(observer.messages) == 1
    await users.put(User(name="Abe", city="Oslo"))
    scheduler.advance_by(1)
    assert [names(r) for r in values(observer.messages)] == [["Ann", "Cy"], ["Abe", "Ann"]]


async def test_a_transaction_touching_many_records_is_one_emission(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    rec = Recorder()
    users.order_by(User.name).watch().subscribe(rec)
    await rec.until(1)

    async def many(tx: quanta.Transaction) -> None:
        t = tx.collection(User)
        for i in range(20):
            await t.put(User(name=f"N{i:02}", city="Lima"))
        await t.delete(2)

    await mem_db.run_transaction(many)
    await users.put_many([User(name=f"M{i}", city="Lima") for i in range(5)])  # one batch: one more
    await rec.until(3)
    await settle()
    assert len(rec.items) == 3
    assert len(rec.items[1]) == 4 + 20 - 1 and len(rec.items[2]) == 28


async def test_every_commit_is_an_emission_in_commit_order(mem_db: quanta.Database) -> None:
    """Several commits before the observer runs: it still gets each result, in order."""
    users = mem_db.collection(User)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    users.query().order_by(User.name).watch().subscribe(observer, scheduler=scheduler)
    for n in ["C", "A", "B"]:
        await users.put(User(name=n, city="x"))
    scheduler.advance_by(1)
    assert [names(r) for r in values(observer.messages)] == [[], ["C"], ["A", "C"], ["A", "B", "C"]]


async def test_async_for_over_watch_yields_every_result(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    stream = aiter(users.where(User.age >= 40).order_by(desc(User.age)).watch())
    assert [names(r) for r in await take(stream, 1)] == [["Di", "Bob"]]
    await users.put(User(name="Old", city="x", age=90))
    await users.put(User(name="Older", city="x", age=95))
    assert [names(r) for r in await take(stream, 2)] == [["Old", "Di", "Bob"], ["Older", "Old", "Di", "Bob"]]


async def test_results_without_order_by_follow_the_access_path_like_a_fresh_run(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    q = users.where(User.name.startswith("")).limit(3)  # the name index's order
    assert "index_range" in q.explain()
    rec = Recorder()
    q.watch().subscribe(rec)
    await rec.until(1)
    for name in ["Aa", "Zz", "Bz"]:
        await users.put(User(name=name, city="x"))
        await settle()
        assert names(rec.items[-1]) == names(await q.all())
    assert names(rec.items[-1]) == ["Aa", "Ann", "Bob"]


async def test_the_marble_diagram_of_the_docs(mem_db: quanta.Database) -> None:
    """docs/live.md's first marble diagram, commit by commit."""
    users = mem_db.collection(User)
    await users.put_many([User(name="Ann", city="Oslo"), User(name="Cy", city="Oslo"), User(name="Bob", city="Rome")])
    oslo = users.where(User.city == "Oslo")
    q = oslo.order_by(User.name).limit(2)
    scheduler = TestScheduler()
    lists, diffs, counts, window_counts = (scheduler.create_observer() for _ in range(4))
    q.watch().subscribe(lists, scheduler=scheduler)
    q.watch_diff().subscribe(diffs, scheduler=scheduler)
    oslo.watch_count().subscribe(counts, scheduler=scheduler)
    q.watch_count().subscribe(window_counts, scheduler=scheduler)  # the window's: always 2
    scheduler.advance_to(1)
    await users.put(User(name="Al", city="Oslo"))
    scheduler.advance_to(2)
    await users.put(User(name="Zed", city="Oslo"))
    scheduler.advance_to(3)
    await users.put(User(name="Eve", city="Rome"))
    scheduler.advance_to(4)
    [al] = await users.where(User.name == "Al").all()
    await users.delete(al.id)
    scheduler.advance_to(5)
    [ann] = await users.where(User.name == "Ann").all()
    await users.put(ann)
    scheduler.advance_to(6)
    await mem_db.close()
    scheduler.advance_to(7)

    def marbles(observer: Any, show: Callable[[Any], Any]) -> list[tuple[float, Any]]:
        return [(m.time, show(m.value.value) if m.value.kind == "N" else m.value.kind) for m in observer.messages]

    def diff(d: ResultDiff[User]) -> tuple[Any, ...]:
        return tuple((i, u.name) for i, u in d.removed), tuple((i, u.name) for i, u in d.inserted)

    assert marbles(lists, names) == [(0, ["Ann", "Cy"]), (1, ["Al", "Ann"]), (4, ["Ann", "Cy"]), (6, "C")]
    assert marbles(diffs, diff) == [
        (0, ((), ((0, "Ann"), (1, "Cy")))),
        (1, (((1, "Cy"),), ((0, "Al"),))),
        (4, (((0, "Al"),), ((1, "Cy"),))),
        (6, "C"),
    ]
    assert marbles(counts, lambda n: n) == [(0, 2), (1, 3), (2, 4), (4, 3), (6, "C")]
    assert marbles(window_counts, lambda n: n) == [(0, 2), (6, "C")]


# =============================================================================== watch_diff()


async def test_the_first_diff_inserts_the_current_result(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    rec = Recorder()
    users.where(User.city == "Oslo").order_by(User.age).watch_diff().subscribe(rec)
    await rec.until(1)
    first = rec.items[0]
    assert isinstance(first, ResultDiff)
    assert [(i, u.name) for i, u in first.inserted] == [(0, "Cy"), (1, "Ann"), (2, "Di")]
    assert first.removed == first.moved == first.modified == ()
    empty = Recorder()
    users.where(User.city == "Nowhere").watch_diff().subscribe(empty)
    await empty.until(1)
    assert empty.items == [ResultDiff()] and not empty.items[0]


async def test_diffs_report_moves_modifications_insertions_and_removals(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)  # Oslo by age: Cy 20, Ann 30, Di 50
    rec = Recorder()
    q = users.where(User.city == "Oslo").order_by(User.age)
    q.watch_diff().subscribe(rec)
    await rec.until(1)
    cy = await users.get(3)
    assert cy is not None
    cy.age = 60  # Cy moves from first to last
    await users.put(cy)
    await rec.until(2)
    moved = rec.items[1]
    assert [(f, t, u.name) for f, t, u in moved.moved] == [(0, 2, "Cy")]
    assert [(i, u.name, u.age) for i, u in moved.modified] == [(2, "Cy", 60)]
    assert moved.removed == moved.inserted == ()
    ann = await users.get(1)
    assert ann is not None
    ann.score = 1.5  # modified in place: no move
    await users.put(ann)
    await rec.until(3)
    assert [(i, u.score) for i, u in rec.items[2].modified] == [(0, 1.5)] and rec.items[2].moved == ()
    async with mem_db.transaction() as tx:
        t = tx.collection(User)
        await t.delete(4)  # Di (index 1) leaves
        await t.put(User(name="Ed", city="Oslo", age=1))  # arrives first
    await rec.until(4)
    d = rec.items[3]
    assert [(i, u.name) for i, u in d.removed] == [(1, "Di")]
    assert [(i, u.name) for i, u in d.inserted] == [(0, "Ed")]
    result: list[User] = []
    for diff in rec.items:
        result = diff.apply(result)
    assert [(u.name, u.age, u.score) for u in result] == [(u.name, u.age, u.score) for u in await q.all()]


def test_apply_is_the_definition_of_a_diff() -> None:
    rows = {name: Row(name.encode(), name.encode(), name.encode(), name) for name in "abcdex"}
    changed = {name.upper(): Row(name.encode(), name.encode(), name.upper().encode(), name.upper()) for name in "de"}
    before = [rows[n] for n in "abcde"]
    after = [rows["x"], changed["E"], rows["a"], rows["c"], changed["D"]]
    diff = diff_rows(before, after)
    assert diff == ResultDiff(
        removed=((1, "b"),), inserted=((0, "x"),), moved=((4, 1, "E"),), modified=((1, "E"), (4, "D"))
    )
    assert diff.apply(list("abcde")) == ["x", "E", "a", "c", "D"]
    assert diff_rows(before, list(before)) == ResultDiff() and not ResultDiff()
    assert ResultDiff().apply("abc") == ["a", "b", "c"]


# =============================================================================== live()


async def test_live_is_latest_value_for_a_slow_consumer(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    stream = users.query().order_by(User.name).live()
    assert [names(r) for r in await take(stream, 1)] == [[]]
    for i in range(50):
        await users.put(User(name=f"U{i:02}", city="x"))  # the consumer is not reading
    [latest] = await take(stream, 1)
    assert len(latest) == 50
    await users.put(User(id=1, name="U00", city="x"))  # writes the same value again: nothing
    await users.put(User(name="Last", city="x"))
    assert [len(r) for r in await take(stream, 1)] == [51]
    await mem_db.close()
    assert await rest(stream) == []  # nothing in between is left over


async def test_leaving_async_for_over_live_frees_the_state(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    before = await subscribers(mem_db)
    async for rows in users.query().live():
        assert len(rows) == 4
        break
    gc.collect()
    assert len(registry(mem_db)) == 0
    assert await subscribers(mem_db) == before
    async with users.query().live() as stream:
        assert len(registry(mem_db)) == 1
        await take(stream, 1)
    assert len(registry(mem_db)) == 0 and stream.closed


async def test_a_cancelled_consumer_of_live_frees_the_state(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)

    async def consume() -> None:
        async with users.where(User.city == "Nowhere").live() as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    await settle()
    assert len(registry(mem_db)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(registry(mem_db)) == 0


async def test_aclose_stops_an_async_for_in_another_task(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    stream = users.query().live()
    got: list[int] = []

    async def consume() -> None:
        async for rows in stream:
            got.append(len(rows))

    task = asyncio.create_task(consume())
    await settle()
    await stream.aclose()
    await asyncio.wait_for(task, TIMEOUT)
    assert got == [4] and len(registry(mem_db)) == 0


# =============================================================================== objects, lazy


async def test_watch_object_follows_one_record(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    users.watch_object(2).subscribe(observer, scheduler=scheduler)
    scheduler.advance_by(1)
    bob = await users.get(2)
    assert bob is not None
    await users.put(bob)  # the same value: nothing
    await users.put(User(name="Cy2", city="Oslo"))  # another record: nothing
    bob.age = 41
    await users.put(bob)
    await users.delete(2)
    await users.delete(2)  # already gone: no commit at all
    await users.put(User(id=2, name="Bob again", city="Rome"))
    scheduler.advance_by(1)
    got = values(observer.messages)
    assert [None if u is None else (u.name, u.age) for u in got] == [("Bob", 40), ("Bob", 41), None, ("Bob again", 0)]
    missing = Recorder()
    users.watch_object(1234).subscribe(missing)
    await missing.until(1)
    assert missing.items == [None]


async def test_watch_lazy_signals_each_commit_that_changes_a_record(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    users.watch_lazy().subscribe(observer, scheduler=scheduler)
    scheduler.advance_by(1)
    assert observer.messages == []  # no current value: it is a signal
    ann = await users.get(1)
    assert ann is not None
    await users.put(ann)  # the same value
    await mem_db.collection(Pet).put(Pet(id=1))  # another collection
    await users.put_many([User(name="A", city="x"), User(name="B", city="x")])
    await users.delete(1)
    scheduler.advance_by(1)
    assert values(observer.messages) == [None, None]


# =============================================================================== counts, aggregates


async def test_watch_count_follows_count_with_its_window(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    all_rec, window_rec = Recorder(), Recorder()
    oslo = users.where(User.city == "Oslo")
    oslo.watch_count().subscribe(all_rec)
    oslo.offset(1).limit(3).watch_count().subscribe(window_rec)
    await all_rec.until(1)
    await window_rec.until(1)
    for i in range(4):
        await users.put(User(name=f"O{i}", city="Oslo"))
        await settle()
    await users.delete_many([1, 3, 4, 5, 6])
    await settle()
    assert all_rec.items == [3, 4, 5, 6, 7, 2]
    assert window_rec.items == [2, 3, 1]  # clamped to 3; unchanged counts are not emitted
    assert all_rec.items[-1] == await oslo.count() and window_rec.items[-1] == await oslo.offset(1).limit(3).count()


async def test_aggregates_are_maintained_and_match_the_query(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    q = users.where(User.city == "Oslo")
    recs = {kind: Recorder() for kind in ("min", "max", "sum", "avg")}
    for kind, rec in recs.items():
        getattr(q, f"watch_{kind}")(User.age).subscribe(rec)
    await settle()
    assert {k: r.items for k, r in recs.items()} == {"min": [20], "max": [50], "sum": [100], "avg": [100 / 3]}
    await users.put(User(name="Young", city="Oslo", age=5))
    await users.delete_many([1, 3, 4, 5])
    await settle()
    assert {k: r.items for k, r in recs.items()} == {
        "min": [20, 5, None],
        "max": [50, None],
        "sum": [100, 105, 0],
        "avg": [100 / 3, 105 / 4, None],
    }


async def test_a_float_sum_is_exact_whatever_the_order_of_the_changes(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    rec = Recorder()
    users.query().watch_sum(User.score).subscribe(rec)
    await users.put(User(name="big", city="x", score=1e16))
    await users.put(User(name="small", city="x", score=1.0))
    await users.delete(1)  # 1e16 + 1.0 - 1e16 is 0.0 in floats, 1.0 exactly
    await settle()
    assert rec.items == [0, 1e16, 1.0]  # (1e16 + 1.0 rounds to 1e16: no change, no emission)
    await users.put(User(name="inf", city="x", score=float("inf")))
    await settle()
    assert rec.items[-1] == float("inf")


async def test_windowed_aggregates_follow_the_window(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    q = users.query().order_by(User.age).limit(2)
    rec = Recorder()
    q.watch_max(User.age).subscribe(rec)
    await rec.until(1)
    await users.put(User(name="Kid", city="x", age=1))  # enters first: the max of the window drops
    await users.put(User(name="Old", city="x", age=99))  # outside the window: nothing
    await settle()
    assert rec.items == [30, 20] and rec.items[-1] == await q.max(User.age)


# =============================================================================== virtual time


async def test_deliveries_run_on_the_subscribers_scheduler(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    users.query().watch_count().subscribe(observer, scheduler=scheduler)
    await users.put(User(name="E", city="x"))
    assert observer.messages == []  # virtual time has not moved
    scheduler.advance_by(1)
    assert values(observer.messages) == [4, 5]


async def test_coalescing_emits_at_once_then_at_most_once_per_window(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    users.query().order_by(User.name).watch(coalesce=0.05).subscribe(observer, scheduler=scheduler)
    scheduler.advance_by(0.001)
    assert [names(r) for r in values(observer.messages)] == [[]]  # the current result opens a window
    await users.put(User(name="A", city="x"))
    await users.put(User(name="B", city="x"))
    scheduler.advance_by(0.01)
    assert len(observer.messages) == 1  # held: the window is open
    scheduler.advance_to(0.05)
    assert [names(r) for r in values(observer.messages)] == [[], ["A", "B"]]  # one item: the newest
    assert observer.messages[1].time == pytest.approx(0.05)
    scheduler.advance_to(0.2)  # a window with no change closes silently
    assert len(observer.messages) == 2
    await users.put(User(name="C", city="x"))  # quiet: delivered at once, opens a window
    scheduler.advance_by(0.001)
    assert [names(r) for r in values(observer.messages)][-1] == ["A", "B", "C"]
    assert observer.messages[2].time == pytest.approx(0.2)  # the virtual time of the commit


async def test_coalescing_skips_a_value_that_came_back_and_merges_diffs(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    scheduler = TestScheduler()
    lists, diffs = scheduler.create_observer(), scheduler.create_observer()
    q = users.query().order_by(User.name)
    q.watch(coalesce=timedelta(milliseconds=100)).subscribe(lists, scheduler=scheduler)
    q.watch_diff(coalesce=0.1).subscribe(diffs, scheduler=scheduler)
    scheduler.advance_by(0.01)
    await users.put(User(id=10, name="Tmp", city="x"))
    await users.delete(10)  # back to what the consumers have
    scheduler.advance_to(0.2)
    assert len(lists.messages) == len(diffs.messages) == 1
    await users.put(User(name="Abe", city="x"))  # at once (the window closed)
    await users.delete(2)  # held ...
    await users.put(User(name="Zed", city="x"))  # ... merged with this one
    scheduler.advance_to(0.5)
    assert [names(r) for r in values(lists.messages)][1:] == [
        ["Abe", "Ann", "Bob", "Cy", "Di"],
        ["Abe", "Ann", "Cy", "Di", "Zed"],
    ]
    merged = values(diffs.messages)[2]
    assert [(i, u.name) for i, u in merged.removed] == [(2, "Bob")]
    assert [(i, u.name) for i, u in merged.inserted] == [(4, "Zed")]
    result: list[User] = []
    for d in values(diffs.messages):
        result = d.apply(result)
    assert names(result) == names(await q.all())


async def test_closing_delivers_a_held_change_then_completes(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    users.query().watch_count(coalesce=10).subscribe(observer, scheduler=scheduler)
    scheduler.advance_by(0.001)
    await users.put(User(name="A", city="x"))
    await mem_db.close()
    scheduler.advance_by(0.001)
    assert [m.value.kind for m in observer.messages] == ["N", "N", "C"]
    assert observer.messages[1].value.value == 1


async def test_coalescing_on_the_loop(mem_db: quanta.Database) -> None:
    """On real time nothing is asserted about durations: only that the burst was coalesced
    and that the last item is the final result."""
    users = mem_db.collection(User)
    rec = Recorder()
    users.query().watch_count(coalesce=0.05).subscribe(rec)
    await rec.until(1)
    for i in range(30):
        await users.put(User(name=f"U{i}", city="x"))
    await rec.until(2)
    while rec.items[-1] != 30:  # (fails after TIMEOUT if the last count never comes)
        await rec.until(len(rec.items) + 1)
    assert len(rec.items) < 30


# =============================================================================== maintenance


async def test_a_commit_reaches_only_the_states_its_values_route_to(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    await users.put_many([User(name=f"U{i}", city=f"c{i % 100}", age=i) for i in range(500)])
    keep = [users.where(User.city == f"c{i}").order_by(User.age).limit(3).watch().subscribe() for i in range(100)]
    scans = [users.where(User.age > 400).watch().subscribe()]  # no equality: sees every change
    states = list(registry(mem_db).dispatchers[User].states)
    start = [s.seq for s in states]
    await users.put(User(id=8, name="moved", city="c42", age=8))  # from c7 to c42
    touched = [i for i, s in enumerate(states) if s.seq != start[i]]
    assert touched == [7, 42, 100]
    for d in [*keep, *scans]:
        d.dispose()
    assert len(registry(mem_db)) == 0


async def test_a_window_refills_from_the_store_only_when_removals_empty_it(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    await users.put_many([User(name=f"U{i:03}", city="x", age=i) for i in range(200)])
    q = users.query().order_by(User.age).limit(4)
    rec = Recorder()
    q.watch().subscribe(rec)
    await rec.until(1)
    [state] = registry(mem_db).dispatchers[User].states
    assert isinstance(state, ResultState)
    head = len(state.rows)  # the window plus a few matches after it
    assert 4 < head < 200 and not state.complete
    for i in range(100):  # arrivals and updates never read the store
        await users.put(User(name=f"New{i}", city="x", age=-i))
    assert state.refills == 0
    fresh = await q.all()
    for u in fresh:  # remove the whole window, repeatedly
        await users.delete(u.id)
    await settle()
    assert state.refills == 0  # the head still covers the window
    for _ in range(20):
        for u in await q.all():
            await users.delete(u.id)
    await settle()
    assert 0 < state.refills <= 20
    assert names(rec.items[-1]) == names(await q.all())


async def test_an_observer_may_open_a_live_query_from_inside_on_next(mem_db: quanta.Database) -> None:
    """On an inline scheduler the observer runs inside the commit's publish; what it opens
    there starts after that commit."""
    users = await populate(mem_db)
    inner: list[list[str] | None] = []
    opened: list[Any] = []

    def on_next(rows: list[User]) -> None:
        if len(rows) == 5 and not opened:
            opened.append(
                users.query()
                .order_by(User.name)
                .watch()
                .subscribe(lambda r: inner.append(names(r)), scheduler=ImmediateScheduler())
            )

    users.query().watch().subscribe(on_next, scheduler=ImmediateScheduler())
    await users.put(User(name="Eve", city="x"))
    await users.put(User(name="Fay", city="x"))
    assert inner == [["Ann", "Bob", "Cy", "Di", "Eve"], ["Ann", "Bob", "Cy", "Di", "Eve", "Fay"]]


# =============================================================================== lifetimes


async def test_dispose_ends_the_subscription_and_frees_its_state(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    before = await subscribers(mem_db)
    rec = Recorder()
    d = users.where(User.city == "Oslo").watch().subscribe(rec)
    await rec.until(1)
    assert await subscribers(mem_db) == before + 1  # one bus subscription per entity
    d2 = users.watch_object(1).subscribe()
    assert await subscribers(mem_db) == before + 1
    d.dispose()
    d2.dispose()
    assert len(registry(mem_db)) == 0 and registry(mem_db).dispatchers == {}
    assert await subscribers(mem_db) == before
    await users.put(User(name="Ole", city="Oslo"))
    await settle()
    assert len(rec.items) == 1 and not rec.ended


async def test_ten_thousand_live_queries_created_and_disposed_leave_nothing_behind(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    before = await subscribers(mem_db)
    gc.collect()
    alive = sum(isinstance(o, LiveState) for o in gc.get_objects())
    refs: list[weakref.ref[Any]] = []
    for i in range(10_000):
        q = users.where(User.city == f"c{i % 50}").order_by(User.name).limit(5)
        feed = q.watch_diff() if i % 2 else q.watch_count()
        d = feed.subscribe(lambda _: None)
        if i % 1000 == 0:
            refs.extend(weakref.ref(s) for s in registry(mem_db).dispatchers[User].states)
        d.dispose()
    for i in range(200):  # streams dropped without closing
        users.where(User.age == i).live()
    for i in range(200):
        async with users.watch_object(i).stream() as s:
            await take(s, 1)
    await users.put(User(name="after", city="c1"))
    del d, s  # the last disposable and stream (ended, but they reference their state)
    gc.collect()
    assert len(registry(mem_db)) == 0 and registry(mem_db).dispatchers == {}
    assert await subscribers(mem_db) == before
    assert all(r() is None for r in refs)
    assert sum(isinstance(o, LiveState) for o in gc.get_objects()) == alive


async def test_a_closed_database_with_live_queries_is_garbage() -> None:
    """Nothing of the live layer keeps a closed database (its engine, its bus) alive."""

    async def use_and_close() -> weakref.ref[Any]:
        db = await quanta.open("/db", fs=MemoryFileSystem(), durability="os")
        users = await populate(db)
        rec = Recorder()
        users.where(User.city == "Oslo").watch().subscribe(rec)
        users.query().watch_count().subscribe(Recorder())
        stream = users.query().live()
        await rec.until(1)
        await users.put(User(name="Ole", city="Oslo"))
        await rec.until(2)
        await db.close()
        await rest(stream)
        return weakref.ref(db._engine)

    engine = await use_and_close()
    gc.collect()
    assert engine() is None


async def test_closing_the_database_completes_every_live_query(db: quanta.Database) -> None:
    users = await populate(db)
    recs = [Recorder() for _ in range(5)]
    q = users.where(User.city == "Oslo")
    q.watch().subscribe(recs[0])
    q.watch_diff().subscribe(recs[1])
    q.watch_count().subscribe(recs[2])
    users.watch_object(1).subscribe(recs[3])
    users.watch_lazy().subscribe(recs[4])
    stream = q.live()
    iterated = q.watch().stream()
    await settle()
    await db.close()
    for rec in recs:
        await rec.until_ended()
        assert rec.completed
    assert len(await rest(stream)) == 1  # the current result was pending; then the end
    assert len(await rest(iterated)) == 1
    assert len(registry(db)) == 0


async def test_a_closed_database_refuses_live_queries(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    feed = users.query().watch()  # made before the close, subscribed after
    await mem_db.close()
    with pytest.raises(quanta.DatabaseClosedError):
        users.query().watch()
    with pytest.raises(quanta.DatabaseClosedError):
        users.watch_lazy()
    rec = Recorder()
    feed.subscribe(rec)
    await rec.until_ended()
    assert isinstance(rec.error, quanta.DatabaseClosedError)


async def test_a_failed_database_fails_every_live_query() -> None:
    fs = SyncFails()
    db = await quanta.open("/db", fs=fs)
    try:
        users = await populate(db)
        rec = Recorder()
        users.query().watch().subscribe(rec)
        stream = users.query().live()
        await rec.until(1)
        fs.failing = True
        with pytest.raises(quanta.DatabaseFailedError):
            await users.put(User(name="lost", city="x"))
        await rec.until_ended()
        assert len(rec.items) == 1 and isinstance(rec.error, quanta.DatabaseFailedError)
        with pytest.raises(quanta.DatabaseFailedError):
            await rest(stream)
    finally:
        await db.close()


# =============================================================================== failure paths


async def test_a_transactions_collection_has_no_live_queries(mem_db: quanta.Database) -> None:
    async with mem_db.transaction() as tx:
        users = tx.collection(User)
        for make in (
            lambda: users.query().watch(),
            lambda: users.query().watch_diff(),
            lambda: users.query().live(),
            lambda: users.query().watch_count(),
            lambda: users.query().watch_sum(User.age),
            lambda: users.watch_object(1),
            lambda: users.watch_lazy(),
        ):
            with pytest.raises(quanta.QueryError, match=r"db\.collection"):
                make()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"coalesce": -1}, quanta.InvalidArgumentError),
        ({"coalesce": float("nan")}, quanta.InvalidArgumentError),
        ({"coalesce": timedelta(seconds=-1)}, quanta.InvalidArgumentError),
        ({"coalesce": "1s"}, quanta.InvalidTypeError),
        ({"coalesce": True}, quanta.InvalidTypeError),
        ({"buffer": 0}, quanta.InvalidArgumentError),
        ({"buffer": "many"}, quanta.InvalidTypeError),
        ({"buffer": 1.5}, quanta.InvalidTypeError),
    ],
)
async def test_bad_options_raise_when_called(mem_db: quanta.Database, kwargs: dict[str, Any], error: type) -> None:
    users = mem_db.collection(User)
    with pytest.raises(error):
        users.query().watch(**kwargs)
    with pytest.raises(error):
        users.watch_object(1, **kwargs)
    if "buffer" not in kwargs:
        with pytest.raises(error):
            users.query().live(**kwargs)


async def test_bad_fields_and_keys_raise_when_called(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    q = users.query()
    with pytest.raises(quanta.QueryError, match="expected a field of User"):
        q.watch_min(Pet.name)
    with pytest.raises(quanta.QueryError, match="expected a field of User"):
        q.watch_sum("age")
    with pytest.raises(quanta.QueryError, match="cannot be ordered"):
        q.watch_max(User.tags)
    with pytest.raises(quanta.QueryError, match="int or float"):
        q.watch_avg(User.name)
    with pytest.raises(quanta.InvalidTypeError):
        users.watch_object("one")


async def test_a_slow_observer_overflows_after_what_it_was_sent(mem_db: quanta.Database) -> None:
    users = mem_db.collection(User)
    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    users.query().watch_count(buffer=3).subscribe(observer, scheduler=scheduler)  # holds the current 0
    for i in range(5):
        await users.put(User(name=f"U{i}", city="x"))
    assert len(registry(mem_db)) == 0  # failed at the 4th item: already unsubscribed
    scheduler.advance_by(1)
    assert [m.value.kind for m in observer.messages] == ["N", "N", "N", "E"]
    assert values(observer.messages[:3]) == [0, 1, 2]
    error = observer.messages[3].value.exception
    assert isinstance(error, quanta.SubscriberOverflowError) and error.last_seq is not None


async def test_an_observer_that_raises_gets_on_error_and_is_unsubscribed(mem_db: quanta.Database) -> None:
    users = await populate(mem_db)
    rec = Recorder(on_item=lambda rows: (_ for _ in ()).throw(RuntimeError("boom")) if len(rows) > 4 else None)
    users.query().watch().subscribe(rec)
    await rec.until(1)
    await users.put(User(name="E", city="x"))
    await rec.until_ended()
    assert isinstance(rec.error, RuntimeError) and len(registry(mem_db)) == 0


async def test_a_failing_refill_ends_only_its_own_subscription(
    mem_db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = mem_db.collection(User)
    await users.put_many([User(name=f"U{i:02}", city="x", age=i) for i in range(40)])
    failing, healthy = Recorder(), Recorder()
    q = users.query().order_by(User.age).limit(2)
    q.watch().subscribe(failing)
    users.query().order_by(User.age).watch().subscribe(healthy)  # no limit: never refills
    await failing.until(1)
    await healthy.until(1)
    real_head = Source.head

    def broken(self: Source, plan: Any, key: Any, n: int | None, **kw: Any) -> Any:
        if n is not None:
            raise quanta.CorruptionError("injected", path="x.sst")
        return real_head(self, plan, key, n, **kw)

    monkeypatch.setattr(Source, "head", broken)
    for u in await users.query().order_by(User.age).limit(30).all():
        await users.delete(u.id)
    await failing.until_ended()
    assert isinstance(failing.error, quanta.CorruptionError)
    await settle()
    assert not healthy.ended and len(healthy.items[-1]) == 10
    await users.put(User(name="late", city="x", age=100))
    await healthy.until(len(healthy.items) + 1)
    assert len(registry(mem_db)) == 1
