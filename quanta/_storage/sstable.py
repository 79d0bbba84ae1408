"""Sorted string tables: immutable files of sorted entries, written once by flush or compaction.

Concurrency: a :class:`TableBuilder` is used by one task. A :class:`TableReader` is used from
one thread at a time (the event loop); it holds no mutable state besides the shared
:class:`~quanta._storage.cache.BlockCache`, which has the same rule. A worker thread or process
opens its own readers with ``cache=None``.

Invariants of a table (checked by :meth:`TableReader.verify`):

* Entries ``(key, seq, value)`` are sorted by key ascending, then seq descending; no
  ``(key, seq)`` appears twice; ``value is None`` is a tombstone. There is at least one entry.
* The versions of one key may straddle data blocks, so adjacent blocks may share their last key.
* The index holds the last key of each block; ``bisect_left`` over it finds the first block that
  can hold a key (its newest version).

File layout (every integer little-endian)::

    +----------------------+  offset 0
    | file header          |  32 bytes, format.FileHeader: SSTABLE_MAGIC, format version,
    |                      |  file_number (the number in the file's name)
    +----------------------+  32
    | data block 0         |  framed block (format.frame_block): payload, type u8, crc32 u32;
    | data block 1         |  payload layout in block.py; blocks are contiguous
    | ...                  |
    +----------------------+  bloom.offset
    | filter block         |  framed; payload as in bloom.py (empty payload: no filter)
    +----------------------+  index.offset = bloom.offset + bloom.size
    | index block          |  framed; payload msgpack [last_keys, offsets, sizes]:
    |                      |  per data block its last key (bin), offset and framed size (uint)
    +----------------------+  properties.offset = index.offset + index.size
    | properties block     |  framed; payload a msgpack map with str keys (all required):
    |                      |  format_version, file_number, entries, tombstones, num_blocks,
    |                      |  data_size, min_seq, max_seq, bits_per_key, block_size (uint);
    |                      |  smallest, largest (bin). Readers ignore keys they do not know.
    +----------------------+  file_size - 52
    | footer               |  52 bytes, below
    +----------------------+  file_size

Footer::

    offset size field
         0    8 bloom.offset        u64
         8    4 bloom.size          u32, framed size (payload + 5-byte trailer)
        12    8 index.offset        u64
        20    4 index.size          u32
        24    8 properties.offset   u64
        32    4 properties.size     u32
        36    2 format_version      u16, FormatVersion (the same as the header's)
        38    2 reserved            0
        40    8 magic               b"QNTASST\\x00" (SSTABLE_MAGIC, again)
        48    4 footer_crc          u32, CRC-32 of bytes 0..47

Worked example: table 7 holding ``(b"a", 2, b"x"), (b"a", 1, None), (b"b", 5, b"yz")`` at
10 bits per key is 289 bytes. The header is bytes 0..31. Data block 0 is bytes 32..60 (the
29-byte frame of block.py's worked example). The filter block starts at 61 (nbits 64, so 9
payload bytes + 5 = 14 bytes), the index block at 75 (``93 91 c4 01 62 91 20 91 1d`` + 5 =
14 bytes: last key b"b", offset 32, size 29), the properties block at 89 (148 bytes), and
the footer at 237::

    3d 00 00 00 00 00 00 00 0e 00 00 00    bloom      offset 61, size 14
    4b 00 00 00 00 00 00 00 0e 00 00 00    index      offset 75, size 14
    59 00 00 00 00 00 00 00 94 00 00 00    properties offset 89, size 148
    01 00 00 00                            format version 1, reserved
    51 4e 54 41 53 53 54 00                "QNTASST\\0"
    37 e7 cb 50                            crc32 of the 48 bytes above

The golden files under ``tests/testdata/sstable/`` print these layouts byte for byte.
The constants and layouts here are part of the on-disk format: changing one makes existing
tables unreadable (a new layout needs a new ``FormatVersion``).

Departures from LevelDB's table format (``doc/table_format.md``), and why:

* Entries carry ``(key, seq, value)`` as three msgpack arrays per block, not prefix-compressed
  internal keys with restart points: one C call decodes a block (see block.py).
* One filter for the whole table and a fixed-size footer that also repeats the format version.
* Readers load the index, filter and properties when the table is opened and check every
  length against the file size before reading, so a damaged file raises CorruptionError
  (naming the file and offset), never MemoryError or wrong data.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, islice, repeat
from operator import add, ge, le, lt
from typing import Any

import msgpack

from ..errors import CorruptionError
from .block import BLOCK_OVERHEAD_BOUND, Block, decode_block, encode_block, entry_overhead, entry_size
from .bloom import MAX_BITS_PER_KEY, bloom_may_contain, build_bloom, filter_probes
from .cache import BlockCache
from .format import (
    BLOCK_TRAILER_SIZE,
    CURRENT_FORMAT,
    HEADER_SIZE,
    SSTABLE_MAGIC,
    FileHeader,
    FormatVersion,
    checksum,
    frame_block,
    unframe_block,
)
from .vfs import FileSystem, ReadableFile, WritableFile

__all__ = ["FOOTER_SIZE", "TableBuilder", "TableProperties", "TableReader"]

Entry = tuple[bytes, int, bytes | None]

_FOOTER = struct.Struct("<QIQIQIHH8s")  # without the trailing crc
_CRC = struct.Struct("<I")
FOOTER_SIZE = _FOOTER.size + 4  # 52
_MAX_SEQ = (1 << 64) - 1

# Framed blocks are buffered and written in chunks of about this size (fewer write calls).
_WRITE_CHUNK = 256 * 1024

# The properties block: key -> the type its value must have. All are required.
_PROPERTY_TYPES: dict[str, type] = {
    "format_version": int,
    "file_number": int,
    "entries": int,
    "tombstones": int,
    "num_blocks": int,
    "data_size": int,  # bytes of framed data blocks
    "smallest": bytes,
    "largest": bytes,
    "min_seq": int,
    "max_seq": int,
    "bits_per_key": int,
    "block_size": int,
}


@dataclass(frozen=True, slots=True)
class TableProperties:
    """What a finished table holds; the manifest records most of it."""

    file_number: int
    file_size: int
    entries: int
    smallest: bytes
    largest: bytes
    min_seq: int
    max_seq: int
    tombstones: int = 0
    num_blocks: int = 0
    data_size: int = 0
    bits_per_key: int = 0
    block_size: int = 0


# --------------------------------------------------------------------------- writing


class TableBuilder:
    """Writes one table to ``file``, entries in order, then :meth:`finish`.

    Requires: ``file`` is empty (the builder writes the header at once). The caller owns the
    file: ``finish`` writes everything but neither syncs nor closes it.

    A data block is cut before an entry that would take its payload past ``block_size``; an
    entry larger than ``block_size`` gets a block of its own. The three array headers are
    counted at their upper bound (16 bytes), so every block of two or more entries has a
    payload of at most ``block_size`` bytes. ``add`` counts each entry's msgpack size exactly;
    ``add_many`` counts every entry of the batch with the header sizes of its largest key,
    value and seq (a few bytes per entry more when sizes are mixed), which lets it find all cut
    points with ``accumulate`` and ``bisect`` instead of a Python loop per entry. Blocks can
    therefore differ with how the entries were fed; the table's contents cannot.

    Output is buffered and written in chunks of about 256 KiB.
    """

    def __init__(self, file: WritableFile, file_number: int, *, block_size: int = 4096, bits_per_key: int = 10) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, not {block_size}")
        if not 0 <= bits_per_key <= MAX_BITS_PER_KEY:
            raise ValueError(f"bits_per_key must be in 0..{MAX_BITS_PER_KEY}, not {bits_per_key}")
        if file.tell() != 0:
            raise ValueError(f"TableBuilder needs an empty file, {file.path} holds {file.tell()} bytes")
        self._file = file
        self.file_number = file_number
        self.block_size = block_size
        self.bits_per_key = bits_per_key
        self._limit = block_size - BLOCK_OVERHEAD_BOUND  # budget for the entries of a block
        # The pending (not yet cut) data block and its payload bytes less the array headers.
        self._keys: list[bytes] = []
        self._seqs: list[int] = []
        self._values: list[bytes | None] = []
        self._pending = 0
        # Index, filter keys (each key once, so the first is the smallest) and statistics of
        # the blocks written so far.
        self._last_keys: list[bytes] = []
        self._offsets: list[int] = []
        self._sizes: list[int] = []
        self._filter_keys: list[bytes] = []
        self._entries = 0
        self._tombstones = 0
        self._last_key: bytes | None = None
        self._last_seq = 0
        self._min_seq = _MAX_SEQ
        self._max_seq = 0
        self._finished = False
        # Output: framed blocks not yet handed to the file, and the table size so far.
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._offset = 0
        header = FileHeader(magic=SSTABLE_MAGIC, file_number=file_number).encode()
        self._emit(header)

    @property
    def estimated_size(self) -> int:
        """Bytes of the table so far: written (or buffered) blocks plus the pending block."""
        return self._offset + self._pending

    @property
    def entries(self) -> int:
        return self._entries + len(self._keys)

    def add(self, key: bytes, seq: int, value: bytes | None) -> None:
        """Append one entry. Requires: ``(key, -seq)`` greater than the previous entry's."""
        # Per-entry work is kept to the order check and the size; counts and seq bounds are
        # taken per block in _write_block, with C-level min/max/count.
        if self._finished:
            raise ValueError("TableBuilder.add after finish")
        last = self._last_key
        if last is None or key > last:
            self._filter_keys.append(key)
        elif key != last or seq >= self._last_seq:
            raise self._order_error(last, self._last_seq, key, seq)
        if not 0 <= seq <= _MAX_SEQ:
            raise ValueError(f"seq {seq} out of range")
        cost = entry_size(key, seq, value)
        if self._pending + cost > self._limit and self._keys:
            self._cut_block()
        self._keys.append(key)
        self._seqs.append(seq)
        self._values.append(value)
        self._pending += cost
        self._last_key = key
        self._last_seq = seq

    def add_many(self, entries: Sequence[Entry]) -> None:
        """Append entries in order; the same as ``add`` for each, but mostly in C loops."""
        n = len(entries)
        if not n:
            return
        if self._finished:
            raise ValueError("TableBuilder.add_many after finish")
        ks = [e[0] for e in entries]
        ss = [e[1] for e in entries]
        vs = [e[2] for e in entries]
        lo_seq, hi_seq = min(ss), max(ss)
        if lo_seq < 0 or hi_seq > _MAX_SEQ:
            raise ValueError(f"seq out of range in {lo_seq}..{hi_seq}")

        # Order: strictly increasing keys is the C-speed common case; a key's versions
        # (equal adjacent keys) need their seqs strictly decreasing.
        last = self._last_key
        if last is not None and (ks[0] < last or (ks[0] == last and ss[0] >= self._last_seq)):
            raise self._order_error(last, self._last_seq, ks[0], ss[0])
        if all(map(lt, ks, islice(ks, 1, None))):
            new_keys = ks if last != ks[0] else ks[1:]
        else:
            for i in compress(range(1, n), map(ge, ks, islice(ks, 1, None))):
                if ks[i - 1] != ks[i] or ss[i - 1] <= ss[i]:
                    raise self._order_error(ks[i - 1], ss[i - 1], ks[i], ss[i])
            new_keys = [k for k, before in zip(ks, [last, *ks], strict=False) if k != before]
        self._filter_keys.extend(new_keys)

        # Cost of each entry: key and value bytes plus a header bound for the whole batch.
        klens = list(map(len, ks))
        tombstones = vs.count(None)
        if tombstones:
            vlens = [0 if v is None else len(v) for v in vs]
            max_vlen = max(vlens) if tombstones < n else None
        else:
            vlens = list(map(len, vs))  # type: ignore[arg-type]
            max_vlen = max(vlens)
        overhead = entry_overhead(max(klens), max_vlen, hi_seq)
        # acc[e] - acc[s] is the cost of entries s..e-1.
        acc = list(accumulate(map(add, map(add, klens, vlens), repeat(overhead)), initial=0))

        start = 0
        while start < n:
            room = self._limit - self._pending
            end = bisect_right(acc, acc[start] + room, start) - 1  # entries start..end-1 fit
            if end <= start:
                if self._keys:
                    self._cut_block()
                    continue
                end = start + 1  # larger than a block: a block of its own
            if end < n and not self._keys:  # a whole block: no need to stage it
                self._write_block(ks[start:end], ss[start:end], vs[start:end])
                start = end
                continue
            self._keys.extend(ks[start:end])
            self._seqs.extend(ss[start:end])
            self._values.extend(vs[start:end])
            self._pending += acc[end] - acc[start]
            start = end
            if start < n:
                self._cut_block()

        self._last_key = ks[-1]
        self._last_seq = ss[-1]

    def finish(self) -> TableProperties:
        """Write the last data block, the filter, index and properties blocks and the footer.

        Returns the table's properties. Does not sync or close the file. Requires: at least
        one entry was added (an empty table is a caller bug).
        """
        if self._finished:
            raise ValueError("TableBuilder.finish called twice")
        if not self.entries:
            raise ValueError(f"TableBuilder.finish with no entries ({self._file.path})")
        assert self._last_key is not None
        if self._keys:
            self._cut_block()
        self._finished = True
        smallest = self._filter_keys[0]
        data_size = self._offset - HEADER_SIZE
        bloom_handle = self._emit(frame_block(build_bloom(self._filter_keys, self.bits_per_key)))
        index = msgpack.packb([self._last_keys, self._offsets, self._sizes], use_bin_type=True)
        index_handle = self._emit(frame_block(index))
        props = {
            "format_version": int(CURRENT_FORMAT),
            "file_number": self.file_number,
            "entries": self._entries,
            "tombstones": self._tombstones,
            "num_blocks": len(self._offsets),
            "data_size": data_size,
            "smallest": smallest,
            "largest": self._last_key,
            "min_seq": self._min_seq,
            "max_seq": self._max_seq,
            "bits_per_key": self.bits_per_key,
            "block_size": self.block_size,
        }
        props_handle = self._emit(frame_block(msgpack.packb(props, use_bin_type=True)))
        footer = _FOOTER.pack(*bloom_handle, *index_handle, *props_handle, CURRENT_FORMAT, 0, SSTABLE_MAGIC)
        self._emit(footer + _CRC.pack(checksum(footer)))
        self._flush_output()
        self._filter_keys = []
        return TableProperties(
            file_number=self.file_number,
            file_size=self._offset,
            entries=self._entries,
            smallest=smallest,
            largest=self._last_key,
            min_seq=self._min_seq,
            max_seq=self._max_seq,
            tombstones=self._tombstones,
            num_blocks=len(self._offsets),
            data_size=data_size,
            bits_per_key=self.bits_per_key,
            block_size=self.block_size,
        )

    # -- internals --------------------------------------------------------------------

    def _cut_block(self) -> None:
        self._write_block(self._keys, self._seqs, self._values)
        self._keys, self._seqs, self._values = [], [], []
        self._pending = 0

    def _write_block(self, keys: list[bytes], seqs: list[int], values: list[bytes | None]) -> None:
        self._entries += len(keys)
        self._tombstones += values.count(None)
        self._min_seq = min(self._min_seq, *seqs)
        self._max_seq = max(self._max_seq, *seqs)
        offset, size = self._emit(frame_block(encode_block(keys, seqs, values)))
        self._last_keys.append(keys[-1])
        self._offsets.append(offset)
        self._sizes.append(size)

    def _emit(self, data: bytes) -> tuple[int, int]:
        """Queue ``data`` for the file; its (offset, size) in the table."""
        offset = self._offset
        self._out.append(data)
        self._out_bytes += len(data)
        self._offset += len(data)
        if self._out_bytes >= _WRITE_CHUNK:
            self._flush_output()
        return offset, len(data)

    def _flush_output(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out = []
            self._out_bytes = 0
            self._file.write(data)

    def _order_error(self, key: bytes, seq: int, next_key: bytes, next_seq: int) -> ValueError:
        return ValueError(
            f"entries out of order in {self._file.path}: ({next_key!r}, {next_seq}) after ({key!r}, {seq});"
            " a table holds keys ascending, a key's seqs descending and unique"
        )


# --------------------------------------------------------------------------- reading


class TableReader:
    """Reads a finished table; see the module docstring. Open with :meth:`TableReader.open`."""

    __slots__ = (
        "_bloom",
        "_cache",
        "_file",
        "_offsets",
        "_sizes",
        "file_number",
        "last_keys",
        "num_blocks",
        "path",
        "properties",
    )

    def __init__(
        self,
        file: ReadableFile,
        path: str,
        file_number: int,
        cache: BlockCache | None,
        properties: TableProperties,
        last_keys: list[bytes],
        offsets: list[int],
        sizes: list[int],
        bloom: bytes,
    ) -> None:
        # Use TableReader.open, which checks the pieces.
        self._file = file
        self.path = path
        self.file_number = file_number
        self._cache = cache if cache is not None and cache.capacity_bytes else None
        self.properties = properties
        self.last_keys = last_keys
        self.num_blocks = len(last_keys)
        self._offsets = offsets
        self._sizes = sizes
        self._bloom = bloom

    @property
    def file(self) -> ReadableFile:
        """The open file (a backup copies a table the writer deleted from it)."""
        return self._file

    @classmethod
    def open(cls, fs: FileSystem, path: str, file_number: int, cache: BlockCache | None = None) -> TableReader:
        """Open the table at ``path``, checking its header, footer and metadata blocks.

        Raises CorruptionError (naming ``path`` and an offset) if anything is damaged, and
        StorageIOError if the file cannot be read. Blocks are cached in ``cache`` under
        ``(file_number, block_index)``; file numbers must never be reused while blocks of an
        older file with the same number are cached (call ``cache.evict_file`` on deletion).
        """
        file = fs.open_read(path)
        try:
            return cls._load(file, path, file_number, cache)
        except BaseException:
            file.close()
            raise

    @classmethod
    def _load(cls, file: ReadableFile, path: str, file_number: int, cache: BlockCache | None) -> TableReader:
        size = file.size()
        min_size = HEADER_SIZE + 4 * BLOCK_TRAILER_SIZE + FOOTER_SIZE  # one data block at least
        if size < min_size:
            raise CorruptionError(f"file too short for an SSTable ({size} bytes)", path=path, offset=size)
        header = FileHeader.decode(_pread(file, 0, HEADER_SIZE, path), path=path, expect_magic=SSTABLE_MAGIC)
        if header.file_number != file_number:
            raise CorruptionError(
                f"header says table {header.file_number}, expected {file_number}", path=path, offset=16
            )

        footer_at = size - FOOTER_SIZE
        footer = _pread(file, footer_at, FOOTER_SIZE, path)
        fields = _FOOTER.unpack_from(footer)
        if fields[-1] != SSTABLE_MAGIC:
            raise CorruptionError(
                "bad SSTable footer magic (truncated or not an SSTable)", path=path, offset=footer_at + 40
            )
        if checksum(footer[:-4]) != _CRC.unpack_from(footer, FOOTER_SIZE - 4)[0]:
            raise CorruptionError("SSTable footer checksum mismatch", path=path, offset=footer_at)
        bloom_at, bloom_size, index_at, index_size, props_at, props_size, version, _reserved, _ = fields
        if version != header.format_version or version not in FormatVersion.__members__.values():
            raise CorruptionError(
                f"footer format version {version} does not match the header", path=path, offset=footer_at + 36
            )
        # The metadata blocks must tile [bloom_at, footer_at) in order; check before reading.
        if (
            not HEADER_SIZE + BLOCK_TRAILER_SIZE < bloom_at
            or min(bloom_size, index_size, props_size) < BLOCK_TRAILER_SIZE
            or index_at != bloom_at + bloom_size
            or props_at != index_at + index_size
            or props_at + props_size != footer_at
        ):
            raise CorruptionError("footer block handles do not fit the file", path=path, offset=footer_at)
        meta = _pread(file, bloom_at, footer_at - bloom_at, path)
        bloom = unframe_block(meta[:bloom_size], path=path, offset=bloom_at)
        index = unframe_block(meta[bloom_size : bloom_size + index_size], path=path, offset=index_at)
        props_payload = unframe_block(meta[bloom_size + index_size :], path=path, offset=props_at)

        props = _decode_properties(props_payload, path, props_at, file_number, size)
        last_keys, offsets, sizes = _decode_index(index, path, index_at, bloom_at, props)
        if filter_probes(bloom) is None:
            raise CorruptionError("malformed bloom filter", path=path, offset=bloom_at)
        return cls(file, path, file_number, cache, props, last_keys, offsets, sizes, bloom)

    # -- point reads ------------------------------------------------------------------

    def may_contain(self, key: bytes) -> bool:
        """False if the table certainly holds no version of ``key`` (filter and key range)."""
        props = self.properties
        if key < props.smallest or key > props.largest:
            return False
        return bloom_may_contain(self._bloom, key)

    def get(self, key: bytes, snapshot_seq: int) -> tuple[int, bytes | None] | None:
        """The newest ``(seq, value)`` of ``key`` with ``seq <= snapshot_seq``, else ``None``.

        A tombstone comes back as ``(seq, None)``. The block cache is checked before the bloom
        filter: the filter saves a read, not CPU, and a cached block answers just as fast.
        """
        i = bisect_left(self.last_keys, key)
        if i == self.num_blocks:
            return None
        cache = self._cache
        block: Block | None = cache.get((self.file_number, i)) if cache is not None else None  # type: ignore[assignment]
        if block is None:
            if not bloom_may_contain(self._bloom, key):
                return None
            block = self._read_block(i, True)
        positions = block._positions
        j = (positions if positions is not None else block.positions()).get(key)
        if j is None:
            return None
        seq = block.seqs[j]
        if seq <= snapshot_seq:
            return seq, block.values[j]
        return self._get_older(key, snapshot_seq, i, block, j + 1)

    def _get_older(
        self, key: bytes, snapshot_seq: int, i: int, block: Block, j: int
    ) -> tuple[int, bytes | None] | None:
        """Continue a lookup past versions newer than the snapshot, into later blocks."""
        while True:
            keys, seqs = block.keys, block.seqs
            while j < len(keys):
                if keys[j] != key:
                    return None
                if seqs[j] <= snapshot_seq:
                    return seqs[j], block.values[j]
                j += 1
            i += 1
            if i == self.num_blocks:
                return None
            block, j = self.read_block(i), 0

    # -- blocks -----------------------------------------------------------------------

    def cached_block(self, i: int) -> Block | None:
        """Data block ``i`` if the block cache holds it, else None (nothing is read)."""
        cache = self._cache
        return None if cache is None else cache.get((self.file_number, i))  # type: ignore[return-value]

    def read_block(self, i: int) -> Block:
        """Data block ``i``, from the cache or else read, checked and cached."""
        cache = self._cache
        if cache is not None:
            block: Block | None = cache.get((self.file_number, i))  # type: ignore[assignment]
            if block is not None:
                return block
        return self._read_block(i, True)

    def _read_block(self, i: int, fill_cache: bool) -> Block:
        if not 0 <= i < self.num_blocks:
            raise IndexError(f"block {i} of a table with {self.num_blocks} blocks")
        offset, size = self._offsets[i], self._sizes[i]
        frame = _pread(self._file, offset, size, self.path)
        block = decode_block(unframe_block(frame, path=self.path, offset=offset), path=self.path, offset=offset)
        keys = block.keys
        # Cheap checks that the (checksummed) block is the one the index promised.
        if keys[-1] != self.last_keys[i] or (i and keys[0] < self.last_keys[i - 1]):
            raise CorruptionError(f"data block {i} does not match the index", path=self.path, offset=offset)
        if fill_cache and self._cache is not None:
            self._cache.put((self.file_number, i), block, size)
        return block

    def _blocks(self, indexes: Iterator[int] | range, fill_cache: bool) -> Iterator[Block]:
        cache = self._cache
        number = self.file_number
        for i in indexes:
            block: Block | None = cache.get((number, i)) if cache is not None else None  # type: ignore[assignment]
            yield block if block is not None else self._read_block(i, fill_cache)

    # -- scans ------------------------------------------------------------------------

    def iter_entries(self, start: bytes | None = None, *, fill_cache: bool = True) -> Iterator[Entry]:
        """Every entry with key ``>= start`` (all when ``None``), in table order.

        ``fill_cache=False`` reads blocks that are not cached without caching them (for
        compaction and verification, so one pass over a table does not evict the hot blocks).
        """
        first = 0 if start is None else bisect_left(self.last_keys, start)
        for block in self._blocks(range(first, self.num_blocks), fill_cache):
            if start is not None:
                j = bisect_left(block.keys, start)
                start = None
                if j:
                    yield from zip(block.keys[j:], block.seqs[j:], block.values[j:], strict=False)
                    continue
            yield from zip(block.keys, block.seqs, block.values, strict=False)

    def iter_entries_reverse(self, stop: bytes | None = None, *, fill_cache: bool = True) -> Iterator[Entry]:
        """Every entry with key ``< stop`` (all when ``None``), in exactly the reverse order
        of :meth:`iter_entries`: keys descending and, within a key, seqs *ascending* (oldest
        version first), as LevelDB's ``Prev`` walks internal keys."""
        last = self.num_blocks - 1 if stop is None else min(bisect_left(self.last_keys, stop), self.num_blocks - 1)
        for block in self._blocks(range(last, -1, -1), fill_cache):
            keys, seqs, values = block.keys, block.seqs, block.values
            if stop is not None:
                j = bisect_left(keys, stop)
                stop = None
                if j < len(keys):
                    keys, seqs, values = keys[:j], seqs[:j], values[:j]
            yield from zip(reversed(keys), reversed(seqs), reversed(values), strict=False)

    # -- checking ---------------------------------------------------------------------

    def verify(self) -> int:
        """Read every block from the file (not the cache), checking checksums, entry types,
        order across blocks, the filter (no false negatives) and the properties.

        Returns the number of entries; raises CorruptionError at the first problem.
        """
        path = self.path
        props = self.properties
        count = tombstones = 0
        min_seq, max_seq = _MAX_SEQ, 0
        prev_key: bytes | None = None
        prev_seq = 0
        first = b""
        for i in range(self.num_blocks):
            block = self._read_block(i, False)
            offset = self._offsets[i]
            keys, seqs, values = block.keys, block.seqs, block.values
            if not (
                all(type(k) is bytes for k in keys)
                and all(type(s) is int and 0 <= s <= _MAX_SEQ for s in seqs)
                and all(v is None or type(v) is bytes for v in values)
            ):
                raise CorruptionError(f"data block {i} holds a value of the wrong type", path=path, offset=offset)
            if prev_key is not None and (keys[0] < prev_key or (keys[0] == prev_key and seqs[0] >= prev_seq)):
                raise CorruptionError(f"data block {i} starts before the previous block ends", path=path, offset=offset)
            if not all(map(lt, keys, islice(keys, 1, None))):
                for j in compress(range(1, len(keys)), map(ge, keys, islice(keys, 1, None))):
                    if keys[j - 1] != keys[j] or seqs[j - 1] <= seqs[j]:
                        raise CorruptionError(f"entries out of order in data block {i}", path=path, offset=offset)
            if self._bloom and not all(bloom_may_contain(self._bloom, k) for k in keys):
                raise CorruptionError(f"the bloom filter misses a key of data block {i}", path=path, offset=offset)
            if not i:
                first = keys[0]
            count += len(keys)
            tombstones += values.count(None)
            min_seq, max_seq = min(min_seq, *seqs), max(max_seq, *seqs)
            prev_key, prev_seq = keys[-1], seqs[-1]
        if (count, tombstones, min_seq, max_seq, first) != (
            props.entries,
            props.tombstones,
            props.min_seq,
            props.max_seq,
            props.smallest,
        ):
            raise CorruptionError("the data blocks do not match the table properties", path=path)
        return count

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TableReader({self.path!r}, {self.properties.entries} entries in {self.num_blocks} blocks)"


# --------------------------------------------------------------------------- helpers


def _pread(file: ReadableFile, offset: int, size: int, path: str) -> bytes:
    data = file.pread(offset, size)
    if len(data) != size:
        raise CorruptionError(f"short read: {len(data)} of {size} bytes (file truncated?)", path=path, offset=offset)
    return data


def _unpack(payload: bytes, what: str, path: str, offset: int) -> Any:
    try:
        return msgpack.unpackb(payload)
    except Exception as exc:  # msgpack raises several types (ValueError, FormatError, StackError...)
        raise CorruptionError(f"undecodable {what} block: {exc}", path=path, offset=offset) from exc


def _decode_properties(payload: bytes, path: str, offset: int, file_number: int, file_size: int) -> TableProperties:
    raw = _unpack(payload, "properties", path, offset)
    if type(raw) is not dict:
        raise CorruptionError("properties block is not a map", path=path, offset=offset)
    for name, kind in _PROPERTY_TYPES.items():
        if type(raw.get(name)) is not kind:
            raise CorruptionError(f"table property {name!r} missing or not {kind.__name__}", path=path, offset=offset)
    if raw["file_number"] != file_number:
        raise CorruptionError(
            f"properties say table {raw['file_number']}, expected {file_number}", path=path, offset=offset
        )
    if not (
        1 <= raw["num_blocks"] <= raw["entries"]
        and 0 <= raw["tombstones"] <= raw["entries"]
        and raw["smallest"] <= raw["largest"]
        and 0 <= raw["min_seq"] <= raw["max_seq"] <= _MAX_SEQ
    ):
        raise CorruptionError("table properties are inconsistent", path=path, offset=offset)
    return TableProperties(
        file_number=file_number,
        file_size=file_size,
        entries=raw["entries"],
        smallest=raw["smallest"],
        largest=raw["largest"],
        min_seq=raw["min_seq"],
        max_seq=raw["max_seq"],
        tombstones=raw["tombstones"],
        num_blocks=raw["num_blocks"],
        data_size=raw["data_size"],
        bits_per_key=raw["bits_per_key"],
        block_size=raw["block_size"],
    )


def _decode_index(
    payload: bytes, path: str, offset: int, data_end: int, props: TableProperties
) -> tuple[list[bytes], list[int], list[int]]:
    raw = _unpack(payload, "index", path, offset)
    if type(raw) is not list or len(raw) != 3 or not all(type(part) is list for part in raw):
        raise CorruptionError("index block is not [last_keys, offsets, sizes]", path=path, offset=offset)
    last_keys, offsets, sizes = raw
    n = props.num_blocks
    if not len(last_keys) == len(offsets) == len(sizes) == n:
        raise CorruptionError(
            f"index has {len(last_keys)} entries, the properties say {n} blocks", path=path, offset=offset
        )
    if not (
        all(type(k) is bytes for k in last_keys)
        and all(type(x) is int for x in offsets)
        and all(type(x) is int and x > BLOCK_TRAILER_SIZE for x in sizes)
    ):
        raise CorruptionError("index entry of the wrong type", path=path, offset=offset)
    # Blocks tile [HEADER_SIZE, data_end) in order, and their last keys never decrease.
    if offsets != list(accumulate(sizes[:-1], initial=HEADER_SIZE)) or offsets[-1] + sizes[-1] != data_end:
        raise CorruptionError("index block handles do not tile the data area", path=path, offset=offset)
    if not all(map(le, last_keys, islice(last_keys, 1, None))):
        raise CorruptionError("index keys out of order", path=path, offset=offset)
    if last_keys[0] < props.smallest or last_keys[-1] != props.largest or data_end - HEADER_SIZE != props.data_size:
        raise CorruptionError("index does not match the table properties", path=path, offset=offset)
    return last_keys, offsets, sizes
