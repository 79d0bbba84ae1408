"""The schema catalog of one open database: what it stores, what opening with entity classes
does, which classes may be used afterwards, and the background index jobs.

Where classes are declared, and why. ``quanta.open(path, entities=[User, Post])`` compares
each declared class with its stored schema *before the database is returned* and applies the
difference: nothing, a new catalog entry, index jobs, an automatic rewrite, or the migration
chain (``diff.py`` decides; ``rewrite.py`` and ``builder.py`` do). Anything else raises
``SchemaMismatchError`` listing every difference of every class, with nothing written. Doing
this at open, not on first use, is what makes the promises cheap to keep: a migration needs
the whole collection before anyone reads it; the classes are all known before the first
read or write; and a crash mid-way is finished (or rolled back) by the next open, before a
mix of shapes can be seen.

``db.collection(cls)`` (and ``tx.collection(cls)``) of a class not declared at open is
*admitted* synchronously against the catalog loaded at open (:meth:`Catalog.admit`): a class
the stored schema reads unchanged (the same, or a widened type, or moved to another module)
is accepted; any difference that needs a write (a new or dropped index, a new field, a new
version) raises ``SchemaMismatchError`` asking to declare the class at open. Admission never
writes: registering an entity on first use would put a catalog write into (or before) the
user's first commit, changing what that commit conflicts with and what the change bus
publishes for it. An entity the catalog does not know yet is used unchecked, as before the
catalog existed; the first open that declares it *adopts* its records (reads each with the
class, checks it, rewrites it with fresh index entries) and records its schema.

Index states and the planner: a new non-unique index is ``building`` while a background job
writes its entries for existing records; the collection maintains it for new writes from
the start. :meth:`Catalog.planning_info` hides every index that is not ``ready`` from the
planner, so queries use it only once complete. ``db.indexes_ready()`` waits for the jobs.

Concurrency rules: event-loop thread only. Schema writes are serialised by one lock and
update :attr:`schemas` right after their commit. Background jobs run in one anyio task group
hosted by a supervisor task (as the engine's); ``aclose()`` cancels them (each resumes at its
last committed chunk on the next open) and waits. A job's failure stops the database
(``Engine._fail``) and is raised by ``indexes_ready()`` and ``close()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, NamedTuple

import anyio

from .._codec import decode_tuple, encode_key, encode_tuple, prefix_end
from .._schema import NS, RECORD, EntityInfo, IndexInfo, bad_record_error, decode_value
from .._storage import Engine
from .._txn import Transactions
from ..errors import CorruptionError, IntegrityError, InvalidTypeError, QuantaError, SchemaMismatchError
from . import builder, rewrite
from .diff import Decision, decide, differences, summary
from .format import (
    BUILDING,
    CATALOG_PREFIX,
    DROPPING,
    READY,
    HistoryEntry,
    StoredIndex,
    StoredSchema,
    entity_ranges,
    job_key,
    schema_key,
    schema_of,
)
from .migrations import Step, chain_for
from .progress import SchemaProgress
from .repair import RepairReport
from .rewrite import RecordJob, history_entry
from .store import Store
from .verify import ProblemLog, check_entries, check_keyspace

__all__ = ["Catalog", "CatalogState", "EntityPreview", "check_entities"]

Report = Callable[[SchemaProgress], None]


@dataclasses.dataclass(slots=True)
class _Plan:
    """What opening does to one declared entity (see :meth:`Catalog._plan`)."""

    info: EntityInfo
    declared: StoredSchema
    stored: StoredSchema | None
    action: str  # none, create, adopt, catalog, rewrite, migrate, resume, mismatch
    decision: Decision | None = None
    abandon: bool = False
    chain: tuple[Step, ...] = ()
    problems: tuple[Any, ...] = ()
    hint: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class CatalogState:
    """What the catalog holds, for tools (``db.schema_state()``, the CLI): the stored
    ``schemas`` by entity name, the unfinished ``record_jobs`` (by entity) and
    ``index_jobs`` (by (entity, index)), and ``untracked``: entities with records but no
    stored schema."""

    schemas: dict[str, StoredSchema]
    record_jobs: dict[str, RecordJob]
    index_jobs: dict[tuple[str, str], builder.IndexJob]
    untracked: tuple[str, ...]


class EntityPreview(NamedTuple):
    """What opening with one entity class would do (``db.preview_schema(cls)``): ``action``
    (``"none"``: nothing to do; ``"mismatch"``: the open would be refused; else what it would
    run, such as ``"create"``, ``"rewrite"`` or ``"migrate"``), the
    ``stored`` and ``declared`` schemas, the ``decision`` of the schema diff and a ``hint``."""

    action: str
    stored: StoredSchema | None
    declared: StoredSchema
    decision: Decision | None
    hint: str


class Catalog:
    """See the module docstring."""

    def __init__(self, engine: Engine, transactions: Transactions) -> None:
        self._engine = engine
        self._transactions = transactions
        self._store = Store(engine)
        self.schemas: dict[str, StoredSchema] = {}
        self.record_jobs: dict[str, RecordJob] = {}
        self.index_jobs: dict[tuple[str, str], builder.IndexJob] = {}
        self.loaded = False
        self._bound: dict[str, EntityInfo] = {}
        self._hidden: dict[str, frozenset[str]] = {}
        self._planning: dict[str, tuple[EntityInfo, EntityInfo]] = {}
        self._lock = asyncio.Lock()
        self._report: Report | None = None
        self._queue: list[tuple[tuple[str, str, str], Callable[[], Awaitable[object]]]] = []
        self._running: set[tuple[str, str, str]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._failure: BaseException | None = None
        self._repairing: set[str] = set()
        # Unique indexes and db.repair(): while a repair deletes an entity's unique entries and
        # builds them again, a put's uniqueness check would miss a value whose entry is not
        # rebuilt yet. So puts of that entity wait until its unique indexes are rebuilt (as
        # PostgreSQL's REINDEX blocks writes to its table), and after a repair that stopped
        # part-way they are refused until the indexes are complete (``unique_checkable``).
        self._unique_rebuilding: dict[str, asyncio.Event] = {}
        self._unique_unfinished: dict[str, tuple[str, ...]] = {}

    def unique_pending(self, name: str) -> bool:
        """Whether a put of ``name`` must first pass :meth:`unique_checkable` (a dict probe)."""
        return name in self._unique_rebuilding or name in self._unique_unfinished

    async def unique_checkable(self, name: str) -> None:
        """Before a put of entity ``name`` is checked against its unique indexes (inside the
        write, so a retried transaction waits again): wait while ``db.repair()`` rebuilds one of
        them; raise :class:`IntegrityError` (nothing written) while one is left half-rebuilt
        by a repair that stopped part-way."""
        while (gate := self._unique_rebuilding.get(name)) is not None:
            await gate.wait()
        left = self._unique_unfinished.get(name)
        if left:
            raise IntegrityError(
                f"{name}: a put cannot be checked against the unique "
                f"{'index' if len(left) == 1 else 'indexes'} {', '.join(repr(i) for i in left)}: db.repair() stopped "
                "part-way through rebuilding it, so a duplicate would go unnoticed; nothing was written. Call "
                "db.repair() again (or reopen the database with the entity class declared) first"
            )

    def _unique_rebuilt(self, name: str, left: Sequence[str]) -> None:
        """A repair is done with ``name``'s unique indexes: ``left`` are the ones it did not
        finish (puts are refused until they are); wake the puts that waited."""
        if left:
            self._unique_unfinished[name] = tuple(left)
        gate = self._unique_rebuilding.pop(name, None)
        if gate is not None:
            gate.set()

    # ------------------------------------------------------------------ loading

    async def load(self) -> None:
        """Read every stored schema and unfinished job (staged records are skipped)."""
        schemas: dict[str, StoredSchema] = {}
        record_jobs: dict[str, RecordJob] = {}
        index_jobs: dict[tuple[str, str], builder.IndexJob] = {}
        hi = prefix_end(CATALOG_PREFIX)
        cur: bytes | None = CATALOG_PREFIX
        while cur is not None:
            keys, values, nxt = await self._store.read_chunk(cur, hi, 1024)
            cur = nxt
            for k, v in zip(keys, values, strict=True):
                t = decode_tuple(k[len(CATALOG_PREFIX) :])
                entity = str(t[0])
                if len(t) == 1:
                    schemas[entity] = StoredSchema.from_bytes(v)
                elif t[1] == "~job" and t[2] == "migrate":
                    record_jobs[entity] = RecordJob.from_bytes(v)
                elif t[1] == "~job":
                    index_jobs[(entity, str(t[3]))] = builder.IndexJob.from_bytes(v)
                else:  # "~stage" / "~claim": a migration's data; skip the whole range
                    cur = prefix_end(CATALOG_PREFIX + encode_tuple(t[:2]))
                    break
        self.schemas, self.record_jobs, self.index_jobs = schemas, record_jobs, index_jobs
        self.loaded = True

    # ------------------------------------------------------------------ open

    async def open(self, entities: Iterable[type], report: Report | None) -> None:
        """Load the catalog, then compare, apply or migrate each class in ``entities`` (see
        the module docstring); background index jobs start at the end."""
        self._report = report
        await self.load()
        infos = _declared(entities)
        plans = [await self._plan(info) for info in infos]
        bad = [p for p in plans if p.action == "mismatch"]
        if self._engine.read_only:
            bad += [
                dataclasses.replace(
                    p,
                    action="mismatch",
                    problems=(
                        f"{p.info.name}: "
                        + (
                            "an unfinished migration must be abandoned"
                            if p.abandon
                            else f"the records must be rewritten ({p.action})"
                        )
                        + " before this class can read them",
                    ),
                    hint="the database was opened read_only=True; open it writable once to apply the change",
                )
                for p in plans
                if p.abandon or p.action in ("adopt", "rewrite", "migrate", "resume")
            ]
        if bad:
            raise _mismatch(bad)
        if not self._engine.read_only:
            for p in plans:
                await self._apply(p)
        for info in infos:
            self._bind(info)
        if not self._engine.read_only:
            for info in infos:
                await self._resume_unique_builds(info)
            self._start_background()

    async def _plan(self, info: EntityInfo) -> _Plan:
        name = info.name
        declared = schema_of(info)
        stored = self.schemas.get(name)
        abandon = False
        job = self.record_jobs.get(name)
        if job is not None:
            target = job.target_schema
            same_steps = True
            if job.kind == "migrate":
                found, _ = chain_for(info.cls, job.from_version or 0, job.to_version)
                same_steps = found is not None and tuple(s.name for s in found) == job.steps
            if target.shape == declared.shape and (same_steps or job.phase != "stage"):
                return _Plan(info, declared, stored, "resume")  # (past the stage, only the same steps finish it)
            if job.phase != "stage":
                return _Plan(
                    info,
                    declared,
                    stored,
                    "mismatch",
                    problems=(
                        f"{name}: an interrupted {job.kind} to version {job.to_version} is half-way through "
                        f"replacing the records ({job.moved} of {job.staged} moved)",
                    ),
                    hint=(
                        f"open it with the class the {job.kind} started with ({target.cls}, version "
                        f"{target.version}, fields {', '.join(f.name for f in target.fields)}) to finish it"
                    ),
                )
            abandon = True  # still staging: the old records are intact; start afresh
        records_lo, records_hi = entity_ranges(name)[0]
        has_records = await self._store.any(records_lo, records_hi)
        if stored is None:
            return _Plan(info, declared, None, "adopt" if has_records else "create", abandon=abandon)
        diffs = differences(stored, declared)
        if not diffs:
            return _Plan(info, declared, stored, "none", abandon=abandon)
        removed = [d.field for d in diffs if d.kind == "field_removed" and d.field]
        with_data = await self._fields_with_data(stored, removed) if removed and has_records else []
        chain: list[Step] | None = None
        why = ""
        if declared.version > stored.version:
            chain, why = chain_for(info.cls, stored.version, declared.version)
        decision = decide(
            stored, declared, has_records=has_records, removed_with_data=with_data, chain=chain, missing_step=why
        )
        if decision.action == "mismatch":
            return _Plan(
                info, declared, stored, "mismatch", decision, abandon, problems=decision.problems, hint=decision.hint
            )
        return _Plan(info, declared, stored, decision.action, decision, abandon, chain=tuple(decision.chain))

    async def preview(self, cls: type) -> EntityPreview:
        """What opening with entity class ``cls`` would do, without doing it (for the CLI);
        ``action`` as in :meth:`_plan`."""
        info = _declared([cls])[0]
        p = await self._plan(info)
        return EntityPreview(p.action, p.stored, p.declared, p.decision, p.hint)

    async def state(self) -> CatalogState:
        """A copy of what the catalog holds now (see :class:`CatalogState`)."""
        with_records = await self.record_entities()
        return CatalogState(
            schemas=dict(sorted(self.schemas.items())),
            record_jobs=dict(self.record_jobs),
            index_jobs=dict(self.index_jobs),
            untracked=tuple(n for n in with_records if n not in self.schemas),
        )

    async def record_entities(self) -> list[str]:
        """The names of the entities that have records (one seek per entity)."""
        prefix = NS + RECORD
        hi = prefix_end(prefix)
        out: list[str] = []
        cur: bytes | None = prefix
        while cur is not None:
            keys, _, _ = await self._store.read_chunk(cur, hi, 1)
            if not keys:
                break
            name = decode_tuple(keys[0][len(prefix) :])[0]
            out.append(str(name))
            cur = prefix_end(prefix + encode_key(name))
        return out

    async def _fields_with_data(self, stored: StoredSchema, names: Sequence[str]) -> list[str]:
        """Which of the stored fields ``names`` hold a value other than None in some record."""
        positions = {i + 1: f.name for i, f in enumerate(stored.fields) if f.name in names}
        found: set[str] = set()
        lo, hi = entity_ranges(stored.name)[0]
        cur: bytes | None = lo
        while cur is not None and len(found) < len(positions):
            _, values, cur = await self._store.read_chunk(cur, hi, 2048)
            for v in values:
                record = decode_value(v)
                for pos, fname in positions.items():
                    if fname not in found and len(record) > pos and record[pos] is not None:
                        found.add(fname)
        return sorted(found)

    async def _apply(self, p: _Plan) -> None:
        name = p.info.name
        if p.abandon:
            await rewrite.abandon(self._store, name)
            self.record_jobs.pop(name, None)
        if p.action == "create":
            await self._put_schema(
                p.declared.with_history(
                    HistoryEntry(p.declared.version, time.time(), "created", _fields_text(p.declared), 0)
                )
            )
        elif p.action in ("adopt", "rewrite", "migrate", "resume"):
            await self._run_record_job(p)
        elif p.action == "catalog":
            await self._apply_catalog(p)

    # ------------------------------------------------------------------ record jobs

    async def _run_record_job(self, p: _Plan) -> None:
        info, name = p.info, p.info.name
        stored = p.stored
        if p.action == "resume":
            job = self.record_jobs[name]
            fresh = False
            chain: Sequence[Step] = ()
            if job.kind == "migrate":
                found, why = chain_for(info.cls, job.from_version or 0, job.to_version)
                if found is None or tuple(s.name for s in found) != job.steps:
                    raise SchemaMismatchError(
                        f"{name}: an interrupted migration from version {job.from_version} to {job.to_version} "
                        f"ran the steps {', '.join(job.steps)}; register the same steps to finish it",
                        differences=[f"{name}: migration steps changed ({why or 'different steps'})"],
                    )
                chain = found
        else:
            fresh = True
            chain = p.chain if p.action == "migrate" else ()
            if p.action == "adopt":
                detail = f"records stored before their schema; checked and re-indexed; {_fields_text(p.declared)}"
            elif p.action == "migrate":
                detail = "by " + ", ".join(s.text for s in chain)
            else:
                detail = summary(p.decision.differences if p.decision else ())
            job = RecordJob(
                kind=p.action,
                from_version=stored.version if stored is not None else None,
                to_version=p.declared.version,
                target=p.declared.to_map(),
                steps=tuple(s.name for s in chain),
                detail=detail,
                resumable=not any(s.whole for s in chain),
            )
        source = stored if job.kind != "adopt" else None
        self.record_jobs[name] = job
        history = stored.history if stored is not None else ()
        declared = p.declared

        def finish(j: RecordJob) -> StoredSchema:
            return declared.replace(history=history).with_history(history_entry(j, j.detail))

        async with self._lock:
            schema = await rewrite.run(
                self._store, info, job, source=source, chain=chain, finish=finish, report=self._report, fresh=fresh
            )
            self.schemas[name] = schema
            self.record_jobs.pop(name, None)
            for (entity, index), _ in list(self.index_jobs.items()):
                if entity == name:  # the rewrite wrote every index afresh
                    await self._store.write([job_key(name, "build", index), job_key(name, "drop", index)], [None, None])
                    del self.index_jobs[(entity, index)]
            self._refresh_hidden(name)

    # ------------------------------------------------------------------ catalog changes and indexes

    async def _apply_catalog(self, p: _Plan) -> None:
        assert p.decision is not None and p.stored is not None
        name = p.info.name
        stored = p.stored
        decision = p.decision
        has_records = await self._store.any(*entity_ranges(name)[0])
        changed = {d.index for d in decision.differences if d.kind == "index_changed" and d.index}
        # A redefined index keeps its name, so its old entries must be gone before new ones
        # are written: mark it dropping, delete them, forget it (three crash-safe steps).
        for index in sorted(changed | {i.name for i in stored.indexes if i.state == DROPPING}):
            if any(idx.name == index for idx in p.declared.indexes):
                stored = await self._drop_now(stored, index)
        keys: list[bytes] = []
        values: list[bytes | None] = []
        indexes: list[StoredIndex] = []
        unique_builds: list[str] = []
        declared_names = {i.name for i in p.declared.indexes}
        for idx in p.declared.indexes:
            old = stored.index(idx.name)
            if old is not None and old.same_definition(idx) and old.state != DROPPING:
                indexes.append(dataclasses.replace(idx, state=old.state))
                continue
            if not has_records:
                await self._delete_entries(name, idx.name)  # leftovers of an abandoned build, if any
                indexes.append(dataclasses.replace(idx, state=READY))
                continue
            indexes.append(dataclasses.replace(idx, state=BUILDING))
            job = builder.IndexJob("build")
            self.index_jobs[(name, idx.name)] = job
            keys.append(job_key(name, "build", idx.name))
            values.append(job.to_bytes())
            if idx.unique:
                unique_builds.append(idx.name)
        for old in stored.indexes:
            if old.name in declared_names:
                continue
            indexes.append(dataclasses.replace(old, state=DROPPING))
            if (name, old.name) in self.index_jobs:
                keys.append(job_key(name, "build", old.name))
                values.append(None)
            drop_job = builder.IndexJob("drop")
            self.index_jobs[(name, old.name)] = drop_job
            keys.append(job_key(name, "drop", old.name))
            values.append(drop_job.to_bytes())
        entry = HistoryEntry(p.declared.version, time.time(), "changed", summary(decision.differences))
        schema = p.declared.replace(indexes=tuple(indexes), history=stored.history).with_history(entry)
        async with self._lock:
            await self._put_schema_locked(schema, keys, values)
        # Unique indexes are built now, before anyone can write (see builder.py); a
        # duplicate rolls this entity's change back and fails the open.
        for index in unique_builds:
            try:
                await self._build(p.info, index)
            except SchemaMismatchError:
                await self._delete_entries(name, index)
                rollback_keys = [k for k, v in zip(keys, values, strict=True) if v is not None]
                for (entity, idx_name), _ in list(self.index_jobs.items()):
                    if entity == name and job_key(name, "build", idx_name) in rollback_keys:
                        del self.index_jobs[(entity, idx_name)]
                    if entity == name and job_key(name, "drop", idx_name) in rollback_keys:
                        del self.index_jobs[(entity, idx_name)]
                async with self._lock:
                    await self._put_schema_locked(stored, rollback_keys, [None] * len(rollback_keys))
                raise

    async def _drop_now(self, stored: StoredSchema, index: str) -> StoredSchema:
        name = stored.name
        async with self._lock:
            if stored.index(index) is not None:
                marked = stored.with_index_state(index, DROPPING)
                await self._put_schema_locked(
                    marked, [job_key(name, "drop", index)], [builder.IndexJob("drop").to_bytes()]
                )
        await self._delete_entries(name, index)
        async with self._lock:
            gone = self.schemas[name].with_index_state(index, None)
            await self._put_schema_locked(
                gone, [job_key(name, "drop", index), job_key(name, "build", index)], [None, None]
            )
            self.index_jobs.pop((name, index), None)
        return gone

    async def _delete_entries(self, entity: str, index: str) -> int:
        return await builder.drop(self._store, entity, index, None)

    async def _build(self, info: EntityInfo, index: str, report: Report | None = None) -> tuple[int, int]:
        """Run (or resume) the build of ``index`` to the end and mark it ready. A ``rebuild``
        job (``repair.py``) first deletes the index's entries and becomes a ``build`` job.
        Returns how many entries were deleted first and how many records were read."""
        name = info.name
        idx = _index_info(info, index)
        report = report if report is not None else self._report
        job = self.index_jobs.get((name, index))
        removed = 0
        if job is not None and job.kind == "rebuild":
            removed = await builder.drop(self._store, name, index, report)
            if report is not None:
                report(SchemaProgress("drop_index", name, "done", removed, removed, index=index, finished=True))
            job = builder.IndexJob("build")
            await self._store.write([job_key(name, "build", index)], [job.to_bytes()])
            self.index_jobs[(name, index)] = job
        if job is None or job.kind != "build":
            job = builder.IndexJob("build")
            self.index_jobs[(name, index)] = job
        await builder.build(self._store, self._transactions, info, idx, job, report)
        async with self._lock:
            current = self.schemas[name]
            ready = current.with_index_state(index, READY).with_history(
                HistoryEntry(current.version, time.time(), "index_built", f"index {index!r}", job.done)
            )
            await self._put_schema_locked(ready, [job_key(name, "build", index)], [None])
            self.index_jobs.pop((name, index), None)
        if report is not None:
            report(SchemaProgress("build_index", name, "done", job.done, job.total, index=index, finished=True))
        return removed, job.done

    async def repair_indexes(self, report: Report | None) -> RepairReport:
        """Rebuild every index of every entity whose class is in use from its records
        (``Database.repair``; the crash-safe steps are described in ``repair.py``). Waits for
        running index jobs first; unique indexes are rebuilt first; everything is complete
        when this returns. Entities with stored indexes but no class in use are skipped."""
        await self.indexes_ready()
        names: list[str] = []
        skipped: list[str] = []
        for name in sorted(self.schemas):
            stored = self.schemas[name]
            if name in self._bound:
                names.append(name)
            elif any(i.state != DROPPING for i in stored.indexes):
                skipped.append(
                    f"{name}: its indexes were not rebuilt: no entity class is in use (declare it at open; "
                    "with the CLI, pass --module)"
                )
        rebuilt: list[str] = []
        failures: list[SchemaMismatchError] = []
        records = removed = entries = 0
        touched: list[str] = []  # the entities whose indexes this call began to rebuild
        finished: set[str] = set()  # ... and those it went through to the end
        try:
            for name in names:
                info = self._bound[name]
                stored = self.schemas[name]
                targets: list[IndexInfo] = []
                for idx in info.indexes:
                    s = stored.index(idx.name)
                    if (
                        s is not None
                        and s.state != DROPPING
                        and s.same_definition(StoredIndex(idx.name, idx.fields, idx.unique, idx.multi))
                    ):
                        targets.append(idx)
                if not targets:
                    continue
                self._repairing.add(name)
                touched.append(name)
                unique = [idx.name for idx in targets if idx.unique]
                settled: set[str] = set()  # unique indexes rebuilt, or removed as unbuildable
                if unique:
                    self._unique_rebuilding[name] = asyncio.Event()
                    self._unique_unfinished.pop(name, None)
                try:
                    async with self._lock:
                        schema = self.schemas[name]
                        keys: list[bytes] = []
                        values: list[bytes | None] = []
                        for idx in targets:
                            schema = schema.with_index_state(idx.name, BUILDING)
                            job = builder.IndexJob("rebuild")
                            self.index_jobs[(name, idx.name)] = job
                            keys.append(job_key(name, "build", idx.name))
                            values.append(job.to_bytes())
                        await self._put_schema_locked(schema, keys, values)
                    done = 0
                    for idx in sorted(targets, key=lambda i: not i.unique):
                        if not idx.unique and name in self._unique_rebuilding:
                            self._unique_rebuilt(name, [])  # the unique ones are done: puts may go on
                        try:
                            deleted, read = await self._build(info, idx.name, report)
                        except SchemaMismatchError as exc:  # two records share a unique value
                            failures.append(await self._unbuildable(name, idx.name, exc))
                            settled.add(idx.name)
                            continue
                        settled.add(idx.name)
                        removed += deleted
                        done = max(done, read)
                        rebuilt.append(f"{name}.{idx.name}")
                        for lo, hi in builder.index_ranges(name, idx.name):
                            entries += await self._store.count(lo, hi)
                    records += done
                    finished.add(name)
                finally:
                    self._repairing.discard(name)
                    if name in self._unique_rebuilding:
                        self._unique_rebuilt(name, [u for u in unique if u not in settled])
        except BaseException as exc:  # an I/O failure, a cancellation, a progress callback raising...
            await self._reload_after_interruption(touched)
            self._unique_left_after_interruption(touched)
            exc.add_note(self._interruption_note(names, finished))
            raise
        if failures:
            raise SchemaMismatchError(
                "repair: every other index was rebuilt, but not these unique ones:\n  "
                + "\n  ".join(str(e) for e in failures),
                differences=[d for e in failures for d in e.differences],
            )
        return RepairReport(tuple(rebuilt), records, removed, entries, tuple(skipped))

    async def _reload_after_interruption(self, names: Sequence[str]) -> None:
        """After a repair stopped part-way: make the in-memory schemas and index jobs of
        ``names`` what is committed. A cancelled commit may still complete after its
        caller is gone (``Engine.write``), so wait (shielded) until every appended batch is
        visible or the engine has failed, then read the schemas and jobs back."""
        engine = self._engine
        with anyio.CancelScope(shield=True):
            try:
                await engine.wait_visible(engine.last_seq)
            except QuantaError:
                pass  # the engine failed or closed: what is visible is what is committed
        if engine.closed:
            return
        for name in names:
            self._refresh_schema(name)
            stored = self.schemas.get(name)
            for idx in stored.indexes if stored is not None else ():
                for kind in ("build", "drop"):
                    data = self._store.get(job_key(name, kind, idx.name))
                    if data is not None:
                        self.index_jobs[(name, idx.name)] = builder.IndexJob.from_bytes(data)
                        break
                else:
                    self.index_jobs.pop((name, idx.name), None)

    def _unique_left_after_interruption(self, names: Sequence[str]) -> None:
        """After a repair stopped part-way and the committed schemas were read back: puts stay
        refused for the unique indexes that are still being rebuilt (not for one whose
        marking commit never happened)."""
        for name in names:
            stored = self.schemas.get(name)
            building = {i.name for i in stored.indexes if i.unique and i.state == BUILDING} if stored else set()
            left = tuple(i for i in self._unique_unfinished.get(name, ()) if i in building)
            if left:
                self._unique_unfinished[name] = left
            else:
                self._unique_unfinished.pop(name, None)

    def _interruption_note(self, names: Sequence[str], finished: set[str]) -> str:
        """What a repair of the entities ``names`` that stopped part-way left (``finished``:
        those it had repaired completely), and how to finish it: a note added to the
        exception that stopped it."""
        left: list[tuple[str, bool]] = []
        waiting: list[str] = []
        for name in names:
            stored = self.schemas.get(name)
            if name in finished or stored is None:
                continue
            building = [(f"{name}.{i.name}", i.unique) for i in stored.indexes if i.state == BUILDING]
            if building:
                left += building
            elif any(i.state != DROPPING for i in stored.indexes):
                waiting.append(name)
        lines = ["db.repair() was interrupted part-way."]
        if left:
            lines.append(
                f"{len(left)} indexes are left being rebuilt ({', '.join(n for n, _ in left)}): queries do not use "
                "them until they are complete (they answer by reading the records) and the records are untouched."
            )
            unique = [n for n, u in left if u]
            if unique:
                lines.append(
                    f"Until they are rebuilt, puts of records with the unique indexes {', '.join(unique)} are refused "
                    "(IntegrityError): a duplicate of a value whose entry is not rebuilt yet would go unnoticed."
                )
        else:
            lines.append("No index is left half-rebuilt.")
        if waiting:
            lines.append(f"Not reached yet (their indexes are as they were): {', '.join(waiting)}.")
        try:
            self._engine.check_writable()
        except QuantaError:
            lines.append(
                "The database stopped accepting writes: close it and open it again with the entity classes "
                "declared; the open resumes every index left being rebuilt (the unique ones before it returns, "
                "the others in the background: await db.indexes_ready()); then call db.repair() again to repair "
                "what it had not reached."
            )
        else:
            lines.append(
                "To finish: call db.repair() again (it rebuilds every index from the records), or reopen the "
                "database with the entity classes declared (the open resumes the indexes left being rebuilt)."
            )
        return " ".join(lines)

    async def _unbuildable(self, name: str, index: str, exc: SchemaMismatchError) -> SchemaMismatchError:
        """A unique index a repair cannot rebuild (its records hold a duplicate): delete its
        entries and remove it from the stored schema (as an open does when adding it fails),
        so no incomplete unique index is left. The next open declaring the class adds it
        again (and builds it once the values are unique)."""
        await self._delete_entries(name, index)
        async with self._lock:
            gone = self.schemas[name].with_index_state(index, None)
            await self._put_schema_locked(gone, [job_key(name, "build", index)], [None])
            self.index_jobs.pop((name, index), None)
        return SchemaMismatchError(
            f"{exc} -- the index was removed; once the values are unique, opening the database with the "
            "class builds it again",
            differences=exc.differences,
        )

    async def _drop(self, name: str, index: str) -> None:
        n = await builder.drop(self._store, name, index, self._report)
        async with self._lock:
            current = self.schemas.get(name)
            if current is not None and (idx := current.index(index)) is not None and idx.state == DROPPING:
                gone = current.with_index_state(index, None).with_history(
                    HistoryEntry(current.version, time.time(), "index_dropped", f"index {index!r}", n)
                )
                await self._put_schema_locked(gone, [job_key(name, "drop", index)], [None])
            else:
                await self._store.write([job_key(name, "drop", index)], [None])
            self.index_jobs.pop((name, index), None)
        if self._report is not None:
            self._report(SchemaProgress("drop_index", name, "done", n, n, index=index, finished=True))

    async def _resume_unique_builds(self, info: EntityInfo) -> None:
        stored = self.schemas.get(info.name)
        if stored is None:
            return
        for idx in stored.indexes:
            if idx.state == BUILDING and idx.unique:
                try:
                    await self._build(info, idx.name)
                except SchemaMismatchError:
                    await self._delete_entries(info.name, idx.name)
                    async with self._lock:
                        gone = self.schemas[info.name].with_index_state(idx.name, None)
                        await self._put_schema_locked(gone, [job_key(info.name, "build", idx.name)], [None])
                        self.index_jobs.pop((info.name, idx.name), None)
                    raise

    async def _put_schema(self, schema: StoredSchema) -> None:
        async with self._lock:
            await self._put_schema_locked(schema, [], [])

    async def _put_schema_locked(self, schema: StoredSchema, keys: list[bytes], values: list[bytes | None]) -> None:
        await self._store.write([schema_key(schema.name), *keys], [schema.to_bytes(), *values])
        self.schemas[schema.name] = schema
        self._refresh_hidden(schema.name)

    # ------------------------------------------------------------------ classes in use

    def _bind(self, info: EntityInfo) -> None:
        self._bound[info.name] = info
        self._refresh_hidden(info.name)

    def admit(self, info: EntityInfo) -> None:
        """Accept ``info``'s class for use through a collection, or raise
        ``SchemaMismatchError`` (see the module docstring). Synchronous; never writes."""
        name = info.name
        if self._bound.get(name) is info or not self.loaded:
            return
        stored = self.schemas.get(name)
        job = self.record_jobs.get(name)
        if stored is None and job is None:
            stored = self._refresh_schema(name)
            if stored is None:
                self._claim(info)  # no schema stored yet: the first write records it
                return
        problems: list[Any] = []
        if job is not None:
            problems.append(f"{name}: an interrupted {job.kind} to version {job.to_version} has not finished")
        if stored is not None:
            for d in differences(stored, schema_of(info)):
                if d.need != "catalog":
                    problems.append(d)
            for idx in stored.indexes:
                if idx.state == BUILDING and idx.unique and any(i.name == idx.name for i in info.indexes):
                    problems.append(f"{name}: the unique index {idx.name!r} is not built yet")
        if problems:
            hint = (
                f"declare it when opening the database: quanta.open(path, entities=[{info.cls.__qualname__}, ...]) "
                "applies the change or runs its migrations"
            )
            raise SchemaMismatchError(_message(problems, {name: hint}), differences=problems)
        self._bind(info)
        self._start_background()

    def _refresh_schema(self, name: str) -> StoredSchema | None:
        """The schema stored for ``name`` now (a commit of this database may have recorded it
        since the catalog was loaded: see :meth:`record_first_use`), kept in :attr:`schemas`."""
        data = self._store.get(schema_key(name))
        if data is None:
            return None
        stored = self.schemas[name] = StoredSchema.from_bytes(data)
        self._refresh_hidden(name)
        return stored

    def _claim(self, info: EntityInfo) -> None:
        """Admit a class whose entity has no stored schema: refused if records of it are
        stored anyway (written before schemas were recorded on first use: only a declared
        open can check and adopt them), or if another class of this database already uses the
        name with a different shape."""
        name = info.name
        lo, hi = entity_ranges(name)[0]
        engine = self._engine
        seq = engine.acquire_snapshot()
        try:
            found = engine.scan_chunk(lo, hi, seq, 1, False)[0]
        finally:
            engine.release_snapshot(seq)
        hint = f"declare it when opening the database: quanta.open(path, entities=[{info.cls.__qualname__}, ...])"
        if found:
            problem = f"{name}: records are stored but no schema for them (written by an older release)"
            raise SchemaMismatchError(
                _message([problem], {name: f"{hint} checks and adopts them"}), differences=[problem]
            )
        other = self._bound.get(name)
        if other is not None and other is not info:
            problems: list[Any] = [d for d in differences(schema_of(other), schema_of(info)) if d.need != "catalog"]
            if problems:
                problems.insert(0, f"{name}: another class ({other.cls.__qualname__}) already uses this entity name")
                raise SchemaMismatchError(_message(problems, {name: hint}), differences=problems)
        self._bound[name] = info

    def bound_info(self, name: str) -> EntityInfo | None:
        """The entity class in use for entity ``name`` (declared at open or admitted by a
        collection), or None: what an import decodes a file's records with."""
        return self._bound.get(name)

    def has_schema(self, name: str) -> bool:
        """Whether a schema of entity ``name`` is stored (committed)."""
        return name in self.schemas

    async def record_first_use(self, info: EntityInfo, kv: Any) -> None:
        """Called by the first write of an entity that has no stored schema, inside its
        transaction (``kv``: the transaction's key-value view): buffer the class's schema in
        the same batch, so records are never stored without one. If a commit recorded a
        schema meanwhile, check the class against it instead (``SchemaMismatchError``). The
        read makes two concurrent first writes conflict (one retries and finds the other's
        schema). :attr:`schemas` learns a schema only once it is committed."""
        name = info.name
        data = await kv._get(schema_key(name))
        if data is not None:
            self.schemas[name] = StoredSchema.from_bytes(data)
            self._refresh_hidden(name)
            if self._bound.get(name) is info:
                del self._bound[name]
            self.admit(info)
            return
        declared = schema_of(info)
        entry = declared.with_history(HistoryEntry(declared.version, time.time(), "created", _fields_text(declared), 0))
        kv._put_generated([schema_key(name)], [entry.to_bytes()])

    async def check_records(self, log: ProblemLog) -> int:
        """Read every stored record of every entity with a stored schema or a class in use,
        and decode it (``Database.verify(deep=True)``): with the class where one is in use,
        else as far as the stored schema tells (a msgpack array of the version and one value
        per field). Returns how many records were read; each record that cannot be read goes
        to ``log``, naming its key."""
        n = 0
        for name in sorted(set(self.schemas) | set(self._bound)):
            info, stored = self._bound.get(name), self.schemas.get(name)
            lo, hi = entity_ranges(name)[0]
            cur: bytes | None = lo
            while cur is not None:
                keys, values, cur = await self._store.read_chunk(cur, hi)
                n += len(keys)
                for key, data in zip(keys, values, strict=True):
                    problem = _record_problem(info, stored, data)
                    if problem is not None:
                        log.add("unreadable_record", name, key, str(bad_record_error(name, key, problem)))
        return n

    async def check_entries(self, log: ProblemLog) -> tuple[int, int, tuple[str, ...]]:
        """Check the index and unique entries and the links of every entity whose class is
        in use against the records (``Database.verify(deep=True)``; ``verify.py``): only
        complete indexes. Returns ``(entries checked, link values checked, skipped)``:
        ``skipped`` says which entities with stored indexes were not checked (no class in
        use)."""
        infos = [self.planning_info(self._bound[name]) for name in sorted(self._bound)]
        skipped = tuple(
            f"{name}: its index entries and links were not checked: no entity class is in use (declare it at "
            "open; with the CLI, pass --module)"
            for name, stored in sorted(self.schemas.items())
            if name not in self._bound and any(i.state != DROPPING for i in stored.indexes)
        )
        return (*await check_entries(self._engine, infos, log), skipped)

    async def check_keyspace(self, log: ProblemLog) -> int:
        """Check that the catalog accounts for every group of keys in the entity key space
        (``verify.py``); returns how many groups there are."""
        return await check_keyspace(self._engine, log)

    def planning_info(self, info: EntityInfo) -> EntityInfo:
        """``info`` without the indexes queries must not use yet (not ``ready``)."""
        hidden = self._hidden.get(info.name)
        if not hidden:
            return info
        cached = self._planning.get(info.name)
        if cached is not None and cached[0] is info:
            return cached[1]
        planning = dataclasses.replace(info, indexes=tuple(i for i in info.indexes if i.name not in hidden))
        self._planning[info.name] = (info, planning)
        return planning

    def _refresh_hidden(self, name: str) -> None:
        self._planning.pop(name, None)
        info = self._bound.get(name)
        stored = self.schemas.get(name)
        if info is None or stored is None:
            self._hidden.pop(name, None)
            return
        hidden = set()
        for idx in info.indexes:
            s = stored.index(idx.name)
            if (
                s is None
                or s.state != READY
                or not s.same_definition(StoredIndex(idx.name, idx.fields, idx.unique, idx.multi))
            ):
                hidden.add(idx.name)
        self._hidden[name] = frozenset(hidden)

    def hidden(self, name: str) -> frozenset[str]:
        return self._hidden.get(name, frozenset())

    # ------------------------------------------------------------------ background jobs

    def _start_background(self) -> None:
        """Start the index jobs that can run now: drops always; builds of the classes in use."""
        if self._engine.read_only or self._stopping or self._engine.closed:
            return
        for (name, index), job in list(self.index_jobs.items()):
            key = (name, job.kind, index)
            if key in self._running:
                continue
            if job.kind == "drop":
                self._spawn(key, functools.partial(self._drop, name, index))
            elif name in self._bound and name not in self._repairing:
                stored = self.schemas.get(name)
                idx = stored.index(index) if stored is not None else None
                info = self._bound[name]
                if (
                    idx is not None
                    and idx.state == BUILDING
                    and not idx.unique
                    and any(i.name == index for i in info.indexes)
                ):
                    self._spawn(key, functools.partial(self._build, info, index))

    def _spawn(self, key: tuple[str, str, str], fn: Callable[[], Awaitable[object]]) -> None:
        self._running.add(key)
        self._idle.clear()
        self._queue.append((key, fn))
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"quanta-schema:{self._engine.path}"
            )
        self._wake.set()

    async def _supervise(self) -> None:
        # anyio runs each job's coroutine inside a wrapper; when asyncio.run cancels everything
        # at exit (a program that never closed the database) a wrapper cancelled before its
        # first step never starts the job's coroutine, which Python would report as "never
        # awaited". Such coroutines are closed here.
        jobs: list[Coroutine[Any, Any, None]] = []
        try:
            async with anyio.create_task_group() as tg:
                while not self._stopping:
                    while self._queue:
                        key, fn = self._queue.pop(0)
                        job = self._guard(key, fn)
                        jobs.append(job)
                        tg.start_soon(_given, job)
                    jobs = [j for j in jobs if inspect.getcoroutinestate(j) != inspect.CORO_CLOSED]
                    self._wake.clear()
                    await self._wake.wait()
                tg.cancel_scope.cancel()
        finally:
            for job in jobs:
                if inspect.getcoroutinestate(job) == inspect.CORO_CREATED:
                    job.close()

    async def _guard(self, key: tuple[str, str, str], fn: Callable[[], Awaitable[object]]) -> None:
        try:
            await fn()
        except Exception as exc:
            if self._failure is None:
                self._failure = exc
            if not self._engine.closed:
                self._engine._fail(exc, background=True)
        finally:
            self._running.discard(key)
            if not self._running:
                self._idle.set()

    async def indexes_ready(self) -> None:
        """Wait until no index job is running; raise the failure of one that failed."""
        while self._running:
            await self._idle.wait()
        if self._failure is not None:
            raise self._failure

    async def aclose(self) -> None:
        """Stop the background jobs (each resumes on the next open) and wait for them."""
        self._stopping = True
        self._queue.clear()
        self._wake.set()
        if self._supervisor is not None:
            await asyncio.shield(self._supervisor)
        self._running.clear()
        self._idle.set()


# ---------------------------------------------------------------------------------- helpers


def _given(job: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    return job


def check_entities(entities: Iterable[type]) -> list[type]:
    """The ``entities=`` argument of ``quanta.open``, checked (a list of entity classes,
    no two stored under one name)."""
    return [info.cls for info in _declared(entities)]


def _declared(entities: Iterable[type]) -> list[EntityInfo]:
    if isinstance(entities, (str, bytes, type)) or not isinstance(entities, Iterable):
        raise InvalidTypeError(f"entities must be a list of entity classes, got {entities!r}")
    out: dict[str, EntityInfo] = {}
    for cls in entities:
        info = getattr(cls, "__quanta_entity__", None)
        if not isinstance(info, EntityInfo) or info.cls is not cls:
            raise InvalidTypeError(f"entities: {cls!r} is not an entity class (declare it with @quanta.entity)")
        other = out.get(info.name)
        if other is not None and other.cls is not cls:
            raise InvalidTypeError(
                f"entities: {other.cls.__qualname__} and {cls.__qualname__} are both stored as {info.name!r}"
            )
        out[info.name] = info
    return list(out.values())


def _index_info(info: EntityInfo, name: str) -> IndexInfo:
    for idx in info.indexes:
        if idx.name == name:
            return idx
    raise KeyError(name)  # pragma: no cover - callers check


def _record_problem(info: EntityInfo | None, stored: StoredSchema | None, data: bytes) -> str | None:
    """Why the stored record ``data`` cannot be read (None: it can)."""
    if info is not None:
        try:
            info.decode(data)
        except CorruptionError as exc:
            return exc._message
        except QuantaError as exc:  # (a record of another version: SchemaError)
            return str(exc)
        return None
    try:
        value = decode_value(data)
    except CorruptionError as exc:
        return exc._message
    if stored is not None and (type(value) is not list or len(value) != 1 + len(stored.fields)):
        return f"not a record of {len(stored.fields)} fields"
    return None


def _fields_text(schema: StoredSchema) -> str:
    return f"{len(schema.fields)} fields, {len(schema.indexes)} indexes"


def _mismatch(plans: Sequence[_Plan]) -> SchemaMismatchError:
    problems: list[Any] = []
    hints: dict[str, str] = {}
    for p in plans:
        problems += list(p.problems)
        if p.hint:
            hints[p.info.name] = p.hint
    return SchemaMismatchError(_message(problems, hints), differences=problems)


def _message(problems: Sequence[Any], hints: dict[str, str]) -> str:
    lines = ["the declared entity classes differ from the stored schemas; the data is untouched:"]
    lines += [f"  {p}" for p in problems]
    lines += [f"  -> {name}: {hint}" for name, hint in hints.items()]
    return "\n".join(lines)
