"""Metamorphic test: one random operation log, replayed under many configurations.

A seed gives a log of writes (put, delete, put_many, batch), reads (get, get_many, scans with
random bounds, prefix, direction and limit, reads through a snapshot while writes go on),
and maintenance (flush, compact, reopen). The log is replayed on a fresh in-memory file
system under each configuration in CONFIGS -- memtable, block, bloom, cache and file sizes,
durability, compaction triggers -- which change *how* the data is stored but never *what* a
read returns. The "history" (every read result in order, then a final full scan) must be the
same under every configuration, and the same as a plain dict model's (so a bug every
configuration shares still fails the test).

CI runs a few seeds; ``QUANTA_LONG=1`` runs many.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

import quanta
from quanta._storage.vfs import MemoryFileSystem

LONG = os.environ.get("QUANTA_LONG") == "1"
SEEDS = list(range(30)) if LONG else [0, 1, 2]
N_OPS = 400
N_KEYS = 60
PATH = "/db"

KEYS = [b"k%02d" % i for i in range(N_KEYS)]
PREFIXES = [b"k", b"k0", b"k1", b"k2", b"k3", b"k4", b"k5", b"k9", b"x", b""]

#: Every configuration reads the same data back. The first is the defaults; the others mix
#: small memtables (many flushes), small blocks and files (many blocks and tables), no or
#: varied bloom filters, no block cache, both durabilities and eager compaction triggers.
CONFIGS: list[dict[str, Any]] = [
    {},
    {
        "memtable_bytes": 4096,
        "block_size": 256,
        "bloom_bits_per_key": 0,
        "durability": "sync",
        "l0_compaction_trigger": 2,
        "target_file_bytes": 4096,
        "block_cache_bytes": 0,
        "max_immutable_memtables": 1,
    },
    {
        "memtable_bytes": 4096,
        "block_size": 4096,
        "bloom_bits_per_key": 8,
        "durability": "os",
        "l0_compaction_trigger": 4,
        "max_immutable_memtables": 2,
    },
    {
        "memtable_bytes": 16384,
        "block_size": 256,
        "bloom_bits_per_key": (32, 16, 8),
        "durability": "os",
        "l0_compaction_trigger": 2,
        "target_file_bytes": 4096,
        "max_immutable_memtables": 1,
    },
    {
        "memtable_bytes": 16384,
        "block_size": 4096,
        "bloom_bits_per_key": 0,
        "durability": "sync",
        "l0_compaction_trigger": 4,
        "target_file_bytes": 4096,
        "block_cache_bytes": 0,
        "max_immutable_memtables": 2,
    },
    {
        "block_size": 256,
        "bloom_bits_per_key": 8,
        "durability": "os",
        "l0_compaction_trigger": 2,
        "block_cache_bytes": 0,
        "max_immutable_memtables": 1,
    },
    {
        "memtable_bytes": 4096,
        "block_size": 256,
        "bloom_bits_per_key": (32, 16, 8),
        "durability": "os",
        "l0_compaction_trigger": 4,
        "target_file_bytes": 4096,
        "block_cache_bytes": 0,
        "max_immutable_memtables": 2,
        "l1_target_bytes": 4096,
    },
    {
        "memtable_bytes": 4096,
        "block_size": 4096,
        "bloom_bits_per_key": 8,
        "durability": "sync",
        "l0_compaction_trigger": 2,
        "target_file_bytes": 4096,
        "max_immutable_memtables": 1,
        "l1_target_bytes": 4096,
    },
    {
        "memtable_bytes": 16384,
        "block_size": 256,
        "bloom_bits_per_key": 0,
        "durability": "os",
        "l0_compaction_trigger": 2,
        "max_immutable_memtables": 2,
        "l1_target_bytes": 4096,
    },
]

Op = tuple[Any, ...]


# ---------------------------------------------------------------------- the operation log


def make_log(seed: int, n: int = N_OPS) -> list[Op]:
    rng = random.Random(seed)

    def key() -> bytes:
        return rng.choice(KEYS)

    def value() -> bytes:
        return rng.randbytes(rng.randint(0, 8) if rng.random() < 0.2 else rng.randint(0, 300))

    def writes(lo: int, hi: int) -> list[tuple[bytes, bytes | None]]:
        # fewer distinct keys than operations: the same key repeats (the last one wins)
        hot = [key() for _ in range(max(1, hi // 2))]
        return [(rng.choice(hot), None if rng.random() < 0.35 else value()) for _ in range(rng.randint(lo, hi))]

    def scan_args() -> dict[str, Any]:
        args: dict[str, Any] = {}
        if rng.random() < 0.4:
            args["start"] = key()
        if rng.random() < 0.4:
            args["stop"] = key()
        if rng.random() < 0.25:
            args["prefix"] = rng.choice(PREFIXES)
        if rng.random() < 0.4:
            args["reverse"] = True
        if rng.random() < 0.4:
            args["limit"] = rng.randint(0, 25)
        return args

    kinds = [
        ("put", 25),
        ("delete", 8),
        ("put_many", 8),
        ("batch", 8),
        ("get", 15),
        ("get_many", 6),
        ("scan", 10),
        ("snapshot", 5),
        ("flush", 2),
        ("compact", 1),
        ("reopen", 1),
    ]
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    log: list[Op] = []
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        if kind == "put":
            log.append(("put", key(), value()))
        elif kind == "delete":
            log.append(("delete", key()))
        elif kind == "put_many":
            hot = [key() for _ in range(rng.randint(1, 6))]
            log.append(("put_many", [(rng.choice(hot), value()) for _ in range(rng.randint(2, 10))]))
        elif kind == "batch":
            log.append(("batch", writes(1, 10)))
        elif kind == "get":
            log.append(("get", key()))
        elif kind == "get_many":
            log.append(("get_many", [key() for _ in range(rng.randint(0, 8))]))
        elif kind == "scan":
            log.append(("scan", scan_args()))
        elif kind == "snapshot":
            # writes made while the snapshot is held must be invisible through it
            log.append(("snapshot", writes(1, 6), [key() for _ in range(rng.randint(1, 5))], scan_args()))
        else:
            log.append((kind,))
    return log


# ---------------------------------------------------------------------- the model


def model_scan(state: dict[bytes, bytes], args: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    start, stop, prefix = args.get("start"), args.get("stop"), args.get("prefix")
    keys = sorted(
        k
        for k in state
        if (start is None or k >= start) and (stop is None or k < stop) and (prefix is None or k.startswith(prefix))
    )
    if args.get("reverse"):
        keys.reverse()
    limit = args.get("limit")
    if limit is not None:
        keys = keys[:limit]
    return [(k, state[k]) for k in keys]


def model_write(state: dict[bytes, bytes], ops: list[tuple[bytes, bytes | None]]) -> None:
    for k, v in ops:
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v


def model_history(log: list[Op]) -> list[Any]:
    state: dict[bytes, bytes] = {}
    history: list[Any] = []
    for i, op in enumerate(log):
        kind = op[0]
        if kind == "put":
            state[op[1]] = op[2]
        elif kind == "delete":
            state.pop(op[1], None)
        elif kind in ("put_many", "batch"):
            model_write(state, op[1])
        elif kind == "get":
            history.append((i, kind, state.get(op[1])))
        elif kind == "get_many":
            history.append((i, kind, [state.get(k) for k in op[1]]))
        elif kind == "scan":
            history.append((i, kind, model_scan(state, op[1])))
        elif kind == "snapshot":
            frozen = dict(state)
            model_write(state, op[1])
            history.append((i, "snapshot.get", [frozen.get(k) for k in op[2]]))
            history.append((i, "snapshot.scan", model_scan(frozen, op[3])))
            history.append((i, "after", [state.get(k) for k in op[2]]))
    history.append((len(log), "final", sorted(state.items())))
    return history


# ---------------------------------------------------------------------- the engine


async def write(db: quanta.Database, ops: list[tuple[bytes, bytes | None]]) -> None:
    batch = db.kv.batch()
    for k, v in ops:
        if v is None:
            batch.delete(k)
        else:
            batch.put(k, v)
    await batch.commit()


async def scan(reader: Any, args: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [kv async for kv in reader.scan(**args)]


async def db_history(log: list[Op], options: dict[str, Any]) -> list[Any]:
    fs = MemoryFileSystem()
    opts = {"compaction_executor": "loop", **options, "fs": fs}
    db = await quanta.open(PATH, **opts)
    history: list[Any] = []
    try:
        for i, op in enumerate(log):
            kind = op[0]
            if kind == "put":
                await db.kv.put(op[1], op[2])
            elif kind == "delete":
                await db.kv.delete(op[1])
            elif kind == "put_many":
                await db.kv.put_many(op[1])
            elif kind == "batch":
                await write(db, op[1])
            elif kind == "get":
                history.append((i, kind, await db.kv.get(op[1])))
            elif kind == "get_many":
                history.append((i, kind, await db.kv.get_many(op[1])))
            elif kind == "scan":
                history.append((i, kind, await scan(db.kv, op[1])))
            elif kind == "snapshot":
                async with db.snapshot() as snap:
                    await write(db, op[1])
                    history.append((i, "snapshot.get", [await snap.kv.get(k) for k in op[2]]))
                    history.append((i, "snapshot.scan", await scan(snap.kv, op[3])))
                history.append((i, "after", [await db.kv.get(k) for k in op[2]]))
            elif kind == "flush":
                await db.flush()
            elif kind == "compact":
                await db.compact()
            elif kind == "reopen":
                await db.close()
                db = await quanta.open(PATH, **opts)
            else:  # pragma: no cover - a typo in make_log
                raise ValueError(kind)
        history.append((len(log), "final", await scan(db.kv, {})))
        backwards = await scan(db.kv, {"reverse": True})
        assert backwards == history[-1][2][::-1], f"{options}: reverse full scan disagrees with forward"
    finally:
        await db.close()
    return history


def first_difference(want: list[Any], got: list[Any]) -> str:
    for w, g in zip(want, got, strict=False):
        if w == g:
            continue
        where = f"first difference at op {w[0]} ({w[1]})"
        if isinstance(w[2], list) and isinstance(g[2], list):
            j = next((j for j, (a, b) in enumerate(zip(w[2], g[2], strict=False)) if a != b), None)
            if j is None:
                return f"{where}: {len(w[2])} results wanted, {len(g[2])} got"
            return f"{where}, result {j}:\n  want {w[2][j]!r:.200}\n  got  {g[2][j]!r:.200}"
        return f"{where}:\n  want {w!r:.300}\n  got  {g!r:.300}"
    return f"histories differ in length: want {len(want)} entries, got {len(got)}"


_done: list[int] = []


@pytest.mark.parametrize("seed", SEEDS)
async def test_metamorphic(seed: int) -> None:
    log = make_log(seed)
    model = model_history(log)
    histories = [await db_history(log, config) for config in CONFIGS]
    for config, history in zip(CONFIGS, histories, strict=True):
        assert history == histories[0], f"seed {seed}, config {config} vs {CONFIGS[0]}: " + first_difference(
            histories[0], history
        )
    assert histories[0] == model, f"seed {seed}, every config vs the model: " + first_difference(model, histories[0])
    _done.append(seed)
    if len(_done) == len(SEEDS):
        print(
            f"metamorphic: {len(SEEDS)} seeds x {len(CONFIGS)} configurations, "
            f"{N_OPS} operations each, histories identical"
        )
