"""The cost of the coroutine per buffered transaction write (docs/transactions.md).

Buffers 200,000 puts in one transaction twice each way: through the synchronous buffering
method the entity layer uses, and through ``await tx.kv.put``. Run:
``PYTHONPATH=. python benchmarks/tx_put_coroutine.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time

import quanta
from quanta._kv import check_key, check_value

N = 200_000


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        async with quanta.open(d) as db:
            keys = [b"k%08d" % i for i in range(N)]
            for label in ("sync", "await", "sync", "await"):
                tx = db.transaction()
                kv = tx.kv
                t = time.perf_counter()
                if label == "sync":
                    buffer = kv._buffer
                    for k in keys:
                        key, value = check_key(k), check_value(b"v")
                        buffer(key, value, len(key) + len(value))
                else:
                    for k in keys:
                        await kv.put(k, b"v")
                dt = time.perf_counter() - t
                print(f"{label:6s} {dt / N * 1e9:7.0f} ns/put")
                await tx.rollback()


if __name__ == "__main__":
    asyncio.run(main())
