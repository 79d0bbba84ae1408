"""The storage engine: the async shell around the pure pieces (WAL, memtable, tables, versions).

Concurrency rules (read these first):

* Everything here runs on one asyncio event loop. Methods without ``async`` run to completion
  without yielding, so they see and leave a consistent state: a point read or one scan chunk
  can never observe half a commit, a half-installed version or a deleted table.
* Commits are ordered by sequence number. A commit is encoded and appended to the WAL
  synchronously, in sequence order, under ``_write_lock`` (held across awaits only for
  back-pressure and WAL rotation). With ``durability="sync"`` the batch becomes visible
  (applied to the memtable) only after the fsync that covers it: one fsync at a time runs
  in a worker thread for every batch appended before it started (group commit), and its
  completion callback applies the group in order and starts the next. No caller's task
  owns that work, so cancelling a writer (anyio or plain asyncio cancellation) after its
  append cannot stop its commit: a cancelled commit is all-or-nothing.
* Background work (flush of immutable memtables, compaction) is owned by one supervisor task
  that runs an anyio task group; ``close()`` stops it after the current jobs drain. CPU-heavy
  merging runs in a worker process on real files (``compaction.py``); the event loop only
  installs results. A background failure is stored in ``_failure``: writes raise
  BackgroundError from then on and ``close()`` re-raises it.
* Manifest edits are appended (and fsynced) under ``_manifest_lock``, and the in-memory
  version is replaced in the same critical section, so versions change in manifest order.
  Only background tasks write the manifest; public ``flush()``/``compact()``/``close()`` ask
  and wait, so cancelling them never leaves an edit half-installed.
* Obsolete files are removed only after the manifest edit that drops them is durable.

The engine is split in three modules: this one (commit path, flush, compaction, background
work, close), ``recovery.py`` (open, locking, recovery) and ``reads.py`` (point reads and scan
chunks), the latter two as mixins of :class:`Engine`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
from sortedcontainers import SortedList

from ..errors import (
    BackgroundError,
    CorruptionError,
    DatabaseClosedError,
    DatabaseFailedError,
    InvalidArgumentError,
    QuantaError,
    ReadOnlyError,
    StorageIOError,
    UnsupportedPlatformError,
    WrongEventLoopError,
)
from . import filenames
from .cache import BlockCache
from .compaction import (
    merge_entries,
    run_compaction_in_worker,
    run_flush_in_worker,
    survivors,
    write_tables,
)
from .events import EventKind, SystemEvent
from .follower import Follower
from .format import HEADER_SIZE
from .manifest import FileMeta, ManifestWriter, VersionEdit, set_current
from .memtable import Memtable
from .pins import FilePins
from .reads import MAX_SEQ, ReadPath
from .recovery import Recovery, registry_lock
from .sstable import TableReader
from .version import NUM_LEVELS, CompactionTask, LevelPolicy, Version, compaction_for_level, pick_compaction
from .vfs import FileLock, FileSystem, OSFileSystem, WritableFile
from .wal import WalWriter, encode_batch
from .worker import WorkerPool

if TYPE_CHECKING:  # a type only: importing it for real would be circular (options -> vfs)
    from .._options import Options

__all__ = ["MAX_SEQ", "Engine"]

MANIFEST_ROLLOVER_BYTES = 8 << 20

Entry = tuple[bytes, int, bytes | None]
T = TypeVar("T")
Pending = tuple[int, list[bytes], list[bytes | None], str]

# Hooks the layers above install (the engine knows nothing about transactions or the bus):
AppendHook = Callable[[int, list[bytes]], None]
"""``(seq, keys)``: called under the write lock as each batch is appended, in seq order."""
ApplyHook = Callable[[int, list[bytes], list[bytes | None], str], None]
"""``(seq, keys, values, origin)``: called as soon as a batch has become visible, in seq order
(after its fsync with durability="sync"), before any later batch is applied: a read at
``seq - 1`` inside the hook sees the state just before the batch. Must not raise."""
EventHook = Callable[[SystemEvent], None]


@dataclass
class EngineStats:
    bytes_written_wal: int = 0
    bytes_written_flush: int = 0
    bytes_written_compaction: int = 0
    user_bytes_written: int = 0
    commits: int = 0
    syncs: int = 0
    flushes: int = 0
    compactions: int = 0
    trivial_moves: int = 0
    write_stalls: int = 0
    stall_seconds: float = 0.0


def running_asyncio_loop() -> asyncio.AbstractEventLoop:
    """The running asyncio loop, or UnsupportedPlatformError naming what is supported (under
    trio, curio, or no loop at all)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        import sniffio

        library = sniffio.current_async_library()
    except Exception:  # sniffio missing or no async library detected
        library = "no event loop"
    raise UnsupportedPlatformError(
        f"QuantaDB runs on asyncio only (directly, or through anyio's asyncio backend), not on {library}: "
        "use asyncio.run(...) or anyio.run(..., backend='asyncio')"
    )


class Engine(Recovery, ReadPath):
    """Bytes in, bytes out. Created only by :meth:`open`; see the module docstring."""

    def __init__(self, path: str, opts: Options) -> None:
        self.path = path
        self.opts = opts
        self.fs: FileSystem = opts.fs if opts.fs is not None else OSFileSystem()
        self.policy = LevelPolicy(
            l0_compaction_trigger=opts.l0_compaction_trigger,
            l1_target_bytes=opts.l1_target_bytes,
            level_multiplier=opts.level_multiplier,
            target_file_bytes=opts.target_file_bytes,
        )
        self.read_only = opts.read_only
        self.sync_commits = opts.durability == "sync"
        if opts.compaction_executor == "process" and not isinstance(self.fs, OSFileSystem):
            raise InvalidArgumentError(
                'compaction_executor="process" needs real files: a worker process cannot see the `fs` given'
            )
        self.use_process = opts.compaction_executor == "process" or (
            opts.compaction_executor == "auto" and isinstance(self.fs, OSFileSystem)
        )
        self.cache = BlockCache(opts.block_cache_bytes)
        self.version = Version()
        self.mem = Memtable(0)
        self.imms: list[Memtable] = []  # oldest first
        self.readers: dict[int, TableReader] = {}
        self.pins = FilePins()  # files a backup reads: their removal waits (pins.py)
        self.snapshots: SortedList = SortedList()
        self.compact_pointer: dict[int, bytes] = {}
        self.stats = EngineStats()
        self.next_file_number = 2
        self.last_seq = 0  # last sequence number assigned
        self.visible_seq = 0  # last sequence number applied (readable)
        self.log_number = 0
        self.wal: WalWriter | None = None
        # (segment number, bytes): where the last visible batch ends in the WAL (for backups)
        self.visible_wal_end = (0, 0)
        self.manifest: ManifestWriter | None = None
        self._lock: FileLock | None = None
        self._registered = False
        self._abandoned = False
        self.closed = False  # as the user sees it: set when close() starts
        self._loop: asyncio.AbstractEventLoop | None = None  # set by open()
        # close() was called (the shutdown may also come from the event loop cancelling the
        # background task at exit, which sets closed but not this: the Database warns then)
        self.close_called = False
        self._shut = False  # set when the shutdown is complete
        self._failure: BaseException | None = None
        self._failure_background = False
        self._pending: list[Pending] = []
        self._syncing: list[Pending] = []  # the group whose fsync is running
        self.on_append: AppendHook | None = None
        self.on_apply: ApplyHook | None = None
        self.on_event: EventHook | None = None
        self.on_shutdown: list[Callable[[BaseException | None], None]] = []
        # Set by the change bus when a subscriber's buffer is half full: the next durability="os"
        # commit yields to the event loop once (such commits otherwise never suspend).
        self.yield_writers = False
        self._job = 0
        self._sync_future: asyncio.Future[None] | None = None
        self._sync_scheduled = False
        self._synced = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._manifest_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._spare_wal: WalWriter | None = None
        self._retired_wals: dict[int, WalWriter] = {}
        self._closed_wals: set[int] = set()
        self._manual_requested = 0
        self._close_requested = False
        self._workers = WorkerPool(2)
        self._manual_done = 0
        self.recovered_wal_batches = 0
        self.recovery_tail = "clean"
        self.follower: Follower | None = None  # a read-only open follows the writer

    # ------------------------------------------------------------------ open and recovery

    @classmethod
    async def open(cls, path: str, opts: Options) -> Engine:
        loop = running_asyncio_loop()
        eng = cls(_absolute(path), opts)
        # The database belongs to this loop (its locks, events, futures and background task
        # do): operations check it where they enter (see check_loop).
        eng._loop = loop
        # Recovery runs in a worker thread that no cancellation can stop half-way: if the
        # caller is cancelled, the thread finishes and a callback releases what it opened.
        fut = asyncio.get_running_loop().run_in_executor(None, eng._open_sync)
        try:
            await asyncio.shield(fut)
        except BaseException:
            if fut.done():
                eng._release()
            else:
                with registry_lock:
                    eng._abandoned = True
                    registration = getattr(eng, "_registration", None)
                    if registration is not None:
                        registration.abandoned = True
                fut.add_done_callback(lambda _: eng._release())
            raise
        if not eng.read_only:
            eng._start_background()
        elif eng.follower is not None:
            eng.follower.start()
        return eng

    async def catch_up(self) -> int:
        """A read-only open: read and apply every commit the writer made so far (the reader
        also does this every ``follow_interval``). A writer is always caught up. Returns the
        sequence number the database is at."""
        self.check_open()
        if self.follower is None:
            return self.visible_seq
        return await self.follower.catch_up()

    # ------------------------------------------------------------------ state checks

    def check_open(self) -> None:
        if self.closed:
            raise self.closed_error()
        self.check_loop()

    def check_writable(self) -> None:
        if self.closed:
            raise self.closed_error()
        self.check_loop()
        if self.read_only:
            raise ReadOnlyError(f"the database at {self.path} was opened read_only=True")
        if self._failure is not None:
            self._raise_failure()

    def check_loop(self) -> None:
        """Raise WrongEventLoopError when called on a running event loop other than the one
        that opened the database. Writes, snapshots (so scans and transactions) and
        subscriptions check here; point reads (``get``, ``get_many``) do not: the check costs
        about 0.2 us (``asyncio._get_running_loop`` on 3.11) and even a thread-id compare
        ~35 ns of a ~110 ns memtable hit. A read from another loop still fails once the
        opening loop has ended (the database is shut then, see :meth:`closed_error`).
        Code running outside any event loop (the engine's worker threads) passes."""
        loop = asyncio._get_running_loop()
        if loop is not self._loop and loop is not None and self._loop is not None:
            raise self._wrong_loop_error()

    def closed_error(self) -> QuantaError:
        """The error for an operation on a closed database: WrongEventLoopError when the
        caller is on another event loop (the usual cause: the loop that opened the database
        ended, a second ``asyncio.run``, and cancelled its background work), else
        DatabaseClosedError."""
        loop = asyncio._get_running_loop()
        if loop is not self._loop and loop is not None and self._loop is not None:
            return self._wrong_loop_error()
        return DatabaseClosedError(f"the database at {self.path} is closed")

    def _wrong_loop_error(self) -> WrongEventLoopError:
        assert self._loop is not None
        state = "which has ended" if self._loop.is_closed() else "which is still open"
        return WrongEventLoopError(
            f"the database at {self.path} was opened on another event loop ({state}) and can only be used "
            "there: open it (and close it) inside the event loop that uses it, e.g. in the same asyncio.run"
        )

    def _check_alive(self) -> None:
        """For waits inside the engine: stop on shutdown or failure (not on a close() in
        progress, which still flushes)."""
        if self._shut:
            raise DatabaseClosedError(f"the database at {self.path} is closed")
        if self._failure is not None:
            self._raise_failure()

    def _raise_failure(self) -> None:
        cls = BackgroundError if self._failure_background else DatabaseFailedError
        raise cls(
            f"the database stopped accepting writes after a failure: {self._failure!r}; close and reopen it"
        ) from self._failure

    def _fail(self, exc: BaseException, *, background: bool = False) -> None:
        if self._failure is None:
            self._failure = exc
            self._failure_background = background
            self._emit(SystemEvent("database_failed", error=repr(exc), time=time.time()))
        self._end_after_failure()
        self._notify()
        ev, self._synced = self._synced, asyncio.Event()
        ev.set()  # committers waiting for an fsync that will not come see the failure

    def _end_after_failure(self) -> None:
        """After a failure no new commit becomes visible, except the group whose fsync is
        already running (it completes and is acknowledged). Once that one is published, run
        the shutdown hooks (they end the subscriptions) instead of waiting for close()."""
        if self._failure is not None and self._sync_future is None and self.on_shutdown:
            hooks, self.on_shutdown = self.on_shutdown, []
            for hook in hooks:
                hook(self._failure)

    def _emit(self, event: SystemEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _next_job(self) -> int:
        self._job += 1
        return self._job

    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    # ------------------------------------------------------------------ the commit path

    async def write(
        self,
        keys: list[bytes],
        values: list[bytes | None],
        user_bytes: int,
        *,
        precheck: Callable[[], None] | None = None,
        origin: str = "kv",
    ) -> int:
        """Commit one batch atomically; return its sequence number. Inputs are validated.

        ``precheck`` runs under the write lock immediately before the batch is appended, with
        no await in between: it sees every batch appended before this one and may raise to
        refuse the commit (transactions check for conflicts there). ``origin`` is passed to
        the apply hook.

        Cancellation: before the WAL append nothing is written; after it, the commit
        completes (the fsync and the memtable apply run in callbacks that no caller owns),
        so a cancelled write is all-or-nothing.
        """
        self.check_writable()
        async with self._write_lock:
            self.check_writable()
            if self.mem.approximate_bytes >= self.opts.memtable_bytes or self._l0_stalled():
                await self._make_room()
            if precheck is not None:
                precheck()
            seq = self.last_seq + 1
            payload = encode_batch(seq, keys, values)
            wal = self.wal
            assert wal is not None
            try:
                wal.append(payload)
            except StorageIOError as exc:
                # The WAL may now hold part of a record: stop, so nothing is appended after it.
                self._fail(exc)
                raise
            self.last_seq = seq
            self.stats.bytes_written_wal += len(payload)
            self.stats.user_bytes_written += user_bytes
            self.stats.commits += 1
            if self.on_append is not None:
                self.on_append(seq, keys)
            if not self.sync_commits:
                self.mem.apply(seq, keys, values)
                self.visible_seq = seq
                self.visible_wal_end = (wal.number, wal.size)
                if self.on_apply is not None:
                    self.on_apply(seq, keys, values, origin)
                if not self.yield_writers:
                    return seq
            else:
                self._pending.append((seq, keys, values, origin))
                self._schedule_sync()
        if not self.sync_commits:
            # A subscriber's buffer is filling up while this (never suspending) writer runs:
            # give the loop one turn so consumers can drain. Shielded: the commit is done.
            self.yield_writers = False
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return seq
        await self.wait_visible(seq)
        return seq

    async def wait_visible(self, seq: int) -> None:
        """Return once the batch numbered ``seq`` (and every one before it) is readable:
        with durability="sync" a batch is appended before its group's fsync and visible
        after it. Raises the engine's failure if it fails or closes meanwhile."""
        while self.visible_seq < seq:
            self._check_alive()
            await self._synced.wait()

    def _start_sync(self) -> None:
        """Group commit: one fsync, in a worker thread, for every batch appended so far.

        The batches become visible in ``_sync_done``, a callback on the event loop, in
        sequence order. Batches appended while this fsync runs form the next group.
        """
        group, self._pending = self._pending, []
        self._syncing = group
        wal = self.wal
        assert wal is not None
        end = (wal.number, wal.size)  # where the group's last batch ends
        fut = asyncio.get_running_loop().run_in_executor(None, wal.sync)
        self._sync_future = fut
        fut.add_done_callback(lambda f: self._sync_done(group, f, end))

    def _sync_done(self, group: list[Pending], fut: asyncio.Future[None], end: tuple[int, int]) -> None:
        self._sync_future = None
        self._syncing = []
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is not None:
            # Never retry a failed fsync and trust it: the kernel may have dropped the pages.
            self._fail(exc)
        else:
            self.stats.syncs += 1
            apply = self.mem.apply
            hook = self.on_apply
            for seq, keys, values, origin in group:
                apply(seq, keys, values)
                self.visible_seq = seq
                if hook is not None:
                    hook(seq, keys, values, origin)
            self.visible_wal_end = end
        ev, self._synced = self._synced, asyncio.Event()
        ev.set()
        if self._pending and exc is None:
            self._schedule_sync()
        self._end_after_failure()

    def _schedule_sync(self) -> None:
        """Start the next group's fsync at the end of this turn of the event loop, not at
        once: writers woken by the previous fsync (or started in the same turn) append their
        batches first, so one fsync covers them all instead of groups alternating 1 and N-1."""
        if self._sync_future is None and not self._sync_scheduled:
            self._sync_scheduled = True
            asyncio.get_running_loop().call_soon(self._kick_sync)

    def _kick_sync(self) -> None:
        self._sync_scheduled = False
        if self._pending and self._sync_future is None and self._failure is None:
            self._start_sync()

    def inflight(self) -> list[tuple[int, list[bytes]]]:
        """``(seq, keys)`` of batches appended but not yet visible, in seq order."""
        return [(seq, keys) for seq, keys, _, _ in (*self._syncing, *self._pending)]

    async def _drain_commits(self) -> None:
        """Wait until every appended batch is durable and applied. Cancel-safe."""
        while self._pending or self._sync_future is not None:
            self._check_alive()
            if self._sync_future is None:
                self._start_sync()
            await self._synced.wait()

    def _l0_stalled(self) -> bool:
        return len(self.version.levels[0]) >= self.opts.l0_stop_writes_trigger

    async def _make_room(self) -> None:
        """Rotate a full memtable; wait while too much waits for flush (back-pressure).

        Requires: ``_write_lock`` held. Memory bound: the active memtable plus at most
        ``max_immutable_memtables`` immutable ones, each about ``memtable_bytes`` (one batch
        may overshoot by its own size). Level 0 holding ``l0_stop_writes_trigger`` tables
        also stops writes until compaction catches up.
        """
        started = time.perf_counter()
        stalled = False
        job = 0
        while True:
            self._check_alive()
            need_rotate = self.mem.approximate_bytes >= self.opts.memtable_bytes
            blocked = self._l0_stalled() or (need_rotate and len(self.imms) >= self.opts.max_immutable_memtables)
            if not blocked and (not need_rotate or self._spare_wal is not None):
                break
            if blocked and not stalled:
                job = self._next_job()
                self._emit(SystemEvent("write_stall_started", job=job, time=time.time()))
            stalled = stalled or blocked
            await self._wait_changed()
        if stalled:
            self.stats.write_stalls += 1
            waited = time.perf_counter() - started
            self.stats.stall_seconds += waited
            self._emit(SystemEvent("write_stall_finished", job=job, duration=waited, time=time.time()))
        if need_rotate:
            await self._rotate()

    async def _rotate(self) -> None:
        """Make the active memtable immutable and switch to the spare WAL segment.

        Requires: ``_write_lock`` held. The spare segment was created, synced and its
        directory entry synced in the background, so the switch itself is synchronous and
        cannot be torn by cancellation.
        """
        await self._drain_commits()  # everything in the old segment is durable and applied
        while self._spare_wal is None:
            self._check_alive()
            await self._wait_changed()
        old = self.wal
        assert old is not None
        self._retired_wals[old.number] = old  # synced and closed by the flusher
        self.wal, self._spare_wal = self._spare_wal, None
        if len(self.mem):
            self.imms.append(self.mem)
        self.mem = Memtable(self.wal.number)
        self._notify()

    # ------------------------------------------------------------------ snapshots

    def acquire_snapshot(self) -> int:
        self.check_loop()
        seq = self.visible_seq
        self.snapshots.add(seq)
        return seq

    def release_snapshot(self, seq: int) -> None:
        self.snapshots.discard(seq)

    # ------------------------------------------------------------------ flush

    async def flush(self) -> None:
        """Make everything written so far durable in tables (and the WAL empty). Cancel-safe:
        the work is done by the background flusher; this only asks and waits."""
        self.check_writable()
        await self._flush_memtables()
        self.check_writable()

    async def _flush_memtables(self) -> None:
        async with self._write_lock:
            if len(self.mem) or self._pending:
                await self._rotate()
        while self.imms:
            self._check_alive()
            await self._wait_changed()

    async def _flush_one(self) -> None:
        imm = self.imms[0]
        job = self._next_job()
        started = time.perf_counter()
        self._emit(SystemEvent("flush_started", job=job, output_level=0, entries=len(imm), time=time.time()))
        snaps = list(self.snapshots)
        spec = self._table_spec(0, target=1 << 62)
        wal_path = os.path.join(self.path, filenames.wal_name(imm.wal_number))
        if self.use_process:
            number = self._new_file_number()
            metas = await self._workers.run(run_flush_in_worker, spec, wal_path, imm.wal_number, number, snaps)
        else:
            metas = await self._run_on_loop(
                lambda nn, files: write_tables(self.fs, spec, imm.entries(snaps), nn, unsynced=files)
            )
        await anyio.to_thread.run_sync(self.fs.sync_dir, self.path)
        next_wal = self.imms[1].wal_number if len(self.imms) > 1 else self.mem.wal_number
        edit = VersionEdit(added=[(0, m) for m in metas], log_number=next_wal, last_seq=self.visible_seq)
        await self._log_and_apply(edit)
        self.imms.pop(0)
        self.stats.flushes += 1
        self.stats.bytes_written_flush += sum(m.size for m in metas)
        self._emit(
            SystemEvent(
                "flush_finished",
                job=job,
                output_level=0,
                output_files=tuple(m.number for m in metas),
                output_bytes=sum(m.size for m in metas),
                entries=sum(m.entries for m in metas),
                duration=time.perf_counter() - started,
                time=time.time(),
            )
        )
        self._notify()
        await anyio.to_thread.run_sync(self._remove_files, [wal_path])

    async def _run_on_loop(
        self, make: Callable[[Callable[[], int], list[WritableFile]], Iterator[list[FileMeta]]]
    ) -> list[FileMeta]:
        """Drive a ``write_tables`` generator on the event loop, yielding between slices;
        the finished tables are fsynced in a worker thread."""
        result: list[FileMeta] = []
        files: list[WritableFile] = []
        for result in make(self._new_file_number, files):  # noqa: B007 - the last step is the result
            await anyio.lowlevel.checkpoint()

        def sync_all() -> None:
            for f in files:
                f.sync()
                f.close()

        await anyio.to_thread.run_sync(sync_all)
        return result

    async def _log_and_apply(self, edit: VersionEdit) -> None:
        """Append ``edit`` to the manifest (fsynced) and install the version it makes.
        Requires: called from a background task (nothing cancels those mid-way)."""
        async with self._manifest_lock:
            edit.next_file_number = self.next_file_number
            manifest = self.manifest
            assert manifest is not None
            await anyio.to_thread.run_sync(manifest.append, edit)
            self.version = self.version.apply(edit)
            if manifest.size > MANIFEST_ROLLOVER_BYTES:
                await anyio.to_thread.run_sync(self._rollover_manifest)

    def _rollover_manifest(self) -> None:
        old = self.manifest
        assert old is not None
        number = self._new_file_number()
        base = self.version.to_edit()
        base.log_number = self.imms[0].wal_number if self.imms else self.mem.wal_number
        base.next_file_number = self.next_file_number
        base.last_seq = self.visible_seq
        self.manifest = ManifestWriter.create(self.fs, self.path, number, base)
        set_current(self.fs, self.path, number)
        old.close()
        self.fs.remove(os.path.join(self.path, filenames.manifest_name(old.number)))

    # ------------------------------------------------------------------ compaction

    async def compact(self) -> None:
        """Flush, then compact everything down to the last non-empty level. Cancel-safe: the
        background compactor does the work; this asks and waits."""
        await self.flush()
        self._manual_requested += 1
        wanted = self._manual_requested
        self._notify()
        while self._manual_done < wanted:
            self.check_writable()
            await self._wait_changed()
        self.check_writable()

    def _pick(self) -> CompactionTask | None:
        task = pick_compaction(self.version, self.policy, self.compact_pointer)
        if task is None and self._manual_done < self._manual_requested:
            for level in range(NUM_LEVELS - 1):
                deeper = any(self.version.levels[lvl] for lvl in range(level + 1, NUM_LEVELS))
                if self.version.levels[level] and (level == 0 or deeper):
                    return compaction_for_level(self.version, level, self.compact_pointer)
            self._manual_done = self._manual_requested
            self._notify()
        return task

    async def _run_compaction(self, task: CompactionTask) -> None:
        job = self._next_job()
        started = time.perf_counter()
        inputs = tuple(m.number for m in task.all_inputs)
        input_bytes = task.input_bytes

        def event(kind: EventKind, metas: list[FileMeta] | None = None, trivial: bool = False) -> SystemEvent:
            return SystemEvent(
                kind,
                job=job,
                level=task.level,
                output_level=task.output_level,
                input_files=inputs,
                input_bytes=input_bytes,
                output_files=() if metas is None else tuple(m.number for m in metas),
                output_bytes=0 if metas is None else sum(m.size for m in metas),
                entries=0 if metas is None else sum(m.entries for m in metas),
                duration=0.0 if metas is None else time.perf_counter() - started,
                time=time.time(),
                trivial=trivial,
            )

        self._emit(event("compaction_started"))
        if len(task.inputs) == 1 and not task.next_inputs and task.level > 0:
            meta = task.inputs[0]
            await self._log_and_apply(
                VersionEdit(deleted=[(task.level, meta.number)], added=[(task.output_level, meta)])
            )
            self.stats.trivial_moves += 1
            self._emit(event("compaction_finished", [meta], trivial=True))
            return
        snaps = list(self.snapshots)
        spec = self._table_spec(task.output_level)
        if self.use_process:
            reserve = task.input_bytes // max(1, spec.target_file_bytes) + len(task.all_inputs) + 4
            numbers = [self._new_file_number() for _ in range(reserve)]
            metas = await self._workers.run(
                run_compaction_in_worker, spec, list(task.all_inputs), numbers, snaps, task.drop_tombstones
            )
        else:
            runs = [self._reader(m).iter_entries(fill_cache=False) for m in task.all_inputs]
            merged = survivors(merge_entries(runs), snaps, task.drop_tombstones)
            metas = await self._run_on_loop(lambda nn, files: write_tables(self.fs, spec, merged, nn, unsynced=files))
        await anyio.to_thread.run_sync(self.fs.sync_dir, self.path)
        edit = VersionEdit(
            added=[(task.output_level, m) for m in metas],
            deleted=[(task.level, m.number) for m in task.inputs]
            + [(task.output_level, m.number) for m in task.next_inputs],
        )
        await self._log_and_apply(edit)
        self.compact_pointer[task.level] = max(m.largest for m in task.inputs)
        self.stats.compactions += 1
        self.stats.bytes_written_compaction += sum(m.size for m in metas)
        for meta in task.all_inputs:
            reader = self.readers.pop(meta.number, None)
            if reader is not None:
                reader.close()
            self.cache.evict_file(meta.number)
        paths = [os.path.join(self.path, filenames.table_name(m.number)) for m in task.all_inputs]
        self._emit(event("compaction_finished", metas))
        self._notify()
        await anyio.to_thread.run_sync(self._remove_files, paths)

    def _remove_files(self, paths: list[str]) -> None:
        self.pins.remove(self.fs, paths)  # a pinned file (a backup reads it) goes when unpinned

    # ------------------------------------------------------------------ backup

    async def pin_for_backup(self) -> tuple[int, Version, list[tuple[int, int | None]], list[str]]:
        """For ``backup.py``: ``(seq, version, wals, pins)`` taken at one instant: the last
        visible sequence number, the version, and the WAL segments holding the memtables,
        oldest first, as ``(number, end)``: the segment's bytes up to ``end`` hold exactly its
        batches ``<= seq`` (``None``: the whole segment, a retired one). ``wals`` is empty for
        a read-only database (its memtable came from the segments on disk). Taken under the
        manifest lock, so no flush is half-installed (its table in the version while its
        memtable is still in ``imms``). The tables and segments are pinned: release with
        ``pins.unpin(pins)``."""
        self.check_open()
        async with self._manifest_lock:
            self.check_open()
            seq, version = self.visible_seq, self.version
            wals: list[tuple[int, int | None]] = []
            if not self.read_only and self.wal is not None:
                wals = [(m.wal_number, None) for m in self.imms]
                wal = self.wal
                if not self._pending and not self._syncing:
                    end = wal.size  # every batch appended is visible
                elif self.visible_wal_end[0] == wal.number:
                    end = self.visible_wal_end[1]
                else:
                    end = HEADER_SIZE  # nothing of this segment is visible yet
                wals.append((wal.number, end))
            paths = [os.path.join(self.path, filenames.table_name(m.number)) for _, m in version.files()]
            paths += [os.path.join(self.path, filenames.wal_name(n)) for n, _ in wals]
            return seq, version, wals, self.pins.pin(paths)

    # ------------------------------------------------------------------ background

    def _start_background(self) -> None:
        loop = asyncio.get_running_loop()
        # The one long-lived task. It hosts the anyio task group that owns every background
        # job; close() awaits it. A task group entered in the caller's task instead would
        # tie background failures, and cancellation, to whichever task called open().
        self._supervisor = loop.create_task(self._supervise(), name=f"quanta-background:{self.path}")

    async def _supervise(self) -> None:
        # An asyncio.TaskGroup, not anyio's: anyio wraps each coroutine in another one, and a
        # wrapper cancelled before its first step (asyncio.run cancelling everything when a
        # program returns without closing the database) leaves the inner coroutine never
        # awaited, which Python reports at exit. A plain task cancelled before it starts
        # closes its coroutine cleanly. The workers still use anyio inside.
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._guard(self._spare_maker))
                tg.create_task(self._guard(self._flusher))
                tg.create_task(self._guard(self._compactor))
                tg.create_task(self._closer())
        finally:
            await self._workers.aclose()
            self._shutdown()

    async def _guard(self, worker: Callable[[], Awaitable[None]]) -> None:
        try:
            await worker()
        except Exception as exc:
            self._fail(exc, background=True)

    async def _spare_maker(self) -> None:
        """Keep one spare WAL segment ready (created, synced, its name durable), so that
        rotation on the write path never waits for file creation."""
        while not self._stopping and self._failure is None:
            if self._spare_wal is None:
                self._spare_wal = await anyio.to_thread.run_sync(self._make_wal, self._new_file_number())
                self._notify()
                continue
            await self._wait_changed()

    def _make_wal(self, number: int) -> WalWriter:
        wal = WalWriter.create(self.fs, self.path, number)
        wal.sync()
        self.fs.sync_dir(self.path)  # the segment's name must survive a crash
        return wal

    async def _flusher(self) -> None:
        while True:
            if self.imms and self._failure is None:
                old = self.imms[0]
                if not self._wal_closed(old.wal_number):
                    await self._close_wal(old.wal_number)
                await self._flush_one()
                continue
            if self._stopping or self._failure is not None:
                return
            await self._wait_changed()

    def _wal_closed(self, number: int) -> bool:
        return number in self._closed_wals

    async def _close_wal(self, number: int) -> None:
        wal = self._retired_wals.pop(number, None)
        if wal is not None:
            await anyio.to_thread.run_sync(_sync_and_close, wal)
        self._closed_wals.add(number)

    async def _closer(self) -> None:
        """Wait for close(); then flush (so reopening finds an empty WAL) and stop the other
        workers. Running here, not in close()'s caller, makes close cancel-safe: a cancelled
        close still completes."""
        while not self._close_requested:
            await self._wait_changed()
        if self._failure is None:
            try:
                await self._flush_memtables()
            except QuantaError:
                pass  # recorded in _failure; close() reports a background one
        self._stopping = True
        self._notify()

    async def _compactor(self) -> None:
        while not self._stopping and self._failure is None:
            task = self._pick()
            if task is not None:
                await self._run_compaction(task)
                continue
            await self._wait_changed()

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Flush, stop background work after the current jobs, release the directory.

        Cancel-safe: if the caller is cancelled, the shutdown still completes in the
        background task."""
        self.close_called = True
        if self.closed:
            if self._supervisor is not None and not self._shut:
                await asyncio.shield(self._supervisor)  # a close() already under way
            return
        self.closed = True  # from now on the database refuses new operations
        if self._supervisor is None:
            if self.follower is not None:
                await self.follower.stop()
            self._shutdown()
            return
        with registry_lock:  # a new open() of this directory waits for the release
            registration = getattr(self, "_registration", None)
            if registration is not None:
                registration.abandoned = True
        self._close_requested = True  # the closer task flushes and stops the workers
        self._notify()
        await asyncio.shield(self._supervisor)
        if self._failure is not None and self._failure_background:
            # A foreground failure was raised to its caller already; a background one may
            # have gone unseen, so close reports it.
            raise BackgroundError(f"a background job failed: {self._failure!r}") from self._failure

    def _shutdown(self) -> None:
        if self._shut:
            return
        self._shut = self.closed = True
        self._notify()
        hooks, self.on_shutdown = self.on_shutdown, []
        for hook in hooks:
            hook(self._failure)
        for wal in [*self._retired_wals.values(), self._spare_wal]:
            if wal is not None:
                try:
                    wal.close()
                except QuantaError:
                    pass
        if self._spare_wal is not None:
            try:
                self.fs.remove(self._spare_wal.path)
            except QuantaError:
                pass
            self._spare_wal = None
        self._release()

    # ------------------------------------------------------------------ verify and stats

    def level_summary(self) -> list[dict[str, int]]:
        return [
            {"level": level, "files": len(files), "bytes": sum(f.size for f in files)}
            for level, files in enumerate(self.version.levels)
        ]

    async def verify(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Read every block of every table of the current version (in a worker thread),
        checking checksums, order and the manifest's entry counts; ``progress(done, total)``
        after each table.

        Flushes and compactions go on meanwhile; the tables being checked stay readable: a
        writer pins their files (a compaction's removal of one waits, as for a backup), a
        reader beside a writer reads them through the descriptors it holds, kept open until
        the check ends even when the follower installs a newer version."""
        self.check_open()
        version = self.version
        if self.follower is not None:
            held = self.follower.hold()
            try:
                return await anyio.to_thread.run_sync(self._verify_tables, version, held, progress)
            finally:
                self.follower.release()
        token = self.pins.pin(os.path.join(self.path, filenames.table_name(m.number)) for _, m in version.files())
        try:
            return await anyio.to_thread.run_sync(self._verify_tables, version, {}, progress)
        finally:
            with anyio.CancelScope(shield=True):
                due = self.pins.unpin(token)
                if due and not self.closed:
                    await anyio.to_thread.run_sync(self._remove_files, due)

    def _verify_tables(
        self, version: Version, held: dict[int, TableReader], progress: Callable[[int, int], None] | None
    ) -> dict[str, int]:
        metas = [m for _, m in version.files()]
        entries = 0
        for i, meta in enumerate(metas):
            path = os.path.join(self.path, filenames.table_name(meta.number))
            reader = held.get(meta.number)
            if reader is not None:
                count = reader.verify()
            else:
                with TableReader.open(self.fs, path, meta.number, None) as opened:
                    count = opened.verify()
            if count != meta.entries:
                raise CorruptionError(f"table holds {count} entries, the manifest says {meta.entries}", path=path)
            entries += count
            if progress is not None:
                progress(i + 1, len(metas))
        return {"tables": len(metas), "entries": entries}


def _sync_and_close(wal: WalWriter) -> None:
    wal.sync()
    wal.close()


def _absolute(path: str) -> str:
    return os.path.abspath(path)
