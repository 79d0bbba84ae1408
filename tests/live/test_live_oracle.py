"""The live-query oracle: after every commit, every live query equals a fresh run of the
same query, emitted exactly when the result changed.

A seeded random history of commits (single puts, puts that rewrite a record unchanged,
deletes, ``put_many``, ``delete_many``, transactions mixing many puts and deletes,
``Query.delete``, unique violations that write nothing, commits to another entity and to
raw keys, flushes and compactions under a tiny memtable) runs against ~30 live queries of
every shape: routed by equality, by ``in_``, by ``contains``; ranges and scans; the primary
key, unique, composite, multi-entry and non-indexed paths; with and without ``order_by``
(then the order is the access path's, and the live result must still equal a fresh run);
``desc``, NaN and None in the sort; ``limit``, ``offset``, both, ``limit(0)``; a predicate
that cannot hold. Each query is watched through every face at once:

* ``watch()``: after each commit, one new emission if and only if ``await q.all()``
  changed (compared by stored bytes), and then it equals that fresh result;
* ``watch_diff()``: as many diffs as ``watch()`` has emissions, and the diffs applied one
  after another to the empty result give the fresh result;
* ``watch_count()``, and for some queries ``watch_min/max/sum/avg(age)`` (windowed ones
  too): emission iff ``q.count()`` / the aggregate changed, equal to it;
* ``live()`` (latest value) for a few: read after each commit that changed the result.

Default: 2 seeds x 1,000 commits (about 20 s). ``QUANTA_LONG=1`` (or ``-m slow``) runs
longer histories.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from typing import Annotated, Any

import pytest
from shared_entities import Person  # every kind of index, as the query tests use it

import quanta
from quanta import PrimaryKey, UniqueViolationError, between, contains, desc, in_
from quanta._live import registry_of
from quanta._live.states import same_value
from quanta._schema import entity_info
from quanta._storage.vfs import MemoryFileSystem

LONG = os.environ.get("QUANTA_LONG") == "1"


@quanta.entity
class Pet:
    id: Annotated[int, PrimaryKey()]
    owner: int = 0


ENCODE = entity_info(Person).encode
IDS = range(0, 32)
EMAILS = [f"{c}{i}" for c in "abc" for i in range(14)]
NAMES = ["Ann", "Anna", "Al", "Bob", "bob", "", "Åse", "Zoe"]
CITIES = ["Oslo", "Os", "Rome", "Lima"]
TAGS = ["a", "b", "ab", ""]
SCORES = [-1.5, -0.0, 0.0, 0.5, 2.0, math.inf, -math.inf, math.nan]
NICKS = ["x", "xy", "y", "z"]
AGGREGATED = ("all", "city_name_top3", "or_across_fields", "age_between_by_score", "tag_a")


def queries(people: quanta.Collection[Person]) -> dict[str, quanta.Query[Person]]:
    P = Person
    return {
        "all": people.query(),
        "city_name_top3": people.where(P.city == "Oslo").order_by(P.name).limit(3),
        "city_age_desc_window": people.where(P.city == "Rome", P.age >= 2).order_by(desc(P.age)).offset(1).limit(2),
        "city_index_order": people.where(P.city == "Lima").limit(3),
        "in_cities_by_age": people.where(in_(P.city, ["Oslo", "Lima"])).order_by(P.age, P.id),
        "age_between_by_score": people.where(between(P.age, 0, 4)).order_by(desc(P.score), P.name).limit(4),
        "age_eq_unindexed": people.where(P.age == 3),
        "name_prefix_access_order": people.where(P.name.startswith("A")),
        "name_in_limit": people.where(in_(P.name, ["Bob", "bob", "Zoe"])).limit(2),
        "tag_a": people.where(contains(P.tags, "a")),
        "tag_a_or_b": people.where(contains(P.tags, "a") | contains(P.tags, "b")),
        "tag_b_by_age_limit": people.where(contains(P.tags, "b")).order_by(P.age).limit(2),
        "level_none": people.where(P.level.is_none()).order_by(P.id),
        "level_index_order": people.where(P.level >= 0),
        "or_across_fields": people.where((P.city == "Oslo") | (P.age < 1)).order_by(desc(P.id)).limit(5),
        "not_city": people.where(~(P.city == "Oslo")).order_by(P.name, desc(P.age)).offset(2),
        "pk_points": people.where(in_(P.id, [1, 3, 5, 7, 40])),
        "pk_points_desc": people.where(in_(P.id, [2, 4, 6])).order_by(desc(P.id)),
        "pk_range": people.where(between(P.id, 5, 15)).limit(4),
        "pk_range_offset": people.where(P.id > 3).offset(3).limit(3),
        "email_point": people.where(P.email == "a1"),
        "email_prefix": people.where(P.email.startswith("b")),
        "nick_in": people.where(in_(P.nick, ["x", "y"])).order_by(P.nick),
        "limit_zero": people.where(P.city == "Oslo").limit(0),
        "cannot_hold": people.where((P.age > 5) & (P.age < 3)),
        "offset_only": people.order_by(P.age).offset(10),
        "top_score_nan_first": people.order_by(desc(P.score)).limit(3),
        "score_nonzero": people.where(P.score != 0.0).order_by(P.score).limit(6),
        "big_offset": people.order_by(P.name, P.id).offset(20).limit(5),
    }


def encoded(objs: list[Person]) -> list[bytes]:
    return [ENCODE(o) for o in objs]


class Watched:
    """One query, watched through every face; ``check()`` after each commit."""

    def __init__(self, name: str, q: quanta.Query[Person], aggregates: bool, live: bool) -> None:
        self.name = name
        self.q = q
        self.lists: list[list[Person]] = []
        self.diffs: list[quanta.ResultDiff[Person]] = []
        self.counts: list[int] = []
        self.aggs: dict[str, list[Any]] = {}
        q.watch().subscribe(self.lists.append)
        q.watch_diff().subscribe(self.diffs.append)
        q.watch_count().subscribe(self.counts.append)
        if aggregates:
            for kind in ("min", "max", "sum", "avg"):
                self.aggs[kind] = []
                getattr(q, f"watch_{kind}")(Person.age).subscribe(self.aggs[kind].append)
        self.stream = q.live() if live else None
        self.result: list[bytes] | None = None
        self.replayed: list[Person] = []
        self.n_lists = self.n_diffs = self.n_counts = 0
        self.n_aggs = dict.fromkeys(self.aggs, 0)
        self.last_aggs: dict[str, Any] = {}
        self.last_count: int | None = None
        self.emissions = 0

    async def check(self, step: str) -> None:
        fresh = await self.q.all()
        now = encoded(fresh)
        changed = now != self.result
        where = f"{self.name} after {step}"
        assert len(self.lists) == self.n_lists + changed, f"{where}: watch() emissions"
        assert len(self.diffs) == self.n_diffs + changed, f"{where}: watch_diff() emissions"
        if changed:
            assert encoded(self.lists[-1]) == now, where
            self.replayed = self.diffs[-1].apply(self.replayed)
            assert encoded(self.replayed) == now, f"{where}: the diff does not give the new result"
            if self.stream is not None:
                got = await asyncio.wait_for(anext(self.stream), 10)
                assert encoded(got) == now, f"{where}: live()"
            self.emissions += 1
        self.result = now
        self.n_lists, self.n_diffs = len(self.lists), len(self.diffs)
        count = await self.q.count()
        assert len(self.counts) == self.n_counts + (count != self.last_count), f"{where}: watch_count() emissions"
        if count != self.last_count:
            assert self.counts[-1] == count, where
        self.last_count, self.n_counts = count, len(self.counts)
        for kind, got in self.aggs.items():
            value = await getattr(self.q, kind)(Person.age)
            moved = kind not in self.last_aggs or not same_value(self.last_aggs[kind], value)
            assert len(got) == self.n_aggs[kind] + moved, f"{where}: watch_{kind} emissions"
            if moved:
                assert same_value(got[-1], value), f"{where}: watch_{kind} = {got[-1]!r}, fresh {value!r}"
            self.last_aggs[kind] = value
            self.n_aggs[kind] = len(got)


def random_person(rng: random.Random, pk: int) -> Person:
    return Person(
        id=pk,
        email=rng.choice(EMAILS),
        name=rng.choice(NAMES),
        city=rng.choice(CITIES),
        age=rng.choice([rng.randint(-2, 6), rng.randint(-2, 6), 10**20]),
        tags=[rng.choice(TAGS) for _ in range(rng.randint(0, 3))],
        score=rng.choice(SCORES),
        level=rng.choice([None, None, rng.randint(-1, 3)]),
        nick=rng.choice([None, None, None, *NICKS]),
    )


def tweak(rng: random.Random, p: Person) -> Person:
    """``p`` with one or two fields changed (a new object)."""
    fresh = random_person(rng, p.id)
    kept = {f: getattr(p, f) for f in ("email", "name", "city", "age", "tags", "score", "level", "nick")}
    for f in rng.sample(sorted(kept), rng.randint(1, 2)):
        kept[f] = getattr(fresh, f)
    return Person(id=p.id, **kept)


async def run_history(seed: int, commits: int, durability: str = "os") -> None:
    rng = random.Random(seed)
    fs = MemoryFileSystem()
    async with quanta.open("/db", fs=fs, durability=durability, memtable_bytes=16 << 10) as db:
        people = db.collection(Person)
        pets = db.collection(Pet)
        for pk in rng.sample(IDS, 20):
            try:
                await people.put(random_person(rng, pk))
            except UniqueViolationError:
                pass
        stored: dict[int, Person] = {p.id: p for p in await people.query().all()}
        watched = [
            Watched(name, q, aggregates=name in AGGREGATED, live=i % 5 == 0)
            for i, (name, q) in enumerate(queries(people).items())
        ]
        await asyncio.sleep(0)
        for w in watched:
            await w.check("subscribing")

        async def put_many(objs: list[Person]) -> None:
            try:
                await people.put_many(objs)
            except UniqueViolationError:
                pass

        def some(k: int) -> list[Person]:
            return [stored[pk] for pk in rng.sample(sorted(stored), min(k, len(stored)))]

        async def step(kind: str) -> None:
            if kind == "put":
                pk = rng.choice(IDS)
                await put_many(
                    [tweak(rng, stored[pk]) if pk in stored and rng.random() < 0.7 else random_person(rng, pk)]
                )
            elif kind == "same":
                if stored:
                    await people.put(some(1)[0])  # the same bytes again: changes nothing
            elif kind == "delete":
                await people.delete(rng.choice(IDS))
            elif kind == "put_many":
                await put_many([tweak(rng, p) for p in some(rng.randint(2, 5))] + [random_person(rng, rng.choice(IDS))])
            elif kind == "delete_many":
                await people.delete_many(rng.sample(IDS, rng.randint(1, 4)))
            elif kind == "transaction":
                try:
                    async with db.transaction() as tx:
                        c = tx.collection(Person)
                        for _ in range(rng.randint(2, 10)):
                            if rng.random() < 0.3:
                                await c.delete(rng.choice(IDS))
                            else:
                                pk = rng.choice(IDS)
                                p = await c.get(pk)
                                await c.put(tweak(rng, p) if p is not None else random_person(rng, pk))
                except UniqueViolationError:
                    pass
            elif kind == "query_delete":
                await people.where(Person.age == rng.randint(-2, 6), Person.city == rng.choice(CITIES)).delete()
            elif kind == "other":
                await pets.put(Pet(id=rng.randint(0, 5), owner=rng.randint(0, 9)))
                await db.kv.put(b"unrelated", b"%d" % rng.randint(0, 9))
            elif kind == "flush":
                await db.flush()
            elif kind == "compact":
                await db.compact()

        kinds = ["put"] * 30 + ["same"] * 6 + ["delete"] * 12 + ["put_many"] * 10 + ["delete_many"] * 6
        kinds += ["transaction"] * 16 + ["query_delete"] * 5 + ["other"] * 5 + ["flush"] * 2 + ["compact"]
        for i in range(commits):
            kind = rng.choice(kinds)
            await step(kind)
            stored = {p.id: p for p in await people.query().all()}
            for _ in range(3):
                await asyncio.sleep(0)  # deliveries scheduled by the commit run
            for w in watched:
                await w.check(f"commit {i} ({kind}, seed {seed})")
        assert all(w.emissions > 0 for w in watched if w.name not in ("limit_zero", "cannot_hold")), [
            w.name for w in watched if w.emissions == 0
        ]
        registry = registry_of(db._entities)
        assert len(registry) == sum(3 + 4 * bool(w.aggs) + (w.stream is not None) for w in watched)
        streams = [w.stream for w in watched if w.stream is not None]
    for s in streams:  # closing the database ended them
        assert s.closed
        assert [x async for x in s] == []
    assert len(registry) == 0


@pytest.mark.parametrize("seed", [1, 2])
async def test_live_queries_equal_fresh_runs_after_every_commit(seed: int) -> None:
    await run_history(seed, 3000 if LONG else 1000)


async def test_live_queries_equal_fresh_runs_with_synced_group_commits() -> None:
    """durability="sync": commits are published from the fsync's completion, in groups."""
    await run_history(3, 300 if LONG else 80, durability="sync")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 16))
async def test_live_queries_equal_fresh_runs_long(seed: int) -> None:
    await run_history(seed, 3000)
