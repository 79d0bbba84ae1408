"""Model test: concurrent transactions are serializable in commit order.

Hypothesis generates a few transactions (each a list of gets, get_many, puts, deletes and scans
over the eight keys ``k0``..``k7``, ending in a commit or a rollback; some read-only) and some
plain ``db.kv`` writes, and a schedule that interleaves their steps. The test drives that
interleaving itself, one step at a time on one event loop, records what every read returned
and how every transaction ended, then checks the history against a serial model (a dict):

* every commit published exactly one ChangeSet (``db.changes()``), with sequence numbers
  1..N and no gap; a transaction's is ``origin="transaction"`` and holds exactly its writes,
  the others match the plain writes issued one to one. Aborted and rolled-back transactions
  wrote nothing (no ChangeSet, no sequence number) and the database ends in the state of the
  change sets applied in order;
* snapshot isolation: each transaction's reads equal the serial state at its snapshot
  (``tx.seq``) with its own earlier writes laid over it, committed or not;
* serializability: each committed transaction's reads equal the serial state just before its
  commit (with its own writes laid over) -- it could have run alone at that point;
* the conflict rule, both ways: a committed transaction had no commit between its snapshot
  and its own that wrote a key it point-read (not counting reads of its own writes) or wrote,
  or a key inside a range it scanned; a refused one had such a commit (``ConflictError.key``
  names one of its keys) or had expired (the tracker's memory bound).

Configurations: ``durability="os"`` (every step runs to completion), the same with a tracker
bound of 2 keys (open transactions expire often), and ``durability="sync"`` on a file layer whose WAL
fsyncs wait at a gate: commits stay in flight (appended, not yet visible) while later steps run
-- other transactions begin, read and commit -- until a ``("sync",)`` step opens the gate. That
keeps every interleaving deterministic (Hypothesis can shrink it) however fast the machine.
A fourth also leaves plain writes in flight (its pinned example, ``IN_FLIGHT_LOST_UPDATE``, is the
regression test of a lost update: a transaction begun while a plain write waited for its fsync
did not count that write as after its snapshot).

``QUANTA_LONG=1`` runs many more examples.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from helpers_crash import LONG, LONG_MARKS
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import quanta
from quanta._storage.vfs import MemoryFileSystem, Op

T = TypeVar("T")
pytestmark = LONG_MARKS

KEYS = [b"k%d" % i for i in range(8)]
KEY = st.sampled_from(KEYS)
BOUND = st.one_of(st.none(), KEY, st.just(b"k35"))  # b"k35" falls between k3 and k4
PREFIX = st.sampled_from([None, None, b"k", b"k2", b"j"])
LIMIT = st.one_of(st.none(), st.integers(0, 3))

TX_OP = st.one_of(
    st.tuples(st.just("get"), KEY),
    st.tuples(st.just("get"), KEY),
    st.tuples(st.just("get_many"), st.lists(KEY, min_size=1, max_size=3)),
    st.tuples(st.just("put"), KEY),
    st.tuples(st.just("put"), KEY),
    st.tuples(st.just("put"), KEY),
    st.tuples(st.just("delete"), KEY),
    st.tuples(st.just("scan"), BOUND, BOUND, PREFIX, st.booleans(), LIMIT),
    st.tuples(st.just("scan"), BOUND, BOUND, PREFIX, st.booleans(), LIMIT),
)
#: (read_only, ops, how it ends)
PROGRAM = st.tuples(
    st.sampled_from([False, False, False, False, True]),
    st.lists(TX_OP, min_size=1, max_size=8),
    st.sampled_from(["commit", "commit", "commit", "rollback"]),
)
PLAIN_OP = st.one_of(
    st.tuples(st.just("put"), KEY),
    st.tuples(st.just("delete"), KEY),
    st.tuples(st.just("put_many"), st.lists(KEY, min_size=1, max_size=3)),
    st.tuples(st.just("batch"), st.lists(st.tuples(KEY, st.booleans()), min_size=1, max_size=3)),
    st.tuples(st.just("sync")),  # with the fsync gate: make everything in flight durable and visible
)
PROGRAMS = st.lists(PROGRAM, min_size=2, max_size=4)
PLAIN = st.lists(PLAIN_OP, max_size=6)
#: Which actor steps next: an index into the actors that still have steps (modulo); once the
#: list runs out, round robin.
SCHEDULE = st.lists(st.integers(0, 7), max_size=40)
INITIAL = st.sets(KEY).map(sorted)

SETTINGS = settings(
    max_examples=1000 if LONG else 200,
    deadline=None,
    database=None,  # failures print a reproducible example; no .hypothesis/ left in the tree
    suppress_health_check=[HealthCheck.too_slow],
)
STEP_TIMEOUT = 10.0


@dataclass
class Read:
    op: tuple[Any, ...]
    own: dict[bytes, bytes | None]  # the transaction's own writes when it read
    got: Any


@dataclass
class TxRun:
    """One transaction of the example and everything it did."""

    index: int
    read_only: bool
    ops: list[tuple[Any, ...]]
    end: str
    tx: quanta.Transaction | None = None
    seq: int = -1
    reads: list[Read] = field(default_factory=list)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    read_keys: set[bytes] = field(default_factory=set)  # point reads not of its own writes
    ranges: list[tuple[bytes | None, bytes | None, bytes | None]] = field(default_factory=list)
    outcome: str = ""  # committed | empty | conflict | rolled back
    commit_seq: int | None = None
    conflict_key: bytes | None = None
    last_seq_at_conflict: int = 0
    expired: bool = False

    def steps(self) -> list[Any]:
        return ["begin", *self.ops, "end"]

    def touched_by(self, keys: list[bytes]) -> set[bytes]:
        """The keys of a batch that make this transaction's commit conflict."""
        hit = {k for k in keys if k in self.read_keys or k in self.writes}
        for start, stop, prefix in self.ranges:
            hit |= {k for k in keys if in_range(k, start, stop, prefix)}
        return hit


def in_range(key: bytes, start: bytes | None, stop: bytes | None, prefix: bytes | None) -> bool:
    return (
        (start is None or key >= start) and (stop is None or key < stop) and (prefix is None or key.startswith(prefix))
    )


def model_scan(model: dict[bytes, bytes], op: tuple[Any, ...]) -> list[tuple[bytes, bytes]]:
    _, start, stop, prefix, reverse, limit = op
    items = sorted((k, v) for k, v in model.items() if in_range(k, start, stop, prefix))
    if reverse:
        items.reverse()
    return items if limit is None else items[:limit]


def replay(read: Read, base: dict[bytes, bytes]) -> Any:
    """What ``read`` must return on ``base`` with the transaction's own writes laid over."""
    view = {k: v for k, v in {**base, **read.own}.items() if v is not None}
    kind = read.op[0]
    if kind == "get":
        return view.get(read.op[1])
    if kind == "get_many":
        return [view.get(k) for k in read.op[1]]
    return model_scan(view, read.op)


async def collect(it: AsyncIterator[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [kv async for kv in it]


def content(changes: dict[bytes, bytes | None]) -> tuple[tuple[bytes, bytes | None], ...]:
    return tuple(sorted(changes.items()))


class FsyncGate:
    """A MemoryFileSystem hook: while closed, an fsync made off the event-loop thread (the
    engine's group-commit fsyncs run in a worker thread) waits until it opens."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.opened.set()

    def __call__(self, op: Op) -> None:
        if op.kind == "sync" and threading.current_thread() is not threading.main_thread():
            self.opened.wait(STEP_TIMEOUT)


class Scenario:
    """Runs one example: ``programs`` and ``plain`` interleaved by ``schedule``.

    ``gated`` (with durability="sync"): fsyncs wait for a ``sync`` step, transaction commits
    are left in flight as tasks; ``plain_in_flight``: plain writes too (else a plain write
    step ends with its write durable and visible)."""

    def __init__(self, *, gated: bool, plain_in_flight: bool, max_keys: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.gated = gated
        self.plain_in_flight = plain_in_flight
        self.gate = FsyncGate()
        fs = MemoryFileSystem(fail_hook=self.gate)
        self.db = self.run(quanta.open("/db", fs=fs, durability="sync" if gated else "os"))
        self.db._transactions.tracker.max_keys = max_keys
        self.stream = self.db.changes(buffer=10_000)
        self.tasks: list[asyncio.Task[None]] = []
        self.plain_issued: Counter[tuple[str, tuple[tuple[bytes, bytes | None], ...]]] = Counter()
        self.values = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))

    def value(self, who: str) -> bytes:
        self.values += 1
        return b"%s.%d" % (who.encode(), self.values)  # every value written is unique

    async def settle(self) -> None:
        """Open the fsync gate until every commit appended so far is visible, then close it."""
        engine = self.db._engine
        self.gate.opened.set()
        while engine.visible_seq < engine.last_seq:
            await engine._synced.wait()  # set after each fsync group is applied
        if self.gated:
            self.gate.opened.clear()

    def close(self) -> None:
        self.gate.opened.set()
        try:
            if not self.db.closed:
                self.stream.close()
                self.run(self.db.close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    # -- transactions ----------------------------------------------------------------------

    async def tx_step(self, run: TxRun, step: Any) -> None:
        if step == "begin":
            run.tx = self.db.transaction(read_only=run.read_only)
            run.seq = run.tx.seq
            return
        tx = run.tx
        assert tx is not None
        if step == "end":
            if run.end == "rollback":
                await tx.rollback()
                run.outcome = "rolled back"
            elif self.gated:
                self.tasks.append(asyncio.create_task(self.commit(run)))
            else:
                await self.commit(run)
            return
        kind = step[0]
        if kind in ("put", "delete"):
            if run.read_only:
                with pytest.raises(quanta.ReadOnlyError):
                    await tx.kv.put(step[1], b"x") if kind == "put" else await tx.kv.delete(step[1])
            elif kind == "put":
                value = self.value(f"t{run.index}")
                await tx.kv.put(step[1], value)
                run.writes[step[1]] = value
            else:
                await tx.kv.delete(step[1])
                run.writes[step[1]] = None
            return
        own = dict(run.writes)
        if kind == "get":
            got: Any = await tx.kv.get(step[1])
            keys = [step[1]]
        elif kind == "get_many":
            got = await tx.kv.get_many(step[1])
            keys = list(step[1])
        else:
            _, start, stop, prefix, reverse, limit = step
            got = await collect(tx.kv.scan(start, stop, prefix=prefix, reverse=reverse, limit=limit))
            keys = []
            run.ranges.append((start, stop, prefix))
        run.read_keys.update(k for k in keys if k not in own)
        run.reads.append(Read(step, own, got))

    async def commit(self, run: TxRun) -> None:
        tx = run.tx
        assert tx is not None
        state = tx._state
        run.expired = state is not None and state.expired
        try:
            seq = await tx.commit()
        except quanta.ConflictError as exc:
            # Nothing ran since the check refused it (it raised under the write lock, before
            # the append, and no await came after): last_seq is what the check saw.
            run.last_seq_at_conflict = self.db._engine.last_seq
            run.outcome = "conflict"
            run.conflict_key = exc.key
            return
        run.commit_seq = seq
        run.outcome = "empty" if seq is None else "committed"

    # -- plain writes ------------------------------------------------------------------------

    async def plain_step(self, op: tuple[Any, ...]) -> None:
        kv = self.db.kv
        kind = op[0]
        if kind == "sync":
            await self.settle()
            return
        if kind == "put":
            value = self.value("p")
            self.plain_issued["kv", content({op[1]: value})] += 1
            write = kv.put(op[1], value)
        elif kind == "delete":
            self.plain_issued["kv", content({op[1]: None})] += 1
            write = kv.delete(op[1])
        elif kind == "put_many":
            items = [(k, self.value("p")) for k in op[1]]
            self.plain_issued["kv", content(dict(items))] += 1
            write = kv.put_many(items)
        else:
            batch = kv.batch()
            final: dict[bytes, bytes | None] = {}
            for key, is_put in op[1]:
                if is_put:
                    final[key] = self.value("p")
                    batch.put(key, final[key])
                else:
                    final[key] = None
                    batch.delete(key)
            self.plain_issued["batch", content(final)] += 1
            write = batch.commit()
        task = asyncio.ensure_future(write)
        self.tasks.append(task)
        if not self.plain_in_flight:  # the write (and all in flight before it) is durable and visible
            self.gate.opened.set()
            await task
            await self.settle()

    # -- the example -------------------------------------------------------------------------

    def play(self, initial: list[bytes], programs: list[Any], plain: list[Any], schedule: list[int]) -> list[TxRun]:
        if initial:  # the state every transaction starts from (one commit, before the schedule)
            items = [(k, b"init") for k in initial]
            self.plain_issued["kv", content(dict(items))] += 1
            self.run(self.db.kv.put_many(items))
        if self.gated:
            self.gate.opened.clear()
        runs = [TxRun(i, ro, list(ops), end) for i, (ro, ops, end) in enumerate(programs)]
        actors: list[tuple[TxRun | None, list[Any]]] = [(run, run.steps()) for run in runs]
        actors += [(None, [op]) for op in plain]
        turn = 0
        while actors:
            pick = (schedule[turn] if turn < len(schedule) else turn) % len(actors)
            turn += 1
            owner, steps = actors[pick]
            step = steps.pop(0)
            if not steps:
                actors.pop(pick)
            self.run(self.tx_step(owner, step) if owner is not None else self.plain_step(step))

        async def finish() -> None:
            self.gate.opened.set()
            await asyncio.gather(*self.tasks)

        self.run(finish())
        return runs

    def history(self) -> list[quanta.ChangeSet]:
        """Every change set published, in order (each commit's, exactly once)."""
        last = self.db._engine.last_seq
        stream = self.stream

        async def drain() -> list[quanta.ChangeSet]:
            return [await anext(stream) for _ in range(last)]

        change_sets = self.run(drain())
        assert [cs.seq for cs in change_sets] == list(range(1, last + 1))
        return change_sets


def check(scenario: Scenario, runs: list[TxRun]) -> None:
    db = scenario.db
    # Nothing stays registered or hooked once every transaction finished.
    assert db._engine.on_append is None
    assert db._transactions.tracker.tracked_keys == 0
    assert all(run.tx is not None and run.tx.finished for run in runs)
    assert db._engine.visible_seq == db._engine.last_seq

    history = scenario.history()
    by_seq = {cs.seq: cs for cs in history}
    committed = [run for run in runs if run.outcome == "committed"]
    assert {run.commit_seq for run in committed} == {cs.seq for cs in history if cs.origin == "transaction"}
    for run in committed:
        cs = by_seq[run.commit_seq]  # type: ignore[index]
        assert cs.origin == "transaction"
        assert {c.key: c.value for c in cs.changes} == run.writes
        assert run.tx is not None and run.tx.commit_seq == run.commit_seq
    plain_seen = Counter(
        (cs.origin, content({c.key: c.value for c in cs.changes})) for cs in history if cs.origin != "transaction"
    )
    assert plain_seen == scenario.plain_issued
    for run in runs:
        if run.outcome != "committed":
            assert run.tx is not None and run.tx.commit_seq is None
        if run.outcome == "empty":
            assert not run.writes
        if run.read_only:
            assert run.outcome in ("empty", "rolled back")

    # The serial model: the state after each commit, applied in sequence order.
    states: list[dict[bytes, bytes]] = [{}]
    for cs in history:
        state = dict(states[-1])
        for c in cs.changes:
            if c.value is None:
                state.pop(c.key, None)
            else:
                state[c.key] = c.value
        states.append(state)
    final = scenario.run(collect(db.kv.scan()))
    assert dict(final) == states[-1]

    for run in runs:
        event(f"outcome: {run.outcome}" + (" (expired)" if run.expired else ""))
        # Snapshot isolation: every transaction read its snapshot plus its own writes.
        for read in run.reads:
            assert read.got == replay(read, states[run.seq]), (run.index, read.op, "at snapshot", run.seq)
        if run.outcome == "committed":
            assert run.commit_seq is not None
            # Serializable: the same reads at the commit point return the same.
            for read in run.reads:
                assert read.got == replay(read, states[run.commit_seq - 1]), (run.index, read.op, "at commit")
            # No commit it should have lost to came in between.
            between = [cs for cs in history if run.seq < cs.seq < run.commit_seq]
            missed = {cs.seq: run.touched_by([c.key for c in cs.changes]) for cs in between}
            assert not any(missed.values()), (run.index, "committed over", missed)
        elif run.outcome == "conflict":
            after = [cs for cs in history if run.seq < cs.seq <= run.last_seq_at_conflict]
            hits = set().union(*(run.touched_by([c.key for c in cs.changes]) for cs in after))
            if run.expired:
                assert run.conflict_key is None or run.conflict_key in hits
            else:
                assert hits, (run.index, "refused without a conflicting commit")
                assert run.conflict_key in hits


def play_and_check(
    initial: list[bytes],
    programs: list[Any],
    plain: list[Any],
    schedule: list[int],
    *,
    gated: bool = False,
    plain_in_flight: bool = False,
    max_keys: int = 1_000_000,
) -> None:
    scenario = Scenario(gated=gated, plain_in_flight=plain_in_flight, max_keys=max_keys)
    try:
        runs = scenario.play(initial, programs, plain, schedule)
        check(scenario, runs)
    finally:
        scenario.close()


# A lost update: a plain write is appended (waiting for its fsync) when a transaction begins;
# the transaction reads k0 (the old value), writes it and commits. It must be refused.
IN_FLIGHT_LOST_UPDATE: dict[str, Any] = {
    "initial": [b"k0"],
    "programs": [(False, [("get", b"k0"), ("put", b"k0")], "commit")],
    "plain": [("put", b"k0")],
    "schedule": [1, 0, 0, 0, 0],
}
# Write skew: each transaction reads the key the other writes; both cannot commit.
WRITE_SKEW: dict[str, Any] = {
    "initial": [b"k0", b"k1"],
    "programs": [
        (False, [("get", b"k0"), ("put", b"k1")], "commit"),
        (False, [("get", b"k1"), ("put", b"k0")], "commit"),
    ],
    "plain": [],
    "schedule": [0, 1, 0, 1, 0, 1, 0, 1],
}
# A phantom: a scan with a limit stops early; a later insert into its range must still count.
PHANTOM: dict[str, Any] = {
    "initial": [b"k3"],
    "programs": [
        (False, [("scan", b"k1", b"k6", None, False, 1), ("put", b"k7")], "commit"),
        (False, [("put", b"k1"), ("put", b"k5")], "commit"),
    ],
    "plain": [("put", b"k2")],
    "schedule": [0, 0, 2, 1, 1, 1, 1, 0, 0],
}


@SETTINGS
@given(initial=INITIAL, programs=PROGRAMS, plain=PLAIN, schedule=SCHEDULE)
@example(**WRITE_SKEW)
@example(**PHANTOM)
def test_concurrent_transactions_are_serializable(
    initial: list[bytes], programs: list[Any], plain: list[Any], schedule: list[int]
) -> None:
    play_and_check(initial, programs, plain, schedule)


@SETTINGS
@given(initial=INITIAL, programs=PROGRAMS, plain=PLAIN, schedule=SCHEDULE)
@example(**WRITE_SKEW)
def test_serializable_when_the_tracker_expires_transactions(
    initial: list[bytes], programs: list[Any], plain: list[Any], schedule: list[int]
) -> None:
    """A 2-key tracker bound: open transactions expire all the time; a refused commit is then
    justified by the expiry, and every commit that went through is still serializable."""
    play_and_check(initial, programs, plain, schedule, max_keys=2)


@SETTINGS
@given(initial=INITIAL, programs=PROGRAMS, plain=PLAIN, schedule=SCHEDULE)
@example(**WRITE_SKEW)
@example(**PHANTOM)
def test_serializable_with_commits_waiting_for_their_fsync(
    initial: list[bytes], programs: list[Any], plain: list[Any], schedule: list[int]
) -> None:
    """durability="sync": a transaction's commit is appended at once and visible after its
    fsync; later steps (other transactions beginning, reading, committing) run while it waits
    at the gate. Plain writes finish (durable, visible) within their step."""
    play_and_check(initial, programs, plain, schedule, gated=True)


@SETTINGS
@given(initial=INITIAL, programs=PROGRAMS, plain=PLAIN, schedule=SCHEDULE)
@example(**IN_FLIGHT_LOST_UPDATE)
def test_serializable_with_plain_writes_waiting_for_their_fsync(
    initial: list[bytes], programs: list[Any], plain: list[Any], schedule: list[int]
) -> None:
    play_and_check(initial, programs, plain, schedule, gated=True, plain_in_flight=True)
