"""A backup interrupted at every one of its I/O operations: by a power loss (the crash-
simulating file system, every variant of ``MemoryFileSystem.crash``) and by an I/O error
(transient and persistent). Whatever the point, the destination is

* absent or empty (only for a first backup: it opens as a new empty database, as an absent
  one would), or
* refused by ``open()`` with CorruptionError (``BACKUP-PENDING``: an unfinished backup), or
* complete: it opens, verifies, and holds exactly the database as of the backup's sequence
  number (for an incremental backup, the older backup's state is complete too);

never a directory that opens with partial data. After the interruption, running the backup
again completes it. The checker is tested too: a backup holding partial data is caught.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers_crash import freeze, write_summary

import quanta
from quanta._storage import filenames
from quanta._storage.vfs import FaultInjectingFileSystem, MemoryFileSystem, Op
from quanta._storage.wal import WalWriter
from quanta.errors import CorruptionError, StorageIOError

DEST = "/backup"
OPTIONS: dict[str, Any] = {
    "memtable_bytes": 4096,
    "block_size": 256,
    "target_file_bytes": 4096,
    "l0_compaction_trigger": 100,  # no background compaction while the backup runs
    "l0_stop_writes_trigger": 200,
    "compaction_executor": "loop",
}
VARIANTS: dict[str, dict[str, bool]] = {
    "drop": {},
    "garble": {"garble_tail": True},
    "keep_dir": {"keep_unsynced_dir_entries": True},
    "garble+keep_dir": {"garble_tail": True, "keep_unsynced_dir_entries": True},
}
SUMMARY: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    write_summary(request, SUMMARY)


def backup_op(op: Op) -> bool:
    """An operation of the backup (its destination, or the sync of its parent directory)."""
    return op.path == "/" or op.path == DEST or op.path.startswith(DEST + "/")


async def contents(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan()}


@dataclass
class Prepared:
    db: quanta.Database
    old: dict[bytes, bytes] | None  # the earlier backup's state (incremental), else None
    new: dict[bytes, bytes]  # the source's state: what the backup must hold


async def prepare(fs: MemoryFileSystem, incremental: bool) -> Prepared:
    db = await quanta.open("/db", fs=fs, **OPTIONS)
    for i in range(200):
        await db.kv.put(b"k%04d" % i, b"first %d" % i * 5)
    await db.flush()
    old = None
    if incremental:
        await db.backup(DEST)
        old = await contents(db)
        for i in range(0, 200, 3):
            await db.kv.put(b"k%04d" % i, b"second %d" % i * 5)
        await db.flush()
    for i in range(0, 200, 11):  # the newest writes only in the WAL
        await db.kv.delete(b"k%04d" % i)
    await db.kv.put(b"wal-only", b"x")
    return Prepared(db, old, await contents(db))


async def check_dest(fs: MemoryFileSystem, prep: Prepared) -> str:
    """Classify what a crashed or failed destination holds; raise AssertionError if it breaks
    the rules of the module docstring."""
    names = [n for n in fs.listdir(DEST) if n != filenames.LOCK] if fs.exists(DEST) else []
    if not names:
        assert prep.old is None, "an interrupted incremental backup lost the older backup"
        return "empty"
    if filenames.BACKUP_PENDING in names:
        for read_only in (True, False):
            with pytest.raises(CorruptionError, match="unfinished backup"):
                await quanta.open(DEST, fs=fs, read_only=read_only)
        return "refused"
    # read-only: a writable open would make it a database of its own (a rerun then refuses it)
    async with quanta.open(DEST, fs=fs, read_only=True) as copy:
        state = await contents(copy)
        await copy.verify()
    assert state in (prep.new, prep.old), "a backup opened with partial data"
    return "new" if state == prep.new else "old"


async def rerun(fs: MemoryFileSystem) -> None:
    """On the crashed files: open the source again, back up again, check the result."""
    async with quanta.open("/db", fs=fs, **OPTIONS) as db:
        info = await db.backup(DEST)
        expected = await contents(db)
    async with quanta.open(DEST, fs=fs, create_if_missing=False) as copy:
        assert await contents(copy) == expected
        assert (await copy.stats())["last_seq"] == info.seq


async def record_images(incremental: bool) -> tuple[list[MemoryFileSystem], Prepared]:
    fs = MemoryFileSystem()
    prep = await prepare(fs, incremental)
    images: list[MemoryFileSystem] = []

    def freeze_before(op: Op) -> None:
        if backup_op(op):
            with fs._mutex:
                images.append(freeze(fs))

    fs.fail_hook = freeze_before
    await prep.db.backup(DEST)
    fs.fail_hook = None
    with fs._mutex:
        images.append(freeze(fs))  # after the last operation
    await prep.db.close()
    return images, prep


@pytest.mark.parametrize("incremental", [False, True], ids=["first", "incremental"])
async def test_power_loss_at_every_io_of_a_backup(incremental: bool) -> None:
    images, prep = await record_images(incremental)
    seen: dict[str, int] = {}
    for point, image in enumerate(images):
        for name, variant in VARIANTS.items():
            crashed = image.crash(**variant)
            try:
                outcome = await check_dest(crashed, prep)
            except AssertionError as exc:
                raise AssertionError(f"crash point {point}/{len(images)} ({name}): {exc}") from exc
            seen[outcome] = seen.get(outcome, 0) + 1
            if name == "drop" or outcome == "refused":
                await rerun(crashed)
    assert seen.get("refused", 0) > 0 and seen.get("new", 0) > 0
    SUMMARY.append(
        f"backup crash[{'incremental' if incremental else 'first'}]: {len(images)} points x {len(VARIANTS)} variants, "
        f"outcomes {dict(sorted(seen.items()))}, 0 violations"
    )


async def test_the_check_catches_a_backup_with_partial_data() -> None:
    """The checker can fail: a complete backup whose WAL segment lost its batches (what a
    backup that made its files visible before writing them could leave) is caught."""
    images, prep = await record_images(incremental=False)
    final = images[-1].crash()
    assert await check_dest(final, prep) == "new"
    wal = next(n for n in final.listdir(DEST) if n.endswith(".wal"))
    WalWriter.create(final, DEST, int(wal.split(".")[0])).close()  # header only: no batches
    final.sync_dir(DEST)
    with pytest.raises(AssertionError, match="partial data"):
        await check_dest(final, prep)


@pytest.mark.parametrize(
    ("err", "persistent"), [(errno.EIO, False), (errno.ENOSPC, True)], ids=["EIO-transient", "ENOSPC-persistent"]
)
@pytest.mark.parametrize("incremental", [False, True], ids=["first", "incremental"])
async def test_io_error_at_every_io_of_a_backup(incremental: bool, err: int, persistent: bool) -> None:
    k = 0
    outcomes: dict[str, int] = {}
    while True:
        k += 1
        assert k < 500, "the backup never finished"
        fs = _BackupFaults(err, persistent)
        prep = await prepare(fs, incremental)
        fs.fail_at = k
        try:
            await prep.db.backup(DEST)
        except StorageIOError as exc:
            assert exc.errno == err
        else:
            assert fs.failed == 0
            await prep.db.close()
            break
        finally:
            fs.fail_at = 1 << 60
        assert fs.failed > 0
        assert not prep.db._engine.pins.pinned()
        assert await contents(prep.db) == prep.new  # the source is untouched and still writable
        await prep.db.kv.put(b"after", b"fault")  # (not in prep.new: the backup was taken before)
        await prep.db.close()
        for image in (fs.snapshot(), fs.crash()):
            outcome = await check_dest(image, prep)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            await rerun(image)
    assert outcomes.get("refused", 0) > 0
    SUMMARY.append(
        f"backup faults[{'incremental' if incremental else 'first'}, {errno.errorcode[err]}, "
        f"{'persistent' if persistent else 'transient'}]: {k - 1} fault points, "
        f"outcomes {dict(sorted(outcomes.items()))}"
    )


class _BackupFaults(FaultInjectingFileSystem):
    """Counts (and fails) only the backup's own operations, from ``fail_at`` on."""

    def __init__(self, err: int, persistent: bool) -> None:
        super().__init__(1 << 60, err=err, persistent=persistent)

    def _maybe_fail(self, op: Op) -> None:
        if backup_op(op) and self.fail_at < (1 << 60):
            super()._maybe_fail(op)
