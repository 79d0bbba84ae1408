"""Merging sorted runs into new tables: the work of flush and compaction.

Everything here is synchronous and runs wherever the caller puts it: in a worker process for
flushes and compactions on real files (CPU-bound Python would otherwise hold the GIL against
the event loop; see ``worker.py``), or on the event loop in small slices
(:func:`write_tables` is a generator that yields between slices) for the in-memory file
system, which a worker process cannot see, and for ``compaction_executor="loop"``.

Rules for what survives a merge (``snapshot_seqs`` are the live snapshots, ascending):

* the newest version of every key survives;
* an older version survives only if some snapshot reads it (``visible_versions``);
* with ``drop_tombstones`` (no deeper level holds the key range), tombstones at the old end
  of a key's surviving versions are dropped: below them there is nothing left to hide.

Output tables are cut at ``target_file_bytes``, and only between two keys, never between two
versions of one key, so tables of one level never overlap.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from . import filenames
from .cache import BlockCache
from .manifest import FileMeta
from .memtable import Memtable, visible_versions
from .sstable import TableBuilder, TableReader
from .vfs import FileSystem, OSFileSystem, WritableFile
from .wal import replay_wal

__all__ = [
    "TableSpec",
    "merge_entries",
    "run_to_end",
    "run_compaction_in_worker",
    "run_flush_in_worker",
    "survivors",
    "write_tables",
]

Entry = tuple[bytes, int, bytes | None]


@dataclass(frozen=True)
class TableSpec:
    """How to write output tables (picklable: it crosses into the worker process)."""

    dirpath: str
    block_size: int
    bits_per_key: int
    target_file_bytes: int


def merge_entries(runs: list[Iterator[Entry]]) -> Iterator[Entry]:
    """Merge sorted runs (key ascending, seq descending) into one such run."""
    if len(runs) == 1:
        return runs[0]
    return heapq.merge(*runs, key=_order)


def _order(entry: Entry) -> tuple[bytes, int]:
    return entry[0], -entry[1]


def survivors(entries: Iterable[Entry], snapshot_seqs: list[int], drop_tombstones: bool) -> Iterator[Entry]:
    """Apply the survival rules of the module docstring to a merged run."""
    current: bytes | None = None
    versions: list[tuple[int, bytes | None]] = []
    for key, seq, value in entries:
        if key != current:
            if current is not None:
                yield from _emit(current, versions, snapshot_seqs, drop_tombstones)
            current, versions = key, [(seq, value)]
        else:
            versions.append((seq, value))
    if current is not None:
        yield from _emit(current, versions, snapshot_seqs, drop_tombstones)


def _emit(
    key: bytes, versions: list[tuple[int, bytes | None]], snapshot_seqs: list[int], drop_tombstones: bool
) -> Iterator[Entry]:
    kept = versions if len(versions) == 1 else visible_versions(versions, snapshot_seqs)
    if drop_tombstones:
        while kept and kept[-1][1] is None:
            kept = kept[:-1]
    for seq, value in kept:
        yield key, seq, value


def write_tables(
    fs: FileSystem,
    spec: TableSpec,
    entries: Iterable[Entry],
    new_number: Callable[[], int],
    *,
    slice_entries: int = 2048,
    unsynced: list[WritableFile] | None = None,
) -> Iterator[list[FileMeta]]:
    """Write ``entries`` into tables; a generator that yields ``[]`` every ``slice_entries``
    entries (so an async driver can let the event loop run) and finally the list of
    :class:`FileMeta` of the finished tables. Tables are fsynced and closed here, unless
    ``unsynced`` is given: then the open files are appended to it for the caller to sync
    and close off the event loop. The caller syncs the directory and records the tables in
    the manifest.
    """
    metas: list[FileMeta] = []
    builder: TableBuilder | None = None
    file = None
    number = 0
    last_key: bytes | None = None
    count = 0
    try:
        for key, seq, value in entries:
            if builder is not None and key != last_key and builder.estimated_size >= spec.target_file_bytes:
                metas.append(_finish(builder, file, number, unsynced))
                builder = None
            if builder is None:
                number = new_number()
                file = fs.create(os.path.join(spec.dirpath, filenames.table_name(number)))
                builder = TableBuilder(file, number, block_size=spec.block_size, bits_per_key=spec.bits_per_key)
            builder.add(key, seq, value)
            last_key = key
            count += 1
            if count % slice_entries == 0:
                yield []
        if builder is not None:
            metas.append(_finish(builder, file, number, unsynced))
            builder = None
    finally:
        if builder is not None and file is not None:
            file.close()  # abandoned: the half-written table is an orphan, removed on open
    yield metas


def run_to_end(steps: Iterator[list[FileMeta]]) -> list[FileMeta]:
    """Drive a :func:`write_tables` generator to the end in one go; return its tables."""
    return deque(steps, maxlen=1)[0]


def _finish(
    builder: TableBuilder, file: WritableFile | None, number: int, unsynced: list[WritableFile] | None
) -> FileMeta:
    props = builder.finish()
    assert file is not None
    if unsynced is None:
        file.sync()
        file.close()
    else:
        unsynced.append(file)
    return FileMeta(
        number=number,
        size=props.file_size,
        smallest=props.smallest,
        largest=props.largest,
        min_seq=props.min_seq,
        max_seq=props.max_seq,
        entries=props.entries,
    )


def compaction_runs(
    fs: FileSystem, dirpath: str, inputs: Iterable[FileMeta], cache: BlockCache | None
) -> list[Iterator[Entry]]:
    runs = []
    for meta in inputs:
        reader = TableReader.open(fs, os.path.join(dirpath, filenames.table_name(meta.number)), meta.number, cache)
        runs.append(reader.iter_entries())
    return runs


def run_compaction_in_worker(
    spec: TableSpec,
    inputs: list[FileMeta],
    numbers: list[int],
    snapshot_seqs: list[int],
    drop_tombstones: bool,
) -> list[FileMeta]:
    """Entry point in the worker process: merge ``inputs`` (newest run first) into new tables
    numbered from ``numbers`` (reserved by the parent; unused ones are simply skipped)."""
    fs = OSFileSystem()
    pool = iter(numbers)
    runs = compaction_runs(fs, spec.dirpath, inputs, None)
    merged = survivors(merge_entries(runs), snapshot_seqs, drop_tombstones)
    return run_to_end(write_tables(fs, spec, merged, lambda: next(pool), slice_entries=1 << 30))


def run_flush_in_worker(
    spec: TableSpec, wal_path: str, wal_number: int, number: int, snapshot_seqs: list[int]
) -> list[FileMeta]:
    """Entry point in the worker process for a flush: rebuild the immutable memtable from its
    WAL segment (complete: the flusher syncs and closes a retired segment before flushing
    it) and write it as one level-0 table. Nothing large crosses the process boundary:
    the parent sends a path, the worker returns the table's metadata."""
    fs = OSFileSystem()
    mem = Memtable(wal_number)
    for seq, keys, values in replay_wal(fs, wal_path, wal_number).batches:
        mem.apply(seq, keys, values)
    return run_to_end(write_tables(fs, spec, mem.entries(snapshot_seqs), lambda: number, slice_entries=1 << 30))
