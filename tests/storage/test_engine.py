"""Engine behaviour that the API tests do not reach: group commit, back-pressure, background
work in worker processes, background failures, snapshots surviving compaction."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from typing import Any

import pytest
from waiting import ThreadGate

import quanta
from quanta._storage.vfs import MemoryFileSystem, Op

SMALL: dict[str, Any] = {
    "memtable_bytes": 4096,
    "block_size": 256,
    "l1_target_bytes": 8192,
    "target_file_bytes": 4096,
    "l0_compaction_trigger": 2,
}


async def test_group_commit_shares_fsyncs(db_factory: Any) -> None:
    db = await db_factory()

    async def writer(w: int) -> None:
        for i in range(50):
            await db.kv.put(b"w%d:%03d" % (w, i), b"v")

    await asyncio.gather(*(writer(w) for w in range(8)))
    stats = await db.stats()
    assert stats["commits"] == 400
    assert stats["syncs"] < stats["commits"], stats  # concurrent commits shared fsyncs
    assert [k async for k, _ in db.kv.scan(prefix=b"w3:")] == [b"w3:%03d" % i for i in range(50)]


async def test_writes_are_visible_only_after_their_fsync() -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs)
    gate = threading.Event()
    entered = threading.Event()

    def hold_wal_syncs(op: Op) -> None:
        if op.kind == "sync" and op.path.endswith(".wal"):
            entered.set()
            gate.wait(10)

    fs.fail_hook = hold_wal_syncs
    task = asyncio.ensure_future(db.kv.put(b"k", b"v"))
    await asyncio.to_thread(entered.wait, 10)  # appended to the WAL, fsync in progress
    assert await db.kv.get(b"k") is None  # not durable yet: not visible
    assert not task.done()
    gate.set()
    await task
    fs.fail_hook = None
    assert await db.kv.get(b"k") == b"v"
    await db.close()


async def test_flush_and_compaction_on_real_files_use_worker_processes(tmp_path: Any) -> None:
    path = str(tmp_path / "db")
    async with quanta.open(path, **SMALL) as db:
        for i in range(600):
            await db.kv.put(b"key%05d" % i, b"value-%d" % i)
        await db.compact()
        stats = await db.stats()
        assert stats["flushes"] > 0 and stats["compactions"] + stats["trivial_moves"] > 0
        assert stats["levels"][0]["files"] == 0
        assert [k async for k, _ in db.kv.scan(limit=3)] == [b"key00000", b"key00001", b"key00002"]
    async with quanta.open(path) as db:
        assert await db.kv.get(b"key00599") == b"value-599"
        assert (await db.verify()).entries >= 600


async def test_a_verify_reads_every_table_a_compaction_replaces_meanwhile(db_factory: Any) -> None:
    db = await db_factory(memtable_bytes=1 << 20, compaction_executor="loop")
    for round_ in range(3):  # three tables in L0
        await db.kv.put_many([(b"k%04d" % i, b"r%d" % round_) for i in range(100)])
        await db.flush()
    gate = ThreadGate()

    def progress(done: int, total: int) -> None:
        if done == 1:
            gate.block()

    verify = asyncio.create_task(db.verify(progress=progress))
    await gate.reached()
    before = {m.number for _, m in db._engine.version.files()}
    await db.compact()  # the three tables merged into one: their removal waits for the verify
    assert not before & {m.number for _, m in db._engine.version.files()}
    assert db._engine.pins.pinned()
    gate.open()
    assert await verify == quanta.VerifyReport(tables=3, entries=300)  # none skipped as "compacted away"
    assert not db._engine.pins.pinned()
    assert await db.verify() == quanta.VerifyReport(tables=1, entries=100)
    names = set(db._engine.fs.listdir(db._engine.path))
    assert not {f"{n:06d}.sst" for n in before} & names  # removed once the verify ended


async def test_snapshot_survives_flush_and_compaction(db_factory: Any) -> None:
    db = await db_factory(**SMALL)
    for i in range(100):
        await db.kv.put(b"k%03d" % i, b"old")
    async with db.snapshot() as snap:
        for i in range(100):
            await db.kv.put(b"k%03d" % i, b"new")
        for i in range(0, 100, 3):
            await db.kv.delete(b"k%03d" % i)
        await db.compact()
        assert await snap.kv.get(b"k000") == b"old"
        assert [v async for _, v in snap.kv.scan()] == [b"old"] * 100
        assert len([k async for k, _ in db.kv.scan()]) == 66
    await db.compact()
    assert await db.kv.get(b"k000") is None and await db.kv.get(b"k001") == b"new"


async def test_tombstones_are_dropped_at_the_bottom(db_factory: Any) -> None:
    db = await db_factory(**SMALL)
    for i in range(300):
        await db.kv.put(b"k%04d" % i, b"x" * 20)
    await db.compact()
    for i in range(300):
        await db.kv.delete(b"k%04d" % i)
    await db.compact()
    stats = await db.stats()
    assert stats["table_files"] == 0, stats["levels"]
    assert [k async for k, _ in db.kv.scan()] == []


async def test_back_pressure_bounds_immutable_memtables(db_factory: Any) -> None:
    db = await db_factory(memtable_bytes=4096, max_immutable_memtables=1)
    max_imm = 0
    for i in range(500):
        await db.kv.put(b"k%04d" % i, b"y" * 50)
        max_imm = max(max_imm, len(db._engine.imms))
    assert max_imm <= 1
    assert await db.kv.get(b"k0499") == b"y" * 50


async def test_background_failure_stops_writes_and_surfaces_on_close() -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, **SMALL)
    await db.kv.put(b"a", b"1")

    def fail_table_writes(op: Op) -> None:
        if op.kind == "create" and op.path.endswith(".sst"):
            raise quanta.StorageIOError("injected", errno=errno.EIO, path=op.path)

    fs.fail_hook = fail_table_writes
    with pytest.raises(quanta.DatabaseFailedError):
        for i in range(2000):
            await db.kv.put(b"k%05d" % i, b"z" * 40)
        await db.flush()
    with pytest.raises(quanta.BackgroundError):
        await db.kv.put(b"b", b"2")
    assert await db.kv.get(b"a") == b"1"  # reads still work
    with pytest.raises(quanta.BackgroundError):
        await db.close()
    fs.fail_hook = None
    async with quanta.open("/db", fs=fs) as again:  # everything acknowledged is there
        assert await again.kv.get(b"a") == b"1"


async def test_reopen_after_crash_replays_wal(tmp_path: Any) -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs)
    await db.kv.put_many([(b"k%d" % i, b"v%d" % i) for i in range(100)])
    crashed = fs.crash()
    await db.close()
    async with quanta.open("/db", fs=crashed) as db2:
        stats = await db2.stats()
        assert stats["recovered_wal_batches"] == 1
        assert await db2.kv.get(b"k99") == b"v99"
    names = crashed.listdir("/db")
    assert sum(n.endswith(".wal") for n in names) == 1, names  # old segments gone, one fresh


async def test_os_durability_is_visible_at_once(db_factory: Any) -> None:
    db = await db_factory(durability="os")
    await db.kv.put(b"k", b"v")
    assert await db.kv.get(b"k") == b"v"
    assert (await db.stats())["syncs"] == 0


def test_worker_refuses_foreign_functions() -> None:
    import io
    import pickle
    import struct

    from quanta._storage.worker import _serve

    req = pickle.dumps(("os", "system", ("true",)))
    out = io.BytesIO()
    _serve(io.BytesIO(struct.pack("<Q", len(req)) + req), out)
    ok, result = pickle.loads(out.getvalue()[8:])
    assert not ok and isinstance(result, PermissionError)
    assert os.path.exists(__file__)


async def test_get_many_matches_get_across_every_level(db_factory: Any) -> None:
    """The batched get_many walks tables block by block; it must agree with get everywhere:
    memtable, level 0, deeper levels, tombstones, absent keys, duplicates, any order."""
    db = await db_factory(**SMALL)
    for i in range(400):
        await db.kv.put(b"k%04d" % i, b"v1-%d" % i)
    await db.compact()  # deeper levels
    for i in range(0, 400, 3):
        await db.kv.put(b"k%04d" % i, b"v2-%d" % i)
    for i in range(0, 400, 7):
        await db.kv.delete(b"k%04d" % i)
    await db.flush()  # level 0 over the deeper levels
    for i in range(0, 400, 11):
        await db.kv.put(b"k%04d" % i, b"v3-%d" % i)  # memtable
    keys = [*[b"k%04d" % i for i in range(420)][::-1], b"k0001", b"zzz", b"a"]
    expected = [await db.kv.get(k) for k in keys]
    assert await db.kv.get_many(keys) == expected
    assert expected.count(None) > 20 and b"v3-0" in expected and b"v2-3" in expected
