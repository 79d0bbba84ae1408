"""Collections and queries: typed entity storage on top of transactions, and the executor that
runs the planner's plans.

``db.collection(User)`` and ``tx.collection(User)`` return a :class:`Collection`. Writes go
through a transaction: a collection of a transaction buffers them in it; a collection of the
database runs each call as its own transaction (``run_transaction``, so a conflict with a
concurrent writer, e.g. on a unique value, is retried). A record and all its index entries
are always one atomic batch. Reads of a database collection run at one snapshot per call.

Storage layout: ``quanta/_schema/keyspace.py``. Per record: the record under its record key;
per non-unique index one entry per record (``index_key``: the values then the primary key; a
multi-entry index one per distinct element); per unique index one entry per record whose
values are all non-None (``unique_key``: the values). Every entry's value is the encoded
primary key, so a query reaches the record by concatenation, without decoding the entry.

Concurrency rules: event-loop thread only. Auto-increment keys come from a counter per entity
(per open database), seeded from the largest stored key on first use; a key handed out is
never reused, even if its transaction rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._codec import decode_tuple, encode_key, encode_tuple
from ._query import Expr, Field, Order, Plan, and_, as_order, plan
from ._schema import EntityInfo, IndexInfo
from ._schema.keyspace import EntityKeys, record_prefix
from .errors import InvalidArgumentError, InvalidTypeError, QueryError, UniqueViolationError

if TYPE_CHECKING:
    from ._kv import _Reader
    from ._txn import Transaction, TransactionKeyValue

__all__ = ["Collection", "Query", "entity_info_of"]

E = TypeVar("E")
R = TypeVar("R")

_GET_BATCH = 512  # index scans fetch records in batches of this many primary keys


def entity_info_of(cls: object) -> EntityInfo:
    info = getattr(cls, "__quanta_entity__", None)
    if not isinstance(info, EntityInfo) or info.cls is not cls:
        name = getattr(cls, "__name__", type(cls).__name__)
        raise InvalidTypeError(f"{name} is not an entity class: declare it with @quanta.entity")
    return info


class _Sequences:
    """Auto-increment counters, one per entity, shared by every collection of one database."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}
        self.locks: dict[str, asyncio.Lock] = {}


class Collection(Generic[E]):
    """The records of one entity class. See the module docstring."""

    __slots__ = ("_info", "_reader", "_run", "_sequences", "_snapshot", "_tx")

    def __init__(
        self,
        info: EntityInfo,
        *,
        sequences: _Sequences,
        tx: Transaction | None = None,
        run: Callable[[Callable[[Transaction], Awaitable[Any]]], Awaitable[Any]] | None = None,
        reader: _Reader | None = None,
        snapshot: Callable[[], Any] | None = None,
    ) -> None:
        self._info = info
        self._sequences = sequences
        self._tx = tx
        self._run = run
        self._reader = reader
        self._snapshot = snapshot

    @property
    def entity(self) -> type[E]:
        return self._info.cls

    def __repr__(self) -> str:
        where = "transaction" if self._tx is not None else "database"
        return f"<quanta.Collection of {self._info.name} ({where})>"

    # ------------------------------------------------------------------ writes

    async def _write(self, op: Callable[[TransactionKeyValue], Awaitable[R]]) -> R:
        if self._tx is not None:
            return await op(self._tx.kv)
        assert self._run is not None
        result: R = await self._run(lambda tx: op(tx.kv))
        return result

    async def put(self, obj: E) -> Any:
        """Insert or replace ``obj`` (with its index entries, atomically); return its primary
        key. An auto key that is unassigned (0 or None) is assigned and set on ``obj``.
        Raises InvalidTypeError for a field of the wrong type and UniqueViolationError for a
        duplicate unique value, before anything is written."""
        pks = await self.put_many([obj])
        return pks[0]

    async def put_many(self, objs: Iterable[E]) -> list[Any]:
        """``put`` for many objects, as one atomic batch: all or nothing. If two objects have
        the same primary key, the later one wins."""
        if isinstance(objs, (str, bytes)) or not isinstance(objs, Iterable):
            raise InvalidTypeError(f"put_many takes an iterable of {self._info.name} objects")
        items = list(objs)
        info = self._info
        cls, check = info.cls, info.check
        for obj in items:
            if type(obj) is not cls:
                raise InvalidTypeError(f"expected a {info.name}, got {type(obj).__name__}")
            check(obj)
        if not items:
            return []
        if info.auto:
            await self._assign_keys(items)
        pks = [getattr(obj, info.primary_key) for obj in items]
        await self._write(lambda kv: _put_records(info, kv, items, pks))
        return pks

    async def _assign_keys(self, items: list[Any]) -> None:
        info = self._info
        name, pk = info.name, info.primary_key
        seq = self._sequences
        if name not in seq.next:
            lock = seq.locks.setdefault(name, asyncio.Lock())
            async with lock:
                if name not in seq.next:
                    seq.next[name] = await self._largest_key() + 1
        explicit = {value for obj in items if (value := getattr(obj, pk))}
        counter = seq.next[name]
        for obj in items:
            if not getattr(obj, pk):  # 0 or None: not assigned yet
                while counter in explicit:  # never a key another object of this batch gives
                    counter += 1
                object.__setattr__(obj, pk, counter)
                counter += 1
        seq.next[name] = max(counter, max(explicit, default=0) + 1)

    async def _largest_key(self) -> int:
        start, stop = record_prefix(self._info.name)
        reader = self._read_view()
        async for key, _ in reader.scan(start, stop, reverse=True, limit=1):
            pk = decode_tuple(key[3:])[1]
            return pk if isinstance(pk, int) and pk > 0 else 0
        return 0

    async def delete(self, pk: Any) -> bool:
        """Delete the record with primary key ``pk`` and its index entries; False if there
        was none."""
        return bool(await self.delete_many([pk]))

    async def delete_many(self, pks: Iterable[Any]) -> int:
        """Delete every record whose primary key is in ``pks`` (one atomic batch); return how
        many existed."""
        if isinstance(pks, (str, bytes)) or not isinstance(pks, Iterable):
            raise InvalidTypeError("delete_many takes an iterable of primary keys")
        keys = list(dict.fromkeys(self._pk_key(pk) for pk in pks))  # a key given twice counts once
        if not keys:
            return 0
        info = self._info
        return await self._write(lambda kv: _delete_records(info, kv, keys))

    def _pk_key(self, pk: Any) -> bytes:
        keys = _keys(self._info)
        if type(pk) is keys.pk_type:  # the common case: exactly the declared type
            return keys.record(pk)
        info = self._info
        kt = info.pk_field.key_type
        if kt is float and type(pk) is int:
            try:
                pk = float(pk)
            except OverflowError:
                raise InvalidArgumentError(
                    f"{info.name}.{info.primary_key}: {pk} is too large for a float key"
                ) from None
        if kt is None or not isinstance(pk, kt) or (kt is int and isinstance(pk, bool)):
            raise InvalidTypeError(
                f"{info.name}.{info.primary_key}: a primary key is a {getattr(kt, '__name__', kt)}, "
                f"got {type(pk).__name__}"
            )
        return keys.record(pk)

    # ------------------------------------------------------------------ reads

    def _read_view(self) -> _Reader | TransactionKeyValue:
        if self._tx is not None:
            return self._tx.kv
        assert self._reader is not None
        return self._reader

    async def get(self, pk: Any) -> E | None:
        """The record with primary key ``pk``, or None."""
        view = self._tx.kv if self._tx is not None else self._reader
        data = await view.get(self._pk_key(pk))  # type: ignore[union-attr]
        return None if data is None else self._info.decode(data)

    async def get_many(self, pks: Iterable[Any]) -> list[E | None]:
        """Records for ``pks``, in the same order (None where absent)."""
        if isinstance(pks, (str, bytes)) or not isinstance(pks, Iterable):
            raise InvalidTypeError("get_many takes an iterable of primary keys")
        keys = [self._pk_key(pk) for pk in pks]
        decode = self._info.decode
        return [None if v is None else decode(v) for v in await self._read_view().get_many(keys)]

    async def count(self) -> int:
        """How many records the collection holds (a scan of the records: O(n))."""
        return await self.query().count()

    # ------------------------------------------------------------------ queries

    def query(self) -> Query[E]:
        """Every record (refine with ``where``, ``order_by``, ``limit``, ``offset``)."""
        return Query(self, None, (), None, 0)

    def where(self, *conditions: Any) -> Query[E]:
        """Records matching every condition: ``users.where(User.city == "Oslo", User.age >= 30)``."""
        return self.query().where(*conditions)

    def order_by(self, *keys: Any) -> Query[E]:
        return self.query().order_by(*keys)

    def __aiter__(self) -> AsyncIterator[E]:
        return self.query().__aiter__()


# ---------------------------------------------------------------------- writing records


def _keys(info: EntityInfo) -> EntityKeys:
    """The entity's key builders, made once per class."""
    keys: EntityKeys | None = info.cls.__dict__.get("__quanta_keys__")
    if keys is None:
        keys = EntityKeys(info.name, [idx.name for idx in info.indexes])
        keys.pk_type = info.pk_field.key_type
        type.__setattr__(info.cls, "__quanta_keys__", keys)
    return keys


def _entries(info: EntityInfo, keys: EntityKeys, obj: Any, pk: Any) -> dict[bytes, bytes]:
    """Every index entry of ``obj`` (key -> value)."""
    out: dict[bytes, bytes] = {}
    for idx in info.indexes:
        if idx.multi:
            elements = getattr(obj, idx.fields[0])
            if elements:
                prefix = keys.index_prefixes[idx.name]
                epk = encode_key(pk)
                for element in set(elements):
                    out[prefix + encode_key(element) + epk] = epk
            continue
        values = tuple([getattr(obj, f) for f in idx.fields])
        if idx.unique:
            if any(type(v) is float and v == 0.0 for v in values):
                values = tuple(0.0 if type(v) is float and v == 0.0 else v for v in values)  # -0.0 == 0.0
            if None not in values:
                out[keys.unique(idx.name, values)] = encode_key(pk)
        else:
            out[keys.index(idx.name, values, pk)] = encode_key(pk)
    return out


def _unique_index(info: EntityInfo, key: bytes) -> IndexInfo:
    name = decode_tuple(key[3:])[1]
    for idx in info.indexes:
        if idx.name == name:
            return idx
    raise AssertionError(name)  # pragma: no cover


async def _put_records(info: EntityInfo, kv: TransactionKeyValue, items: list[Any], pks: list[Any]) -> None:
    keys = _keys(info)
    prefix = keys.record_prefix
    epks = [encode_key(pk) for pk in pks]
    latest = {prefix + e: (obj, pk, e) for obj, pk, e in zip(items, pks, epks, strict=True)}  # later wins
    encode, decode = info.encode, info.decode
    rkeys = list(latest)
    records = [encode(obj) for obj, _, _ in latest.values()]
    if not info.indexes:
        kv._put_generated(rkeys, records)  # type: ignore[arg-type]
        return
    olds = await kv.get_many(rkeys)  # also makes a concurrent change of these records a conflict
    if all(old is None for old in olds) and not any(idx.unique for idx in info.indexes):
        # Only new records and no unique index (a bulk load): index keys column by column.
        entry_keys, entry_values = _new_entries(info, keys, [(obj, e) for obj, _, e in latest.values()])
        kv._put_generated([*entry_keys, *rkeys], [*entry_values, *records])
        return
    removed: set[bytes] = set()
    added: dict[bytes, bytes] = {}
    claims: dict[bytes, Any] = {}  # unique entry -> pk claiming it in this batch
    unique = any(idx.unique for idx in info.indexes)
    for (obj, pk, _), old in zip(latest.values(), olds, strict=True):
        new = _entries(info, keys, obj, pk)
        if old is None:
            before: dict[bytes, bytes] = {}
        else:
            before = _entries(info, keys, decode(old), pk)
            removed.update(k for k in before if k not in new)
        if not unique and not before:
            added.update(new)
            continue
        for k, v in new.items():
            if k in before:
                continue
            if k[2] == 0x75:  # a unique entry (kind byte b"u")
                other = claims.get(k, _NONE)
                if other is not _NONE and other != pk:
                    _violation(info, k)
                claims[k] = pk
            added[k] = v
    if claims:
        fresh = [k for k in claims if k not in removed]
        for k, existing in zip(fresh, await kv.get_many(fresh), strict=True):
            if existing is not None and decode_tuple(existing)[0] != claims[k]:
                _violation(info, k)
    out_keys = [k for k in removed if k not in added]
    out_values: list[bytes | None] = [None] * len(out_keys)
    out_keys += added
    out_values += added.values()
    out_keys += rkeys
    out_values += records
    kv._put_generated(out_keys, out_values)


_NONE = object()


def _new_entries(
    info: EntityInfo, keys: EntityKeys, objs: list[tuple[Any, bytes]]
) -> tuple[list[bytes], list[bytes | None]]:
    """Keys and values of every non-unique index entry of ``objs`` (``(obj, encoded pk)``
    pairs): ``_entries`` for a bulk insert, one index at a time (an entry is the index prefix,
    the encoded values, then the encoded primary key; its value is the encoded primary key)."""
    out: list[bytes] = []
    values: list[bytes | None] = []
    for idx in info.indexes:
        p = keys.index_prefixes[idx.name]
        if idx.multi:
            f = idx.fields[0]
            for obj, e in objs:
                elements = getattr(obj, f)
                if elements:
                    distinct = set(elements)
                    out += [p + encode_key(el) + e for el in distinct]
                    values += [e] * len(distinct)
            continue
        if len(idx.fields) == 1:
            f = idx.fields[0]
            out += [p + encode_key(getattr(obj, f)) + e for obj, e in objs]
        else:
            fields = idx.fields
            out += [p + encode_tuple([getattr(obj, f) for f in fields]) + e for obj, e in objs]
        values += [e for _, e in objs]
    return out, values


def _violation(info: EntityInfo, key: bytes) -> None:
    idx = _unique_index(info, key)
    values = decode_tuple(key[3:])[2:]
    shown = values[0] if len(values) == 1 else values
    raise UniqueViolationError(
        f"{info.name}.{'/'.join(idx.fields)} must be unique: {shown!r} is already used by another record; "
        "nothing was written",
        entity=info.name,
        index=idx.name,
        value=shown,
    )


async def _delete_records(info: EntityInfo, kv: TransactionKeyValue, keys: list[bytes]) -> int:
    olds = await kv.get_many(keys)
    decode = info.decode
    entity_keys = _keys(info)
    gone: list[bytes] = []
    n = 0
    for key, old in zip(keys, olds, strict=True):
        if old is None:
            continue
        n += 1
        obj = decode(old)
        gone.extend(_entries(info, entity_keys, obj, getattr(obj, info.primary_key)))
        gone.append(key)
    kv._put_generated(gone, [None] * len(gone))
    return n


# ---------------------------------------------------------------------- queries


class Query(Generic[E]):
    """A query over one collection. Built with ``where``, ``order_by``, ``limit``, ``offset``
    (each returns a new query; a query is immutable); run with ``all``, ``first``, ``count``,
    ``exists``, ``async for``, the aggregates, or ``delete``. ``explain()`` shows the plan.

    Ill-typed or impossible queries raise ``QueryError`` when built, not when run.
    """

    __slots__ = ("_coll", "_limit", "_offset", "_order", "_plan", "_where")

    def __init__(
        self, coll: Collection[E], where: Expr | None, order: tuple[Order, ...], limit: int | None, offset: int
    ) -> None:
        self._coll = coll
        self._where = where
        self._order = order
        self._limit = limit
        self._offset = offset
        self._plan: Plan | None = None
        self._plan = self.plan()  # plan now: a bad query fails when built

    def _replace(self, **changes: Any) -> Query[E]:
        args: dict[str, Any] = {
            "where": self._where,
            "order": self._order,
            "limit": self._limit,
            "offset": self._offset,
        }
        args.update(changes)
        return Query(self._coll, args["where"], args["order"], args["limit"], args["offset"])

    def where(self, *conditions: Any) -> Query[E]:
        for c in conditions:
            if not isinstance(c, Expr):
                raise QueryError(
                    f"where() takes conditions such as User.age >= 30, got {c!r:.60} "
                    "(a plain bool: was a comparison evaluated too early?)"
                )
        parts = ([self._where] if self._where is not None else []) + list(conditions)
        if not parts:
            return self
        return self._replace(where=parts[0] if len(parts) == 1 else and_(*parts))

    def order_by(self, *keys: Any) -> Query[E]:
        orders = []
        for k in keys:
            if not isinstance(k, (Field, Order)):
                raise QueryError(f"order_by() takes fields or quanta.desc(field), got {k!r:.60}")
            orders.append(as_order(k))
        return self._replace(order=self._order + tuple(orders))

    def limit(self, n: int | None) -> Query[E]:
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise QueryError(f"limit must be a non-negative int or None, got {n!r}")
        return self._replace(limit=n)

    def offset(self, n: int) -> Query[E]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise QueryError(f"offset must be a non-negative int, got {n!r}")
        return self._replace(offset=n)

    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = plan(self._coll._info, self._where, self._order, self._limit, self._offset)
        return self._plan

    def explain(self) -> str:
        """The chosen access path, index, key ranges, residual filter, sort and window."""
        return self.plan().explain()

    # ------------------------------------------------------------------ running

    async def all(self) -> list[E]:
        return [obj async for obj in self]

    async def first(self) -> E | None:
        async for obj in self.limit(1 if self._limit is None else min(self._limit, 1)):
            return obj
        return None

    async def exists(self) -> bool:
        return await self.first() is not None

    async def count(self) -> int:
        n = 0
        async for _ in self._replace(order=()):
            n += 1
        return n

    def __aiter__(self) -> AsyncIterator[E]:
        return self._run()

    async def _run(self) -> AsyncIterator[E]:
        coll = self._coll
        if coll._tx is not None:
            async for obj in _execute(self.plan(), coll._info, coll._tx.kv):
                yield obj
            return
        assert coll._snapshot is not None
        snap = coll._snapshot()
        try:
            async for obj in _execute(self.plan(), coll._info, snap.kv):
                yield obj
        finally:
            snap.release()

    async def _values(self, field: Any) -> list[Any]:
        if not isinstance(field, Field) or field.owner is not self._coll._info.cls:
            raise QueryError(f"expected a field of {self._coll._info.name}, got {field!r:.60}")
        name = field.name
        return [getattr(obj, name) async for obj in self]

    async def min(self, field: Any) -> Any:
        """The smallest non-None value of ``field`` among the matches (None if none)."""
        values = [v for v in await self._values(field) if v is not None]
        return min(values) if values else None

    async def max(self, field: Any) -> Any:
        values = [v for v in await self._values(field) if v is not None]
        return max(values) if values else None

    async def sum(self, field: Any) -> Any:
        return sum(v for v in await self._values(field) if v is not None)

    async def avg(self, field: Any) -> float | None:
        values = [v for v in await self._values(field) if v is not None]
        return sum(values) / len(values) if values else None

    async def distinct(self, field: Any) -> list[Any]:
        """The distinct values of ``field`` among the matches, in result order."""
        out: list[Any] = []
        seen: set[Any] = set()
        for value in await self._values(field):
            try:
                if value in seen:
                    continue
                seen.add(value)
            except TypeError:  # unhashable (a list field): compare by equality
                if value in out:
                    continue
            out.append(value)
        return out

    async def delete(self) -> int:
        """Delete every match (with its index entries) in one atomic batch; return how many."""
        coll = self._coll
        info = coll._info
        query_plan = self.plan()

        async def op(kv: TransactionKeyValue) -> int:
            keys = [_keys(info).record(getattr(obj, info.primary_key)) async for obj in _execute(query_plan, info, kv)]
            return await _delete_records(info, kv, keys) if keys else 0

        return await coll._write(op)

    def __repr__(self) -> str:
        return f"<quanta.Query {self._coll._info.name} where {self._where!r}>"


async def _execute(p: Plan, info: EntityInfo, reader: Any) -> AsyncIterator[Any]:
    """Run plan ``p`` against ``reader`` (a snapshot's or a transaction's ``kv``); the
    contract is in ``quanta/_query/planner.py``."""
    residual = p.residual
    matches = residual.evaluate if residual is not None else None
    source = _records(p, info, reader)
    if p.limit == 0:
        return
    if p.sorted_by_access:
        skip, stop = p.offset, p.stop_after
        n = 0
        async for obj in source:
            if matches is not None and not matches(obj):
                continue
            n += 1
            if n <= skip:
                continue
            yield obj
            if stop is not None and n >= stop:
                return
        return
    found = [obj async for obj in source if matches is None or matches(obj)]
    ordered = p.sort(found)
    end = None if p.limit is None else p.offset + p.limit
    for obj in ordered[p.offset : end]:
        yield obj


async def _records(p: Plan, info: EntityInfo, reader: Any) -> AsyncIterator[Any]:
    decode = info.decode
    prefix = _keys(info).record_prefix
    if p.access in ("pk_get", "unique_get"):
        keys = [start for start, _ in p.ranges]
        if p.reverse:  # the lookups, like ranges, in the plan's direction
            keys.reverse()
        values = await reader.get_many(keys)
        if p.access == "pk_get":
            for v in values:
                if v is not None:
                    yield decode(v)
            return
        # A unique entry's value is its record's encoded primary key.
        for v in await reader.get_many([prefix + v for v in values if v is not None]):
            if v is not None:
                yield decode(v)
        return
    ranges: Sequence[tuple[bytes, bytes | None]] = p.ranges[::-1] if p.reverse else p.ranges
    if p.access in ("pk_range", "full_scan"):
        for start, stop in ranges:
            async for _, v in reader.scan(start, stop, reverse=p.reverse):
                yield decode(v)
        return
    seen: set[bytes] | None = set() if p.dedupe else None
    batch: list[bytes] = []
    for start, stop in ranges:
        async for _, v in reader.scan(start, stop, reverse=p.reverse):
            # Every index entry's value is its record's encoded primary key (canonical: equal
            # bytes, equal keys), so the record key needs no decoding.
            if seen is not None:
                if v in seen:
                    continue
                seen.add(v)
            batch.append(prefix + v)
            if len(batch) >= _GET_BATCH:
                for data in await reader.get_many(batch):
                    if data is not None:
                        yield decode(data)
                batch = []
    if batch:
        for data in await reader.get_many(batch):
            if data is not None:
                yield decode(data)
