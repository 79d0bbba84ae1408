"""Queries and live queries across ``db.repair()`` (Catalog.repair_indexes): while a repair
deletes an entity's index and unique entries and builds them again, the indexes are hidden
from the planner. What was planned before the repair must follow:

* a live query (``watch``, ``watch_diff``, ``live``, ``watch_count``, an aggregate) on an
  indexed field, subscribed before the repair, with writes going on during it, keeps
  emitting the results a fresh query gives, never an empty or short result while the
  entries are missing, and never an error; one subscribed *during* the repair (a ``Watch``
  made before it) starts from the right value;
* a ``Query`` built (and planned) before the repair and run during it answers by scan, and
  an ``async for`` over a query begun before the repair finishes with its snapshot's result.

The repair is paused at fixed points (after the commit that hides the indexes, after the
entries are deleted) by wrapping ``builder.drop`` / ``builder.build``, so the checks there
are deterministic; a free-running writer task adds writes between the build's chunks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import pytest
from reactive_helpers import Recorder

import quanta
from quanta import Index, PrimaryKey, ResultDiff, Unique
from quanta._catalog import builder as builder_module
from quanta._storage.vfs import MemoryFileSystem

PATH = "/db"
N = 120


@quanta.entity
class Item:
    id: Annotated[int, PrimaryKey()]
    name: Annotated[str, Index()]
    score: Annotated[int, Index()]
    code: Annotated[str, Unique()]
    tags: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)


def item(i: int, *, score: int | None = None, name: str | None = None) -> Item:
    return Item(
        id=i,
        name=name if name is not None else "abc"[i % 3],
        score=score if score is not None else (i * 37) % 100,
        code=f"c{i}",
        tags=["even" if i % 2 == 0 else "odd", f"t{i % 5}"],
    )


@pytest.fixture(params=["os"])
async def db(request: pytest.FixtureRequest) -> AsyncIterator[quanta.Database]:
    """``durability="os"`` (commits that never wait) unless a test asks for ``"sync"`` (every
    commit waits for its fsync in a thread, so other tasks run in between)."""
    fs = MemoryFileSystem()
    database = await quanta.open(PATH, fs=fs, entities=[Item], durability=request.param)
    await database.collection(Item).put_many([item(i) for i in range(N)])
    yield database
    if not database.closed:
        await database.close()


async def settle() -> None:
    """Let the deliveries the last commit scheduled run (loop callbacks)."""
    for _ in range(4):
        await asyncio.sleep(0)


async def problem_count(db: quanta.Database) -> int:
    """How many problems ``verify(deep=True)`` reports."""
    return (await db.verify(deep=True)).problem_count


def ids(rows: list[Item]) -> list[int]:
    return [r.id for r in rows]


class Pause:
    """Runs ``hook(point)`` inside the repair at ``"hidden"`` (every index of the entity is
    hidden, the entries are intact: before the first ``builder.drop``) and ``"deleted"``
    (the entries of the index being rebuilt are gone: before each ``builder.build``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hook: Callable[[str, str], Awaitable[None]]) -> None:
        real_drop, real_build = builder_module.drop, builder_module.build
        self.points: list[tuple[str, str]] = []

        async def drop(store: Any, entity: str, index: str, report: Any) -> int:
            self.points.append(("hidden", index))
            await hook("hidden", index)
            return await real_drop(store, entity, index, report)

        async def build(store: Any, transactions: Any, info: Any, index: Any, job: Any, report: Any) -> None:
            self.points.append(("deleted", index.name))
            await hook("deleted", index.name)
            await real_build(store, transactions, info, index, job, report)

        monkeypatch.setattr(builder_module, "drop", drop)
        monkeypatch.setattr(builder_module, "build", build)


class Live:
    """The live queries under test, each with what a fresh run must give."""

    def __init__(self, db: quanta.Database) -> None:
        coll = self.coll = db.collection(Item)
        self.q_name = coll.where(Item.name == "a")
        self.q_window = coll.where(Item.score >= 50).order_by(Item.score).limit(6)
        self.q_window_any = coll.where(Item.score >= 50).limit(6)  # no order_by: the index's order
        self.q_tags = coll.where(quanta.contains(Item.tags, "t1"))
        self.q_code = coll.where(Item.code == "c7")
        for q in (self.q_name, self.q_window, self.q_window_any, self.q_tags, self.q_code):
            assert "index" in q.explain().splitlines()[1] and "none" not in q.explain().splitlines()[1], q.explain()
        self.name_list = Recorder()
        self.name_diff = Recorder()
        self.window = Recorder()
        self.window_any = Recorder()
        self.tags = Recorder()
        self.code = Recorder()
        self.count = Recorder()
        self.maximum = Recorder()
        self.diff_rows: list[Item] = []
        self.subs = [
            self.q_name.watch().subscribe(self.name_list),
            self.q_name.watch_diff().subscribe(self.name_diff),
            self.q_window.watch().subscribe(self.window),
            self.q_window_any.watch().subscribe(self.window_any),
            self.q_tags.watch().subscribe(self.tags),
            self.q_code.watch().subscribe(self.code),
            self.q_name.watch_count().subscribe(self.count),
            self.q_tags.watch_max(Item.score).subscribe(self.maximum),
        ]
        self.latest = self.q_name.live()
        self.latest_rows: list[list[Item]] = []
        self.reader = asyncio.create_task(self._read_latest())
        self.recorders = [
            self.name_list,
            self.name_diff,
            self.window,
            self.window_any,
            self.tags,
            self.code,
            self.count,
            self.maximum,
        ]
        self.emissions = 0

    async def _read_latest(self) -> None:
        async for rows in self.latest:
            self.latest_rows.append(rows)

    async def expected(self) -> dict[str, Any]:
        """What fresh queries answer now (by scan while the indexes are hidden)."""
        every = await self.coll.query().all()
        matches = sorted((r for r in every if r.score >= 50), key=lambda r: (r.score, r.id))
        return {
            "name": ids(await self.q_name.all()),
            "window": ids(await self.q_window.all()),
            "window_any": ids(matches[:6]),  # the order of the index path the live query was opened on
            "tags": ids(await self.q_tags.all()),
            "code": ids(await self.q_code.all()),
            "count": await self.q_name.count(),
            "max": await self.q_tags.max(Item.score),
        }

    def diff_result(self) -> list[Item]:
        rows: list[Item] = []
        for d in self.name_diff.items:
            assert isinstance(d, ResultDiff)
            rows = d.apply(rows)
        return rows

    def current(self) -> dict[str, Any]:
        for rec in self.recorders:
            assert rec.error is None, rec.error
            assert not rec.completed
        return {
            "name": ids(self.name_list.items[-1]),
            "window": ids(self.window.items[-1]),
            "window_any": ids(self.window_any.items[-1]),
            "tags": ids(self.tags.items[-1]),
            "code": ids(self.code.items[-1]),
            "count": self.count.items[-1],
            "max": self.maximum.items[-1],
        }

    async def check(self, where: str) -> None:
        await settle()
        want = await self.expected()
        assert self.current() == want, where
        assert ids(self.diff_result()) == want["name"], where
        assert ids(self.latest_rows[-1]) == want["name"], where  # the latest-value face

    def no_short_result(self, floor: int) -> None:
        """No emission of the name query ever had fewer than ``floor`` rows (the writers
        never leave fewer): an index whose entries are being deleted never shows."""
        for rows in self.name_list.items + self.latest_rows:
            assert len(rows) >= floor, [len(r) for r in self.name_list.items]
        assert min(self.count.items) >= floor, self.count.items
        for rows in self.window.items + self.window_any.items:
            assert len(rows) == 6

    async def close(self) -> None:
        for s in self.subs:
            s.dispose()
        await self.latest.aclose()
        await asyncio.wait_for(self.reader, 5)


async def writes(coll: quanta.Collection[Item], step: int) -> None:
    """A few commits that change every live query's result: an arrival, a departure from
    the windows (so they refill from the store), a move, a tag change, a delete."""
    base = 10_000 + 10 * step
    await coll.put(item(base, name="a", score=99))
    window = await coll.where(Item.score >= 50).order_by(Item.score).limit(6).all()
    for row in window[:4]:  # empty most of the head: a refill
        await coll.put(item(row.id, score=10, name=row.name))
    victim = (await coll.where(Item.name == "a").order_by(Item.id).limit(1).all())[0]
    await coll.delete(victim.id)
    await coll.put(item(base + 1, name="a", score=55))
    await coll.put(Item(id=7, name="b", score=60 + step % 30, code="c7", tags=["t1"]))
    await coll.put(item(base + 2, name="c", score=51))


# ====================================================================== live queries across a repair


async def test_live_queries_opened_before_a_repair_stay_correct_at_every_step(
    db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = Live(db)
    await live.check("before the repair")
    coll = live.coll
    late: dict[str, Recorder] = {}
    made_before = {
        "window": live.q_window.watch(),
        "count": live.q_name.watch_count(),
        "max": live.q_tags.watch_max(Item.score),
    }
    step = 0
    held: list[asyncio.Task[None]] = []  # writes made while the unique index is rebuilt

    async def hook(point: str, index: str) -> None:
        nonlocal step
        step += 1
        await live.check(f"{point} {index}: before the writes")
        if index == "code":  # the unique index: puts wait until it is rebuilt (test_repair_unique.py)
            held.append(asyncio.create_task(writes(coll, step)))
            await settle()
            assert not held[-1].done()
            return
        for task in held:  # released when the unique index was done, before this point
            await asyncio.wait_for(task, 10)
        held.clear()
        await live.check(f"{point} {index}: after the writes")
        if point == "deleted" and index == "score" and not late:
            # subscribed now, while the score entries are gone: the Watch was made before
            for label, watch in made_before.items():
                late[label] = Recorder()
                live.subs.append(watch.subscribe(late[label]))
            await settle()
            want = await live.expected()
            assert ids(late["window"].items[-1]) == want["window"]
            assert late["count"].items[-1] == want["count"]
            assert late["max"].items[-1] == want["max"]

    pause = Pause(monkeypatch, hook)
    report = await db.repair()
    assert len(report.indexes) == 4 and report.skipped == ()
    assert {p for p, _ in pause.points} == {"hidden", "deleted"} and len(pause.points) == 8
    await live.check("after the repair")
    for label, rec in late.items():  # followed every later commit
        assert rec.error is None
        want = await live.expected()
        assert (ids(rec.items[-1]) if label == "window" else rec.items[-1]) == want[label]
    live.no_short_result(floor=N // 3 - 1)
    for q in (live.q_name, live.q_window, live.q_tags, live.q_code):
        assert "full_scan" not in q.explain()  # the rebuilt indexes are used again
    await live.close()


@pytest.mark.parametrize("db", ["sync"], indirect=True)
async def test_live_queries_follow_a_writer_running_through_the_whole_repair(
    db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = Live(db)
    coll = live.coll
    monkeypatch.setattr(builder_module, "CHUNK", 8)  # many build chunks: the writer runs between them
    stop = asyncio.Event()
    tick = asyncio.Event()
    done = hidden = 0

    async def writer() -> None:
        """One step after each progress report of the repair (the repair goes on while the
        step runs: every commit waits for its fsync); the live results are checked after
        each step (the repair's own commits change no record, so they must stay equal)."""
        nonlocal done, hidden
        rng = random.Random(14)
        while not stop.is_set():
            await tick.wait()
            tick.clear()
            hidden += "score" in db._catalog.hidden("Item")
            i = rng.randrange(N)
            op = rng.random()
            if op < 0.3:
                await coll.put(item(i, score=rng.randrange(100), name="a" if i % 3 == 0 else "bc"[i % 2]))
            elif op < 0.6:
                await coll.put(item(20_000 + done, name=rng.choice("abc"), score=rng.randrange(100)))
            else:  # the head of the windows leaves (a refill from the store), then as many arrive
                for row in await live.q_window.limit(3).all():
                    await coll.put(item(row.id, score=10, name=row.name))
                for k in range(3):
                    await coll.put(item(30_000 + 3 * done + k, name=rng.choice("abc"), score=rng.randrange(50, 100)))
            done += 1
            await live.check(f"writer step {done}")

    task = asyncio.create_task(writer())

    def progress(p: quanta.SchemaProgress) -> None:
        tick.set()

    try:
        await db.repair(progress=progress)
    finally:
        stop.set()
        tick.set()
        await task
    assert done >= 10 and hidden >= 5, (done, hidden)  # the writer did run during the repair
    await live.check("after the repair and the writer")
    live.no_short_result(floor=N // 3)
    assert await problem_count(db) == 0
    await live.close()


# ================================================================================ plain queries


async def test_a_query_planned_before_a_repair_answers_by_scan_during_it(
    db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = db.collection(Item)
    q = coll.where(Item.score >= 50).order_by(Item.score)
    unordered = coll.where(Item.name == "b")
    assert "index_range" in q.explain() and "index_range" in unordered.explain()
    want = ids(await q.all())
    want_b = ids(await unordered.all())
    seen: list[str] = []

    async def hook(point: str, index: str) -> None:
        got = [r.id async for r in q]  # async iteration, a batch at a time
        assert got == want, (point, index)
        assert sorted([r.id async for r in unordered]) == sorted(want_b), (point, index)
        assert await unordered.count() == len(want_b)
        assert [r.id for r in await q.limit(5).offset(3).all()] == want[3:8]
        seen.append((point, index, q.explain().splitlines()[0]))

    Pause(monkeypatch, hook)
    await db.repair()
    # every index hidden from the first commit; the score index used again once rebuilt
    assert [s[:2] for s in seen] == [(p, i) for i in ("code", "name", "score", "tags") for p in ("hidden", "deleted")]
    assert [s[2].split()[-1] for s in seen] == ["full_scan"] * 6 + ["index_range"] * 2, seen
    assert "index_range" in q.explain() and ids(await q.all()) == want


async def test_an_async_for_begun_before_a_repair_finishes_with_its_snapshot(db: quanta.Database) -> None:
    coll = db.collection(Item)
    await coll.put_many([item(i) for i in range(N, 3000)])  # several executor chunks
    q = coll.where(Item.score >= 50)
    want = ids(await q.all())
    it = aiter(q)
    first = [(await anext(it)).id for _ in range(10)]
    await db.repair()  # every entry deleted and written again while the iteration is paused
    await coll.put(item(99_999, score=77))  # after the iteration's snapshot: not in it
    rest = [r.id async for r in it]
    assert first + rest == want
