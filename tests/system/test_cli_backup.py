"""``quanta backup SRC DEST``, run as a user runs it (subprocesses): exit 0 with a summary,
incremental on a second run, 1 with a one-line message on a refused destination, never a
traceback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import quanta

TIMEOUT = 120


def cli(*args: str | Path, check: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "quanta", *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


async def build(path: Path) -> dict[bytes, bytes]:
    async with quanta.open(path, memtable_bytes=8192) as db:
        await db.kv.put_many([(b"k%04d" % i, b"value %d" % i) for i in range(500)])
        await db.flush()
        await db.kv.put(b"late", b"in the WAL until close")
        return {k: v async for k, v in db.kv.scan()}


async def read(path: Path) -> dict[bytes, bytes]:
    async with quanta.open(path, read_only=True) as db:
        return {k: v async for k, v in db.kv.scan()}


def test_backup_command_full_then_incremental(tmp_path: Path) -> None:
    expected = asyncio.run(build(tmp_path / "db"))
    out = cli("backup", tmp_path / "db", tmp_path / "bk", "--progress")
    assert "every commit up to #" in out.stdout and "linked" in out.stdout
    assert "backing up" in out.stderr and " kB" in out.stderr  # rich.progress: the label, bytes done/total
    assert asyncio.run(read(tmp_path / "bk")) == expected
    again = cli("backup", tmp_path / "db", tmp_path / "bk").stdout
    assert "(0 linked, 0 copied, " in again and "reused" in again
    assert asyncio.run(read(tmp_path / "bk")) == expected


def test_backup_command_refuses_a_foreign_destination(tmp_path: Path) -> None:
    asyncio.run(build(tmp_path / "db"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    err = cli("backup", tmp_path / "db", tmp_path / "other", check=1).stderr
    assert "NotADatabaseError" in err and "other files" in err
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]
    assert "DatabaseNotFoundError" in cli("backup", tmp_path / "missing", tmp_path / "bk2", check=1).stderr
    assert "Missing argument 'dest'" in cli("backup", tmp_path / "db", check=2).stderr
