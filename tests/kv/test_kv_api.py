"""``db.kv``: the behaviour of the raw key-value API, as a user sees it.

Every test here runs twice (the ``db`` / ``db_factory`` fixtures of conftest.py): on the
in-memory file layer and on a real temporary directory, where flushes and compactions run in
worker processes. Each section states one part of the contract; the assertions are the spec.

Sections: reads and writes, batches, scans (bounds, prefixes, direction, limits, across the
LSM levels, under concurrent writes), snapshots, bad input (nothing is written), lifecycle
(closed, read-only, opening the wrong thing), persistence across reopen, stats, and the
ResourceWarning of a database that was never closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kv_model import collect, model_scan

import quanta
from quanta._storage.vfs import MemoryFileSystem

OpenFn = Callable[..., Awaitable[quanta.Database]]

# Tiny memtables and tables: every few writes make a flush, and compactions follow.
SMALL = {
    "memtable_bytes": 4096,
    "block_size": 256,
    "l0_compaction_trigger": 2,
    "l1_target_bytes": 8192,
    "target_file_bytes": 4096,
}


async def level_files(db: quanta.Database) -> tuple[int, int, int]:
    """(memtable entries, level-0 tables, tables in levels >= 1)."""
    s = await db.stats()
    return s["memtable_entries"], s["levels"][0]["files"], sum(lv["files"] for lv in s["levels"][1:])


# =============================================================================== reads and writes


async def test_get_of_a_missing_key_is_none(db: quanta.Database) -> None:
    assert await db.kv.get(b"nothing here") is None


async def test_put_then_get_returns_the_value(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"v")
    assert await db.kv.get(b"k") == b"v"


async def test_the_latest_put_wins(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"one")
    await db.kv.put(b"k", b"two")
    assert await db.kv.get(b"k") == b"two"


async def test_empty_value_is_a_value_not_a_delete(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"")
    assert await db.kv.get(b"k") == b""
    assert await collect(db.kv.scan()) == [(b"k", b"")]


async def test_delete_removes_and_deleting_a_missing_key_is_a_no_op(db: quanta.Database) -> None:
    await db.kv.put(b"k", b"v")
    await db.kv.delete(b"k")
    assert await db.kv.get(b"k") is None
    await db.kv.delete(b"never-written")
    assert await collect(db.kv.scan()) == []


async def test_binary_keys_and_values_round_trip(db: quanta.Database) -> None:
    pairs = [(bytes([i]), bytes(range(i, 256))) for i in range(256)]
    await db.kv.put_many(pairs)
    assert await db.kv.get_many([k for k, _ in pairs]) == [v for _, v in pairs]
    assert await collect(db.kv.scan()) == pairs


async def test_keys_and_values_at_the_size_limits_are_accepted(db: quanta.Database) -> None:
    big_key = b"k" * quanta.MAX_KEY_BYTES
    big_value = b"v" * quanta.MAX_VALUE_BYTES
    await db.kv.put(big_key, b"small")
    await db.kv.put(b"big", big_value)
    assert await db.kv.get(big_key) == b"small"
    assert await db.kv.get(b"big") == big_value
    await db.flush()
    assert await db.kv.get(big_key) == b"small"
    assert await db.kv.get(b"big") == big_value


async def test_bytes_subclasses_are_stored_as_plain_bytes(db: quanta.Database) -> None:
    class Tagged(bytes):
        pass

    await db.kv.put(Tagged(b"k"), Tagged(b"v"))
    value = await db.kv.get(b"k")
    assert value == b"v" and type(value) is bytes
    [(key, _)] = await collect(db.kv.scan())
    assert type(key) is bytes


async def test_get_many_keeps_order_duplicates_and_missing_keys(db: quanta.Database) -> None:
    await db.kv.put_many([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    await db.kv.delete(b"b")
    assert await db.kv.get_many([b"c", b"zz", b"a", b"b", b"c"]) == [b"3", None, b"1", None, b"3"]
    assert await db.kv.get_many([]) == []
    assert await db.kv.get_many(iter([b"a"])) == [b"1"]  # any iterable


async def test_reads_see_data_in_every_layer(db_factory: OpenFn) -> None:
    """Memtable, level 0 and deeper levels all answer; the newest version wins, and a
    tombstone in a newer layer hides an older value below it."""
    db = await db_factory()
    await db.kv.put_many([(b"deep:%03d" % i, b"old") for i in range(50)])
    await db.compact()
    await db.kv.put_many([(b"deep:%03d" % i, b"l0") for i in range(0, 50, 5)])
    await db.kv.delete(b"deep:001")
    await db.flush()
    await db.kv.put(b"deep:002", b"mem")
    await db.kv.delete(b"deep:005")
    mem, l0, deeper = await level_files(db)
    assert mem > 0 and l0 > 0 and deeper > 0
    got = await db.kv.get_many([b"deep:%03d" % i for i in range(50)])
    for i, value in enumerate(got):
        want = None if i in (1, 5) else b"mem" if i == 2 else b"l0" if i % 5 == 0 else b"old"
        assert value == want, i
        assert await db.kv.get(b"deep:%03d" % i) == want


async def test_put_many_is_one_atomic_commit(db: quanta.Database) -> None:
    before = (await db.stats())["commits"]
    await db.kv.put_many([(b"k%d" % i, b"v%d" % i) for i in range(100)])
    assert (await db.stats())["commits"] == before + 1
    assert len(await collect(db.kv.scan())) == 100


async def test_put_many_accepts_lists_generators_and_later_duplicates_win(db: quanta.Database) -> None:
    await db.kv.put_many((b"g%d" % i, b"x") for i in range(3))
    await db.kv.put_many([[b"l", b"1"], [b"l", b"2"]])
    await db.kv.put_many([])  # nothing to do
    assert await db.kv.get_many([b"g0", b"g2", b"l"]) == [b"x", b"x", b"2"]


# =============================================================================== batches


async def test_batch_applies_puts_and_deletes_in_order_later_ops_win(db: quanta.Database) -> None:
    await db.kv.put_many([(b"a", b"old"), (b"b", b"old"), (b"c", b"old")])
    batch = db.kv.batch()
    batch.put(b"a", b"1").delete(b"a").put(b"a", b"2")  # put, delete, put: the last wins
    batch.delete(b"b").put(b"b", b"back")  # delete then put: the put wins
    batch.put(b"c", b"new").delete(b"c")  # put then delete: deleted
    batch.put(b"d", b"new")
    assert len(batch) == 8
    assert await db.kv.get(b"d") is None  # nothing is visible before commit
    await batch.commit()
    assert await collect(db.kv.scan()) == [(b"a", b"2"), (b"b", b"back"), (b"d", b"new")]


async def test_committing_a_batch_twice_or_adding_after_commit_is_refused(db: quanta.Database) -> None:
    batch = db.kv.batch().put(b"k", b"v")
    await batch.commit()
    with pytest.raises(quanta.InvalidArgumentError, match="already committed"):
        await batch.commit()
    with pytest.raises(quanta.InvalidArgumentError):
        batch.put(b"k2", b"v")
    with pytest.raises(quanta.InvalidArgumentError):
        batch.delete(b"k")
    assert await collect(db.kv.scan()) == [(b"k", b"v")]


async def test_an_empty_batch_commits_as_a_no_op(db: quanta.Database) -> None:
    before = (await db.stats())["commits"]
    await db.kv.batch().commit()
    assert (await db.stats())["commits"] == before


async def test_batch_checks_each_operation_when_it_is_added(db: quanta.Database) -> None:
    batch = db.kv.batch().put(b"good", b"1")
    with pytest.raises(quanta.InvalidTypeError):
        batch.put("str", b"v")  # type: ignore[arg-type]
    with pytest.raises(quanta.InvalidTypeError):
        batch.put(b"k", 5)  # type: ignore[arg-type]
    with pytest.raises(quanta.InvalidArgumentError):
        batch.delete(b"")
    assert len(batch) == 1  # the rejected operations were not added
    await batch.commit()
    assert await collect(db.kv.scan()) == [(b"good", b"1")]


async def test_a_put_rejected_for_the_batch_limit_leaves_the_batch_usable(db: quanta.Database) -> None:
    big = b"x" * quanta.MAX_VALUE_BYTES  # one allocation, referenced many times
    fits = quanta.MAX_BATCH_BYTES // (len(big) + 8) - 1
    batch = db.kv.batch()
    for i in range(fits):
        batch.put(b"big%04d" % i, big)
    with pytest.raises(quanta.LimitExceededError):
        for i in range(fits, fits + 3):
            batch.put(b"big%04d" % i, big)
    n = len(batch)
    batch.put(b"small", b"v")  # well within the limit: must be accepted
    assert len(batch) == n + 1


# =============================================================================== scans

KEYS = [
    b"a",
    b"a\x00",
    b"ab",
    b"abc",
    b"abd",
    b"b",
    b"ba",
    b"c",
    b"\xfe",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
]


@pytest.fixture
async def abc(db: quanta.Database) -> quanta.Database:
    await db.kv.put_many([(k, b"v:" + k) for k in KEYS])
    return db


async def test_scan_returns_everything_in_key_order(abc: quanta.Database) -> None:
    assert [k for k, _ in await collect(abc.kv.scan())] == sorted(KEYS)
    assert await collect(abc.kv.scan()) == [(k, b"v:" + k) for k in sorted(KEYS)]


RANGES: list[tuple[bytes | None, bytes | None, list[bytes]]] = [
    (b"ab", b"b", [b"ab", b"abc", b"abd"]),  # start inclusive, stop exclusive
    (b"aa", b"abd", [b"ab", b"abc"]),  # bounds need not be keys
    (None, b"ab", [b"a", b"a\x00"]),
    (b"\xfe", None, [b"\xfe", b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xff"]),
    (b"b", b"b", []),  # empty range
    (b"c", b"a", []),  # inverted range: empty, not an error
    (b"zz", None, [b"\xfe", b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xff"]),
    (b"\xff\xff\xff", None, []),
]

PREFIXES: list[tuple[bytes, list[bytes]]] = [
    (b"a", [b"a", b"a\x00", b"ab", b"abc", b"abd"]),
    (b"ab", [b"ab", b"abc", b"abd"]),
    (b"abc", [b"abc"]),
    (b"abcd", []),
    (b"\xfe", [b"\xfe", b"\xfe\xff"]),  # the prefix end is b"\xff"
    (b"\xff", [b"\xff", b"\xff\x00", b"\xff\xff"]),  # no prefix end: to the end of the keyspace
    (b"\xff\xff", [b"\xff\xff"]),
    (b"\xff\xff\xff", []),
    (b"", sorted(KEYS)),  # the empty prefix matches everything
]


@pytest.mark.parametrize("where", ["memtable", "table"])
async def test_scan_start_is_inclusive_and_stop_exclusive(abc: quanta.Database, where: str) -> None:
    if where == "table":
        await abc.flush()
    for start, stop, want in RANGES:
        assert [k for k, _ in await collect(abc.kv.scan(start, stop))] == want, (start, stop)
        assert [k for k, _ in await collect(abc.kv.scan(start=start, stop=stop, reverse=True))] == want[::-1]


@pytest.mark.parametrize("where", ["memtable", "table"])
async def test_scan_prefix_including_0xff_edges(abc: quanta.Database, where: str) -> None:
    if where == "table":
        await abc.flush()
    for prefix, want in PREFIXES:
        assert [k for k, _ in await collect(abc.kv.scan(prefix=prefix))] == want, prefix
        assert [k for k, _ in await collect(abc.kv.scan(prefix=prefix, reverse=True))] == want[::-1], prefix


async def test_scan_prefix_combines_with_start_and_stop(abc: quanta.Database) -> None:
    assert [k for k, _ in await collect(abc.kv.scan(b"abc", prefix=b"a"))] == [b"abc", b"abd"]
    assert [k for k, _ in await collect(abc.kv.scan(None, b"abd", prefix=b"ab"))] == [b"ab", b"abc"]
    assert [k for k, _ in await collect(abc.kv.scan(b"0", b"z", prefix=b"\xff"))] == []
    assert [k for k, _ in await collect(abc.kv.scan(b"\xff\x00", None, prefix=b"\xff"))] == [b"\xff\x00", b"\xff\xff"]


async def test_scan_limit_counts_from_the_scan_direction(abc: quanta.Database) -> None:
    ordered = sorted(KEYS)
    assert [k for k, _ in await collect(abc.kv.scan(limit=3))] == ordered[:3]
    assert [k for k, _ in await collect(abc.kv.scan(limit=3, reverse=True))] == ordered[::-1][:3]
    assert await collect(abc.kv.scan(limit=0)) == []
    assert len(await collect(abc.kv.scan(limit=1000))) == len(KEYS)
    assert [k for k, _ in await collect(abc.kv.scan(prefix=b"a", limit=2, reverse=True))] == [b"abd", b"abc"]


async def test_scan_of_an_empty_database_is_empty(db: quanta.Database) -> None:
    assert await collect(db.kv.scan()) == []
    assert await collect(db.kv.scan(reverse=True, limit=5)) == []


async def test_scan_hides_deleted_keys(abc: quanta.Database) -> None:
    await abc.kv.delete(b"abc")
    await abc.kv.delete(b"\xff")
    keys = [k for k, _ in await collect(abc.kv.scan())]
    assert b"abc" not in keys and b"\xff" not in keys and len(keys) == len(KEYS) - 2


async def test_long_scans_cross_chunk_boundaries_without_loss_or_repeats(db: quanta.Database) -> None:
    model = {b"key:%06d" % i: b"%d" % i for i in range(10_000)}
    await db.kv.put_many(model.items())
    assert await collect(db.kv.scan()) == model_scan(model)
    assert await collect(db.kv.scan(reverse=True)) == model_scan(model, reverse=True)
    for limit in (63, 64, 65, 1024, 1025, 5000):
        assert await collect(db.kv.scan(limit=limit)) == model_scan(model, limit=limit)
        assert await collect(db.kv.scan(reverse=True, limit=limit)) == model_scan(model, reverse=True, limit=limit)


async def test_a_scan_takes_its_snapshot_when_iteration_starts(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    rows = db.kv.scan()
    await db.kv.put(b"b", b"2")  # before the first row is read: visible (docs/kv.md)
    first = await anext(rows)
    await db.kv.put(b"c", b"3")  # after: invisible
    assert [first, *[item async for item in rows]] == [(b"a", b"1"), (b"b", b"2")]


async def test_an_abandoned_scan_closed_with_aclosing_releases_its_snapshot(db: quanta.Database) -> None:
    await db.kv.put_many([(b"k%04d" % i, b"v") for i in range(500)])
    async with contextlib.aclosing(db.kv.scan()) as rows:
        async for _ in rows:
            assert (await db.stats())["open_snapshots"] == 1
            break
    assert (await db.stats())["open_snapshots"] == 0


async def test_a_long_scan_lets_other_tasks_run_between_chunks(db: quanta.Database) -> None:
    await db.kv.put_many([(b"k%06d" % i, b"v") for i in range(20_000)])  # 64, 256, 1024, 4096, ... chunks
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker is running
    before = ticks
    n = 0
    async for _ in db.kv.scan():
        n += 1  # no await here: only the scan itself can let the ticker run
    during = ticks - before
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert n == 20_000
    assert during >= 3, f"the event loop ran {during} times during a scan of {n} keys"


async def test_scans_across_memtable_level0_and_deeper_levels_are_exact(db_factory: OpenFn) -> None:
    """Three generations of writes: compacted to the deepest level, flushed to level 0, and
    still in the memtable; overwrites and deletes in each. Random scans match a dict."""
    rng = random.Random(7)
    db = await db_factory(block_size=256)
    model: dict[bytes, bytes] = {}

    async def generation(tag: bytes, count: int, delete_every: int) -> None:
        batch = db.kv.batch()
        for _ in range(count):
            key = b"%c%03d" % (rng.choice(b"abc\xff"), rng.randrange(400))
            if rng.randrange(delete_every) == 0:
                batch.delete(key)
                model.pop(key, None)
            else:
                value = tag + b":" + key
                batch.put(key, value)
                model[key] = value
        await batch.commit()

    await generation(b"deep", 800, 10)
    await db.compact()
    for tag in (b"l0-a", b"l0-b"):
        await generation(tag, 200, 4)
        await db.flush()
    await generation(b"mem", 150, 3)
    mem, l0, deeper = await level_files(db)
    assert mem > 0 and l0 == 2 and deeper > 0, (mem, l0, deeper)

    bounds = [None, b"a", b"a100", b"b", b"b2", b"c399", b"\xff", b"\xff2", b"\xff\xff"]
    for _ in range(150):
        start, stop = rng.choice(bounds), rng.choice(bounds)
        prefix = rng.choice([None, None, b"a", b"b1", b"\xff", b"c0"])
        reverse = rng.random() < 0.5
        limit = rng.choice([None, None, 0, 1, 7, 100])
        args: dict[str, Any] = {"prefix": prefix, "reverse": reverse, "limit": limit}
        assert await collect(db.kv.scan(start, stop, **args)) == model_scan(model, start, stop, **args), (
            start,
            stop,
            args,
        )
    assert await db.kv.get_many(sorted(model)) == [model[k] for k in sorted(model)]


def generation_state(gen: int, n: int) -> list[tuple[bytes, bytes]]:
    """Generation ``gen`` of the concurrent-scan keyspace: key i is deleted when
    (i + gen) % 3 == 0, else holds ``g<gen>``. Successive generations differ in every key."""
    value = b"g%d" % gen
    return [(b"c%05d" % i, value) for i in range(n) if (i + gen) % 3]


async def test_a_scan_sees_one_state_while_writes_flushes_and_compactions_run(db_factory: OpenFn) -> None:
    """Each generation rewrites every key in one batch (puts and deletes). A scan that
    interleaves with those commits and with flushes and compactions must return exactly one
    generation: no lost, repeated or mixed keys."""
    db = await db_factory(**SMALL)
    n = 600
    await db.kv.put_many(generation_state(0, n))
    await db.flush()  # on disk: the worker process is started before the race begins
    gen = 0
    stop = asyncio.Event()
    committed = asyncio.Event()

    async def writer() -> None:
        nonlocal gen
        while not stop.is_set():
            gen += 1
            batch = db.kv.batch()
            for i in range(n):
                key = b"c%05d" % i
                if (i + gen) % 3:
                    batch.put(key, b"g%d" % gen)
                else:
                    batch.delete(key)
            await batch.commit()
            committed.set()
            if gen % 3 == 0:
                await db.flush()
            if gen % 7 == 0:
                await db.compact()

    task = asyncio.create_task(writer())
    try:
        for round_ in range(12):
            reverse = round_ % 2 == 1
            got = []
            async for item in db.kv.scan(reverse=reverse):
                got.append(item)
                await asyncio.sleep(0)  # let the writer and the background work run mid-scan
                if len(got) == 100:  # and make sure at least one whole commit lands mid-scan
                    for _ in range(2):
                        committed.clear()
                        await committed.wait()
            g = int(got[0][1][1:])
            want = generation_state(g, n)
            assert got == (want[::-1] if reverse else want), f"scan {round_} mixed generations"
    finally:
        stop.set()
        await task
    assert gen > 24
    stats = await db.stats()
    assert stats["flushes"] > 0 and stats["compactions"] + stats["trivial_moves"] > 0


# =============================================================================== snapshots


async def test_a_snapshot_does_not_see_later_writes(db: quanta.Database) -> None:
    await db.kv.put_many([(b"a", b"1"), (b"b", b"1")])
    async with db.snapshot() as snap:
        await db.kv.put(b"a", b"2")
        await db.kv.delete(b"b")
        await db.kv.put(b"c", b"2")
        assert await snap.kv.get(b"a") == b"1"
        assert await snap.kv.get_many([b"a", b"b", b"c"]) == [b"1", b"1", None]
        assert await collect(snap.kv.scan()) == [(b"a", b"1"), (b"b", b"1")]
        assert await collect(snap.kv.scan(reverse=True, limit=1)) == [(b"b", b"1")]
    assert await collect(db.kv.scan()) == [(b"a", b"2"), (b"c", b"2")]


async def test_a_snapshot_survives_flushes_and_compactions(db_factory: OpenFn) -> None:
    db = await db_factory(**SMALL)
    old = {b"s%04d" % i: b"old%d" % i for i in range(300)}
    await db.kv.put_many(old.items())
    async with db.snapshot() as snap:
        for i in range(0, 300, 2):
            await db.kv.put(b"s%04d" % i, b"new")
        await db.kv.put_many([(b"s%04d" % i, b"x" * 40) for i in range(300, 500)])
        for i in range(1, 300, 4):
            await db.kv.delete(b"s%04d" % i)
        await db.compact()
        assert await collect(snap.kv.scan()) == model_scan(old)
        assert await snap.kv.get_many(sorted(old)) == [old[k] for k in sorted(old)]
        assert (await db.stats())["open_snapshots"] == 1
    assert (await db.stats())["open_snapshots"] == 0
    assert await db.kv.get(b"s0000") == b"new" and await db.kv.get(b"s0001") is None


async def test_snapshots_taken_at_different_times_each_see_their_own_state(db: quanta.Database) -> None:
    snaps = []
    for i in range(5):
        await db.kv.put(b"k", b"%d" % i)
        snaps.append(db.snapshot())
    await db.flush()
    for i, snap in enumerate(snaps):
        assert await snap.kv.get(b"k") == b"%d" % i
        snap.release()
    snaps[0].release()  # releasing twice is harmless


# =============================================================================== bad input writes nothing

BAD_KEYS: list[tuple[object, type[Exception]]] = [
    ("str", quanta.InvalidTypeError),
    (1, quanta.InvalidTypeError),
    (None, quanta.InvalidTypeError),
    (bytearray(b"k"), quanta.InvalidTypeError),
    (memoryview(b"k"), quanta.InvalidTypeError),
    (b"", quanta.InvalidArgumentError),
    (b"k" * (quanta.MAX_KEY_BYTES + 1), quanta.LimitExceededError),
]
BAD_VALUES: list[tuple[object, type[Exception]]] = [
    ("str", quanta.InvalidTypeError),
    (1, quanta.InvalidTypeError),
    (None, quanta.InvalidTypeError),
    (bytearray(b"v"), quanta.InvalidTypeError),
]


def ids(cases: list[tuple[object, type[Exception]]]) -> list[str]:
    return [f"{type(v).__name__}-{len(v) if isinstance(v, bytes) else v!r:.10}" for v, _ in cases]


async def assert_empty(db: quanta.Database) -> None:
    assert await collect(db.kv.scan()) == []
    assert (await db.stats())["commits"] == 0


@pytest.mark.parametrize(("key", "error"), BAD_KEYS, ids=ids(BAD_KEYS))
async def test_every_key_taking_method_rejects_a_bad_key(
    db: quanta.Database, key: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await db.kv.put(key, b"v")  # type: ignore[arg-type]
    with pytest.raises(error):
        await db.kv.delete(key)  # type: ignore[arg-type]
    with pytest.raises(error):
        await db.kv.get(key)  # type: ignore[arg-type]
    with pytest.raises(error):
        await db.kv.get_many([b"ok", key])  # type: ignore[list-item]
    with pytest.raises(error):
        await db.kv.put_many([(b"ok", b"v"), (key, b"v")])  # type: ignore[list-item]
    with pytest.raises(error):
        db.kv.batch().put(key, b"v")  # type: ignore[arg-type]
    with pytest.raises(error):
        db.kv.batch().delete(key)  # type: ignore[arg-type]
    async with db.snapshot() as snap:
        with pytest.raises(error):
            await snap.kv.get(key)  # type: ignore[arg-type]
    await assert_empty(db)


@pytest.mark.parametrize(("value", "error"), BAD_VALUES, ids=ids(BAD_VALUES))
async def test_every_value_taking_method_rejects_a_bad_value(
    db: quanta.Database, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await db.kv.put(b"k", value)  # type: ignore[arg-type]
    with pytest.raises(error):
        await db.kv.put_many([(b"ok", b"v"), (b"k", value)])  # type: ignore[list-item]
    with pytest.raises(error):
        db.kv.batch().put(b"k", value)  # type: ignore[arg-type]
    await assert_empty(db)


async def test_a_value_over_the_limit_is_rejected_everywhere(db: quanta.Database) -> None:
    huge = b"v" * (quanta.MAX_VALUE_BYTES + 1)
    with pytest.raises(quanta.LimitExceededError):
        await db.kv.put(b"k", huge)
    with pytest.raises(quanta.LimitExceededError):
        await db.kv.put_many([(b"a", b"1"), (b"k", huge), (b"z", b"1")])
    with pytest.raises(quanta.LimitExceededError):
        db.kv.batch().put(b"k", huge)
    await assert_empty(db)


async def test_put_many_over_the_batch_limit_writes_nothing(db: quanta.Database) -> None:
    big = b"x" * quanta.MAX_VALUE_BYTES  # referenced many times: one allocation
    items = [(b"big%03d" % i, big) for i in range(quanta.MAX_BATCH_BYTES // len(big) + 1)]
    with pytest.raises(quanta.LimitExceededError):
        await db.kv.put_many(items)
    await assert_empty(db)


@pytest.mark.parametrize(
    "bad_item",
    [("b", b"2"), (b"b", "2"), (b"b",), (b"b", b"2", b"3"), b"b2", None, {b"b": b"2"}, (b"", b"2")],
    ids=["str-key", "str-value", "1-tuple", "3-tuple", "bytes", "None", "dict", "empty-key"],
)
async def test_put_many_with_a_bad_item_in_the_middle_writes_nothing(db: quanta.Database, bad_item: object) -> None:
    items = [(b"a%03d" % i, b"1") for i in range(50)] + [bad_item] + [(b"z%03d" % i, b"1") for i in range(50)]
    with pytest.raises(quanta.InvalidArgumentError):
        await db.kv.put_many(items)  # type: ignore[arg-type]
    with pytest.raises(quanta.InvalidArgumentError):
        await db.kv.put_many(iter(items))  # type: ignore[arg-type]
    await assert_empty(db)


@pytest.mark.parametrize("arg", [None, 5, 1.5])
async def test_get_many_and_put_many_reject_a_non_iterable_with_invalid_type_error(
    db: quanta.Database, arg: object
) -> None:
    with pytest.raises(quanta.InvalidTypeError):
        await db.kv.get_many(arg)  # type: ignore[arg-type]
    with pytest.raises(quanta.InvalidTypeError):
        await db.kv.put_many(arg)  # type: ignore[arg-type]


async def test_get_many_and_put_many_reject_a_single_key(db: quanta.Database) -> None:
    with pytest.raises(quanta.InvalidTypeError):
        await db.kv.get_many(b"key")
    with pytest.raises(quanta.InvalidTypeError):
        await db.kv.put_many(b"key")  # type: ignore[arg-type]
    with pytest.raises(quanta.InvalidTypeError):
        await db.kv.get_many("key")  # type: ignore[arg-type]
    await assert_empty(db)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"start": "a"}, quanta.InvalidTypeError),
        ({"stop": 1}, quanta.InvalidTypeError),
        ({"prefix": "a"}, quanta.InvalidTypeError),
        ({"start": bytearray(b"a")}, quanta.InvalidTypeError),
        ({"reverse": 1}, quanta.InvalidTypeError),
        ({"reverse": None}, quanta.InvalidTypeError),
        ({"limit": 1.5}, quanta.InvalidTypeError),
        ({"limit": True}, quanta.InvalidTypeError),
        ({"limit": "3"}, quanta.InvalidTypeError),
        ({"limit": -1}, quanta.InvalidArgumentError),
    ],
)
async def test_scan_rejects_bad_arguments_when_called(
    db: quanta.Database, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        db.kv.scan(**kwargs)
    async with db.snapshot() as snap:
        with pytest.raises(error):
            snap.kv.scan(**kwargs)


async def test_error_classes_are_catchable_as_their_builtin_cousins(db: quanta.Database) -> None:
    with pytest.raises(TypeError):
        await db.kv.put("k", b"v")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await db.kv.put(b"", b"v")
    with pytest.raises(quanta.QuantaError):
        await db.kv.put(b"k" * (quanta.MAX_KEY_BYTES + 1), b"v")


# =============================================================================== options

BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"no_such_option": 1}, quanta.InvalidArgumentError),
    ({"durability": "fsync"}, quanta.InvalidArgumentError),
    ({"durability": None}, quanta.InvalidArgumentError),
    ({"memtable_bytes": 4095}, quanta.InvalidArgumentError),
    ({"memtable_bytes": "4k"}, quanta.InvalidTypeError),
    ({"memtable_bytes": 4096.0}, quanta.InvalidTypeError),
    ({"memtable_bytes": True}, quanta.InvalidTypeError),
    ({"block_size": 255}, quanta.InvalidArgumentError),
    ({"block_cache_bytes": -1}, quanta.InvalidArgumentError),
    ({"bloom_bits_per_key": -1}, quanta.InvalidArgumentError),
    ({"bloom_bits_per_key": 65}, quanta.InvalidArgumentError),
    ({"bloom_bits_per_key": ()}, quanta.InvalidTypeError),
    ({"bloom_bits_per_key": (10, 8.5)}, quanta.InvalidTypeError),
    ({"bloom_bits_per_key": "10"}, quanta.InvalidTypeError),
    ({"bloom_bits_per_key": True}, quanta.InvalidTypeError),
    ({"read_only": 1}, quanta.InvalidTypeError),
    ({"create_if_missing": "yes"}, quanta.InvalidTypeError),
    ({"error_if_exists": None}, quanta.InvalidTypeError),
    ({"wal_recovery": "lenient"}, quanta.InvalidArgumentError),
    ({"l0_compaction_trigger": 1}, quanta.InvalidArgumentError),
    ({"l0_compaction_trigger": 8, "l0_stop_writes_trigger": 4}, quanta.InvalidArgumentError),
    ({"l1_target_bytes": 100}, quanta.InvalidArgumentError),
    ({"target_file_bytes": 1.0}, quanta.InvalidTypeError),
    ({"compaction_executor": "thread"}, quanta.InvalidArgumentError),
    ({"read_only": True, "error_if_exists": True}, quanta.InvalidArgumentError),
]


@pytest.mark.parametrize(("options", "error"), BAD_OPTIONS, ids=[",".join(o) for o, _ in BAD_OPTIONS])
async def test_bad_options_are_rejected_before_the_disk_is_touched(
    tmp_path: Any, options: dict[str, Any], error: type[Exception]
) -> None:
    path = tmp_path / "db"
    with pytest.raises(error):
        await quanta.open(str(path), **options)
    assert not path.exists()


async def test_good_option_spellings_are_accepted(tmp_path: Any) -> None:
    for i, options in enumerate(
        [{"bloom_bits_per_key": 0}, {"bloom_bits_per_key": [10, 5]}, {"bloom_bits_per_key": (4,)}, {"durability": "os"}]
    ):
        async with quanta.open(str(tmp_path / f"db{i}"), fs=MemoryFileSystem(), **options) as db:
            await db.kv.put(b"k", b"v")
            assert await db.kv.get(b"k") == b"v"


async def test_an_fs_option_of_the_wrong_type_is_rejected(tmp_path: Any) -> None:
    with pytest.raises(quanta.InvalidTypeError):
        quanta.open(str(tmp_path / "db"), fs="/tmp")


async def test_the_process_executor_needs_real_files(tmp_path: Any) -> None:
    with pytest.raises(quanta.InvalidArgumentError, match="real files"):
        await quanta.open(str(tmp_path / "db"), fs=MemoryFileSystem(), compaction_executor="process")
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("path", [b"/tmp/db", None, 5])
def test_the_path_must_be_a_str_or_pathlike(path: object) -> None:
    with pytest.raises(quanta.InvalidTypeError):
        quanta.open(path)  # type: ignore[arg-type]


def test_the_path_must_not_be_empty() -> None:
    with pytest.raises(quanta.InvalidArgumentError):
        quanta.open("")


async def test_a_pathlike_path_works(tmp_path: Any) -> None:
    async with quanta.open(tmp_path / "db", fs=MemoryFileSystem()) as db:
        assert db.path == str(tmp_path / "db")  # tmp_path is absolute already


# =============================================================================== lifecycle


async def test_every_method_of_a_closed_database_raises_database_closed_error(db: quanta.Database) -> None:
    await db.kv.put_many([(b"k%03d" % i, b"v") for i in range(200)])
    snap = db.snapshot()
    batch = db.kv.batch().put(b"late", b"v")
    scan = db.kv.scan()
    first = await anext(scan)  # a scan in progress when the database closes
    await db.close()
    assert db.closed
    closed = quanta.DatabaseClosedError
    with pytest.raises(closed):
        await db.kv.get(b"k")
    with pytest.raises(closed):
        await db.kv.get_many([b"k"])
    with pytest.raises(closed):
        await db.kv.put(b"k", b"v")
    with pytest.raises(closed):
        await db.kv.put_many([(b"k", b"v")])
    with pytest.raises(closed):
        await db.kv.delete(b"k")
    with pytest.raises(closed):
        db.kv.scan()
    with pytest.raises(closed):
        db.kv.batch()
    with pytest.raises(closed):
        await batch.commit()
    with pytest.raises(quanta.InvalidArgumentError, match="already committed"):
        await batch.commit()  # single use, even when the commit failed
    with pytest.raises(closed):
        db.snapshot()
    with pytest.raises(closed):
        await snap.kv.get(b"k")
    with pytest.raises(closed):
        await snap.kv.get_many([b"k"])
    with pytest.raises(closed):
        snap.kv.scan()
    with pytest.raises(closed):
        await db.flush()
    with pytest.raises(closed):
        await db.compact()
    with pytest.raises(closed):
        await db.verify()
    with pytest.raises(closed):
        await db.stats()
    with pytest.raises(closed):
        async for _ in scan:
            pass
    assert first == (b"k000", b"v")
    snap.release()
    await db.close()  # idempotent
    assert "closed" in repr(db)


async def test_async_with_closes_the_database(db_factory: OpenFn, tmp_path: Any) -> None:
    fs = MemoryFileSystem()
    async with quanta.open(str(tmp_path / "ctx"), fs=fs) as db:
        await db.kv.put(b"k", b"v")
    assert db.closed
    async with quanta.open(str(tmp_path / "ctx"), fs=fs) as db:
        assert await db.kv.get(b"k") == b"v"


async def test_a_read_only_database_reads_but_refuses_writes(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put_many([(b"a", b"1"), (b"b", b"2")])
    await db.flush()
    await db.kv.put(b"c", b"3")
    await db.close()
    ro = await db_factory(read_only=True)
    assert await ro.kv.get_many([b"a", b"b", b"c"]) == [b"1", b"2", b"3"]
    assert await collect(ro.kv.scan()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    async with ro.snapshot() as snap:
        assert await snap.kv.get(b"c") == b"3"
    assert (await ro.verify()).entries == 3
    with pytest.raises(quanta.ReadOnlyError):
        await ro.kv.put(b"d", b"4")
    with pytest.raises(quanta.ReadOnlyError):
        await ro.kv.put_many([(b"d", b"4")])
    with pytest.raises(quanta.ReadOnlyError):
        await ro.kv.delete(b"a")
    with pytest.raises(quanta.ReadOnlyError):
        await ro.kv.batch().put(b"d", b"4").commit()
    with pytest.raises(quanta.ReadOnlyError):
        await ro.flush()
    with pytest.raises(quanta.ReadOnlyError):
        await ro.compact()
    await ro.close()
    db = await db_factory()
    assert await collect(db.kv.scan()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]


async def test_read_only_open_of_a_missing_database_fails_and_creates_nothing(tmp_path: Any) -> None:
    path = tmp_path / "missing"
    with pytest.raises(quanta.DatabaseNotFoundError):
        await quanta.open(str(path), read_only=True)
    assert not path.exists()


async def test_create_if_missing_false_on_a_missing_path(tmp_path: Any) -> None:
    path = tmp_path / "missing"
    with pytest.raises(quanta.DatabaseNotFoundError):
        await quanta.open(str(path), create_if_missing=False)
    assert not path.exists()


async def test_create_if_missing_false_on_an_empty_directory(tmp_path: Any) -> None:
    path = tmp_path / "empty"
    path.mkdir()
    with pytest.raises(quanta.DatabaseNotFoundError):
        db = await quanta.open(str(path), create_if_missing=False)
        await db.close()
    assert os.listdir(path) == []


async def test_create_if_missing_false_opens_an_existing_database(db_factory: OpenFn) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    await db.close()
    db = await db_factory(create_if_missing=False)
    assert await db.kv.get(b"k") == b"v"


async def test_error_if_exists(db_factory: OpenFn) -> None:
    db = await db_factory(error_if_exists=True)  # nothing there yet: fine
    await db.kv.put(b"k", b"v")
    await db.close()
    with pytest.raises(quanta.DatabaseExistsError):
        await db_factory(error_if_exists=True)
    db = await db_factory()  # the failed open released the directory and changed nothing
    assert await db.kv.get(b"k") == b"v"


async def test_a_path_that_is_a_file_is_not_a_database(tmp_path: Any) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"hello")
    with pytest.raises(quanta.NotADatabaseError):
        await quanta.open(str(path))
    assert path.read_bytes() == b"hello"
    fs = MemoryFileSystem()
    fs.mkdir(str(tmp_path))
    f = fs.create(str(path))
    f.write(b"hello")
    f.close()
    with pytest.raises(quanta.NotADatabaseError):
        await quanta.open(str(path), fs=fs)


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_directory_of_other_files_is_not_a_database(tmp_path: Any, read_only: bool) -> None:
    path = tmp_path / "photos"
    path.mkdir()
    (path / "cat.jpg").write_bytes(b"\xff\xd8\xff")
    opened = quanta.open(str(path), read_only=read_only)
    with pytest.raises((quanta.NotADatabaseError, quanta.DatabaseNotFoundError)):
        await opened
    with pytest.raises(quanta.NotADatabaseError):
        await quanta.open(str(path))
    assert (path / "cat.jpg").read_bytes() == b"\xff\xd8\xff"


async def test_a_refused_open_leaves_a_foreign_directory_untouched(tmp_path: Any) -> None:
    path = tmp_path / "photos"
    path.mkdir()
    (path / "cat.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(quanta.NotADatabaseError):
        await quanta.open(str(path))
    with pytest.raises(quanta.NotADatabaseError):
        await quanta.open(str(path), read_only=True)
    assert os.listdir(path) == ["cat.jpg"]  # not even a LOCK file


# =============================================================================== persistence


@pytest.mark.parametrize("durability", ["sync", "os"])
async def test_everything_survives_a_clean_close_and_reopen(db_factory: OpenFn, durability: str) -> None:
    rng = random.Random(durability)
    db = await db_factory(durability=durability, **SMALL)
    model: dict[bytes, bytes] = {}
    for i in range(400):
        key = b"p%03d" % rng.randrange(150)
        if rng.random() < 0.2:
            await db.kv.delete(key)
            model.pop(key, None)
        else:
            model[key] = b"v%d" % i
            await db.kv.put(key, model[key])
        if i % 97 == 0:
            await db.kv.put_many([(b"bulk%03d" % j, b"%d" % i) for j in range(30)])
            model.update({b"bulk%03d" % j: b"%d" % i for j in range(30)})
    await db.close()
    db = await db_factory(durability=durability)
    assert await collect(db.kv.scan()) == model_scan(model)
    assert (await db.verify()).tables >= 1
    await db.close()
    db = await db_factory(read_only=True)
    assert await collect(db.kv.scan(reverse=True)) == model_scan(model, reverse=True)


async def test_sequence_numbers_continue_after_reopen(db_factory: OpenFn) -> None:
    db = await db_factory()
    for i in range(5):
        await db.kv.put(b"k", b"%d" % i)
    seq = (await db.stats())["last_seq"]
    await db.close()
    db = await db_factory()
    assert (await db.stats())["last_seq"] == seq
    await db.kv.put(b"k", b"after")
    assert (await db.stats())["last_seq"] > seq
    assert await db.kv.get(b"k") == b"after"


# =============================================================================== stats

STATS_KEYS = {
    "path",
    "last_seq",
    "memtable_bytes",
    "memtable_entries",
    "immutable_memtables",
    "levels",
    "live_table_bytes",
    "table_files",
    "commits",
    "syncs",
    "flushes",
    "compactions",
    "trivial_moves",
    "write_stalls",
    "stall_seconds",
    "user_bytes_written",
    "bytes_written_wal",
    "bytes_written_tables",
    "bytes_written_flush",
    "bytes_written_compaction",
    "write_amplification",
    "block_cache",
    "open_snapshots",
    "recovered_wal_batches",
    "recovery_tail",
    "transactions_committed",
    "transaction_conflicts",
    "conflict_tracked_keys",
    "change_subscribers",
    "event_subscribers",
    "change_sets_published",
    "follower",
}


async def test_stats_report_the_documented_counters(db: quanta.Database) -> None:
    s = await db.stats()
    assert set(s) == STATS_KEYS
    assert s["path"] == db.path and s["last_seq"] == 0 and s["commits"] == 0 and s["table_files"] == 0
    assert [lv["level"] for lv in s["levels"]] == list(range(len(s["levels"])))
    assert s["recovery_tail"] == "clean"

    await db.kv.put(b"a", b"12345")
    await db.kv.put_many([(b"b", b"1"), (b"c", b"1")])
    s = await db.stats()
    assert (s["last_seq"], s["commits"], s["memtable_entries"]) == (2, 2, 3)
    assert s["user_bytes_written"] == len(b"a12345b1c1")
    assert s["bytes_written_wal"] > s["user_bytes_written"]
    assert s["syncs"] >= 1  # durability="sync" is the default

    await db.flush()
    s = await db.stats()
    assert s["flushes"] == 1 and s["memtable_entries"] == 0 and s["levels"][0]["files"] == 1
    assert s["table_files"] == 1 and s["live_table_bytes"] == s["levels"][0]["bytes"] > 0
    assert s["bytes_written_tables"] == s["bytes_written_flush"] + s["bytes_written_compaction"]
    assert s["write_amplification"] > 1.0
    await db.compact()
    s = await db.stats()
    assert s["levels"][0]["files"] == 0 and s["table_files"] >= 1


# =============================================================================== resource hygiene


async def test_an_unclosed_database_warns_when_garbage_collected(tmp_path: Any) -> None:
    db = await quanta.open(str(tmp_path / "db"), fs=MemoryFileSystem())
    engine = db._engine  # kept only to shut it down cleanly after the warning
    with pytest.warns(ResourceWarning, match="never closed"):
        del db
        gc.collect()
    await engine.close()


async def test_a_closed_database_does_not_warn(tmp_path: Any) -> None:
    db = await quanta.open(str(tmp_path / "db"), fs=MemoryFileSystem())
    await db.kv.put(b"k", b"v")
    await db.close()
    del db
    gc.collect()  # filterwarnings=error turns any ResourceWarning here into a failure
