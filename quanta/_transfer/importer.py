"""``db.import_jsonl``: a JSON Lines file (``format.py``) into the database, in two passes.

1. **Validate** (nothing is written to the database): every line is parsed, decoded with its
   entity's class (the class in use in this database, else the class the file's schema
   names if its module is already imported: a file never makes the import run code) and
   checked as a put checks it (types, constraints, validators); then, a chunk of lines at a
   time, primary keys and unique values are checked against the rest of the file and against
   the database, and link targets against both.
   What the file must remember of earlier lines lives in a scratch store on disk
   (``scratch.py``), so memory stays bounded whatever the file size. Every problem is
   collected with its line number; if there is any, ``ImportValidationError`` lists them
   (the first ``ImportValidationError.MAX_PROBLEMS``) and the database is unchanged.
2. **Write**: the file is read again and written in batches of ``CHUNK`` lines, each batch
   one transaction (records with their index, unique and link entries, and the schema of
   an entity's first records), so memory stays bounded here too.

``on_conflict`` decides what a record whose primary key (or a kv pair whose key) exists in
the database does: ``"error"`` (a validation problem), ``"replace"`` (overwrites it, as a
put does) or ``"skip"`` (leaves the stored one).

Crashes and cancellation: validation writes nothing. The write phase commits batch by batch:
after a crash or a cancellation in it, the batches committed so far are in the database
(every batch whole, never half of one), the rest are not. Re-running the same import with
``on_conflict="replace"`` finishes it (the records already written are written again, the
same bytes). Links are checked by the validation pass, not per batch, so a batch may hold
links to records of a later batch; until the import completes such a link can dangle.

Concurrency rules: event-loop thread only. Writers may run during an import: each batch's
transaction checks again what exists when it writes, so a record (or kv pair) a writer
commits after the validation pass meets ``on_conflict`` there (``"skip"`` leaves it,
``"replace"`` overwrites it, ``"error"`` stops the import with ``IntegrityError`` naming the
line and the key, that batch unwritten, the earlier ones kept); a unique value a writer
claimed meanwhile stops it with ``UniqueViolationError`` naming the line. A batch whose
commit loses to a concurrent writer is retried (``_write_batch``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import os
import random
import struct
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiofiles
import anyio

from .._catalog import Catalog, StoredSchema, schema_of
from .._codec import decode_tuple
from .._entity import EntityContext, entity_decoder, entity_keys, index_entries, put_records
from .._kv import KeyValue, check_user_key, check_value
from .._schema import EntityInfo, Link, entity_info, index_value, record_key
from .._txn import Transaction
from ..errors import (
    ConflictError,
    CorruptionError,
    ImportValidationError,
    IntegrityError,
    InvalidArgumentError,
    InvalidTypeError,
    QuantaError,
    UniqueViolationError,
)
from .exporter import CHUNK, Progress, TransferReport
from .format import FORMAT, FormatVersion, schema_from_json
from .scratch import Scratch

__all__ = ["ON_CONFLICT", "ImportContext", "header_modules", "import_jsonl"]

ON_CONFLICT = ("error", "replace", "skip")
_READ = 1 << 20  # bytes per file read
_BATCH_BYTES = 4 << 20  # a write batch is cut short past this many bytes of lines
_LINE = struct.Struct(">Q")
# Scratch key kinds: a primary key, a unique value, a link target still to find, the owner
# of a unique value in the database that the file must replace ("replace" only).
_PK, _UNIQUE, _LINK, _OWNER, _KV = b"p", b"u", b"l", b"o", b"k"


@dataclasses.dataclass(frozen=True, slots=True)
class ImportContext:
    """What an import needs of the database (``quanta.Database`` makes one)."""

    kv: KeyValue  # reads of the latest committed state (``_get_many``)
    begin: Callable[[], Transaction]
    catalog: Catalog
    entities: EntityContext
    last_seq: Callable[[], int]  # the database's last committed sequence number


@dataclasses.dataclass(slots=True)
class _Entity:
    info: EntityInfo
    decode: Callable[[Any], Any]
    links: list[tuple[str, str, bool]]  # (field, target entity, many)
    largest: int = 0  # the largest auto key in the file


class _Problems:
    def __init__(self) -> None:
        self.kept: list[tuple[int, str]] = []
        self.count = 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.kept) < ImportValidationError.MAX_PROBLEMS:
            self.kept.append((line, message))

    def raise_if_any(self) -> None:
        if self.count:
            raise ImportValidationError(sorted(self.kept), self.count)


def check_on_conflict(on_conflict: object) -> str:
    if not isinstance(on_conflict, str):
        raise InvalidTypeError(f"on_conflict must be a str, got {type(on_conflict).__name__}")
    if on_conflict not in ON_CONFLICT:
        raise InvalidArgumentError(
            f"on_conflict must be one of {', '.join(map(repr, ON_CONFLICT))}, got {on_conflict!r}"
        )
    return on_conflict


async def _lines(path: str) -> AsyncIterator[list[tuple[int, bytes]]]:
    """The file's lines with their numbers (from 1), a chunk at a time (``_READ`` bytes)."""
    n = 0
    rest = b""
    async with aiofiles.open(path, "rb") as f:
        while True:
            block = await f.read(_READ)
            if not block:
                break
            parts = (rest + block).split(b"\n")
            rest = parts.pop()
            out = []
            for part in parts:
                n += 1
                out.append((n, part))
            if out:
                yield out
    if rest.strip():
        yield [(n + 1, rest)]


def _loads(line: bytes) -> Any:
    return json.loads(line)


def _class_of(schema: StoredSchema) -> type | None:
    """The class the schema names, if its module is already imported: a file never makes the
    import run a module's code (``quanta import`` imports the modules it is told to)."""
    module, _, qualname = schema.cls.rpartition(".")
    obj: Any = sys.modules.get(module) if module else None
    if obj is None:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) else None


def header_modules(first_line: bytes) -> list[str]:
    """The modules of the classes a file's header names (for the command line, which imports
    them when no ``--module`` is given); empty if the line is not a header."""
    try:
        j = json.loads(first_line)
        return sorted({str(e["class"]).rpartition(".")[0] for e in j["entities"]} - {""})
    except (ValueError, KeyError, TypeError):
        return []


def _resolve(ctx: ImportContext, stored: StoredSchema, problems: _Problems) -> _Entity | None:
    info = ctx.catalog.bound_info(stored.name)
    if info is None:
        cls = _class_of(stored)
        if cls is not None:
            try:
                info = entity_info(cls)
            except QuantaError:
                info = None
    if info is None:
        problems.add(
            1,
            f"entity {stored.name}: no class for it is in use in this database and {stored.cls} is not "
            "imported; open the database with it (quanta.open(path, entities=[...])) before importing",
        )
        return None
    try:
        ctx.entities.collection(info.cls)  # admits the class (SchemaMismatchError if the stored schema differs)
    except QuantaError as exc:
        problems.add(1, f"entity {stored.name}: {exc}")
        return None
    declared = schema_of(info)
    shape = [(f.name, f.type) for f in stored.fields]
    if (stored.version, stored.primary_key, shape) != (
        declared.version,
        declared.primary_key,
        [(f.name, f.type) for f in declared.fields],
    ):
        problems.add(
            1,
            f"entity {stored.name}: the file's schema (version {stored.version}: "
            f"{', '.join(f'{n}: {t}' for n, t in shape)}) is not the one of {info.cls.__qualname__} "
            f"(version {declared.version}); import into a database with the file's schema, then migrate",
        )
        return None
    links = [(f.name, f.link_target or "", f.link_kind == "many") for f in info.fields if f.link_kind is not None]
    return _Entity(info, entity_decoder(info), links)


def _header(ctx: ImportContext, line: bytes, problems: _Problems) -> tuple[dict[str, _Entity], bool] | None:
    try:
        j = _loads(line)
    except ValueError as exc:
        problems.add(1, f"not JSON: {exc}")
        return None
    if type(j) is not dict or j.get("format") != FORMAT:
        problems.add(1, f"not a QuantaDB JSON Lines export (the first line must be a {FORMAT!r} header)")
        return None
    if j.get("version") != FormatVersion.V1:
        problems.add(1, f"format version {j.get('version')!r}; this QuantaDB reads version 1")
        return None
    entities: dict[str, _Entity] = {}
    raw = j.get("entities")
    if type(raw) is not list:
        problems.add(1, "the header has no list of entities")
        return None
    for item in raw:
        try:
            stored = schema_from_json(item)
        except (CorruptionError, InvalidArgumentError) as exc:
            problems.add(1, f"a schema in the header cannot be read: {exc}")
            continue
        e = _resolve(ctx, stored, problems)
        if e is not None:
            entities[stored.name] = e
    return entities, bool(j.get("kv"))


@dataclasses.dataclass(slots=True)
class _Pending:
    line: int
    entity: _Entity
    obj: Any
    pk: Any


def _line_bytes(n: int) -> bytes:
    return _LINE.pack(n)


def _decode_record(e: _Entity, j: Any) -> Any:
    obj = e.decode(j.get("record"))
    e.info.check(obj)
    return obj


def _decode_kv(j: Any) -> tuple[bytes, bytes]:
    try:
        key = base64.b64decode(str(j["key"]).encode("ascii"), validate=True)
        value = base64.b64decode(str(j["value"]).encode("ascii"), validate=True)
    except (KeyError, binascii.Error, UnicodeEncodeError):
        raise InvalidTypeError('a kv line needs base64 "key" and "value"') from None
    return check_user_key(key), check_value(value)


class _Validator:
    """The first pass (see the module docstring)."""

    def __init__(self, ctx: ImportContext, on_conflict: str, scratch: Scratch) -> None:
        self.ctx = ctx
        self.on_conflict = on_conflict
        self.scratch = scratch
        self.problems = _Problems()
        self.records = 0
        self.kv_pairs = 0
        self.trailer: tuple[int, Any] | None = None
        self.last_line = 0
        self.digest = hashlib.sha256()
        self.sha256 = ""

    async def run(self, path: str, progress: Progress | None) -> dict[str, _Entity]:
        problems = self.problems
        entities: dict[str, _Entity] | None = None
        allow_kv = False
        async for chunk in _lines(path):
            records: list[_Pending] = []
            pairs: list[tuple[int, bytes, bytes]] = []
            for n, line in chunk:
                self.last_line = n
                if n == 1:
                    self.digest.update(line)
                    self.digest.update(b"\n")
                    head = _header(self.ctx, line, problems)
                    if head is None:
                        problems.raise_if_any()
                        return {}
                    entities, allow_kv = head
                    continue
                assert entities is not None
                if self.trailer is not None:
                    problems.add(n, f"a line after the trailer (line {self.trailer[0]})")
                    continue
                try:
                    j = _loads(line)
                except ValueError as exc:
                    problems.add(n, f"not JSON: {exc}")
                    continue
                if type(j) is not dict:
                    problems.add(n, "not a JSON object")
                    continue
                if "end" in j:
                    self.trailer = (n, j["end"])
                    self.sha256 = self.digest.hexdigest()  # of every byte before the trailer
                    continue
                self.digest.update(line)
                self.digest.update(b"\n")
                if "entity" in j:
                    self.records += 1
                    e = entities.get(j["entity"]) if type(j["entity"]) is str else None
                    if e is None:
                        problems.add(n, f"unknown entity {j['entity']!r} (not in the header, or refused there)")
                        continue
                    try:
                        obj = _decode_record(e, j)
                    except InvalidArgumentError as exc:
                        problems.add(n, str(exc))
                        continue
                    pk = getattr(obj, e.info.primary_key)
                    if e.info.auto and not pk:
                        problems.add(n, f"{e.info.name}: the record has no primary key ({pk!r})")
                        continue
                    records.append(_Pending(n, e, obj, pk))
                    if e.info.auto and type(pk) is int and pk > e.largest:
                        e.largest = pk
                elif "key" in j:
                    self.kv_pairs += 1
                    if not allow_kv:
                        problems.add(n, "a kv line in a file whose header says kv: false")
                        continue
                    try:
                        key, value = _decode_kv(j)
                    except InvalidArgumentError as exc:
                        problems.add(n, str(exc))
                        continue
                    pairs.append((n, key, value))
                else:
                    problems.add(n, "neither a record, a kv pair nor the trailer")
            await self._check_records(records)
            await self._check_pairs(pairs)
            if progress is not None:
                progress("validate", self.last_line)
        if entities is None:
            problems.add(1, "the file is empty")
            problems.raise_if_any()
        await self._resolve_deferred()
        self._check_trailer()
        problems.raise_if_any()
        assert entities is not None
        return entities

    def _check_trailer(self) -> None:
        if self.trailer is None:
            self.problems.add(
                self.last_line + 1, "no trailer line: the file is incomplete (an export that did not finish?)"
            )
            return
        n, end = self.trailer
        if type(end) is not dict or not set(end) <= {"records", "kv", "sha256"}:
            self.problems.add(n, f"a malformed trailer {end!r}")
            return
        if (end.get("records"), end.get("kv")) != (self.records, self.kv_pairs):
            self.problems.add(
                n,
                f"the trailer counts {end!r}, the file holds {{'records': {self.records}, 'kv': {self.kv_pairs}}}",
            )
        if "sha256" in end and end["sha256"] != self.sha256:
            self.problems.add(n, "the file's bytes do not match the trailer's sha256: the file is damaged")

    async def _check_records(self, records: list[_Pending]) -> None:
        if not records:
            return
        problems, scratch, on_conflict = self.problems, self.scratch, self.on_conflict
        rkeys = [entity_keys(p.entity.info).record(p.pk) for p in records]
        # primary keys: within the file
        seen: dict[bytes, int] = {}
        earlier = scratch.get_many([_PK + k for k in rkeys])
        again: set[int] = set()
        for p, rk, before in zip(records, rkeys, earlier, strict=True):
            first = _LINE.unpack(before)[0] if before is not None else seen.get(rk)
            if first is not None:
                problems.add(p.line, f"{p.entity.info.name}: primary key {p.pk!r} given again (first on line {first})")
                again.add(p.line)
            else:
                seen[rk] = p.line
        # ... and in the database
        stored = await self.ctx.kv._get_many(rkeys)
        live: list[tuple[_Pending, bytes]] = []
        for p, rk, old in zip(records, rkeys, stored, strict=True):
            if p.line in again:
                continue
            if old is not None and on_conflict == "error":
                problems.add(
                    p.line,
                    f"{p.entity.info.name}: a record with primary key {p.pk!r} exists in the database "
                    "(on_conflict='error'; 'replace' overwrites it, 'skip' keeps it)",
                )
            elif old is not None and on_conflict == "skip":
                continue
            else:
                live.append((p, rk))
        out_keys = [_PK + rk for rk in seen]
        out_values = [_line_bytes(n) for n in seen.values()]
        # unique values
        claims: dict[bytes, tuple[_Pending, bytes]] = {}
        for p, _ in live:
            info = p.entity.info
            if not info.indexes:
                continue
            try:  # a value no key can hold (NaN in an index) is refused here, as by a put
                entries = index_entries(info, entity_keys(info), p.obj, p.pk)
            except InvalidArgumentError as exc:
                problems.add(p.line, f"{info.name}: {exc}")
                continue
            for k, owner in entries.items():
                if k[2] != 0x75:  # not a unique entry
                    continue
                if k in claims:
                    problems.add(p.line, f"{_unique_text(info, k)} given again (first on line {claims[k][0].line})")
                    continue
                claims[k] = (p, owner)
        if claims:
            ukeys = list(claims)
            earlier = scratch.get_many([_UNIQUE + k for k in ukeys])
            in_db = await self.ctx.kv._get_many(ukeys)
            for k, before, holder in zip(ukeys, earlier, in_db, strict=True):
                p, owner = claims[k]
                info = p.entity.info
                if before is not None:
                    first = _LINE.unpack(before)[0]
                    problems.add(p.line, f"{_unique_text(info, k)} given again (first on line {first})")
                elif holder is not None and holder != owner:
                    if on_conflict == "replace":  # fine if the file replaces the holder too
                        owner_rk = entity_keys(info).record_prefix + holder
                        out_keys.append(_OWNER + owner_rk + _line_bytes(p.line))
                        out_values.append(k)
                    else:
                        problems.add(p.line, f"{_unique_text(info, k)} is used by another record in the database")
                out_keys.append(_UNIQUE + k)
                out_values.append(_line_bytes(p.line))
        # link targets
        targets: list[tuple[_Pending, str, Any, bytes]] = []
        for p, _ in live:
            for name, target, many in p.entity.links:
                value = getattr(p.obj, name)
                if value is None:
                    continue
                for link in value if many else (value,):
                    pk = link.pk if isinstance(link, Link) else link
                    targets.append((p, f"{p.entity.info.name}.{name}", pk, record_key(target, pk)))
        if targets:
            found = await self.ctx.kv._get_many([t[3] for t in targets])
            for (p, where, pk, tk), hit in zip(targets, found, strict=True):
                if hit is None:
                    out_keys.append(_LINK + tk + _line_bytes(p.line))
                    out_values.append(f"{where}: links to primary key {pk!r}".encode())
        await scratch.put(out_keys, out_values)

    async def _check_pairs(self, pairs: list[tuple[int, bytes, bytes]]) -> None:
        if not pairs:
            return
        seen: dict[bytes, int] = {}
        earlier = self.scratch.get_many([_KV + k for _, k, _ in pairs])
        stored = await self.ctx.kv._get_many([k for _, k, _ in pairs])
        for (n, key, _), before, old in zip(pairs, earlier, stored, strict=True):
            first = _LINE.unpack(before)[0] if before is not None else seen.get(key)
            if first is not None:
                self.problems.add(n, f"kv key {key!r} given again (first on line {first})")
                continue
            seen[key] = n
            if old is not None and self.on_conflict == "error":
                self.problems.add(n, f"kv key {key!r} exists in the database (on_conflict='error')")
        await self.scratch.put([_KV + k for k in seen], [_line_bytes(n) for n in seen.values()])

    async def _resolve_deferred(self) -> None:
        """Link targets not in the database must be records of the file; holders of unique
        values in the database must be replaced by the file."""
        for kind in (_LINK, _OWNER):
            batch: list[tuple[bytes, bytes]] = []
            async for key, value in self.scratch.scan_prefix(kind):
                batch.append((key, value))
                if len(batch) >= CHUNK:
                    self._deferred(kind, batch)
                    batch = []
            self._deferred(kind, batch)

    def _deferred(self, kind: bytes, batch: list[tuple[bytes, bytes]]) -> None:
        if not batch:
            return
        hits = self.scratch.get_many([_PK + key[1:-8] for key, _ in batch])
        for (key, value), hit in zip(batch, hits, strict=True):
            if hit is not None:
                continue
            line = _LINE.unpack(key[-8:])[0]
            if kind == _LINK:
                self.problems.add(line, f"{value.decode()}, which is neither in the database nor in the file")
            else:
                self.problems.add(line, "a unique value is used by another record in the database")


def _unique_text(info: EntityInfo, key: bytes) -> str:
    t = decode_tuple(key[3:])
    shown = t[2] if len(t) == 3 else t[2:]
    return f"{info.name} unique index {t[1]!r}: the value {shown!r}"


async def _write(
    ctx: ImportContext, path: str, entities: dict[str, _Entity], on_conflict: str, progress: Progress | None
) -> TransferReport:
    report = TransferReport()
    for e in entities.values():
        # An auto-key counter this process already seeded must not hand out a key that a later
        # batch of the file writes (one not seeded yet seeds from the largest stored key when
        # first used; docs/operations.md, "Auto keys").
        name = e.info.name
        if e.info.auto and name in ctx.entities.next:
            ctx.entities.next[name] = max(ctx.entities.next[name], e.largest + 1)
    batch: list[tuple[_Entity, Any, int] | tuple[bytes, bytes, int]] = []
    size = 0
    lines = 0
    async for chunk in _lines(path):
        for n, line in chunk:
            lines = n
            if n == 1:
                continue
            j = _loads(line)
            if "entity" in j:
                e = entities[j["entity"]]
                batch.append((e, _decode_record(e, j), n))
            elif "key" in j:
                batch.append((*_decode_kv(j), n))
            else:
                continue
            size += len(line)
            if len(batch) >= CHUNK or size >= _BATCH_BYTES:
                await _write_batch(ctx, batch, on_conflict, report)
                batch, size = [], 0
                if progress is not None:
                    progress("write", lines)
    if batch:
        await _write_batch(ctx, batch, on_conflict, report)
    if progress is not None:
        progress("write", lines)
    for e in entities.values():  # auto keys: the next key handed out comes after the imported ones
        if e.info.auto:
            ctx.entities.next.pop(e.info.name, None)
    report.lines = lines
    report.seq = ctx.last_seq()
    return report


async def _write_batch(ctx: ImportContext, batch: list[Any], on_conflict: str, report: TransferReport) -> None:
    """Write one batch (items ``(entity, object, line)`` or ``(key, value, line)``) in one
    transaction, applying ``on_conflict`` to what exists *now*: the validation pass checked
    the database as it was then, and a writer may have inserted one of the file's keys or
    claimed one of its unique values since. With ``"error"`` such a key stops the import
    with ``IntegrityError`` (a unique value: ``UniqueViolationError``) naming the line; the
    batch is not written, the batches before it stay. A commit that loses to a concurrent
    writer is retried (it then sees what that writer wrote)."""
    attempt = 0
    while True:
        try:
            await _write_batch_once(ctx, batch, on_conflict, report)
            return
        except ConflictError:
            attempt += 1
            if attempt >= _RETRIES:
                raise
            await anyio.sleep(min(0.001 * 2**attempt, 0.05) * (0.5 + random.random() / 2))


_RETRIES = 50


async def _write_batch_once(ctx: ImportContext, batch: list[Any], on_conflict: str, report: TransferReport) -> None:
    groups: dict[str, tuple[_Entity, list[Any], list[int]]] = {}
    pairs: list[tuple[bytes, bytes, int]] = []
    for item in batch:
        if isinstance(item[0], _Entity):
            group = groups.setdefault(item[0].info.name, (item[0], [], []))
            group[1].append(item[1])
            group[2].append(item[2])
        else:
            pairs.append(item)
    counts: dict[str, int] = {}
    skipped = replaced = kv = 0
    first_line = batch[0][-1]
    async with ctx.begin() as tx:
        for name, (e, objs, lines) in groups.items():
            info = e.info
            pks = [getattr(obj, info.primary_key) for obj in objs]
            keys = entity_keys(info)
            olds = await tx.kv._get_many([keys.record(pk) for pk in pks])
            if on_conflict == "error":
                for pk, line, old in zip(pks, lines, olds, strict=True):
                    if old is not None:
                        raise IntegrityError(
                            f"import stopped at line {line}: {name}: a record with primary key {pk!r} exists in the "
                            "database (written after the validation pass, by another writer); on_conflict='error' "
                            f"does not overwrite it. {_stopped(first_line, report)}; re-run the import with "
                            "on_conflict='skip' (keeps that record and the lines already imported) or 'replace' "
                            "(overwrites them) to finish"
                        )
            if on_conflict == "skip":
                kept = [(obj, pk) for obj, pk, old in zip(objs, pks, olds, strict=True) if old is None]
                skipped += len(objs) - len(kept)
                objs, pks = [o for o, _ in kept], [pk for _, pk in kept]
            else:
                replaced += sum(old is not None for old in olds)
            if not objs:
                continue
            if not ctx.catalog.has_schema(name):
                await ctx.catalog.record_first_use(info, tx.kv)
            elif ctx.catalog.unique_pending(name):
                await ctx.catalog.unique_checkable(name)  # db.repair() rebuilding a unique index
            try:
                await put_records(info, tx.kv, objs, pks, check_links=False)
            except UniqueViolationError as exc:  # a value another writer claimed since the validation
                line = _claiming_line(info, exc, objs, lines)
                raise UniqueViolationError(
                    f"import stopped at line {line}: {info.name}.{exc.index}: the value {exc.value!r} is used by "
                    f"another record of the database (written after the validation pass, by another writer). "
                    f"{_stopped(first_line, report)}; change or delete that record, then re-run the import with "
                    "on_conflict='skip' (keeps the lines already imported) or 'replace' to finish",
                    entity=exc.entity,
                    index=exc.index,
                    value=exc.value,
                ) from None
            counts[name] = len(objs)
        if pairs:
            olds = await tx.kv.get_many([k for k, _, _ in pairs])
            for (key, value, line), old in zip(pairs, olds, strict=True):
                if old is not None and on_conflict == "error":
                    raise IntegrityError(
                        f"import stopped at line {line}: kv key {key!r} exists in the database (written after the "
                        f"validation pass, by another writer); on_conflict='error' does not overwrite it. "
                        f"{_stopped(first_line, report)}; re-run the import with on_conflict='skip' or 'replace' "
                        "to finish"
                    )
                if old is not None and on_conflict == "skip":
                    skipped += 1
                    continue
                replaced += old is not None
                await tx.kv.put(key, value)
                kv += 1
    for name, n in counts.items():
        report.records[name] = report.records.get(name, 0) + n
    report.skipped += skipped
    report.replaced += replaced
    report.kv += kv


def _stopped(first_line: int, report: TransferReport) -> str:
    """What an import stopped in its write phase left (for its error message)."""
    done = sum(report.records.values())
    if not done and not report.kv:
        return f"Nothing of this batch (from line {first_line}) was written, nor before it"
    return (
        f"Nothing of this batch (from line {first_line}) was written; the lines before it are imported "
        f"({done} records, {report.kv} kv pairs)"
    )


def _claiming_line(info: EntityInfo, exc: UniqueViolationError, objs: list[Any], lines: list[int]) -> int:
    """The line of the batch's record holding the unique value ``exc`` reports."""
    idx = next((i for i in info.indexes if i.name == exc.index), None)
    if idx is not None:
        for obj, line in zip(objs, lines, strict=True):
            values = tuple(index_value(obj, f) for f in idx.fields)
            shown = exc.value if len(values) > 1 and isinstance(exc.value, (list, tuple)) else (exc.value,)
            if values == tuple(shown):
                return line
    return lines[0]


async def import_jsonl(
    ctx: ImportContext, path: str, *, on_conflict: str = "error", progress: Progress | None = None
) -> TransferReport:
    """Import the file at ``path`` (see the module docstring)."""
    if not await anyio.Path(path).is_file():
        raise InvalidArgumentError(f"no file {path!r} to import")
    near = os.path.dirname(os.path.abspath(path))  # noqa: ASYNC240 - no I/O: abspath of a str
    async with Scratch(near) as scratch:
        entities = await _Validator(ctx, on_conflict, scratch).run(path, progress)
    return await _write(ctx, path, entities, on_conflict, progress)
