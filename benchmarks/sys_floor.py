"""The pure-Python floor: what the building blocks cost on this machine, before any database.

These numbers bound what an engine written in Python can reach: a memtable insert cannot beat a
``SortedDict`` insert, a value read cannot beat ``msgpack.unpackb``, and an ``await db.kv.get``
cannot beat awaiting a coroutine that returns at once, and a scan row cannot beat ``async for``
over an async generator (per row). The thread hop is what every aiosqlite
call (and any ``to_thread`` in a hot path) pays.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgpack
from _harness import Trial, now_ns
from sortedcontainers import SortedDict


async def _trivial() -> int:
    return 1


async def _agen(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def _async_floor(ops: int) -> dict[str, float]:
    t = now_ns()
    for _ in range(ops):
        await _trivial()
    await_ns = (now_ns() - t) / ops

    items = [b"x"] * ops
    t = now_ns()
    async for _item in _agen(items):
        pass
    agen_ns = (now_ns() - t) / ops

    t = now_ns()
    for _ in range(ops // 10):
        await asyncio.sleep(0)
    sleep0_ns = (now_ns() - t) / (ops // 10)

    loop = asyncio.get_running_loop()
    hops = 2000
    t = now_ns()
    for _ in range(hops):
        await loop.run_in_executor(None, int)
    hop_ns = (now_ns() - t) / hops
    return {
        "await_coroutine_ns": await_ns,
        "async_for_item_ns": agen_ns,
        "sleep0_ns": sleep0_ns,
        "thread_hop_us": hop_ns / 1e3,
    }


def floor(trial: Trial) -> dict[str, Any]:
    records = trial.records()
    n = len(records)
    out: dict[str, float] = {}

    sd: SortedDict = SortedDict()
    t = now_ns()
    for k, v in records:
        sd[k] = v
    elapsed = now_ns() - t
    out["sorteddict_insert_100k_ms"] = elapsed / 1e6 * (100_000 / n)
    out["sorteddict_insert_ns"] = elapsed / n

    d = dict(records)
    keys = [k for k, _v in records]
    t = now_ns()
    for k in keys:
        d[k]
    out["dict_get_ns"] = (now_ns() - t) / n

    t = now_ns()
    for k in keys:
        sd[k]
    out["sorteddict_get_ns"] = (now_ns() - t) / n

    values = [v for _k, v in records]
    unpackb, packb = msgpack.unpackb, msgpack.packb
    t = now_ns()
    objs = [unpackb(v) for v in values]
    out["msgpack_unpackb_ns"] = (now_ns() - t) / n
    t = now_ns()
    for o in objs:
        packb(o)
    out["msgpack_packb_ns"] = (now_ns() - t) / n

    out.update(asyncio.run(_async_floor(n)))
    return {"floor": out}


GROUPS = {"floor": floor}
