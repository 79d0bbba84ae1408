"""The write-ahead log: one record per committed batch, replayed on open.

Invariants: a WAL segment is written by one commit path (external synchronization, see
``log.py``); the sequence numbers of its batches strictly increase; a batch is durable once a
``sync`` that started after its ``append`` returns. A segment is never appended to after the
process that created it stops: recovery replays it and moves on to a new segment.

A segment ``NNNNNN.wal`` is a record log (``log.py``: 32-byte FileHeader with ``WAL_MAGIC`` and
the segment number, then ``crc32 | length | type | payload`` records). The payload of one
record is one batch, a msgpack array (the constants here are part of the on-disk format)::

    [seq, keys, values]
      seq     uint   the sequence number of the batch (strictly increasing within a segment)
      keys    array of bin      one per operation, in batch order
      values  array of bin|nil  same length as keys; nil is a delete of that key

Worked example: batch 7 putting ``k1 = v1`` and deleting ``k2``::

    93                 array of 3
    07                 seq = 7
    92 c4 02 6b 31     keys:   [bin "k1",
       c4 02 6b 32              bin "k2"]
    92 c4 02 76 31     values: [bin "v1",
       c0                       nil]

Why two parallel arrays rather than a list of (key, value) pairs: msgpack encodes and decodes
flat lists of bytes in C, so a 100k-operation batch costs two C calls and no per-operation
Python work; pairs would need a Python loop to build and to split.

How the engine applies a batch's sequence number to its operations (one number per batch or
one per operation) is the commit path's business; this module only checks that numbers
increase from one record to the next.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack

from ..errors import CorruptionError
from .filenames import wal_name
from .format import WAL_MAGIC
from .log import LogWriter, Tail, read_log
from .vfs import FileSystem

__all__ = ["Batch", "WalReplay", "WalWriter", "decode_batch", "encode_batch", "replay_wal"]

Batch = tuple[int, list[bytes], list[bytes | None]]


def encode_batch(seq: int, keys: list[bytes], values: list[bytes | None]) -> bytes:
    """Encode one batch as a WAL record payload.

    Requires: ``keys`` are bytes and ``values`` bytes or None, validated by the caller (this
    runs on the commit path and does no per-operation checks); ``len(keys) == len(values)``.
    """
    if len(keys) != len(values):
        raise ValueError(f"batch has {len(keys)} keys but {len(values)} values")
    payload: bytes = msgpack.packb([seq, keys, values], use_bin_type=True)
    return payload


def decode_batch(payload: bytes, *, path: str, offset: int) -> Batch:
    """Decode a WAL record payload; CorruptionError (naming ``path``, ``offset``) if malformed."""
    try:
        obj = msgpack.unpackb(payload, raw=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptionError(f"WAL batch is not valid msgpack: {exc}", path=path, offset=offset) from exc
    # One chain of cheap checks for the common shapes; _shape_error explains a failure.
    # set(map(type, ...)) runs in C: no per-operation bytecode for large batches.
    if type(obj) is list and len(obj) == 3:
        seq, keys, values = obj
        if type(seq) is int and seq >= 0 and type(keys) is list and type(values) is list and len(keys) == len(values):
            if len(keys) == 1:
                if type(keys[0]) is bytes and (values[0] is None or type(values[0]) is bytes):
                    return seq, keys, values
            elif set(map(type, keys)) <= _KEY_TYPES and set(map(type, values)) <= _VALUE_TYPES:
                return seq, keys, values
    raise CorruptionError(f"malformed WAL batch: {_shape_error(obj)}", path=path, offset=offset)


_KEY_TYPES = frozenset({bytes})
_VALUE_TYPES = frozenset({bytes, type(None)})


def _shape_error(obj: object) -> str:
    if type(obj) is not list or len(obj) != 3:
        return "not a [seq, keys, values] array"
    seq, keys, values = obj
    if type(seq) is not int or seq < 0:
        return f"sequence number {seq!r} is not a non-negative integer"
    if type(keys) is not list or type(values) is not list or len(keys) != len(values):
        return "keys and values are not arrays of one length"
    if not set(map(type, keys)) <= _KEY_TYPES:
        return "a key is not bytes"
    return "a value is neither bytes nor nil"


class WalWriter:
    """Appends batch payloads to one WAL segment (a thin layer over :class:`LogWriter`)."""

    __slots__ = ("_log", "number", "path")

    def __init__(self, log: LogWriter, number: int) -> None:
        self._log = log
        self.number = number
        self.path = log.path

    @classmethod
    def create(cls, fs: FileSystem, dirpath: str, number: int) -> WalWriter:
        """Create segment ``number`` in ``dirpath`` with a synced header.

        The directory is not synced: the caller must ``sync_dir`` before acknowledging the
        first batch written here, or a crash may lose the whole segment.
        """
        path = os.path.join(dirpath, wal_name(number))
        return cls(LogWriter.create(fs, path, WAL_MAGIC, number), number)

    @property
    def size(self) -> int:
        return self._log.size

    def append(self, payload: bytes) -> None:
        """Append one encoded batch (see :func:`encode_batch`); durable after :meth:`sync`."""
        self._log.add_record(payload)

    def append_many(self, payloads: Sequence[bytes]) -> None:
        """Append several encoded batches with one write (a group commit); see ``append``."""
        self._log.add_records(payloads)

    def sync(self) -> None:
        self._log.sync()

    def close(self) -> None:
        self._log.close()


@dataclass
class WalReplay:
    """The batches of one segment in order, and how its tail looked (see ``log.read_log``)."""

    batches: list[Batch] = field(default_factory=list)
    tail: Tail = "clean"
    dropped_bytes: int = 0
    valid_end: int = 0

    @property
    def last_seq(self) -> int | None:
        return self.batches[-1][0] if self.batches else None


def replay_wal(fs: FileSystem, path: str, number: int, *, salvage: bool = False) -> WalReplay:
    """Read every batch of the segment at ``path``.

    A torn tail is dropped; mid-file damage is CorruptionError unless ``salvage`` (which
    skips damaged records -- framing only: a record whose checksum holds but whose payload is
    malformed, or whose sequence number does not increase, is always CorruptionError).
    """
    contents = read_log(fs, path, WAL_MAGIC, number, salvage=salvage)
    batches: list[Batch] = []
    prev = -1
    for payload, offset in zip(contents.records, contents.offsets, strict=True):
        batch = decode_batch(payload, path=path, offset=offset)
        if batch[0] <= prev:
            raise CorruptionError(
                f"WAL sequence number {batch[0]} does not increase (previous batch has {prev})",
                path=path,
                offset=offset,
            )
        prev = batch[0]
        batches.append(batch)
    return WalReplay(batches, contents.tail, contents.dropped_bytes, contents.valid_end)
