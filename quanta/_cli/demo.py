"""``quanta demo [PATH]``: the guided tour, on the kv API and on an entity with indexes.

The demo declares its entity (``DemoPerson``) at every open, so ``quanta schema`` on the
demo's database shows it. It can run again on the same path with any ``--records``: the kv
keys are rewritten, and the people of an earlier run that this run does not rewrite are
deleted first (their unique emails would otherwise clash). The kv load is split into
batches of at most :data:`BATCH_RECORDS` records, each one durable commit, so every
``--records`` the option accepts (:data:`MIN_RECORDS` to :data:`MAX_RECORDS`) stays under
``quanta.MAX_BATCH_BYTES``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Annotated, TextIO

import msgpack

from .. import _db
from .._query import between, desc
from .._schema import Index, PrimaryKey, Unique, entity
from ..errors import QuantaError

__all__ = ["BATCH_RECORDS", "DEFAULT_DEMO_PATH", "MAX_RECORDS", "MIN_RECORDS", "DemoPerson", "demo"]

DEFAULT_DEMO_PATH = "quanta-demo.db"
MIN_RECORDS = 100
MAX_RECORDS = 1_000_000  # the tour reads every user back (step 8): keep it a tour, not a benchmark
BATCH_RECORDS = 250_000  # ~20 MB of kv pairs: far below MAX_BATCH_BYTES
PEOPLE = 20_000  # step 10 loads min(records, PEOPLE) entities
CITIES = ["Oslo", "Rome", "Lima", "Pune"]


@entity(name="DemoPerson", indexes=[Index("city", "age")])
class DemoPerson:
    """A person of the demo (steps 10 and 11)."""

    id: Annotated[int, PrimaryKey()]
    email: Annotated[str, Unique()]
    name: str
    city: str
    age: int = 0


def _user(i: int) -> tuple[bytes, bytes]:
    user = {"id": i, "name": f"user {i}", "email": f"u{i}@example.com", "age": 18 + i % 60}
    return b"user:%08d" % i, msgpack.packb(user)


async def demo(path: str, records: int = 100_000, out: TextIO | None = None) -> None:
    """The quick-start tour: bulk load, point reads, scans, a snapshot, reopen, verify, entities."""

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    say(f"QuantaDB demo in {path}")
    existed = os.path.exists(os.path.join(path, "CURRENT"))  # noqa: ASYNC240 (one stat, before the open)
    async with _db.open(path, entities=[DemoPerson]) as db:
        stats = await db.stats()
        if existed:
            say(f"  (found an existing database: last commit #{stats['last_seq']}; the demo rewrites its keys)")
        t = time.perf_counter()
        batches = 0
        for start in range(0, records, BATCH_RECORDS):
            await db.kv.put_many([_user(i) for i in range(start, min(records, start + BATCH_RECORDS))])
            batches += 1
        # users of an earlier, larger run: gone, so step 8 counts this run's
        stale = [k async for k, _ in db.kv.scan(start=b"user:%08d" % records, stop=b"user;")]
        if stale:
            batch = db.kv.batch()
            for k in stale:
                batch.delete(k)
            await batch.commit()
        load_ms = (time.perf_counter() - t) * 1e3
        what = "one durable batch" if batches == 1 else f"{batches} durable batches"
        say(f"1. put_many: {records:,} records in {what} in {load_ms:.0f} ms")

        t = time.perf_counter()
        probe = b"user:%08d" % (records * 42 // 1000)
        value = await db.kv.get(probe)
        assert value is not None
        say(f"2. get {probe.decode()} -> {msgpack.unpackb(value)} ({(time.perf_counter() - t) * 1e6:.0f} us)")

        t = time.perf_counter()
        start_key = b"user:%08d" % (records // 2)
        rows = [key async for key, _ in db.kv.scan(start=start_key, limit=1000)]
        say(
            f"3. scan from {start_key.decode()}, limit 1000: {len(rows)} rows, {rows[0].decode()} .. "
            f"{rows[-1].decode()} in {(time.perf_counter() - t) * 1e3:.1f} ms"
        )
        async with db.snapshot() as snap:
            await db.kv.put(b"user:00000001", msgpack.packb({"id": 1, "name": "renamed"}))
            old = msgpack.unpackb(await snap.kv.get(b"user:00000001"))["name"]
            new = msgpack.unpackb(await db.kv.get(b"user:00000001"))["name"]
            say(f"4. snapshot isolation: the snapshot still reads {old!r}; the database reads {new!r}")
        async with db.changes() as stream:  # the change bus: every later commit, in order
            batch = db.kv.batch()
            for i in range(10):
                batch.delete(b"user:%08d" % i)
            batch.put(b"config:motd", b"hello from a batch")
            await batch.commit()
            change_set = await anext(stream)
        say(
            "5. a batch deleted 10 users and wrote config:motd atomically; a change stream saw it as one "
            f"change set #{change_set.seq} of {len(change_set.changes)} changes"
        )
        key = b"user:%08d" % 20
        first, second = db.transaction(), db.transaction()
        for tx in (first, second):
            user = msgpack.unpackb(await tx.kv.get(key))
            await tx.kv.put(key, msgpack.packb({**user, "age": user["age"] + 1}))
        await first.commit()
        try:
            await second.commit()
            outcome = "committed too (a bug!)"
        except QuantaError as exc:
            outcome = f"was refused with {type(exc).__name__}"
        age = msgpack.unpackb(await db.kv.get(key))["age"]
        say(f"6. two transactions raised {key.decode()}'s age: the first committed, the second {outcome}; age={age}")
        t = time.perf_counter()
        await db.compact()
        stats = await db.stats()
        levels = ", ".join(f"L{lv['level']}: {lv['files']} file(s)" for lv in stats["levels"] if lv["files"])
        say(f"7. flush + compaction in {(time.perf_counter() - t) * 1e3:.0f} ms -> {levels}")
    t = time.perf_counter()
    async with _db.open(path, entities=[DemoPerson]) as db:
        reopen_ms = (time.perf_counter() - t) * 1e3
        motd = await db.kv.get(b"config:motd")
        gone = await db.kv.get(b"user:00000003")
        n = 0
        async for _ in db.kv.scan(prefix=b"user:"):
            n += 1
        say(f"8. reopened in {reopen_ms:.1f} ms: config:motd={motd!r}, user:00000003={gone!r}, {n:,} users")
        result = await db.verify()
        say(f"9. verify: {result.tables} table(s), {result.entries:,} entries, all checksums good")
        await _demo_entities(db, min(records, PEOPLE), say)
    say(f"Done. Run `python -m quanta stats {path}` (or `schema`, `scan`, `query`) to look inside.")


async def _demo_entities(db: _db.Database, n: int, say: Callable[[str], None]) -> None:
    """Steps 10 and 11: the same people as entities, with indexes, a planned query and a live
    query."""
    people = db.collection(DemoPerson)
    t = time.perf_counter()
    # People of an earlier run this one does not rewrite (a larger --records, or the three
    # of step 11) hold emails this run hands out: delete them first.
    await people.where(DemoPerson.id >= n).delete()
    await people.put_many(
        DemoPerson(id=i, email=f"u{i}@example.com", name=f"user {i}", city=CITIES[i % 4], age=18 + i % 60)
        for i in range(n)
    )
    load_ms = (time.perf_counter() - t) * 1e3
    query = people.where(DemoPerson.city == "Oslo", between(DemoPerson.age, 30, 39)).order_by(desc(DemoPerson.age))
    t = time.perf_counter()
    rows = await query.limit(3).all()
    query_ms = (time.perf_counter() - t) * 1e3
    plan = query.plan()
    index = plan.index.name if plan.index is not None else "none"
    say(
        f"10. entities: {n:,} DemoPerson records with a unique and a composite index in {load_ms:.0f} ms; "
        f"Oslo aged 30-39, oldest first: {[p.age for p in rows]} via {plan.access} on {index} in {query_ms:.1f} ms"
    )

    # Step 11: the three oldest in Oslo as a live query; commits that change it arrive as diffs.
    oldest = people.where(DemoPerson.city == "Oslo").order_by(desc(DemoPerson.age), DemoPerson.id).limit(3)
    async with oldest.watch_diff() as diffs:
        await anext(diffs)  # the current result, as a diff from nothing
        await people.put(DemoPerson(id=n + 1, email="young@example.com", name="young", city="Oslo", age=1))
        await people.put(DemoPerson(id=n + 2, email="far@example.com", name="far away", city="Rome", age=120))
        t = time.perf_counter()
        await people.put(DemoPerson(id=n, email="new@example.com", name="newcomer", city="Oslo", age=99))
        diff = await anext(diffs)  # nothing came for the two commits that did not change the top 3
        live_ms = (time.perf_counter() - t) * 1e3
    say(
        f"11. live query (3 oldest in Oslo): two commits that did not change it emitted nothing; a 99-year-old "
        f"arrived as a diff in {live_ms:.1f} ms: inserted at {[i for i, _ in diff.inserted]}, "
        f"removed from {[i for i, _ in diff.removed]}"
    )
