"""Resource limits on a real file system: a small one that fills up, and a read-only one.

The fault-injection tests (``test_faults.py``) raise ENOSPC and EROFS at every I/O point of a
simulated file layer; these do it for real, on a 4 MiB ``tmpfs`` mounted for the test, so the
errors come from the kernel through the real file layer (``OSFileSystem``) and the worker
processes. They need permission to mount (root on Linux) and are skipped elsewhere.

What must hold: a full disk surfaces as a ``quanta`` error (never a hang or a raw OSError);
every write acknowledged before it survives; the manifest never names a missing or truncated
table; once space is freed the database opens, verifies and accepts writes again. On a
read-only mount, opening for writing fails with a clear error before anything is written,
and ``read_only=True`` opens and reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import quanta

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None,
    reason="needs root and mount(8) on Linux to mount a small tmpfs",
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / f"smallfs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        _run("umount", "-l", str(mnt))


def _filler(mnt: Path, size: int) -> Path:
    path = mnt / "filler"
    with open(path, "wb") as f:
        f.write(b"\0" * size)
    return path


async def test_a_full_disk_is_a_clear_error_and_loses_nothing_acknowledged(small_fs: Path) -> None:
    path = small_fs / "db"
    filler = _filler(small_fs, 2 << 20)  # leave ~2 MiB for the database
    acknowledged: dict[bytes, bytes] = {}
    error: BaseException | None = None
    db = await quanta.open(path, memtable_bytes=256 << 10, durability="sync")
    try:
        for i in range(100_000):
            key, value = b"k%06d" % i, os.urandom(1000)
            try:
                await db.kv.put(key, value)
            except quanta.QuantaError as exc:
                error = exc
                break
            acknowledged[key] = value
    finally:
        try:
            await db.close()
        except quanta.QuantaError as exc:
            error = error or exc
    assert error is not None, "4 MiB cannot hold 100 MB: the disk never filled"
    assert isinstance(error, (quanta.StorageIOError, quanta.DatabaseFailedError)), repr(error)
    assert acknowledged, "some writes fit before the disk filled"

    filler.unlink()  # free the space, then everything acknowledged must be there
    async with quanta.open(path) as db:
        result = await db.verify()  # the manifest names only whole, readable tables
        assert result.tables >= 0
        found = {k: v async for k, v in db.kv.scan()}
        missing = [k for k in acknowledged if found.get(k) != acknowledged[k]]
        assert missing == [], f"{len(missing)} acknowledged writes lost, first {missing[:3]}"
        await db.kv.put(b"after", b"space freed")  # writable again
        assert await db.kv.get(b"after") == b"space freed"


async def test_compaction_on_a_full_disk_fails_cleanly_and_recovers(small_fs: Path) -> None:
    path = small_fs / "db"
    async with quanta.open(path, durability="os", memtable_bytes=128 << 10) as db:
        for batch in range(12):
            await db.kv.put_many([(b"k%02d-%04d" % (batch, i), os.urandom(100)) for i in range(1000)])
            await db.flush()
    filler = _filler(small_fs, max(0, shutil.disk_usage(small_fs).free - (64 << 10)))
    error: BaseException | None = None
    db = await quanta.open(path, durability="os")
    try:
        await db.compact()
    except quanta.QuantaError as exc:
        error = exc
    try:
        await db.close()
    except quanta.QuantaError as exc:
        error = error or exc
    assert error is not None, "a compaction with 64 KiB free should not fit"
    filler.unlink()
    async with quanta.open(path) as db:
        await db.verify()
        n = 0
        async for _ in db.kv.scan():
            n += 1
        assert n == 12 * 1000
        await db.compact()
        assert (await db.verify()).entries == 12 * 1000


async def test_a_read_only_mount_refuses_writers_and_serves_readers(small_fs: Path) -> None:
    path = small_fs / "db"
    async with quanta.open(path) as db:
        await db.kv.put_many([(b"k%03d" % i, b"v%03d" % i) for i in range(300)])
    done = _run("mount", "-o", "remount,ro", str(small_fs))
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    before = sorted(os.listdir(path))
    with pytest.raises(quanta.QuantaError) as info:
        await quanta.open(path)
    assert isinstance(info.value, (quanta.StorageIOError, quanta.ReadOnlyError)), repr(info.value)
    assert sorted(os.listdir(path)) == before  # nothing was written (it could not be)
    async with quanta.open(path, read_only=True, create_if_missing=False) as db:
        assert await db.kv.get(b"k007") == b"v007"
        assert len([k async for k, _ in db.kv.scan()]) == 300
        with pytest.raises(quanta.ReadOnlyError):
            await db.kv.put(b"x", b"y")
