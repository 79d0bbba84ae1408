"""The file layer: the one seam between the storage engine and the operating system.

Everything the engine persists goes through a :class:`FileSystem`. Three implementations:

* :class:`OSFileSystem` -- real files (``os.pread``/``os.write``/``os.fdatasync``, ``flock``);
  where there is no ``fdatasync`` (macOS) a sync is ``fcntl(F_FULLFSYNC)``, else ``fsync``
  (see :func:`pick_sync`). ``fcntl`` is imported when first needed, so the package imports
  on Windows too; ``quanta.open`` refuses to run there (:func:`check_platform`).
* :class:`MemoryFileSystem` -- files in memory that remember what was made durable. ``crash()``
  returns the state a power loss would leave: file contents up to the last ``sync()``, and
  directory entries (creates, renames, removes) as of the last ``sync_dir()``. Variants garble
  the unsynced tail of files or keep unsynced directory changes. Every operation is recorded
  in ``ops`` so tests can audit the persistence protocol.
* :class:`FaultInjectingFileSystem` -- a ``MemoryFileSystem`` that fails the N-th operation
  with a chosen errno (once, or from then on).

Concurrency rules: the engine calls a ``FileSystem`` from the event-loop thread and from
worker threads (the group-commit fsync runs while the loop appends to the same WAL; open,
spare-WAL creation, manifest writes and removals run in threads). One file is appended to by
one thread at a time; ``sync`` may run concurrently with appends. ``MemoryFileSystem``
guards its state with a lock.

Every method raises :class:`quanta.errors.StorageIOError` (with ``errno``) on failure, never a
bare ``OSError``.

Files are append-only once created (``create``); readers use positional reads (``pread``).
Departure from a full VFS: there is no random-access write, truncate or mmap, because no
on-disk format here needs them; keeping the seam this small keeps the crash model exact.
"""

from __future__ import annotations

import errno as _errno
import os
import random
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from ..errors import DatabaseLockedError, StorageIOError, UnsupportedPlatformError

SUPPORTED_PLATFORMS = "Linux and macOS (POSIX file locks and fsync), CPython 3.11+, asyncio"


def check_platform(platform: str | None = None) -> None:
    """Raise UnsupportedPlatformError where QuantaDB cannot run (Windows: no ``flock``, no
    POSIX rename-over-open-file or directory fsync). ``platform`` defaults to
    ``sys.platform``, read at each call."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        raise UnsupportedPlatformError(f"QuantaDB does not run on Windows; supported: {SUPPORTED_PLATFORMS}")


def _fcntl_module() -> ModuleType | None:
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    return fcntl


def pick_sync(os_module: Any, fcntl_module: Any | None) -> Callable[[int], None]:
    """The call that makes a file's data durable: ``os.fdatasync`` where it exists (Linux);
    else ``fcntl(fd, F_FULLFSYNC)`` (macOS, where ``fsync`` does not flush the drive's
    cache), falling back to ``fsync`` on a file system that refuses it; else ``os.fsync``.
    Modules are parameters so tests can hand in fakes."""
    fdatasync = getattr(os_module, "fdatasync", None)
    if fdatasync is not None:
        return fdatasync  # type: ignore[no-any-return]
    fsync: Callable[[int], None] = os_module.fsync
    full = getattr(fcntl_module, "F_FULLFSYNC", None) if fcntl_module is not None else None
    if full is None:
        return fsync
    fcntl_call = fcntl_module.fcntl  # type: ignore[union-attr]

    def full_fsync(fd: int) -> None:
        try:
            fcntl_call(fd, full)
        except OSError as exc:
            if exc.errno not in (_errno.EINVAL, _errno.ENOTSUP, _errno.ENOTTY):
                raise
            fsync(fd)  # e.g. a network file system without F_FULLFSYNC (as SQLite does)

    return full_fsync


def data_sync(fd: int) -> None:
    """Make ``fd``'s data durable (:func:`pick_sync` on the live ``os``/``fcntl``, chosen at
    each call: a lookup is nothing beside a sync, and tests can take ``os.fdatasync`` away)."""
    pick_sync(os, _fcntl_module())(fd)


__all__ = [
    "FaultInjectingFileSystem",
    "FileLock",
    "FileSystem",
    "MemoryFileSystem",
    "OSFileSystem",
    "ReadableFile",
    "WritableFile",
    "same_file",
    "write_synced",
]


class WritableFile(Protocol):
    """An append-only file being written."""

    path: str

    def write(self, data: bytes) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...
    def tell(self) -> int: ...


class ReadableFile(Protocol):
    """A file opened for positional reads."""

    path: str

    def pread(self, offset: int, size: int) -> bytes: ...
    def size(self) -> int: ...
    def close(self) -> None: ...


class FileLock(Protocol):
    def release(self) -> None: ...


class FileSystem(Protocol):
    """The operations the engine needs from a file system (see the module docstring)."""

    def create(self, path: str) -> WritableFile:
        """Create (or truncate) ``path`` and open it for appending."""
        ...

    def open_read(self, path: str) -> ReadableFile: ...
    def read_all(self, path: str) -> bytes: ...
    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src`` (durable after ``sync_dir``)."""
        ...

    def remove(self, path: str) -> None: ...
    def link(self, src: str, dst: str) -> None:
        """Make ``dst`` a hard link of ``src`` (durable after ``sync_dir`` of ``dst``'s directory).
        StorageIOError where the file system cannot (``EXDEV`` across devices, ``EPERM``, ...)."""
        ...

    def samefile(self, a: str, b: str) -> bool:
        """True if both paths name one file (hard links); False if either is missing."""
        ...

    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def isdir(self, path: str) -> bool: ...
    def mkdir(self, path: str) -> None: ...
    def sync_dir(self, path: str) -> None: ...
    def lock(self, path: str, *, shared: bool = False) -> FileLock:
        """Take an advisory lock on ``path`` or raise DatabaseLockedError at once."""
        ...


def _io_error(exc: OSError, what: str, path: str) -> StorageIOError:
    err = StorageIOError(f"{what} failed for {path}: {exc.strerror or exc}", errno=exc.errno, path=path)
    err.__cause__ = exc
    return err


# --------------------------------------------------------------------------- real files


class _OSWritable:
    __slots__ = ("_fd", "_pos", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise _io_error(exc, "create", path) from exc
        self._pos = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self._pos += n
        except OSError as exc:
            raise _io_error(exc, "write", self.path) from exc

    def sync(self) -> None:
        try:
            data_sync(self._fd)
        except OSError as exc:
            raise _io_error(exc, "fsync", self.path) from exc

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as exc:
                raise _io_error(exc, "close", self.path) from exc


class _OSReadable:
    __slots__ = ("_fd", "_size", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise _io_error(exc, "open", path) from exc

    def pread(self, offset: int, size: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise _io_error(exc, "read", self.path) from exc

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class _OSLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class OSFileSystem:
    """Real files through ``os``; locks through ``flock`` (released when the holder dies)."""

    def create(self, path: str) -> WritableFile:
        return _OSWritable(path)

    def open_read(self, path: str) -> ReadableFile:
        return _OSReadable(path)

    def read_all(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise _io_error(exc, "read", path) from exc

    def rename(self, src: str, dst: str) -> None:
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise _io_error(exc, "rename", src) from exc

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _io_error(exc, "remove", path) from exc

    def link(self, src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError as exc:
            raise _io_error(exc, "link", src) from exc

    def samefile(self, a: str, b: str) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:
            return False

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            raise _io_error(exc, "listdir", path) from exc

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def mkdir(self, path: str) -> None:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise _io_error(exc, "mkdir", path) from exc

    def sync_dir(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise _io_error(exc, "open directory", path) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise _io_error(exc, "fsync directory", path) from exc
        finally:
            os.close(fd)

    def lock(self, path: str, *, shared: bool = False) -> FileLock:
        cloexec = getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | cloexec, 0o644)
        except OSError as exc:
            if not shared or exc.errno not in (_errno.EROFS, _errno.EACCES, _errno.EPERM):
                raise _io_error(exc, "open lock file", path) from exc
            # A read-only open on a read-only mount (or a directory it may not write): a
            # shared lock needs no write access (flock works on a read-only descriptor); and
            # with no LOCK file at all nobody can be writing here, so none is needed.
            try:
                fd = os.open(path, os.O_RDONLY | cloexec)
            except FileNotFoundError:
                return _NoLock()
            except OSError as exc2:
                raise _io_error(exc2, "open lock file", path) from exc2
        import fcntl

        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise DatabaseLockedError(
                f"{os.path.dirname(path) or '.'} is locked by another open database"
                + (f" (process {holder})" if holder else "")
            ) from None
        except OSError as exc:
            os.close(fd)
            raise _io_error(exc, "lock", path) from exc
        if not shared:
            # Name the holder for the error a refused open reports (the content is advisory:
            # the flock is the lock; a stale PID left by a dead holder is overwritten here).
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, b"%d\n" % os.getpid(), 0)
            except OSError:
                pass  # the lock holds without the note
        return _OSLock(fd)


def _lock_holder(fd: int) -> str:
    """The PID the holder of a LOCK file wrote into it ("" if none can be read)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


class _NoLock:
    def release(self) -> None:
        pass


# --------------------------------------------------------------------------- memory files


@dataclass
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    synced: int = 0  # bytes [0, synced) are durable


@dataclass(frozen=True)
class Op:
    """One recorded file-system operation (for crash-point enumeration and protocol audits)."""

    kind: str  # create, write, sync, rename, link, remove, mkdir, sync_dir
    path: str
    arg: str | int | None = None


class _MemWritable:
    def __init__(self, fs: MemoryFileSystem, path: str, inode: _Inode) -> None:
        self._fs = fs
        self.path = path
        self._inode = inode
        self._closed = False

    def write(self, data: bytes) -> None:
        self._fs._op("write", self.path, len(data))
        with self._fs._mutex:
            self._inode.data += data

    def sync(self) -> None:
        self._fs._op("sync", self.path)
        with self._fs._mutex:
            self._inode.synced = len(self._inode.data)

    def tell(self) -> int:
        return len(self._inode.data)

    def close(self) -> None:
        self._closed = True


class _MemReadable:
    def __init__(self, path: str, inode: _Inode) -> None:
        self.path = path
        self._inode = inode
        self._closed = False

    def pread(self, offset: int, size: int) -> bytes:
        if self._closed:  # as a closed descriptor does: a use after close is never silent
            raise _io_error(OSError(_errno.EBADF, os.strerror(_errno.EBADF)), "read", self.path)
        return bytes(self._inode.data[offset : offset + size])

    def size(self) -> int:
        return len(self._inode.data)

    def close(self) -> None:
        self._closed = True


class _MemLock:
    def __init__(self, fs: MemoryFileSystem, path: str, shared: bool) -> None:
        self._fs, self._path, self._shared = fs, path, shared
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            holders = self._fs._locks[self._path]
            holders.remove(self._shared)
            if not holders:
                del self._fs._locks[self._path]


class MemoryFileSystem:
    """In-memory files with an exact model of what a power loss keeps.

    ``files`` maps a path to its inode as the running process sees it; ``durable`` maps a path
    to the inode as the directory's last ``sync_dir`` left it. Inode contents are durable up to
    ``inode.synced``.
    """

    def __init__(self, *, fail_hook: Callable[[Op], None] | None = None) -> None:
        self._mutex = threading.Lock()
        self.files: dict[str, _Inode] = {}
        self.durable: dict[str, _Inode] = {}
        self.dirs: set[str] = set()
        self.ops: list[Op] = []
        self._locks: dict[str, list[bool]] = {}
        self.fail_hook = fail_hook

    @staticmethod
    def _norm(path: str) -> str:
        return os.path.normpath(path)

    def _op(self, kind: str, path: str, arg: str | int | None = None) -> None:
        op = Op(kind, path, arg)
        if self.fail_hook is not None:
            self.fail_hook(op)
        with self._mutex:
            self.ops.append(op)

    def _missing(self, what: str, path: str) -> StorageIOError:
        return StorageIOError(f"{what} failed for {path}: No such file or directory", errno=_errno.ENOENT, path=path)

    def create(self, path: str) -> WritableFile:
        path = self._norm(path)
        if os.path.dirname(path) not in self.dirs:
            raise self._missing("create", path)
        self._op("create", path)
        inode = _Inode()
        with self._mutex:
            self.files[path] = inode
        return _MemWritable(self, path, inode)

    def open_read(self, path: str) -> ReadableFile:
        path = self._norm(path)
        inode = self.files.get(path)
        if inode is None:
            raise self._missing("open", path)
        return _MemReadable(path, inode)

    def read_all(self, path: str) -> bytes:
        path = self._norm(path)
        inode = self.files.get(path)
        if inode is None:
            raise self._missing("read", path)
        return bytes(inode.data)

    def rename(self, src: str, dst: str) -> None:
        src, dst = self._norm(src), self._norm(dst)
        if src not in self.files:
            raise self._missing("rename", src)
        self._op("rename", src, dst)
        with self._mutex:
            self.files[dst] = self.files.pop(src)

    def remove(self, path: str) -> None:
        path = self._norm(path)
        if path in self.files:
            self._op("remove", path)
            with self._mutex:
                del self.files[path]

    def link(self, src: str, dst: str) -> None:
        src, dst = self._norm(src), self._norm(dst)
        if src not in self.files:
            raise self._missing("link", src)
        if os.path.dirname(dst) not in self.dirs:
            raise self._missing("link", dst)
        if dst in self.files:
            raise StorageIOError(f"link failed for {src}: File exists", errno=_errno.EEXIST, path=dst)
        self._op("link", src, dst)
        with self._mutex:
            inode = self.files.get(src)  # (removed meanwhile by another thread?)
            if inode is not None:
                self.files[dst] = inode  # one inode, two names (crash() keeps the sharing)
        if inode is None:
            raise self._missing("link", src)

    def samefile(self, a: str, b: str) -> bool:
        inode = self.files.get(self._norm(a))
        return inode is not None and inode is self.files.get(self._norm(b))

    def listdir(self, path: str) -> list[str]:
        path = self._norm(path)
        if path not in self.dirs:
            raise self._missing("listdir", path)
        names = {os.path.basename(p) for p in self.files if os.path.dirname(p) == path}
        names |= {os.path.basename(d) for d in self.dirs if os.path.dirname(d) == path and d != path}
        return sorted(names)

    def exists(self, path: str) -> bool:
        path = self._norm(path)
        return path in self.files or path in self.dirs

    def isdir(self, path: str) -> bool:
        return self._norm(path) in self.dirs

    def mkdir(self, path: str) -> None:
        path = self._norm(path)
        self._op("mkdir", path)
        # Directories themselves are modelled as durable at once: the engine never depends on
        # a fresh directory surviving a crash without data in it.
        while path and path not in self.dirs:
            self.dirs.add(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent

    def sync_dir(self, path: str) -> None:
        path = self._norm(path)
        self._op("sync_dir", path)
        with self._mutex:
            for p in [p for p in self.durable if os.path.dirname(p) == path]:
                del self.durable[p]
            for p, inode in self.files.items():
                if os.path.dirname(p) == path:
                    self.durable[p] = inode

    def lock(self, path: str, *, shared: bool = False) -> FileLock:
        path = self._norm(path)
        holders = self._locks.setdefault(path, [])
        if holders and (not shared or not all(holders)):
            raise DatabaseLockedError(f"{os.path.dirname(path)} is locked by another open database")
        holders.append(shared)
        return _MemLock(self, path, shared)

    # -- crash simulation ---------------------------------------------------------------

    def crash(
        self,
        *,
        garble_tail: bool = False,
        keep_unsynced_dir_entries: bool = False,
        rng: random.Random | None = None,
    ) -> MemoryFileSystem:
        """Return the file system a power loss would leave behind.

        File contents survive up to their last ``sync``. With ``garble_tail`` the unsynced
        bytes are replaced by random bytes (as a torn sector might leave them) instead of
        being dropped. Directory entries survive as of the last ``sync_dir`` of their
        directory, unless ``keep_unsynced_dir_entries`` (a file system that happened to
        persist its metadata).
        """
        rng = rng or random.Random(0)
        out = MemoryFileSystem()
        out.dirs = set(self.dirs)
        entries = self.files if keep_unsynced_dir_entries else self.durable
        copies: dict[int, _Inode] = {}
        for path, inode in entries.items():
            new = copies.get(id(inode))
            if new is None:
                data = bytearray(inode.data[: inode.synced])
                unsynced = len(inode.data) - inode.synced
                if garble_tail and unsynced:
                    data += bytes(rng.getrandbits(8) for _ in range(rng.randint(0, unsynced)))
                new = _Inode(data, len(data))
                copies[id(inode)] = new
            out.files[path] = new
            out.durable[path] = new
        return out

    def snapshot(self) -> MemoryFileSystem:
        """A copy of the current (not merely durable) state, as after a clean process exit."""
        out = MemoryFileSystem()
        out.dirs = set(self.dirs)
        for path, inode in self.files.items():
            out.files[path] = _Inode(bytearray(inode.data), len(inode.data))
        out.durable = dict(out.files)
        return out


# --------------------------------------------------------------------------- fault injection


class FaultInjectingFileSystem(MemoryFileSystem):
    """A :class:`MemoryFileSystem` whose N-th mutating operation fails with ``errno``.

    ``fail_at`` counts create/write/sync/rename/link/remove/mkdir/sync_dir calls from 1. With
    ``persistent=True`` every later mutating operation fails too (a disk that went away);
    otherwise only the one (a transient error).
    """

    def __init__(self, fail_at: int, *, err: int = _errno.EIO, persistent: bool = False) -> None:
        super().__init__(fail_hook=self._maybe_fail)
        self.fail_at = fail_at
        self.err = err
        self.persistent = persistent
        self.count = 0
        self.failed = 0

    def _maybe_fail(self, op: Op) -> None:
        self.count += 1
        if self.count == self.fail_at or (self.persistent and self.count > self.fail_at):
            self.failed += 1
            raise StorageIOError(
                f"{op.kind} failed for {op.path}: {os.strerror(self.err)} (injected)", errno=self.err, path=op.path
            )


def write_synced(fs: FileSystem, path: str, data: bytes) -> None:
    """Create ``path`` holding ``data`` and make its contents durable (the directory entry is
    the caller's: ``sync_dir``, or a ``rename`` then ``sync_dir``)."""
    file = fs.create(path)
    try:
        file.write(data)
        file.sync()
    finally:
        file.close()


def same_file(fs: FileSystem, file: ReadableFile, path: str) -> bool:
    """True if ``path`` names the very file ``file`` was opened on (the same inode), False if
    it names another file, none, or the file layer cannot tell (a file layer this module does
    not know: the caller then treats the name as another file)."""
    if isinstance(file, _OSReadable):
        try:
            held, named = os.fstat(file._fd), os.stat(path)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
    if isinstance(file, _MemReadable) and isinstance(fs, MemoryFileSystem):
        return fs.files.get(fs._norm(path)) is file._inode
    return False
