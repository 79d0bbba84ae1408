"""Collections: typed entity storage on top of transactions (queries and their executor are in
``quanta/_queries.py``).

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

Links (``quanta/_relations.py``): for an entity with link fields, ``put``/``put_many`` first
check that every target exists (``IntegrityError``); deletes of an entity that links point to
apply their ``on_delete`` rules through the graph in the same batch; objects of a class with
links or backlinks are bound to the collection's database or transaction (what their links
load through). Any other entity runs exactly the code paths described above.

Concurrency rules: event-loop thread only. Auto-increment keys come from a counter per entity
(per open database), seeded on first use from the larger of the largest stored key + 1 and the
persisted counter (``keyspace.sequence_key``); a key handed out is never handed out again by
this open database, even if its transaction rolls back. A batch that deletes records of an
auto-key entity (``delete``, a cascade, ``rekey``) raises the persisted counter past the keys
it deletes, in the same batch (``_retire_keys``), so no committed key is ever handed out
again, after a reopen or a crash either. (Keys taken by a transaction that never committed
may be handed out again after a reopen: nothing of them was stored.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _relations
from ._codec import decode_key, decode_tuple, encode_key, encode_keys, encode_tuple, successor
from ._options import MAX_VALUE_BYTES
from ._schema import EntityInfo, IndexInfo
from ._schema import relations as _links
from ._schema.keyspace import EntityKeys, bad_record_error, index_prefix, record_prefix, sequence_key, unique_prefix
from .errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidTypeError,
    LimitExceededError,
    UniqueViolationError,
)

if TYPE_CHECKING:
    from ._catalog import Catalog
    from ._kv import _Reader
    from ._queries import Query
    from ._txn import Transaction, TransactionKeyValue

__all__ = ["Collection", "entity_info_of"]

E = TypeVar("E")
R = TypeVar("R")


def entity_info_of(cls: object) -> EntityInfo:
    info = getattr(cls, "__quanta_entity__", None)
    if not isinstance(info, EntityInfo) or info.cls is not cls:
        name = getattr(cls, "__name__", type(cls).__name__)
        raise InvalidTypeError(f"{name} is not an entity class: declare it with @quanta.entity")
    if _links.has_pending() and info.relations is not None:
        info.relations.require()  # forward references resolve at first use (SchemaError if they cannot)
    return info


class _Sequences:
    """Auto-increment counters, one per entity, shared by every collection of one database
    (which also reach the database's schema catalog through it: ``catalog``)."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        # The schema catalog (quanta/_catalog), set by the database: it admits the classes
        # collections are made for and hides incomplete indexes from the planner.
        self.catalog: Catalog | None = None


class Collection(Generic[E]):
    """The records of one entity class. See the module docstring."""

    __slots__ = ("_bind", "_info", "_keys", "_reader", "_run", "_sequences", "_snapshot", "_tx")

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
        if sequences.catalog is not None:
            sequences.catalog.admit(info)  # SchemaMismatchError for a class the stored schema cannot read
        self._info = info
        self._keys = _keys(info)
        # Objects of a class with links or backlinks are bound to this collection's source
        # (quanta/_schema/relations.py, "Binding"); for any other class nothing is done.
        self._bind = info.relations is not None and info.relations.bind
        self._sequences = sequences
        self._tx = tx
        self._run = run
        self._reader = reader
        self._snapshot = snapshot

    @property
    def entity(self) -> type[E]:
        return self._info.cls

    @property
    def _source(self) -> Any:
        """What objects of this collection load their links through: the transaction, or
        the database (whose ``run_transaction`` runs this collection's writes)."""
        return self._tx if self._tx is not None else getattr(self._run, "__self__", None)

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
        catalog = self._sequences.catalog
        if catalog is not None and info.name not in catalog.schemas:  # the entity's first write
            await self._write(lambda kv: _first_put(catalog, info, kv, items, pks))
        else:
            await self._write(lambda kv: _put_records(info, kv, items, pks))
        if self._bind:
            _relations.bind(items, self._source)
        return pks

    async def _assign_keys(self, items: list[Any]) -> None:
        info = self._info
        name, pk = info.name, info.primary_key
        seq = self._sequences
        if name not in seq.next:
            lock = seq.locks.setdefault(name, asyncio.Lock())
            async with lock:
                if name not in seq.next:
                    persisted = _stored_next(await self._read_view().get(sequence_key(name)))
                    seq.next[name] = max(await self._largest_key() + 1, persisted)
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

    async def rekey(self, old_pk: Any, new_pk: Any) -> bool:
        """Move the record with primary key ``old_pk`` to ``new_pk`` and make every link to it
        (from any entity) point to ``new_pk``, in one atomic batch ("cascade update"). False
        if there is no record ``old_pk``; ``IntegrityError`` if ``new_pk`` is taken (nothing
        is written then). ``put`` of an object under a new key adds a record; this moves one."""
        old_key, new_key = self._pk_key(old_pk), self._pk_key(new_pk)
        info = self._info
        if info.pk_field.key_type is float and type(new_pk) is int:
            new_pk = float(new_pk)
        moved: bool = await self._write(lambda kv: _relations.rekey(info, kv, old_key, new_key, new_pk))
        if moved and info.auto and type(new_pk) is int:
            seq = self._sequences.next
            if info.name in seq and new_pk >= seq[info.name]:
                seq[info.name] = new_pk + 1
        return moved

    async def load_links(self, objs: Iterable[E], *paths: str) -> None:
        """Load the links and backlinks named by ``paths`` for every object of ``objs``, level
        by level, with one batched read per link step (``get_many``) and one index query per
        backlink step, however many objects: ``await posts.load_links(rows, "author",
        "author.posts", "tags")``. Afterwards ``row.author.target`` (and attribute access
        through it), ``await row.author.load()`` and ``await row.author.posts.all()`` answer
        without reading. Objects read once are shared; all are bound to this collection's
        database or transaction. Raises ``InvalidArgumentError`` for a path that names no
        link or backlink."""
        if isinstance(objs, (str, bytes)) or not isinstance(objs, Iterable):
            raise InvalidTypeError(f"load_links takes an iterable of {self._info.name} objects")
        items = list(objs)
        info = self._info
        for obj in items:
            if type(obj) is not info.cls:
                raise InvalidTypeError(f"load_links: expected {info.name} objects, got {type(obj).__name__}")
        tree = _relations.parse_paths(info, paths)
        if not items or not tree:
            return
        source = self._source
        if self._tx is not None:
            await _relations.load_paths(self._tx.kv, source, info, items, tree)
            return
        assert self._snapshot is not None
        snap = self._snapshot()
        try:
            await _relations.load_paths(snap.kv, source, info, items, tree)
        finally:
            snap.release()

    def _pk_key(self, pk: Any) -> bytes:
        keys = self._keys
        if type(pk) is keys.pk_type:  # the common case: exactly the declared type
            return keys.record_prefix + encode_key(pk)  # type: ignore[arg-type]
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
        keys = self._keys
        key = keys.record_prefix + encode_key(pk) if type(pk) is keys.pk_type else self._pk_key(pk)  # type: ignore[arg-type]
        view = self._tx.kv if self._tx is not None else self._reader
        data = await view.get(key)  # type: ignore[union-attr]
        if data is None:
            return None
        try:
            obj = self._info.decode(data)
        except CorruptionError as exc:
            raise bad_record(self._info, key, exc) from exc
        if self._bind:
            obj.__dict__[_links.SOURCE] = self._source
        return obj  # type: ignore[no-any-return]

    async def get_many(self, pks: Iterable[Any]) -> list[E | None]:
        """Records for ``pks``, in the same order (None where absent)."""
        if isinstance(pks, (str, bytes)) or not isinstance(pks, Iterable):
            raise InvalidTypeError("get_many takes an iterable of primary keys")
        pks = list(pks)
        entity_keys = self._keys
        pk_type = entity_keys.pk_type
        if all(type(pk) is pk_type for pk in pks):  # the common case: no per-key checks needed
            prefix = entity_keys.record_prefix
            keys = [prefix + e for e in encode_keys(pks)]
        else:
            keys = [self._pk_key(pk) for pk in pks]
        decode = self._info.decode
        values = await self._read_view().get_many(keys)
        try:
            out = [None if v is None else decode(v) for v in values]
        except CorruptionError as exc:
            raise bad_record(self._info, _first_bad(decode, keys, values), exc) from exc
        if self._bind:
            _relations.bind(filter(None, out), self._source)
        return out

    async def count(self) -> int:
        """How many records the collection holds (a scan of the records: O(n))."""
        return await self.query().count()

    # ------------------------------------------------------------------ queries

    def query(self) -> Query[E]:
        from ._queries import Query  # the module above this one: imported on use

        """Every record (refine with ``where``, ``order_by``, ``limit``, ``offset``)."""
        return Query(self, None, (), None, 0)

    def where(self, *conditions: Any) -> Query[E]:
        """Records matching every condition: ``users.where(User.city == "Oslo", User.age >= 30)``."""
        return self.query().where(*conditions)

    def order_by(self, *keys: Any) -> Query[E]:
        return self.query().order_by(*keys)

    def __aiter__(self) -> AsyncIterator[E]:
        return self.query().__aiter__()

    # ------------------------------------------------------------------ live (quanta/_live)

    if TYPE_CHECKING:
        from ._live import Coalesce, LiveFeed

    def watch_object(self, pk: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> LiveFeed[E | None]:
        """The record with primary key ``pk`` (None while absent) now, then after each commit
        that changes it: a ``reactivex`` Observable, also async-iterable (docs/live.md).
        ``coalesce``: at most one emission per that many seconds; ``buffer``: emissions that
        may wait for a slow consumer (default 10,000) before ``SubscriberOverflowError``."""
        from ._live import watch_object

        return watch_object(self, pk, coalesce=coalesce, buffer=buffer)

    def watch_lazy(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> LiveFeed[None]:
        """None after each commit that changes a record of this collection (no current value
        first; nothing is decoded): "something here changed, look again"."""
        from ._live import watch_lazy

        return watch_lazy(self, coalesce=coalesce, buffer=buffer)


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
    rel = info.relations
    get = _links.index_value if rel is not None and rel.links else _getattr  # links index their keys
    for idx in info.indexes:
        if idx.multi:
            elements = get(obj, idx.fields[0])
            if elements:
                prefix = keys.index_prefixes[idx.name]
                epk = encode_key(pk)
                for element in set(elements):
                    out[prefix + encode_key(element) + epk] = epk
            continue
        values = tuple([get(obj, f) for f in idx.fields])
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
    epks = encode_keys(pks)
    rkeys = [prefix + e for e in epks]
    if len(set(rkeys)) != len(rkeys):  # a key given twice: the later object wins
        latest = {k: (obj, pk, e) for k, obj, pk, e in zip(rkeys, items, pks, epks, strict=True)}
        rkeys = list(latest)
        items = [obj for obj, _, _ in latest.values()]
        pks = [pk for _, pk, _ in latest.values()]
        epks = [e for _, _, e in latest.values()]
    if info.relations is not None and info.relations.links:
        await _relations.check_targets(info, kv, items, rkeys)  # IntegrityError before any write
    encode, decode = info.encode, info.decode
    records = list(map(encode, items))
    if max(map(len, records)) > MAX_VALUE_BYTES:
        _too_large(info, records, pks)
    if not info.indexes:
        kv._put_generated(rkeys, records)  # type: ignore[arg-type]
        return
    olds = await _old_records(kv, rkeys)
    if all(old is None for old in olds) and not any(idx.unique for idx in info.indexes):
        # Only new records and no unique index (a bulk load): index keys column by column.
        entry_keys, entry_values = _new_entries(info, keys, items, epks)
        kv._put_generated([*entry_keys, *rkeys], [*entry_values, *records])
        return
    removed: set[bytes] = set()
    added: dict[bytes, bytes] = {}
    claims: dict[bytes, Any] = {}  # unique entry -> pk claiming it in this batch
    unique = any(idx.unique for idx in info.indexes)
    for obj, pk, old in zip(items, pks, olds, strict=True):
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


async def _first_put(
    catalog: Catalog, info: EntityInfo, kv: TransactionKeyValue, items: list[Any], pks: list[Any]
) -> None:
    """``_put_records`` for an entity the catalog has no schema of yet: the schema is
    recorded in the same batch (or, if a commit recorded it meanwhile, checked against it:
    ``SchemaMismatchError``, nothing written)."""
    await catalog.record_first_use(info, kv)
    await _put_records(info, kv, items, pks)


def bad_record(info: EntityInfo, key: bytes, exc: CorruptionError) -> CorruptionError:
    """``exc`` (a record that cannot be decoded) as an error naming the record's key; the
    record stays deletable (``delete`` removes it without decoding it)."""
    if exc.path.startswith("<record "):
        return exc
    return bad_record_error(info.name, key, exc._message)


def _first_bad(decode: Callable[[bytes], Any], keys: list[bytes], values: list[bytes | None]) -> bytes:
    for key, value in zip(keys, values, strict=True):
        if value is not None:
            try:
                decode(value)
            except CorruptionError:
                return key
    raise AssertionError("no record failed to decode")  # pragma: no cover


async def find_bad_record(info: EntityInfo, reader: Any, values: list[bytes], exc: CorruptionError) -> CorruptionError:
    """``bad_record`` for a query, which decodes values without their keys: the first of
    ``values`` that fails is looked up by a scan of the entity's records (a rare path)."""
    decode = info.decode
    for value in values:
        try:
            decode(value)
        except CorruptionError:
            async for key, data in reader.scan(prefix=_keys(info).record_prefix):
                if data == value:
                    return bad_record(info, key, exc)
            break
    return exc


def _too_large(info: EntityInfo, records: list[bytes], pks: list[Any]) -> None:
    for data, pk in zip(records, pks, strict=True):
        if len(data) > MAX_VALUE_BYTES:
            raise LimitExceededError(
                f"{info.name} {pk!r}: the record is {len(data)} bytes, over the limit of {MAX_VALUE_BYTES} bytes "
                "for one value (quanta.MAX_VALUE_BYTES); nothing was written"
            )


def _stored_next(data: bytes | None) -> int:
    """The persisted counter's value (0 if none)."""
    if data is None:
        return 0
    try:
        value = decode_key(data)
    except Exception as exc:
        raise CorruptionError(f"malformed auto-key counter: {exc}", path="<record>") from exc
    return value if type(value) is int else 0


async def _retire_keys(info: EntityInfo, kv: TransactionKeyValue, pks: Iterable[Any]) -> None:
    """Buffer, in the batch that deletes (or moves away) the records with primary keys
    ``pks``, a raise of ``info``'s persisted auto-key counter past them, so that a reopen
    never hands them out again (nothing for an entity without auto keys). Reads the counter
    in the transaction: two concurrent batches that both raise it conflict, and the later
    one retries with the other's value."""
    if not info.auto:
        return
    top = max((pk for pk in pks if type(pk) is int), default=0)
    if top <= 0:
        return
    key = sequence_key(info.name)
    if _stored_next(await kv.get(key)) <= top:
        kv._put_generated([key], [encode_key(top + 1)])


_NONE = object()
_getattr = getattr
_PROBE_FROM = 256  # put_many of at least this many records first probes their key range


async def _old_records(kv: TransactionKeyValue, rkeys: list[bytes]) -> list[bytes | None]:
    """The stored records under ``rkeys`` (None where new). Reading them also makes a
    concurrent change of one a conflict. A big batch first asks whether any record at all
    lies between its smallest and largest key (one seek; a bulk load into an empty
    collection, or past its last key, ends there): the range read makes any concurrent write
    in it a conflict, which covers every key of the batch."""
    if len(rkeys) >= _PROBE_FROM:
        lo, hi = min(rkeys), max(rkeys)
        async with aclosing(kv._scan_chunks(lo, successor(hi), False, 1)) as chunks:
            async for _ in chunks:
                break
            else:
                return [None] * len(rkeys)
    return await kv.get_many(rkeys)


def _new_entries(
    info: EntityInfo, keys: EntityKeys, objs: list[Any], epks: list[bytes]
) -> tuple[list[bytes], list[bytes | None]]:
    """Keys and values of every non-unique index entry of ``objs`` (whose encoded primary
    keys are ``epks``): ``_entries`` for a bulk insert, one index at a time, a column at a
    time (an entry is the index prefix, the encoded values, then the encoded primary key;
    its value is the encoded primary key)."""
    out: list[bytes] = []
    values: list[bytes | None] = []
    rel = info.relations
    get = _links.index_value if rel is not None and rel.links else _getattr  # links index their keys
    for idx in info.indexes:
        p = keys.index_prefixes[idx.name]
        if idx.multi:
            f = idx.fields[0]
            for obj, e in zip(objs, epks, strict=True):
                elements = get(obj, f)
                if elements:
                    distinct = set(elements)
                    out += [p + encode_key(el) + e for el in distinct]
                    values += [e] * len(distinct)
            continue
        if len(idx.fields) == 1:
            column = encode_keys([get(obj, idx.fields[0]) for obj in objs])
            out += [p + v + e for v, e in zip(column, epks, strict=True)]
        else:
            fields = idx.fields
            out += [p + encode_tuple([get(obj, f) for f in fields]) + e for obj, e in zip(objs, epks, strict=True)]
        values += epks
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
    rel = info.relations
    if rel is not None:
        if _links.has_pending():
            _links.resolve_pending()
        if rel.incoming:  # links point here: apply their on_delete rules (quanta/_relations.py)
            return await _relations.delete_graph(info, kv, keys)
    olds = await kv.get_many(keys)
    decode = info.decode
    entity_keys = _keys(info)
    gone: list[bytes] = []
    n = 0
    deleted: list[Any] = []
    for key, old in zip(keys, olds, strict=True):
        if old is None:
            continue
        n += 1
        try:
            obj = decode(old)
        except CorruptionError:  # a record that cannot be read can still be deleted
            pk = decode_key(key[len(entity_keys.record_prefix) :])
            gone.extend(await _entries_pointing_to(info, kv, key[len(entity_keys.record_prefix) :]))
        else:
            pk = getattr(obj, info.primary_key)
            gone.extend(_entries(info, entity_keys, obj, pk))
        deleted.append(pk)
        gone.append(key)
    await _retire_keys(info, kv, deleted)
    kv._put_generated(gone, [None] * len(gone))
    return n


async def _entries_pointing_to(info: EntityInfo, kv: TransactionKeyValue, epk: bytes) -> list[bytes]:
    """Every index entry of ``info`` whose value is ``epk`` (the encoded primary key of a
    record that cannot be decoded, so its entries cannot be computed): a scan of each index,
    only on this rare path."""
    out: list[bytes] = []
    for idx in info.indexes:
        start = (unique_prefix if idx.unique else index_prefix)(info.name, idx.name)
        async for k, v in kv.scan(prefix=start):
            if v == epk:
                out.append(k)
    return out
