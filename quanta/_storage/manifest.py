"""The MANIFEST (a log of version edits) and the CURRENT pointer to it.

Invariants:

* A MANIFEST's first record is a *base* edit: a full snapshot of the version (every live
  table, the WAL number, the next file number, the last sequence number). Later records are
  deltas. Replaying them in order rebuilds the version; applying them is the caller's job
  (``version.py``), this module owns only the formats.
* An edit is acted on (files deleted, WALs retired) only after :meth:`ManifestWriter.append`
  returned, which syncs it. So an edit lost in a torn tail was never acted on, and a torn
  tail is tolerated exactly as in the WAL.
* CURRENT names a MANIFEST only after that manifest's base edit is durable, and CURRENT is
  replaced atomically: ``CURRENT.tmp`` is written and synced, renamed over ``CURRENT``, and
  the directory is synced (which also makes the new MANIFEST's own directory entry durable).
  After a crash at any point CURRENT names either the old manifest or the new one, and
  either is complete.

Concurrency: a :class:`ManifestWriter` needs external synchronization (one version-edit
writer at a time).

A MANIFEST is a record log (``log.py``: 32-byte FileHeader with ``MANIFEST_MAGIC`` and the
manifest number, then ``crc32 | length | type | payload`` records). Each payload is one
version edit, a msgpack map with short string keys; a field that is absent is unchanged
(the constants here are part of the on-disk format)::

    key  value                          meaning
    "l"  uint                           log_number: WALs numbered below it are obsolete
    "n"  uint                           next_file_number
    "s"  uint                           last_seq: the highest sequence number in tables
    "a"  array of [level, filemeta]     tables added
    "d"  array of [level, number]       tables deleted

    filemeta = [number, size, smallest, largest, min_seq, max_seq, entries]
               uint    uint  bin       bin      uint     uint     uint

Worked example: an edit adding table 7 (4096 bytes, keys b"a"..b"f", seqs 1..20, 20
entries) to level 0 and deleting table 3 from level 1::

    82                          map of 2
    a1 61  91 92 00 97 07 cd 10 00 c4 01 61 c4 01 66 01 14 14
           "a": [[0, [7, 4096, b"a", b"f", 1, 20, 20]]]
    a1 64  91 92 01 03          "d": [[1, 3]]

An unknown key is CorruptionError, not ignored: new fields come with a new FormatVersion in
the file header, and silently dropping a field a newer writer relied on could lose tables.

CURRENT is text, two lines (departure from LevelDB, whose CURRENT is the name alone: the
checksum line turns a bit flip in the name -- which could point at an older manifest that
still exists -- into a clear error instead of silently older data)::

    MANIFEST-000005\\n
    crc32 f486b7ba\\n        (CRC-32 of the first line, newline included, 8 lowercase hex digits)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import CorruptionError
from .filenames import CURRENT, manifest_name
from .format import MANIFEST_MAGIC, checksum
from .log import LogWriter, read_log
from .vfs import FileSystem, write_synced

__all__ = [
    "FileMeta",
    "ManifestWriter",
    "VersionEdit",
    "read_current",
    "replay_manifest",
    "set_current",
]

CURRENT_TMP = CURRENT + ".tmp"
_EDIT_KEYS = frozenset({"l", "n", "s", "a", "d"})
_CURRENT_RE = re.compile(rb"\A(MANIFEST-(\d{6,}))\ncrc32 ([0-9a-f]{8})\n\Z")


def _is_uint(x: object) -> bool:
    return type(x) is int and x >= 0


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the manifest records about one SSTable."""

    number: int
    size: int
    smallest: bytes
    largest: bytes
    min_seq: int
    max_seq: int
    entries: int

    def to_wire(self) -> list[Any]:
        """The msgpack form: ``[number, size, smallest, largest, min_seq, max_seq, entries]``."""
        return [self.number, self.size, self.smallest, self.largest, self.min_seq, self.max_seq, self.entries]

    @classmethod
    def from_wire(cls, wire: object, *, path: str = "<wire>", offset: int | None = None) -> FileMeta:
        """Inverse of :meth:`to_wire`; CorruptionError (naming ``path``) on a bad shape."""
        if type(wire) is not list or len(wire) != 7:
            raise CorruptionError("table metadata is not a 7-element array", path=path, offset=offset)
        number, size, smallest, largest, min_seq, max_seq, entries = wire
        if not all(_is_uint(x) for x in (number, size, min_seq, max_seq, entries)):
            raise CorruptionError("table metadata has a non-integer or negative field", path=path, offset=offset)
        if type(smallest) is not bytes or type(largest) is not bytes:
            raise CorruptionError("table metadata key bounds are not bytes", path=path, offset=offset)
        return cls(number, size, smallest, largest, min_seq, max_seq, entries)


@dataclass
class VersionEdit:
    """A change to the set of live tables and counters (``None``: unchanged)."""

    log_number: int | None = None
    next_file_number: int | None = None
    last_seq: int | None = None
    added: list[tuple[int, FileMeta]] = field(default_factory=list)  # (level, table)
    deleted: list[tuple[int, int]] = field(default_factory=list)  # (level, table number)

    def encode(self) -> bytes:
        """The msgpack payload of one manifest record (see the module docstring)."""
        m: dict[str, Any] = {}
        if self.log_number is not None:
            m["l"] = self.log_number
        if self.next_file_number is not None:
            m["n"] = self.next_file_number
        if self.last_seq is not None:
            m["s"] = self.last_seq
        if self.added:
            m["a"] = [[level, meta.to_wire()] for level, meta in self.added]
        if self.deleted:
            m["d"] = [[level, number] for level, number in self.deleted]
        payload: bytes = msgpack.packb(m, use_bin_type=True)
        return payload

    @classmethod
    def decode(cls, payload: bytes, *, path: str, offset: int) -> VersionEdit:
        """Parse one manifest record payload; CorruptionError (naming path, offset) if bad."""
        try:
            m = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
        except (ValueError, msgpack.UnpackException) as exc:
            raise CorruptionError(f"version edit is not valid msgpack: {exc}", path=path, offset=offset) from exc

        def bad(what: str) -> CorruptionError:
            return CorruptionError(f"malformed version edit: {what}", path=path, offset=offset)

        if type(m) is not dict:
            raise bad("not a map")
        unknown = set(m) - _EDIT_KEYS
        if unknown:
            raise bad(f"unknown fields {sorted(map(repr, unknown))}")
        edit = cls()
        for key, name in (("l", "log_number"), ("n", "next_file_number"), ("s", "last_seq")):
            if key in m:
                if not _is_uint(m[key]):
                    raise bad(f"{name} is not a non-negative integer")
                setattr(edit, name, m[key])
        added, deleted = m.get("a", []), m.get("d", [])
        for items, what in ((added, "added"), (deleted, "deleted")):
            if type(items) is not list or not all(
                type(it) is list and len(it) == 2 and _is_uint(it[0]) for it in items
            ):
                raise bad(f"{what} is not an array of [level, ...] pairs")
        edit.added = [(level, FileMeta.from_wire(wire, path=path, offset=offset)) for level, wire in added]
        if not all(_is_uint(number) for _, number in deleted):
            raise bad("a deleted table number is not a non-negative integer")
        edit.deleted = [(level, number) for level, number in deleted]
        return edit


class ManifestWriter:
    """Appends version edits to one MANIFEST; every append is synced before it returns."""

    __slots__ = ("_log", "number", "path")

    def __init__(self, log: LogWriter, number: int) -> None:
        self._log = log
        self.number = number
        self.path = log.path

    @classmethod
    def create(cls, fs: FileSystem, dirpath: str, number: int, base: VersionEdit) -> ManifestWriter:
        """Create ``MANIFEST-number`` holding ``base`` (a full snapshot), synced.

        The directory is not synced here; :func:`set_current` does that, and nothing may
        rely on this manifest before it has returned.
        """
        log = LogWriter.create(fs, os.path.join(dirpath, manifest_name(number)), MANIFEST_MAGIC, number)
        try:
            log.add_record(base.encode())
            log.sync()
        except BaseException:
            log.close()
            raise
        return cls(log, number)

    @property
    def size(self) -> int:
        return self._log.size

    def append(self, edit: VersionEdit) -> None:
        """Write ``edit`` and sync it: the edit is durable when this returns."""
        self._log.add_record(edit.encode())
        self._log.sync()

    def close(self) -> None:
        self._log.close()


def replay_manifest(fs: FileSystem, path: str, number: int) -> list[VersionEdit]:
    """The edits of the MANIFEST at ``path``, base edit first (see :func:`read_manifest`)."""
    return read_manifest(fs, path, number)[0]


def read_manifest(fs: FileSystem, path: str, number: int) -> tuple[list[VersionEdit], str]:
    """The edits of the MANIFEST at ``path``, base edit first, and how its tail looked.

    A torn tail is dropped (its edit never finished syncing, so it was never acted on; a
    damaged final record looks the same, so the engine checks the files the remaining
    edits describe before trusting that, see ``engine._recover``).
    Mid-file damage, a bad header, a wrong number or a manifest without its base edit is
    CorruptionError: a manifest has no salvage mode, because guessing which tables are live
    risks deleting data.
    """
    contents = read_log(fs, path, MANIFEST_MAGIC, number)
    if not contents.records:
        raise CorruptionError("manifest holds no base version edit", path=path, offset=contents.valid_end)
    edits = [
        VersionEdit.decode(payload, path=path, offset=offset)
        for payload, offset in zip(contents.records, contents.offsets, strict=True)
    ]
    return edits, contents.tail


def set_current(fs: FileSystem, dirpath: str, manifest_number: int) -> None:
    """Point CURRENT at ``MANIFEST-manifest_number``, durably and atomically.

    Exactly: create ``CURRENT.tmp``, write it, sync it, rename it over ``CURRENT``, sync the
    directory. Requires: that manifest's base edit is durable (``ManifestWriter.create``).
    """
    first = manifest_name(manifest_number).encode() + b"\n"
    text = first + b"crc32 %08x\n" % checksum(first)
    tmp = os.path.join(dirpath, CURRENT_TMP)
    write_synced(fs, tmp, text)
    fs.rename(tmp, os.path.join(dirpath, CURRENT))
    fs.sync_dir(dirpath)


def read_current(fs: FileSystem, dirpath: str) -> int:
    """The number of the manifest CURRENT names.

    CorruptionError naming CURRENT if its contents are not what :func:`set_current` writes;
    StorageIOError (ENOENT) if there is no CURRENT.
    """
    path = os.path.join(dirpath, CURRENT)
    data = fs.read_all(path)
    m = _CURRENT_RE.match(data)
    if m is None:
        raise CorruptionError(f"CURRENT is not a manifest name and checksum: {data[:64]!r}", path=path, offset=0)
    if int(m.group(3), 16) != checksum(m.group(1) + b"\n"):
        raise CorruptionError("CURRENT checksum mismatch", path=path, offset=0)
    return int(m.group(2))
