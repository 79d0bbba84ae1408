"""The read path: point reads, batched point reads and scan chunks over the memtables and
the tables of a version.

Concurrency rules: every method here is synchronous and runs on the event loop to
completion, so it sees one consistent state (memtable, immutable memtables, version): a read
never observes half a commit, a half-installed version or a removed table. A scan is a
series of such chunks at one snapshot sequence number (see :meth:`ReadPath.scan_chunk`).

:class:`ReadPath` is a mixin of :class:`~quanta._storage.engine.Engine`; it holds no state of
its own and names the engine attributes it reads.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import compress, islice
from operator import itemgetter

from . import filenames
from .block import Block
from .cache import BlockCache
from .manifest import FileMeta
from .memtable import Memtable
from .sstable import TableReader
from .version import NUM_LEVELS, Version
from .vfs import FileSystem

__all__ = ["MAX_SEQ", "ReadPath"]

#: The snapshot of "the newest state": larger than every sequence number.
MAX_SEQ = (1 << 63) - 1

Entry = tuple[bytes, int, bytes | None]
_key_of = itemgetter(0)
_value_of = itemgetter(1)


class ReadPath:
    """Reads over ``mem``, ``imms`` (oldest first) and ``version`` (see the module docstring)."""

    fs: FileSystem
    path: str
    cache: BlockCache
    mem: Memtable
    imms: list[Memtable]
    version: Version
    readers: dict[int, TableReader]
    visible_seq: int

    def get(self, key: bytes, snapshot: int = MAX_SEQ) -> bytes | None:
        """The value of ``key`` at ``snapshot`` (None if absent or deleted). The hot path:
        one dict probe when the key is in the memtable, else one table per level."""
        mem = self.mem
        entry = mem.latest.get(key)
        if entry is not None:
            if entry[0] <= snapshot:
                return entry[1]  # type: ignore[no-any-return]
            found = mem.get(key, snapshot)
            if found is not None:
                return found[1]
        for imm in reversed(self.imms):
            found = imm.get(key, snapshot)
            if found is not None:
                return found[1]
        version = self.version
        readers = self.readers
        for meta in version.levels[0]:
            if meta.smallest <= key <= meta.largest:
                found = (readers.get(meta.number) or self._reader(meta)).get(key, snapshot)
                if found is not None:
                    return found[1]
        for largest, files in version.deep_levels:
            i = bisect_left(largest, key)
            if i < len(files):
                meta = files[i]
                if meta.smallest <= key:
                    found = (readers.get(meta.number) or self._reader(meta)).get(key, snapshot)
                    if found is not None:
                        return found[1]
        return None

    def get_many(self, keys: list[bytes], snapshot: int = MAX_SEQ) -> list[bytes | None]:
        """``[get(k) for k in keys]``, batched: the memtable is probed for all keys at C
        speed (``map``); the keys it does not hold are sorted and looked up table by table,
        walking each table's blocks in key order (one block-index search per block, one
        dict probe per key) instead of one full point read per key."""
        if snapshot < self.visible_seq or (
            self.mem.history and any(e is not None and e[0] > snapshot for e in map(self.mem.latest.get, keys))
        ):
            return [self.get(key, snapshot) for key in keys]
        # At the newest snapshot every memtable entry is visible: its newest version wins.
        found = list(map(self.mem.latest.get, keys))
        if None not in found:
            return list(map(_value_of, found))
        resolved: dict[bytes, bytes | None] = {}
        pending = sorted({key for key, entry in zip(keys, found, strict=True) if entry is None})
        for imm in reversed(self.imms):
            hits = [(key, e[1]) for key, e in zip(pending, map(imm.latest.get, pending), strict=True) if e is not None]
            if hits:
                resolved.update(hits)
                pending = [key for key in pending if key not in resolved]
        version = self.version
        for meta in version.levels[0]:
            if pending:
                pending = self._get_sorted(meta, pending, snapshot, resolved)
        for _, files in version.deep_levels:
            if not pending:
                break
            for meta in files:
                lo = bisect_left(pending, meta.smallest)
                hi = bisect_right(pending, meta.largest)
                if lo < hi:
                    self._get_sorted(meta, pending[lo:hi], snapshot, resolved)
            pending = [key for key in pending if key not in resolved]
        get = resolved.get
        return [get(key) if entry is None else entry[1] for key, entry in zip(keys, found, strict=True)]

    def _get_sorted(
        self, meta: FileMeta, keys: list[bytes], snapshot: int, resolved: dict[bytes, bytes | None]
    ) -> list[bytes]:
        """Look sorted ``keys`` up in one table, adding what it holds (tombstones too) to
        ``resolved``; return the keys it does not hold."""
        reader = self.readers.get(meta.number) or self._reader(meta)
        last_keys = reader.last_keys
        num_blocks = reader.num_blocks
        missing: list[bytes] = []
        i = 0
        bound: bytes | None = None
        positions: dict[bytes, int] | None = None
        block: Block | None = None
        for n, key in enumerate(keys):
            if bound is None or key > bound:
                i = bisect_left(last_keys, key, i)
                if i == num_blocks:
                    missing += keys[n:]
                    break
                bound = last_keys[i]
                block = reader.cached_block(i)
                positions = None if block is None else block.positions()
            if positions is None:
                if not reader.may_contain(key):  # the filter saves reading the block
                    missing.append(key)
                    continue
                block = reader.read_block(i)
                positions = block.positions()
            j = positions.get(key)
            if j is None:
                missing.append(key)
                continue
            assert block is not None
            if block.seqs[j] <= snapshot:
                resolved[key] = block.values[j]
            else:
                older = reader.get(key, snapshot)
                if older is None:
                    missing.append(key)
                else:
                    resolved[key] = older[1]
        return missing

    def _reader(self, meta: FileMeta) -> TableReader:
        reader = self.readers.get(meta.number)
        if reader is None:
            reader = TableReader.open(
                self.fs, os.path.join(self.path, filenames.table_name(meta.number)), meta.number, self.cache
            )
            self.readers[meta.number] = reader
        return reader

    def scan_chunk(
        self, lo: bytes | None, hi: bytes | None, snapshot: int, n: int, reverse: bool
    ) -> tuple[list[bytes], list[bytes], bytes | None, bool]:
        """Up to about ``n`` live entries of ``[lo, hi)`` at ``snapshot``, in scan order, as
        ``(keys, values, bound, done)``: continue forward with ``lo = bound`` (the smallest
        key not yet covered), or in reverse with ``hi = bound``.

        Each source (memtable, immutable memtables, each L0 table, each deeper level) gives
        at most ``n`` keys, resolved at the snapshot; only keys up to the nearest *frontier*
        of a source cut short are emitted, so the merge is exact. For any key a newer source
        holds a newer version, so merging oldest to newest into one dict lets the newest
        win. Everything is column lists and C-level calls (slicing, ``dict.update``,
        ``sorted``): no Python frame per entry on the common paths.
        """
        cols: list[tuple[list[bytes], list[bytes | None]]] = []  # newest source first
        frontier: bytes | None = None
        for keys, values in self._sources(lo, hi, snapshot, reverse, n + 1):
            if len(keys) > n:
                del keys[n:], values[n:]
                last = keys[-1]
                if frontier is None or (last > frontier if reverse else last < frontier):
                    frontier = last
            if keys:
                cols.append((keys, values))
        if not cols:
            return [], [], None, True
        if len(cols) == 1:
            # a source cut short is never empty, so the frontier (if any) is this source's
            # own last key: every entry is within it
            keys, values = cols[0]
        else:
            table: dict[bytes, bytes | None] = {}
            for ks, vs in reversed(cols):
                table.update(zip(ks, vs, strict=True))
            keys = sorted(table)
            if frontier is not None:
                keys = keys[bisect_left(keys, frontier) :] if reverse else keys[: bisect_right(keys, frontier)]
            if reverse:
                keys.reverse()
            values = list(map(table.__getitem__, keys))
        if None in values:  # drop tombstones
            keep = [v is not None for v in values]
            keys, values = list(compress(keys, keep)), list(compress(values, keep))
        live: list[bytes] = values  # type: ignore[assignment]
        if frontier is None:
            return keys, live, None, True
        return keys, live, (frontier if reverse else frontier + b"\x00"), False

    def _sources(
        self, lo: bytes | None, hi: bytes | None, snapshot: int, reverse: bool, limit: int
    ) -> Iterator[tuple[list[bytes], list[bytes | None]]]:
        for mem in [self.mem, *reversed(self.imms)]:
            if len(mem):
                yield _memtable_columns(mem, lo, hi, snapshot, reverse, limit)
        version = self.version
        for meta in version.levels[0]:
            if (hi is None or meta.smallest < hi) and (lo is None or meta.largest >= lo):
                yield self._table_columns([meta], lo, hi, snapshot, reverse, limit)
        for level in range(1, NUM_LEVELS):
            files = version.levels[level]
            if files:
                metas = version.overlapping(level, lo or b"", files[-1].largest if hi is None else hi)
                metas = [m for m in metas if hi is None or m.smallest < hi]
                if metas:
                    yield self._table_columns(metas, lo, hi, snapshot, reverse, limit)

    def _table_columns(
        self, metas: list[FileMeta], lo: bytes | None, hi: bytes | None, snapshot: int, reverse: bool, limit: int
    ) -> tuple[list[bytes], list[bytes | None]]:
        """The first ``limit`` keys of consecutive, non-overlapping tables, resolved at
        ``snapshot``. Fast path (forward, every version visible): whole block slices."""
        if reverse or any(m.max_seq > snapshot for m in metas):
            run = _resolve(self._level_run(metas, lo, hi, reverse), snapshot)
            pairs = list(islice(run, limit))
            return list(map(_key_of, pairs)), list(map(_value_of, pairs))
        out_k: list[bytes] = []
        out_v: list[bytes | None] = []
        last_key: bytes | None = None
        for meta in metas:
            reader = self._reader(meta)
            last_keys = reader.last_keys
            i = 0 if lo is None else bisect_left(last_keys, lo)
            first = True
            while i < reader.num_blocks:
                block = reader.read_block(i)
                keys = block.keys
                j = bisect_left(keys, lo) if first and lo is not None else 0
                first = False
                at_end = hi is not None and last_keys[i] >= hi
                end = bisect_left(keys, hi) if hi is not None and at_end else len(keys)
                ks, vs = keys[j:end], block.values[j:end]
                if ks:
                    if ks[0] == last_key or len(set(ks)) != len(ks):
                        ks, vs = _newest_versions(ks, vs, last_key)
                    out_k += ks
                    out_v += vs
                    if out_k:
                        last_key = out_k[-1]
                if at_end or len(out_k) >= limit:
                    return out_k[:limit], out_v[:limit]
                i += 1
        return out_k, out_v

    def _table_run(self, meta: FileMeta, lo: bytes | None, hi: bytes | None, reverse: bool) -> Iterator[Entry]:
        reader = self._reader(meta)
        if reverse:
            for e in reader.iter_entries_reverse(hi):
                if lo is not None and e[0] < lo:
                    return
                yield e
        else:
            for e in reader.iter_entries(lo):
                if hi is not None and e[0] >= hi:
                    return
                yield e

    def _level_run(self, metas: list[FileMeta], lo: bytes | None, hi: bytes | None, reverse: bool) -> Iterator[Entry]:
        for meta in reversed(metas) if reverse else metas:
            yield from self._table_run(meta, lo, hi, reverse)


def _memtable_columns(
    mem: Memtable, lo: bytes | None, hi: bytes | None, snapshot: int, reverse: bool, limit: int
) -> tuple[list[bytes], list[bytes | None]]:
    latest = mem.latest
    if not mem.history and snapshot >= mem.max_seq:
        # Every key's newest version is visible: slice the sorted keys and look the values
        # up at C speed (no per-key Python frame).
        i = 0 if lo is None else latest.bisect_left(lo)
        j = len(latest) if hi is None else latest.bisect_left(hi)
        if reverse:
            keys = latest.keys()[max(i, j - limit) : j]
            keys.reverse()
        else:
            keys = latest.keys()[i : min(j, i + limit)]
        return keys, list(map(_value_of, map(latest.__getitem__, keys)))
    pairs = list(islice(_memtable_versions(mem, lo, hi, snapshot, reverse), limit))
    return list(map(_key_of, pairs)), list(map(_value_of, pairs))


def _newest_versions(
    keys: list[bytes], values: list[bytes | None], previous: bytes | None
) -> tuple[list[bytes], list[bytes | None]]:
    """The first (newest) entry of each key, skipping a key continued from the previous
    block. Requires: every version visible at the snapshot; one key's versions adjacent."""
    out_k: list[bytes] = []
    out_v: list[bytes | None] = []
    last = previous
    for key, value in zip(keys, values, strict=True):
        if key != last:
            out_k.append(key)
            out_v.append(value)
            last = key
    return out_k, out_v


def _memtable_versions(
    mem: Memtable, lo: bytes | None, hi: bytes | None, snapshot: int, reverse: bool
) -> Iterator[tuple[bytes, bytes | None]]:
    keys = mem.latest.irange(lo, hi, inclusive=(True, False), reverse=reverse)
    get = mem.get
    for key in keys:
        found = get(key, snapshot)
        if found is not None:
            yield key, found[1]


def _resolve(entries: Iterator[Entry], snapshot: int) -> Iterator[tuple[bytes, bytes | None]]:
    """From a run (one key's versions adjacent), the newest version <= snapshot of each key."""
    last: bytes | None = None
    best: tuple[int, bytes | None] | None = None
    for key, seq, value in entries:
        if key != last:
            if best is not None:
                yield last, best[1]  # type: ignore[misc]
            last, best = key, None
        if seq <= snapshot and (best is None or seq > best[0]):
            best = (seq, value)
    if best is not None:
        yield last, best[1]  # type: ignore[misc]
