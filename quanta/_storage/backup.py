"""Online backup: a consistent copy of a database as of one sequence number, taken while
writers keep writing, that opens as an ordinary database.

How (RocksDB's Checkpoint, with BackupEngine's incremental reuse and a completion rule):

1. **Picture.** On the event loop, in one step between manifest edits
   (:meth:`Engine.pin_for_backup`): the last visible sequence number ``seq``, the current
   version (its tables hold everything flushed) and the WAL segments behind the memtables
   (everything after). Those files are *pinned* (``pins.py``): a compaction or flush that
   makes one obsolete still runs, but the removal waits until the backup is done.
2. **Tables** are immutable: each is hard-linked into DEST (copied where the file system
   cannot link: another device, EPERM, ...). One already in DEST from an earlier backup is
   reused when it is the same file (a hard link of the source's) or has the same size and
   the same CRC-32 over its whole contents (both files are read: names are not trusted).
3. **The memtables** are not copied from memory (the active one keeps changing): their WAL
   segments are, into one new WAL segment in DEST, as raw record bytes up to where the
   last batch ``<= seq`` ends (the engine tracks that offset as batches become visible; a
   read-only database's segments are parsed instead). Opening the backup replays it, as
   after a crash; nothing the WAL held past ``seq`` is included.
4. **A fresh MANIFEST** names exactly the pinned tables, with ``log_number`` = DEST's WAL
   and ``last_seq = seq``; CURRENT points at it (``set_current``).

**A read-only open** (a follower of a writer in another process, whose deletions no pin can
defer) takes its picture with ``Follower.hold_state``: its installed version, the readers of
its tables and the WAL segments its memtables came from, each up to where the last batch it
applied ends, all kept open until the backup ends (the follower closes what it lets go
meanwhile only when the hold is released). Everything is read through those descriptors: a
table is hard-linked by name only if the link names the held file (``vfs.same_file``), else
copied from the held descriptor; reuse needs the held file itself or its size and CRC; the WAL
part is the held segments' raw records up to those ends, exactly the batches it applied.

Departure from RocksDB's Checkpoint: no flush first (it would cost write amplification, and
a read-only database cannot flush) and no copy of the live MANIFEST (a fresh one names just
the version of the picture).

Crash safety: ``BACKUP-PENDING`` is created, synced and its directory entry made durable
before anything else in DEST changes, and removed (then the directory synced) as the very
last step, after every file of the backup is synced and the directory with it. ``open()``
refuses a directory holding ``BACKUP-PENDING`` (CorruptionError), so an interrupted backup
never opens with partial data; running the backup again completes it. A new DEST that a
crash leaves empty opens as an empty new database, exactly as an absent one would.
While it runs, the backup holds DEST's LOCK (exclusive), so DEST cannot be opened meanwhile.

What DEST may hold before a backup: nothing (absent, or an empty directory), or an earlier
backup of the same database (its ``BACKUP`` or ``BACKUP-PENDING`` record names the source's
path): anything else -- a database, a backup of another database, a backup that was opened
and written to since, other files -- is refused before anything is written.

The ``BACKUP`` and ``BACKUP-PENDING`` records are text, three lines::

    QuantaDB backup 1\\n
    {"source": "/abs/db", "seq": 1234, "manifest": 57, "wal": 56, "tables": [12, 40], "created": 1.7e9}\\n
    crc32 1a2b3c4d\\n             (CRC-32 of the first two lines, 8 lowercase hex digits)

``seq``, ``manifest``, ``wal`` and ``tables`` are null in ``BACKUP-PENDING``. This layout is
part of the on-disk format.

Concurrency: every file operation runs in a worker thread (``anyio.to_thread``), one step
(one table, the WAL, the manifest, the final renames) at a time; no engine lock is held
across any of them, so commits, reads, flushes and compactions go on. ``progress`` is
called on the event loop between steps.
"""

from __future__ import annotations

import errno
import json
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread

from ..errors import (
    CorruptionError,
    DatabaseClosedError,
    DatabaseExistsError,
    InvalidArgumentError,
    NotADatabaseError,
    QuantaError,
    StorageIOError,
)
from . import filenames
from .format import HEADER_SIZE, WAL_MAGIC, FileHeader, checksum
from .manifest import CURRENT_TMP, ManifestWriter, read_current, set_current
from .vfs import FileLock, FileSystem, OSFileSystem, ReadableFile, WritableFile, same_file, write_synced

if TYPE_CHECKING:
    from .engine import Engine
    from .follower import HeldState
    from .version import Version

__all__ = ["BackupInfo", "backup"]

FORMAT_LINE = b"QuantaDB backup 1\n"
_CHUNK = 1 << 20
#: link() failures that mean "this file system cannot hard-link here": copy instead.
_NO_LINK = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}
)
_OURS = frozenset(
    {
        filenames.CURRENT,
        CURRENT_TMP,
        filenames.LOCK,
        filenames.BACKUP,
        filenames.BACKUP + ".tmp",
        filenames.BACKUP_PENDING,
    }
)

Progress = Callable[[int, int], None]
T = TypeVar("T")


@dataclass(frozen=True)
class BackupInfo:
    """What :meth:`quanta.Database.backup` made.

    The backup holds every commit up to and including ``seq`` and nothing after it.
    ``tables = linked + copied + reused``; ``wal_bytes`` is the size of the backup's WAL
    segment (the commits after the last flush: opening the backup replays them); ``bytes``
    is the size of every file of the backup, ``bytes_written`` what this run wrote (copied
    tables, the WAL, the manifest)."""

    path: str
    seq: int
    tables: int
    linked: int
    copied: int
    reused: int
    wal_bytes: int
    bytes: int
    bytes_written: int
    seconds: float


@dataclass(frozen=True)
class _Record:
    source: str
    seq: int | None = None
    manifest: int | None = None
    wal: int | None = None
    tables: tuple[int, ...] | None = None
    created: float = 0.0

    def encode(self) -> bytes:
        body = json.dumps(
            {
                "source": self.source,
                "seq": self.seq,
                "manifest": self.manifest,
                "wal": self.wal,
                "tables": None if self.tables is None else list(self.tables),
                "created": self.created,
            },
            sort_keys=True,
        ).encode()
        text = FORMAT_LINE + body + b"\n"
        return text + b"crc32 %08x\n" % checksum(text)

    @classmethod
    def decode(cls, data: bytes, path: str) -> _Record:
        lines = data.split(b"\n")
        if len(lines) != 4 or lines[3] != b"" or lines[0] + b"\n" != FORMAT_LINE:
            raise CorruptionError("not a QuantaDB backup record", path=path, offset=0)
        text = lines[0] + b"\n" + lines[1] + b"\n"
        if lines[2] != b"crc32 %08x" % checksum(text):
            raise CorruptionError("backup record checksum mismatch", path=path, offset=len(text))
        try:
            m: Any = json.loads(lines[1])
            tables = m["tables"]
            return cls(
                source=str(m["source"]),
                seq=m["seq"],
                manifest=m["manifest"],
                wal=m["wal"],
                tables=None if tables is None else tuple(int(t) for t in tables),
                created=float(m["created"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"malformed backup record: {exc}", path=path, offset=len(FORMAT_LINE)) from exc


def canonical(fs: FileSystem, path: str) -> str:
    """``path`` made absolute (symlinks resolved on real files), for comparing directories."""
    return os.path.realpath(path) if isinstance(fs, OSFileSystem) else os.path.normpath(os.path.abspath(path))


async def backup(engine: Engine, dest: str, progress: Progress | None = None) -> BackupInfo:
    """Back up ``engine``'s database into directory ``dest`` (see the module docstring).

    Requires: ``dest`` a non-empty str, ``progress`` None or callable (checked by the caller)."""
    started = time.perf_counter()
    engine.check_open()
    fs = engine.fs
    source = canonical(fs, engine.path)
    dest = canonical(fs, dest)
    if dest == source or dest.startswith(source.rstrip(os.sep) + os.sep):
        raise InvalidArgumentError(f"the backup destination {dest} is the database directory or inside it")
    await anyio.to_thread.run_sync(_inspect_dest, fs, dest, source)
    lock = await anyio.to_thread.run_sync(_begin, fs, dest, source)
    follower = engine.follower
    pins: list[str] = []
    held: HeldState | None = None
    try:
        if follower is not None:  # a read-only open: everything through its descriptors
            held = await follower.hold_state()
            seq, version = held.seq, held.version
            wals: list[tuple[int, ReadableFile | None, int | None]] = list(held.wals)
        else:
            seq, version, live_wals, pins = await engine.pin_for_backup()
            wals = [(n, None, end) for n, end in live_wals]
        existing = await anyio.to_thread.run_sync(fs.listdir, dest)
        numbers = [filenames.parse_name(n) for n in existing]
        top = max([engine.next_file_number, *(p[1] + 1 for p in numbers if p is not None)])
        if held is not None:  # above every table number it names (next_file_number is the writer's)
            top = max([top, *(m.number + 1 for _, m in version.files())])
        wal_no, manifest_no = top, top + 1
        # The WAL first: it is small, and its size completes the progress total.
        wal_bytes = await _step(engine, _write_wal, fs, engine.path, wals, dest, wal_no)
        metas = [m for _, m in version.files()]
        total = wal_bytes + sum(m.size for m in metas)
        done = wal_bytes
        if progress is not None:
            progress(done, total)
        counts = {"linked": 0, "copied": 0, "reused": 0}
        written = wal_bytes
        for meta in metas:
            _check_not_closed(engine)
            name = filenames.table_name(meta.number)
            src, dst = os.path.join(engine.path, name), os.path.join(dest, name)
            if held is not None:
                how = await _step(engine, _place_held_table, fs, held.readers[meta.number].file, src, dst, meta.size)
            else:
                how = await _step(engine, _place_table, fs, src, dst, meta.size)
            counts[how] += 1
            written += meta.size if how == "copied" else 0
            done += meta.size
            if progress is not None:
                progress(done, total)
        _check_not_closed(engine)
        record = _Record(source, seq, manifest_no, wal_no, tuple(m.number for m in metas), time.time())
        manifest_bytes = await anyio.to_thread.run_sync(_finish, fs, dest, version, seq, wal_no, manifest_no, record)
    finally:
        with anyio.CancelScope(shield=True):
            if held is not None:
                assert follower is not None
                follower.release()
            due = engine.pins.unpin(pins)
            await anyio.to_thread.run_sync(_release, fs, lock, [] if engine.closed else due)
    return BackupInfo(
        path=dest,
        seq=seq,
        tables=len(metas),
        linked=counts["linked"],
        copied=counts["copied"],
        reused=counts["reused"],
        wal_bytes=wal_bytes,
        bytes=total + manifest_bytes,
        bytes_written=written + manifest_bytes,
        seconds=time.perf_counter() - started,
    )


def _check_not_closed(engine: Engine) -> None:
    if engine.closed:
        raise DatabaseClosedError(f"the database at {engine.path} was closed during the backup")


async def _step(engine: Engine, func: Callable[..., T], *args: Any) -> T:
    """Run one step in a worker thread. A failure once the database was closed meanwhile is
    that close (a read-only open's close closes the descriptors the step reads)."""
    try:
        return await anyio.to_thread.run_sync(func, *args)
    except QuantaError as exc:
        if engine.closed:
            raise DatabaseClosedError(f"the database at {engine.path} was closed during the backup") from exc
        raise


# --------------------------------------------------------------------------- steps (threads)


def _inspect_dest(fs: FileSystem, dest: str, source: str) -> bool:
    """Refuse a DEST that holds anything but an earlier backup of ``source``; True if it holds
    one (complete or interrupted), False if DEST is absent or empty. Writes nothing."""
    if not fs.exists(dest):
        return False
    if not fs.isdir(dest):
        raise NotADatabaseError(f"the backup destination {dest} exists and is not a directory")
    names = [n for n in fs.listdir(dest) if n != filenames.LOCK]
    if not names:
        return False
    advice = "back up into a new or empty directory, or into one holding an earlier backup of this database"
    strangers = [n for n in names if n not in _OURS and filenames.parse_name(n) is None]
    if strangers:
        shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
        raise NotADatabaseError(f"the backup destination {dest} holds other files ({shown}): {advice}")
    marker = next((n for n in (filenames.BACKUP_PENDING, filenames.BACKUP) if n in names), None)
    if marker is None:
        raise DatabaseExistsError(f"the backup destination {dest} holds a QuantaDB database, not a backup: {advice}")
    path = os.path.join(dest, marker)
    try:
        record = _Record.decode(fs.read_all(path), path)
    except CorruptionError as exc:
        # BACKUP-PENDING is synced before anything else changes: a damaged one means a crash
        # while it was written, so DEST is as the earlier backup (if any) left it.
        if marker == filenames.BACKUP_PENDING and set(names) <= {filenames.BACKUP_PENDING}:
            return False
        if marker != filenames.BACKUP_PENDING or filenames.BACKUP not in names:
            raise CorruptionError(
                f"the backup destination {dest} holds a backup whose record {marker} is damaged ({exc}): "
                "delete the directory, or choose another one",
                path=path,
            ) from exc
        marker, path = filenames.BACKUP, os.path.join(dest, filenames.BACKUP)
        record = _Record.decode(fs.read_all(path), path)
    if record.source != source:
        raise DatabaseExistsError(
            f"the backup destination {dest} holds a backup of another database ({record.source}): {advice}"
        )
    if marker == filenames.BACKUP:
        try:
            current = read_current(fs, dest)
        except (CorruptionError, StorageIOError) as exc:
            raise DatabaseExistsError(
                f"the backup destination {dest} holds a damaged backup ({exc}): {advice}"
            ) from exc
        if current != record.manifest:
            raise DatabaseExistsError(
                f"the backup in {dest} has been opened and written to as a database since it was taken "
                f"(CURRENT names {filenames.manifest_name(current)}, the backup wrote "
                f"{filenames.manifest_name(record.manifest or 0)}): {advice}"
            )
    return True


def _begin(fs: FileSystem, dest: str, source: str) -> FileLock:
    """Create DEST if needed, take its LOCK, check it again under the lock, and make
    ``BACKUP-PENDING`` durable before anything else changes."""
    created = not fs.exists(dest)
    if created:
        fs.mkdir(dest)
        fs.sync_dir(os.path.dirname(dest))
    lock = fs.lock(os.path.join(dest, filenames.LOCK))
    try:
        _inspect_dest(fs, dest, source)  # nothing changed between the first look and the lock
        write_synced(fs, os.path.join(dest, filenames.BACKUP_PENDING), _Record(source, created=time.time()).encode())
        fs.sync_dir(dest)
    except BaseException:
        lock.release()
        raise
    return lock


def _write_wal(
    fs: FileSystem, source: str, wals: list[tuple[int, ReadableFile | None, int | None]], dest: str, number: int
) -> int:
    """Write the batches ``<= seq`` of the source's WAL segments into DEST's segment
    ``number``, synced; return the bytes written.

    The segments are copied as raw record bytes (no Python work per record, which would hold
    the GIL against the event loop; records hold no file number, so only the header is new),
    each ``(number, file, end)`` up to ``end`` (None: whole). A writable database's are opened
    by path (``file`` None: pinned, ``Engine.pin_for_backup``): a retired segment whole, the
    active one up to where its last visible batch ends. A read-only open's are read through
    the descriptors its follower holds, up to where the last batch it applied ends
    (``Follower.hold_state``): exactly its memtables, whatever the writer removed since."""
    out = fs.create(os.path.join(dest, filenames.wal_name(number)))
    try:
        out.write(FileHeader(magic=WAL_MAGIC, file_number=number).encode())
        for wal, file, end in wals:
            if file is not None:
                _copy_records(file, end, out)
            else:
                f = fs.open_read(os.path.join(source, filenames.wal_name(wal)))
                try:
                    _copy_records(f, end, out)
                finally:
                    f.close()
        out.sync()
        return out.tell()
    finally:
        out.close()


def _copy_records(f: ReadableFile, end: int | None, out: WritableFile) -> None:
    """Append the record bytes of WAL segment ``f`` (after its header, up to ``end``)."""
    FileHeader.decode(_pread_exact(f, 0, HEADER_SIZE), path=f.path, expect_magic=WAL_MAGIC)
    stop = f.size() if end is None else end
    offset = HEADER_SIZE
    while offset < stop:
        chunk = _pread_exact(f, offset, min(_CHUNK, stop - offset))
        out.write(chunk)
        offset += len(chunk)


def _pread_exact(f: ReadableFile, offset: int, size: int) -> bytes:
    data = f.pread(offset, size)
    if len(data) != size:
        raise CorruptionError(
            f"file ends at {offset + len(data)}, expected at least {offset + size} bytes", path=f.path, offset=offset
        )
    return data


def _place_table(fs: FileSystem, src: str, dst: str, size: int) -> str:
    """Put table ``src`` at ``dst``: "reused" (already there, the same file or the same bytes),
    "linked" or "copied"."""
    if fs.exists(dst):
        if fs.samefile(src, dst) or _same_contents(fs, src, dst, size):
            return "reused"
        fs.remove(dst)
    try:
        fs.link(src, dst)
        return "linked"
    except StorageIOError as exc:
        if exc.errno not in _NO_LINK:
            raise
    _copy(fs, src, dst)
    return "copied"


def _place_held_table(fs: FileSystem, held: ReadableFile, src: str, dst: str, size: int) -> str:
    """:func:`_place_table` for a read-only open, whose writer (another process) may have
    removed ``src`` (a compaction) at any time: the table is the file ``held`` is open on.

    A table already at ``dst`` is reused when it is that very file (a hard link an earlier
    backup made) or has its size and CRC-32. Else ``src`` is hard-linked, and the link kept
    only if it names the held file (``same_file``: never trust a name); if ``src`` is gone
    (ENOENT), cannot be linked, or names another file, the held file's bytes are copied."""
    if fs.exists(dst):
        if same_file(fs, held, dst) or _same_held_contents(fs, held, dst, size):
            return "reused"
        fs.remove(dst)
    try:
        fs.link(src, dst)
    except StorageIOError as exc:
        if exc.errno != errno.ENOENT and exc.errno not in _NO_LINK:
            raise
    else:
        if same_file(fs, held, dst):
            return "linked"
        fs.remove(dst)  # the name names another file now: copy the one held
    _copy_file(held, fs, dst)
    return "copied"


def _same_held_contents(fs: FileSystem, held: ReadableFile, dst: str, size: int) -> bool:
    f = fs.open_read(dst)
    try:
        found = _crc_of(f)
    finally:
        f.close()
    return found[0] == size and _crc_of(held) == found


def _crc_of(f: ReadableFile) -> tuple[int, int]:
    size, crc, offset = f.size(), 0, 0
    while offset < size:
        chunk = f.pread(offset, min(_CHUNK, size - offset))
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        offset += len(chunk)
    return size, crc


def _crc(fs: FileSystem, path: str) -> tuple[int, int]:
    f = fs.open_read(path)
    try:
        return _crc_of(f)
    finally:
        f.close()


def _same_contents(fs: FileSystem, src: str, dst: str, size: int) -> bool:
    dst_size, dst_crc = _crc(fs, dst)
    return dst_size == size and _crc(fs, src) == (dst_size, dst_crc)


def _copy(fs: FileSystem, src: str, dst: str) -> None:
    f = fs.open_read(src)
    try:
        _copy_file(f, fs, dst)
    finally:
        f.close()


def _copy_file(f: ReadableFile, fs: FileSystem, dst: str) -> None:
    """Copy the whole of open file ``f`` into a new file ``dst``, synced (pread in chunks)."""
    out = fs.create(dst)
    try:
        size, offset = f.size(), 0
        while offset < size:
            chunk = f.pread(offset, min(_CHUNK, size - offset))
            if not chunk:
                raise StorageIOError(f"read failed for {f.path}: file shrank while copied", path=f.path)
            out.write(chunk)
            offset += len(chunk)
        out.sync()
    finally:
        out.close()


def _finish(
    fs: FileSystem, dest: str, version: Version, seq: int, wal_no: int, manifest_no: int, record: _Record
) -> int:
    """Manifest, CURRENT, the BACKUP record, removal of what an earlier backup left, and last
    the removal of BACKUP-PENDING. Returns the manifest's size."""
    fs.sync_dir(dest)  # the tables' and WAL's names are durable before a manifest names them
    base = version.to_edit()
    base.log_number = wal_no
    base.next_file_number = manifest_no + 1
    base.last_seq = seq
    manifest = ManifestWriter.create(fs, dest, manifest_no, base)
    size = manifest.size
    manifest.close()
    set_current(fs, dest, manifest_no)
    tmp = os.path.join(dest, filenames.BACKUP + ".tmp")
    write_synced(fs, tmp, record.encode())
    fs.rename(tmp, os.path.join(dest, filenames.BACKUP))
    keep = {filenames.table_name(n) for n in record.tables or ()}
    keep |= {filenames.wal_name(wal_no), filenames.manifest_name(manifest_no)}
    for name in fs.listdir(dest):
        if (filenames.parse_name(name) is not None and name not in keep) or name == CURRENT_TMP:
            fs.remove(os.path.join(dest, name))
    fs.sync_dir(dest)
    fs.remove(os.path.join(dest, filenames.BACKUP_PENDING))
    fs.sync_dir(dest)
    return size


def _release(fs: FileSystem, lock: FileLock, due: list[str]) -> None:
    lock.release()
    for path in due:  # removals a pin deferred
        try:
            fs.remove(path)
        except StorageIOError:
            pass  # an obsolete file left behind: the next open of the database removes it
