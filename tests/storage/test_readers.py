"""Read-only opens beside a running writer: they load a consistent state, follow the writer's
commits in order (on their own change bus), and the writer's flushes, compactions, WAL
removals, crashes and restarts never make them answer wrongly (quanta/_storage/follower.py).

The first part runs in one process (both file layers: the reader is just another open of the
directory); the second uses real processes: a writer child and reader children started with
``sys.executable``, each bounded by a timeout, compared with an oracle that replays the
writer's own log of what it committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from waiting import ThreadGate, eventually

import quanta
from quanta._storage import filenames
from quanta._storage.manifest import read_current, set_current
from quanta._storage.vfs import MemoryFileSystem

OpenFn = Callable[..., Awaitable[quanta.Database]]
SMALL = {"memtable_bytes": 4096, "block_size": 512, "compaction_executor": "loop", "durability": "os"}
TIMEOUT = 90


async def state(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan()}


# =============================================================================== one process


async def test_a_reader_follows_flushes_and_compactions_in_order(db_factory: OpenFn) -> None:
    writer = await db_factory(**SMALL)
    await writer.kv.put(b"k0000", b"first")
    reader = await db_factory(read_only=True, follow_interval=0.005)
    assert reader.seq == writer.seq
    stream = reader.changes()
    seen: list[tuple[int, bytes, bytes | None]] = []

    async def consume() -> None:
        async for change_set in stream:
            for change in change_set.changes:
                seen.append((change_set.seq, change.key, change.value))
            if change_set.seq >= 601:
                return

    task = asyncio.create_task(consume())
    history: list[tuple[int, bytes, bytes | None]] = []
    for i in range(600):
        key = b"k%04d" % (i % 150)
        if i % 7 == 6:
            await writer.kv.delete(key)
            history.append((writer.seq, key, None))
        else:
            await writer.kv.put(key, b"v%d" % i)
            history.append((writer.seq, key, b"v%d" % i))
        if i % 10 == 0:  # let the reader's own following catch up now and then (a loaded
            # machine could otherwise leave it a whole WAL behind: a gap, tested below)
            await eventually(lambda: reader.seq == writer.seq, what="the reader following")
        if i % 200 == 199:
            await writer.compact()
    await reader.catch_up()
    await asyncio.wait_for(task, 10)
    assert seen == history  # every commit, once, in order
    assert reader.seq == writer.seq
    assert await state(reader) == await state(writer)
    assert (await reader.verify()).entries > 0
    engine = reader._engine
    assert engine.follower is not None and engine.follower.installs > 0 and engine.follower.lag_gaps == 0


async def test_an_open_snapshot_keeps_reading_the_old_tables_after_a_compaction(db_factory: OpenFn) -> None:
    writer = await db_factory(**SMALL)
    await writer.kv.put_many([(b"k%04d" % i, b"old") for i in range(300)])
    await writer.flush()
    reader = await db_factory(read_only=True, follow_interval=0)
    snap = reader.snapshot()
    await writer.kv.put_many([(b"k%04d" % i, b"new") for i in range(300)])
    await writer.compact()  # drops the old versions: the writer knows no snapshot of the reader
    assert await reader.catch_up() == writer.seq
    assert await reader.kv.get(b"k0001") == b"new"
    assert {v async for _, v in snap.kv.scan()} == {b"old"}  # still right: old tables held open
    assert await snap.kv.get(b"k0299") == b"old"
    snap.release()
    await writer.kv.put(b"k0000", b"newer")
    await reader.catch_up()  # now the compacted version is installed
    assert reader._engine.follower is not None and reader._engine.follower.installs >= 1
    assert await state(reader) == await state(writer)


async def test_a_verify_in_progress_keeps_reading_the_tables_an_install_lets_go(db_factory: OpenFn) -> None:
    # The CI failure this guards: a reader process's verify (a worker thread) read a table
    # whose descriptor the follower had just closed, installing the writer's compaction.
    writer = await db_factory(**SMALL)
    for round_ in range(3):  # three tables
        await writer.kv.put_many([(b"k%04d" % i, b"r%d" % round_) for i in range(100)])
        await writer.flush()
    reader = await db_factory(read_only=True, follow_interval=0)
    engine = reader._engine
    assert engine.follower is not None and len(engine.readers) >= 2
    gate = ThreadGate()

    def progress(done: int, total: int) -> None:
        if done == 1:
            gate.block()

    verify = asyncio.create_task(reader.verify(progress=progress))
    await gate.reached()
    before = set(engine.readers)
    await writer.compact()  # every table replaced
    await writer.kv.put(b"k0000", b"newest")
    await reader.catch_up()  # installs the compacted version, letting the old tables go
    assert engine.follower.installs >= 1 and not before & set(engine.readers)
    gate.open()
    assert await verify == quanta.VerifyReport(tables=3, entries=300)  # every old table read to its end
    assert await reader.kv.get(b"k0000") == b"newest"
    assert (await reader.verify()).entries > 0  # and the new ones
    await reader.close()
    assert not engine.follower._deferred  # the retired descriptors were closed after it


async def test_a_reader_that_falls_a_whole_wal_behind_ends_its_subscriptions_and_reloads(db_factory: OpenFn) -> None:
    writer = await db_factory(**SMALL)
    await writer.kv.put(b"a", b"1")
    reader = await db_factory(read_only=True, follow_interval=0)  # looks only when asked
    stream = reader.changes()
    for i in range(200):  # several memtables: flushed, their WALs removed
        await writer.kv.put(b"k%04d" % i, b"x" * 100)
    await writer.flush()
    await reader.catch_up()

    async def drain() -> None:
        async for _ in stream:
            pass

    with pytest.raises(quanta.ReaderLagError, match="fell behind"):
        await asyncio.wait_for(drain(), 5)
    await reader.catch_up()  # the reload (no snapshot open)
    assert reader.seq == writer.seq
    assert await state(reader) == await state(writer)
    again = reader.changes()  # subscribing again works
    await writer.kv.put(b"b", b"2")
    await reader.catch_up()
    async with again:
        change_set = await asyncio.wait_for(anext(aiter(again)), 5)
    assert change_set.changes[0].key == b"b"


async def test_a_reader_opens_with_no_writer_and_follows_one_that_arrives(db_factory: OpenFn) -> None:
    writer = await db_factory(**SMALL)
    await writer.kv.put(b"a", b"1")
    await writer.close()
    reader = await db_factory(read_only=True, follow_interval=0.005)
    assert await reader.kv.get(b"a") == b"1"
    writer = await db_factory(**SMALL)  # recovery: new MANIFEST and WAL, old files removed
    await writer.kv.put(b"b", b"2")
    await writer.compact()
    await writer.kv.put(b"c", b"3")
    await reader.catch_up()
    assert await state(reader) == {b"a": b"1", b"b": b"2", b"c": b"3"}
    assert reader.seq == writer.seq


async def test_db_seq_and_catch_up_on_a_writer(db_factory: OpenFn) -> None:
    db = await db_factory()
    assert db.seq == 0 and await db.catch_up() == 0
    await db.kv.put(b"a", b"1")
    assert db.seq == 1 and await db.catch_up() == 1
    await db.close()
    with pytest.raises(quanta.DatabaseClosedError):
        await db.catch_up()


# =============================================================================== real processes

WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    import quanta

    async def main(path, start, count, pause):
        db = await quanta.open(path, durability="os", memtable_bytes=8192, block_size=512,
                               l0_compaction_trigger=2, lock_timeout=30)
        print(json.dumps({"ready": db.seq}), flush=True)
        for i in range(start, start + count):
            key = b"k%04d" % (i % 97)
            if i % 11 == 10:
                await db.kv.delete(key)
            else:
                await db.kv.put(key, b"%d" % i)
            print(json.dumps([db.seq, i]), flush=True)
            if pause and i % 10 == 0:
                await asyncio.sleep(pause)
        await db.kv.put(b"end", b"%d" % (start + count))
        print(json.dumps([db.seq, -1]), flush=True)
        await db.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    """
)

READER = textwrap.dedent(
    """
    import asyncio, json, sys
    import quanta

    async def main(path, end):
        db = await quanta.open(path, read_only=True, follow_interval=0.01)
        stream = db.changes()
        print(json.dumps({"ready": db.seq}), flush=True)
        seen = []
        async with stream:
            async for cs in stream:
                seen.append([cs.seq, [[c.key.hex(), None if c.value is None else c.value.hex()] for c in cs.changes]])
                if any(c.key == b"end" and c.value == end.encode() for c in cs.changes):
                    break
        final = {k.hex(): v.hex() async for k, v in db.kv.scan()}
        verified = await db.verify()
        print(json.dumps({"seen": seen, "final": final, "seq": db.seq, "verify": verified.entries}), flush=True)
        await db.close()

    asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 80))
    """
)


def spawn(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its compaction workers die with it (killpg)
    )


def read_json(proc: subprocess.Popen[str]) -> Any:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"child ended (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}"
    return json.loads(line)


def kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def oracle(log: list[list[int]], start: int) -> tuple[list[list[Any]], dict[str, str]]:
    """The writer's history as (seq, [[key, value]]) and the state after it, from its log of
    (seq, i) pairs (i = -1: the end marker)."""
    history: list[list[Any]] = []
    final: dict[str, str] = {}
    end = max(i for _, i in log) + 1
    for seq, i in log:
        if i < 0:
            key, value = b"end", b"%d" % end
        else:
            key = b"k%04d" % (i % 97)
            value = None if i % 11 == 10 else b"%d" % i
        history.append([seq, [[key.hex(), None if value is None else value.hex()]]])
        if value is None:
            final.pop(key.hex(), None)
        else:
            final[key.hex()] = value.hex()
    return history, final


@pytest.fixture
def dbpath(tmp_path: Path) -> Path:
    path = tmp_path / "db"

    async def make() -> None:
        async with quanta.open(str(path)) as db:
            await db.kv.put(b"seed", b"0")

    asyncio.run(make())
    return path


def test_reader_processes_follow_a_writer_process_commit_by_commit(dbpath: Path) -> None:
    readers = [spawn(READER, dbpath, 400) for _ in range(2)]
    writer = None
    try:
        starts = [read_json(r)["ready"] for r in readers]
        writer = spawn(WRITER, dbpath, 0, 400, 0.002)
        assert read_json(writer) == {"ready": 1}
        log = [read_json(writer) for _ in range(401)]
        assert writer.wait(timeout=TIMEOUT) == 0
        history, final = oracle(log, 0)
        final = {b"seed".hex(): b"0".hex(), **final}
        for reader, start in zip(readers, starts, strict=True):
            out = read_json(reader)
            assert reader.wait(timeout=TIMEOUT) == 0
            assert start == 1
            assert out["seen"] == history  # every commit, in order, exactly as the writer made it
            assert out["final"] == final
            assert out["seq"] == log[-1][0]
    finally:
        for proc in [*readers, *([writer] if writer else [])]:
            kill(proc)


HOLDING_READER = textwrap.dedent(
    """
    import asyncio, json, sys
    import quanta

    async def main(path):
        db = await quanta.open(path, read_only=True, follow_interval=0.01)
        print(json.dumps({"ready": db.seq}), flush=True)
        for line in sys.stdin:  # "get KEY": answer from the followed state
            await db.catch_up()
            value = await db.kv.get(line.split()[1].encode())
            print(json.dumps({"seq": db.seq, "value": value.decode() if value else None}), flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_readers_keep_serving_when_the_writer_is_killed_and_pick_up_after_it_restarts(dbpath: Path) -> None:
    reader = await quanta.open(str(dbpath), read_only=True, follow_interval=0.01)
    stream = reader.changes()
    writer = spawn(WRITER, dbpath, 0, 100000, 0.001)
    restarted = None
    try:
        assert read_json(writer)["ready"] == 1
        acked = [await asyncio.to_thread(read_json, writer) for _ in range(300)]
        kill(writer)  # kill -9, mid-stream
        last_acked = acked[-1][0]
        await reader.catch_up()
        frozen = reader.seq
        assert frozen >= last_acked  # every acknowledged commit reached the reader
        before = await state(reader)
        await asyncio.sleep(0.1)
        assert reader.seq == frozen and await state(reader) == before  # keeps serving the last state
        restarted = spawn(WRITER, dbpath, 1000, 200, 0.001)
        assert (await asyncio.to_thread(read_json, restarted))["ready"] == frozen  # recovered what we saw
        log = [await asyncio.to_thread(read_json, restarted) for _ in range(201)]
        assert await asyncio.to_thread(restarted.wait, TIMEOUT) == 0
        await reader.catch_up()
        assert reader.seq == log[-1][0]
        async with quanta.open(str(dbpath), read_only=True) as fresh:
            assert await state(reader) == await state(fresh)
        seqs = []
        async for change_set in stream:  # one unbroken history across the crash and the restart
            seqs.append(change_set.seq)
            if change_set.seq == reader.seq:
                break
        assert seqs == list(range(2, reader.seq + 1))
    finally:
        kill(writer)
        if restarted is not None:
            kill(restarted)
        await reader.close()


async def test_a_reader_killed_while_the_writer_compacts_leaves_nothing_that_blocks_cleanup(dbpath: Path) -> None:
    async with quanta.open(str(dbpath), memtable_bytes=8192, block_size=512) as db:
        await db.kv.put_many([(b"k%05d" % i, b"a" * 100) for i in range(3000)])
        await db.flush()
        reader = spawn(HOLDING_READER, dbpath)
        try:
            assert (await asyncio.to_thread(read_json, reader))["ready"] == db.seq
            await db.kv.put_many([(b"k%05d" % i, b"b" * 100) for i in range(3000)])
            compaction = asyncio.create_task(db.compact())
            await asyncio.sleep(0.05)
            # a live reader keeps answering from the tables it holds, whatever the writer removes
            assert reader.stdin is not None
            reader.stdin.write("get k00007\n")
            reader.stdin.flush()
            answer = await asyncio.to_thread(read_json, reader)
            assert answer["value"] in ("a" * 100, "b" * 100)
            kill(reader)  # kill -9 during the compaction
            await compaction
            await db.compact()
        finally:
            kill(reader)
        live = {f"{n:06d}.sst" for n in db._engine.version.live_numbers()}
        on_disk = {n for n in os.listdir(dbpath) if n.endswith(".sst")}
        assert on_disk == live  # every obsolete table was removed at once
        assert await db.kv.get(b"k02999") == b"b" * 100
    names = os.listdir(dbpath)
    assert not any(n.startswith("readers") for n in names)
    assert filenames.LOCK in names


LIVE_WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    from typing import Annotated
    import quanta

    @quanta.entity(name="LiveItem")
    class Item:
        id: Annotated[int, quanta.PrimaryKey()]
        group: int = 0
        score: int = 0

    async def main(path, count):
        db = await quanta.open(path, entities=[Item], durability="os", memtable_bytes=8192, lock_timeout=30)
        items = db.collection(Item)
        await items.put(Item(id=0, group=1, score=5))
        print(json.dumps({"ready": db.seq}), flush=True)
        sys.stdin.readline()  # the reader is watching
        for i in range(1, count):
            if i % 9 == 8:
                await items.delete(i % 40)
            else:
                await items.put(Item(id=i % 40, group=(i * 7) % 3, score=(i * 13) % 50))
            if i % 10 == 0:
                await asyncio.sleep(0.002)
        await items.put(Item(id=999, group=2, score=0))
        print(json.dumps({"done": db.seq}), flush=True)
        await db.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)

LIVE_READER = textwrap.dedent(
    """
    import asyncio, json, sys
    from typing import Annotated
    import quanta

    @quanta.entity(name="LiveItem")
    class Item:
        id: Annotated[int, quanta.PrimaryKey()]
        group: int = 0
        score: int = 0

    async def main(path):
        db = await quanta.open(path, entities=[Item], read_only=True, follow_interval=0.005)
        items = db.collection(Item)
        q = items.where(Item.group == 1).order_by(Item.score, Item.id)
        results = []

        async def watch():
            async for rows in q.watch():
                results.append([[r.id, r.score] for r in rows])
                if len(results) == 1:
                    print(json.dumps({"ready": db.seq}), flush=True)

        task = asyncio.create_task(watch())
        while await items.get(999) is None:
            await asyncio.sleep(0.01)
        await db.catch_up()
        await asyncio.sleep(0.1)
        task.cancel()
        final = [[r.id, r.score] for r in await q.all()]
        print(json.dumps({"results": results, "final": final}), flush=True)
        await db.close()

    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 80))
    """
)


def live_oracle(count: int) -> list[list[list[int]]]:
    """The query's result after each of the writer's commits (the first: after its seed)."""
    rows: dict[int, tuple[int, int]] = {0: (1, 5)}
    out = []

    def result() -> list[list[int]]:
        ordered = sorted(rows.items(), key=lambda kv: (kv[1][1], kv[0]))
        return [[pk, score] for pk, (group, score) in ordered if group == 1]

    out.append(result())
    for i in range(1, count):
        if i % 9 == 8:
            rows.pop(i % 40, None)
        else:
            rows[i % 40] = ((i * 7) % 3, (i * 13) % 50)
        out.append(result())
    return out


def test_a_live_query_in_a_reader_process_matches_the_writers_history(tmp_path: Path) -> None:
    path = tmp_path / "db"
    count = 300
    writer = spawn(LIVE_WRITER, path, count)
    reader = None
    try:
        read_json(writer)
        reader = spawn(LIVE_READER, path)
        read_json(reader)
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        read_json(writer)
        assert writer.wait(timeout=TIMEOUT) == 0
        out = read_json(reader)
        assert reader.wait(timeout=TIMEOUT) == 0
        expected = live_oracle(count)
        # every emission is the result after some prefix of the history, in history order,
        # consecutive emissions differ, and the last one is the final result
        position = 0
        for emitted in out["results"]:
            while position < len(expected) and expected[position] != emitted:
                position += 1
            assert position < len(expected), f"emitted a result no prefix of the history has: {emitted}"
        assert out["results"][-1] == expected[-1] == out["final"]
        assert all(a != b for a, b in zip(out["results"], out["results"][1:], strict=False))
        assert len(out["results"]) > 20  # it did follow, not just read the end
    finally:
        kill(writer)
        if reader is not None:
            kill(reader)


async def test_a_reader_rides_out_a_missing_current_and_a_manifest_that_vanished() -> None:
    """Between two looks a reader may find CURRENT gone, or naming a MANIFEST already
    replaced (a writer's rollover or restart seen half-way): it keeps serving its state and
    picks up the writer's commits at a later look."""
    fs = MemoryFileSystem()
    writer = await quanta.open("/db", fs=fs)
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    try:
        await writer.kv.put(b"a", b"1")
        await reader.catch_up()
        assert await reader.kv.get(b"a") == b"1"
        number = read_current(fs, "/db")
        fs.remove("/db/CURRENT")
        await writer.kv.put(b"b", b"2")
        await reader.catch_up()  # no CURRENT: the same manifest, and the WAL still followed
        assert await reader.kv.get(b"b") == b"2"
        set_current(fs, "/db", number + 1000)  # names a manifest that does not exist
        await writer.kv.put(b"c", b"3")
        await reader.catch_up()
        assert await reader.kv.get(b"a") == b"1"  # still serving
        set_current(fs, "/db", number)
        await writer.kv.put(b"d", b"4")
        await reader.catch_up()
        assert [await reader.kv.get(k) for k in (b"a", b"b", b"c", b"d")] == [b"1", b"2", b"3", b"4"]
        assert reader.seq == writer.seq
    finally:
        await reader.close()
        await writer.close()


@quanta.entity
class FollowedThing:
    id: int = quanta.auto()
    name: str = ""


async def test_a_reader_follows_a_writer_that_restarts_and_records_a_schema() -> None:
    """The writer closes and opens again (a new WAL, a new MANIFEST) declaring an entity for
    the first time: its schema commit (catalog keys only, published as the writer publishes
    it), its record (without the auto-key counter, bookkeeping of a user commit) and a kv put
    reach the reader in order."""
    fs = MemoryFileSystem()
    writer = await quanta.open("/db", fs=fs)
    await writer.kv.put(b"a", b"1")
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    stream = reader.changes()
    try:
        await writer.close()
        writer = await quanta.open("/db", fs=fs, entities=[FollowedThing])
        await writer.collection(FollowedThing).put(FollowedThing(name="x"))
        await writer.kv.put(b"b", b"2")
        for _ in range(3):
            await reader.catch_up()
        assert reader.seq == writer.seq
        assert await reader.kv.get(b"b") == b"2"
        seen: list[list[bytes]] = []
        while not seen or seen[-1] != [b"b"]:
            change_set = await asyncio.wait_for(anext(stream), 5)
            seen.append([c.key for c in change_set.changes])
        schema, record, _kv = seen
        assert [k[:3] for k in schema] == [b"\x00Qc"], seen  # the schema commit
        assert [k[:3] for k in record] == [b"\x00Qr"], seen  # the record, not its counter
    finally:
        await stream.aclose()
        await reader.close()
        await writer.close()
