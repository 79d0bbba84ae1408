"""Deep verification (``Database.verify(deep=True)``): the report types and the checks of
entity data beyond the tables' checksums (PostgreSQL's ``pg_amcheck`` ``--heapallindexed``
idea). The record check (every record decodes) is ``Catalog.check_records``; here:

**Index and unique entries against records.** For each entity whose class is in use (the
entries of a record are computed from its decoded object, so a class is needed) and each of
its indexes that is complete (``ready``: an index still being built is not checked), two
passes over one snapshot:

1. **Every record has its entries.** Each record's expected entries (``index_entries``, what
   a write stores) are looked up, a chunk of records at a time (one ``get_many``): a missing
   entry, or one whose value is not the record's encoded primary key, is a problem.
2. **Every entry belongs to a record.** Each stored entry of the index's two key ranges
   (index and unique) is read; its value names a record (the encoded primary key), which is
   read (one ``get_many`` per chunk of entries) and must exist and have exactly that entry.
   An entry whose record is gone, or whose record no longer has those values, is a problem.

Together they say that the entries are exactly the records' entries.

**Links.** In the first pass, every link value (``Link``/``Links`` fields) of every record
of such an entity is looked up in its target's records (one ``get_many`` per chunk): a
target that does not exist is a *dangling link*. Writes refuse them (``IntegrityError``)
and deletes apply ``on_delete``; one found here was made by something else (raw writes, a
bug, a damaged file).

**The catalog against the key space** (``check_keyspace``; needs no class): the stored
schemas are read at the check's snapshot (so a schema committed by an entity's first write
a moment ago counts), then the entity key
space is walked one *group* at a time (the records of one entity, the entries of one index;
a seek per group, so it costs the number of groups, not of keys): records of an entity the
catalog has no stored schema for, entries of an index its entity's stored schema does not
have (in any state: a dropping index still has entries), unique entries of a non-unique
index and the reverse, and keys of no known kind are problems.

Everything is read at one snapshot, so writers may go on meanwhile without causing false
reports. Memory is one chunk of records or entries plus the first ``MAX_PROBLEMS``
problems. Records that cannot be decoded are reported by the record check and skipped here.

Concurrency rules: event-loop thread only; the reads are chunked with a checkpoint between
chunks (``quanta._kv.paced``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

import anyio.lowlevel

from .._codec import decode_tuple, prefix_end
from .._entity import entity_keys, index_entries
from .._kv import EngineView, paced
from .._schema import (
    CATALOG,
    CATALOG_PREFIX,
    INDEX,
    NS,
    RECORD,
    UNIQUE,
    EntityInfo,
    index_prefix,
    record_prefix,
    unique_prefix,
)
from .._storage import Engine
from ..errors import CorruptionError
from .format import StoredSchema

__all__ = [
    "MAX_PROBLEMS",
    "ProblemKind",
    "ProblemLog",
    "VerifyProblem",
    "VerifyReport",
    "check_entries",
    "check_keyspace",
]

MAX_PROBLEMS = 1000
"""At most this many problems are listed (the count goes on)."""

ProblemKind = Literal[
    "unreadable_record",
    "missing_entry",
    "misdirected_entry",
    "orphan_entry",
    "stale_entry",
    "dangling_link",
    "unknown_entity",
    "unknown_index",
    "unknown_key",
    "unreadable_schema",
]


@dataclass(frozen=True, slots=True)
class VerifyProblem:
    """One thing ``verify(deep=True)`` found wrong.

    ``kind``: what is wrong (``"unreadable_record"``: a record that does not decode or fails
    its type checks; ``"missing_entry"``: a record without one of its index or unique
    entries; ``"misdirected_entry"``: an entry of a record's values that names another
    record; ``"orphan_entry"``: an entry whose record does not exist; ``"stale_entry"``: an
    entry whose record holds other values; ``"dangling_link"``: a link to a record that does
    not exist; ``"unknown_entity"``: records of an entity the catalog has no schema for;
    ``"unknown_index"``: entries of an index the entity's stored schema does not have, or of
    the wrong kind; ``"unknown_key"``: a key in the entity key space of no known kind;
    ``"unreadable_schema"``: a stored schema that does not decode).
    ``entity``: the entity it concerns (None if unknown); ``key``: the stored key at fault
    (the record's, or the entry's; for a group, its first key); ``message``: a sentence
    naming the primary key, index and values, as printed by ``quanta verify --deep``."""

    kind: ProblemKind
    entity: str | None
    key: bytes
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``await db.verify()`` checked and found.

    ``tables``/``entries``: the table files of the current version and the entries they hold
    (every block read, checksums, order and the manifest's counts checked; damage raises
    ``CorruptionError`` instead of being reported). With ``deep=True`` also: ``records``
    (entity records read and decoded), ``index_entries`` (index and unique entries checked
    against their records), ``links`` (link values checked against their targets), and
    ``problems``, the first :data:`MAX_PROBLEMS` found (``problem_count`` counts all); without
    it those are None, ``()`` and 0. ``skipped``: one message per entity with stored indexes
    whose entries and links were not checked, saying why (its class is not in use: entries
    are computed from decoded objects). ``ok``: nothing was found."""

    tables: int
    entries: int
    deep: bool = False
    records: int | None = None
    index_entries: int | None = None
    links: int | None = None
    problems: tuple[VerifyProblem, ...] = ()
    problem_count: int = 0
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


_CHUNK = 1024
_HEAD = len(NS) + 1  # an entry key: NS, the kind byte, then the encoded tuple


class ProblemLog:
    """The problems found so far: the first ``MAX_PROBLEMS`` kept, all counted."""

    __slots__ = ("count", "problems")

    def __init__(self) -> None:
        self.problems: list[VerifyProblem] = []
        self.count = 0

    def add(self, kind: ProblemKind, entity: str | None, key: bytes, message: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(VerifyProblem(kind, entity, key, message))


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


# --------------------------------------------------------------------------- entries and links


async def check_entries(engine: Engine, infos: Iterable[EntityInfo], log: ProblemLog) -> tuple[int, int]:
    """Check the index and unique entries and the links of every entity of ``infos`` (their
    complete indexes only: pass ``planning_info``) against the records, at one snapshot,
    adding what is wrong to ``log``. Returns ``(entries checked, link values checked)``."""
    checked = links = 0
    seq = engine.acquire_snapshot()
    try:
        view = EngineView(engine, seq)
        for info in infos:
            if info.indexes or info.relations.links:
                c, n = await _check_entity(view, info, log)
                checked += c
                links += n
    finally:
        engine.release_snapshot(seq)
    return checked, links


def _decode(info: EntityInfo, data: bytes) -> Any:
    try:
        return info.decode(data)
    except CorruptionError:
        return None  # reported by the record check


def _entries_of(info: EntityInfo, obj: Any) -> dict[bytes, bytes]:
    return index_entries(info, entity_keys(info), obj, getattr(obj, info.primary_key))


def _link_targets(info: EntityInfo, obj: Any) -> Iterable[tuple[str, str, Any, bytes]]:
    """``(field, target entity, target primary key, target record key)`` of every link value
    of ``obj``."""
    for spec in info.relations.links:
        value = obj.__dict__[spec.name]
        if value is None:
            continue
        target = spec.target_info
        record = entity_keys(target).record
        for lk in value if spec.many else (value,):
            pk = lk._pk if lk._obj is None else lk.pk
            yield spec.name, target.name, pk, record(pk)


async def _check_entity(view: EngineView, info: EntityInfo, log: ProblemLog) -> tuple[int, int]:
    name = info.name
    lo, hi = record_prefix(name)
    plen = len(lo)
    checked = links = 0
    # 1. every record has its entries, and its links' targets exist
    async with aclosing(paced(view.chunks(lo, hi, False, _CHUNK), view.check)) as chunks:
        async for rkeys, datas in chunks:
            expected: dict[bytes, tuple[bytes, bytes]] = {}  # entry -> (value, record key)
            targets: list[tuple[bytes, str, str, Any, bytes]] = []  # (record key, field, target, pk, key)
            for rkey, data in zip(rkeys, datas, strict=True):
                obj = _decode(info, data)
                if obj is None:
                    continue
                if info.indexes:
                    for k, v in _entries_of(info, obj).items():
                        expected[k] = (v, rkey)
                targets += [(rkey, *t) for t in _link_targets(info, obj)]
            if targets:
                links += len(targets)
                found = view.get_many([t[4] for t in targets])
                for (rkey, field, target, pk, _), got in zip(targets, found, strict=True):
                    if got is None:
                        log.add(
                            "dangling_link",
                            name,
                            rkey,
                            f"{name}: the record with {_pk(rkey[plen:])} links ({field}) to "
                            f"{target} {pk!r}, which does not exist (a dangling link)",
                        )
            if not expected:
                continue
            checked += len(expected)
            stored = view.get_many(list(expected))
            for (entry, (value, rkey)), got in zip(expected.items(), stored, strict=True):
                if got is None:
                    what = f"{name}: the record with {_pk(rkey[plen:])} has no {_entry(entry)}"
                    log.add("missing_entry", name, rkey, what)
                elif got != value:
                    log.add(
                        "misdirected_entry",
                        name,
                        entry,
                        f"{name}: the {_entry(entry)} of the record with {_pk(rkey[plen:])} names another record "
                        f"({_pk(got)})",
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
                            what = f"{name}: the {_entry(entry)} names no record ({_pk(epk)})"
                            log.add("orphan_entry", name, entry, what)
                            continue
                        if epk not in cache:
                            obj = _decode(info, record)
                            cache[epk] = None if obj is None else _entries_of(info, obj)
                        entries = cache[epk]
                        if entries is None:
                            continue
                        if entries.get(entry) != epk:
                            log.add(
                                "stale_entry",
                                name,
                                entry,
                                f"{name}: the {_entry(entry)} does not match the record with {_pk(epk)} "
                                "(stale: the record holds other values)",
                            )
    return checked, links


# --------------------------------------------------------------------------- the key space


async def check_keyspace(engine: Engine, log: ProblemLog) -> int:
    """Walk the entity key space one group at a time (see the module docstring), at one
    snapshot, adding to ``log`` what the stored schemas (read at the same snapshot) do not
    account for. Returns how many groups were seen."""
    seq = engine.acquire_snapshot()
    groups = 0
    try:
        view = EngineView(engine, seq)
        schemas = await _stored_schemas(view, log)
        cursor: bytes | None = NS
        stop = prefix_end(NS)
        while cursor is not None:
            view.check()
            key = _first(view, cursor, stop)
            if key is None:
                break
            groups += 1
            cursor = _check_group(key, schemas, log)
            await anyio.lowlevel.checkpoint()
    finally:
        engine.release_snapshot(seq)
    return groups


async def _stored_schemas(view: EngineView, log: ProblemLog) -> dict[str, StoredSchema]:
    """The stored schemas of the catalog's key range (``format.py``: one key per entity;
    the auto-key counters, jobs and staged records there are skipped)."""
    schemas: dict[str, StoredSchema] = {}
    async with aclosing(paced(view.chunks(CATALOG_PREFIX, prefix_end(CATALOG_PREFIX), False, _CHUNK), view.check)) as c:
        async for keys, values in c:
            for key, value in zip(keys, values, strict=True):
                try:
                    parts = decode_tuple(key[_HEAD:])
                except (CorruptionError, ValueError, IndexError, TypeError):
                    log.add("unknown_key", None, key, f"an unreadable key in the catalog: {_show(key)}")
                    continue
                if len(parts) != 1 or not isinstance(parts[0], str):
                    continue
                try:
                    schemas[parts[0]] = StoredSchema.from_bytes(value)
                except (CorruptionError, ValueError, KeyError, IndexError, TypeError) as exc:
                    what = f"the stored schema of {parts[0]!r} cannot be read: {exc}"
                    log.add("unreadable_schema", parts[0], key, what)
    return schemas


def _first(view: EngineView, lo: bytes, hi: bytes | None) -> bytes | None:
    for keys, _ in view.chunks(lo, hi, False, 1):
        if keys:
            return keys[0]
    return None


def _check_group(key: bytes, schemas: Mapping[str, StoredSchema], log: ProblemLog) -> bytes | None:
    """Check the group ``key`` starts; return the first key after the group."""
    kind = key[len(NS) : _HEAD]
    if kind == CATALOG:
        return prefix_end(CATALOG_PREFIX)  # read by _stored_schemas
    if kind not in (RECORD, INDEX, UNIQUE):
        log.add("unknown_key", None, key, f"a key of no known kind in the entity key space: {_show(key)}")
        return prefix_end(key[:_HEAD])
    try:
        parts = decode_tuple(key[_HEAD:])
        entity = parts[0]
        if not isinstance(entity, str) or (kind != RECORD and (len(parts) < 2 or not isinstance(parts[1], str))):
            raise ValueError("no entity and index names")
    except (CorruptionError, ValueError, IndexError, TypeError):
        log.add("unknown_key", None, key, f"an unreadable key in the entity key space: {_show(key)}")
        return prefix_end(key)
    stored = schemas.get(entity)
    if kind == RECORD:
        if stored is None:
            log.add(
                "unknown_entity",
                entity,
                key,
                f"records of entity {entity!r}, which has no stored schema (nothing can read them)",
            )
        return record_prefix(entity)[1]
    index = str(parts[1])
    group = (index_prefix if kind == INDEX else unique_prefix)(entity, index)
    what = "unique index" if kind == UNIQUE else "index"
    if stored is None:
        log.add("unknown_index", entity, key, f"entries of {what} {entity}.{index}, an entity with no stored schema")
    else:
        declared = stored.index(index)
        if declared is None:
            log.add(
                "unknown_index",
                entity,
                key,
                f"entries of {what} {entity}.{index}, which the stored schema of {entity} does not have",
            )
        elif declared.unique != (kind == UNIQUE):
            other = "unique" if declared.unique else "non-unique"
            log.add(
                "unknown_index",
                entity,
                key,
                f"{what} entries of {entity}.{index}, which the stored schema declares {other}",
            )
    return prefix_end(group)
