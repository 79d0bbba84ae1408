"""Transactions: ``db.transaction()`` and ``db.run_transaction()``, as a user sees them.

The contract (quanta/_txn/transaction.py, conflicts.py): a transaction reads one snapshot
(``tx.seq``) merged with its own buffered writes, and commits every write in one atomic batch
on a clean exit of ``async with`` (an exception or a cancellation rolls back: nothing is
written). The commit is validated under the write lock and refused with ``ConflictError``
when any commit appended after the transaction began wrote a key it point-read, a key it
wrote (blind writes too), or any key inside a range it scanned (the whole requested range,
phantoms included). A transaction that wrote nothing costs no commit and never conflicts.

Every test runs twice (conftest.py's ``db`` / ``db_factory``): on the in-memory file layer and
on a real temporary directory. Sections: the conflict matrix, snapshot isolation and
read-your-writes, rollback (exception, cancellation), the finished transaction, read-only
transactions, ``run_transaction``, limits, the conflict tracker's memory bound, closed
databases, bad input, commits still in flight when a transaction begins, the change bus, and
the tracker being idle once no transaction is open.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kv_model import collect, model_scan

import quanta
import quanta._txn.transaction as txmod
from quanta._storage.vfs import MemoryFileSystem, Op

OpenFn = Callable[..., Awaitable[quanta.Database]]

# Tiny memtables and tables: a few dozen writes make a flush, and compactions follow.
SMALL = {
    "memtable_bytes": 4096,
    "block_size": 256,
    "l0_compaction_trigger": 2,
    "l1_target_bytes": 8192,
    "target_file_bytes": 4096,
}


async def state(db: quanta.Database) -> dict[bytes, bytes]:
    return dict(await collect(db.kv.scan()))


def assert_idle(db: quanta.Database) -> None:
    """No transaction is open: the engine's append hook is off and the tracker holds nothing."""
    assert db._engine.on_append is None
    assert db._transactions.tracker.tracked_keys == 0
    assert not db._transactions.tracker.active


async def commits(db: quanta.Database) -> int:
    return int((await db.stats())["commits"])


# =============================================================================== the conflict matrix

# A transaction runs TX_OPS, then OTHER commits, then the transaction commits. It must fail
# with ConflictError naming CONFLICT (and write nothing), or commit (CONFLICT None).
#
# TX_OPS: ("get", k) | ("get_many", [k...]) | ("put", k, v) | ("delete", k) | ("scan", kwargs)
# OTHER:  ("put", k) | ("delete", k) | ("put_many", [k...]) | ("batch", [(op, k)...])
#         | ("tx", TX_OPS) a transaction that commits | ("ro", TX_OPS) a read-only one

INITIAL = {b"a": b"a0", b"b": b"b0", b"c": b"c0", b"d": b"d0", b"x": b"x0"}
W = ("put", b"w", b"tx")  # a write, so the transaction has something to commit and validate


def case(name: str, tx_ops: list[Any], other: Any, conflict: bytes | None, *, read_only: bool = False) -> Any:
    return pytest.param(tx_ops, other, conflict, read_only, id=name)


CONFLICT_MATRIX = [
    # point reads
    case("read-write", [("get", b"a"), W], ("put", b"a"), b"a"),
    case("read-delete", [("get", b"a"), W], ("delete", b"a"), b"a"),
    case("read-of-absent-key-vs-insert", [("get", b"new"), W], ("put", b"new"), b"new"),
    case("read-vs-rewrite-with-same-value", [("get", b"a"), W], ("put", b"a", b"a0"), b"a"),
    case("get_many-vs-write-of-one-key", [("get_many", [b"a", b"c"]), W], ("put", b"c"), b"c"),
    case("get_many-vs-disjoint-write", [("get_many", [b"a", b"c"]), W], ("put", b"b"), None),
    case("disjoint-keys", [("get", b"a"), ("put", b"b", b"tx")], ("put", b"c"), None),
    # writes
    case("write-write", [("put", b"a", b"tx")], ("put", b"a"), b"a"),
    case("blind-delete-vs-write", [("delete", b"a")], ("put", b"a"), b"a"),
    case("blind-write-vs-delete", [("put", b"a", b"tx")], ("delete", b"a"), b"a"),
    case("blind-write-vs-a-reader", [("put", b"a", b"tx")], ("tx", [("get", b"a"), ("scan", {})]), None),
    case("own-write-read-back-vs-write", [("put", b"a", b"tx"), ("get", b"a")], ("put", b"a"), b"a"),
    case("own-write-read-back-vs-other-key", [("put", b"a", b"tx"), ("get", b"a")], ("put", b"b"), None),
    # scans: the whole requested range, phantoms included
    case("scan-vs-put-inside", [("scan", {"start": b"b", "stop": b"d"}), W], ("put", b"bb"), b"bb"),
    case("scan-vs-put-at-start", [("scan", {"start": b"b", "stop": b"d"}), W], ("put", b"b"), b"b"),
    case("scan-vs-delete-inside", [("scan", {"start": b"b", "stop": b"d"}), W], ("delete", b"c"), b"c"),
    case("scan-vs-delete-of-absent-inside", [("scan", {"start": b"b", "stop": b"d"}), W], ("delete", b"bz"), b"bz"),
    case("scan-vs-put-at-stop", [("scan", {"start": b"b", "stop": b"d"}), W], ("put", b"d"), None),
    case("scan-vs-put-before-start", [("scan", {"start": b"b", "stop": b"d"}), W], ("put", b"a"), None),
    case("scan-limit-stops-early-vs-later-key", [("scan", {"start": b"a", "limit": 1}), W], ("put", b"c"), b"c"),
    case("scan-limit-0-vs-key-in-range", [("scan", {"start": b"a", "stop": b"c", "limit": 0}), W], ("put", b"b"), b"b"),
    case("reverse-scan-limit-vs-early-key", [("scan", {"reverse": True, "limit": 1}), W], ("put", b"a"), b"a"),
    case("prefix-scan-vs-put-under-prefix", [("scan", {"prefix": b"b"}), W], ("put", b"b\xff"), b"b\xff"),
    case("prefix-scan-vs-put-beside-prefix", [("scan", {"prefix": b"b"}), W], ("put", b"c"), None),
    case("unbounded-scan-vs-any-write", [("scan", {}), W], ("put", b"zzz"), b"zzz"),
    case("empty-range-scan-vs-write", [("scan", {"start": b"d", "stop": b"b"}), W], ("put", b"c"), None),
    case("two-scans-vs-gap-between", [("scan", {"stop": b"b"}), ("scan", {"start": b"c"}), W], ("put", b"bb"), None),
    case("two-scans-vs-second-range", [("scan", {"stop": b"b"}), ("scan", {"start": b"c"}), W], ("put", b"q"), b"q"),
    # the other commit's kind does not matter
    case("vs-put_many", [("get", b"a"), W], ("put_many", [b"c", b"a"]), b"a"),
    case("vs-batch", [("get", b"c"), W], ("batch", [("put", b"b"), ("delete", b"c")]), b"c"),
    case("vs-transaction", [("get", b"a"), W], ("tx", [("get", b"b"), ("put", b"a", b"t2")]), b"a"),
    case("vs-disjoint-transaction", [("get", b"a"), W], ("tx", [("put", b"b", b"t2")]), None),
    # transactions that commit nothing never conflict
    case("read-only-vs-write", [("get", b"a"), ("scan", {})], ("put", b"a"), None, read_only=True),
    case("wrote-nothing-vs-write", [("get", b"a"), ("get_many", [b"b"]), ("scan", {})], ("put", b"a"), None),
]


async def apply_tx_ops(tx: quanta.Transaction, ops: list[Any]) -> None:
    for op in ops:
        kind, *args = op
        if kind == "get":
            await tx.kv.get(args[0])
        elif kind == "get_many":
            await tx.kv.get_many(args[0])
        elif kind == "put":
            await tx.kv.put(args[0], args[1])
        elif kind == "delete":
            await tx.kv.delete(args[0])
        else:
            await collect(tx.kv.scan(**args[0]))


async def apply_other(db: quanta.Database, other: Any) -> None:
    kind, arg, *rest = other
    if kind == "put":
        await db.kv.put(arg, rest[0] if rest else b"other")
    elif kind == "delete":
        await db.kv.delete(arg)
    elif kind == "put_many":
        await db.kv.put_many([(k, b"other") for k in arg])
    elif kind == "batch":
        batch = db.kv.batch()
        for op, key in arg:
            batch.put(key, b"other") if op == "put" else batch.delete(key)
        await batch.commit()
    else:
        async with db.transaction(read_only=kind == "ro") as other_tx:
            await apply_tx_ops(other_tx, arg)


def tx_writes(ops: list[Any]) -> dict[bytes, bytes | None]:
    writes: dict[bytes, bytes | None] = {}
    for kind, *args in ops:
        if kind == "put":
            writes[args[0]] = args[1]
        elif kind == "delete":
            writes[args[0]] = None
    return writes


@pytest.mark.parametrize(("tx_ops", "other", "conflict", "read_only"), CONFLICT_MATRIX)
async def test_conflict_matrix(
    db: quanta.Database, tx_ops: list[Any], other: Any, conflict: bytes | None, read_only: bool
) -> None:
    await db.kv.put_many(list(INITIAL.items()))
    tx = db.transaction(read_only=read_only)
    await apply_tx_ops(tx, tx_ops)
    await apply_other(db, other)
    after_other = await state(db)
    stats = await db.stats()
    if conflict is not None:
        with pytest.raises(quanta.ConflictError) as err:
            await tx.commit()
        assert err.value.key == conflict
        assert tx.commit_seq is None
        assert await state(db) == after_other  # nothing of the transaction was written
        after = await db.stats()
        assert after["commits"] == stats["commits"]
        assert after["transaction_conflicts"] == stats["transaction_conflicts"] + 1
    else:
        seq = await tx.commit()
        writes = tx_writes(tx_ops)
        expected = {**after_other, **writes}
        assert await state(db) == {k: v for k, v in expected.items() if v is not None}
        if writes:
            assert seq == tx.commit_seq == (await db.stats())["last_seq"]
        else:  # wrote nothing: no commit at all
            assert seq is None and tx.commit_seq is None
            assert await commits(db) == stats["commits"]
    assert tx.finished
    assert_idle(db)


@pytest.mark.parametrize("tracking", [False, True], ids=["idle-tracker", "tracker-recording"])
async def test_commits_made_before_a_transaction_began_never_conflict(db: quanta.Database, tracking: bool) -> None:
    """Including the commit right at its snapshot (tx.seq), also when an older open
    transaction keeps the tracker recording every commit."""
    older = db.transaction() if tracking else None
    await db.kv.put(b"a", b"1")
    async with db.transaction() as tx:
        assert tx.seq == (await db.stats())["last_seq"]
        assert await tx.kv.get(b"a") == b"1"
        await collect(tx.kv.scan())
        await tx.kv.put(b"a", b"2")
    assert await db.kv.get(b"a") == b"2"
    if older is not None:
        await older.rollback()
    assert_idle(db)


async def test_of_two_transactions_that_conflict_the_first_to_commit_wins(db: quanta.Database) -> None:
    """Write skew (each reads what the other writes) is refused: only one commits."""
    await db.kv.put_many([(b"x", b"1"), (b"y", b"1")])
    first, second = db.transaction(), db.transaction()
    for tx, read, write in ((first, b"x", b"y"), (second, b"y", b"x")):
        assert await tx.kv.get(read) == b"1"
        await tx.kv.put(write, b"0")
    assert await second.commit() is not None
    with pytest.raises(quanta.ConflictError) as err:
        await first.commit()
    assert err.value.key == b"x"  # what `first` read and `second` wrote
    assert await state(db) == {b"x": b"0", b"y": b"1"}
    assert_idle(db)


async def test_a_conflict_is_checked_against_commits_still_open_transactions_made(db: quanta.Database) -> None:
    """Three overlapping transactions: the tracker keeps what the oldest still needs even after
    a younger one finished (pruning is by the oldest open snapshot)."""
    old = db.transaction()
    await old.kv.get(b"k")
    await old.kv.put(b"o", b"1")
    young = db.transaction()
    await young.kv.put(b"k", b"young")
    await young.commit()
    newest = db.transaction()
    await newest.kv.put(b"n", b"1")
    assert await newest.commit() is not None  # young's write is older than newest: no conflict
    with pytest.raises(quanta.ConflictError) as err:
        await old.commit()
    assert err.value.key == b"k"
    assert await state(db) == {b"k": b"young", b"n": b"1"}
    assert_idle(db)


# =============================================================================== snapshot isolation


async def test_reads_do_not_see_commits_made_after_the_transaction_began(db_factory: OpenFn) -> None:
    db = await db_factory(**SMALL)
    await db.kv.put_many([(b"k%03d" % i, b"old") for i in range(100)])
    async with db.transaction(read_only=True) as tx:
        assert tx.seq == (await db.stats())["last_seq"]
        await db.kv.put_many([(b"k%03d" % i, b"new" * 20) for i in range(0, 100, 2)])
        await db.kv.put(b"k500", b"new")
        await db.kv.delete(b"k001")
        await db.flush()
        await db.compact()  # the snapshot keeps the versions it reads through compaction
        assert await tx.kv.get(b"k000") == b"old"
        assert await tx.kv.get(b"k001") == b"old"
        assert await tx.kv.get(b"k500") is None
        assert await tx.kv.get_many([b"k002", b"k001", b"k500"]) == [b"old", b"old", None]
        assert await collect(tx.kv.scan()) == [(b"k%03d" % i, b"old") for i in range(100)]
    assert await db.kv.get(b"k000") == b"new" * 20


async def test_a_transaction_reads_its_own_writes(db: quanta.Database) -> None:
    await db.kv.put_many([(b"a", b"1"), (b"b", b"1")])
    async with db.transaction() as tx:
        await tx.kv.put(b"a", b"2")
        await tx.kv.delete(b"b")
        await tx.kv.put(b"c", b"3")
        await tx.kv.put(b"c", b"4")  # the latest buffered write wins
        await tx.kv.delete(b"missing")
        assert await tx.kv.get(b"a") == b"2"
        assert await tx.kv.get(b"b") is None
        assert await tx.kv.get(b"c") == b"4"
        assert await tx.kv.get_many([b"c", b"b", b"a", b"missing", b"a"]) == [b"4", None, b"2", None, b"2"]
        await tx.kv.put(b"b", b"back")
        assert await tx.kv.get(b"b") == b"back"
        # nobody else sees any of it before the commit
        assert await state(db) == {b"a": b"1", b"b": b"1"}
    assert await state(db) == {b"a": b"2", b"b": b"back", b"c": b"4"}


SCANS = [
    {},
    {"reverse": True},
    {"start": b"b"},
    {"start": b"b", "stop": b"e"},
    {"start": b"b", "stop": b"e", "reverse": True},
    {"stop": b"c", "reverse": True},
    {"prefix": b"b"},
    {"prefix": b"b", "reverse": True},
    {"prefix": b"b", "start": b"b1"},
    {"limit": 3},
    {"limit": 3, "reverse": True},
    {"limit": 0},
    {"start": b"a", "stop": b"f", "limit": 5},
    {"prefix": b"c", "limit": 1, "reverse": True},
    {"start": b"e", "stop": b"b"},  # an empty range
]


@pytest.mark.parametrize("flushed", [False, True], ids=["memtable", "tables"])
async def test_scan_merges_the_snapshot_with_own_puts_and_deletes(db: quanta.Database, flushed: bool) -> None:
    base = {b"a": b"0", b"b": b"0", b"b1": b"0", b"b3": b"0", b"c": b"0", b"c1": b"0", b"e": b"0"}
    await db.kv.put_many(list(base.items()))
    if flushed:
        await db.flush()
    # own puts before, between, after and over snapshot keys; deletes of present and absent keys
    own: dict[bytes, bytes | None] = {
        b"0": b"t",
        b"b": b"t",
        b"b2": b"t",
        b"b3": None,
        b"c": None,
        b"cc": b"t",
        b"e": None,
        b"f": b"t",
        b"zz": None,
    }
    merged = {k: v for k, v in {**base, **own}.items() if v is not None}
    async with db.transaction() as tx:
        for key, value in own.items():
            await tx.kv.put(key, value) if value is not None else await tx.kv.delete(key)
        await db.kv.put(b"b0", b"later")  # committed after the snapshot: invisible
        for kwargs in SCANS:
            assert await collect(tx.kv.scan(**kwargs)) == model_scan(merged, **kwargs), kwargs
        await tx.rollback()


async def test_a_scan_sees_own_writes_made_before_it_started_not_after(db: quanta.Database) -> None:
    await db.kv.put_many([(b"a", b"0"), (b"c", b"0")])
    async with db.transaction() as tx:
        await tx.kv.put(b"b", b"t")
        scan = tx.kv.scan()
        await tx.kv.put(b"d", b"late")
        assert await collect(scan) == [(b"a", b"0"), (b"b", b"t"), (b"c", b"0")]
        assert await collect(tx.kv.scan()) == [(b"a", b"0"), (b"b", b"t"), (b"c", b"0"), (b"d", b"late")]


async def test_a_transaction_spanning_many_writes_and_a_long_scan_is_exact(db_factory: OpenFn) -> None:
    """Own writes merged into a scan that crosses many chunks and every LSM layer."""
    db = await db_factory(**SMALL)
    model = {b"k%04d" % i: b"v%d" % i for i in range(0, 600, 2)}
    await db.kv.put_many(list(model.items()))
    await db.compact()
    await db.kv.put_many([(b"k%04d" % i, b"mem") for i in range(0, 600, 10)])
    model.update({b"k%04d" % i: b"mem" for i in range(0, 600, 10)})
    async with db.transaction() as tx:
        for i in range(0, 600, 3):
            key = b"k%04d" % i
            if i % 2:
                await tx.kv.put(key, b"tx")
                model[key] = b"tx"
            else:
                await tx.kv.delete(key)
                model.pop(key, None)
        assert await collect(tx.kv.scan()) == model_scan(model)
        assert await collect(tx.kv.scan(reverse=True, limit=250)) == model_scan(model, reverse=True, limit=250)
    assert await state(db) == model


async def test_tx_seq_is_the_snapshot_and_commit_seq_the_commit(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    async with db.transaction() as tx:
        assert tx.seq == (await db.stats())["last_seq"]
        assert tx.commit_seq is None
        await tx.kv.put(b"b", b"1")
        await db.kv.put(b"c", b"1")
    assert tx.commit_seq == tx.seq + 2 == (await db.stats())["last_seq"]
    assert (await db.stats())["transactions_committed"] == 1


async def test_an_explicit_commit_inside_the_block_commits_once(db: quanta.Database) -> None:
    async with db.transaction() as tx:
        await tx.kv.put(b"a", b"1")
        seq = await tx.commit()
        assert seq is not None and tx.commit_seq == seq
    assert await commits(db) == 1
    assert await db.kv.get(b"a") == b"1"


async def test_a_transaction_that_wrote_nothing_costs_no_commit(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    before = await db.stats()
    async with db.transaction() as tx:
        assert await tx.kv.get(b"a") == b"1"
        await collect(tx.kv.scan())
    assert tx.commit_seq is None
    tx2 = db.transaction()
    assert await tx2.commit() is None
    after = await db.stats()
    assert (after["commits"], after["last_seq"], after["transactions_committed"]) == (
        before["commits"],
        before["last_seq"],
        0,
    )


# =============================================================================== rollback


async def test_an_exception_rolls_back_and_propagates(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as tx:
            await tx.kv.put(b"a", b"2")
            await tx.kv.put(b"b", b"2")
            await tx.kv.delete(b"a")
            _ = 1 / 0
    assert tx.finished and tx.commit_seq is None
    assert await state(db) == {b"a": b"1"}
    assert await commits(db) == 1
    assert_idle(db)


async def test_an_explicit_rollback_discards_and_the_block_exit_does_not_commit(db: quanta.Database) -> None:
    async with db.transaction() as tx:
        await tx.kv.put(b"a", b"2")
        await tx.rollback()
        await tx.rollback()  # idempotent
    assert await state(db) == {}
    assert await commits(db) == 0
    assert_idle(db)


async def test_cancelling_inside_the_block_rolls_back(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    entered = asyncio.Event()

    async def body() -> None:
        async with db.transaction() as tx:
            await tx.kv.put(b"a", b"2")
            await tx.kv.put(b"b", b"2")
            await tx.kv.get(b"a")
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await state(db) == {b"a": b"1"}
    assert await commits(db) == 1
    assert_idle(db)


async def test_cancelling_while_the_commit_is_awaited_is_all_or_nothing(db_factory: OpenFn) -> None:
    """With durability="sync" the commit awaits its fsync; a cancellation before the WAL append
    writes nothing, one after it cannot stop the commit. Never anything in between."""
    db = await db_factory(durability="sync")
    outcomes = set()
    for turns in [0, 1, 1, 2, 3, 5, 8, 13, 30]:
        keys = [b"r%d-%d" % (turns, i) for i in range(5)]

        async def body(keys: list[bytes] = keys) -> None:
            async with db.transaction() as tx:
                await tx.kv.get(b"counter")
                for key in keys:
                    await tx.kv.put(key, b"v")
                await tx.kv.delete(b"gone")

        task = asyncio.create_task(body())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
            how = "completed"
        except asyncio.CancelledError:
            how = "cancelled"
        await db.kv.put(b"gone", b"x")  # waits for its own fsync: every earlier commit is visible
        present = [await db.kv.get(k) for k in keys]
        assert present in ([b"v"] * 5, [None] * 5), present
        outcomes.add((how, "all" if present[0] else "none"))
        assert_idle(db)
    assert ("cancelled", "none") in outcomes  # cancelled before it started
    assert ("cancelled", "all") in outcomes  # cancelled while waiting for the fsync: still committed


# =============================================================================== the finished transaction


async def finish(db: quanta.Database, how: str) -> quanta.Transaction:
    tx = db.transaction()
    if how == "commit":
        await tx.kv.put(b"a", b"1")
        await tx.commit()
    elif how == "empty-commit":
        await tx.commit()
    elif how == "rollback":
        await tx.kv.put(b"a", b"1")
        await tx.rollback()
    elif how == "exception":
        with pytest.raises(KeyError):
            async with tx:
                await tx.kv.put(b"a", b"1")
                raise KeyError("x")
    else:  # conflict
        await tx.kv.get(b"a")
        await tx.kv.put(b"b", b"1")
        await db.kv.put(b"a", b"other")
        with pytest.raises(quanta.ConflictError):
            await tx.commit()
    return tx


@pytest.mark.parametrize("how", ["commit", "empty-commit", "rollback", "exception", "conflict"])
async def test_a_finished_transaction_refuses_every_further_use(db: quanta.Database, how: str) -> None:
    tx = await finish(db, how)
    before = await state(db)
    assert tx.finished
    with pytest.raises(quanta.TransactionClosedError):
        await tx.kv.get(b"a")
    with pytest.raises(quanta.TransactionClosedError):
        await tx.kv.get_many([b"a"])
    with pytest.raises(quanta.TransactionClosedError):
        await collect(tx.kv.scan())
    with pytest.raises(quanta.TransactionClosedError):
        await tx.kv.put(b"a", b"2")
    with pytest.raises(quanta.TransactionClosedError):
        await tx.kv.delete(b"a")
    with pytest.raises(quanta.TransactionClosedError):
        await tx.commit()
    await tx.rollback()  # a no-op, not an error
    async with tx:  # entering and leaving a finished transaction does nothing
        pass
    assert await state(db) == before
    assert_idle(db)


async def test_a_scan_stops_when_its_transaction_finishes_under_it(db: quanta.Database) -> None:
    await db.kv.put_many([(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])
    tx = db.transaction()
    scan = tx.kv.scan()
    assert await anext(scan) == (b"a", b"1")
    await tx.commit()
    with pytest.raises(quanta.TransactionClosedError):
        await anext(scan)


async def test_a_transaction_dropped_unfinished_warns_and_releases_its_snapshot(db: quanta.Database) -> None:
    tx = db.transaction()
    await tx.kv.put(b"a", b"1")
    assert db._engine.on_append is not None
    with pytest.warns(ResourceWarning, match="without commit or rollback"):
        del tx
        gc.collect()
    assert await state(db) == {}
    assert (await db.stats())["open_snapshots"] == 0
    assert_idle(db)


# =============================================================================== read-only transactions


async def test_a_read_only_transaction_reads_and_refuses_writes(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    async with db.transaction(read_only=True) as tx:
        assert tx.read_only
        assert_idle(db)  # it never registers for conflict checks
        with pytest.raises(quanta.ReadOnlyError):
            await tx.kv.put(b"a", b"2")
        with pytest.raises(quanta.ReadOnlyError):
            await tx.kv.delete(b"a")
        assert await tx.kv.get(b"a") == b"1"
        assert await tx.kv.get_many([b"a", b"b"]) == [b"1", None]
        assert await collect(tx.kv.scan()) == [(b"a", b"1")]
        await db.kv.put(b"a", b"changed")
        assert await tx.kv.get(b"a") == b"1"
    assert tx.commit_seq is None
    assert await state(db) == {b"a": b"changed"}
    assert (await db.stats())["transaction_conflicts"] == 0


@pytest.mark.parametrize("flag", [1, "yes", None])
async def test_read_only_must_be_a_bool(db: quanta.Database, flag: object) -> None:
    with pytest.raises(quanta.InvalidTypeError):
        db.transaction(read_only=flag)  # type: ignore[arg-type]
    with pytest.raises(quanta.InvalidTypeError):
        await db.run_transaction(lambda tx: asyncio.sleep(0), read_only=flag)  # type: ignore[arg-type]
    assert_idle(db)


# =============================================================================== run_transaction


async def test_run_transaction_commits_and_returns_what_fn_returned(db: quanta.Database) -> None:
    async def fn(tx: quanta.Transaction) -> str:
        await tx.kv.put(b"a", b"1")
        return "result"

    assert await db.run_transaction(fn) == "result"
    assert await state(db) == {b"a": b"1"}

    async def reader(tx: quanta.Transaction) -> bytes | None:
        assert tx.read_only
        return await tx.kv.get(b"a")

    assert await db.run_transaction(reader, read_only=True) == b"1"
    assert_idle(db)


async def test_run_transaction_increments_under_contention_are_exact(db: quanta.Database) -> None:
    """Eight tasks increment one counter; each increment reads, yields (so they interleave),
    writes. Conflicts happen and are retried; no increment is lost or applied twice, and the
    values the increments saw are exactly 0..N-1 (they serialized)."""
    tasks, per_task = 8, 4
    seen: list[int] = []

    async def increment(tx: quanta.Transaction) -> int:
        value = int(await tx.kv.get(b"n") or b"0")
        await asyncio.sleep(0)
        await tx.kv.put(b"n", b"%d" % (value + 1))
        return value

    async def worker() -> None:
        for _ in range(per_task):
            seen.append(await db.run_transaction(increment, retries=100))

    await asyncio.gather(*(worker() for _ in range(tasks)))
    assert await db.kv.get(b"n") == b"%d" % (tasks * per_task)
    # A result is appended only once its transaction committed; retried attempts are not.
    assert sorted(seen) == list(range(tasks * per_task))
    stats = await db.stats()
    assert stats["transaction_conflicts"] > 0
    assert stats["transactions_committed"] == tasks * per_task
    assert_idle(db)


def interfering(
    db: quanta.Database, conflicts: int
) -> tuple[Callable[[quanta.Transaction], Awaitable[int]], list[int]]:
    """An fn whose first ``conflicts`` attempts lose to a write made while they run."""
    calls: list[int] = []

    async def fn(tx: quanta.Transaction) -> int:
        calls.append(tx.seq)
        await tx.kv.get(b"hot")
        if len(calls) <= conflicts:
            await db.kv.put(b"hot", b"%d" % len(calls))
        await tx.kv.put(b"result", b"attempt %d" % len(calls))
        return len(calls)

    return fn, calls


async def test_run_transaction_retries_each_time_in_a_fresh_transaction(db: quanta.Database) -> None:
    fn, calls = interfering(db, conflicts=2)
    assert await db.run_transaction(fn, retries=2) == 3
    assert len(calls) == 3
    assert calls[0] < calls[1] < calls[2]  # each attempt reads a newer snapshot
    assert await state(db) == {b"hot": b"2", b"result": b"attempt 3"}
    assert (await db.stats())["transaction_conflicts"] == 2
    assert_idle(db)


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_run_transaction_gives_up_after_retries_and_reraises(db: quanta.Database, retries: int) -> None:
    fn, calls = interfering(db, conflicts=10**6)
    with pytest.raises(quanta.ConflictError) as err:
        await db.run_transaction(fn, retries=retries)
    assert err.value.key == b"hot"
    assert len(calls) == retries + 1
    assert await db.kv.get(b"result") is None
    assert_idle(db)


async def test_run_transaction_does_not_retry_other_exceptions(db: quanta.Database) -> None:
    calls = 0

    async def fn(tx: quanta.Transaction) -> None:
        nonlocal calls
        calls += 1
        await tx.kv.put(b"a", b"1")
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await db.run_transaction(fn, retries=5)
    assert calls == 1
    assert await state(db) == {}
    assert_idle(db)


@pytest.mark.parametrize(
    ("retries", "error"),
    [
        (-1, quanta.InvalidArgumentError),
        (1.5, quanta.InvalidTypeError),
        ("3", quanta.InvalidTypeError),
        (True, quanta.InvalidTypeError),
        (None, quanta.InvalidTypeError),
    ],
)
async def test_run_transaction_rejects_bad_retries(db: quanta.Database, retries: object, error: type) -> None:
    called = False

    async def fn(tx: quanta.Transaction) -> None:
        nonlocal called
        called = True

    with pytest.raises(error):
        await db.run_transaction(fn, retries=retries)  # type: ignore[arg-type]
    assert not called
    assert_idle(db)


@pytest.mark.parametrize("fn", [None, 3, b"fn"])
async def test_run_transaction_rejects_a_non_callable(db: quanta.Database, fn: object) -> None:
    with pytest.raises(quanta.InvalidTypeError):
        await db.run_transaction(fn)  # type: ignore[arg-type]
    assert_idle(db)


# =============================================================================== limits


async def test_buffered_writes_are_limited_to_max_batch_bytes(db: quanta.Database) -> None:
    big = b"x" * quanta.MAX_VALUE_BYTES  # referenced many times: one allocation
    fit = quanta.MAX_BATCH_BYTES // (len(big) + 8)
    tx = db.transaction()
    for i in range(fit):
        await tx.kv.put(b"big%05d" % i, big)
    with pytest.raises(quanta.LimitExceededError):
        await tx.kv.put(b"one-more", big)
    # Replacing a buffered value counts only the new size: shrinking one makes room again.
    await tx.kv.put(b"big00000", b"small")
    await tx.kv.put(b"one-more", b"y" * (len(big) - 100))
    with pytest.raises(quanta.LimitExceededError):
        await tx.kv.put(b"one-more", big + big[:200])  # over the value limit too
    assert await tx.kv.get(b"big00000") == b"small"
    await tx.rollback()
    assert await state(db) == {}


async def test_writes_are_limited_to_max_tx_keys_distinct_keys(
    db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(txmod, "MAX_TX_KEYS", 3)
    async with db.transaction() as tx:
        await tx.kv.put(b"a", b"1")
        await tx.kv.delete(b"b")
        await tx.kv.put(b"c", b"1")
        await tx.kv.put(b"a", b"2")  # rewriting a buffered key is not a new key
        await tx.kv.put(b"b", b"2")
        with pytest.raises(quanta.LimitExceededError):
            await tx.kv.put(b"d", b"1")
        with pytest.raises(quanta.LimitExceededError):
            await tx.kv.delete(b"e")
    assert await state(db) == {b"a": b"2", b"b": b"2", b"c": b"1"}


async def test_point_reads_are_limited_to_max_tx_keys_distinct_keys(
    db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(txmod, "MAX_TX_KEYS", 3)
    async with db.transaction() as tx:
        await tx.kv.put(b"own", b"1")
        await tx.kv.get_many([b"a", b"b"])
        await tx.kv.get(b"a")  # already read
        await tx.kv.get(b"own")  # reading its own write is not a read
        await tx.kv.get(b"c")
        with pytest.raises(quanta.LimitExceededError):
            await tx.kv.get(b"d")
    assert await state(db) == {b"own": b"1"}
    async with db.transaction() as tx:
        with pytest.raises(quanta.LimitExceededError):
            await tx.kv.get_many([b"a", b"b", b"c", b"d"])


async def test_a_read_refused_for_the_key_limit_leaves_the_transaction_as_it_was(
    db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(txmod, "MAX_TX_KEYS", 2)
    await db.kv.put(b"a", b"1")
    async with db.transaction() as tx:
        assert await tx.kv.get(b"a") == b"1"
        await tx.kv.get(b"b")
        with pytest.raises(quanta.LimitExceededError):
            await tx.kv.get(b"c")
        assert await tx.kv.get(b"a") == b"1"  # read before: crosses no limit


async def test_scans_are_limited_to_max_tx_ranges(db: quanta.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(txmod, "MAX_TX_RANGES", 2)
    await db.kv.put(b"a", b"1")
    async with db.transaction() as tx:
        assert await collect(tx.kv.scan()) == [(b"a", b"1")]
        assert await collect(tx.kv.scan(prefix=b"a", limit=0)) == []
        with pytest.raises(quanta.LimitExceededError):
            tx.kv.scan(start=b"b")  # refused at the call, before iterating
        await tx.kv.put(b"b", b"1")
    assert await state(db) == {b"a": b"1", b"b": b"1"}


# =============================================================================== the tracker's memory bound


async def test_a_transaction_open_while_too_many_keys_are_written_expires(db: quanta.Database) -> None:
    db._transactions.tracker.max_keys = 10
    await db.kv.put(b"r", b"old")
    old = db.transaction()
    assert await old.kv.get(b"r") == b"old"
    await old.kv.put(b"old", b"1")
    await db.kv.put_many([(b"k%d" % i, b"1") for i in range(5)])  # 5 tracked key writes
    young = db.transaction()
    await young.kv.put(b"young", b"1")
    await db.kv.put_many([(b"m%d" % i, b"1") for i in range(6)])  # 11 > 10: the oldest expires
    assert db._transactions.tracker.tracked_keys <= 10
    # An expired transaction still reads its snapshot ...
    await db.kv.put(b"r", b"new")
    assert await old.kv.get(b"r") == b"old"
    assert await old.kv.get(b"k0") is None
    # ... but cannot commit; the younger one, which still fits, can.
    assert await young.commit() is not None
    with pytest.raises(quanta.ConflictError, match="expired"):
        await old.commit()
    assert await db.kv.get(b"old") is None
    assert await db.kv.get(b"young") == b"1"
    assert_idle(db)


async def test_an_expired_transaction_that_wrote_nothing_still_finishes_cleanly(db: quanta.Database) -> None:
    db._transactions.tracker.max_keys = 3
    async with db.transaction() as tx:
        await db.kv.put_many([(b"k%d" % i, b"1") for i in range(4)])
        assert await collect(tx.kv.scan()) == []
    assert tx.commit_seq is None
    assert_idle(db)
    async with db.transaction() as tx2:  # a new transaction after the expiry is tracked again
        await tx2.kv.get(b"k0")
        await tx2.kv.put(b"x", b"1")
        await db.kv.put(b"k0", b"2")
        with pytest.raises(quanta.ConflictError):
            await tx2.commit()
    assert_idle(db)


# =============================================================================== closed database


async def test_a_closed_database_refuses_transactions(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    tx = db.transaction()
    await tx.kv.put(b"b", b"1")
    await db.close()
    with pytest.raises(quanta.DatabaseClosedError):
        await tx.kv.get(b"a")
    with pytest.raises(quanta.DatabaseClosedError):
        await tx.kv.get_many([b"a"])
    with pytest.raises(quanta.DatabaseClosedError):
        await collect(tx.kv.scan())
    with pytest.raises(quanta.DatabaseClosedError):
        await tx.kv.put(b"c", b"1")
    with pytest.raises(quanta.DatabaseClosedError):
        await tx.kv.delete(b"c")
    with pytest.raises(quanta.DatabaseClosedError):
        await tx.commit()
    await tx.rollback()
    assert tx.finished
    with pytest.raises(quanta.DatabaseClosedError):
        db.transaction()
    with pytest.raises(quanta.DatabaseClosedError):
        db.transaction(read_only=True)
    with pytest.raises(quanta.DatabaseClosedError):
        await db.run_transaction(lambda tx: asyncio.sleep(0))


async def test_a_reopened_database_has_exactly_the_committed_transactions(db_factory: OpenFn) -> None:
    db = await db_factory()
    async with db.transaction() as tx:
        await tx.kv.put(b"a", b"1")
        await tx.kv.put(b"b", b"1")
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.kv.put(b"c", b"1")
            raise RuntimeError
    await db.close()
    db = await db_factory()
    assert await state(db) == {b"a": b"1", b"b": b"1"}


async def test_leaving_a_transaction_block_after_the_database_closed_finishes_it(db: quanta.Database) -> None:
    tx = db.transaction()
    try:
        with pytest.raises(quanta.DatabaseClosedError):
            async with tx:
                await tx.kv.put(b"a", b"1")
                await db.close()
        assert tx.finished
        assert db._engine.on_append is None
    finally:
        await tx.rollback()  # idempotent; if the fix regresses, no ResourceWarning leaks into a later test


# =============================================================================== bad input

BAD_KEYS: list[tuple[object, type[Exception]]] = [
    ("str", quanta.InvalidTypeError),
    (1, quanta.InvalidTypeError),
    (None, quanta.InvalidTypeError),
    (bytearray(b"k"), quanta.InvalidTypeError),
    (b"", quanta.InvalidArgumentError),
    (b"k" * (quanta.MAX_KEY_BYTES + 1), quanta.LimitExceededError),
]


@pytest.mark.parametrize(
    ("key", "error"),
    BAD_KEYS,
    ids=[f"{type(k).__name__}-{len(k) if isinstance(k, bytes) else k!r}" for k, _ in BAD_KEYS],
)
async def test_every_key_taking_method_rejects_a_bad_key_and_the_transaction_goes_on(
    db: quanta.Database, key: object, error: type[Exception]
) -> None:
    async with db.transaction() as tx:
        await tx.kv.put(b"ok", b"1")
        with pytest.raises(error):
            await tx.kv.put(key, b"v")  # type: ignore[arg-type]
        with pytest.raises(error):
            await tx.kv.delete(key)  # type: ignore[arg-type]
        with pytest.raises(error):
            await tx.kv.get(key)  # type: ignore[arg-type]
        with pytest.raises(error):
            await tx.kv.get_many([b"ok", key])  # type: ignore[list-item]
        assert await tx.kv.get(b"ok") == b"1"
    assert await state(db) == {b"ok": b"1"}


@pytest.mark.parametrize("value", ["str", 1, None, bytearray(b"v")])
async def test_put_rejects_a_bad_value_and_buffers_nothing(db: quanta.Database, value: object) -> None:
    async with db.transaction() as tx:
        with pytest.raises(quanta.InvalidTypeError):
            await tx.kv.put(b"k", value)  # type: ignore[arg-type]
        assert await tx.kv.get(b"k") is None
    assert await commits(db) == 0


BAD_SCANS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"start": "a"}, quanta.InvalidTypeError),
    ({"stop": 1}, quanta.InvalidTypeError),
    ({"prefix": "p"}, quanta.InvalidTypeError),
    ({"reverse": 1}, quanta.InvalidTypeError),
    ({"limit": -1}, quanta.InvalidArgumentError),
    ({"limit": 1.0}, quanta.InvalidTypeError),
    ({"limit": True}, quanta.InvalidTypeError),
]


async def test_scan_and_get_many_reject_bad_arguments_at_the_call(db: quanta.Database) -> None:
    await db.kv.put(b"a", b"1")
    async with db.transaction() as tx:
        for kwargs, error in BAD_SCANS:
            with pytest.raises(error):
                tx.kv.scan(**kwargs)
        for keys in [b"ab", "ab", 3, None]:  # a single key, or not an iterable
            with pytest.raises(quanta.InvalidTypeError):
                await tx.kv.get_many(keys)  # type: ignore[arg-type]
        await tx.kv.put(b"b", b"1")
    assert await state(db) == {b"a": b"1", b"b": b"1"}


async def test_bytes_subclasses_are_stored_as_plain_bytes(db: quanta.Database) -> None:
    class B(bytes):
        pass

    async with db.transaction() as tx:
        await tx.kv.put(B(b"k"), B(b"v"))
        assert type(await tx.kv.get(B(b"k"))) is bytes
    ((key, value),) = await collect(db.kv.scan())
    assert (type(key), type(value)) == (bytes, bytes)


# =============================================================================== commits in flight


async def test_a_commit_appended_but_not_yet_fsynced_counts_as_after_the_snapshot(db_factory: OpenFn) -> None:
    """With durability="sync" a plain write is appended to the WAL at once and becomes visible
    after its fsync. A transaction that begins in between reads the old value (its snapshot is
    the visible state), so that write must count as made after it began: its commit conflicts.
    The tracker learns of it from ``engine.inflight()`` when tracking starts."""
    db = await db_factory(durability="sync")
    await db.kv.put(b"k", b"old")
    engine = db._engine
    caught = False
    for attempt in range(50):
        writer = asyncio.create_task(db.kv.put(b"k", b"new%d" % attempt))
        for _ in range(3):
            await asyncio.sleep(0)
            if engine.last_seq > engine.visible_seq:
                break
        if engine.last_seq <= engine.visible_seq:  # missed the window: the fsync was too quick
            await writer
            continue
        caught = True
        assert_idle(db)  # tracking is off: the in-flight write was not recorded when appended
        tx = db.transaction()
        assert await tx.kv.get(b"k") == (b"old" if attempt == 0 else b"new%d" % (attempt - 1))
        await tx.kv.put(b"k", b"tx")
        await writer
        with pytest.raises(quanta.ConflictError) as err:
            await tx.commit()
        assert err.value.key == b"k"
        assert await db.kv.get(b"k") == b"new%d" % attempt
        assert_idle(db)
        break
    if not caught:
        pytest.skip("never caught a write between its WAL append and its fsync")


async def test_a_transaction_waiting_for_its_fsync_is_seen_by_one_that_begins_meanwhile(
    db_factory: OpenFn,
) -> None:
    """The same window with a transaction as the in-flight writer: a transaction begun while
    it awaits its fsync must not commit over it."""
    db = await db_factory(durability="sync")
    await db.kv.put(b"k", b"0")

    async def increment() -> None:
        async with db.transaction() as tx:
            value = int(await tx.kv.get(b"k") or b"0")
            await tx.kv.put(b"k", b"%d" % (value + 1))

    results = await asyncio.gather(*(increment() for _ in range(10)), return_exceptions=True)
    committed = [r for r in results if r is None]
    assert all(r is None or isinstance(r, quanta.ConflictError) for r in results)
    assert await db.kv.get(b"k") == b"%d" % len(committed)  # no lost update
    assert_idle(db)


class SlowWalSyncFS(MemoryFileSystem):
    """Once ``delay`` is set, every WAL fsync takes that long (in the worker thread the engine
    runs fsyncs in), so a commit stays appended but unreadable for ``delay`` seconds."""

    def __init__(self) -> None:
        super().__init__(fail_hook=self._hook)
        self.delay = 0.0

    def _hook(self, op: Op) -> None:
        if self.delay and op.kind == "sync" and op.path.endswith(".wal"):
            time.sleep(self.delay)


async def test_a_retry_begins_only_once_the_commit_that_refused_it_is_readable(tmp_path: Any) -> None:
    """The first attempt loses to a write that then waits 0.3 s for its fsync. A retry begun
    before that write is readable would read the old value and be refused again (CI saw
    racing unique inserts run out of retries so); run_transaction waits for it instead, so
    one retry is enough and it reads the winner's value."""
    fs = SlowWalSyncFS()
    db = await quanta.open(str(tmp_path / "db"), fs=fs, durability="sync")
    try:
        await db.kv.put(b"n", b"0")
        fs.delay = 0.3
        engine = db._engine
        attempts: list[int] = []
        winner: list[asyncio.Task[None]] = []

        async def increment(tx: quanta.Transaction) -> int:
            attempts.append(tx.seq)
            value = int(await tx.kv.get(b"n") or b"-1")
            if not winner:
                winner.append(asyncio.create_task(db.kv.put(b"n", b"10")))
                for _ in range(100):  # until the winner is appended (it is not readable for 0.3 s)
                    await asyncio.sleep(0)
                    if engine.last_seq > engine.visible_seq:
                        break
                assert engine.last_seq > engine.visible_seq
            await tx.kv.put(b"n", b"%d" % (value + 1))
            return value

        assert await db.run_transaction(increment, retries=1) == 10
        await winner[0]
        assert len(attempts) == 2
        assert await db.kv.get(b"n") == b"11"
        assert (await db.stats())["transaction_conflicts"] == 1
        assert_idle(db)
    finally:
        fs.delay = 0.0
        await db.close()


# =============================================================================== the change bus


async def next_change_set(stream: quanta.Watch[quanta.ChangeSet]) -> quanta.ChangeSet:
    return await asyncio.wait_for(anext(stream), 5)


async def test_a_committed_transaction_publishes_one_change_set(db: quanta.Database) -> None:
    await db.kv.put(b"b", b"0")
    async with db.changes(with_old=True) as stream:
        async with db.transaction() as tx:
            await tx.kv.put(b"c", b"1")
            await tx.kv.put(b"a", b"1")
            await tx.kv.delete(b"b")
            await tx.kv.put(b"a", b"2")
        change_set = await next_change_set(stream)
        assert change_set.seq == tx.commit_seq
        assert change_set.origin == "transaction"
        assert change_set.changes == (  # in the order of each key's first write
            quanta.Change(b"c", "put", b"1", None),
            quanta.Change(b"a", "put", b"2", None),
            quanta.Change(b"b", "delete", None, b"0"),
        )
        await db.kv.put(b"sentinel", b"1")
        after = await next_change_set(stream)  # nothing else came in between
        assert (after.origin, after.changes[0].key) == ("kv", b"sentinel")


@pytest.mark.parametrize("how", ["rollback", "exception", "conflict", "empty-commit"])
async def test_a_transaction_that_did_not_commit_publishes_nothing(db: quanta.Database, how: str) -> None:
    async with db.changes() as stream:
        await finish(db, how)
        await db.kv.put(b"sentinel", b"1")
        published = []
        while True:
            change_set = await next_change_set(stream)
            published.append(change_set.origin)
            if change_set.changes[0].key == b"sentinel":
                break
    # The conflict case's own interfering write is a plain kv write; nothing from the transaction.
    assert published == (["kv", "kv"] if how == "conflict" else ["kv"])


# =============================================================================== the tracker goes idle


async def test_the_tracker_is_idle_once_every_transaction_finished(db: quanta.Database) -> None:
    assert_idle(db)
    open_txs = [db.transaction() for _ in range(3)]
    ro = db.transaction(read_only=True)
    assert db._engine.on_append is not None
    for i, tx in enumerate(open_txs):
        await tx.kv.get(b"k")
        await tx.kv.put(b"t%d" % i, b"1")
        await db.kv.put(b"plain%d" % i, b"1")
        assert db._transactions.tracker.tracked_keys > 0
    await open_txs[0].commit()
    await open_txs[1].rollback()
    assert db._engine.on_append is not None  # one is still open
    await db.kv.put(b"k", b"x")
    with pytest.raises(quanta.ConflictError):
        await open_txs[2].commit()
    assert_idle(db)
    await ro.rollback()
    assert_idle(db)
    await db.kv.put(b"after", b"1")  # not tracked
    assert_idle(db)
    assert (await db.stats())["conflict_tracked_keys"] == 0
