"""Model-based test: the database behaves like a plain ``dict`` under any sequence of operations.

A Hypothesis ``RuleBasedStateMachine`` (pebble's ``metamorphic/`` in spirit) drives one
database and a dict side by side and compares every read: ``get``, ``get_many`` and ``scan``
with random bounds, prefix, direction and limit. Writes are single puts and deletes,
``put_many`` and ``batch`` (mixed puts and deletes, repeated keys: the last one wins),
concurrent writers, and transactions (their reads see their own writes; they commit, roll
back, or lose to a write made while they were open). Snapshots remember a copy of the model
and must keep reading it while later writes, flushes and compactions go on. Reopens
(optionally with other block and bloom settings) and, with ``durability="sync"``, power
losses must keep everything acknowledged.

Keys are 1-3 bytes over ``b"abc\\x00\\xff"`` so that overwrites and deletes collide and
``\\x00``/``\\xff`` probe the edges of prefix and range bounds; a 4 KiB memtable and 256-byte
blocks make flushes and compactions happen every few steps. Every configuration in
``CONFIGS`` gets its own machine.

``QUANTA_INVARIANTS=1`` (CI) also checks the version's level invariants after every step;
``QUANTA_LONG=1`` runs many more and longer examples.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, ClassVar, TypeVar

import pytest
from helpers_crash import LONG, LONG_MARKS, write_summary
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule
from kv_model import collect, model_scan

import quanta
from quanta._storage.vfs import MemoryFileSystem

INVARIANTS = os.environ.get("QUANTA_INVARIANTS") == "1"
PATH = "/db"
STEP_TIMEOUT = 30.0  # a step that takes longer is a hang

T = TypeVar("T")
pytestmark = LONG_MARKS

SMALL = {
    "memtable_bytes": 4096,
    "block_size": 256,
    "l1_target_bytes": 4096,
    "target_file_bytes": 4096,
    "compaction_executor": "loop",
}
CONFIGS: dict[str, dict[str, Any]] = {
    "SyncTieredBloom": {**SMALL, "durability": "sync", "bloom_bits_per_key": (32, 16, 8)},
    "OsNoBloom": {**SMALL, "durability": "os", "bloom_bits_per_key": 0},
    "SyncBigBlocks": {**SMALL, "durability": "sync", "block_size": 4096, "bloom_bits_per_key": 10},
    "OsEagerL0": {**SMALL, "durability": "os", "l0_compaction_trigger": 2, "bloom_bits_per_key": (0, 10)},
}

SETTINGS = settings(
    max_examples=500 if LONG else 50,
    stateful_step_count=100 if LONG else 40,
    deadline=None,
    database=None,  # failures print a reproducible seed; no .hypothesis/ left in the tree
    suppress_health_check=[HealthCheck.too_slow],
)

ALPHABET = b"abc\x00\xff"
NEW_KEYS = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=3).map(bytes)
#: Keys written before (so deletes, overwrites and reads hit live data) or any key.
WRITTEN = Bundle("written")
KEYS = st.one_of(WRITTEN, NEW_KEYS)
# Mostly small values; some large ones fill the 4 KiB memtable in a dozen entries.
VALUES = st.one_of(st.binary(max_size=12), st.binary(min_size=100, max_size=400))
BOUNDS = st.one_of(st.none(), st.just(b""), KEYS)
PREFIXES = st.one_of(st.none(), st.lists(st.sampled_from(ALPHABET), max_size=2).map(bytes))
LIMITS = st.one_of(st.none(), st.integers(0, 12))
OPS = st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES)), max_size=10)  # None: delete
REOPEN_WITH = st.sampled_from([{}, {"bloom_bits_per_key": 0}, {"block_size": 4096}, {"bloom_bits_per_key": 20}])

#: Totals over all examples, per configuration, for the summary printed at the end.
TOTALS: dict[str, Counter[str]] = {name: Counter() for name in CONFIGS}


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    lines = []
    for name, c in TOTALS.items():
        if c["examples"]:
            lines.append(
                f"model[{name}]: {c['examples']} examples, {c['steps'] - c['examples']} steps "
                f"({(c['steps'] - c['examples']) / c['examples']:.1f} per example), {c['flushes']} flushes, "
                f"{c['compactions']} compactions, {c['trivial_moves']} trivial moves, {c['reopens']} reopens, "
                f"{c['power_losses']} power losses, {c['reads']} reads checked, deepest level L{c['deepest']}"
            )
    write_summary(request, lines)


class DatabaseMachine(RuleBasedStateMachine):
    """One database on a MemoryFileSystem, and the dict it must behave like."""

    NAME: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Any]] = {}
    written = WRITTEN

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.fs = MemoryFileSystem()
        self.model: dict[bytes, bytes] = {}
        self.snapshots: list[tuple[quanta.Snapshot, dict[bytes, bytes]]] = []
        self.totals = TOTALS[self.NAME]
        self.totals["examples"] += 1
        self.db = self.run(quanta.open(PATH, fs=self.fs, **self.OPTIONS))

    # -- plumbing ------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one step's coroutine on the machine's loop (background work runs meanwhile)."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))

    def scan(self, reader: Any, start: Any, stop: Any, prefix: Any, reverse: bool, limit: Any) -> Any:
        return self.run(collect(reader.scan(start, stop, prefix=prefix, reverse=reverse, limit=limit)))

    def _count_work(self) -> None:
        stats = self.db._engine.stats
        for name in ("flushes", "compactions", "trivial_moves"):
            self.totals[name] += getattr(stats, name)
        levels = self.db._engine.version.levels
        deepest = max((lvl for lvl, files in enumerate(levels) if files), default=0)
        self.totals["deepest"] = max(self.totals["deepest"], deepest)

    def _close(self) -> None:
        """Close the database; snapshots of it must then refuse reads."""
        self._count_work()
        self.run(self.db.close())
        for snap, _ in self.snapshots:
            with pytest.raises(quanta.DatabaseClosedError):
                self.run(snap.kv.get(b"a"))
            snap.release()
        self.snapshots.clear()

    def teardown(self) -> None:
        try:
            if not self.db.closed:
                self._close()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    # -- writes --------------------------------------------------------------------------

    @rule(target=WRITTEN, key=KEYS, value=VALUES)
    def put(self, key: bytes, value: bytes) -> bytes:
        self.run(self.db.kv.put(key, value))
        self.model[key] = value
        return key

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        self.run(self.db.kv.delete(key))
        self.model.pop(key, None)

    @rule(target=WRITTEN, items=st.lists(st.tuples(KEYS, VALUES), max_size=10))
    def put_many(self, items: list[tuple[bytes, bytes]]) -> Any:
        self.run(self.db.kv.put_many(items))
        self.model.update(items)  # in order: the last value of a repeated key wins
        return multiple(*(k for k, _ in items))

    @rule(target=WRITTEN, ops=OPS)
    def batch(self, ops: list[tuple[bytes, bytes | None]]) -> Any:
        batch = self.db.kv.batch()
        for k, v in ops:
            if v is None:
                batch.delete(k)
            else:
                batch.put(k, v)
        self.run(batch.commit())
        for k, v in ops:
            if v is None:
                self.model.pop(k, None)
            else:
                self.model[k] = v
        return multiple(*(k for k, v in ops if v is not None))

    @rule(target=WRITTEN, ops=OPS, probe=KEYS, prefix=PREFIXES, end=st.sampled_from(["commit", "rollback", "conflict"]))
    def transaction(self, ops: list[tuple[bytes, bytes | None]], probe: bytes, prefix: Any, end: str) -> Any:
        """Puts and deletes in a transaction, read back inside it (its own writes over its
        snapshot), then committed atomically on leaving ``async with``, rolled back, or refused
        because a plain write to the key it read (or wrote) came in between: then only that
        write lands (a transaction that wrote nothing has nothing to refuse)."""

        async def go() -> None:
            async with self.db.transaction() as tx:
                own: dict[bytes, bytes | None] = {}
                for k, v in ops:
                    if v is None:
                        await tx.kv.delete(k)
                    else:
                        await tx.kv.put(k, v)
                    own[k] = v
                view = {k: v for k, v in {**self.model, **own}.items() if v is not None}
                assert await tx.kv.get(probe) == view.get(probe)
                got = await collect(tx.kv.scan(prefix=prefix))
                assert got == model_scan(view, None, None, prefix, False, None)
                if end == "rollback":
                    await tx.rollback()
                elif end == "conflict":
                    await self.db.kv.put(probe, b"interloper")
                    if own:
                        with pytest.raises(quanta.ConflictError):
                            await tx.commit()
                    else:  # wrote nothing: nothing to commit, nothing to refuse
                        assert await tx.commit() is None

        self.totals["reads"] += 2
        self.run(go())
        if end == "conflict":
            self.model[probe] = b"interloper"
            return probe
        if end == "commit":
            for k, v in ops:
                if v is None:
                    self.model.pop(k, None)
                else:
                    self.model[k] = v
        return multiple(*(k for k, v in ops if v is not None))

    @rule(target=WRITTEN, items=st.dictionaries(KEYS, VALUES, max_size=6), probe=KEYS)
    def concurrent_writes_and_a_read(self, items: dict[bytes, bytes], probe: bytes) -> Any:
        """Writers on distinct keys race each other (their order does not matter) and a reader."""

        async def race() -> bytes | None:
            *_, got = await asyncio.gather(*(self.db.kv.put(k, v) for k, v in items.items()), self.db.kv.get(probe))
            return got

        got = self.run(race())
        allowed = {self.model.get(probe)} | ({items[probe]} if probe in items else set())
        assert got in allowed
        self.model.update(items)
        return multiple(*items)

    @rule(target=WRITTEN, n=st.integers(10, 80), seed=st.integers(0, 2**16), size=st.sampled_from([0, 40, 250]))
    def fill(self, n: int, seed: int, size: int) -> Any:
        """Many sequential puts (and a few deletes): fills memtables so flushes, compactions
        and write stalls happen within a short example."""
        rng = random.Random(seed)

        async def go() -> list[bytes]:
            keys = []
            for i in range(n):
                key = bytes(rng.choice(ALPHABET) for _ in range(rng.randint(1, 3)))
                if rng.random() < 0.15:
                    await self.db.kv.delete(key)
                    self.model.pop(key, None)
                else:
                    value = b"%d:%d|" % (seed, i) + b"v" * rng.randint(0, size)
                    await self.db.kv.put(key, value)
                    self.model[key] = value
                    keys.append(key)
            return keys

        return multiple(*self.run(go()))

    # -- reads ---------------------------------------------------------------------------

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        self.totals["reads"] += 1
        assert self.run(self.db.kv.get(key)) == self.model.get(key)

    @rule(keys=st.lists(KEYS, max_size=8))
    def get_many(self, keys: list[bytes]) -> None:
        self.totals["reads"] += 1
        assert self.run(self.db.kv.get_many(keys)) == [self.model.get(k) for k in keys]

    @rule(start=BOUNDS, stop=BOUNDS, prefix=PREFIXES, reverse=st.booleans(), limit=LIMITS)
    def scan_range(self, start: Any, stop: Any, prefix: Any, reverse: bool, limit: Any) -> None:
        self.totals["reads"] += 1
        got = self.scan(self.db.kv, start, stop, prefix, reverse, limit)
        assert got == model_scan(self.model, start, stop, prefix, reverse, limit)

    # -- snapshots -----------------------------------------------------------------------

    @precondition(lambda self: len(self.snapshots) < 3)
    @rule()
    def take_snapshot(self) -> None:
        self.snapshots.append((self.db.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snapshots)
    @rule(
        i=st.integers(0, 2),
        key=KEYS,
        start=BOUNDS,
        stop=BOUNDS,
        prefix=PREFIXES,
        reverse=st.booleans(),
        limit=LIMITS,
    )
    def read_snapshot(self, i: int, key: bytes, start: Any, stop: Any, prefix: Any, reverse: bool, limit: Any) -> None:
        snap, frozen = self.snapshots[i % len(self.snapshots)]
        self.totals["reads"] += 3
        assert self.run(snap.kv.get(key)) == frozen.get(key)
        keys = [key, *frozen][:8]
        assert self.run(snap.kv.get_many(keys)) == [frozen.get(k) for k in keys]
        got = self.scan(snap.kv, start, stop, prefix, reverse, limit)
        assert got == model_scan(frozen, start, stop, prefix, reverse, limit)

    @precondition(lambda self: self.snapshots)
    @rule(i=st.integers(0, 2))
    def release_snapshot(self, i: int) -> None:
        snap, _ = self.snapshots.pop(i % len(self.snapshots))
        self.run(snap.__aexit__(None, None, None))

    # -- background work, reopen, power loss -----------------------------------------------

    @rule()
    def flush(self) -> None:
        self.run(self.db.flush())

    @rule()
    def compact(self) -> None:
        self.run(self.db.compact())

    @rule()
    def let_background_work_run(self) -> None:
        self.run(asyncio.sleep(0.002))

    @rule()
    def verify(self) -> None:
        self.run(self.db.verify())

    @rule(changes=REOPEN_WITH)
    def reopen(self, changes: dict[str, Any]) -> None:
        """Close and open again (a clean close keeps everything, with either durability); the
        format is self-describing, so other block and bloom settings read the old tables."""
        self._close()
        self.totals["reopens"] += 1
        self.db = self.run(quanta.open(PATH, fs=self.fs, **{**self.OPTIONS, **changes}))

    @precondition(lambda self: self.OPTIONS["durability"] == "sync")
    @rule(garble=st.booleans(), keep_dir=st.booleans(), seed=st.integers(0, 2**16))
    def power_loss(self, garble: bool, keep_dir: bool, seed: int) -> None:
        """With durability="sync" every acknowledged write is durable: a power loss now keeps
        the whole model, whatever happens to unsynced bytes (dropped or garbled) and unsynced
        directory entries (dropped or kept)."""
        with self.fs._mutex:  # a background fsync may be running in a worker thread
            image = self.fs.crash(garble_tail=garble, keep_unsynced_dir_entries=keep_dir, rng=random.Random(seed))
        self._close()
        self.totals["power_losses"] += 1
        self.fs = image
        self.db = self.run(quanta.open(PATH, fs=self.fs, **self.OPTIONS))

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def no_leaked_snapshots(self) -> None:
        """Between steps no scan is running, so the engine pins exactly the open snapshots."""
        self.totals["steps"] += 1  # invariants run after __init__ and after every step
        if not self.db.closed:
            assert len(self.db._engine.snapshots) == len(self.snapshots)
            # ... and no transaction is open: nothing tracked, no append hook
            assert self.db._engine.on_append is None
            assert self.db._transactions.tracker.tracked_keys == 0

    @invariant()
    def version_invariants(self) -> None:
        if INVARIANTS and not self.db.closed:
            self.db._engine.version.check_invariants()


def _machine_test(name: str) -> type:
    machine = type(f"{name}Machine", (DatabaseMachine,), {"NAME": name, "OPTIONS": CONFIGS[name]})
    case = machine.TestCase
    case.settings = SETTINGS
    return case


TestSyncTieredBloom = _machine_test("SyncTieredBloom")
TestOsNoBloom = _machine_test("OsNoBloom")
TestSyncBigBlocks = _machine_test("SyncBigBlocks")
TestOsEagerL0 = _machine_test("OsEagerL0")
