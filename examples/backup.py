"""Online backup and restore: back up a database while a writer keeps writing, back up again
incrementally, and restore by opening the backup.

Run it from a checkout:

    python examples/backup.py

It works in a temporary directory that is removed at the end. See docs/operations.md,
"Backup and restore".
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    _root = str(Path(__file__).resolve().parent.parent)
    sys.path.insert(0, _root)
    import quanta


async def tour(base: Path) -> None:
    src, dest = base / "app.db", base / "backups" / "app"
    async with quanta.open(src) as db:
        await db.kv.put_many((b"order:%06d" % i, b"pending") for i in range(10_000))
        await db.flush()

        stop = asyncio.Event()

        async def writer() -> None:  # the application keeps committing during the backup
            i = 0
            while not stop.is_set():
                await db.kv.put(b"order:%06d" % (i % 10_000), b"paid")
                i += 1

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.05)
        info = await db.backup(dest, progress=lambda done, total: None)
        stop.set()
        await task
        print(
            f"1. backup of every commit up to #{info.seq}: {info.tables} tables "
            f"({info.linked} hard-linked, {info.copied} copied), {info.bytes:,} bytes in {info.seconds * 1e3:.0f} ms"
        )
        print(f"   the database went on to commit #{(await db.stats())['last_seq']} meanwhile")

        await db.kv.put(b"order:999999", b"new")
        await db.flush()
        again = await db.backup(dest)  # the same destination: only what changed is added
        print(f"2. incremental backup up to #{again.seq}: {again.reused} tables reused, {again.linked} new")

    # Restore: a backup is an ordinary database directory. Open it where it is, or copy it
    # (with the application stopped) to where the application expects its database.
    restored = base / "restored.db"
    await asyncio.to_thread(shutil.copytree, dest, restored)
    async with quanta.open(restored, create_if_missing=False) as db:
        assert (await db.stats())["last_seq"] == again.seq
        assert await db.kv.get(b"order:999999") == b"new"
        await db.verify()
        print(f"3. restored copy opens at #{again.seq} and verifies")


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="quanta-backup-example-"))
    try:
        asyncio.run(tour(base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
