"""Deep verification of index and unique entries against the records they index
(``Database.verify(deep=True)``, PostgreSQL's ``pg_amcheck`` ``--heapallindexed`` idea).

For each entity whose class is in use (the entries of a record are computed from its decoded
object, so a class is needed) and each of its indexes that is complete (``ready``: an index
still being built is not checked), two passes over one snapshot:

1. **Every record has its entries.** Each record's expected entries (``index_entries``, what
   a write stores) are looked up, a chunk of records at a time (one ``get_many``): a missing
   entry, or one whose value is not the record's encoded primary key, is a problem.
2. **Every entry belongs to a record.** Each stored entry of the index's two key ranges
   (index and unique) is read; its value names a record (the encoded primary key), which is
   read (one ``get_many`` per chunk of entries) and must exist and have exactly that entry.
   An entry whose record is gone, or whose record no longer has those values, is a problem.

Together they say that the entries are exactly the records' entries. Everything is read at
one snapshot, so writers may go on meanwhile without causing false reports. Memory is one
chunk of records or entries. Records that cannot be decoded are reported by the record check
(``check_records``) and skipped here.

Concurrency rules: event-loop thread only; the reads are chunked with a checkpoint between
chunks (``quanta._kv.paced``).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import aclosing

from .._codec import decode_tuple, prefix_end
from .._entity import entity_keys, index_entries
from .._kv import EngineView, paced
from .._schema import NS, UNIQUE, EntityInfo, index_prefix, record_prefix, unique_prefix
from .._storage import Engine
from ..errors import CorruptionError

__all__ = ["MAX_PROBLEMS", "check_entries"]

MAX_PROBLEMS = 1000
"""At most this many problems are listed (the count goes on)."""

_CHUNK = 1024
_HEAD = len(NS) + 1  # an entry key: NS, the kind byte, then the encoded tuple


class _Report:
    __slots__ = ("count", "problems")

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)


def _show(key: bytes) -> str:
    text = key.hex()
    return text if len(text) <= 96 else text[:96] + "..."


def _entry(entry: bytes) -> str:
    """``index 'city' entry ('Rome', 7)``: an entry key as its index and encoded values."""
    try:
        parts = decode_tuple(entry[_HEAD:])
    except (CorruptionError, ValueError, IndexError, TypeError):
        return f"entry {_show(entry)}"
    kind = "unique index" if entry[_HEAD - 1 : _HEAD] == UNIQUE else "index"
    return f"{kind} {parts[1]!r} entry {tuple(parts[2:])!r}"


def _pk(epk: bytes) -> str:
    try:
        return f"primary key {decode_tuple(epk)[0]!r}"
    except (CorruptionError, ValueError, IndexError, TypeError):
        return f"encoded primary key {_show(epk)}"


async def check_entries(engine: Engine, infos: Iterable[EntityInfo]) -> tuple[int, int, list[str]]:
    """Check the index and unique entries of every entity of ``infos`` (their complete
    indexes only: pass ``planning_info``) against its records, at one snapshot. Returns
    ``(entries checked, problems found, the first MAX_PROBLEMS messages)``."""
    report = _Report()
    checked = 0
    seq = engine.acquire_snapshot()
    try:
        view = EngineView(engine, seq)
        for info in infos:
            if info.indexes:
                checked += await _check_entity(view, info, report)
    finally:
        engine.release_snapshot(seq)
    return checked, report.count, report.problems


def _entries_of(info: EntityInfo, data: bytes) -> dict[bytes, bytes] | None:
    try:
        obj = info.decode(data)
    except CorruptionError:
        return None  # reported by the record check
    return index_entries(info, entity_keys(info), obj, getattr(obj, info.primary_key))


async def _check_entity(view: EngineView, info: EntityInfo, report: _Report) -> int:
    name = info.name
    lo, hi = record_prefix(name)
    plen = len(lo)
    checked = 0
    # 1. every record has its entries
    async with aclosing(paced(view.chunks(lo, hi, False, _CHUNK), view.check)) as chunks:
        async for rkeys, datas in chunks:
            expected: dict[bytes, tuple[bytes, bytes]] = {}  # entry -> (value, record key)
            for rkey, data in zip(rkeys, datas, strict=True):
                entries = _entries_of(info, data)
                if entries is not None:
                    for k, v in entries.items():
                        expected[k] = (v, rkey)
            if not expected:
                continue
            checked += len(expected)
            stored = view.get_many(list(expected))
            for (entry, (value, rkey)), got in zip(expected.items(), stored, strict=True):
                if got is None:
                    report.add(f"{name}: the record with {_pk(rkey[plen:])} has no {_entry(entry)}")
                elif got != value:
                    report.add(
                        f"{name}: the {_entry(entry)} of the record with {_pk(rkey[plen:])} names another record "
                        f"({_pk(got)})"
                    )
    # 2. every entry belongs to a record that has it
    for idx in info.indexes:
        for prefix in (index_prefix(name, idx.name), unique_prefix(name, idx.name)):
            stop = prefix_end(prefix)
            async with aclosing(paced(view.chunks(prefix, stop, False, _CHUNK), view.check)) as chunks:
                async for ekeys, epks in chunks:
                    if not ekeys:
                        continue
                    records = view.get_many([lo + e for e in epks])
                    cache: dict[bytes, dict[bytes, bytes] | None] = {}
                    for entry, epk, record in zip(ekeys, epks, records, strict=True):
                        if record is None:
                            report.add(f"{name}: the {_entry(entry)} names no record ({_pk(epk)})")
                            continue
                        if epk not in cache:
                            cache[epk] = _entries_of(info, record)
                        entries = cache[epk]
                        if entries is None:
                            continue
                        if entries.get(entry) != epk:
                            report.add(
                                f"{name}: the {_entry(entry)} does not match the record with {_pk(epk)} "
                                "(stale: the record holds other values)"
                            )
    return checked
