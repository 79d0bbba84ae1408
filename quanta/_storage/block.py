"""Data blocks: the unit an SSTable reads, checksums and caches.

A data block holds a run of consecutive table entries ``(key, seq, value)``, sorted by key
ascending and, within a key, by seq descending (newest version first). ``value`` is ``None``
for a tombstone. A block is never empty.

Payload (the bytes the block frame protects) is one msgpack array of three parallel arrays::

    +------------+-----------------------+-----------------------+-----------------------+
    | fixarray 3 | array N of bin        | array N of uint       | array N of bin | nil  |
    | 0x93       | keys                  | seqs                  | values (nil = tombstone)|
    +------------+-----------------------+-----------------------+-----------------------+

    array N : 0x90|N (N <= 15), 0xdc + u16 big-endian, or 0xdd + u32 big-endian
    bin     : 0xc4 + u8 length, 0xc5 + u16 big-endian, or 0xc6 + u32 big-endian, then bytes
    uint    : positive fixint 0x00-0x7f, or 0xcc u8 | 0xcd u16 | 0xce u32 | 0xcf u64 (big-endian)
    nil     : 0xc0

(msgpack's own integers are big-endian; the little-endian rule of ``format.py`` covers the
fields QuantaDB lays out itself.) On disk the payload is framed by ``format.frame_block``::

    payload || frame_type u8 (0 = plain) || crc32 u32 little-endian (of payload || frame_type)

Worked example: the entries ``(b"a", 2, b"x")``, ``(b"a", 1, None)``, ``(b"b", 5, b"yz")``::

    93                                 array of 3
    93 c4 01 61 c4 01 61 c4 01 62      keys   [b"a", b"a", b"b"]
    93 02 01 05                        seqs   [2, 1, 5]
    93 c4 01 78 c0 c4 02 79 7a         values [b"x", None, b"yz"]
    00 b8 97 97 5f                     frame: type 0, crc32 0x5f9797b8

These constants and this layout are part of the on-disk format: changing them makes existing
tables unreadable (a new layout needs a new ``FormatVersion``).

Why three parallel arrays rather than LevelDB's prefix-compressed entries with restart points:
decoding must be one ``msgpack.unpackb`` call (C speed) that yields exactly what a lookup
needs, a list of keys to ``bisect`` and two lists indexed alike. Prefix compression would save
bytes but cost a Python-level loop per entry on every cache miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from ..errors import CorruptionError

__all__ = [
    "BLOCK_OVERHEAD_BOUND",
    "Block",
    "decode_block",
    "encode_block",
    "entry_overhead",
    "entry_size",
]

# The payload bytes a block adds on top of its entries: the outer array header plus three
# array headers of at most 5 bytes each.
BLOCK_OVERHEAD_BOUND = 1 + 3 * 5

_packb = msgpack.packb
_unpackb = msgpack.unpackb


class Block:
    """A decoded data block: three parallel lists, sorted as the module docstring says."""

    __slots__ = ("_positions", "keys", "seqs", "values")

    def __init__(self, keys: list[bytes], seqs: list[int], values: list[bytes | None]) -> None:
        self.keys = keys
        self.seqs = seqs
        self.values = values
        self._positions: dict[bytes, int] | None = None

    def positions(self) -> dict[bytes, int]:
        """Each key's first (newest) position, built once per decoded block: batched point
        reads (``get_many``) look keys up in it instead of bisecting for each."""
        positions = self._positions
        if positions is None:
            n = len(self.keys)
            # assigning in reverse order leaves each key's first position in the dict
            positions = self._positions = dict(zip(reversed(self.keys), range(n - 1, -1, -1), strict=True))
        return positions

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"Block({len(self.keys)} entries, {self.keys[0]!r}..{self.keys[-1]!r})"


def encode_block(keys: Sequence[bytes], seqs: Sequence[int], values: Sequence[bytes | None]) -> bytes:
    """The payload of a block holding the given entries (not yet framed).

    Requires: the three sequences have the same non-zero length and hold entries in table
    order; keys and values are ``bytes`` (``None`` for a tombstone), seqs are in ``[0, 2**64)``.
    """
    return _packb((keys, seqs, values), use_bin_type=True)  # type: ignore[no-any-return]


def decode_block(payload: bytes, *, path: str = "<block>", offset: int | None = None) -> Block:
    """Decode a block payload (already checked and stripped by ``format.unframe_block``).

    Raises CorruptionError naming ``path`` and ``offset`` when the payload is not a block.
    Only the shape is checked here (one C call plus a few length checks); the per-entry
    types and ordering are checked by ``TableReader.verify``, because a payload that passed its
    CRC is what the writer wrote.
    """
    try:
        obj = _unpackb(payload)
    except Exception as exc:  # msgpack raises several types (ValueError, FormatError, StackError...)
        raise CorruptionError(f"undecodable data block: {exc}", path=path, offset=offset) from exc
    if type(obj) is not list or len(obj) != 3:
        raise CorruptionError("data block is not [keys, seqs, values]", path=path, offset=offset)
    keys, seqs, values = obj
    if type(keys) is not list or type(seqs) is not list or type(values) is not list:
        raise CorruptionError("data block is not [keys, seqs, values]", path=path, offset=offset)
    if not keys or len(seqs) != len(keys) or len(values) != len(keys):
        raise CorruptionError(
            f"data block has {len(keys)} keys, {len(seqs)} seqs and {len(values)} values",
            path=path,
            offset=offset,
        )
    return Block(keys, seqs, values)


def _bin_header(length: int) -> int:
    return 2 if length < 0x100 else 3 if length < 0x10000 else 5


def _uint_size(value: int) -> int:
    return 1 if value < 0x80 else 2 if value < 0x100 else 3 if value < 0x10000 else 5 if value < 1 << 32 else 9


def entry_overhead(key_len: int, value_len: int | None, seq: int) -> int:
    """Payload bytes one entry adds besides its key and value bytes (msgpack headers and seq).

    ``value_len`` is ``None`` for a tombstone. The entry's exact payload contribution is
    ``key_len + (value_len or 0) + entry_overhead(...)``; the block adds at most
    ``BLOCK_OVERHEAD_BOUND`` on top. For a batch, passing the largest key length, value length
    and seq bounds every entry of the batch, because each msgpack header only grows with what
    it encodes (and a tombstone's nil is smaller than any bin header).
    """
    return _bin_header(key_len) + _uint_size(seq) + (1 if value_len is None else _bin_header(value_len))


def entry_size(key: bytes, seq: int, value: bytes | None) -> int:
    """Exact payload bytes the entry adds to a block (its share of ``entry_overhead`` included).

    The same sum as ``len(key) + len(value or b"") + entry_overhead(...)``, written out in one
    function because ``TableBuilder.add`` calls it for every entry.
    Requires: ``0 <= seq < 2**64``.
    """
    n = len(key)
    size = n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)
    size += 1 if seq < 0x80 else 2 if seq < 0x100 else 3 if seq < 0x10000 else 5 if seq < 1 << 32 else 9
    if value is None:
        return size + 1
    n = len(value)
    return size + n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)
