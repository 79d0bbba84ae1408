"""A read-only open beside a running writer: load a consistent state, then follow the writer.

A read-only open takes no lock: it never blocks the writer, and the writer does nothing for it
(no registry, no deferred deletion). What keeps a reader right is that it **holds open file
descriptors** on every file it reads: POSIX keeps an unlinked file readable through a
descriptor opened before the unlink, and the writer never changes a file after it is finished
(tables are immutable; a WAL segment or MANIFEST is only appended to, and never after the
writer moved past it). So a compaction or WAL removal by the writer cannot change what an
installed state reads.

Loading (:meth:`Tailer.load`): read CURRENT, replay the MANIFEST it names into a version, open
every table of that version, open every WAL segment from the version's ``log_number`` on, and
read their complete records. A file that vanished in between (the writer compacted or
rotated) restarts the load from CURRENT; the WAL tail is read, never repaired: a record that
is incomplete or fails its checksum at the end of a live segment is "not written yet".

Following (:meth:`Tailer.poll`, then :meth:`Follower.apply`): look at CURRENT (a new MANIFEST
after a rollover or a writer restart), read the MANIFEST's new edits, list the directory and
open new WAL segments, read new complete records. Segment ``n`` is *final* (nothing more will
be appended) once the manifest's ``log_number`` passed it or a later segment holds a record:
the writer finishes a segment before its first append to the next, so after seeing the later
record the reader reads ``n`` to its end once more and moves on.

Rules the loop side keeps (:class:`Follower`):

* Batches are applied to the reader's own memtables in sequence order, each ``seq`` exactly
  one more than the last (the writer numbers commits without gaps), and published through the
  engine's apply hook (the change bus), as a writer's commits are.
* A new version (tables after a flush or compaction) is installed only when every WAL segment
  below its ``log_number`` was read to its end (so the reader's memtables for those segments
  are exactly what the new tables hold, and are dropped), its ``last_seq`` is not ahead of the
  reader, and no snapshot older than the reader's newest state is open: the writer's
  compactions keep only the versions its own snapshots need, so an old snapshot of the reader
  must keep reading the old tables (their descriptors are held until the install).
* A batch that is missing (its segment was flushed and removed between two looks) or a
  history that went back (a different database put in place) is a *gap*: subscriptions end
  with :class:`~quanta.errors.ReaderLagError` (their changes can no longer be told exactly),
  and the reader reloads from CURRENT once no snapshot is open; reads go on meanwhile at the
  last consistent state.

Concurrency: :meth:`Tailer.poll` and :meth:`Tailer.load` do file I/O and run in a worker
thread; :meth:`Follower.apply` runs on the event loop. One poll at a time (``Follower._lock``),
and the loop side touches the tailer only while no poll runs. Departure from RocksDB's
secondary instance (``TryCatchUpWithPrimary``), which this otherwise follows: RocksDB's
primary may delete files a secondary still needs and the secondary retries; here holding the
descriptors makes the installed state immune, and only a reader that falls a whole WAL
segment behind between two looks has to reload.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import CorruptionError, QuantaError, ReaderLagError, StorageIOError
from . import filenames
from .cache import BlockCache
from .format import HEADER_SIZE, MANIFEST_MAGIC, WAL_MAGIC, FileHeader, checksum
from .log import RECORD_HEADER_SIZE, RecordType
from .manifest import VersionEdit, read_current
from .memtable import Memtable
from .sstable import TableReader
from .version import Version
from .vfs import FileSystem, ReadableFile
from .wal import Batch, decode_batch

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["LOAD_ATTEMPTS", "Follower", "HeldState", "Tailer"]

#: How often a load restarts because a file vanished under it before giving up.
LOAD_ATTEMPTS = 50
_READ_CHUNK = 1 << 20
_RECORD_HEADER = struct.Struct("<IIB")
_FULL = int(RecordType.FULL)
_CATALOG = b"\x00Qc"  # the schema catalog's reserved keys (quanta/_schema/keyspace.py)


class _Closable(Protocol):
    def close(self) -> None: ...


class _Vanished(Exception):
    """A file the writer removed under a load: start again from CURRENT."""


def _gone(exc: StorageIOError) -> bool:
    return exc.errno == errno.ENOENT


class _LogTail:
    """An open record log (WAL segment or MANIFEST) read incrementally from ``offset``."""

    __slots__ = ("file", "final", "magic", "number", "offset", "pending", "trailing")

    def __init__(self, file: ReadableFile, magic: bytes, number: int) -> None:
        self.file = file
        self.magic = magic
        self.number = number
        self.offset = 0  # 0: the header was not read yet
        self.final = False
        self.pending: list[tuple[Batch, int]] = []  # WAL batches read (with where each ends), not yet handed on
        self.trailing = 0  # bytes after the last complete record (a record being written, or torn)

    def read_new(self) -> list[tuple[bytes, int]]:
        """The complete, checksummed records written since the last call, with their offsets.
        Stops silently at an incomplete or damaged record: at the end of a live log that is
        a record being written (checked again next time)."""
        chunks = []
        pos = self.offset
        while True:
            data = self.file.pread(pos, _READ_CHUNK)
            chunks.append(data)
            pos += len(data)
            if len(data) < _READ_CHUNK:
                break
        data = b"".join(chunks)
        base = self.offset
        out: list[tuple[bytes, int]] = []
        at = 0
        if base == 0:
            if len(data) < HEADER_SIZE:
                return out
            try:
                header = FileHeader.decode(data, path=self.file.path, expect_magic=self.magic)
            except CorruptionError:
                return out  # a header being written (a crash-damaged spare stays "empty")
            if header.file_number != self.number:
                raise CorruptionError(
                    f"file number mismatch: the header says {header.file_number}, expected {self.number}",
                    path=self.file.path,
                    offset=16,
                )
            at = HEADER_SIZE
        view = memoryview(data)
        n = len(data)
        while n - at >= RECORD_HEADER_SIZE:
            crc, length, rtype = _RECORD_HEADER.unpack_from(data, at)
            end = at + RECORD_HEADER_SIZE + length
            if end > n or rtype != _FULL or checksum(view[at + 4 : end]) != crc:
                break
            out.append((data[at + RECORD_HEADER_SIZE : end], base + at))
            at = end
        self.offset = base + at
        self.trailing = n - at
        return out

    def close(self) -> None:
        self.file.close()


@dataclass
class Candidate:
    """A version the writer's MANIFEST describes, its tables open, not yet installed."""

    version: Version
    log_number: int
    last_seq: int
    readers: dict[int, TableReader]


@dataclass
class Tailer:
    """The file side of following (runs in a worker thread; see the module docstring)."""

    fs: FileSystem
    path: str
    cache: BlockCache
    #: closes the WAL segments the tailer lets go (the follower defers it while a hold is active)
    let_go: Callable[[Sequence[_Closable]], None]
    manifest: _LogTail | None = None
    version: Version = field(default_factory=Version)
    log_number: int = 0
    last_seq: int = 0
    dirty: bool = False  # the manifest has edits not yet made a candidate
    installed: dict[int, TableReader] = field(default_factory=dict)
    candidate: Candidate | None = None
    wals: dict[int, _LogTail] = field(default_factory=dict)
    # (segment, batch, offset where its record ends), read in order
    batches: list[tuple[int, Batch, int]] = field(default_factory=list)
    #: closes the WAL segments the tailer lets go (the follower defers it while a hold is active)

    # ------------------------------------------------------------------ loading

    def load(self) -> Candidate:
        """A consistent state from scratch (see the module docstring); ``self.batches``
        holds the WAL batches after it. Raises CorruptionError after ``LOAD_ATTEMPTS``
        restarts (a writer rewriting the directory faster than it can be read)."""
        last: BaseException | None = None
        try:
            for _ in range(LOAD_ATTEMPTS):
                self._let_go()
                try:
                    self._read_manifest_from_current()
                    cand = self._make_candidate()
                    if cand is None:
                        continue
                    if self.log_number not in self._open_new_wals():
                        raise _Vanished
                    self._read_wals()
                    seqs = [batch[0] for _, batch, _ in self.batches]
                    if any(b != a + 1 for a, b in itertools.pairwise(seqs)) or (seqs and seqs[0] > cand.last_seq + 1):
                        raise _Vanished  # a segment flushed and removed between the listing and its open
                    self.candidate = None
                    self.installed = cand.readers
                    return cand
                except _Vanished as exc:
                    last = exc
        except BaseException:
            self._let_go()
            raise
        self._let_go()
        raise CorruptionError(
            f"could not load a consistent state in {LOAD_ATTEMPTS} attempts: files kept vanishing", path=self.path
        ) from last

    def _let_go(self) -> None:
        """Close everything but the installed tables (the loop may be reading them)."""
        if self.candidate is not None:
            for number, reader in self.candidate.readers.items():
                if number not in self.installed:
                    reader.close()
            self.candidate = None
        wals, self.wals = list(self.wals.values()), {}
        self.let_go(wals)
        if self.manifest is not None:
            self.manifest.close()
            self.manifest = None
        self.batches = []
        self.dirty = False

    def _read_manifest_from_current(self) -> None:
        try:
            number = read_current(self.fs, self.path)
        except StorageIOError as exc:
            if _gone(exc):
                raise _Vanished from exc
            raise
        mpath = os.path.join(self.path, filenames.manifest_name(number))
        try:
            file = self.fs.open_read(mpath)
        except StorageIOError as exc:
            if _gone(exc):
                raise _Vanished from exc  # rolled over (or the writer restarted) meanwhile
            raise
        tail = _LogTail(file, MANIFEST_MAGIC, number)
        records = tail.read_new()
        if not records:
            tail.close()
            raise CorruptionError("manifest holds no base version edit", path=mpath, offset=HEADER_SIZE)
        if self.manifest is not None:
            self.manifest.close()
        self.manifest = tail
        self.version = Version()
        self.log_number = 0
        self.last_seq = 0
        self._apply_edits(records)

    def _apply_edits(self, records: list[tuple[bytes, int]]) -> None:
        assert self.manifest is not None
        for payload, offset in records:
            edit = VersionEdit.decode(payload, path=self.manifest.file.path, offset=offset)
            self.version = self.version.apply(edit)
            if edit.log_number is not None:
                self.log_number = edit.log_number
            if edit.last_seq is not None:
                self.last_seq = max(self.last_seq, edit.last_seq)
        self.dirty = True

    def _make_candidate(self) -> Candidate | None:
        """Open the tables of the manifest's version (reusing open ones). None if one
        vanished: the manifest has moved on (read it again)."""
        opened = {**self.installed, **(self.candidate.readers if self.candidate else {})}
        readers: dict[int, TableReader] = {}
        for _, meta in self.version.files():
            reader = opened.get(meta.number)
            if reader is None:
                tpath = os.path.join(self.path, filenames.table_name(meta.number))
                try:
                    reader = TableReader.open(self.fs, tpath, meta.number, self.cache)
                except StorageIOError as exc:
                    if not _gone(exc):
                        raise
                    for number, r in readers.items():
                        if number not in opened:
                            r.close()
                    return None
            readers[meta.number] = reader
        if self.candidate is not None:  # superseded: close what only it used
            for number, r in self.candidate.readers.items():
                if number not in readers and number not in self.installed:
                    r.close()
        self.candidate = Candidate(self.version, self.log_number, self.last_seq, readers)
        self.dirty = False
        return self.candidate

    # ------------------------------------------------------------------ following

    def poll(self) -> None:
        """Read what the writer wrote since the last look: a new candidate version
        (``self.candidate``) and new batches (``self.batches``)."""
        try:
            number = read_current(self.fs, self.path)
        except StorageIOError as exc:
            if not _gone(exc):
                raise
            number = self.manifest.number if self.manifest else -1
        if self.manifest is None or number != self.manifest.number:
            try:
                self._read_manifest_from_current()
            except _Vanished:
                pass  # rolled over again meanwhile: next time
        else:
            records = self.manifest.read_new()
            if records:
                self._apply_edits(records)
        if self.dirty:
            self._make_candidate()
        self._open_new_wals()
        self._read_wals()

    def _open_new_wals(self) -> set[int]:
        """Open every WAL segment not yet open from the oldest still needed on; the numbers
        opened now."""
        floor = min([n for n, w in self.wals.items() if not w.final] + [self.log_number])
        opened: set[int] = set()
        for name in self.fs.listdir(self.path):
            parsed = filenames.parse_name(name)
            if parsed is None or parsed[0] != "wal" or parsed[1] < floor or parsed[1] in self.wals:
                continue
            try:
                file = self.fs.open_read(os.path.join(self.path, name))
            except StorageIOError as exc:
                if _gone(exc):
                    continue  # flushed and removed already: a gap if we needed it (seq check)
                raise
            self.wals[parsed[1]] = _LogTail(file, WAL_MAGIC, parsed[1])
            opened.add(parsed[1])
        return opened

    def _read(self, wal: _LogTail) -> None:
        for payload, offset in wal.read_new():
            end = offset + RECORD_HEADER_SIZE + len(payload)
            wal.pending.append((decode_batch(payload, path=wal.file.path, offset=offset), end))

    def _read_wals(self) -> None:
        order = sorted(n for n, w in self.wals.items() if not w.final)
        for i, number in enumerate(order):
            wal = self.wals[number]
            self._read(wal)
            final = self.log_number > number
            if not final:
                for later in order[i + 1 :]:
                    self._read(self.wals[later])
                    if self.wals[later].pending:
                        final = True
                        break
            if final:
                self._read(wal)  # whatever was appended before the later record or the edit
                wal.final = True
            self.batches += [(number, b, end) for b, end in wal.pending]
            wal.pending = []
            if not final:
                break

    def consumed_below(self, log_number: int) -> bool:
        """Every open WAL segment below ``log_number`` has been read to its end."""
        return all(w.final for n, w in self.wals.items() if n < log_number)

    def install(self, cand: Candidate) -> list[TableReader]:
        """``cand`` becomes the installed state; the readers it no longer uses (to close)
        and the WAL segments below its log number are let go."""
        retired = [r for n, r in self.installed.items() if n not in cand.readers]
        self.installed = cand.readers
        if self.candidate is cand:
            self.candidate = None
        self.let_go([self.wals.pop(n) for n in sorted(self.wals) if n < cand.log_number])
        return retired

    def close(self) -> None:
        """Close every descriptor (installed tables too: call only when done with them)."""
        self._let_go()
        for reader in self.installed.values():
            reader.close()
        self.installed = {}


def origin_of(keys: list[bytes]) -> str:
    """The origin a followed batch is published with (the WAL does not record it): a batch
    mixing catalog keys with others is a transaction (the bus then hides the catalog's
    bookkeeping, as in the writer), one of catalog keys only a schema change, else
    ``"follower"``."""
    catalog = sum(1 for k in keys if k.startswith(_CATALOG))
    if not catalog:
        return "follower"
    return "schema" if catalog == len(keys) else "transaction"


@dataclass(frozen=True)
class HeldState:
    """What :meth:`Follower.hold_state` returns: ``seq`` (the reader's visible sequence
    number), its ``version`` and the ``readers`` of its tables, and ``wals``: ``(segment,
    open file, end)`` oldest first, whose records up to ``end`` are exactly the batches the
    reader applied past the version (every one ``<= seq``)."""

    seq: int
    version: Version
    readers: dict[int, TableReader]
    wals: list[tuple[int, ReadableFile, int]]


class Follower:
    """The event-loop side of following, owned by a read-only :class:`Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tailer = Tailer(engine.fs, engine.path, engine.cache, self._close_later)
        self.interval = engine.opts.follow_interval
        self.polls = 0
        self.installs = 0
        self.reloads = 0
        self.lag_gaps = 0
        self._needs_reload = False
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[object] | None = None
        self._stopping = False
        self._wake: asyncio.Event | None = None
        # While a worker thread reads the installed tables or WAL segments (verify, backup),
        # the readers and segments an install or reload lets go are closed only when the last
        # such hold ends. Taken and released on the loop, but a reload lets segments go in
        # its worker thread: a lock guards the count and the deferred list.
        self._holds = 0
        self._deferred: list[_Closable] = []
        self._hold_lock = threading.Lock()
        self._closed = False
        #: segment number -> offset where the last batch applied from it ends: the reader's
        #: memtables hold exactly the records of each segment up to there (for backups)
        self.applied: dict[int, int] = {}
        #: called with the error when subscribers must end (a gap); set by the change bus
        self.on_lag: list[Callable[[BaseException], None]] = []

    # ------------------------------------------------------------------ open (worker thread)

    def load_sync(self) -> None:
        """Load a consistent state into the engine. Requires: nothing else uses the engine
        (it runs inside ``Engine.open``)."""
        self._install_loaded(self.tailer.load())

    def _install_loaded(self, cand: Candidate) -> None:
        eng = self.engine
        batches, self.tailer.batches = self.tailer.batches, []
        eng.version = cand.version
        eng.readers = dict(cand.readers)
        mems: list[Memtable] = []
        self.applied = {}
        for number, (seq, keys, values), end in batches:
            if not mems or mems[-1].wal_number != number:
                mems.append(Memtable(number))
            mems[-1].apply(seq, keys, values)
            self.applied[number] = end
        top = batches[-1][1][0] if batches else 0
        eng.last_seq = eng.visible_seq = max(cand.last_seq, top)
        eng.log_number = cand.log_number
        eng.mem = mems.pop() if mems else Memtable(cand.log_number)
        eng.imms = mems
        eng.recovered_wal_batches = len(batches)
        eng.recovery_tail = "torn" if any(w.trailing for w in self.tailer.wals.values()) else "clean"

    # ------------------------------------------------------------------ following (event loop)

    def start(self) -> None:
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"quanta-follow:{self.engine.path}")

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            if self._stopping:
                return
            try:
                await self.catch_up()
            except QuantaError:
                return  # recorded as the engine's failure: reads go on at the last state

    async def catch_up(self) -> int:
        """Read and apply everything the writer wrote so far; the reader's seq after it.
        Raises the failure that stopped following (reads still serve the last state)."""
        eng = self.engine
        eng.check_open()
        if eng._failure is not None:
            eng._raise_failure()
        assert self._lock is not None
        async with self._lock:
            if self._inflight is not None:  # a cancelled catch_up's poll still runs: wait for it
                await asyncio.shield(self._inflight)
            for _ in range(2):  # a poll that finds a gap reloads at once (when it may)
                if eng.closed:
                    break
                reload = self._needs_reload and not eng.snapshots
                result = await self._in_thread(self.tailer.load if reload else self.tailer.poll)
                self.polls += 1
                if reload:
                    assert isinstance(result, Candidate)
                    self._reload(result)
                    break
                self.apply()
                if not self._needs_reload:
                    break
            return eng.visible_seq

    async def _in_thread(self, work: Callable[[], object]) -> object:
        """Run a poll or load in a worker thread; no cancellation stops it half-way (stop()
        waits for it). A failure stops following: reads go on at the last state."""
        fut = asyncio.get_running_loop().run_in_executor(None, work)
        self._inflight = fut
        fut.add_done_callback(lambda _: setattr(self, "_inflight", None))
        try:
            return await asyncio.shield(fut)
        except QuantaError as exc:
            self.engine._fail(exc, background=True)
            raise

    def apply(self) -> None:
        """Apply the batches the last poll read, then install its candidate if allowed."""
        eng = self.engine
        tailer = self.tailer
        batches, tailer.batches = tailer.batches, []
        if self._needs_reload:
            return  # the state is frozen until the reload
        for number, (seq, keys, values), end in batches:
            if seq != eng.visible_seq + 1:
                what = "went back" if seq <= eng.visible_seq else "skipped ahead"
                self._lost(f"the writer's history {what}: seq {seq} after {eng.visible_seq}")
                return
            mem = eng.mem
            if mem.wal_number != number:
                if len(mem):
                    eng.imms.append(mem)
                mem = eng.mem = Memtable(number)
            mem.apply(seq, keys, values)
            self.applied[number] = end
            eng.last_seq = eng.visible_seq = seq
            hook = eng.on_apply
            if hook is not None:
                hook(seq, keys, values, origin_of(keys))
        cand = tailer.candidate
        if cand is None:
            return
        if cand.last_seq > eng.visible_seq and tailer.consumed_below(cand.log_number):
            self._lost(f"commits up to seq {cand.last_seq} were flushed and their WAL removed before it read them")
            return
        if not tailer.consumed_below(cand.log_number) or cand.last_seq > eng.visible_seq:
            return
        if eng.snapshots and eng.snapshots[0] < eng.visible_seq:
            return  # an older snapshot keeps reading the installed tables
        self._install(cand)

    def _install(self, cand: Candidate) -> None:
        eng = self.engine
        retired = self.tailer.install(cand)
        eng.version = cand.version
        eng.readers = dict(cand.readers)
        eng.log_number = cand.log_number
        eng.imms = [m for m in eng.imms if m.wal_number >= cand.log_number]
        if eng.mem.wal_number < cand.log_number:
            eng.mem = Memtable(cand.log_number)
        self.applied = {n: end for n, end in self.applied.items() if n >= cand.log_number}
        self._retire(retired)
        self.installs += 1

    def _retire(self, readers: list[TableReader]) -> None:
        for reader in readers:
            self.engine.cache.evict_file(reader.file_number)
        self._close_later(readers)

    def _close_later(self, items: Sequence[_Closable]) -> None:
        """Close ``items`` now, or when the last hold ends (any thread)."""
        with self._hold_lock:
            if self._holds and not self._closed:
                self._deferred += items
                return
        for item in items:
            item.close()

    def hold(self) -> dict[int, TableReader]:
        """The installed tables' readers, kept open until :meth:`release` (call it exactly
        once, in a ``finally``): a worker thread may read them while installs go on (on the
        event loop). The WAL segments the tailer lets go meanwhile stay open too. A close of
        the database closes everything all the same (a read after it fails, EBADF)."""
        with self._hold_lock:
            self._holds += 1
        return dict(self.engine.readers)

    def release(self) -> None:
        with self._hold_lock:
            self._holds -= 1
            if self._holds:
                return
            deferred, self._deferred = self._deferred, []
        for item in deferred:
            item.close()

    async def hold_state(self) -> HeldState:
        """A hold (as :meth:`hold`; release with :meth:`release`) on the reader's whole state
        at one instant: its installed version and tables, and the open WAL segments its
        memtables came from, each with the offset where the last batch applied from it ends.
        Taken while no poll or load runs (those change the tailer's segments in a thread), so
        it may wait for one to finish."""
        eng = self.engine
        assert self._lock is not None
        async with self._lock:
            if self._inflight is not None:  # a cancelled catch_up's poll still runs
                try:
                    await asyncio.shield(self._inflight)
                except Exception:
                    pass  # recorded as the engine's failure; the state stays the last one
            eng.check_open()
            if any(n not in self.tailer.wals for n in self.applied):
                eng._raise_failure()  # a failed reload let the segments go: the state is memory only
            wals = [(n, self.tailer.wals[n].file, end) for n, end in sorted(self.applied.items())]
            readers = self.hold()
            return HeldState(eng.visible_seq, eng.version, readers, wals)

    def _lost(self, why: str) -> None:
        """A gap: end the subscriptions and reload once no snapshot is open."""
        self._needs_reload = True
        self.lag_gaps += 1
        err = ReaderLagError(
            f"the read-only database at {self.engine.path} fell behind its writer ({why}); "
            "its subscriptions ended, reads go on at the newer state once it reloads"
        )
        for hook in list(self.on_lag):
            hook(err)
        if self._wake is not None:
            self._wake.set()

    def _reload(self, cand: Candidate) -> None:
        eng = self.engine
        old = eng.readers
        self._install_loaded(cand)
        self._retire([r for n, r in old.items() if n not in cand.readers])
        self._needs_reload = False
        self.reloads += 1
        if self._wake is not None:
            self._wake.clear()

    async def stop(self) -> None:
        """Stop following and close every descriptor the follower holds. Cancel-safe."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.shield(self._task)
            except BaseException:  # a cancelled close still closes
                pass
        if self._inflight is not None:
            try:
                await asyncio.shield(self._inflight)
            except BaseException:
                pass
        self.close_sync()

    def close_sync(self) -> None:
        with self._hold_lock:
            self._closed = True  # from now on nothing is deferred
            deferred, self._deferred = self._deferred, []
        self.tailer.close()
        for item in deferred:
            item.close()
        self.engine.readers = {}
