"""Building an index over the records an entity already has, and deleting a dropped one.

A build walks the records in key order, a chunk at a time; each chunk is one transaction
that reads the chunk's records (point reads, so the commit conflicts if a concurrent writer
changed or deleted one of them meanwhile; the chunk is then read and written again), writes
their entries of the new index and the job's progress (``cursor``: the last record key
done), so a crash resumes at the next chunk. Concurrent writers maintain the new index
themselves from the moment the class declaring it is in use (the collection writes the
entries of every declared index), so a record written behind the cursor is covered by its
writer, and one ahead of it by the build. Until the build is complete the planner does not
use the index (``catalog.py`` hides it).

A unique index is a constraint, not only an accelerator: writers can enforce it only against
complete entries, so it is built before the database is handed out (at open), checking for
duplicates as it goes; a duplicate stops the build, its entries are deleted, and opening
fails with ``SchemaMismatchError`` naming the value and the records.

A drop deletes the index's key range in chunks; it needs no cursor (what is left is what is
still to delete) and no class.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import anyio

from .._codec import decode_tuple, prefix_end
from .._entity import entity_keys, index_entries
from .._schema import EntityInfo, IndexInfo, bad_record_error, index_prefix, unique_prefix
from .._txn import Transaction, Transactions
from ..errors import ConflictError, CorruptionError, SchemaMismatchError
from .format import entity_ranges, job_key, pack, unpack
from .progress import SchemaProgress
from .store import CHUNK, Store

__all__ = ["IndexJob", "build", "drop", "index_ranges"]


@dataclasses.dataclass(slots=True)
class IndexJob:
    """The state of an unfinished index job (``job_key(entity, kind, index)``)."""

    kind: str  # "build" | "drop" | "rebuild" (a repair's: delete the entries, then build; repair.py)
    cursor: bytes | None = None
    done: int = 0
    total: int = 0

    def to_bytes(self) -> bytes:
        return pack({"kind": self.kind, "cursor": self.cursor, "done": self.done, "total": self.total})

    @classmethod
    def from_bytes(cls, data: bytes) -> IndexJob:
        m = unpack(data)
        return cls(m["kind"], m["cursor"], m["done"], m["total"])


def index_ranges(entity: str, index: str) -> list[tuple[bytes, bytes | None]]:
    out = []
    for prefix in (index_prefix(entity, index), unique_prefix(entity, index)):
        out.append((prefix, prefix_end(prefix)))
    return out


async def build(
    store: Store,
    transactions: Transactions,
    info: EntityInfo,
    index: IndexInfo,
    job: IndexJob,
    report: Callable[[SchemaProgress], None] | None,
) -> None:
    """Write ``index``'s entries for every record after ``job.cursor`` (see the module
    docstring). Raises ``SchemaMismatchError`` for a duplicate in a unique index (the caller
    deletes the partial entries)."""
    entity = info.name
    lo, hi = entity_ranges(entity)[0]
    if job.cursor is not None:
        lo = job.cursor + b"\x00"
    if job.total == 0:
        job.total = await store.count(lo, hi) + job.done
    single = dataclasses.replace(info, indexes=(index,))
    keys = entity_keys(info)
    decode, pk_name = info.decode, info.primary_key
    jkey = job_key(entity, "build", index.name)
    cur: bytes | None = lo
    while cur is not None:
        rkeys, _, nxt = await store.read_chunk(cur, hi, CHUNK)
        if not rkeys:
            break
        attempt = 0
        while True:
            tx = Transaction(store.engine, transactions)
            try:
                values = await tx.kv._get_many(rkeys)
                entries: dict[bytes, bytes] = {}
                owners: dict[bytes, Any] = {}
                for rkey, value in zip(rkeys, values, strict=True):
                    if value is None:
                        continue  # deleted since the chunk was listed
                    try:
                        obj = decode(value)
                    except CorruptionError as exc:  # name the record (and how to remove it)
                        raise bad_record_error(entity, rkey, exc._message) from exc
                    pk = getattr(obj, pk_name)
                    for k, v in index_entries(single, keys, obj, pk).items():
                        if index.unique:
                            other = owners.get(k)
                            if other is not None and other != pk:
                                _duplicate(info, index, k, other, pk)
                            owners[k] = pk
                        entries[k] = v
                if index.unique and entries:
                    for k, existing in zip(entries, await tx.kv._get_many(list(entries)), strict=True):
                        if existing is not None and existing != entries[k]:
                            _duplicate(info, index, k, decode_tuple(existing)[0], owners[k])
                progress = IndexJob(job.kind, rkeys[-1], job.done + len(rkeys), job.total)
                tx.kv._put_generated([*entries, jkey], [*entries.values(), progress.to_bytes()])
                await tx.commit()
                job.cursor, job.done = progress.cursor, progress.done
                break
            except ConflictError:
                attempt += 1
                await anyio.sleep(min(0.001 * 2**attempt, 0.05) * (0.5 + random.random() / 2))
            finally:
                await tx.rollback()  # a no-op after the commit
        cur = nxt
        if report is not None:
            report(SchemaProgress("build_index", entity, "build", job.done, job.total, index=index.name))


def _duplicate(info: EntityInfo, index: IndexInfo, key: bytes, a: Any, b: Any) -> None:
    values = decode_tuple(key[3:])[2:]
    shown = values[0] if len(values) == 1 else tuple(values)
    raise SchemaMismatchError(
        f"{info.name}: cannot add the unique index {index.name!r} on ({', '.join(index.fields)}): records "
        f"{a!r} and {b!r} both have {shown!r}; the data is untouched (make the values unique in a migration, "
        "or drop unique=True)",
        differences=[f"{info.name}.{'/'.join(index.fields)}: duplicate value {shown!r} (records {a!r}, {b!r})"],
    )


async def drop(store: Store, entity: str, index: str, report: Callable[[SchemaProgress], None] | None) -> int:
    """Delete every entry of ``index`` (both kinds of entry range: the stored definition
    may not say which). Returns how many were deleted."""
    n = 0
    for lo, hi in index_ranges(entity, index):

        def chunk(done: int, base: int = n) -> None:
            if report is not None:
                report(SchemaProgress("drop_index", entity, "drop", base + done, 0, index=index))

        n += await store.delete_range(lo, hi, chunk)
    return n
