"""Backups taken by a read-only open beside a running writer (quanta/_storage/backup.py with
quanta/_storage/follower.py): the backup reads the reader's state through the descriptors the
follower holds, so a writer that compacts every table away and removes the WAL segments in
the middle of the backup never makes it fail, and the copy holds exactly the reader's state at
the backup's ``seq``.

The first part runs writer and reader in one process (both file layers), pausing the backup
deterministically in a worker thread; the last test uses a real writer process.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_readers import kill, read_json, spawn
from waiting import ThreadGate

import quanta
from quanta._storage import filenames
from quanta._storage.follower import Follower
from quanta._storage.vfs import MemoryFileSystem, _Inode
from quanta.errors import BackgroundError, DatabaseClosedError, StorageIOError

SMALL: dict[str, Any] = {
    "memtable_bytes": 4096,
    "block_size": 512,
    "compaction_executor": "loop",
    "durability": "os",
    "l0_compaction_trigger": 100,
    "l0_stop_writes_trigger": 200,
}
TIMEOUT = 90
backup_module = importlib.import_module("quanta._storage.backup")  # the package exports the function


async def contents(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan()}


def dest_of(db_factory: Any, tmp_path: Path, name: str = "backup") -> str:
    return "/" + name if db_factory.fs is not None else str(tmp_path / name)


async def open_copy(db_factory: Any, path: str, **options: Any) -> quanta.Database:
    if db_factory.fs is not None:
        options.setdefault("fs", db_factory.fs)
    return await quanta.open(path, create_if_missing=False, **options)


def follower_of(db: quanta.Database) -> Follower:
    follower = db._engine.follower
    assert follower is not None
    return follower


class Pause:
    """Wraps a backup step (run in a worker thread) so that its ``at``-th call blocks, before
    it runs, until ``go`` is set: the test changes the source meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, at: int = 1) -> None:
        self.gate = ThreadGate()
        self.calls = 0
        real: Callable[..., Any] = getattr(backup_module, name)

        def step(*args: Any) -> Any:
            self.calls += 1
            if self.calls == at:
                self.gate.block()
            return real(*args)

        monkeypatch.setattr(backup_module, name, step)

    async def wait(self) -> None:
        await self.gate.reached()


async def writer_and_reader(db_factory: Any) -> tuple[quanta.Database, quanta.Database]:
    """A writer with three tables and commits in two WAL segments (memtables), and a reader."""
    writer = await db_factory(**SMALL)
    for round_ in range(3):
        await writer.kv.put_many([(b"k%04d" % i, b"r%d-" % round_ + b"x" * 30) for i in range(100)])
        await writer.flush()
    for i in range(0, 100, 3):  # in the memtables only: the reader's WAL part
        await writer.kv.put(b"k%04d" % i, b"wal%d" % i)
    await writer.kv.delete(b"k0001")
    reader = await db_factory(read_only=True, follow_interval=0)
    assert reader.seq == writer.seq
    assert len(reader._engine.readers) >= 3 and follower_of(reader).applied
    return writer, reader


async def rewrite_everything(writer: quanta.Database, reader: quanta.Database) -> None:
    """The writer replaces every table and removes every WAL segment the reader's state came
    from; the reader installs the new version (letting its old descriptors go)."""
    engine = reader._engine
    old_tables = set(engine.readers)
    old_wals = set(follower_of(reader).applied)
    await writer.kv.put_many([(b"k%04d" % i, b"after") for i in range(0, 100, 2)])
    await writer.compact()  # flushes the memtables (their WALs go), then merges every table
    await writer.kv.put(b"k0002", b"newest")
    await reader.catch_up()
    assert reader.seq == writer.seq
    assert not old_tables & set(engine.readers)  # installed: none of the old tables
    assert not old_wals & set(follower_of(reader).applied)
    # The writer removes obsolete files after installing the new version, in the background:
    # wait for it (bounded), then check that none of the reader's old files is left.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        names = writer._engine.fs.listdir(writer._engine.path)
        on_disk = {p for p in map(filenames.parse_name, names) if p is not None}
        old = ({("sst", n) for n in old_tables} | {("wal", n) for n in old_wals}) & on_disk
        if not old or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.005)
    assert not old, old  # the writer removed them


async def check_copy(db_factory: Any, dest: str, info: quanta.BackupInfo, expected: dict[bytes, bytes]) -> None:
    async with await open_copy(db_factory, dest) as copy:
        assert await contents(copy) == expected
        assert copy.seq == info.seq
        await copy.verify()  # clean (its open flushed the replayed WAL into one more table)


# =============================================================================== one process


@pytest.mark.parametrize("step", ["_place_held_table", "_write_wal"])
async def test_a_reader_backup_survives_the_writer_removing_every_file_it_reads(
    db_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Paused after the first table (or before the WAL), the writer compacts every table away
    and removes the WAL segments, and the reader installs the new state: the backup still
    completes and holds exactly the reader's state when it started."""
    writer, reader = await writer_and_reader(db_factory)
    expected, seq, tables = await contents(reader), reader.seq, len(reader._engine.readers)
    pause = Pause(monkeypatch, step, at=2 if step == "_place_held_table" else 1)
    dest = dest_of(db_factory, tmp_path)
    task = asyncio.create_task(reader.backup(dest))
    await pause.wait()
    await rewrite_everything(writer, reader)
    pause.gate.open()
    info = await task
    assert info.seq == seq and info.tables == tables
    assert info.copied >= tables - 1  # the tables the writer deleted: copied from the descriptors
    assert info.linked + info.copied == tables and info.wal_bytes > 64
    await check_copy(db_factory, dest, info, expected)
    follower = follower_of(reader)
    assert follower._holds == 0 and not follower._deferred  # the old descriptors closed after it
    assert await reader.kv.get(b"k0002") == b"newest"  # the reader follows on


async def test_the_backup_wal_holds_exactly_the_batches_the_reader_applied(db_factory: Any, tmp_path: Path) -> None:
    """The writer commits more after the reader's last look: those batches are in the WAL
    segments the reader holds, but not in its state, so not in the backup."""
    writer, reader = await writer_and_reader(db_factory)
    expected, seq = await contents(reader), reader.seq
    for i in range(20):
        await writer.kv.put(b"late%02d" % i, b"not seen by the reader")
    info = await reader.backup(dest_of(db_factory, tmp_path))
    assert info.seq == seq < writer.seq
    await check_copy(db_factory, dest_of(db_factory, tmp_path), info, expected)


async def test_segments_the_writer_creates_while_the_backup_starts_are_in_its_picture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old read-only backup listed the WAL segments on disk before taking its seq: a
    commit in a segment created after that listing (two rotations: the first uses the spare
    segment that was listed) and applied by the reader before the seq was taken was silently
    missing from a backup that reported it. Now the picture (seq, tables, segments) is one
    instant, whatever the writer does while the backup starts."""
    fs = MemoryFileSystem()
    writer = await quanta.open("/db", fs=fs, **SMALL)
    await writer.kv.put(b"a", b"1")
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    loop = asyncio.get_running_loop()
    real = backup_module._begin

    async def meanwhile() -> None:
        for key in (b"big", b"big2"):
            await writer.kv.put(key, b"x" * 5000)  # each fills a memtable: a new segment each
        await writer.kv.put(b"b", b"2")
        await reader.catch_up()

    def begin(*args: Any) -> Any:
        lock = real(*args)
        asyncio.run_coroutine_threadsafe(meanwhile(), loop).result(20)
        return lock

    monkeypatch.setattr(backup_module, "_begin", begin)
    info = await reader.backup("/backup")
    assert info.seq == reader.seq == writer.seq
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == await contents(reader)
        assert await copy.kv.get(b"b") == b"2"
    await reader.close()
    await writer.close()


async def test_an_incremental_reader_backup_reuses_only_the_files_it_holds(db_factory: Any, tmp_path: Path) -> None:
    writer, reader = await writer_and_reader(db_factory)
    dest = dest_of(db_factory, tmp_path)
    first = await reader.backup(dest)
    assert (first.linked, first.reused) == (first.tables, 0)
    assert (await reader.backup(dest)).reused == first.tables  # the same files (hard links of the held ones)
    await rewrite_everything(writer, reader)
    expected = await contents(reader)
    second = await reader.backup(dest)
    assert second.reused == 0 and second.linked == second.tables > 0
    await check_copy(db_factory, dest, second, expected)


async def test_a_name_that_names_another_file_is_never_linked_or_reused(tmp_path: Path) -> None:
    """A table name in the source or in DEST that no longer names the file the reader holds
    (a directory replaced under it) is never taken for it: the held bytes are copied."""
    fs = MemoryFileSystem()
    writer = await quanta.open("/db", fs=fs, **SMALL)
    for round_ in range(2):
        await writer.kv.put_many([(b"k%04d" % i, b"r%d" % round_) for i in range(100)])
        await writer.flush()
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    expected = await contents(reader)
    first, second = sorted(reader._engine.readers)

    def impostor(path: str) -> None:  # same name, same size, other bytes
        data = bytearray(fs.files[path].data)
        data[40] ^= 0xFF
        fs.files[path] = _Inode(data, len(data))

    impostor(f"/db/{filenames.table_name(first)}")
    info = await reader.backup("/backup")
    assert (info.linked, info.copied) == (1, 1)
    impostor(f"/backup/{filenames.table_name(second)}")  # DEST: the second table replaced
    again = await reader.backup("/backup")
    assert (again.reused, again.linked) == (1, 1)  # the copy by its bytes; the impostor replaced
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == expected
        await copy.verify()
    await reader.close()
    await writer.close()


async def test_where_links_are_impossible_a_reader_copies_from_its_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = MemoryFileSystem()

    def no_links(src: str, dst: str) -> None:
        raise StorageIOError("link failed: cross-device link (injected)", errno=errno.EXDEV, path=src)

    writer = await quanta.open("/db", fs=fs, **SMALL)
    await writer.kv.put_many([(b"k%04d" % i, b"v") for i in range(200)])
    await writer.flush()
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    monkeypatch.setattr(fs, "link", no_links)
    info = await reader.backup("/backup")
    assert info.copied == info.tables > 0
    again = await reader.backup("/backup")
    assert again.reused == info.tables  # copies reused by their size and CRC
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == await contents(reader)

    def broken_link(src: str, dst: str) -> None:
        raise StorageIOError("link failed: input/output error (injected)", errno=errno.EIO, path=src)

    monkeypatch.setattr(fs, "link", broken_link)
    with pytest.raises(StorageIOError, match="input/output error"):
        await reader.backup("/other")
    assert follower_of(reader)._holds == 0
    await reader.close()
    await writer.close()


async def test_a_held_table_that_reads_short_fails_the_backup_never_a_short_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fs = MemoryFileSystem()
    writer = await quanta.open("/db", fs=fs, **SMALL)
    await writer.kv.put_many([(b"k%04d" % i, b"v") for i in range(200)])
    await writer.flush()
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    monkeypatch.setattr(backup_module, "same_file", lambda fs, f, path: False)  # never the held file
    for reader_ in reader._engine.readers.values():
        inode = reader_.file._inode  # type: ignore[attr-defined]
        full = len(inode.data)
        reader_.file._inode = _Inode(inode.data[:100], 100)  # type: ignore[attr-defined]
        monkeypatch.setattr(reader_.file, "size", lambda n=full: n)
    with pytest.raises(StorageIOError, match="shrank"):
        await reader.backup("/backup")
    with pytest.raises(quanta.CorruptionError, match="unfinished backup"):
        await quanta.open("/backup", fs=fs)
    assert follower_of(reader)._holds == 0
    await reader.close()
    await writer.close()


async def test_closing_the_reader_during_its_backup_stops_it_and_releases_everything(
    db_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = await writer_and_reader(db_factory)
    pause = Pause(monkeypatch, "_place_held_table", at=2)
    dest = dest_of(db_factory, tmp_path)
    task = asyncio.create_task(reader.backup(dest))
    await pause.wait()
    await rewrite_everything(writer, reader)  # some descriptors deferred by the hold
    assert follower_of(reader)._deferred
    await reader.close()  # closes every descriptor, held or not
    pause.gate.open()
    with pytest.raises(DatabaseClosedError, match="closed during the backup"):
        await task
    assert not follower_of(reader)._deferred and follower_of(reader)._holds == 0
    with pytest.raises(quanta.CorruptionError, match="unfinished backup"):
        await open_copy(db_factory, dest)


async def test_a_close_between_steps_stops_the_backup(
    db_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close while a step runs that does not make the step fail is seen right after it."""
    _writer, reader = await writer_and_reader(db_factory)
    real = backup_module._place_held_table
    loop = asyncio.get_running_loop()

    def step(*args: Any) -> str:
        how = real(*args)
        asyncio.run_coroutine_threadsafe(reader.close(), loop).result(20)
        return how

    monkeypatch.setattr(backup_module, "_place_held_table", step)
    dest = dest_of(db_factory, tmp_path)
    with pytest.raises(DatabaseClosedError, match="closed during the backup"):
        await reader.backup(dest)
    assert follower_of(reader)._holds == 0
    with pytest.raises(quanta.CorruptionError, match="unfinished backup"):
        await open_copy(db_factory, dest)


async def test_a_cancelled_reader_backup_releases_its_hold(
    db_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = await writer_and_reader(db_factory)
    pause = Pause(monkeypatch, "_place_held_table", at=2)
    task = asyncio.create_task(reader.backup(dest_of(db_factory, tmp_path)))
    await pause.wait()
    await rewrite_everything(writer, reader)
    follower = follower_of(reader)
    deferred = list(follower._deferred)
    assert deferred
    task.cancel()
    pause.gate.open()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert follower._holds == 0 and not follower._deferred
    for item in deferred:  # closed now: a read fails (EBADF)
        file = item.file
        with pytest.raises(StorageIOError):
            file.pread(0, 1)
    assert await reader.kv.get(b"k0002") == b"newest"


async def test_a_backup_waits_for_a_poll_a_cancelled_catch_up_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup takes its picture while no poll changes the tailer's segments: one that a
    cancelled ``catch_up`` left running is waited for (here it fails: the reader serves, and
    backs up, its last state)."""
    fs = MemoryFileSystem()
    writer = await quanta.open("/db", fs=fs, **SMALL)
    await writer.kv.put(b"a", b"1")
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    tailer = follower_of(reader).tailer
    started, go = threading.Event(), threading.Event()

    def slow_poll() -> None:
        started.set()
        assert go.wait(20)
        raise StorageIOError("read failed (injected)", errno=errno.EIO, path="/db")

    monkeypatch.setattr(tailer, "poll", slow_poll)
    await writer.kv.put(b"b", b"2")
    catch_up = asyncio.create_task(reader.catch_up())
    assert await asyncio.to_thread(started.wait, 20)
    catch_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await catch_up
    backup = asyncio.create_task(reader.backup("/backup"))
    await asyncio.sleep(0.05)
    assert not backup.done()  # waiting for the poll
    go.set()
    info = await backup
    assert info.seq == 1
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == {b"a": b"1"}
    with pytest.raises(StorageIOError, match="injected"):  # the next poll fails, in sight
        await reader.catch_up()
    await reader.close()
    await writer.close()


async def test_a_reader_whose_reload_failed_refuses_to_back_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed reload let its WAL segments go: the reader still serves its last state, but a
    backup of it cannot be read from its descriptors, so it raises the failure."""
    fs = MemoryFileSystem()
    writer = await quanta.open("/db", fs=fs, **SMALL)
    await writer.kv.put(b"a", b"1")
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    follower = follower_of(reader)

    def failing(*args: Any) -> set[int]:
        raise StorageIOError("listdir failed (injected)", errno=errno.EIO, path="/db")

    monkeypatch.setattr(follower.tailer, "_open_new_wals", failing)
    follower._needs_reload = True
    with pytest.raises(StorageIOError, match="injected"):
        await reader.catch_up()
    assert await reader.kv.get(b"a") == b"1"
    with pytest.raises(BackgroundError):
        await reader.backup("/backup")
    assert follower._holds == 0
    await reader.close()
    await writer.close()


async def test_holds_nest_and_a_retired_descriptor_closes_with_the_last(db_factory: Any) -> None:
    writer, reader = await writer_and_reader(db_factory)
    follower = follower_of(reader)
    first = follower.hold()
    state = await follower.hold_state()  # two holds (a verify and a backup at once)
    assert state.readers == first and state.seq == reader.seq
    await rewrite_everything(writer, reader)
    old = [r.file for r in first.values()]
    follower.release()
    assert all(f.pread(0, 4) for f in old)  # still open: one hold remains
    follower.release()
    for f in old:
        with pytest.raises(StorageIOError):
            f.pread(0, 4)


def test_same_file_and_short_reads(tmp_path: Path) -> None:
    """The small pieces the backup trusts: ``same_file`` says no unless it is sure; a WAL
    segment or table that ends early is an error, never a shorter copy."""
    from quanta._storage.format import HEADER_SIZE, WAL_MAGIC, FileHeader
    from quanta._storage.vfs import OSFileSystem, same_file

    os_fs, mem = OSFileSystem(), MemoryFileSystem()
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    held = os_fs.open_read(str(path))
    try:
        assert same_file(os_fs, held, str(path))
        assert not same_file(os_fs, held, str(tmp_path / "missing"))
        os.link(path, tmp_path / "g")
        assert same_file(os_fs, held, str(tmp_path / "g"))
    finally:
        held.close()

    class Foreign:
        path = "/x"

        def pread(self, offset: int, size: int) -> bytes:
            return b""

        def size(self) -> int:
            return 0

        def close(self) -> None:
            pass

    assert not same_file(os_fs, Foreign(), str(path))
    mem.mkdir("/d")
    w = mem.create("/d/wal")
    w.write(FileHeader(magic=WAL_MAGIC, file_number=3).encode() + b"r" * 10)
    w.close()
    out = mem.create("/d/out")
    f = mem.open_read("/d/wal")
    with pytest.raises(quanta.CorruptionError, match="file ends at"):
        backup_module._copy_records(f, HEADER_SIZE + 20, out)  # the batches it should hold are not there
    monkey = mem.open_read("/d/wal")
    monkey.size = lambda: 1000  # type: ignore[method-assign]
    assert backup_module._crc_of(monkey)[0] == 1000  # a file that shrank: the CRC cannot match its size


# =============================================================================== real processes

COMPACTING_WRITER = """
import asyncio, json, sys
import quanta

async def main(path, count):
    db = await quanta.open(path, durability="os", memtable_bytes=8192, block_size=512,
                           l0_compaction_trigger=2, lock_timeout=30)
    print(json.dumps({"ready": db.seq}), flush=True)
    for i in range(count):
        key = b"k%04d" % (i % 97)
        if i % 11 == 10:
            await db.kv.delete(key)
        else:
            await db.kv.put(key, b"%d" % i + b"x" * 40)
        print(json.dumps([db.seq, i]), flush=True)
        if i % 40 == 39:
            await db.compact()  # every table replaced, every old WAL segment removed
        if i % 10 == 0:
            await asyncio.sleep(0.001)
    await db.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def history_states(log: list[list[int]], base: dict[bytes, bytes], base_seq: int) -> dict[int, dict[bytes, bytes]]:
    """The writer's state after each of its commits, from its log of (seq, i)."""
    state = dict(base)
    out = {base_seq: dict(state)}
    for seq, i in log:
        key = b"k%04d" % (i % 97)
        if i % 11 == 10:
            state.pop(key, None)
        else:
            state[key] = b"%d" % i + b"x" * 40
        out[seq] = dict(state)
    return out


async def test_backups_by_a_reader_process_while_a_writer_process_compacts(tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with quanta.open(str(path)) as seed:
        await seed.kv.put(b"seed", b"0")
    count = 1500
    writer = spawn(COMPACTING_WRITER, path, count)
    backups: list[tuple[quanta.BackupInfo, dict[bytes, bytes]]] = []
    try:
        assert (await asyncio.to_thread(read_json, writer))["ready"] == 1
        log_task = asyncio.get_running_loop().run_in_executor(None, lambda: [read_json(writer) for _ in range(count)])
        async with quanta.open(str(path), read_only=True, follow_interval=0.005) as reader:
            for n in range(6):
                deadline = asyncio.get_running_loop().time() + TIMEOUT
                while reader.seq < (n + 1) * count // 7:  # spread over the writer's run
                    assert asyncio.get_running_loop().time() < deadline, "the reader stopped following"
                    await asyncio.sleep(0.01)
                dest = tmp_path / f"backup{n}"
                info = await asyncio.wait_for(reader.backup(dest), TIMEOUT)
                async with quanta.open(str(dest), create_if_missing=False) as copy:
                    assert copy.seq == info.seq
                    await copy.verify()  # clean (its open flushed the replayed WAL into one more table)
                    backups.append((info, await contents(copy)))
        log = await asyncio.wait_for(log_task, TIMEOUT)
        assert await asyncio.to_thread(writer.wait, TIMEOUT) == 0
    finally:
        kill(writer)
    states = history_states(log, {b"seed": b"0"}, 1)
    seqs = [info.seq for info, _ in backups]
    assert seqs == sorted(seqs) and seqs[-1] > seqs[0]  # they followed the writer
    for info, got in backups:
        assert got == states[info.seq]  # exactly the writer's state at that seq
    assert sum(info.copied for info, _ in backups) + sum(info.linked for info, _ in backups) > 0
