"""The public face of the database: ``quanta.open`` and ``Database``.

``Database`` ties the layers together: the engine (bytes), ``db.kv`` (``_kv.py``),
transactions (``_txn``) and the change bus (``_reactive``). Every argument is checked before a
layer below is asked to do anything.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Awaitable, Callable, Generator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import anyio
import anyio.to_thread

from ._access import Policy, Principal, Session
from ._catalog import (
    Catalog,
    CatalogState,
    EntityPreview,
    ProblemLog,
    RepairReport,
    SchemaProgress,
    VerifyReport,
    check_entities,
)
from ._entity import Collection, EntityContext
from ._kv import KeyValue, Snapshot, check_buffer, check_flag
from ._live import LiveQueries
from ._options import OpenOptions, Options, resolve_options
from ._reactive import DEFAULT_CAPACITY, ChangeBus, ChangeSet, EventHub, Queue, Watch
from ._schema import CATALOG_PREFIX
from ._storage import BackupInfo, Engine, SystemEvent, backup
from ._storage.vfs import check_platform
from ._transfer import (
    ImportContext,
    Progress,
    TransferReport,
    check_on_conflict,
    check_path,
    check_progress,
    export_jsonl,
    import_jsonl,
)
from ._txn import Transaction, Transactions, check_retries, run_transaction
from .errors import InvalidArgumentError, InvalidTypeError, QuantaError

if TYPE_CHECKING:
    from ._inspector import InspectorServer

__all__ = ["Database", "open"]

R = TypeVar("R")
E = TypeVar("E")


class Database:
    """An open QuantaDB database. Create with ``await quanta.open(path)`` or
    ``async with quanta.open(path) as db``; always ``await db.aclose()`` (``close()`` is an
    alias). A database left open warns with ``ResourceWarning`` when it is collected.

    A database belongs to the asyncio event loop that opened it: writes, snapshots, scans,
    transactions and subscriptions from another loop (a second ``asyncio.run``, another
    thread's loop) raise ``WrongEventLoopError``. Point reads (``kv.get``) are not checked
    while the opening loop runs (the check would cost a third of a read); once that loop has
    ended they raise it too."""

    def __init__(self, engine: Engine, policy: Policy | None = None, declared: Iterable[type] = ()) -> None:
        self._engine = engine
        self._policy = policy  # what sessions may do (quanta/_access); None: no sessions
        self._declared = tuple(declared)
        self._bus = ChangeBus(engine, hidden=CATALOG_PREFIX)  # the entity layer's bookkeeping
        self._events = EventHub(engine)
        self._transactions = Transactions(engine)
        self._catalog = Catalog(engine, self._transactions)  # stored schemas (quanta/_catalog)
        self.kv = KeyValue(engine, self._bus)
        self._entities = EntityContext(
            engine=engine,
            bus=self._bus,
            live=LiveQueries(self._bus, engine),
            kv=self.kv,
            run=self.run_transaction,
            snapshot=self.snapshot,
            database=self,
            catalog=self._catalog,
        )
        self._transactions.entities = self._entities
        if engine.follower is not None:  # a read-only open beside a writer: see catch_up()
            engine.follower.on_lag.append(self._bus.end_all)

    @property
    def path(self) -> str:
        """The database directory."""
        return self._engine.path

    @property
    def options(self) -> Options:
        """The options the database was opened with."""
        return self._engine.opts

    @property
    def seq(self) -> int:
        """The sequence number of the newest commit this database shows. In a read-only open
        beside a writer it moves as the reader follows the writer (see :meth:`catch_up`)."""
        return self._engine.visible_seq

    async def catch_up(self) -> int:
        """Read-only opens follow the database's writer (another process, or another open in
        this one): every ``follow_interval`` seconds they apply the writer's new commits, in
        order, publishing them on this database's change bus, so ``changes()``, watches and
        live queries work here too. ``catch_up()`` does it now and returns :attr:`seq` after
        it. On a writable database it returns :attr:`seq` at once. Raises the error that
        stopped following, if one did (reads then serve the last state). See
        docs/operations.md, "Readers beside a running writer"."""
        return await self._engine.catch_up()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` (or ``close()``) ran."""
        return self._engine.closed

    def snapshot(self) -> Snapshot:
        """Take a snapshot now (see :class:`Snapshot`)."""
        return Snapshot(self._engine)

    # ------------------------------------------------------------------ transactions

    def transaction(self, *, read_only: bool = False) -> Transaction:
        """Begin a transaction: ``async with db.transaction() as tx: ...``.

        ``tx.kv`` reads the database as of now plus the transaction's own writes; writes are
        buffered and committed atomically on a clean exit (rolled back on an exception or
        cancellation). The commit raises ``ConflictError`` if another commit, since this
        transaction began, wrote a key it read or wrote, or into a range it scanned.
        ``read_only=True`` refuses writes and costs nothing on the commit path.
        """
        check_flag("read_only", read_only)
        return Transaction(self._engine, self._transactions, read_only=read_only)

    async def run_transaction(
        self, fn: Callable[[Transaction], Awaitable[R]], *, retries: int = 5, read_only: bool = False
    ) -> R:
        """``await fn(tx)`` in a transaction and commit it, retrying the whole function (in a
        fresh transaction) up to ``retries`` times on ConflictError; returns what ``fn``
        returned. ``fn`` must be safe to run more than once."""
        if not callable(fn):
            raise InvalidTypeError(f"fn must be an async function taking the transaction, got {type(fn).__name__}")
        attempts = check_retries(retries)
        check_flag("read_only", read_only)
        return await run_transaction(lambda: self.transaction(read_only=read_only), fn, attempts)

    # ------------------------------------------------------------------ entities

    def collection(self, cls: type[E]) -> Collection[E]:
        """The records of entity class ``cls`` (declared with ``@quanta.entity``): ``put``,
        ``get``, ``delete``, ``count``, ``where(...)`` queries. Each write is one atomic
        transaction; each read runs at one snapshot. Inside a transaction use
        ``tx.collection(cls)``."""
        self._engine.check_open()
        return self._entities.collection(cls)

    def session(self, principal: Principal) -> Session:
        """A handle acting for ``principal``: ``alice = db.session(quanta.Principal("alice"))``;
        ``alice.collection(Post)`` and ``alice.kv`` have the collection and kv APIs, every call
        checked against the policy given to ``open`` (deny by default; docs/access-control.md).
        ``db`` itself stays unrestricted. Raises ``InvalidArgumentError`` on a database
        opened without ``policy=``, and for a rule whose ``where`` fails for ``principal``."""
        self._engine.check_open()
        if self._policy is None:
            raise InvalidArgumentError("db.session(): this database was opened without policy=quanta.Policy(...)")
        grants = self._policy.grants(principal)
        return Session(self, grants, [self._entities.collection(cls).info for cls in self._declared])

    # ------------------------------------------------------------------ the change bus

    def changes(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        with_old: bool = False,
        buffer: int = DEFAULT_CAPACITY,
    ) -> Watch[ChangeSet]:
        """Subscribe now to every later commit that changes a key in range (``start <= key <
        stop``, and ``prefix``: the same range arguments as ``db.kv.scan``): a
        :class:`quanta.Watch` of :class:`ChangeSet`, in commit order, each holding just the
        keys in range (an async iterator, and an Observable whose first observer takes this
        subscription if it was not iterated).

        ``stream.start_seq`` is the last commit before the subscription: it yields exactly
        the matching commits after it. ``with_old=True`` fills ``Change.old_value``.
        ``buffer`` bounds the change sets waiting for the consumer; past it, iteration
        raises ``SubscriberOverflowError`` after the buffered ones (docs/changes.md).
        Closing the database ends the iteration. Use ``async with db.changes() as stream``
        (or ``aclose()``) to unsubscribe early.
        """
        return self.kv._bus_feed(start, stop, prefix, with_old, buffer, hot=True)

    def observe(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        with_old: bool = False,
        buffer: int = DEFAULT_CAPACITY,
    ) -> Watch[ChangeSet]:
        """``changes()``, cold: the same :class:`quanta.Watch`, but nothing is subscribed
        until it is (each ``subscribe`` starts its own subscription at that moment) or first
        iterated. Delivered on the running asyncio loop; disposing unsubscribes; closing the
        database completes the observer."""
        return self.kv._bus_feed(start, stop, prefix, with_old, buffer)

    def events(self, *, buffer: int = DEFAULT_CAPACITY) -> Watch[SystemEvent]:
        """Subscribe now to the engine's system events (flush, compaction, write stalls,
        failure): a :class:`quanta.Watch` of :class:`SystemEvent`."""
        return self._event_feed(buffer, hot=True)

    def observe_events(self, *, buffer: int = DEFAULT_CAPACITY) -> Watch[SystemEvent]:
        """``events()``, cold: nothing is subscribed until it is, or first iterated."""
        return self._event_feed(buffer)

    def _event_feed(self, buffer: object, *, hot: bool = False) -> Watch[SystemEvent]:
        capacity = check_buffer(buffer)
        self._engine.check_open()
        hub = self._events

        def opener(wake: Callable[[], None], _scheduler: object) -> Queue[SystemEvent]:
            return hub.subscribe(capacity=capacity, wake=wake)

        return Watch(opener, hot=hot)

    async def flush(self) -> None:
        """Write the memtable to a table file and wait until it is durable there."""
        self._engine.check_writable()
        await self._engine.flush()

    async def compact(self) -> None:
        """Flush, then compact all data down into the deepest non-empty level."""
        self._engine.check_writable()
        await self._engine.compact()

    async def verify(self, progress: Callable[[int, int], None] | None = None, *, deep: bool = False) -> VerifyReport:
        """Check the database; returns a :class:`quanta.VerifyReport`.

        Always: every block of every table of the current version is read, and checksums,
        key order and the manifest's entry counts are checked (``tables``, ``entries``);
        damage raises ``CorruptionError`` naming the file. ``progress(done, total)`` is called
        from a worker thread after each table. Writers and readers go on meanwhile.

        ``deep=True`` also checks the entity data (each check below reads at one snapshot,
        so concurrent writes cause no false reports) and *reports* what is wrong instead of
        raising (``problems``: the first 1,000 as
        :class:`quanta.VerifyProblem`, ``problem_count`` all of them; ``ok``):

        * every entity record decodes (with its class where one is in use, else against its
          stored schema) and passes its type checks (``records``);
        * for every entity whose class is in use: its complete indexes' entries are exactly
          its records' entries (every record has its entries, every entry names a record
          that has it: ``index_entries``), and every link names a record that exists
          (``links``; else a dangling link);
        * the catalog accounts for the entity key space: no records of an entity without a
          stored schema, no entries of an index its stored schema does not have.

        Entities with indexes whose class is not in use are listed in ``skipped`` (their
        records are still decoded against the stored schema).
        """
        self._engine.check_open()
        tables = await self._engine.verify(progress)
        if not deep:
            return VerifyReport(tables["tables"], tables["entries"])
        log = ProblemLog()
        records = await self._catalog.check_records(log)
        entries, links, skipped = await self._catalog.check_entries(log)
        await self._catalog.check_keyspace(log)
        return VerifyReport(
            tables["tables"],
            tables["entries"],
            deep=True,
            records=records,
            index_entries=entries,
            links=links,
            problems=tuple(log.problems),
            problem_count=log.count,
            skipped=skipped,
        )

    async def repair(
        self, *, rebuild_indexes: bool = True, progress: Callable[[SchemaProgress], None] | None = None
    ) -> RepairReport:
        """Rebuild the index and unique entries of every entity whose class is in use (declared
        at open, or used through a collection) from its records, and return a
        :class:`quanta.RepairReport` (the indexes rebuilt, records read, entries deleted and
        written, and the entities skipped because no class is in use: the entries of a record
        are computed from its object). What ``verify(deep=True)`` reports about entries
        (missing, orphaned, stale, misdirected) is gone afterwards.

        Crash-safe: one commit marks an entity's indexes as being rebuilt (queries stop using
        them) and records a job per index; each job deletes the index's entries, then builds
        them from the records in chunks with a persisted cursor. A crash at any point resumes
        at the next open with the class declared (unique indexes before the open returns, the
        others in the background; ``indexes_ready()`` waits), and a query uses an index only
        once it is complete. Everything is rebuilt when this returns.

        Run it with no other writer of the repaired entities: uniqueness is enforced against
        the unique entries, which are incomplete while they are rebuilt. Two records sharing a
        unique value (damage, or a duplicate written meanwhile) fail that index only: the
        others are rebuilt, its entries are deleted, it is removed from the stored schema (the
        next open with the class adds it again) and ``SchemaMismatchError`` names the records. ``quanta repair PATH
        --rebuild-indexes --module MODULE`` opens the database itself. ``progress`` receives
        a :class:`quanta.SchemaProgress` after every chunk (``drop_index``, then
        ``build_index``, per index). Raises ``ReadOnlyError`` on a read-only database,
        ``DatabaseClosedError`` on a closed one.

        Stopped part-way (an I/O error, ``progress`` raising, a cancellation), it raises what
        stopped it with a note (``exc.__notes__``) naming the indexes left being rebuilt (hidden
        from queries, which read the records meanwhile) and the entities not reached; calling
        ``repair()`` again finishes it, or, after an I/O error stopped the database, reopening
        resumes it (docs/operations.md, "A repair that stops part-way")."""
        check_flag("rebuild_indexes", rebuild_indexes)
        _check_callback("progress", progress)
        if not rebuild_indexes:
            raise InvalidArgumentError("repair: nothing to do (rebuild_indexes=True is the only repair)")
        self._engine.check_writable()
        return await self._catalog.repair_indexes(progress)

    async def backup(
        self, dest: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None
    ) -> BackupInfo:
        """Copy the database into directory ``dest`` as of one sequence number, while writers
        and readers go on; the copy opens as an ordinary database (``quanta.open(dest)``).

        Returns a :class:`quanta.BackupInfo`: the backup holds every commit up to ``info.seq``
        and none after. Table files are hard-linked where ``dest`` is on the same file system
        (copied otherwise); a ``dest`` holding an earlier backup of this database is updated
        in place, reusing the tables it already has (checked by content). Any other non-empty
        ``dest`` is refused (``DatabaseExistsError``, ``NotADatabaseError``) before anything is
        written; so is ``dest`` inside the database directory (``InvalidArgumentError``).
        Works on a read-only database too.

        Crash-safe: until the backup completes, ``dest`` holds ``BACKUP-PENDING`` and opening
        it raises ``CorruptionError``; running the backup again completes it. Cancelling the
        call leaves ``dest`` in that state. ``progress(done_bytes, total_bytes)`` is called on
        the event loop after each file. See docs/operations.md, "Backup and restore".
        """
        path = _directory("dest", dest)
        _check_callback("progress", progress)
        self._engine.check_open()
        return await backup(self._engine, path, progress)

    async def export_jsonl(
        self,
        file: str | os.PathLike[str],
        *,
        entities: Iterable[str | type] | None = None,
        kv: bool = False,
        progress: Progress | None = None,
    ) -> TransferReport:
        """Write the database as of one snapshot to the JSON Lines file ``file`` (replaced if it
        exists): a header with each entity's stored schema, one line per record, then (with
        ``kv=True``) one per ``db.kv`` pair, then a trailer. ``entities``: entity names or
        classes to export (default: every entity with a stored schema). No entity class is
        needed: records are read with their stored schemas. Writers keep writing meanwhile;
        memory stays bounded (a chunk of records at a time). ``progress(phase, lines)`` is
        called after each chunk. Returns a :class:`quanta.TransferReport`. Format and value
        mapping: docs/operations.md, "Export and import (JSON Lines)"."""
        path = check_path(file)
        check_flag("kv", kv)
        reporter = check_progress(progress)
        self._engine.check_open()
        async with self.snapshot() as snap:
            return await export_jsonl(snap, path, entities=entities, kv=kv, progress=reporter)

    async def import_jsonl(
        self, file: str | os.PathLike[str], *, on_conflict: str = "error", progress: Progress | None = None
    ) -> TransferReport:
        """Import a file written by :meth:`export_jsonl`. Every line is validated first (JSON,
        entity, types, constraints, validators, unique values within the file and against the
        database, link targets in the database or the file, primary keys per ``on_conflict``);
        any problem raises :class:`quanta.ImportValidationError` listing the bad lines with
        their numbers, and nothing is written. Then the records are written in batches, one
        transaction each. ``on_conflict``: what a record whose primary key exists does:
        ``"error"`` (a problem), ``"replace"`` (overwrite it) or ``"skip"`` (keep the stored
        one). Entities are decoded with the classes in use in this database (declared at
        open, or used through a collection), else with the class the file's schema names
        if its module is already imported (a file never makes the import run code). A crash
        or cancellation in the write phase leaves the batches committed so far; re-run with
        ``on_conflict="replace"`` to finish. Each batch checks ``on_conflict`` again against what
        exists when it writes: with ``"error"``, a key another writer inserted after the
        validation stops the import with :class:`quanta.IntegrityError` naming the line (a
        unique value claimed meanwhile: :class:`quanta.UniqueViolationError`), never
        overwriting it; the batches before it stay."""
        path = check_path(file)
        mode = check_on_conflict(on_conflict)
        reporter = check_progress(progress)
        self._engine.check_writable()
        ctx = ImportContext(
            kv=self.kv,
            begin=self.transaction,
            catalog=self._catalog,
            entities=self._entities,
            last_seq=lambda: self._engine.visible_seq,
        )
        return await import_jsonl(ctx, path, on_conflict=mode, progress=reporter)

    async def stats(self) -> dict[str, Any]:
        """Counters and sizes: levels, memtables, bytes written, cache, stalls."""
        e = self._engine
        e.check_open()
        s = e.stats
        levels = e.level_summary()
        live = sum(lv["bytes"] for lv in levels)
        written = s.bytes_written_wal + s.bytes_written_flush + s.bytes_written_compaction
        return {
            "path": e.path,
            "last_seq": e.visible_seq,
            "memtable_bytes": e.mem.approximate_bytes,
            "memtable_entries": len(e.mem),
            "immutable_memtables": len(e.imms),
            "levels": levels,
            "live_table_bytes": live,
            "table_files": sum(lv["files"] for lv in levels),
            "commits": s.commits,
            "syncs": s.syncs,
            "flushes": s.flushes,
            "compactions": s.compactions,
            "trivial_moves": s.trivial_moves,
            "write_stalls": s.write_stalls,
            "stall_seconds": s.stall_seconds,
            "user_bytes_written": s.user_bytes_written,
            "bytes_written_wal": s.bytes_written_wal,
            "bytes_written_tables": s.bytes_written_flush + s.bytes_written_compaction,
            "bytes_written_flush": s.bytes_written_flush,
            "bytes_written_compaction": s.bytes_written_compaction,
            "write_amplification": (written / s.user_bytes_written) if s.user_bytes_written else 0.0,
            "block_cache": dataclasses.asdict(e.cache.stats),
            "open_snapshots": len(e.snapshots),
            "recovered_wal_batches": e.recovered_wal_batches,
            "recovery_tail": e.recovery_tail,
            "transactions_committed": self._transactions.commits,
            "transaction_conflicts": self._transactions.conflicts,
            "conflict_tracked_keys": self._transactions.tracker.tracked_keys,
            "change_subscribers": len(self._bus),
            "event_subscribers": len(self._events),
            "change_sets_published": self._bus.published,
            # a read-only open following a writer (None otherwise): looks taken, new table
            # sets installed, reloads after falling behind (docs/operations.md)
            "follower": None
            if e.follower is None
            else {
                "polls": e.follower.polls,
                "installs": e.follower.installs,
                "reloads": e.follower.reloads,
                "lag_gaps": e.follower.lag_gaps,
            },
        }

    async def schema_state(self) -> CatalogState:
        """What the catalog holds now: the stored schemas, unfinished migration and index
        jobs, and the entities with records but no stored schema (for tools: ``quanta
        schema``, the inspector). Works on read-only opens; reads only."""
        self._engine.check_open()
        return await self._catalog.state()

    async def serve_inspector(
        self, port: int = 0, host: str = "127.0.0.1", *, token: str | None = None, allow_writes: bool = False
    ) -> InspectorServer:
        """Start the inspector web UI (docs/inspector.md) for this database on the running
        loop and return its server (``url`` with the random token, ``await close()``);
        ``port=0`` picks a free port. Needs the ``quanta-db[inspector]`` extra
        (``InvalidArgumentError`` naming it otherwise). Read-only unless ``allow_writes``."""
        from ._inspector import serve

        self._engine.check_open()
        check_flag("allow_writes", allow_writes)
        return await serve(self, port=port, host=host, token=token, allow_writes=allow_writes)

    async def preview_schema(self, cls: type) -> EntityPreview:
        """What opening with entity class ``cls`` would do, without doing it (``quanta
        migrate --autogenerate``); raises ``InvalidTypeError`` for a class that is not an
        entity."""
        self._engine.check_open()
        return await self._catalog.preview(cls)

    async def indexes_ready(self) -> None:
        """Wait until every index being built in the background (one added to a declared
        class, see docs/migrations.md) is complete; queries use an index only once it is.
        Raises the failure of a build that failed."""
        self._engine.check_open()
        await self._catalog.indexes_ready()

    async def aclose(self) -> None:
        """Flush, finish background work and release the directory. Idempotent and
        cancel-safe (a cancelled ``aclose`` still completes the shutdown in the background)."""
        await self._catalog.aclose()  # index builds stop here and resume on the next open
        await self._engine.close()

    async def close(self) -> None:
        """Alias of :meth:`aclose`."""
        await self.aclose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<quanta.Database {self.path!r} {state}>"

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        # Not `engine.closed`: when a program returns from asyncio.run without closing, the
        # loop cancels the background task, which shuts the engine down before we get here.
        if engine is not None and not engine.close_called:
            warnings.warn(
                f"the database at {engine.path} was never closed by the program (its event loop may have shut "
                "it down since); `await db.aclose()` or use `async with`",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )


class _Opening:
    """What :func:`open` returns: await it for a Database, or use it with ``async with``."""

    def __init__(
        self,
        path: str,
        opts: Options,
        entities: list[type] | None = None,
        on_progress: Callable[[SchemaProgress], None] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self._policy = policy
        self._path = path
        self._opts = opts
        self._entities = entities or []
        self._on_progress = on_progress
        self._db: Database | None = None

    async def _open(self) -> Database:
        engine = await Engine.open(self._path, self._opts)
        db = Database(engine, self._policy, self._entities)
        try:
            # Compare, apply or migrate the declared classes before anyone can use the data.
            await db._catalog.open(self._entities, self._on_progress)
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await db.aclose()
                except QuantaError:
                    pass  # the first error is the one to report
            raise
        return db

    def __await__(self) -> Generator[Any, None, Database]:
        return self._open().__await__()

    async def __aenter__(self) -> Database:
        self._db = await self._open()
        return self._db

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.aclose()


def open(
    path: str | os.PathLike[str],
    *,
    entities: Iterable[type] = (),
    on_progress: Callable[[SchemaProgress], None] | None = None,
    options: Options | None = None,
    policy: Policy | None = None,
    **kwargs: Unpack[OpenOptions],
) -> _Opening:
    """Open (creating if needed) the database in directory ``path``.

    ``db = await quanta.open(path, durability="sync")`` or ``async with quanta.open(path) as db``.

    Options come as keywords (typed by :class:`quanta.OpenOptions`, so a type checker catches
    a misspelt one), as ``options=quanta.Options(...)``, or both: then each keyword given
    replaces that field of ``options`` (``open(p, options=base, read_only=True)`` is ``base``
    opened read-only). They are checked here, before anything touches the disk; see
    :class:`quanta.Options` and docs/options.md.

    Runs on asyncio only (directly or through anyio's asyncio backend): awaited under another
    event loop (trio) it raises ``UnsupportedPlatformError``; on Windows ``open`` itself does.

    ``entities=[User, Post]``: the entity classes the program uses. Each is compared with the
    schema stored for it before the database is returned: additive changes are applied, new
    indexes built, pending ``@quanta.migration`` steps run; anything else raises
    ``SchemaMismatchError`` with the data untouched (docs/migrations.md). ``on_progress``
    receives a :class:`quanta.SchemaProgress` per chunk of those jobs.

    ``policy=quanta.Policy(...)``: the access rules of ``db.session(principal)`` handles
    (docs/access-control.md); every entity a rule names must be in ``entities``. The
    returned ``db`` itself is unrestricted.
    """
    check_platform()
    path = _directory("path", path)
    _check_callback("on_progress", on_progress)
    declared = check_entities(entities)
    if policy is not None:
        if not isinstance(policy, Policy):
            raise InvalidTypeError(f"policy must be a quanta.Policy, got {type(policy).__name__}")
        policy.check(declared)
    return _Opening(path, resolve_options(options, kwargs), declared, on_progress, policy)


def _directory(name: str, value: object) -> str:
    """``value`` (a str or ``os.PathLike``) as a non-empty directory path string."""
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidTypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise InvalidArgumentError(f"{name} must be a non-empty directory path")
    return path


def _check_callback(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise InvalidTypeError(f"{name} must be callable, got {type(value).__name__}")
