"""Collections: typed entity storage on top of transactions (queries are in ``_queries.py``,
their executor in ``executor.py``, the writes in ``writes.py``).

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

Links (``quanta/_entity/_relations.py``): for an entity with link fields, ``put``/``put_many`` first
check that every target exists (``IntegrityError``); deletes of an entity that links point to
apply their ``on_delete`` rules through the graph in the same batch; objects of a class with
links or backlinks are bound to the collection's database or transaction (what their links
load through). Any other entity runs exactly the code paths described above.

Concurrency rules: event-loop thread only. Auto-increment keys come from a counter per entity
(per open database), seeded from the largest stored key on first use; a key handed out is
never reused, even if its transaction rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .._codec import decode_tuple, encode_key, encode_keys
from .._reactive import Coalesce, ResultDiff, Watch
from .._schema import SOURCE, EntityInfo, has_pending, record_prefix, sequence_key
from ..errors import CorruptionError, InvalidArgumentError, InvalidTypeError
from . import _relations
from .entries import entity_keys
from .records import bad_record, first_bad, stored_next
from .writes import delete_records, put_records

if TYPE_CHECKING:
    from .._kv import KeyValue, Snapshot, SnapshotKeyValue
    from .._reactive import ChangeBus
    from .._storage import Engine
    from .._txn import Transaction, TransactionKeyValue
    from ._queries import Query

__all__ = ["Collection", "EntityContext", "LiveQueries", "SchemaCatalog", "entity_info_of"]

E = TypeVar("E")
R = TypeVar("R")


def entity_info_of(cls: object) -> EntityInfo:
    info = getattr(cls, "__quanta_entity__", None)
    if not isinstance(info, EntityInfo) or info.cls is not cls:
        name = getattr(cls, "__name__", type(cls).__name__)
        raise InvalidTypeError(f"{name} is not an entity class: declare it with @quanta.entity")
    if has_pending() and info.relations is not None:
        info.relations.require()  # forward references resolve at first use (SchemaError if they cannot)
    return info


class SchemaCatalog(Protocol):
    """What the entity layer asks of the database's schema catalog (``quanta._catalog.Catalog``
    implements it; the catalog sits above this layer, so it is reached through this)."""

    def admit(self, info: EntityInfo) -> None:
        """Raise SchemaMismatchError if the stored schema cannot read records of ``info``."""

    def planning_info(self, info: EntityInfo) -> EntityInfo:
        """``info`` as the planner may use it: without indexes still being built."""

    def has_schema(self, name: str) -> bool:
        """Whether a schema of entity ``name`` is stored (committed)."""

    async def record_first_use(self, info: EntityInfo, kv: TransactionKeyValue) -> None:
        """In the first write of an entity with no stored schema (``kv``: its transaction):
        buffer the schema in the same batch, or check ``info`` against one committed meanwhile."""

    def unique_pending(self, name: str) -> bool:
        """Whether a put of entity ``name`` must first await :meth:`unique_checkable`."""

    async def unique_checkable(self, name: str) -> None:
        """Wait while ``db.repair()`` rebuilds a unique index of ``name``; raise
        IntegrityError while one is left half-rebuilt by a repair that stopped part-way."""


class LiveQueries(Protocol):
    """What the entity layer asks of the live-query layer (``quanta._live.LiveQueries``
    implements it, one per database; it sits above this layer, so it is reached through
    this): the live forms of queries and collections (docs/live.md)."""

    def watch(self, query: Query[E], *, coalesce: Coalesce, buffer: int | None) -> Watch[list[E]]: ...
    def watch_diff(self, query: Query[E], *, coalesce: Coalesce, buffer: int | None) -> Watch[ResultDiff[E]]: ...
    def live(self, query: Query[E], *, coalesce: Coalesce) -> Watch[list[E]]: ...
    def watch_count(self, query: Query[Any], *, coalesce: Coalesce, buffer: int | None) -> Watch[int]: ...
    def watch_aggregate(
        self, query: Query[Any], kind: str, field: Any, *, coalesce: Coalesce, buffer: int | None
    ) -> Watch[Any]: ...
    def watch_object(
        self, coll: Collection[E], pk: Any, *, coalesce: Coalesce, buffer: int | None
    ) -> Watch[E | None]: ...
    def watch_lazy(self, coll: Collection[Any], *, coalesce: Coalesce, buffer: int | None) -> Watch[None]: ...


class EntityContext:
    """The entity layer's state for one open database, owned by the :class:`quanta.Database`
    and shared by all its collections: the engine and change bus, the database's ``kv``, how
    to run a transaction and take a snapshot, the auto-increment counters (``next``, one per
    entity, seeded from the largest stored key on first use, with ``locks`` for the seeding),
    and the schema catalog (``catalog``: it admits the classes collections are made for and
    hides incomplete indexes from the planner). The live-query layer reaches the engine and
    the bus through it (``Collection.context``); ``live`` is that layer's ``LiveQueries``.

    Concurrency rules: event-loop thread only."""

    __slots__ = ("bus", "catalog", "database", "engine", "kv", "live", "locks", "next", "run", "snapshot")

    def __init__(
        self,
        *,
        engine: Engine,
        bus: ChangeBus,
        kv: KeyValue,
        run: RunTransaction,
        snapshot: Callable[[], Snapshot],
        database: object,
        live: LiveQueries,
        catalog: SchemaCatalog | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.kv = kv
        self.run = run
        self.snapshot = snapshot
        self.database = database  # what objects of a database collection load their links through
        self.catalog = catalog
        self.next: dict[str, int] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.live = live  # the live forms of queries and collections (quanta/_live)

    def collection(self, cls: type[E], tx: Transaction | None = None) -> Collection[E]:
        """The collection of entity class ``cls``: of the database, or of transaction ``tx``."""
        return Collection(entity_info_of(cls), self, tx=tx)


RunTransaction = Callable[[Callable[["Transaction"], Awaitable[Any]]], Awaitable[Any]]


class Collection(Generic[E]):
    """The records of one entity class. See the module docstring."""

    __slots__ = ("_bind", "_ctx", "_info", "_keys", "_tx")

    def __init__(self, info: EntityInfo, context: EntityContext, *, tx: Transaction | None = None) -> None:
        if context.catalog is not None:
            context.catalog.admit(info)  # SchemaMismatchError for a class the stored schema cannot read
        self._info = info
        self._keys = entity_keys(info)
        # Objects of a class with links or backlinks are bound to this collection's source
        # (quanta/_schema/relations.py, "Binding"); for any other class nothing is done.
        self._bind = info.relations is not None and info.relations.bind
        self._ctx = context
        self._tx = tx

    @property
    def context(self) -> EntityContext:
        """The database's entity state (for the layers above: live queries)."""
        return self._ctx

    @property
    def transaction(self) -> Transaction | None:
        """The transaction this collection reads and writes in; None for the database's."""
        return self._tx

    @property
    def info(self) -> EntityInfo:
        """The entity's declaration (fields, keys, indexes, links)."""
        return self._info

    @property
    def entity(self) -> type[E]:
        return self._info.cls

    @property
    def _source(self) -> Any:
        """What objects of this collection load their links through: the transaction, or
        the database (whose ``run_transaction`` runs this collection's writes)."""
        return self._tx if self._tx is not None else self._ctx.database

    def __repr__(self) -> str:
        where = "transaction" if self._tx is not None else "database"
        return f"<quanta.Collection of {self._info.name} ({where})>"

    # ------------------------------------------------------------------ writes

    async def _write(self, op: Callable[[TransactionKeyValue], Awaitable[R]]) -> R:
        if self._tx is not None:
            return await op(self._tx.kv)
        result: R = await self._ctx.run(lambda tx: op(tx.kv))
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
        catalog = self._ctx.catalog
        if catalog is None:
            await self._write(lambda kv: put_records(info, kv, items, pks))
        elif not catalog.has_schema(info.name):  # the entity's first write
            await self._write(lambda kv: _first_put(catalog, info, kv, items, pks))
        else:
            await self._write(lambda kv: _checked_put(catalog, info, kv, items, pks))
        if self._bind:
            _relations.bind(items, self._source)
        return pks

    async def _assign_keys(self, items: list[Any]) -> None:
        info = self._info
        name, pk = info.name, info.primary_key
        seq = self._ctx
        if name not in seq.next:
            lock = seq.locks.setdefault(name, asyncio.Lock())
            async with lock:
                if name not in seq.next:
                    persisted = stored_next(await self._read_view()._get(sequence_key(name)))
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
        async for key, _ in reader._scan(start, stop, reverse=True, limit=1):
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
        return await self._write(lambda kv: delete_records(info, kv, keys))

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
            seq = self._ctx.next
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
        with self._reading() as reader:
            await _relations.load_paths(reader, self._source, info, items, tree)

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

    @contextmanager
    def _reading(self) -> Iterator[SnapshotKeyValue | TransactionKeyValue]:
        """What one read call (a query, a count, a load of links) reads through: the
        transaction's ``kv`` (its own writes included), or a snapshot's taken for the call
        and released after it."""
        if self._tx is not None:
            yield self._tx.kv
            return
        snap = self._ctx.snapshot()
        try:
            yield snap.kv
        finally:
            snap.release()

    def _read_view(self) -> KeyValue | TransactionKeyValue:
        if self._tx is not None:
            return self._tx.kv
        return self._ctx.kv

    async def get(self, pk: Any) -> E | None:
        """The record with primary key ``pk``, or None."""
        keys = self._keys
        key = keys.record_prefix + encode_key(pk) if type(pk) is keys.pk_type else self._pk_key(pk)  # type: ignore[arg-type]
        view = self._tx.kv if self._tx is not None else self._ctx.kv
        data = await view._get(key)
        if data is None:
            return None
        try:
            obj = self._info.decode(data)
        except CorruptionError as exc:
            raise bad_record(self._info, key, exc) from exc
        if self._bind:
            obj.__dict__[SOURCE] = self._source
        return obj  # type: ignore[no-any-return]

    async def get_many(self, pks: Iterable[Any]) -> list[E | None]:
        """Records for ``pks``, in the same order (None where absent)."""
        if isinstance(pks, (str, bytes)) or not isinstance(pks, Iterable):
            raise InvalidTypeError("get_many takes an iterable of primary keys")
        pks = list(pks)
        ekeys = self._keys
        pk_type = ekeys.pk_type
        if all(type(pk) is pk_type for pk in pks):  # the common case: no per-key checks needed
            prefix = ekeys.record_prefix
            keys = [prefix + e for e in encode_keys(pks)]
        else:
            keys = [self._pk_key(pk) for pk in pks]
        decode = self._info.decode
        values = await self._read_view()._get_many(keys)
        try:
            out = [None if v is None else decode(v) for v in values]
        except CorruptionError as exc:
            raise bad_record(self._info, first_bad(decode, keys, values), exc) from exc
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

    def watch_object(self, pk: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[E | None]:
        """The record with primary key ``pk`` (None while absent) now, then after each commit
        that changes it: a ``reactivex`` Observable, also async-iterable (docs/live.md).
        ``coalesce``: at most one emission per that many seconds; ``buffer``: emissions that
        may wait for a slow consumer (default 10,000) before ``SubscriberOverflowError``."""
        return self._ctx.live.watch_object(self, pk, coalesce=coalesce, buffer=buffer)

    def watch_lazy(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[None]:
        """None after each commit that changes a record of this collection (no current value
        first; nothing is decoded): "something here changed, look again"."""
        return self._ctx.live.watch_lazy(self, coalesce=coalesce, buffer=buffer)


async def _checked_put(
    catalog: SchemaCatalog, info: EntityInfo, kv: TransactionKeyValue, items: list[Any], pks: list[Any]
) -> None:
    """``put_records`` once the entity's unique indexes can check it (``db.repair()`` may be
    rebuilding them: ``SchemaCatalog.unique_checkable``). Inside the write, so that a
    transaction retried after a conflict checks again."""
    if catalog.unique_pending(info.name):
        await catalog.unique_checkable(info.name)
    await put_records(info, kv, items, pks)


async def _first_put(
    catalog: SchemaCatalog, info: EntityInfo, kv: TransactionKeyValue, items: list[Any], pks: list[Any]
) -> None:
    """``put_records`` for an entity the catalog has no schema of yet: the schema is
    recorded in the same batch (or, if a commit recorded it meanwhile, checked against it:
    ``SchemaMismatchError``, nothing written)."""
    await catalog.record_first_use(info, kv)
    await put_records(info, kv, items, pks)
