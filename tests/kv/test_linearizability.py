"""Concurrent readers and writers are linearizable: checked against a dict model.

The property (Herlihy & Wing): however the tasks interleave, every operation appears to take
effect atomically at one instant between its invocation and its response, and the results
everyone observed are those of a sequential dict replaying that order. For QuantaDB that one
sentence covers read-your-writes, no stale reads after a completed write, atomic
``put_many``/``batch`` (never seen half-applied), scans and ``get_many`` of one state,
serializable transactions that write nothing when they conflict, all-or-nothing cancellation,
and a reopen that shows the state of some linearization.

The checker is ``tests/support/linearizability.py`` (Wing & Gong's search with Lowe's memoization, as
in Knossos and Porcupine). The first half of this module tests the checker itself on
hand-written histories -- a checker that accepts everything would make the second half
vacuous. Timelines in the docstrings read left to right; ``|--op--|`` spans invocation to
response, ``|--op-->`` never responded.

The second half records real histories: ``WORKERS`` asyncio tasks issue random operations on
a handful of keys against one database (``memtable_bytes=4096`` and ``l0_compaction_trigger=2``
so flushes and compactions run throughout, plus a maintenance task calling ``flush()`` and
``compact()``), with ``asyncio.sleep(0)`` at random points and some operations cancelled after
a random number of event-loop turns. One logical clock, ticked right before an operation starts
and right after it returns, gives the real-time order (asyncio runs one task at a time, so the
ticks are a total order of events). A cancelled write (or transaction cancelled while
committing) has an unknown outcome: it may have happened, atomically, or not; it is settled by
the response of the first write invoked after the cancellation, which was appended after it
and cannot be visible without it (batches are totally ordered and a snapshot holds every batch
up to its sequence number). Each history ends with ``close()``, a reopen and a full scan, which
must show the final state of some linearization; the next history continues on the reopened
database. Every configuration runs with ``durability="sync"`` (a commit becomes visible only
after its group fsync, so writes really overlap) and ``"os"``, on the in-memory file layer and
on disk.

A bug these histories found has its own deterministic regression test
(``test_a_transaction_begun_during_a_group_fsync_sees_the_commit_in_flight``).

Seeded (``QUANTA_SEED`` picks another set; the seed is in every failure message), but the
interleaving also depends on thread timing (fsyncs and compaction run off the loop), so a
failure also saves the whole history next to the test's database. ``QUANTA_LONG=1`` runs many
more and longer histories.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_crash import LONG, slow_when_long, write_summary
from linearizability import (
    UNKNOWN,
    Batch,
    Delete,
    Get,
    GetMany,
    Op,
    Put,
    PutMany,
    Scan,
    Txn,
    Verdict,
    check,
    format_history,
)

import quanta

OpenFn = Callable[..., Awaitable[quanta.Database]]


# ====================================================================== the checker itself


def test_a_sequential_history_is_linearizable_and_the_witness_is_its_order() -> None:
    """One operation after another, each seeing everything before it:

    p1: |--put(a,1)--|               |--put_many(a=2,b=2)--|                    |--delete(a)--|
    p2:               |--get(a)->1--|                       |--get_many->[2,2,None]--|         |--scan->[b=2]--|"""
    history = [
        Op(1, 2, Put(b"a", b"1")),
        Op(3, 4, Get(b"a"), b"1"),
        Op(5, 6, PutMany(((b"a", b"2"), (b"b", b"2")))),
        Op(7, 8, GetMany((b"a", b"b", b"c")), (b"2", b"2", None)),
        Op(9, 10, Delete(b"a")),
        Op(11, 12, Scan(), ((b"b", b"2"),)),
    ]
    verdict = check(history)
    assert verdict.ok, verdict.explain()
    assert list(verdict.linearization) == history


def test_the_initial_state_is_where_the_history_starts() -> None:
    assert check([Op(1, 2, Get(b"a"), b"0")], {b"a": b"0"}).ok
    assert not check([Op(1, 2, Get(b"a"), b"0")]).ok


def test_a_stale_read_after_a_completed_write_fails() -> None:
    """p1: |--put(a,1)--| |--put(a,2)--|
    p2:                                 |--get(a) -> 1--|"""
    history = [Op(1, 2, Put(b"a", b"1")), Op(3, 4, Put(b"a", b"2")), Op(5, 6, Get(b"a"), b"1")]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.cut == 6, "the shortest failing prefix ends with the stale read's response"
    assert "get('a') -> '1'" in verdict.explain()


def test_a_read_of_a_value_never_written_fails() -> None:
    history = [Op(1, 4, Put(b"a", b"1")), Op(2, 3, Get(b"a"), b"7")]
    assert not check(history).ok
    assert not check([Op(1, 2, Scan(prefix=b"a"), ((b"a", b"1"),))]).ok  # nothing was ever written


def test_read_your_writes_violations_fail() -> None:
    """p1: |--put(a,1)--| |--get(a) -> None--|  (the process's own write, already acknowledged)

    and inside one transaction: put(a, 1) then get(a) must see 1."""
    assert not check([Op(1, 2, Put(b"a", b"1"), process=1), Op(3, 4, Get(b"a"), None, process=1)]).ok
    own = Txn((Put(b"a", b"1"), Get(b"a")))
    assert check([Op(1, 2, own, (None, b"1"))]).ok
    assert not check([Op(1, 2, own, (None, None))]).ok


def test_a_torn_multi_key_write_seen_by_one_read_fails() -> None:
    """p1: |--------put_many(a=1, b=1)--------|      (or a batch: a=1, delete b)
    p2:      |--scan -> [a=1] (no b)--|

    The read overlaps the write, so it may see all of it or none of it, never half."""
    both = PutMany(((b"a", b"1"), (b"b", b"1")))
    assert check([Op(1, 4, both), Op(2, 3, Scan(), ())]).ok
    assert check([Op(1, 4, both), Op(2, 3, Scan(), ((b"a", b"1"), (b"b", b"1")))]).ok
    assert not check([Op(1, 4, both), Op(2, 3, Scan(), ((b"a", b"1"),))]).ok
    assert not check([Op(1, 4, both), Op(2, 3, GetMany((b"b", b"a")), (None, b"1"))]).ok

    mixed = Batch(((b"a", b"1"), (b"b", None)))
    initial = {b"b": b"0"}
    assert check([Op(1, 4, mixed), Op(2, 3, Scan(), ((b"a", b"1"),))], initial).ok
    assert not check([Op(1, 4, mixed), Op(2, 3, Scan(), ((b"a", b"1"), (b"b", b"0")))], initial).ok
    assert not check([Op(1, 4, mixed), Op(2, 3, Scan(), ())], initial).ok


@pytest.mark.parametrize(("seen", "ok"), [(b"1", True), (b"2", True), (b"3", False), (None, False)])
def test_overlapping_writes_may_be_ordered_either_way(seen: bytes | None, ok: bool) -> None:
    """p1: |--put(a,1)------|
    p2:    |--put(a,2)------|
    p3:                        |--get(a) -> seen--|"""
    history = [Op(1, 3, Put(b"a", b"1")), Op(2, 4, Put(b"a", b"2")), Op(5, 6, Get(b"a"), seen)]
    assert check(history).ok is ok


def test_reads_overlapping_a_write_may_see_it_but_never_unsee_it() -> None:
    """p1: |------------put(a,1)------------|
    p2:      |--get(a)->?--| |--get(a)->?--|

    old then new, old then old, new then new are fine; new then old is not."""
    for first, second, ok in [(None, b"1", True), (None, None, True), (b"1", b"1", True), (b"1", None, False)]:
        history = [Op(1, 6, Put(b"a", b"1")), Op(2, 3, Get(b"a"), first), Op(4, 5, Get(b"a"), second)]
        assert check(history).ok is ok, (first, second)


def test_scans_follow_the_documented_bounds() -> None:
    """The model's scan is written from docs/kv.md: start <= key < stop, key.startswith(prefix),
    descending with reverse, then at most limit pairs."""
    state = {k: k.upper() for k in (b"a", b"ab", b"abc", b"b", b"ba", b"c")}
    keys = [k for k, _ in Scan(b"ab", b"c", prefix=b"a").run(state)]
    assert keys == [b"ab", b"abc"]
    assert [k for k, _ in Scan(prefix=b"b", reverse=True).run(state)] == [b"ba", b"b"]
    assert [k for k, _ in Scan(stop=b"b", reverse=True, limit=2).run(state)] == [b"abc", b"ab"]
    assert Scan(b"c", b"a").run(state) == ()


def test_a_write_with_an_unknown_outcome_happens_once_or_never() -> None:
    """p1: |--put(a,1)-->  (cancelled: no response)
    p2:       |--get(a)--| |--get(a)--|

    Either order of "not yet" and "done" is allowed, once: it cannot be undone. A pending
    put_many is atomic too."""
    cancelled = Op(1, None, Put(b"a", b"1"), UNKNOWN, pending=True)
    for first, second, ok in [(None, None, True), (None, b"1", True), (b"1", b"1", True), (b"1", None, False)]:
        assert check([cancelled, Op(2, 3, Get(b"a"), first), Op(4, 5, Get(b"a"), second)]).ok is ok

    both = PutMany(((b"a", b"1"), (b"b", b"1")))
    assert not check([Op(1, None, both, UNKNOWN, pending=True), Op(2, 3, Scan(), ((b"a", b"1"),))]).ok


def test_a_write_with_an_unknown_outcome_is_settled_by_its_deadline() -> None:
    """p1: |--put(a,1)-- ? --|  (cancelled; settled by t=4, e.g. by close())
    p2:                          |--get(a)->None--| |--get(a)->1--|

    After the deadline the write has happened or never will: it cannot appear later. (Before
    the deadline it may: a read that ends before t=4 may miss it.)"""
    late = [Op(5, 6, Get(b"a"), None), Op(7, 8, Get(b"a"), b"1")]
    assert check([Op(1, None, Put(b"a", b"1"), UNKNOWN, pending=True), *late]).ok
    assert not check([Op(1, 4, Put(b"a", b"1"), UNKNOWN, pending=True), *late]).ok
    assert check([Op(1, 4, Put(b"a", b"1"), UNKNOWN, pending=True), Op(5, 6, Get(b"a"), None)]).ok
    early = [Op(2, 3, Get(b"a"), None), Op(5, 6, Get(b"a"), b"1")]
    assert check([Op(1, 4, Put(b"a", b"1"), UNKNOWN, pending=True), *early]).ok


def test_committed_transactions_are_serializable_at_a_point_inside_them() -> None:
    """Write skew: two overlapping transactions each read x and y (both 0) and each write one
    of them. Snapshot isolation would commit both; a serializable database cannot have, as
    neither order explains the second one's reads."""
    t1 = Txn((Get(b"x"), Get(b"y"), Put(b"x", b"1")))
    t2 = Txn((Get(b"x"), Get(b"y"), Put(b"y", b"1")))
    reads = (b"0", b"0", None)
    initial = {b"x": b"0", b"y": b"0"}
    assert not check([Op(1, 3, t1, reads), Op(2, 4, t2, reads)], initial).ok
    # One of them conflicting instead is fine, and so is the second seeing the first's write.
    aborted = Txn(t2.steps, committed=False)
    assert check([Op(1, 3, t1, reads), Op(2, 4, aborted, reads)], initial).ok
    assert check([Op(1, 3, t1, reads), Op(2, 4, t2, (b"1", b"0", None))], initial).ok
    # A transaction that finished before the other began cannot be serialized after it.
    assert not check([Op(1, 2, t1, reads), Op(3, 4, t2, reads)], initial).ok


def test_a_conflicted_transaction_writes_nothing_and_read_one_state() -> None:
    """p1: |--txn: get(a)->None, put(a,9) -> ConflictError--|
    p2:                                                       |--get(a) -> 9--|"""
    aborted = Txn((Get(b"a"), Put(b"a", b"9")), committed=False)
    assert not check([Op(1, 2, aborted, (None, None)), Op(3, 4, Get(b"a"), b"9")]).ok
    assert check([Op(1, 2, aborted, (None, None)), Op(3, 4, Get(b"a"), None)]).ok
    # Its reads still come from one snapshot: half of an earlier put_many is impossible.
    torn = Txn((Get(b"a"), Get(b"b")), committed=False)
    both = Op(1, 2, PutMany(((b"a", b"1"), (b"b", b"1"))))
    assert not check([both, Op(3, 4, torn, (b"1", None))]).ok


def test_the_diagnosis_is_the_shortest_failing_prefix_and_a_minimal_contradiction() -> None:
    """Forty good operations, a stale read at t=81..82, forty more: the report stops at the
    stale read and keeps only what contradicts it."""
    rng = random.Random(7)
    history, t = [], 0
    for i in range(40):
        history.append(Op(t + 1, t + 2, Put(b"k%d" % rng.randrange(3), b"%d" % i)))
        t += 2
    history.append(Op(t + 1, t + 2, Put(b"a", b"new")))
    history.append(Op(t + 3, t + 4, Get(b"a"), None))  # stale: the put above had responded
    t += 4
    for i in range(40):
        key = b"k%d" % rng.randrange(3)
        history.append(Op(t + 1, t + 2, Put(key, b"late%d" % i)))
        history.append(Op(t + 3, t + 4, Get(key), b"late%d" % i))
        t += 4
    verdict = check(history)
    assert not verdict.ok
    assert verdict.cut == 84
    assert len(verdict.prefix) == 42
    assert [str(op.action) for op in verdict.minimal if not op.action.writes] == ["get('a')"]
    assert "put('a', 'new')" in verdict.explain()


def test_memoization_keeps_the_search_small() -> None:
    """Fourteen concurrent puts of distinct keys, then a scan missing one of them: without
    memoization the search would try 14! orders (~10^11) before giving up; with it, each of
    the 2^14 sets of linearized puts is one node (they all lead to different states)."""
    n = 14
    history = [Op(i + 1, 100 + i, Put(b"k%02d" % i, b"v")) for i in range(n)]
    history.append(Op(200, 201, Scan(), tuple((b"k%02d" % i, b"v") for i in range(n - 1))))
    started = time.perf_counter()
    verdict = check(history, diagnose=False)
    assert not verdict.ok
    assert verdict.nodes <= 2**n
    assert time.perf_counter() - started < 10


def test_operations_must_respond_after_they_start() -> None:
    with pytest.raises(ValueError, match="must be pending"):
        Op(1, None, Put(b"a", b"1"))
    with pytest.raises(ValueError, match="not after its invocation"):
        Op(3, 3, Get(b"a"))
    assert "(outcome unknown)" in format_history([Op(1, None, Put(b"a", b"1"), UNKNOWN, pending=True)])


# ====================================================================== real histories

WORKERS = 6
OPS_PER_WORKER = 120 if LONG else 40
HISTORIES = 12 if LONG else 3  # per configuration; each ends with close, reopen and a full scan
SMALL = {
    "memtable_bytes": 4096,
    "l0_compaction_trigger": 2,
    "block_size": 256,
    "l1_target_bytes": 4096,
    "target_file_bytes": 4096,
}
#: Six narrow keys (two prefixes and a loner) that every kind of operation contends for, and
#: a wide family that only ``put_many`` writes, all at once: a scan over it needs several chunks
#: (64 keys first), so flushes and compactions can run between a scan's chunks.
KEYS = [b"a0", b"a1", b"a2", b"b0", b"b1", b"c"]
WIDE = [b"w%02d" % i for i in range(72)]
CANCEL_RATE = 0.1

TOTALS: Counter[str] = Counter()
CHECK_SECONDS: list[float] = []


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.perf_counter()
    yield
    t = TOTALS
    if t["histories"]:
        write_summary(
            request,
            [
                f"linearizability: {t['histories']} histories, {t['ops']} operations "
                f"({t['ops'] / t['histories']:.0f} per history; {t['pending']} with unknown outcome, "
                f"{t['conflicts']} transaction conflicts, {t['committed_txns']} committed transactions), "
                f"{t['flushes']} flushes, {t['compactions']} compactions, {t['nodes']} search nodes "
                f"(at most {t['most_nodes']} for one history), "
                f"{sum(CHECK_SECONDS):.1f} s checking, {time.perf_counter() - started:.1f} s in all"
            ],
        )


class Recorder:
    """The history of one session, on one logical clock."""

    def __init__(self) -> None:
        self.clock = 0
        self.ops: list[Op] = []
        self.cancelled: dict[int, int] = {}  # index in ops of a pending write -> when it was cancelled

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def add(self, op: Op) -> None:
        if op.pending:
            self.cancelled[len(self.ops)] = self.tick()
        self.ops.append(op)

    def settled(self, closed: int) -> list[Op]:
        """The history with a deadline for every cancelled write: the response of the first
        write invoked after the cancellation (it was appended after the cancelled one, if that
        was appended at all, and a batch is visible only with every batch before it: a
        snapshot reads "every batch up to seq"), or the end of ``close()``."""
        ops = self.ops
        acknowledged = [(op.call, op.ret) for op in ops if op.action.writes and not op.pending]
        out = list(ops)
        for i, cancelled_at in self.cancelled.items():
            deadline = min(
                (ret for call, ret in acknowledged if call > cancelled_at and ret is not None), default=closed
            )
            out[i] = dataclasses.replace(ops[i], ret=deadline)
        return out


class Workload:
    """Random operations by one task, each recorded with its invocation and response."""

    def __init__(self, db: quanta.Database, rec: Recorder, rng: random.Random, worker: int, values: Iterator[int]):
        self.db = db
        self.rec = rec
        self.rng = rng
        self.worker = worker
        self.values = values

    def value(self) -> bytes:
        """Every write writes a value nobody wrote before: a read then names its write."""
        return b"%d" % next(self.values)

    async def maybe_yield(self) -> None:
        if self.rng.random() < 0.5:
            await asyncio.sleep(0)

    def scan_action(self) -> Scan:
        rng = self.rng
        shape = rng.randrange(6)
        reverse = rng.random() < 0.3
        limit = rng.choice([None, None, None, 1, 3, 70])
        if shape == 0:
            return Scan(reverse=reverse, limit=limit)  # everything, wide keys included
        if shape == 1:
            return Scan(prefix=b"w", reverse=reverse, limit=limit)
        if shape == 2:
            return Scan(b"a1", b"b1", reverse=reverse, limit=limit)
        return Scan(stop=b"w", prefix=rng.choice([b"a", b"b", None]), reverse=reverse, limit=limit)

    async def run(self, ops: int) -> None:
        for _ in range(ops):
            await self.maybe_yield()
            await self.one()

    async def one(self) -> None:
        rng, kv = self.rng, self.db.kv
        kind = rng.choices(
            ["get", "get_many", "put", "delete", "put_many", "batch", "wide", "scan", "snapshot", "txn"],
            [14, 8, 16, 7, 8, 8, 2, 12, 5, 25],
        )[0]
        key = rng.choice(KEYS)
        if kind == "get":
            await self.record(Get(key), lambda: kv.get(key))
        elif kind == "get_many":
            keys = tuple(rng.sample(KEYS, rng.randint(2, 4)))
            await self.record(GetMany(keys), lambda: get_many(kv, keys))
        elif kind == "put":
            value = self.value()
            await self.record(Put(key, value), lambda: kv.put(key, value), write=True)
        elif kind == "delete":
            await self.record(Delete(key), lambda: kv.delete(key), write=True)
        elif kind in ("put_many", "wide"):
            if kind == "wide":
                v = self.value()
                pairs = tuple((k, v) for k in WIDE)
            else:
                pairs = tuple((k, self.value()) for k in rng.sample(KEYS, rng.randint(2, 4)))
            await self.record(PutMany(pairs), lambda: kv.put_many(list(pairs)), write=True)
        elif kind == "batch":
            touched = rng.choices(KEYS, k=rng.randint(2, 4))  # repeats: the last operation on a key wins
            ops = tuple((k, None if rng.random() < 0.4 else self.value()) for k in touched)
            await self.record(Batch(ops), lambda: self.commit_batch(ops), write=True)
        elif kind == "scan":
            action = self.scan_action()
            await self.record(action, lambda: collect(kv, action, rng))
        elif kind == "snapshot":
            await self.snapshot_read()
        else:
            await self.transaction()

    async def record(self, action: Any, run: Callable[[], Awaitable[Any]], *, write: bool = False) -> None:
        """Run one operation and append it to the history; some are cancelled after a random
        number of event-loop turns. A cancelled write is pending (it may still commit: the
        fsync and the apply run in callbacks nobody can cancel); a cancelled read tells
        nothing and is left out."""
        rec = self.rec
        if self.rng.random() >= CANCEL_RATE:
            call = rec.tick()
            result = await run()
            rec.add(Op(call, rec.tick(), action, result, process=self.worker))
            return
        call = rec.tick()
        task = asyncio.ensure_future(run())
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)
        task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            if write:
                rec.add(Op(call, None, action, UNKNOWN, pending=True, process=self.worker))
            return
        rec.add(Op(call, rec.tick(), action, result, process=self.worker))

    async def snapshot_read(self) -> None:
        """A read on a snapshot, some time after taking it (writes, flushes and compactions run
        meanwhile): it must show the state at the moment ``db.snapshot()`` was called, so its
        interval in the history is that call."""
        rng, rec = self.rng, self.rec
        action: GetMany | Scan = GetMany(tuple(rng.sample(KEYS, 3))) if rng.random() < 0.5 else self.scan_action()
        call = rec.tick()
        async with self.db.snapshot() as snap:
            ret = rec.tick()
            for _ in range(rng.randrange(6)):
                await asyncio.sleep(0)
            if rng.random() < 0.3:
                await asyncio.sleep(0.002)
            if isinstance(action, GetMany):
                result: Any = await get_many(snap.kv, action.keys)
            else:
                result = await collect(snap.kv, action, rng)
        rec.add(Op(call, ret, action, result, process=self.worker))

    async def commit_batch(self, ops: tuple[tuple[bytes, bytes | None], ...]) -> None:
        batch = self.db.kv.batch()
        for k, v in ops:
            if v is None:
                batch.delete(k)
            else:
                batch.put(k, v)
        await batch.commit()

    async def transaction(self) -> None:
        """A transaction of 1-4 random reads and writes, with other tasks running in between.
        Committed: one atomic operation. ConflictError: wrote nothing, but its reads (one
        snapshot) are still checked. Cancelled in its body: rolled back, left out. Cancelled
        while committing: pending, its reads checked if it took effect."""
        rng, rec = self.rng, self.rec
        steps: list[Any] = []
        for _ in range(rng.randint(1, 4)):
            r = rng.random()
            key = rng.choice(KEYS)
            if r < 0.35:
                steps.append(Get(key))
            elif r < 0.45:
                steps.append(GetMany(tuple(rng.sample(KEYS, 2))))
            elif r < 0.55:
                steps.append(Scan(stop=b"w", prefix=rng.choice([b"a", b"b", None]), reverse=rng.random() < 0.3))
            elif r < 0.88:
                steps.append(Put(key, self.value()))
            else:
                steps.append(Delete(key))
        results: list[Any] = []
        committing = False
        read_only = not any(s.writes for s in steps) and rng.random() < 0.5

        async def body() -> None:
            nonlocal committing
            async with self.db.transaction(read_only=read_only) as tx:
                for s in steps:
                    if isinstance(s, Get):
                        results.append(await tx.kv.get(s.key))
                    elif isinstance(s, GetMany):
                        results.append(tuple(await tx.kv.get_many(s.keys)))
                    elif isinstance(s, Scan):
                        results.append(await collect(tx.kv, s, rng))
                    elif isinstance(s, Put):
                        results.append(await tx.kv.put(s.key, s.value))
                    else:
                        results.append(await tx.kv.delete(s.key))
                    await self.maybe_yield()
                committing = True

        cancel = rng.random() < CANCEL_RATE
        call = rec.tick()
        task = asyncio.ensure_future(body())
        if cancel:
            for _ in range(rng.randrange(6)):
                await asyncio.sleep(0)
            task.cancel()
        try:
            await task
        except quanta.ConflictError:
            TOTALS["conflicts"] += 1
            action = Txn(tuple(steps), committed=False)
            rec.add(Op(call, rec.tick(), action, tuple(results), process=self.worker))
        except asyncio.CancelledError:
            if committing:
                action = Txn(tuple(steps))
                rec.add(Op(call, None, action, tuple(results), pending=True, process=self.worker))
        else:
            TOTALS["committed_txns"] += 1
            rec.add(Op(call, rec.tick(), Txn(tuple(steps)), tuple(results), process=self.worker))


async def get_many(kv: Any, keys: tuple[bytes, ...]) -> tuple[bytes | None, ...]:
    return tuple(await kv.get_many(keys))


async def collect(reader: Any, action: Scan, rng: random.Random) -> tuple[tuple[bytes, bytes], ...]:
    """Run ``action`` on ``reader`` (``db.kv`` or ``tx.kv``), letting other tasks run now and then."""
    rows = reader.scan(action.start, action.stop, prefix=action.prefix, reverse=action.reverse, limit=action.limit)
    out = []
    async with contextlib.aclosing(rows):
        async for row in rows:
            out.append(row)
            if rng.random() < 0.05:
                await asyncio.sleep(0)
    return tuple(out)


async def maintenance(db: quanta.Database, rng: random.Random, done: asyncio.Event) -> None:
    """Explicit flushes and compactions on top of the ones the tiny memtable causes."""
    while not done.is_set():
        await asyncio.sleep(rng.random() * 0.004)
        r = rng.random()
        if r < 0.3:
            await db.flush()
        elif r < 0.4:
            await db.compact()


async def run_history(
    db_factory: OpenFn, db: quanta.Database, options: dict[str, Any], rng: random.Random, values: Iterator[int]
) -> tuple[list[Op], quanta.Database]:
    """One session's history: concurrent workers, then close, reopen and a full scan (which
    settles every cancelled write: by the end of ``close()`` it committed or never will)."""
    rec = Recorder()
    done = asyncio.Event()
    chores = asyncio.ensure_future(maintenance(db, random.Random(rng.random()), done))
    workers = [Workload(db, rec, random.Random(rng.random()), w, values) for w in range(WORKERS)]
    try:
        await asyncio.gather(*(w.run(OPS_PER_WORKER) for w in workers))
    finally:
        done.set()
        await chores
    stats = await db.stats()
    TOTALS["flushes"] += stats["flushes"]
    TOTALS["compactions"] += stats["compactions"]
    rec.tick()
    await db.close()
    ops = rec.settled(rec.tick())
    db = await db_factory(**options)
    call = rec.tick()
    final = await collect(db.kv, Scan(), rng)
    ops.append(Op(call, rec.tick(), Scan(), final, process="reopen"))
    return ops, db


async def test_a_transaction_begun_during_a_group_fsync_sees_the_commit_in_flight(db_factory: OpenFn) -> None:
    """A commit appended but still waiting for its group fsync is not visible yet, so a
    transaction begun then reads around it; docs/transactions.md promises that such commits
    "count as written after it began", so the transaction must conflict on what they wrote.

    Regression (found by the random histories below): when no other transaction was open, the
    tracker dropped the in-flight batches it was handed (``ConflictTracker.begin`` replayed
    them before registering the transaction, and ``record`` ignores batches while none is
    registered), so this transaction committed after the writer:

        p1: |------------------put_many(k=new, a=1)-----------------|
        p2:      |--txn: get(k) -> old; delete(a) -- committed--|
        p1:                                                          |--get_many(k, a) -> [new, None]--|

    Before the put_many the transaction would have left a=1; after it, it would have read
    k=new: not serializable, not linearizable. Fixed, the transaction raises ConflictError and
    the history is linearizable (the failed transaction read the state before the put_many).
    Deterministic: nothing yields between the writer's append and the transaction's commit
    check, so the fsync cannot complete in between."""
    db = await db_factory(durability="sync")
    initial = {b"k": b"old", b"a": b"0"}
    await db.kv.put_many(list(initial.items()))
    rec = Recorder()
    write = PutMany(((b"k", b"new"), (b"a", b"1")))
    write_call = rec.tick()
    writer = asyncio.ensure_future(db.kv.put_many(list(write.pairs)))
    await asyncio.sleep(0)  # the writer appends its batch, then waits for the group fsync
    txn = Txn((Get(b"k"), Delete(b"a")))
    txn_call = rec.tick()
    try:
        async with db.transaction() as tx:
            seen = await tx.kv.get(b"k")
            await tx.kv.delete(b"a")
        txn = Txn(txn.steps, committed=True)
    except quanta.ConflictError:
        txn = Txn(txn.steps, committed=False)
    txn_ret = rec.tick()
    await writer
    write_ret = rec.tick()
    read_call = rec.tick()
    final = await db.kv.get_many([b"k", b"a"])
    history = [
        Op(write_call, write_ret, write, process=1),
        Op(txn_call, txn_ret, txn, (seen, None), process=2),
        Op(read_call, rec.tick(), GetMany((b"k", b"a")), tuple(final), process=1),
    ]
    verdict = check(history, initial)
    assert verdict.ok, verdict.explain()


@slow_when_long
@pytest.mark.parametrize("durability", ["sync", "os"])
async def test_concurrent_histories_are_linearizable(
    db_factory: OpenFn, backend: str, durability: str, tmp_path: Path
) -> None:
    """WORKERS tasks x OPS_PER_WORKER random operations per history, HISTORIES histories in a
    row on one database (closed and reopened in between), each checked from the state the
    previous one's final scan showed."""
    options = {**SMALL, "durability": durability}
    base_seed = int(os.environ.get("QUANTA_SEED", "0"))
    values = iter(range(1, 1 << 62))
    db = await db_factory(**options)
    state: dict[bytes, bytes] = {}
    for h in range(HISTORIES):
        seed = f"{base_seed}-{backend}-{durability}-{h}"
        ops, db = await run_history(db_factory, db, options, random.Random(seed), values)
        started = time.perf_counter()
        verdict: Verdict = check(ops, state)
        CHECK_SECONDS.append(time.perf_counter() - started)
        TOTALS["histories"] += 1
        TOTALS["ops"] += len(ops)
        TOTALS["pending"] += sum(op.pending for op in ops)
        TOTALS["nodes"] += verdict.nodes
        TOTALS["most_nodes"] = max(TOTALS["most_nodes"], verdict.nodes)
        if not verdict.ok:
            dump = tmp_path / f"history-{seed}.txt"
            dump.write_text(format_history(ops) + "\n")
            pytest.fail(
                f"seed {seed!r} (QUANTA_SEED={base_seed}), history {h} of {backend}/{durability}, "
                f"{len(ops)} operations from {state!r}; the whole history is in {dump}\n{verdict.explain()}"
            )
        state = dict(ops[-1].result)  # type: ignore[call-overload]
    await db.close()
