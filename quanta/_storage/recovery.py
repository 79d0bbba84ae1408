"""Opening a database: locking, recovery from the files on disk, and the start of a fresh WAL
and manifest.

Everything here is synchronous and runs in a worker thread during ``Engine.open`` (it does
file I/O and may fsync), before any background task exists, so it has the engine's state to
itself.

Recovery: lock the directory, read CURRENT and replay the MANIFEST, check that the files it
describes exist (a damaged final manifest record is caught by the files its edit retired),
replay the WAL segments it does not cover, write what they held as a level-0 table, then
start a fresh manifest and a fresh WAL, make CURRENT point at it durably, and only then
remove obsolete files and the leftovers of interrupted flushes, compactions and creations.

:class:`Recovery` is a mixin of :class:`~quanta._storage.engine.Engine`; it names the engine
attributes it uses.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ..errors import (
    CorruptionError,
    DatabaseClosedError,
    DatabaseExistsError,
    DatabaseLockedError,
    DatabaseNotFoundError,
    NotADatabaseError,
    QuantaError,
)
from . import filenames
from .compaction import TableSpec, run_to_end, write_tables
from .follower import Follower
from .format import HEADER_SIZE
from .manifest import ManifestWriter, VersionEdit, read_current, read_manifest, set_current
from .memtable import Memtable
from .sstable import TableReader
from .version import LevelPolicy, Version
from .vfs import FileLock, FileSystem, OSFileSystem
from .wal import WalReplay, WalWriter, replay_wal

if TYPE_CHECKING:
    from .._options import Options
    from .engine import Engine, EngineStats

__all__ = ["ABANDONED_OPEN_WAIT", "Recovery", "registry_lock"]

# In-process registry of directories open for writing: flock already excludes a second
# open (flock locks belong to the open file description), the registry makes the error
# message precise and does not depend on the file system honouring flock.
registry_lock = threading.Lock()
_open_dirs: dict[str, _Registration] = {}


@dataclass
class _Registration:
    """An entry of the registry. ``abandoned``: the holder is going away (its open() was
    cancelled while recovery still runs in a thread, or its close() has started); a new
    open() waits for ``released`` instead of failing with DatabaseLockedError."""

    released: threading.Event
    abandoned: bool = False


ABANDONED_OPEN_WAIT = 60.0


class Recovery:
    """Open, recover and release a database directory (see the module docstring)."""

    fs: FileSystem
    path: str
    opts: Options
    policy: LevelPolicy
    read_only: bool
    version: Version
    mem: Memtable
    imms: list[Memtable]
    readers: dict[int, TableReader]
    next_file_number: int
    last_seq: int
    visible_seq: int
    log_number: int
    wal: WalWriter | None
    manifest: ManifestWriter | None
    recovered_wal_batches: int
    recovery_tail: str
    _lock: FileLock | None
    _registered: bool
    _registry_key: str
    _registration: _Registration
    _abandoned: bool
    stats: EngineStats
    follower: Follower | None

    def _open_sync(self) -> None:
        fs, path, opts = self.fs, self.path, self.opts
        if not fs.exists(path):
            if not opts.create_if_missing or self.read_only:
                raise DatabaseNotFoundError(f"no database at {path} (create_if_missing=False)")
            fs.mkdir(path)
        elif not fs.isdir(path):
            raise NotADatabaseError(f"{path} is not a directory")
        first_look = fs.listdir(path)
        if filenames.BACKUP_PENDING in first_look:  # a backup being written, or interrupted
            raise CorruptionError(
                f"{path} is an unfinished backup (it was interrupted or is still being written): "
                "run the backup again to complete it, or delete the directory",
                path=os.path.join(path, filenames.BACKUP_PENDING),
            )
        self._check_is_database(first_look)  # before the LOCK file is created
        if filenames.CURRENT not in first_look and (self.read_only or not opts.create_if_missing):
            raise DatabaseNotFoundError(f"no database at {path} (create_if_missing=False)")
        self._acquire_lock()
        self._check_abandoned()
        names = fs.listdir(path)
        if filenames.CURRENT not in names:
            self._check_is_database(names)
            if self.read_only or not opts.create_if_missing:
                raise DatabaseNotFoundError(f"no database at {path} (create_if_missing=False)")
            for name in names:  # leftovers of an interrupted creation (checked above)
                if filenames.parse_name(name) is not None or name.endswith(".tmp"):
                    fs.remove(os.path.join(path, name))
            self._create_new()
            return
        if opts.error_if_exists:
            raise DatabaseExistsError(f"a database already exists at {path} (error_if_exists=True)")
        if self.read_only:
            # No recovery: a writer may be running. Load the MANIFEST's tables and the WAL
            # tail, holding their descriptors, and follow the writer (follower.py).
            self.follower = Follower(cast("Engine", self))
            self.follower.load_sync()
            return
        self._recover(names)

    def _check_is_database(self, names: list[str]) -> None:
        """Refuse a directory that holds files but no database (nothing is written to it)."""
        if filenames.CURRENT in names:
            return
        ours = [n for n in names if filenames.parse_name(n) is not None]
        if ours:
            if self._interrupted_creation(ours):
                return  # _create_new starts over; nothing in these files was ever acknowledged
            path = os.path.join(self.path, filenames.CURRENT)
            raise CorruptionError("database files present but CURRENT is missing", path=path)
        strangers = [n for n in names if n not in (filenames.LOCK, filenames.CURRENT + ".tmp")]
        if strangers:
            raise NotADatabaseError(
                f"{self.path} is not a QuantaDB database (it holds {', '.join(strangers[:3])}"
                f"{', ...' if len(strangers) > 3 else ''}) and QuantaDB will not create one beside other files"
            )

    def _interrupted_creation(self, ours: list[str]) -> bool:
        """True if ``ours`` (no CURRENT) is what a crash while creating the database leaves:
        no tables and no WAL record. No write is acknowledged before CURRENT exists, so such
        files hold nothing and are removed (under the lock) before the database is created."""
        for name in ours:
            kind, number = filenames.parse_name(name) or ("", 0)
            if kind == "sst":
                return False
            if kind == "wal":
                try:
                    if self._read_wal(number).batches:
                        return False
                except CorruptionError:
                    return False
        return True

    def _read_wal(self, number: int) -> WalReplay:
        """Replay one WAL segment. A segment no longer than a file header whose header is
        damaged is a spare whose creation a crash interrupted (a segment is used only after
        its header is synced): it is empty."""
        path = os.path.join(self.path, filenames.wal_name(number))
        try:
            return replay_wal(self.fs, path, number, salvage=self.opts.wal_recovery == "salvage")
        except CorruptionError:
            f = self.fs.open_read(path)
            size = f.size()
            f.close()
            if size <= HEADER_SIZE:
                return WalReplay(tail="torn", dropped_bytes=size)
            raise

    def _check_abandoned(self) -> None:
        if self._abandoned:  # the open() that runs this was cancelled: stop early
            raise DatabaseClosedError(f"open() of {self.path} was cancelled")

    def _acquire_lock(self) -> None:
        """Take the writer's lock (a read-only open takes none: it never blocks a writer, see
        ``follower.py``). With ``lock_timeout`` > 0 a refused open polls with backoff until
        it gets the lock or the time is up; this runs in the open's worker thread, so the
        sleeps never block the event loop."""
        if self.read_only:
            return
        deadline = time.monotonic() + self.opts.lock_timeout
        delay = 0.001
        while True:
            try:
                self._try_lock()
                return
            except DatabaseLockedError as exc:
                left = deadline - time.monotonic()
                if left <= 0 or self._abandoned:
                    if self.opts.lock_timeout > 0:
                        raise DatabaseLockedError(f"{exc} (waited {self.opts.lock_timeout:g} s)") from None
                    raise
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.05)

    def _try_lock(self) -> None:
        key = os.path.realpath(self.path) if isinstance(self.fs, OSFileSystem) else f"{id(self.fs)}:{self.path}"
        while True:
            with registry_lock:
                holder = _open_dirs.get(key)
                if holder is None:
                    self._registration = _open_dirs[key] = _Registration(threading.Event(), self._abandoned)
                    self._registered = True
                    self._registry_key = key
                    break
                if not holder.abandoned:
                    raise DatabaseLockedError(f"{self.path} is already open in this process (process {os.getpid()})")
            # a cancelled open is still unwinding in its thread: wait for it (we are in a
            # worker thread ourselves, so the event loop runs on)
            if not holder.released.wait(ABANDONED_OPEN_WAIT):
                raise DatabaseLockedError(f"{self.path}: a cancelled open() has not released it")
        try:
            self._lock = self.fs.lock(os.path.join(self.path, filenames.LOCK))
        except BaseException:
            with registry_lock:
                _open_dirs.pop(key, None)
            self._registered = False
            self._registration.released.set()
            raise

    def _release(self) -> None:
        if self.follower is not None:
            self.follower.close_sync()
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()
        for closable in (self.wal, self.manifest):
            if closable is not None:
                try:
                    closable.close()
                except QuantaError:
                    pass
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._registered:
            with registry_lock:
                _open_dirs.pop(self._registry_key, None)
            self._registered = False
            self._registration.released.set()

    def _create_new(self) -> None:
        self.next_file_number = 1
        self._start_fresh_logs()

    def _recover(self, names: list[str]) -> None:
        fs, path = self.fs, self.path
        manifest_number = read_current(fs, path)
        mpath = os.path.join(path, filenames.manifest_name(manifest_number))
        if not fs.exists(mpath):
            raise CorruptionError(
                f"CURRENT names {filenames.manifest_name(manifest_number)}, which is missing", path=mpath
            )
        version = Version()
        log_number = 0
        edits, manifest_tail = read_manifest(fs, mpath, manifest_number)
        for edit in edits:
            version = version.apply(edit)
            if edit.log_number is not None:
                log_number = edit.log_number
            if edit.next_file_number is not None:
                self.next_file_number = max(self.next_file_number, edit.next_file_number)
            if edit.last_seq is not None:
                self.last_seq = max(self.last_seq, edit.last_seq)
        for _, meta in version.files():
            tpath = os.path.join(path, filenames.table_name(meta.number))
            if not fs.exists(tpath):
                if manifest_tail != "clean":
                    raise CorruptionError(
                        "the final MANIFEST record is damaged, and the edit it held was already acted on "
                        f"(table {filenames.table_name(meta.number)} it had retired is gone)",
                        path=mpath,
                    )
                raise CorruptionError(
                    f"table {filenames.table_name(meta.number)} named by the manifest is missing", path=tpath
                )
        if not fs.exists(os.path.join(path, filenames.wal_name(log_number))):
            # The WAL of the oldest unflushed writes is removed only after an edit that moves
            # log_number past it is durable: if it is gone, that edit (or the WAL) was lost.
            where = mpath if manifest_tail != "clean" else os.path.join(path, filenames.wal_name(log_number))
            raise CorruptionError(
                f"WAL segment {filenames.wal_name(log_number)} that the manifest still needs is missing"
                + (" (the final MANIFEST record is damaged)" if manifest_tail != "clean" else ""),
                path=where,
            )
            self.next_file_number = max(self.next_file_number, meta.number + 1)
        self.version = version
        self.log_number = log_number
        # Replay the WAL segments the manifest does not cover, oldest first.
        wals = sorted(
            num
            for kind, num in (filenames.parse_name(n) or ("", 0) for n in names)
            if kind == "wal" and num >= log_number
        )
        mem = Memtable(0)
        for number in wals:
            self.next_file_number = max(self.next_file_number, number + 1)
            replay = self._read_wal(number)
            if replay.tail != "clean":
                self.recovery_tail = replay.tail
            for seq, keys, values in replay.batches:
                if seq <= mem.max_seq:
                    raise CorruptionError(
                        f"sequence number {seq} does not increase across WAL segments",
                        path=os.path.join(path, filenames.wal_name(number)),
                    )
                mem.apply(seq, keys, values)
                self.recovered_wal_batches += 1
                self.last_seq = max(self.last_seq, seq)
        for name in names:
            parsed = filenames.parse_name(name)
            if parsed is not None:
                self.next_file_number = max(self.next_file_number, parsed[1] + 1)
        self.visible_seq = self.last_seq
        if self.read_only:
            self.mem = mem
            return
        if len(mem):
            # Make the recovered writes a level-0 table so that the new WAL starts empty.
            number = self._new_file_number()
            spec = self._table_spec(0, target=1 << 62)
            metas = run_to_end(write_tables(fs, spec, mem.entries([]), lambda: number))
            self.version = self.version.apply(VersionEdit(added=[(0, m) for m in metas]))
            self.stats.bytes_written_flush += sum(m.size for m in metas)
        self._start_fresh_logs()
        self._remove_obsolete_files()

    def _start_fresh_logs(self) -> None:
        """New manifest (a snapshot of the version) and new WAL, made current durably."""
        fs, path = self.fs, self.path
        old_manifest = self.manifest
        wal_number = self._new_file_number()
        manifest_number = self._new_file_number()
        self.wal = WalWriter.create(fs, path, wal_number)
        self.wal.sync()
        base = self.version.to_edit()
        base.log_number = wal_number
        base.next_file_number = self.next_file_number
        base.last_seq = self.last_seq
        self.manifest = ManifestWriter.create(fs, path, manifest_number, base)
        set_current(fs, path, manifest_number)  # temp file, fsync, rename, directory fsync
        self.log_number = wal_number
        self.mem = Memtable(wal_number)
        if old_manifest is not None:
            old_manifest.close()

    def _remove_obsolete_files(self) -> None:
        """Remove files no live state refers to: old WALs and manifests, orphaned tables
        (an interrupted flush or compaction), temporary files. Requires: the manifest edit
        that made them obsolete is durable."""
        live = self.version.live_numbers()
        wal_floor = min([m.wal_number for m in self.imms] + [self.mem.wal_number])
        current_manifest = self.manifest.number if self.manifest else -1
        for name in self.fs.listdir(self.path):
            parsed = filenames.parse_name(name)
            obsolete = name.endswith(".tmp")
            if parsed is not None:
                kind, number = parsed
                obsolete = (
                    (kind == "wal" and number < wal_floor)
                    or (kind == "sst" and number not in live)
                    or (kind == "manifest" and number != current_manifest)
                )
            if obsolete:
                self.fs.remove(os.path.join(self.path, name))

    def _new_file_number(self) -> int:
        n = self.next_file_number
        self.next_file_number += 1
        return n

    def _table_spec(self, level: int, target: int | None = None) -> TableSpec:
        return TableSpec(
            dirpath=self.path,
            block_size=self.opts.block_size,
            bits_per_key=self.opts.bits_for_level(level),
            target_file_bytes=self.policy.target_file_bytes if target is None else target,
        )
