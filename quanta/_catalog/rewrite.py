"""Rewriting every record of one entity in a new shape, crash-safely: migrations, automatic
rewrites (a new field with a default, a removed empty field, a version bump) and adoption of
records stored before their schema was.

Why staging. A migration may fail half-way for reasons only the data reveals (a record the
new class rejects, two records that now share a unique value or a primary key, a step that
raises), and a crash may stop it anywhere. Rewriting in place, in batches, would leave a mix
of old and new records for both; one batch holding the whole collection would need the whole
collection in memory. So the new records are first written *beside* the old ones, checked,
and only then swapped in:

1. ``stage``: read the old records in key order, a chunk at a time; convert each (steps, then
   the class: defaults, type checks, constraints, validators); write the results under
   ``NS "c" (entity, "~stage", pk)`` and a claim per unique value under ``"~claim"`` (a
   duplicate key or unique value is found here). Each chunk is one batch with the job's
   progress (``cursor``: the last old record converted). The old records are untouched: a
   failure deletes the staged records and the job, and raises; the data is as it was.
2. ``clear``: the batch ending the stage sets ``phase = "clear"``; then every index entry of
   the entity, and every old record no staged record will replace, is deleted, in chunks
   (idempotent).
3. ``move``: each chunk moves staged records into place, with their index entries, and
   deletes them from the stage (``cursor``: the last staged key moved).
4. The last batch writes the new schema (with a history entry) and deletes the job.

Crash recovery (the job key says where it stopped; ``catalog.py`` calls :func:`run` again
before the database is handed out, so a mix of shapes is never visible through the API):
in ``stage`` a chain of per-record steps resumes after ``cursor``; a chain with a
whole-collection step restarts the stage (its output is not a function of one record); in
``clear``/``move`` the swap continues where it stopped. Opened with a class other than the
target while still in ``stage``, the job is abandoned (the old records never changed);
past ``stage`` only the target class can finish it.

The cost, and the departure from a textbook in-place migration: each record is written
twice (staged, then moved), about three times the writes of a bulk load counting the stage
deletions and claims; memory stays at one chunk. Every batch goes through the normal commit
path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .._codec import decode_tuple, encode_key, prefix_end
from .._entity import entity_keys, index_entries, new_index_entries
from .._schema import NS, UNIQUE, EntityInfo, IndexInfo
from ..errors import IntegrityError, InvalidTypeError, UniqueViolationError
from .format import (
    HistoryEntry,
    StoredSchema,
    claim_prefix,
    entity_ranges,
    job_key,
    pack,
    schema_key,
    stage_prefix,
    unpack,
)
from .migrations import RecordBuilder, RecordReader, Step
from .progress import SchemaProgress
from .store import CHUNK, Store

__all__ = ["RecordJob", "abandon", "run"]


@dataclasses.dataclass(slots=True)
class RecordJob:
    """The state of an unfinished record job (stored at ``job_key(entity, "migrate")``).

    ``kind``: ``migrate``, ``rewrite`` or ``adopt``; ``target``: the new schema's map (the
    shape the staged records have); ``steps``: the migration steps' names; ``resumable``:
    the stage can resume after ``cursor`` (no whole-collection step); ``done``: old records
    converted; ``staged``: new records staged; ``moved``: staged records moved in."""

    kind: str
    from_version: int | None
    to_version: int
    target: dict[str, Any]
    steps: tuple[str, ...] = ()
    detail: str = ""
    resumable: bool = True
    phase: str = "stage"
    cursor: bytes | None = None
    done: int = 0
    staged: int = 0
    moved: int = 0
    total: int = 0

    def to_bytes(self) -> bytes:
        return pack(
            {
                "kind": self.kind,
                "from": self.from_version,
                "to": self.to_version,
                "target": self.target,
                "steps": list(self.steps),
                "detail": self.detail,
                "resumable": self.resumable,
                "phase": self.phase,
                "cursor": self.cursor,
                "done": self.done,
                "staged": self.staged,
                "moved": self.moved,
                "total": self.total,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RecordJob:
        m = unpack(data)
        return cls(
            kind=m["kind"],
            from_version=m["from"],
            to_version=m["to"],
            target=m["target"],
            steps=tuple(m["steps"]),
            detail=m["detail"],
            resumable=m["resumable"],
            phase=m["phase"],
            cursor=m["cursor"],
            done=m["done"],
            staged=m["staged"],
            moved=m["moved"],
            total=m["total"],
        )

    @property
    def target_schema(self) -> StoredSchema:
        return StoredSchema.from_map(self.target)


async def abandon(store: Store, entity: str) -> None:
    """Drop an unfinished job that is still in its ``stage`` phase: its staged records and
    claims, then the job. The entity's records were never touched."""
    for prefix in (stage_prefix(entity), claim_prefix(entity)):
        await store.delete_range(prefix, prefix_end(prefix))
    await store.write([job_key(entity, "migrate")], [None])


async def run(
    store: Store,
    info: EntityInfo,
    job: RecordJob,
    *,
    source: StoredSchema | None,
    chain: Sequence[Step],
    finish: Callable[[RecordJob], StoredSchema],
    report: Callable[[SchemaProgress], None] | None,
    fresh: bool,
) -> StoredSchema:
    """Run (or resume) ``job`` for entity class ``info`` to the end; return the new schema.

    ``source``: the stored schema the old records have (None for ``adopt``: they are read
    with the class's own decoder). ``chain``: the migration steps (empty for a rewrite).
    ``finish(job)``: the schema to store at the end (the caller adds the history entry).
    ``fresh``: the job is new (it is written first). Raises what a step or the checks raise,
    after abandoning the job (the data is untouched then).
    """
    return await _Run(store, info, job, source, chain, finish, report).go(fresh)


class _Run:
    def __init__(
        self,
        store: Store,
        info: EntityInfo,
        job: RecordJob,
        source: StoredSchema | None,
        chain: Sequence[Step],
        finish: Callable[[RecordJob], StoredSchema],
        report: Callable[[SchemaProgress], None] | None,
    ) -> None:
        self.store = store
        self.info = info
        self.job = job
        self.source = source
        self.chain = list(chain)
        self.finish = finish
        self._report = report
        self.entity = info.name
        self.job_key = job_key(info.name, "migrate")

    def report(self, phase: str, done: int, *, finished: bool = False) -> None:
        if self._report is not None:
            job = self.job
            self._report(
                SchemaProgress(
                    job.kind,  # type: ignore[arg-type]
                    self.entity,
                    phase,
                    done,
                    job.total,
                    from_version=job.from_version,
                    to_version=job.to_version,
                    finished=finished,
                )
            )

    async def go(self, fresh: bool) -> StoredSchema:
        job = self.job
        lo, hi = entity_ranges(self.entity)[0]
        if fresh:
            # Leftovers of a job abandoned without its cleanup would mix with this one.
            for prefix in (stage_prefix(self.entity), claim_prefix(self.entity)):
                await self.store.delete_range(prefix, prefix_end(prefix))
            job.total = await self.store.count(lo, hi)
            await self.store.write([self.job_key], [job.to_bytes()])
        if job.phase == "stage":
            try:
                await self._stage()
            except Exception:
                # The old records are untouched: drop what was staged. (Cancelled or crashed
                # instead, the job stays and the next open resumes or abandons it.)
                await _quietly(abandon(self.store, self.entity))
                raise
        if job.phase == "clear":
            await self._clear()
        await self._move()
        for prefix in (claim_prefix(self.entity),):
            await self.store.delete_range(prefix, prefix_end(prefix))
        schema = self.finish(job)
        await self.store.write([schema_key(self.entity), self.job_key], [schema.to_bytes(), None])
        self.report("done", job.moved, finished=True)
        return schema

    # ------------------------------------------------------------------ stage

    async def _stage(self) -> None:
        job = self.job
        lo, hi = entity_ranges(self.entity)[0]
        if job.cursor is not None and not job.resumable:
            for prefix in (stage_prefix(self.entity), claim_prefix(self.entity)):
                await self.store.delete_range(prefix, prefix_end(prefix))
            job.cursor, job.done, job.staged = None, 0, 0
        if job.cursor is not None:
            lo = job.cursor + b"\x00"
        read: Callable[[bytes], Any] = RecordReader(self.source) if self.source is not None else self.info.decode
        build = RecordBuilder(self.info, drop_unknown=job.kind == "rewrite")
        where: list[bytes | None] = [None]  # the old record being converted (for cursors, messages)
        store = self.store

        async def records() -> AsyncIterator[Any]:
            cur: bytes | None = lo
            while cur is not None:
                keys, values, cur = await store.read_chunk(cur, hi, CHUNK)
                for k, v in zip(keys, values, strict=True):
                    where[0] = k
                    job.done += 1
                    yield read(v)

        pipeline: AsyncIterator[Any] = records()
        for step in self.chain:
            pipeline = step.fn(pipeline) if step.whole else _per_record(step, pipeline)
        batch: list[Any] = []
        try:
            async for out in pipeline:
                batch.append(build(out))
                if len(batch) >= CHUNK:
                    await self._stage_batch(batch, where[0], last=False)
                    batch = []
        except Exception as exc:
            exc.add_note(self._where(where[0]))
            raise
        await self._stage_batch(batch, where[0], last=True)

    def _where(self, key: bytes | None) -> str:
        what = f"{self.job.kind} of {self.entity}"
        if self.job.from_version is not None:
            what += f" from version {self.job.from_version} to {self.job.to_version}"
        if key is None:
            return f"during the {what}"
        try:
            pk = decode_tuple(key[3:])[1]
        except Exception:
            pk = key
        return f"during the {what}, at the stored record with primary key {pk!r}; nothing was changed"

    async def _stage_batch(self, objs: list[Any], cursor: bytes | None, *, last: bool) -> None:
        info, job, entity = self.info, self.job, self.entity
        pk_name = info.primary_key
        staged: dict[bytes, bytes] = {}
        claims: dict[bytes, tuple[bytes, Any]] = {}  # claim -> (encoded pk, pk)
        uniques = [idx for idx in info.indexes if idx.unique]
        # A claim is its unique entry's key with the catalog's prefix: the unique entries come
        # from the collection's own code (which knows how links and -0.0 are indexed).
        unique_info = dataclasses.replace(info, indexes=tuple(uniques))
        keys = entity_keys(info)
        head = len(NS + UNIQUE + encode_key(entity))
        claims_of = claim_prefix(entity)
        prefix, encode = stage_prefix(entity), info.encode
        for obj in objs:
            pk = getattr(obj, pk_name)
            if info.auto and not pk:
                raise InvalidTypeError(
                    f"{entity}: a migrated record must have its primary key {pk_name!r} set (got {pk!r})"
                )
            epk = encode_key(pk)
            key = prefix + epk
            if key in staged:
                raise IntegrityError(f"{entity}: two migrated records have the primary key {pk!r}; nothing was changed")
            staged[key] = encode(obj)
            if uniques:
                for uk in index_entries(unique_info, keys, obj, pk):
                    ck = claims_of + uk[head:]
                    other = claims.get(ck)
                    if other is not None and other[0] != epk:
                        _claim_violation(entity, uniques, ck, other[1], pk)
                    claims[ck] = (epk, pk)
        if staged:
            for key, existing in zip(staged, self.store.get_many(list(staged)), strict=True):
                if existing is not None:
                    pk = decode_tuple(key[3:])[2]
                    raise IntegrityError(
                        f"{entity}: two migrated records have the primary key {pk!r}; nothing was changed"
                    )
        if claims:
            for ck, existing in zip(claims, self.store.get_many(list(claims)), strict=True):
                epk, pk = claims[ck]
                if existing is not None and existing != epk:
                    _claim_violation(entity, uniques, ck, decode_tuple(existing)[0], pk)
        job.staged += len(staged)
        job.cursor = cursor
        if last:
            job.phase = "clear"
        out_keys = [*staged, *claims, self.job_key]
        out_values: list[bytes | None] = [*staged.values(), *[c[0] for c in claims.values()], job.to_bytes()]
        await self.store.write(out_keys, out_values)
        self.report("stage", job.done)

    # ------------------------------------------------------------------ swap

    async def _clear(self) -> None:
        job = self.job
        (lo, hi), *entries = entity_ranges(self.entity)
        # An old record whose key a staged record will take is overwritten by the move: only
        # the others are deleted here (a migration that keeps the keys deletes no record).
        n = len(lo)
        staged = stage_prefix(self.entity)
        cur: bytes | None = lo
        while cur is not None:
            keys, _, cur = await self.store.read_chunk(cur, hi, 8192)
            present = self.store.get_many([staged + k[n:] for k in keys])
            gone = [k for k, p in zip(keys, present, strict=True) if p is None]
            await self.store.write(gone, [None] * len(gone))
        for elo, ehi in entries:
            await self.store.delete_range(elo, ehi)
        job.phase, job.cursor = "move", None
        await self.store.write([self.job_key], [job.to_bytes()])
        self.report("swap", 0)

    async def _move(self) -> None:
        info, job = self.info, self.job
        keys = entity_keys(info)
        decode, pk_name = info.decode, info.primary_key
        prefix = stage_prefix(self.entity)
        n = len(prefix)
        lo: bytes | None = prefix if job.cursor is None else job.cursor + b"\x00"
        hi = prefix_end(prefix)
        nonunique = tuple(i for i in info.indexes if not i.unique)
        uniques = tuple(i for i in info.indexes if i.unique)
        plain = dataclasses.replace(info, indexes=nonunique) if nonunique else None
        unique = dataclasses.replace(info, indexes=uniques) if uniques else None
        while lo is not None:
            staged, data, lo = await self.store.read_chunk(lo, hi, CHUNK)
            if not staged:
                break
            objs = list(map(decode, data))
            epks = [sk[n:] for sk in staged]
            record_prefix = keys.record_prefix
            out_keys: list[bytes] = [record_prefix + e for e in epks]
            out_values: list[bytes | None] = list(data)
            if plain is not None:  # the non-unique entries, a column at a time
                entry_keys, entry_values = new_index_entries(plain, keys, objs, epks)
                out_keys += entry_keys
                out_values += entry_values
            if unique is not None:
                for obj in objs:
                    entries = index_entries(unique, keys, obj, getattr(obj, pk_name))
                    out_keys += entries
                    out_values += entries.values()
            out_keys += staged
            out_values += [None] * len(staged)
            job.moved += len(staged)
            job.cursor = staged[-1]
            out_keys.append(self.job_key)
            out_values.append(job.to_bytes())
            await self.store.write(out_keys, out_values)
            self.report("swap", job.moved)


async def _per_record(step: Step, records: AsyncIterator[Any]) -> AsyncIterator[Any]:
    fn = step.fn
    async for record in records:
        out = await fn(record)
        if out is not None:
            yield out


def _claim_violation(entity: str, uniques: Sequence[IndexInfo], claim: bytes, a: Any, b: Any) -> None:
    _, _, index, *values = decode_tuple(claim[3:])
    idx = next(i for i in uniques if i.name == index)
    shown = values[0] if len(values) == 1 else tuple(values)
    raise UniqueViolationError(
        f"{entity}.{'/'.join(idx.fields)} must be unique: migrated records {a!r} and {b!r} both have {shown!r}; "
        "nothing was changed",
        entity=entity,
        index=idx.name,
        value=shown,
    )


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        pass  # the job stays; the next open abandons or resumes it


def history_entry(job: RecordJob, detail: str) -> HistoryEntry:
    event = {"migrate": "migrated", "rewrite": "rewritten", "adopt": "adopted"}[job.kind]
    return HistoryEntry(job.to_version, time.time(), event, detail, job.moved)
