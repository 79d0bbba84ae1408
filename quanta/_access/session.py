"""Sessions: ``db.session(principal)`` and the checked collections, queries and ``kv`` it hands
out. Every public method checks the principal's :class:`~quanta._access.policy.Grants`.

How each kind of call is checked:

* **Reads** (queries, counts, aggregates, live queries): the read grant's expression is ANDed
  into the query's ``where`` (the effective query), so the planner plans it over indexes
  like any condition and ``explain()`` shows it; a grant of False (no rule) raises
  ``PermissionDeniedError``. ``get``/``get_many`` evaluate the expression on the row read: a
  hidden row reads as absent. Masked fields are replaced by ``MASKED`` in every object
  returned or emitted (in a copy: the stored object is not touched); ``where``/``order_by``
  on a masked field, and aggregates of one, raise ``PermissionDeniedError``.
* **Writes** run in one transaction of the trusted database: the operation is done there
  (so index entries, link checks and ``on_delete`` cascades are the entity layer's, unchanged),
  then, before the commit, :func:`check_writes` reads what the commit would write
  (``tx.buffered()``) and checks every record in it against the grants: an insert needs a
  write grant on the new row, an update on the old and the new row, a delete (a cascaded one
  too) a delete grant on the old row. One denied row raises ``PermissionDeniedError`` and the
  transaction rolls back: nothing is written. Deletes name rows by key or by query; a row the
  session cannot read is absent for them (it is not deleted, nor counted).
* **kv**: a key (or a scan's or watch's whole range) must lie inside a prefix an
  ``allow_kv`` rule grants for the action; the trusted ``db.kv`` below still refuses the
  reserved entity key space.

What a refusal names: the entity, the action, and a key only when the caller named it or may
read the row; a row the session cannot see is "a row of Post the session may not see".
Conflict errors from a session's writes carry no key.

Concurrency rules: event-loop thread only, like the database.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

from .._codec import decode_key, prefix_end
from .._kv import check_key, key_range
from .._query import Expr, Field, Order, as_order, has_through
from .._reactive import EMPTY, Coalesce, ResultDiff, Watch
from .._schema import NS, SOURCE, EntityInfo, record_prefix
from ..errors import (
    ConflictError,
    IntegrityError,
    InvalidTypeError,
    PermissionDeniedError,
    QuantaError,
    QueryError,
    UniqueViolationError,
)
from .policy import MASKED, Grant, Grants, Principal

if TYPE_CHECKING:
    from .._entity import Collection, Query
    from .._kv import Batch, KeyValue
    from .._txn import Transaction

__all__ = ["Session", "SessionBatch", "SessionCollection", "SessionKeyValue", "SessionQuery", "TrustedDatabase"]

E = TypeVar("E")
R = TypeVar("R")

_RECORDS = NS + b"r"


class TrustedDatabase(Protocol):
    """What a session asks of the database it belongs to (``quanta.Database``)."""

    kv: KeyValue

    def collection(self, cls: type[E]) -> Collection[E]: ...

    async def run_transaction(self, fn: Callable[[Transaction], Awaitable[R]], *, retries: int = ...) -> R: ...


def _denied(message: str, *, entity: str = "", key: object = None, action: str = "") -> PermissionDeniedError:
    return PermissionDeniedError(message, entity=entity, key=key, action=action)


class Session:
    """A principal's view of a database: ``alice = db.session(quanta.Principal("alice", ...))``.
    ``alice.collection(Post)`` has the Collection API, every call checked against the
    database's policy (docs/access-control.md); ``alice.kv`` the ``db.kv`` API, checked.
    The principal, and so what the policy grants it, is fixed for the session's life."""

    __slots__ = ("_collections", "_db", "_entities", "_grants", "kv")

    def __init__(self, db: TrustedDatabase, grants: Grants, entities: Iterable[EntityInfo]) -> None:
        self._db = db
        self._grants = grants
        self._entities = sorted(((record_prefix(i.name)[0], i) for i in entities), key=lambda p: p[0])
        self._collections: dict[type, SessionCollection[Any]] = {}
        self.kv = SessionKeyValue(db.kv, grants)

    @property
    def principal(self) -> Principal:
        """Who the session acts for."""
        return self._grants.principal

    def collection(self, cls: type[E]) -> SessionCollection[E]:
        """The records of entity class ``cls`` as this session may see and change them."""
        found = self._collections.get(cls)
        if found is None:
            found = self._collections[cls] = SessionCollection(self, self._db.collection(cls))
        return found

    def __repr__(self) -> str:
        return f"<quanta.Session of {self.principal.id!r}>"

    async def _write(self, fn: Callable[[Transaction], Awaitable[R]]) -> R:
        """Run ``fn`` in a transaction of the database, check what it would write, commit."""

        async def checked(tx: Transaction) -> R:
            result = await fn(tx)
            check_writes(self, tx)
            return result

        # The engine's errors may name other rows' keys (a restrict link's referrer, the key a
        # conflict was on). They are replaced by errors that name none, raised outside the
        # ``except`` so that neither ``__cause__`` nor ``__context__`` keeps the original.
        # UniqueViolationError passes through: it names only the caller's own value.
        sanitized: QuantaError
        try:
            return await self._db.run_transaction(checked)
        except ConflictError:
            sanitized = ConflictError(
                "a session's write conflicted with a concurrent commit and ran out of retries; run it again"
            )
        except UniqueViolationError:
            raise
        except IntegrityError:
            sanitized = IntegrityError(
                "a session's write would break a rule between records (a link to a record that does not "
                "exist, a record an on_delete='restrict' link protects, or a primary key already taken); "
                "nothing was written"
            )
        raise sanitized


def _grant_of(session: Session, info: EntityInfo, action: str) -> Grant:
    return session._grants.grant(info.cls, action)


def _visible(grant: Grant, obj: Any) -> bool:
    return grant is True or (grant is not False and grant.evaluate(obj))


def check_writes(session: Session, tx: Transaction) -> None:
    """Check every record ``tx`` would write against ``session``'s grants (module docstring);
    raise ``PermissionDeniedError`` at the first denied one."""
    writes = tx.buffered()
    rkeys = sorted(k for k in writes if k[:3] == _RECORDS)
    if not rkeys:
        return
    entities = session._entities
    covered = 0
    for prefix, info in entities:
        lo = bisect_left(rkeys, prefix)
        hi = bisect_left(rkeys, prefix_end(prefix) or b"\xff" * 8, lo)
        if lo == hi:
            continue
        covered += hi - lo
        _check_entity(session, tx, info, prefix, rkeys[lo:hi], writes)
    if covered != len(rkeys):
        known = {p for p, _ in entities}
        stray = next(k for k in rkeys if not any(k.startswith(p) for p in known))
        raise _denied(
            f"a write through the session would change a record of an entity its policy has no rule for "
            f"({stray[:40]!r}); nothing was written",
            action="write",
        )


def _check_entity(
    session: Session, tx: Transaction, info: EntityInfo, prefix: bytes, keys: list[bytes], writes: Mapping[bytes, Any]
) -> None:
    write = _grant_of(session, info, "write")
    delete = _grant_of(session, info, "delete")
    todo = [
        k for k in keys if (writes[k] is None and delete is not True) or (writes[k] is not None and write is not True)
    ]
    if not todo:
        return
    decode = info.decode
    for key, old in zip(todo, tx.read_base(todo), strict=True):
        new = writes[key]
        if new is None:
            if old is None:
                continue  # deleting nothing
            if delete is False or not _visible(delete, decode(old)):
                _deny_row(session, info, prefix, key, decode(old), "delete")
            continue
        if write is False:
            _deny_row(session, info, prefix, key, None if old is None else decode(old), "write")
        assert not isinstance(write, bool)
        if old is not None and not write.evaluate(decode(old)):
            _deny_row(session, info, prefix, key, decode(old), "write")
        if not write.evaluate(decode(new)):
            _deny_row(session, info, prefix, key, None if old is None else decode(old), "write")


def _deny_row(session: Session, info: EntityInfo, prefix: bytes, key: bytes, old: Any, action: str) -> NoReturn:
    me = session.principal.id
    if old is not None and not _visible(_grant_of(session, info, "read"), old):
        raise _denied(
            f"{me!r} may not {action} a row of {info.name} the session may not see; nothing was written",
            entity=info.name,
            action=action,
        )
    pk = decode_key(key[len(prefix) :])
    raise _denied(
        f"{me!r} may not {action} {info.name} {pk!r}; nothing was written", entity=info.name, key=pk, action=action
    )


# ---------------------------------------------------------------------------------- collections


class SessionCollection(Generic[E]):
    """``session.collection(cls)``: the Collection API (``put``, ``get``, ``delete``,
    ``where`` ...), every call checked (see the module docstring)."""

    __slots__ = ("_coll", "_info", "_masked", "_read", "_session")

    def __init__(self, session: Session, coll: Collection[E]) -> None:
        self._session = session
        self._coll = coll
        self._info = coll.info
        self._read = _grant_of(session, coll.info, "read")
        self._masked = session._grants.masked.get(coll.info.cls, frozenset())

    def __repr__(self) -> str:
        return f"<quanta.SessionCollection of {self._info.name} for {self._session.principal.id!r}>"

    # -- metadata (no data: not checked) ---------------------------------------------------

    @property
    def info(self) -> EntityInfo:
        """The entity's declaration."""
        return self._info

    @property
    def entity(self) -> type[E]:
        return self._info.cls

    @property
    def transaction(self) -> None:
        """Always None: a session's collection runs each call as its own transaction."""
        return None

    @property
    def context(self) -> Any:
        """Refused: the entity context is the trusted database's."""
        raise _denied("a session's collection does not expose the database's entity context", entity=self._info.name)

    # -- helpers -----------------------------------------------------------------------------

    def _deny(self, action: str, what: str = "") -> PermissionDeniedError:
        me = self._session.principal.id
        return _denied(
            f"{me!r} may not {action} {self._info.name}{what}: no rule of the policy allows it",
            entity=self._info.name,
            action=action,
        )

    def _need(self, action: str) -> Grant:
        grant = _grant_of(self._session, self._info, action)
        if grant is False:
            raise self._deny(action)
        return grant

    def _out(self, obj: Any) -> Any:
        """``obj`` as the session sees it: masked fields replaced (in a copy), bound to the
        session (links load through it)."""
        if self._masked:
            copy = object.__new__(type(obj))
            copy.__dict__.update(obj.__dict__)
            for name in self._masked:
                copy.__dict__[name] = MASKED
            obj = copy
        if SOURCE in obj.__dict__:
            obj.__dict__[SOURCE] = self._session
        return obj

    def _check_field(self, field: Field, what: str) -> None:
        if field.name in self._masked:
            raise _denied(
                f"{what}: {field!r} is masked for {self._session.principal.id!r}; a query on it would reveal it",
                entity=self._info.name,
                action="read",
            )

    # -- reads -------------------------------------------------------------------------------

    async def get(self, pk: Any) -> E | None:
        """The record with primary key ``pk``, or None (also when the session may not see it)."""
        grant = self._need("read")
        obj = await self._coll.get(pk)
        if obj is None or not _visible(grant, obj):
            return None
        return self._out(obj)  # type: ignore[no-any-return]

    async def get_many(self, pks: Iterable[Any]) -> list[E | None]:
        """Records for ``pks``, in order (None where absent or hidden)."""
        grant = self._need("read")
        found = await self._coll.get_many(pks)
        return [None if obj is None or not _visible(grant, obj) else self._out(obj) for obj in found]

    async def count(self) -> int:
        """How many records the session may see."""
        return await self.query().count()

    def query(self) -> SessionQuery[E]:
        """Every record the session may see (refine with ``where``, ``order_by`` ...)."""
        return SessionQuery(self, ())

    def where(self, *conditions: Any) -> SessionQuery[E]:
        return self.query().where(*conditions)

    def order_by(self, *keys: Any) -> SessionQuery[E]:
        return self.query().order_by(*keys)

    def __aiter__(self) -> AsyncIterator[E]:
        return self.query().__aiter__()

    async def load_links(self, objs: Iterable[E], *paths: str) -> None:
        """Not available through a session yet (it would read the linked entities without
        their rules): refused. ``await obj.link.load()`` on an object read through the session
        loads through the session, checked."""
        raise _denied(
            f"load_links through a session is not supported yet; load each link with await obj.<link>.load() "
            f"(checked) ({self._info.name})",
            entity=self._info.name,
            action="read",
        )

    # -- writes ------------------------------------------------------------------------------

    async def put(self, obj: E) -> Any:
        """Insert or replace ``obj`` if a write rule allows the new row (and the old one)."""
        pks = await self.put_many([obj])
        return pks[0]

    async def put_many(self, objs: Iterable[E]) -> list[Any]:
        """``put`` for many objects in one atomic batch; one denied row fails it all and
        nothing is written."""
        self._need("write")
        if isinstance(objs, (str, bytes)) or not isinstance(objs, Iterable):
            raise InvalidTypeError(f"put_many takes an iterable of {self._info.name} objects")
        items = list(objs)
        for obj in items:
            for name in self._masked:
                if getattr(obj, name, None) is MASKED:
                    raise _denied(
                        f"{self._info.name}.{name} holds quanta.MASKED (the object was read through the session): "
                        "a masked field cannot be written back; nothing was written",
                        entity=self._info.name,
                        action="write",
                    )
        cls: type[E] = self._info.cls
        pks: list[Any] = await self._session._write(lambda tx: tx.collection(cls).put_many(items))
        for obj in items:
            if SOURCE in obj.__dict__:
                obj.__dict__[SOURCE] = self._session
        return pks

    async def delete(self, pk: Any) -> bool:
        """Delete the record ``pk`` if a delete rule allows it; False if there is none the
        session may see."""
        return bool(await self.delete_many([pk]))

    async def delete_many(self, pks: Iterable[Any]) -> int:
        """Delete the records of ``pks`` the session may see (one atomic batch); each needs a
        delete rule, as does every row an ``on_delete`` cascade would remove."""
        self._need("delete")
        read = self._need("read")
        if isinstance(pks, (str, bytes)) or not isinstance(pks, Iterable):
            raise InvalidTypeError("delete_many takes an iterable of primary keys")
        keys = list(pks)
        cls, pk_name = self._info.cls, self._info.primary_key

        async def op(tx: Transaction) -> int:
            coll: Collection[Any] = tx.collection(cls)
            seen = [getattr(o, pk_name) for o in await coll.get_many(keys) if o is not None and _visible(read, o)]
            return await coll.delete_many(seen) if seen else 0

        return await self._session._write(op)

    async def rekey(self, old_pk: Any, new_pk: Any) -> bool:
        """Move record ``old_pk`` to ``new_pk`` (and every link to it): a delete of the old
        row and a write of the new one (and of each linking row), each checked."""
        read = self._need("read")
        self._need("write")
        cls = self._info.cls

        async def op(tx: Transaction) -> bool:
            coll: Collection[Any] = tx.collection(cls)
            old = await coll.get(old_pk)
            if old is None or not _visible(read, old):
                return False
            return await coll.rekey(old_pk, new_pk)

        return await self._session._write(op)

    # -- live --------------------------------------------------------------------------------

    def watch_object(self, pk: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[E | None]:
        """The record ``pk`` as the session sees it (None while absent or hidden), now and
        after each commit that changes that."""
        self._need("read")
        field = getattr(self._info.cls, self._info.primary_key)
        rows: Watch[list[E]] = self.where(field == pk).watch(coalesce=coalesce, buffer=buffer)
        return rows.mapped(lambda found: found[0] if found else None)

    def watch_lazy(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[None]:
        """None after each commit that changes what the session sees of this collection."""
        self._need("read")
        first = True

        def fn(_diff: ResultDiff[E]) -> object:
            nonlocal first
            if first:
                first = False
                return EMPTY
            return None

        diffs: Watch[ResultDiff[E]] = self.query().watch_diff(coalesce=coalesce, buffer=buffer)
        return diffs.mapped(fn)


# ---------------------------------------------------------------------------------- queries

_Step = tuple[str, tuple[Any, ...]]


class SessionQuery(Generic[E]):
    """A query through a session: built like a :class:`quanta.Query` (``where``,
    ``order_by``, ``limit``, ``offset``), run with the same methods; every run ANDs the read
    grant into ``where`` (``explain()`` shows it), and results are masked."""

    __slots__ = ("_coll", "_eff", "_query", "_steps")

    def __init__(self, coll: SessionCollection[E], steps: tuple[_Step, ...]) -> None:
        self._coll = coll
        self._steps = steps
        self._query: Query[E] = _replay(coll._coll.query(), steps)  # a bad query fails when built
        self._eff: Query[E] | None = None

    def __repr__(self) -> str:
        return f"<quanta.SessionQuery {self._coll._info.name} for {self._coll._session.principal.id!r}>"

    def _then(self, name: str, *args: Any) -> SessionQuery[E]:
        return SessionQuery(self._coll, (*self._steps, (name, args)))

    # -- building ----------------------------------------------------------------------------

    def where(self, *conditions: Any) -> SessionQuery[E]:
        for c in conditions:
            if isinstance(c, Expr):
                for f in c.fields():
                    self._coll._check_field(f, f"where({c!r})")
                if has_through(c):
                    raise _denied(
                        f"where({c!r}): queries through links (has(...)) are not supported through a session yet",
                        entity=self._coll._info.name,
                        action="read",
                    )
        return self._then("where", *conditions)

    def order_by(self, *keys: Any) -> SessionQuery[E]:
        for k in keys:
            if isinstance(k, Field | Order):
                self._coll._check_field(as_order(k).field, "order_by")
        return self._then("order_by", *keys)

    def limit(self, n: int | None) -> SessionQuery[E]:
        return self._then("limit", n)

    def offset(self, n: int) -> SessionQuery[E]:
        return self._then("offset", n)

    def include(self, *paths: str) -> SessionQuery[E]:
        """Not available through a session yet (it would load the linked entities without
        their rules): refused."""
        raise _denied(
            "include() through a session is not supported yet; load each link with await obj.<link>.load() (checked)",
            entity=self._coll._info.name,
            action="read",
        )

    # -- the effective query -----------------------------------------------------------------

    def _effective(self) -> Query[E]:
        """The query with the read grant ANDed in (made once per query object)."""
        eff = self._eff
        if eff is None:
            grant = self._coll._need("read")
            eff = self._eff = self._query if grant is True else self._query.where(grant)
        return eff

    def _out(self, objs: list[E]) -> list[E]:
        out = self._coll._out
        return [out(o) for o in objs]

    def _field(self, field: Any, what: str) -> None:
        if isinstance(field, Field):
            self._coll._check_field(field, what)

    def plan(self) -> Any:
        """The plan of the effective query (the read grant ANDed in)."""
        return self._effective().plan()

    def explain(self) -> str:
        """The effective query's plan: the read grant is one of its conditions."""
        return self._effective().explain()

    # -- running -----------------------------------------------------------------------------

    async def all(self) -> list[E]:
        return self._out(await self._effective().all())

    async def first(self) -> E | None:
        obj = await self._effective().first()
        return None if obj is None else self._coll._out(obj)

    async def exists(self) -> bool:
        return await self._effective().exists()

    async def count(self) -> int:
        return await self._effective().count()

    async def __aiter__(self) -> AsyncIterator[E]:
        out = self._coll._out
        async for obj in self._effective():
            yield out(obj)

    async def min(self, field: Any) -> Any:
        self._field(field, "min")
        return await self._effective().min(field)

    async def max(self, field: Any) -> Any:
        self._field(field, "max")
        return await self._effective().max(field)

    async def sum(self, field: Any) -> Any:
        self._field(field, "sum")
        return await self._effective().sum(field)

    async def avg(self, field: Any) -> float | None:
        self._field(field, "avg")
        return await self._effective().avg(field)

    async def distinct(self, field: Any) -> list[Any]:
        self._field(field, "distinct")
        return await self._effective().distinct(field)

    async def to_dicts(self) -> list[dict[str, Any]]:
        """The results as JSON-ready dicts; masked fields are left out."""
        masked = self._coll._masked
        dicts = await self._effective().to_dicts()
        if masked:
            dicts = [{k: v for k, v in d.items() if k not in masked} for d in dicts]
        return dicts

    async def delete(self) -> int:
        """Delete every match the session may see, in one atomic batch; each needs a delete
        rule (as does every row a cascade would remove)."""
        coll = self._coll
        read = coll._need("read")
        coll._need("delete")
        cls, steps = coll._info.cls, self._steps
        self._effective().plan()  # a bad query (or a denied read) fails here, before a transaction

        async def op(tx: Transaction) -> int:
            q: Query[Any] = _replay(tx.collection(cls).query(), steps)
            return await (q if read is True else q.where(read)).delete()

        return await coll._session._write(op)

    # -- live --------------------------------------------------------------------------------

    def _list_mask(self) -> Callable[[list[E]], object] | None:
        if not self._coll._masked:
            return None
        last: list[E] | None = None

        def fn(rows: list[E]) -> object:
            nonlocal last
            out = self._out(rows)
            if last is not None and out == last:
                return EMPTY  # only a masked value changed: nothing the session can see
            last = out
            return out

        return fn

    def _diff_mask(self) -> Callable[[ResultDiff[E]], object] | None:
        coll = self._coll
        if not coll._masked:
            return None
        pk_name = coll._info.primary_key
        known: dict[Any, Any] = {}
        first = True
        out = coll._out

        def fn(diff: ResultDiff[E]) -> object:
            nonlocal first
            removed = tuple((i, out(o)) for i, o in diff.removed)
            for _, o in removed:
                known.pop(getattr(o, pk_name), None)
            inserted = tuple((i, out(o)) for i, o in diff.inserted)
            moved = tuple((a, b, out(o)) for a, b, o in diff.moved)
            for o in [o for _, o in inserted] + [o for _, _, o in moved]:
                known[getattr(o, pk_name)] = o
            modified = []
            for i, o in diff.modified:
                m = out(o)
                pk = getattr(m, pk_name)
                if known.get(pk) != m:
                    modified.append((i, m))
                    known[pk] = m
            result: ResultDiff[E] = ResultDiff(removed, inserted, moved, tuple(modified))
            if not result and not first:
                return EMPTY  # only masked values changed
            first = False
            return result

        return fn

    def watch(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[list[E]]:
        w = self._effective().watch(coalesce=coalesce, buffer=buffer)
        fn = self._list_mask()
        return w if fn is None else w.mapped(fn)

    def watch_diff(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[ResultDiff[E]]:
        w = self._effective().watch_diff(coalesce=coalesce, buffer=buffer)
        fn = self._diff_mask()
        return w if fn is None else w.mapped(fn)

    def live(self, *, coalesce: Coalesce = None) -> Watch[list[E]]:
        w = self._effective().live(coalesce=coalesce)
        fn = self._list_mask()
        return w if fn is None else w.mapped(fn)

    def watch_count(self, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[int]:
        return self._effective().watch_count(coalesce=coalesce, buffer=buffer)

    def watch_min(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        self._field(field, "watch_min")
        return self._effective().watch_min(field, coalesce=coalesce, buffer=buffer)

    def watch_max(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        self._field(field, "watch_max")
        return self._effective().watch_max(field, coalesce=coalesce, buffer=buffer)

    def watch_sum(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        self._field(field, "watch_sum")
        return self._effective().watch_sum(field, coalesce=coalesce, buffer=buffer)

    def watch_avg(self, field: Any, *, coalesce: Coalesce = None, buffer: int | None = None) -> Watch[Any]:
        self._field(field, "watch_avg")
        return self._effective().watch_avg(field, coalesce=coalesce, buffer=buffer)


def _replay(q: Query[E], steps: tuple[_Step, ...]) -> Query[E]:
    for name, args in steps:
        if name == "where":
            q = q.where(*args)
        elif name == "order_by":
            q = q.order_by(*args)
        elif name == "limit":
            q = q.limit(*args)
        elif name == "offset":
            q = q.offset(*args)
        else:  # pragma: no cover
            raise QueryError(name)
    return q


# ---------------------------------------------------------------------------------- kv


class SessionKeyValue:
    """``session.kv``: the ``db.kv`` API over the keys ``allow_kv`` rules grant. A key, or a
    scan's or watch's whole range, must lie inside one granted prefix; anything else raises
    ``PermissionDeniedError`` (deletes are writes)."""

    __slots__ = ("_grants", "_kv")

    def __init__(self, kv: KeyValue, grants: Grants) -> None:
        self._kv = kv
        self._grants = grants

    def __repr__(self) -> str:
        return f"<quanta.SessionKeyValue for {self._grants.principal.id!r}>"

    def _key(self, key: object, action: str) -> bytes:
        k = check_key(key)
        if not any(k.startswith(p) for p in self._grants.kv[action]):
            raise _denied(f"{self._grants.principal.id!r} may not {action} kv key {k[:40]!r}", key=k, action=action)
        return k

    def _range(self, start: object, stop: object, prefix: object, action: str = "read") -> None:
        lo, hi = key_range(start, stop, prefix)
        for p in self._grants.kv[action]:
            end = prefix_end(p) if p else None
            if (lo or b"") >= p and (end is None or (hi is not None and hi <= end)):
                return
        raise _denied(
            f"{self._grants.principal.id!r} may not {action} the kv range [{lo!r}, {hi!r}): "
            "it is not inside a prefix the policy grants",
            action=action,
        )

    async def get(self, key: bytes) -> bytes | None:
        return await self._kv.get(self._key(key, "read"))

    async def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        if isinstance(keys, (bytes, str)) or not isinstance(keys, Iterable):
            raise InvalidTypeError("get_many takes an iterable of keys")
        return await self._kv.get_many([self._key(k, "read") for k in keys])

    def scan(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
        include_reserved: bool = False,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        if include_reserved is not False:
            raise _denied("a session may not scan the reserved entity key space", action="read")
        self._range(start, stop, prefix)
        return self._kv.scan(start, stop, prefix=prefix, reverse=reverse, limit=limit)

    async def put(self, key: bytes, value: bytes) -> None:
        await self._kv.put(self._key(key, "write"), value)

    async def delete(self, key: bytes) -> None:
        await self._kv.delete(self._key(key, "write"))

    async def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        if isinstance(items, (bytes, str)) or not isinstance(items, Iterable):
            raise InvalidTypeError(f"put_many takes an iterable of (key, value) pairs, got {type(items).__name__}")
        pairs = list(items)
        for item in pairs:
            if isinstance(item, tuple | list) and len(item) == 2:
                self._key(item[0], "write")
        await self._kv.put_many(pairs)

    def batch(self) -> SessionBatch:
        if not self._grants.kv["write"]:
            raise _denied(f"{self._grants.principal.id!r} may not write kv keys: no allow_kv rule", action="write")
        return SessionBatch(self._kv.batch(), self)

    def watch(self, key: bytes) -> Watch[bytes | None]:
        return self._kv.watch(self._key(key, "read"))

    def watch_range(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        with_old: bool = False,
        buffer: int | None = None,
    ) -> Watch[Any]:
        self._range(start, stop, prefix)
        if buffer is None:
            return self._kv.watch_range(start, stop, prefix=prefix, with_old=with_old)
        return self._kv.watch_range(start, stop, prefix=prefix, with_old=with_old, buffer=buffer)


class SessionBatch:
    """``session.kv.batch()``: each put and delete is checked when added."""

    __slots__ = ("_batch", "_kv")

    def __init__(self, batch: Batch, kv: SessionKeyValue) -> None:
        self._batch = batch
        self._kv = kv

    def __len__(self) -> int:
        return len(self._batch)

    def put(self, key: bytes, value: bytes) -> SessionBatch:
        self._batch.put(self._kv._key(key, "write"), value)
        return self

    def delete(self, key: bytes) -> SessionBatch:
        self._batch.delete(self._kv._key(key, "write"))
        return self

    async def commit(self) -> None:
        await self._batch.commit()
