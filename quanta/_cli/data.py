"""The data commands: ``get``, ``scan``, ``count``, ``put``, ``delete`` and ``query``.

Reads open the database read-only (they run beside an application that has it open); ``put``
and ``delete`` open it for writing and go through ``db.kv``, so the reserved entity key space
is refused with the ``ReservedKeyError`` the kv API raises. Entity reads use the class a
``--module`` declares, else one rebuilt from the stored schema (entities.py), through the
ordinary collection and query API: a query plans on the stored indexes as the Python API
does.

``--json``: ``get`` and ``query`` print one JSON document (an object; an array of records);
``scan`` prints one JSON object per line (it may be long); ``count`` prints
``{"count": n}``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .. import _db
from .._catalog import StoredSchema
from .entities import class_for
from .expr import parse_expression, parse_order
from .keys import show_key, show_value
from .output import Output, jsonable

__all__ = ["count", "delete", "get", "put", "query", "scan"]


def _bytes(text: str, hex_: bool, what: str) -> bytes:
    if not hex_:
        return text.encode()
    try:
        return bytes.fromhex(text)
    except ValueError:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"{what} {text!r} is not hex (--hex takes pairs of hex digits)") from None


def _pk(text: str) -> Any:
    """A primary key typed on the command line: a Python literal (42, 'ann', (1, 2)), else
    the text itself (a bare word is a string key)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _text(value: bytes) -> str:
    """A kv value as printed by ``get``: its text when it is UTF-8, else Python's bytes form."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return repr(value)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _record(obj: Any, schema: StoredSchema) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in schema.fields}


def _records_out(out: Output, schema: StoredSchema, rows: Sequence[dict[str, Any]], *, lines: bool) -> None:
    if out.as_json:
        if lines:
            for row in rows:
                out.json_line(row)
        else:
            out.json([jsonable(r) for r in rows])
        return
    columns = [f.name for f in schema.fields]
    out.table(columns, [[_cell(r[c]) for c in columns] for r in rows], title=None)


def _read(path: str) -> Any:
    return _db.open(path, read_only=True, create_if_missing=False)


async def get(path: str, key: str, entity: str | None, hex_: bool, modules: list[str] | None, out: Output) -> int:
    """Print one value (or record); returns 1 (the exit status) when there is none."""
    async with _read(path) as db:
        if entity is None:
            k = _bytes(key, hex_, "KEY")
            value = await db.kv.get(k)
            if out.as_json:
                out.json_line({"key": k, "value": value})
            elif value is not None:
                out.line(_text(value))
            if value is None:
                print(f"quanta get: no value for key {k!r}", file=sys.stderr)
                return 1
            return 0
        state = await db.schema_state()
        cls, schema = class_for(entity, state.schemas, modules)
        pk = _pk(key)
        obj = await db.collection(cls).get(pk)
    if obj is None:
        if out.as_json:
            out.json_line({"entity": entity, "key": pk, "record": None})
        print(f"quanta get: no {entity} record with primary key {pk!r}", file=sys.stderr)
        return 1
    record = _record(obj, schema)
    if out.as_json:
        out.json_line({"entity": entity, "key": pk, "record": record})
    elif out.rich:
        out.table(("field", "value"), [(name, _cell(v)) for name, v in record.items()], title=f"{entity}[{pk!r}]")
    else:
        out.line(f"{entity}[{pk!r}] {record!r}")
    return 0


async def scan(
    path: str,
    prefix: str | None,
    limit: int | None,
    entity: str | None,
    reserved: bool,
    hex_: bool,
    modules: list[str] | None,
    out: Output,
) -> None:
    async with _read(path) as db:
        if entity is not None:
            state = await db.schema_state()
            cls, schema = class_for(entity, state.schemas, modules)
            q = db.collection(cls).query().limit(limit)
            rows = [_record(obj, schema) async for obj in _iterate(q)]
            _records_out(out, schema, rows, lines=True)
            return
        p = None if prefix is None else _bytes(prefix, hex_, "--prefix")
        pairs = [(k, v) async for k, v in db.kv.scan(prefix=p, limit=limit, include_reserved=reserved)]
    if out.as_json:
        for k, v in pairs:
            if reserved:
                out.json_line({"key": show_key(k, v), "value": show_value(k, v) or None, "raw_key": k})
            else:
                out.json_line({"key": k, "value": v})
        return
    out.table(("key", "value"), [(show_key(k, v), show_value(k, v)) for k, v in pairs], header=out.rich)


async def _iterate(q: Any) -> AsyncIterator[Any]:
    async for obj in q:
        yield obj


async def count(path: str, entity: str | None, prefix: str | None, out: Output) -> None:
    async with _read(path) as db:
        if entity is not None:
            state = await db.schema_state()
            cls, _ = class_for(entity, state.schemas, None)
            n = await db.collection(cls).count()
        else:
            n = 0
            async for _ in db.kv.scan(prefix=None if prefix is None else prefix.encode()):
                n += 1
    if out.as_json:
        out.json_line({"count": n})
    else:
        out.line(f"{n}")


async def put(path: str, key: str, value: str, hex_: bool, out: Output) -> None:
    k, v = _bytes(key, hex_, "KEY"), _bytes(value, hex_, "VALUE")
    async with _db.open(path, create_if_missing=False) as db:
        await db.kv.put(k, v)
        seq = db.seq
    out.line(f"put {k!r} ({len(v)} bytes) as commit #{seq}")


async def delete(path: str, key: str, hex_: bool, out: Output) -> None:
    k = _bytes(key, hex_, "KEY")
    async with _db.open(path, create_if_missing=False) as db:
        existed = await db.kv.get(k) is not None
        await db.kv.delete(k)
        seq = db.seq
    out.line(f"deleted {k!r} as commit #{seq}" if existed else f"{k!r} was not there (commit #{seq} deletes nothing)")


async def query(
    path: str,
    entity: str,
    expression: str | None,
    order_by: list[str] | None,
    limit: int | None,
    explain: bool,
    modules: list[str] | None,
    out: Output,
) -> None:
    async with _read(path) as db:
        state = await db.schema_state()
        cls, schema = class_for(entity, state.schemas, modules)
        fields = [f.name for f in schema.fields]
        q = db.collection(cls).query()
        if expression is not None and expression.strip():
            q = q.where(parse_expression(expression, cls, entity, fields))
        if order_by:
            q = q.order_by(*(parse_order(k, cls, entity, fields) for k in order_by))
        if limit is not None:
            q = q.limit(limit)
        if explain:
            text = q.explain()
            plan = q.plan()
            if out.as_json:
                index = plan.index.name if plan.index is not None else None
                out.json({"entity": entity, "access": plan.access, "index": index, "explain": text})
            else:
                for line in text.splitlines():
                    out.line(line)
            return
        rows = [_record(obj, schema) for obj in await q.all()]
    _records_out(out, schema, rows, lines=False)
