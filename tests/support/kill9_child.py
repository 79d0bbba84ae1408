"""The writer that tests/storage/test_kill9.py kills with SIGKILL. Not a test module.

``python tests/support/kill9_child.py PATH ITERATION WRITERS`` opens the database at PATH with
durability="sync" and tiny memtables (so flushes and compactions run all the time, in worker
processes), prints ``ready``, and then runs WRITERS concurrent writer tasks until it is
killed. Each commit has an id, unique across iterations; writer ``w`` of iteration ``i``
issues ids ``i * ID_SPAN + w + WRITERS * n`` for n = 0, 1, 2, ... one at a time, and prints
the id on its own line (flushed) only after the commit returned: that line is the
acknowledgement. The content of a commit is a pure function of its id (``commit_ops``), so the
parent can check what it finds without any other record.
"""

from __future__ import annotations

import asyncio
import os
import sys

# Make `import quanta` work when run as a script from anywhere (the repo root is one up).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import quanta

ID_SPAN = 10_000_000  # ids of one iteration: [i * ID_SPAN, (i + 1) * ID_SPAN)
DELETE_BACK = 3  # batch c deletes key 0 of the same writer's batch 3 commits earlier

OPTIONS = {
    "durability": "sync",
    "memtable_bytes": 8 * 1024,
    "block_size": 512,
    "l0_compaction_trigger": 2,
    "l1_target_bytes": 32 * 1024,
    "target_file_bytes": 16 * 1024,
    "compaction_executor": "process",
}


def is_batch(c: int) -> bool:
    return c % 3 != 0


def batch_size(c: int) -> int:
    return 2 + c % 7


def value_of(c: int) -> bytes:
    return b"%d|" % c + b"x" * (c % 60)


def batch_key(c: int, j: int) -> bytes:
    return b"b:%012d:%d" % (c, j)


def single_key(c: int) -> bytes:
    return b"s:%012d" % c


def writer_key(iteration: int, w: int) -> bytes:
    return b"w:%06d:%d" % (iteration, w)


def commit_ops(c: int, iteration: int, writers: int) -> list[tuple[bytes, bytes | None]]:
    """The operations of commit ``c``: a single put, or a batch that puts ``batch_size(c)``
    keys, overwrites its writer's ``w:`` key with ``c``, and deletes key 0 of the same
    writer's batch ``DELETE_BACK`` commits earlier."""
    if not is_batch(c):
        return [(single_key(c), value_of(c))]
    w = (c - iteration * ID_SPAN) % writers
    ops: list[tuple[bytes, bytes | None]] = [(batch_key(c, j), value_of(c)) for j in range(batch_size(c))]
    ops.append((writer_key(iteration, w), b"%d" % c))
    ops.append((batch_key(c - DELETE_BACK * writers, 0), None))
    return ops


async def writer(db: quanta.Database, iteration: int, w: int, writers: int) -> None:
    c = iteration * ID_SPAN + w
    out = sys.stdout
    while True:
        ops = commit_ops(c, iteration, writers)
        if len(ops) == 1:
            await db.kv.put(*ops[0])  # type: ignore[arg-type]
        else:
            batch = db.kv.batch()
            for key, value in ops:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            await batch.commit()
        out.write(f"{c}\n")
        out.flush()
        c += writers


async def main(path: str, iteration: int, writers: int) -> None:
    db = await quanta.open(path, **OPTIONS)
    print("ready", flush=True)
    tasks = [asyncio.create_task(writer(db, iteration, w, writers)) for w in range(writers)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)  # nobody killed us: stop
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
