"""Fault sweeps of a reader's file reads (quanta/_storage/follower.py).

A reader beside a running writer reads files the writer may remove or replace at any moment,
and may meet a failing disk. Each sweep counts the reader's file operations (CURRENT and
other whole-file reads, opens, directory listings) in one load or one poll, then repeats it
once per operation with that operation failing, either as a file that vanished (ENOENT: what
a writer's compaction, WAL removal or MANIFEST rollover looks like) or as an I/O error (EIO).

The contract checked at every point:
- a vanished file is never an error where the writer can make it vanish (CURRENT, the
  MANIFEST, a table, a WAL segment): the load retries, the poll looks again later, and the
  reader ends at exactly the writer's state;
- any other failure is a ``quanta`` error (``StorageIOError``, or ``CorruptionError`` when the
  load gives up), never a wrong answer: a reader that could not open does not open, and a
  reader whose poll failed keeps serving its last state (and says why on ``catch_up``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import pytest

import quanta
from quanta._storage.vfs import MemoryFileSystem, ReadableFile

# No automatic flush or compaction: the writer changes files only when the test says so.
QUIET = {
    "memtable_bytes": 1 << 24,
    "l0_compaction_trigger": 100,
    "l0_stop_writes_trigger": 200,
    "compaction_executor": "loop",
    "durability": "os",
}


@dataclass
class Injection:
    at: int  # the index of the armed operation that fails
    code: int  # errno.ENOENT or errno.EIO


class SweptFS(MemoryFileSystem):
    """Counts the file operations made while ``armed`` and fails the ``inject.at``-th."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.seen: list[tuple[str, str]] = []
        self.inject: Injection | None = None

    def _maybe_fail(self, kind: str, path: str) -> None:
        if not self.armed:
            return
        self.seen.append((kind, path))
        inj = self.inject
        if inj is not None and len(self.seen) - 1 == inj.at:
            why = "No such file or directory" if inj.code == errno.ENOENT else "Input/output error"
            raise quanta.StorageIOError(f"{kind} failed for {path}: {why} (injected)", errno=inj.code, path=path)

    def open_read(self, path: str) -> ReadableFile:
        self._maybe_fail("open", path)
        return super().open_read(path)

    def read_all(self, path: str) -> bytes:
        self._maybe_fail("read", path)
        return super().read_all(path)

    def listdir(self, path: str) -> list[str]:
        self._maybe_fail("listdir", path)
        return super().listdir(path)


def vanishable(kind: str, path: str) -> bool:
    """A file a writer removes or replaces while readers run (not the directory itself)."""
    return kind in ("open", "read") and path != "/db"


async def state(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan()}


async def build(fs: SweptFS) -> quanta.Database:
    """A writer with two levels of tables, a flushed L0 table and a WAL tail."""
    writer = await quanta.open("/db", fs=fs, **QUIET)
    for i in range(60):
        await writer.kv.put(b"k%03d" % i, b"v%d" % i)
        if i in (20, 40):
            await writer.flush()
        if i == 30:
            await writer.compact()
    await writer.kv.delete(b"k005")
    return writer


async def test_a_reader_load_survives_every_file_vanishing_and_fails_clearly_on_io_errors() -> None:
    fs = SweptFS()
    writer = await build(fs)
    expected = await state(writer)
    fs.armed = True
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    fs.armed = False
    ops = list(fs.seen)
    await reader.close()
    kinds = {kind for kind, _ in ops}
    assert {"open", "read", "listdir"} <= kinds, ops
    assert sum(path.endswith(".sst") for _, path in ops) >= 2, ops  # the sweep reaches the tables

    outcomes: dict[str, int] = {}
    for code in (errno.ENOENT, errno.EIO):
        for k, (kind, path) in enumerate(ops):
            fs.seen, fs.inject, fs.armed = [], Injection(k, code), True
            try:
                reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
            except (quanta.StorageIOError, quanta.CorruptionError) as exc:
                assert not (code == errno.ENOENT and vanishable(kind, path)), (kind, path, exc)
                outcomes["refused"] = outcomes.get("refused", 0) + 1
                continue
            finally:
                fs.armed = False
            try:
                assert await state(reader) == expected, (code, kind, path)
                assert reader.seq == writer.seq
            finally:
                await reader.close()
            outcomes["opened"] = outcomes.get("opened", 0) + 1
    # Every vanished file was ridden out; every I/O error on a file the load needs refused it.
    assert outcomes["opened"] >= sum(vanishable(k, p) for k, p in ops)
    assert outcomes["refused"] >= sum(k != "listdir" for k, _ in ops)
    await writer.close()


async def step(writer: quanta.Database, round_: int) -> None:
    """One round of writer work: commits, a flush (a new table, a WAL removed) and, every
    other round, a compaction (tables replaced) and a restart-free MANIFEST edit."""
    for i in range(15):
        await writer.kv.put(b"k%03d" % (round_ * 7 + i), b"r%d" % round_)
    await writer.flush()
    if round_ % 2:
        await writer.compact()
    await writer.kv.put(b"tail%d" % round_, b"x")


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EIO], ids=["vanished", "eio"])
async def test_a_reader_poll_survives_every_file_vanishing_and_stops_clearly_on_io_errors(code: int) -> None:
    fs = SweptFS()
    writer = await build(fs)
    reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
    await step(writer, 0)
    fs.armed = True
    await reader.catch_up()  # count the operations of one poll that sees a flush and new WAL
    fs.armed = False
    count = len(fs.seen)
    assert count >= 3, fs.seen
    assert await state(reader) == await state(writer)
    await reader.close()
    outcomes = {"stopped": 0, "followed": 0}

    for k in range(count + 2):  # two more: the sweep runs past the last operation it saw
        reader = await quanta.open("/db", fs=fs, read_only=True, follow_interval=0)
        before = await state(reader)
        assert before == await state(writer)
        await step(writer, k + 1)
        fs.seen, fs.inject, fs.armed = [], Injection(k, code), True
        try:
            await reader.catch_up()
        except quanta.StorageIOError as exc:
            fs.armed = False
            failed = fs.seen[-1]
            assert exc.errno == code
            assert not (code == errno.ENOENT and vanishable(*failed)), (failed, exc)
            # Following stopped; reads go on at the last state, and catch_up says why.
            assert await state(reader) == before
            with pytest.raises(quanta.DatabaseFailedError):
                await reader.catch_up()
            outcomes["stopped"] += 1
        else:
            fs.armed = False
            for _ in range(3):  # a vanished file is looked at again on a later poll
                await reader.catch_up()
            assert await state(reader) == await state(writer), (k, fs.seen)
            assert reader.seq == writer.seq
            outcomes["followed"] += 1
        finally:
            fs.armed = False
            await reader.close()
    await writer.close()
    print(outcomes)
