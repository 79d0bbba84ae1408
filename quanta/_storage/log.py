"""The record log: the framing shared by WAL segments and the MANIFEST.

One piece of code for both, as in LevelDB, whose manifest is written in its log format.
A log is append-only; a writer never reopens a file to append to it, so a damaged tail is
never written over (recovery always starts a new file).

Concurrency: a :class:`LogWriter` needs external synchronization. ``add_record`` runs on one
thread (the commit path); ``sync`` may run on one worker thread (group commit) at the same
time: POSIX allows ``write`` and ``fdatasync`` on one descriptor at once, and a sync makes
durable at least every record whose ``add_record`` returned before the sync started.

Layout (every integer little-endian; the constants in this module are part of the on-disk
format: changing one makes existing databases unreadable)::

    +-------------------------------+  offset 0
    | FileHeader (32 bytes)         |  format.py: magic (WAL or MANIFEST), version, number, crc
    +-------------------------------+  offset 32
    | record 0                      |
    +-------------------------------+
    | record 1                      |
    +-------------------------------+
    | ...                           |

    record:
    +-----------+------------+---------+-----------------+
    | crc32 u32 | length u32 | type u8 | payload[length] |
    +-----------+------------+---------+-----------------+
      4 bytes     4 bytes      1 byte    length bytes

``crc32`` is ``zlib.crc32`` over ``length || type || payload`` (the 5 header bytes after the
crc, then the payload). ``length`` is at most :data:`MAX_RECORD_LENGTH` (512 MiB). ``type``
is a :class:`RecordType`: 1 = a full record. 0 is never valid, so zero-filled space (which a
file system may leave after a crash) never parses as a record; 2..255 are reserved (for
example for LevelDB-style FIRST/MIDDLE/LAST fragments, should records ever need splitting).

Worked example: the record holding the 5-byte payload ``b"hello"``::

    0c 21 cd 3e   05 00 00 00   01     68 65 6c 6c 6f
    crc32         length = 5    FULL   "hello"

    where 0x3ecd210c == zlib.crc32(b"\\x05\\x00\\x00\\x00\\x01hello")

Reading rules (:func:`read_log`):

1. The file header must be whole and valid and carry the expected magic and file number,
   else :class:`CorruptionError`. Exception: a 0-byte file is an empty log with
   ``tail="torn"`` -- the file was created but the process died before its header was
   written (``LogWriter.create`` syncs the header at once, so this window is one call wide).
2. Records are read in order until one is *bad*: its header is incomplete, its length is
   over the maximum or runs past the end of the file, its checksum fails, or its type is
   unknown.
3. At a bad record the rest of the file is scanned byte by byte for a *valid* record (a
   position where a header parses, the type is known, the length fits in the file and the
   checksum matches; the scan jumps between bytes equal to a known type with a C-speed
   search, so most positions cost nothing).

   * None follows: the bad bytes are a torn tail left by a crash during an append. They are
     dropped (``tail="torn"``, ``dropped_bytes`` counts them). Such a record was never
     acknowledged as durable, because its sync never returned.
   * One follows: the damage is in the middle of the file, which no crash produces.
     :class:`CorruptionError` names the path and the offset of the bad record -- unless
     ``salvage=True``, which skips to the valid record and goes on (``tail="salvaged"``;
     ``dropped_bytes`` counts every skipped byte, a torn tail after it too).
   * A record of unknown type *with a good checksum* was written on purpose, by a newer
     format: always CorruptionError (salvage skips it).

Departures and limits, said plainly:

* Damage confined to the last record(s) of a file is indistinguishable from a torn write and
  is dropped as one. The caller sees ``tail="torn"`` with ``dropped_bytes > 0`` and can
  report it (for a WAL that was synced to its end before it was retired, it is data loss).
* A torn tail whose partial payload happens to contain the bytes of a complete, valid record
  (a payload that embeds a log record) is reported as mid-file corruption: a loud false
  positive, recoverable with ``salvage=True``, never a silent loss.
* There is no 32 KiB block structure as in LevelDB: records are not fragmented, and the
  resynchronising scan above replaces block boundaries as the way to find the next record.
  Files are read whole (WAL segments are bounded by the memtable size).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from ..errors import CorruptionError, LimitExceededError, StorageIOError
from .format import HEADER_SIZE, FileHeader, checksum
from .vfs import FileSystem, WritableFile

__all__ = [
    "MAX_RECORD_LENGTH",
    "RECORD_HEADER_SIZE",
    "LogContents",
    "LogWriter",
    "RecordType",
    "Tail",
    "read_log",
]

RECORD_HEADER_SIZE = 9
MAX_RECORD_LENGTH = 512 * 1024 * 1024

_RECORD_HEADER = struct.Struct("<IIB")  # crc32, length, type
_LENGTH_TYPE = struct.Struct("<IB")
_CRC_LENGTH = struct.Struct("<II")


class RecordType(IntEnum):
    """The type byte of a record. 0 is never valid (zeroed space); 2..255 are reserved."""

    FULL = 1  # the whole payload in one record


_FULL = int(RecordType.FULL)
_KNOWN_TYPES = frozenset(int(t) for t in RecordType)
# Candidate record starts during a resync scan: positions whose type byte is a known type.
_TYPE_BYTE = re.compile(b"[" + b"".join(re.escape(bytes([t])) for t in sorted(_KNOWN_TYPES)) + b"]")

Tail = Literal["clean", "torn", "salvaged"]


def _record_header(payload: bytes) -> bytes:
    length = len(payload)
    if length > MAX_RECORD_LENGTH:
        raise LimitExceededError(f"log record of {length} bytes is over the limit of {MAX_RECORD_LENGTH} bytes")
    return _RECORD_HEADER.pack(checksum(payload, checksum(_LENGTH_TYPE.pack(length, _FULL))), length, _FULL)


class LogWriter:
    """Appends checksummed records to a new log file.

    After a failed write or sync the writer refuses further records (raising
    :class:`StorageIOError`): a record appended after a partly written one would turn a
    recoverable torn tail into mid-file corruption, and after a failed fsync the page cache
    can no longer be trusted to hold what it was asked to persist.
    """

    __slots__ = ("_failed", "_file", "_size", "path")

    def __init__(self, file: WritableFile, size: int) -> None:
        self._file: WritableFile | None = file
        self._size = size
        self._failed: StorageIOError | None = None
        self.path = file.path

    @classmethod
    def create(cls, fs: FileSystem, path: str, magic: bytes, file_number: int) -> LogWriter:
        """Create ``path`` (truncating any old file), write the file header and sync it.

        Syncing here means a log that survives a crash with its directory entry has a whole
        header. The directory is not synced: that is the caller's job (for the WAL, before
        its first commit is acknowledged; for the MANIFEST, ``set_current`` does it).
        """
        file = fs.create(path)
        try:
            header = FileHeader(magic=magic, file_number=file_number).encode()
            file.write(header)
            file.sync()
        except BaseException:
            file.close()
            raise
        return cls(file, len(header))

    @property
    def size(self) -> int:
        """Bytes written to the file so far, header included."""
        return self._size

    def _usable(self) -> WritableFile:
        if self._failed is not None:
            raise StorageIOError(
                f"log {self.path} is unusable after an earlier I/O failure", errno=self._failed.errno, path=self.path
            ) from self._failed
        if self._file is None:
            raise ValueError(f"log writer for {self.path} is closed")
        return self._file

    def add_record(self, payload: bytes) -> None:
        """Append one record with one ``write`` call (header and payload together).

        Not durable until :meth:`sync` returns. Requires: ``len(payload) <=
        MAX_RECORD_LENGTH``, else LimitExceededError and nothing is written.
        """
        self._write(_record_header(payload) + payload)

    def add_records(self, payloads: Sequence[bytes]) -> None:
        """Append several records with one ``write`` call (for a group commit's batches).

        Same rules as :meth:`add_record`; a payload over the limit rejects them all and
        nothing is written. A crash may keep any prefix of them, as with separate calls.
        """
        if not payloads:
            return
        parts: list[bytes] = []
        for payload in payloads:
            parts.append(_record_header(payload))
            parts.append(payload)
        self._write(b"".join(parts))

    def _write(self, data: bytes) -> None:
        file = self._usable()
        try:
            file.write(data)
        except StorageIOError as exc:
            self._failed = exc
            raise
        self._size += len(data)

    def sync(self) -> None:
        """Make every record added so far durable."""
        file = self._usable()
        try:
            file.sync()
        except StorageIOError as exc:
            self._failed = exc
            raise

    def close(self) -> None:
        """Close the file without syncing it. Idempotent."""
        file, self._file = self._file, None
        if file is not None:
            file.close()


@dataclass
class LogContents:
    """What :func:`read_log` found (the rules are in the module docstring)."""

    records: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # file offset of each record's header
    valid_end: int = 0  # offset just past the last good record (the header's end if none)
    tail: Tail = "clean"
    dropped_bytes: int = 0
    file_size: int = 0


def _diagnose(data: bytes, pos: int) -> tuple[str, int | None]:
    """Why the record at ``pos`` is bad, and where it ends if it is complete and checksummed.

    The end is given only for a record of unknown type with a good checksum: it was written
    on purpose (by a newer format), so it is corruption for this reader, never a torn tail.
    """
    n = len(data)
    if n - pos < RECORD_HEADER_SIZE:
        return f"truncated record header ({n - pos} of {RECORD_HEADER_SIZE} bytes)", None
    crc, length, rtype = _RECORD_HEADER.unpack_from(data, pos)
    if length > MAX_RECORD_LENGTH:
        return f"record length {length} is over the limit of {MAX_RECORD_LENGTH}", None
    end = pos + RECORD_HEADER_SIZE + length
    if end > n:
        return f"record length {length} runs past the end of the file", None
    if checksum(memoryview(data)[pos + 4 : end]) != crc:
        return "record checksum mismatch", None
    return f"unknown record type {rtype}", end


def _next_valid(data: bytes, start: int) -> int | None:
    """The first offset ``>= start`` where a valid record begins, or None."""
    n = len(data)
    view = memoryview(data)
    type_pos = start + 8
    while (m := _TYPE_BYTE.search(data, type_pos)) is not None:
        type_pos = m.start()
        pos = type_pos - 8
        type_pos += 1
        crc, length = _CRC_LENGTH.unpack_from(data, pos)
        end = pos + RECORD_HEADER_SIZE + length
        if length <= MAX_RECORD_LENGTH and end <= n and checksum(view[pos + 4 : end]) == crc:
            return pos
    return None


def read_log(fs: FileSystem, path: str, magic: bytes, file_number: int | None, *, salvage: bool = False) -> LogContents:
    """Read every record of the log at ``path`` (the rules are in the module docstring).

    ``file_number`` is checked against the header unless it is None. Damage raises
    :class:`CorruptionError` naming ``path`` and an offset; I/O failures StorageIOError.
    """
    data = fs.read_all(path)
    n = len(data)
    out = LogContents(file_size=n)
    if n == 0:
        out.tail = "torn"
        return out
    header = FileHeader.decode(data, path=path, expect_magic=magic)
    if file_number is not None and header.file_number != file_number:
        raise CorruptionError(
            f"file number mismatch: the header says {header.file_number}, expected {file_number}", path=path, offset=16
        )
    add_record, add_offset = out.records.append, out.offsets.append
    unpack = _RECORD_HEADER.unpack_from
    view = memoryview(data)
    pos = out.valid_end = HEADER_SIZE
    while pos < n:
        # The fast path: a few C calls per record and no per-byte work. unpack_from raises
        # struct.error on a truncated header; _diagnose explains every failure.
        start = pos
        try:
            while True:
                crc, length, rtype = unpack(data, pos)
                end = pos + RECORD_HEADER_SIZE + length
                if end > n or rtype != _FULL or checksum(view[pos + 4 : end]) != crc:
                    break
                add_record(data[pos + RECORD_HEADER_SIZE : end])
                add_offset(pos)
                pos = end
        except struct.error:
            pass
        if pos != start:
            out.valid_end = pos
        if pos == n:
            break
        reason, complete_end = _diagnose(data, pos)
        if complete_end is not None:
            resume = complete_end
        else:
            found = _next_valid(data, pos + 1)
            if found is None:  # nothing valid follows: a torn tail
                out.dropped_bytes += n - pos
                if out.tail == "clean":
                    out.tail = "torn"
                break
            resume = found
            reason += f"; a valid record follows at offset {resume}"
        if not salvage:
            raise CorruptionError(reason, path=path, offset=pos)
        out.dropped_bytes += resume - pos
        out.tail = "salvaged"
        pos = resume
    return out
