"""Online backup (``db.backup``): a consistent copy as of one sequence number, taken while
writers write, that opens as an ordinary database; incremental reuse of tables; refusal of
destinations that hold anything else; files pinned against compaction while they are read."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path
from typing import Annotated, Any

import pytest
from waiting import eventually

import quanta
from quanta import Index, PrimaryKey, Unique
from quanta._storage import filenames
from quanta._storage.format import HEADER_SIZE
from quanta._storage.pins import FilePins
from quanta._storage.vfs import FileSystem, MemoryFileSystem, Op, OSFileSystem, _Inode
from quanta.errors import (
    CorruptionError,
    DatabaseClosedError,
    DatabaseExistsError,
    InvalidArgumentError,
    InvalidTypeError,
    NotADatabaseError,
    StorageIOError,
)

SMALL: dict[str, Any] = {
    "memtable_bytes": 4096,
    "block_size": 256,
    "l1_target_bytes": 8192,
    "target_file_bytes": 4096,
    "l0_compaction_trigger": 2,
    "compaction_executor": "loop",
}


async def contents(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan()}


async def fill(db: quanta.Database, n: int, tag: bytes = b"v", *, step: int = 1) -> None:
    for i in range(0, n, step):
        await db.kv.put(b"k%05d" % i, tag * 20 + b"%d" % i)
    for i in range(0, n, 7 * step):
        await db.kv.delete(b"k%05d" % i)


def dest_of(db_factory: Any, tmp_path: Path, name: str = "backup") -> str:
    return "/" + name if db_factory.fs is not None else str(tmp_path / name)


async def open_backup(db_factory: Any, path: str, **options: Any) -> quanta.Database:
    if db_factory.fs is not None:
        options.setdefault("fs", db_factory.fs)
    return await quanta.open(path, **options)


# --------------------------------------------------------------------------- basics


async def test_backup_opens_as_the_same_database(db_factory: Any, tmp_path: Path) -> None:
    db = await db_factory(**SMALL)
    await fill(db, 400)
    await db.flush()
    await fill(db, 50, b"w", step=3)  # some of it only in the WAL (the memtable)
    expected = await contents(db)
    dest = dest_of(db_factory, tmp_path)
    seen: list[tuple[int, int]] = []
    info = await db.backup(dest, progress=lambda done, total: seen.append((done, total)))
    assert info.seq == (await db.stats())["last_seq"]
    assert info.tables == len(list(db._engine.version.files())) > 0
    assert info.tables == info.linked + info.copied + info.reused
    assert info.linked == info.tables and info.reused == 0  # same file system: hard links
    assert info.wal_bytes > HEADER_SIZE
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
    await db.kv.put(b"after", b"not in the backup")
    async with await open_backup(db_factory, dest) as copy:
        assert await contents(copy) == expected
        assert (await copy.stats())["last_seq"] == info.seq
        await copy.verify()
        await copy.kv.put(b"new", b"the copy is an ordinary database")
    assert await db.kv.get(b"new") is None


async def test_backup_of_an_empty_database(db_factory: Any, tmp_path: Path) -> None:
    db = await db_factory()
    dest = dest_of(db_factory, tmp_path)
    info = await db.backup(dest)
    assert (info.tables, info.wal_bytes) == (0, HEADER_SIZE)
    async with await open_backup(db_factory, dest, create_if_missing=False) as copy:
        assert await contents(copy) == {}


@pytest.mark.parametrize("mode", ["link", "copy"])
async def test_backup_while_a_writer_commits(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real files, the default executor (flushes and compactions in a worker process): a
    writer overwrites and deletes keys without pause during the backup; the backup equals the
    database at ``info.seq``, rebuilt from the change stream. ``copy``: as on another device
    (the copy takes long enough that commits land while it runs)."""
    if mode == "copy":

        def no_links(self: OSFileSystem, src: str, dst: str) -> None:
            raise StorageIOError("link failed: cross-device link (injected)", errno=errno.EXDEV, path=src)

        monkeypatch.setattr(OSFileSystem, "link", no_links)
    src = str(tmp_path / "db")
    async with quanta.open(src, memtable_bytes=64 << 10, target_file_bytes=64 << 10, l1_target_bytes=256 << 10) as db:
        for part in range(4):
            await db.kv.put_many((b"k%05d" % i, b"x" * 100) for i in range(part * 10_000, (part + 1) * 10_000))
        await db.flush()
        history: dict[int, list[tuple[bytes, bytes | None]]] = {}
        stream = db.changes(buffer=1 << 20)
        base = await contents(db)
        base_seq = (await db.stats())["last_seq"]
        stop = asyncio.Event()
        writes = 0

        async def writer() -> None:
            nonlocal writes
            i = 0
            while not stop.is_set():
                key = b"k%05d" % ((i * 7919) % 45_000)
                if i % 5 == 4:
                    await db.kv.delete(key)
                else:
                    await db.kv.put(key, b"w%d" % i * 10)
                i += 1
                writes += 1

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.05)
        before = writes
        info = await db.backup(tmp_path / "backup")
        during = writes - before
        await asyncio.sleep(0.05)
        stop.set()
        await task
        assert info.tables > 0 and (info.copied if mode == "copy" else info.linked) == info.tables
        if mode == "copy":
            assert during > 0, "no commit happened during the backup"
        end_seq = (await db.stats())["last_seq"]
        assert end_seq > info.seq
        async with stream:
            async for change_set in stream:
                history[change_set.seq] = [(c.key, c.value) for c in change_set.changes]
                if change_set.seq >= end_seq:
                    break
    state = dict(base)
    for seq in sorted(history):
        if base_seq < seq <= info.seq:
            for key, value in history[seq]:
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
    async with quanta.open(tmp_path / "backup", create_if_missing=False) as copy:
        got = await contents(copy)
        assert (await copy.stats())["last_seq"] == info.seq
        await copy.verify()
    assert got == state


# --------------------------------------------------------------------------- pins


class Gate:
    """Blocks the backup's worker thread at the first operation matching ``match`` until
    released, so the test can make the source flush and compact meanwhile."""

    def __init__(self, fs: MemoryFileSystem, match: Any) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.match = match
        fs.fail_hook = self

    def __call__(self, op: Op) -> None:
        if not self.entered.is_set() and self.match(op):
            self.entered.set()
            assert self.release.wait(20)


async def test_tables_a_backup_reads_survive_a_compaction() -> None:
    fs = MemoryFileSystem()
    async with quanta.open("/db", fs=fs, **SMALL) as db:
        await fill(db, 300)
        await db.flush()
        expected = await contents(db)
        gate = Gate(fs, lambda op: op.kind == "link")
        task = asyncio.create_task(db.backup("/backup"))
        try:
            await asyncio.to_thread(gate.entered.wait, 20)
            # What the backup holds, read once it holds it: a background compaction the flush
            # started may have replaced tables before the backup began.
            pinned = sorted(p for p in db._engine.pins.pinned() if p.endswith(".sst"))
            assert pinned
            await fill(db, 300, b"z")
            await db.compact()  # every pinned table is compacted away ...
            live = {f"/db/{filenames.table_name(m.number)}" for _, m in db._engine.version.files()}
            assert not live & set(pinned)
            assert all(p in fs.files for p in pinned)  # ... but its removal waits for the backup
        finally:
            gate.release.set()
        info = await task
        assert not any(p in fs.files for p in pinned)  # removed once the backup is done
        assert not db._engine.pins.pinned()
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == expected
        assert (await copy.stats())["last_seq"] == info.seq


async def test_without_pins_the_compaction_breaks_the_backup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous test can fail: with removals not deferred the backup loses its tables."""

    def remove_now(self: FilePins, fs: FileSystem, paths: list[str]) -> None:
        for path in paths:
            fs.remove(path)

    monkeypatch.setattr(FilePins, "remove", remove_now)
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, **SMALL)
    await fill(db, 300)
    await db.flush()
    gate = Gate(fs, lambda op: op.kind == "link")
    task = asyncio.create_task(db.backup("/backup"))
    await asyncio.to_thread(gate.entered.wait, 20)
    await fill(db, 300, b"z")
    await db.compact()
    gate.release.set()
    with pytest.raises(StorageIOError):
        await task
    await db.close()


async def test_wal_segments_a_backup_reads_survive_a_flush() -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, **{**SMALL, "memtable_bytes": 1 << 20})
    await fill(db, 200)  # all in the memtable and its WAL segment
    expected = await contents(db)
    wal = f"/db/{filenames.wal_name(db._engine.mem.wal_number)}"
    gate = Gate(fs, lambda op: op.kind == "create" and op.path.startswith("/backup/") and op.path.endswith(".wal"))
    task = asyncio.create_task(db.backup("/backup"))
    await asyncio.to_thread(gate.entered.wait, 20)
    await fill(db, 200, b"z")
    await db.flush()  # the segment's memtable is now a table; the segment is obsolete
    # the flush asks (in the background, a moment after it returns) to remove the segment
    await eventually(lambda: wal in db._engine.pins._deferred, what="the removal deferred")
    assert wal in fs.files  # kept: the backup reads it
    gate.release.set()
    info = await task
    await eventually(lambda: wal not in fs.files, what="the segment removed")  # removed once the backup let it go
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == expected
        assert (await copy.stats())["last_seq"] == info.seq
    await db.close()


# --------------------------------------------------------------------------- incremental


async def test_incremental_backup_reuses_the_tables_it_has(db_factory: Any, tmp_path: Path) -> None:
    db = await db_factory(**{**SMALL, "l0_compaction_trigger": 100, "l0_stop_writes_trigger": 200})
    await fill(db, 300)
    await db.flush()
    dest = dest_of(db_factory, tmp_path)

    def tables_in_dest() -> set[int]:
        names = os.listdir(dest) if db_factory.fs is None else db_factory.fs.listdir(dest)
        assert filenames.BACKUP in names and filenames.BACKUP_PENDING not in names
        return {p[1] for p in map(filenames.parse_name, names) if p is not None and p[0] == "sst"}

    first = await db.backup(dest)
    old = tables_in_dest()
    assert old == {m.number for _, m in db._engine.version.files()}
    await fill(db, 60, b"n", step=5)
    await db.flush()
    await db.compact()  # some old tables go, new ones come
    await fill(db, 30, b"m", step=3)
    await db.flush()
    second = await db.backup(dest)
    now = tables_in_dest()  # what only the old backup needed is gone
    assert now == {m.number for _, m in db._engine.version.files()}
    assert second.reused == len(old & now)
    assert second.linked == len(now - old) > 0
    assert second.seq > first.seq
    third = await db.backup(dest)  # nothing changed: everything is reused
    assert (third.reused, third.linked, third.seq) == (len(now), 0, second.seq)
    expected = await contents(db)
    async with await open_backup(db_factory, dest) as copy:
        assert await contents(copy) == expected


async def test_copies_are_reused_only_when_their_bytes_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system cannot hard-link, tables are copied; on the next backup a copy is
    reused only if its size and CRC match the source's: a damaged copy is copied again."""
    fs = MemoryFileSystem()

    def no_links(src: str, dst: str) -> None:
        raise StorageIOError("link failed: cross-device link (injected)", errno=errno.EXDEV, path=src)

    monkeypatch.setattr(fs, "link", no_links)
    db = await quanta.open("/db", fs=fs, **SMALL)
    await fill(db, 300)
    await db.flush()
    first = await db.backup("/backup")
    assert first.copied == first.tables > 1 and first.linked == 0
    assert first.bytes_written > sum(m.size for _, m in db._engine.version.files())
    victim = f"/backup/{filenames.table_name(next(iter(db._engine.version.files()))[1].number)}"
    damaged = bytearray(fs.files[victim].data)
    damaged[40] ^= 0xFF
    fs.files[victim] = fs.durable[victim] = _Inode(damaged, len(damaged))
    second = await db.backup("/backup")
    assert (second.reused, second.copied) == (first.tables - 1, 1)
    async with quanta.open("/backup", fs=fs) as copy:
        await copy.verify()  # the damaged copy was replaced
        assert await contents(copy) == await contents(db)
    await db.close()


# --------------------------------------------------------------------------- refusals


async def test_destinations_that_hold_something_else_are_refused(db_factory: Any, tmp_path: Path) -> None:
    db = await db_factory()
    await db.kv.put(b"k", b"v")
    fs: FileSystem = db._engine.fs

    def listing(path: str) -> list[str]:
        return fs.listdir(path)

    def write(path: str, data: bytes) -> None:
        fs.mkdir(os.path.dirname(path))
        f = fs.create(path)
        f.write(data)
        f.sync()
        f.close()

    # random files
    other = dest_of(db_factory, tmp_path, "other")
    write(os.path.join(other, "notes.txt"), b"mine")
    with pytest.raises(NotADatabaseError, match="other files"):
        await db.backup(other)
    assert listing(other) == ["notes.txt"]
    # a file, not a directory
    with pytest.raises(NotADatabaseError, match="not a directory"):
        await db.backup(os.path.join(other, "notes.txt"))
    # another database
    another = dest_of(db_factory, tmp_path, "another")
    foreign = dest_of(db_factory, tmp_path, "foreign")
    async with await open_backup(db_factory, another) as second:
        await second.kv.put(b"x", b"y")
        await second.backup(foreign)
    before = listing(another)
    with pytest.raises(DatabaseExistsError, match="not a backup"):
        await db.backup(another)
    assert listing(another) == before
    # a backup of another database
    before = listing(foreign)
    with pytest.raises(DatabaseExistsError, match="another database"):
        await db.backup(foreign)
    assert listing(foreign) == before
    # a backup that was opened and written to since
    ours = dest_of(db_factory, tmp_path, "ours")
    await db.backup(ours)
    async with await open_backup(db_factory, ours) as reopened:
        await reopened.kv.put(b"changed", b"since")
    with pytest.raises(DatabaseExistsError, match="opened and written to"):
        await db.backup(ours)
    # the database directory itself, or inside it
    with pytest.raises(InvalidArgumentError, match="inside"):
        await db.backup(db.path)
    with pytest.raises(InvalidArgumentError, match="inside"):
        await db.backup(os.path.join(db.path, "sub"))


async def test_bad_arguments(db_factory: Any, tmp_path: Path) -> None:
    db = await db_factory()
    with pytest.raises(InvalidTypeError):
        await db.backup(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        await db.backup(b"/x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await db.backup("")
    with pytest.raises(InvalidTypeError):
        await db.backup(dest_of(db_factory, tmp_path), progress=3)  # type: ignore[arg-type]
    assert not (tmp_path / "backup").exists()
    await db.close()
    with pytest.raises(DatabaseClosedError):
        await db.backup(dest_of(db_factory, tmp_path))


async def test_a_backup_in_progress_is_refused_by_open_and_completed_by_a_rerun() -> None:
    """Cancelling the backup mid-way leaves the destination refused by open(); running the
    backup again completes it; the source's pins are released."""
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, **SMALL)
    await fill(db, 300)
    await db.flush()
    gate = Gate(fs, lambda op: op.kind == "link")
    task = asyncio.create_task(db.backup("/backup"))
    await asyncio.to_thread(gate.entered.wait, 20)
    task.cancel()
    gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not db._engine.pins.pinned()
    assert filenames.BACKUP_PENDING in fs.listdir("/backup")
    for read_only in (False, True):
        with pytest.raises(CorruptionError, match="unfinished backup"):
            await quanta.open("/backup", fs=fs, read_only=read_only)
    info = await db.backup("/backup")
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == await contents(db)
        assert (await copy.stats())["last_seq"] == info.seq
    await db.close()


async def test_a_read_only_database_can_be_backed_up() -> None:
    """A read-only database whose memtable came from its WAL (the writer was killed)."""
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, **SMALL)
    await fill(db, 300)
    await db.flush()
    await db.kv.put(b"only-in-the-wal", b"1")
    await db.kv.delete(b"k00001")
    expected = await contents(db)
    killed = fs.snapshot()  # the files as a kill -9 leaves them: nothing flushed at close
    await db.close()
    ro = await quanta.open("/db", fs=killed, read_only=True)
    assert (await ro.stats())["memtable_entries"] > 0
    info = await ro.backup("/backup")
    assert info.wal_bytes > HEADER_SIZE
    await ro.close()
    async with quanta.open("/backup", fs=killed, read_only=True) as copy:
        assert await contents(copy) == expected


# --------------------------------------------------------------------------- entities


@quanta.entity(name="BackupPerson", indexes=[Index("city", "age")])
class Person:
    id: Annotated[int, PrimaryKey()]
    email: Annotated[str, Unique()]
    city: str
    age: int = 0


async def test_a_backup_holds_the_entities_and_their_indexes(tmp_path: Path) -> None:
    async with quanta.open(tmp_path / "db", entities=[Person], memtable_bytes=16 << 10) as db:
        people = db.collection(Person)
        await people.put_many(
            Person(id=i, email=f"p{i}@x.org", city=["Oslo", "Rome"][i % 2], age=20 + i % 50) for i in range(2000)
        )
        await people.delete(7)
        query = people.where(Person.city == "Rome", quanta.between(Person.age, 30, 39)).order_by(Person.age)
        expected = await query.all()
        await db.backup(tmp_path / "backup")
    async with quanta.open(tmp_path / "backup", entities=[Person], create_if_missing=False) as copy:
        people = copy.collection(Person)
        query = people.where(Person.city == "Rome", quanta.between(Person.age, 30, 39)).order_by(Person.age)
        assert await query.all() == expected
        assert await people.count() == 1999
        assert await people.get(7) is None
        assert (await copy.verify(deep=True)).problems == ()


async def test_a_commit_appended_but_not_yet_durable_is_not_in_the_backup() -> None:
    """durability="sync": a batch in the WAL whose fsync has not returned is not visible, so
    it is not in the backup either (the WAL is copied up to the last visible batch)."""
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs)
    await db.kv.put(b"durable", b"1")
    wal = db._engine.wal
    assert wal is not None
    active = f"/db/{filenames.wal_name(wal.number)}"  # not a spare segment being prepared
    gate = Gate(fs, lambda op: op.kind == "sync" and op.path == active)
    task = asyncio.create_task(db.kv.put(b"in-flight", b"2"))
    await asyncio.to_thread(gate.entered.wait, 20)
    assert db._engine.inflight()  # appended, fsync running
    info = await db.backup("/backup")
    gate.release.set()
    await task
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == {b"durable": b"1"}
        assert (await copy.stats())["last_seq"] == info.seq
    await db.close()


@pytest.mark.parametrize("durability", ["sync", "os"])
async def test_the_wal_tail_is_cut_at_the_backup_seq(durability: str) -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, durability=durability)
    for i in range(50):
        await db.kv.put(b"k%02d" % i, b"v%d" % i)
    expected = await contents(db)
    info = await db.backup("/backup")
    await db.kv.put(b"later", b"x")
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == expected
        assert (await copy.stats())["last_seq"] == info.seq
    await db.close()


async def test_closing_the_database_stops_a_backup_and_leaves_it_unfinished() -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, **SMALL)
    await fill(db, 300)
    await db.flush()
    assert len(list(db._engine.version.files())) > 1
    gate = Gate(fs, lambda op: op.kind == "link")
    task = asyncio.create_task(db.backup("/backup"))
    await asyncio.to_thread(gate.entered.wait, 20)
    await db.close()
    gate.release.set()
    with pytest.raises(DatabaseClosedError, match="closed during the backup"):
        await task
    with pytest.raises(CorruptionError, match="unfinished backup"):
        await quanta.open("/backup", fs=fs)
    async with quanta.open("/db", fs=fs) as again:
        await again.backup("/backup")  # completes it
        expected = await contents(again)
    async with quanta.open("/backup", fs=fs) as copy:
        assert await contents(copy) == expected


async def test_two_backups_into_one_destination_at_once_are_refused() -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs, **SMALL)
    await fill(db, 300)
    await db.flush()
    gate = Gate(fs, lambda op: op.kind == "link")
    first = asyncio.create_task(db.backup("/backup"))
    await asyncio.to_thread(gate.entered.wait, 20)
    with pytest.raises(quanta.DatabaseLockedError):
        await db.backup("/backup")
    other = await db.backup("/other")  # another destination at the same time is fine
    gate.release.set()
    info = await first
    assert info.seq == other.seq
    assert not db._engine.pins.pinned()
    await db.close()


def test_a_damaged_backup_record_is_a_corruption_error() -> None:
    """The BACKUP / BACKUP-PENDING record (three lines, the last a CRC-32 of the first two):
    a flipped byte, a wrong checksum or a well-checksummed record with bad fields is a
    CorruptionError naming the file, never a record read as valid."""
    from quanta._storage.backup import FORMAT_LINE, _Record  # the record format's own tests
    from quanta._storage.format import checksum

    good = _Record(source="/db", seq=7, manifest=3, wal=2, tables=(5, 6), created=1.5).encode()
    assert _Record.decode(good, "/b/BACKUP").seq == 7
    flipped = good.replace(b'"seq": 7', b'"seq": 8')
    with pytest.raises(CorruptionError, match="checksum mismatch"):
        _Record.decode(flipped, "/b/BACKUP")
    body = b'{"source": "/db", "seq": 1, "manifest": 1, "wal": 1, "tables": ["x"], "created": 0}\n'
    text = FORMAT_LINE + body
    with pytest.raises(CorruptionError, match="malformed backup record"):
        _Record.decode(text + b"crc32 %08x\n" % checksum(text), "/b/BACKUP")
    with pytest.raises(CorruptionError, match="not a QuantaDB backup record"):
        _Record.decode(b"hello\n", "/b/BACKUP")


async def test_a_backup_into_a_destination_whose_record_is_damaged_is_refused() -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs)
    try:
        await db.kv.put(b"a", b"1")
        await db.backup("/backup")
        data = fs.read_all("/backup/BACKUP")
        w = fs.create("/backup/BACKUP")
        w.write(data.replace(b"crc32 ", b"crc32 0"))
        w.sync()
        w.close()
        before = {p: bytes(fs.read_all(p)) for p in fs.files if p.startswith("/backup/")}
        with pytest.raises(CorruptionError, match="backup record"):
            await db.backup("/backup")
        assert {p: bytes(fs.read_all(p)) for p in fs.files if p.startswith("/backup/")} == before
    finally:
        await db.close()


async def test_a_backup_whose_current_is_damaged_is_refused_and_a_damaged_pending_marker_alone_is_restarted() -> None:
    fs = MemoryFileSystem()
    db = await quanta.open("/db", fs=fs)
    try:
        await db.kv.put(b"a", b"1")
        await db.backup("/backup")
        fs.remove("/backup/CURRENT")  # a backup directory someone damaged
        with pytest.raises(DatabaseExistsError, match="damaged backup"):
            await db.backup("/backup")
        # A crash while BACKUP-PENDING itself was written leaves only a damaged marker: the
        # directory is as empty as before, and the next backup starts over.
        fs.mkdir("/fresh")
        w = fs.create("/fresh/BACKUP-PENDING")
        w.write(b"QuantaDB backup 1\n{tor")
        w.sync()
        w.close()
        info = await db.backup("/fresh")
        assert info.seq == db.seq
    finally:
        await db.close()
    async with quanta.open("/fresh", fs=fs) as copy:
        assert await copy.kv.get(b"a") == b"1"
