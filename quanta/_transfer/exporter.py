"""``db.export_jsonl``: a snapshot of the database to a JSON Lines file (``format.py``).

Reads one snapshot a chunk at a time (at most ``CHUNK`` records, a few MiB, in memory) and
writes each chunk's lines with one ``aiofiles`` write, so memory stays bounded whatever the
size of the database. Records are decoded with their *stored* schema (the catalog's type
descriptions), not with a class: an export needs no entity class, and the command line
exports a database it knows nothing about.

Concurrency rules: event-loop thread only; the snapshot keeps writers unblocked (they go on
committing; the export sees none of it).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import aiofiles

from .._catalog import StoredSchema
from .._codec import decode_tuple, encode_tuple, prefix_end
from .._entity import json_encoder
from .._kv import RESERVED_PREFIX, Snapshot
from .._schema import NS, TypeNode, decode_value, entity_info, record_prefix
from ..errors import CorruptionError, InvalidArgumentError, InvalidTypeError, QuantaError
from .format import dump_line, header, trailer

__all__ = ["CHUNK", "Progress", "TransferReport", "check_path", "check_progress", "export_jsonl", "node_of"]

CHUNK = 2048  # records (or kv pairs) per read and per write
Progress = Callable[[str, int], None]
"""``progress(phase, lines)``: called after each chunk with the phase (``"export"``,
``"validate"``, ``"write"``) and the lines done so far in it."""

_CATALOG = NS + b"c"
_SCALARS: dict[str, type] = {
    t.__name__: t for t in (int, float, str, bytes, bool, datetime, date, time, timedelta, Decimal, UUID)
}


@dataclasses.dataclass(slots=True)
class TransferReport:
    """What an export or import did: ``records`` (records written, per entity name),
    ``kv`` (pairs), ``skipped`` and ``replaced`` (records and kv pairs an import left as
    they were or overwrote; 0 for an export), ``lines`` (of the file) and ``seq`` (the snapshot an export
    read; the database's last commit after an import)."""

    records: dict[str, int] = dataclasses.field(default_factory=dict)
    kv: int = 0
    skipped: int = 0
    replaced: int = 0
    lines: int = 0
    seq: int = 0

    @property
    def total(self) -> int:
        """Records, over every entity."""
        return sum(self.records.values())

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_path(file: object, what: str = "file") -> str:
    if not isinstance(file, (str, os.PathLike)):
        raise InvalidTypeError(f"{what} must be a str or os.PathLike path, got {type(file).__name__}")
    path = os.fspath(file)
    if not isinstance(path, str) or not path:
        raise InvalidArgumentError(f"{what} must be a non-empty path")
    return path


def check_progress(progress: object) -> Progress | None:
    if progress is not None and not callable(progress):
        raise InvalidTypeError(f"progress must be callable (phase, lines), got {type(progress).__name__}")
    return cast(Progress | None, progress)


def node_of(desc: Any, schemas: dict[str, StoredSchema], _seen: dict[str, TypeNode] | None = None) -> TypeNode:
    """The parsed-type tree of a stored type description (``quanta/_catalog/format.py``),
    for the JSON encoders: enums and dataclasses without their classes (values come as the
    record stores them: enum values, arrays of dataclass fields), links with the node of
    their target's primary key (``Any`` if the target has no stored schema)."""
    seen: dict[str, TypeNode] = {} if _seen is None else _seen
    if isinstance(desc, str):
        if desc in _SCALARS:
            return TypeNode("scalar", _SCALARS[desc])
        return TypeNode("any")
    if not isinstance(desc, list) or not desc:
        return TypeNode("any")
    kind = desc[0]
    if kind in ("optional", "list", "set", "frozenset", "vtuple"):
        return TypeNode(kind, args=(node_of(desc[1], schemas, seen),))
    if kind == "tuple":
        return TypeNode("tuple", args=tuple(node_of(d, schemas, seen) for d in desc[1]))
    if kind == "dict":
        return TypeNode("dict", args=(node_of(desc[1], schemas, seen), node_of(desc[2], schemas, seen)))
    if kind == "enum":
        return TypeNode("enum")
    if kind == "dataclass":
        node = TypeNode("dataclass")
        seen[desc[1]] = node
        node.fields = tuple((name, node_of(sub, schemas, seen)) for name, sub in desc[2])
        return node
    if kind == "ref":
        return seen.get(desc[1], TypeNode("any"))
    if kind == "other" and desc[1] in ("link", "links") and isinstance(desc[2], str):
        target = desc[2].split("[", 1)[-1].rstrip("]").removesuffix(" | None")
        stored = _target_schema(target, schemas)
        key = TypeNode("any")
        if stored is not None:
            pk = stored.field(stored.primary_key)
            if pk is not None and not (isinstance(pk.type, list) and pk.type[:1] == ["other"]):
                key = node_of(pk.type, schemas)
        return TypeNode(desc[1], args=(key,))
    return TypeNode("any")


def _target_schema(target: str, schemas: dict[str, StoredSchema]) -> StoredSchema | None:
    """The schema a link description's target names: the label holds the target's class
    name, which is the entity name unless ``@entity(name=...)`` gave another (then the
    schema's class path ends with it)."""
    found = schemas.get(target)
    if found is not None:
        return found
    matches = [s for s in schemas.values() if s.cls.rpartition(".")[2] == target]
    return matches[0] if len(matches) == 1 else None


async def stored_schemas(snap: Snapshot) -> dict[str, StoredSchema]:
    """Every entity's stored schema as of ``snap`` (``CorruptionError``-free catalogs only);
    an entity with an unfinished migration raises ``InvalidArgumentError`` (its records are
    in two shapes until the migration completes)."""
    out: dict[str, StoredSchema] = {}
    lo: bytes | None = _CATALOG
    hi = prefix_end(_CATALOG)
    while lo is not None:
        nxt: bytes | None = None
        scan = cast(AsyncGenerator[tuple[bytes, bytes], None], snap.kv._scan(lo, hi))
        async with aclosing(scan):
            async for key, value in scan:
                t = decode_tuple(key[len(_CATALOG) :])
                if len(t) == 1:
                    out[str(t[0])] = StoredSchema.from_bytes(value)
                elif t[1] == "~job" and t[2] == "migrate":
                    raise InvalidArgumentError(
                        f"{t[0]!s}: an interrupted migration has not finished; open the database with its "
                        "entity classes (quanta.open(path, entities=[...])) to finish it, then export"
                    )
                elif t[1] in ("~stage", "~claim"):  # a migration's data: skip the whole range
                    nxt = prefix_end(_CATALOG + encode_tuple(t[:2]))
                    break
        lo = nxt
    return out


def check_entities(entities: object, schemas: dict[str, StoredSchema]) -> list[str]:
    """The entity names to export (every stored one for None), checked."""
    if entities is None:
        return sorted(schemas)
    if isinstance(entities, (str, bytes)) or not isinstance(entities, Iterable):
        raise InvalidTypeError("entities must be an iterable of entity names or entity classes")
    names: list[str] = []
    for e in entities:
        if isinstance(e, str):
            name = e
        elif isinstance(e, type):
            try:
                name = entity_info(e).name
            except QuantaError:
                raise InvalidTypeError(f"{e.__qualname__} is not an entity class") from None
        else:
            raise InvalidTypeError(f"entities must hold entity names or classes, got {type(e).__name__}")
        if name not in schemas:
            known = ", ".join(sorted(schemas)) or "none"
            raise InvalidArgumentError(f"no entity {name!r} is stored in this database (stored: {known})")
        if name not in names:
            names.append(name)
    return names


async def export_jsonl(
    snap: Snapshot, path: str, *, entities: object = None, kv: bool = False, progress: Progress | None = None
) -> TransferReport:
    """Write the state of ``snap`` to ``path`` (see the module docstring). ``snap`` stays
    the caller's to release."""
    schemas = await stored_schemas(snap)
    names = check_entities(entities, schemas)
    chosen = [schemas[n] for n in names]
    report = TransferReport(seq=snap.seq)
    lines = 0
    async with aiofiles.open(path, "wb") as f:
        digest = hashlib.sha256()
        head = dump_line(header(snap.seq, kv, chosen))
        digest.update(head)
        await f.write(head)
        lines += 1
        for schema in chosen:
            n = 0
            async for chunk in _record_chunks(snap, schema, schemas):
                data = b"".join(chunk)
                digest.update(data)
                await f.write(data)
                n += len(chunk)
                lines += len(chunk)
                if progress is not None:
                    progress("export", lines)
            report.records[schema.name] = n
        if kv:
            async for chunk in _kv_chunks(snap):
                data = b"".join(chunk)
                digest.update(data)
                await f.write(data)
                report.kv += len(chunk)
                lines += len(chunk)
                if progress is not None:
                    progress("export", lines)
        await f.write(dump_line(trailer(report.total, report.kv, digest.hexdigest())))
        lines += 1
        await f.flush()
        await anyio_fsync(f)
    report.lines = lines
    return report


async def anyio_fsync(f: Any) -> None:
    """fsync an aiofiles file (in its thread): the export is on disk when the call returns."""
    import anyio.to_thread

    fd = f.fileno()
    try:
        await anyio.to_thread.run_sync(os.fsync, fd)
    except OSError:  # a pipe or /dev/stdout: nothing to make durable
        pass


async def _record_chunks(snap: Snapshot, schema: StoredSchema, schemas: dict[str, StoredSchema]) -> Any:
    name, version = schema.name, schema.version
    fields = [(f.name, json_encoder(node_of(f.type, schemas))) for f in schema.fields]
    width = len(fields) + 1
    lo, hi = record_prefix(name)
    async with aclosing(snap.kv._scan_chunks(lo, hi, False, CHUNK)) as chunks:
        async for keys, values in chunks:
            out: list[bytes] = []
            for key, data in zip(keys, values, strict=True):
                try:
                    rec = decode_value(data)
                    if type(rec) is not list or len(rec) != width or rec[0] != version:
                        raise ValueError(f"not a version {version} record of {width - 1} fields")
                    obj = {fname: enc(v) for (fname, enc), v in zip(fields, rec[1:], strict=True)}
                except (QuantaError, ValueError, TypeError, AttributeError) as exc:
                    raise CorruptionError(
                        f"the {name} record under key {key.hex()} cannot be exported: {exc}; "
                        "db.verify(deep=True) lists such records",
                        path=f"<record {name}>",
                    ) from exc
                out.append(dump_line({"entity": name, "record": obj}))
            yield out


async def _kv_chunks(snap: Snapshot) -> Any:
    out: list[bytes] = []
    b64 = base64.b64encode
    async for key, value in snap.kv.scan():
        assert not key.startswith(RESERVED_PREFIX)
        out.append(b'{"key":"' + b64(key) + b'","value":"' + b64(value) + b'"}\n')
        if len(out) >= CHUNK:
            yield out
            out = []
    if out:
        yield out
