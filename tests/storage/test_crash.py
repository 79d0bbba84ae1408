"""Power loss at every I/O point: the prefix property, and an audit of the persistence protocol.

A deterministic workload (single puts and deletes, ``put_many`` and ``batch`` commits, flushes,
a manual compaction, reopens; a 4 KiB memtable, so WAL rotations, flushes, compactions and
manifest edits happen every few dozen commits) runs once on a :class:`MemoryFileSystem`
whose ``fail_hook`` freezes a copy of the file system just before every operation. Crash
point *k* is the copy taken before ``ops[k]`` (plus one after the final close). Each copy is
crashed in every variant below and opened, and the recovered database must satisfy:

(a) its state is the model state after some prefix of the commit sequence (a batch is there
    whole or not at all);
(b) that prefix includes every commit promised durable before the crash: with
    ``durability="sync"`` every acknowledged one (its ``await`` returned), with ``"os"``
    those before the last completed flush, compaction or close;
(c) ``verify()`` passes;
(d) reopening gives the same state, and the recovered database takes new writes that
    survive another reopen.

A second test crashes again at every operation *of recovery itself*. A third audits the
recorded operation list against the persistence protocol (rules ``R1``..``R5`` below)
without crashing anything. The checkers are themselves tested: a tampered operation list
must break the rule it tampers with, and an engine whose WAL fsync does nothing must lose
acknowledged commits.

``QUANTA_LONG=1`` checks every crash point of every workload; CI checks every point of the
small workloads and a fixed random sample (``QUANTA_CRASH_SEED``) of the large one.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from helpers_crash import (
    LONG,
    PATH,
    SMALL_OPTIONS,
    Commit,
    PrefixStates,
    RecordingFS,
    Step,
    WorkloadLog,
    apply,
    check_recovery,
    commits_of,
    digest,
    freeze,
    make_plan,
    run_workload,
    slow_when_long,
    write_summary,
)

import quanta
from quanta._storage import filenames
from quanta._storage.format import HEADER_SIZE
from quanta._storage.log import RECORD_HEADER_SIZE
from quanta._storage.manifest import VersionEdit
from quanta._storage.vfs import MemoryFileSystem, Op, _Inode
from quanta._storage.wal import WalWriter

SAMPLE_SEED = int(os.environ.get("QUANTA_CRASH_SEED", "0"))

#: How a power loss may treat what was not made durable (see ``MemoryFileSystem.crash``).
VARIANTS: dict[str, dict[str, bool]] = {
    "drop": {},  # unsynced bytes and unsynced directory changes vanish
    "garble": {"garble_tail": True},  # unsynced bytes become random bytes of random length
    "keep_dir": {"keep_unsynced_dir_entries": True},  # creates/renames/removes persist anyway
    "garble+keep_dir": {"garble_tail": True, "keep_unsynced_dir_entries": True},
}

#: name: (plan, options). Options other than durability are SMALL_OPTIONS.
WORKLOADS: dict[str, tuple[Callable[[], list[Step]], dict[str, str]]] = {
    # ~270 file operations: every point is checked, always.
    "small": (lambda: make_plan(1, 60, reopen_at=[30], flush_every=20, compact_every=45), {}),
    # ~1000 operations, three opens, L0->L1->L2 compactions: sampled in CI.
    "large": (lambda: make_plan(2, 300, reopen_at=[110, 220]), {}),
    # durability="os" promises only what a flush, compaction or close made durable; a crash
    # must still leave a prefix (no holes, no partial batch).
    "small-os": (lambda: make_plan(1, 60, reopen_at=[30], flush_every=20, compact_every=45), {"durability": "os"}),
}
SYNC_WORKLOADS = [name for name, (_, opts) in WORKLOADS.items() if opts.get("durability", "sync") == "sync"]
CI_SAMPLE = {"small": None, "large": 300, "small-os": None}  # crash points checked in CI (None: all)


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Summary lines, printed at the end of the module (visible without ``-s``)."""
    lines: list[str] = []
    yield lines
    write_summary(request, lines)


# --------------------------------------------------------------------------- recording


@dataclass
class CrashImage:
    point: int  # the crash happens just before ops[point]; len(ops): after the last one
    op: Op | None
    promised: int  # commits promised durable when the crash happened (see Recording.promised)
    fs: MemoryFileSystem  # frozen: synced and unsynced state, crash variants not applied yet


@dataclass
class Recording:
    plan: list[Step]
    prefixes: PrefixStates
    fs: RecordingFS
    log: WorkloadLog
    sync: bool = True  # durability="sync"
    images: list[CrashImage] = field(default_factory=list)

    def promised(self) -> int:
        """Commits promised durable so far: every acknowledged one with durability="sync";
        with "os", those before the last completed flush, compaction or close."""
        return self.log.acked if self.sync else self.log.flushed


_recordings: dict[str, Recording] = {}


async def recorded(name: str) -> Recording:
    """Run workload ``name`` once, freezing the file system before every operation."""
    if name not in _recordings:
        make, options = WORKLOADS[name]
        plan = make()
        fs = RecordingFS()
        sync = options.get("durability", "sync") == "sync"
        rec = Recording(plan, PrefixStates(commits_of(plan)), fs, WorkloadLog(), sync)

        def freeze_before(op: Op) -> None:
            with fs._mutex:  # the group-commit fsync calls this from a worker thread
                promised = rec.promised()  # read first: what was promised is synced already
                rec.images.append(CrashImage(len(rec.images), op, promised, freeze(fs)))

        fs.fail_hook = freeze_before
        await run_workload(fs, plan, rec.log, **options)
        fs.fail_hook = None
        rec.images.append(CrashImage(len(rec.images), None, rec.promised(), freeze(fs)))
        assert len(rec.images) == len(fs.ops) + 1
        _recordings[name] = rec
    return _recordings[name]


def describe(img: CrashImage) -> str:
    if img.op is None:
        return f"point {img.point} (after close)"
    return f"point {img.point} (before {img.op.kind} {os.path.basename(img.op.path)})"


@dataclass
class Sweep:
    points: int = 0
    images: int = 0  # points x variants
    checked: int = 0  # distinct (image, acknowledged count) pairs actually opened
    exact: int = 0  # recovered exactly the promised prefix
    ahead: int = 0  # recovered more than was promised (durable, though not yet promised)
    violations: list[str] = field(default_factory=list)

    def add(self, where: str, variant: str, problems: list[str]) -> None:
        self.violations += [f"{where} [{variant}]: {p}" for p in problems]


async def sweep(rec: Recording, images: list[CrashImage], seen: dict[tuple[int, int], list[str]]) -> Sweep:
    out = Sweep(points=len(images))
    for img in images:
        for vi, (variant, kwargs) in enumerate(VARIANTS.items()):
            out.images += 1
            crashed = img.fs.crash(**kwargs, rng=random.Random(img.point * len(VARIANTS) + vi))
            key = (digest(crashed), img.promised)
            if key in seen:  # the same files and the same promise: the same outcome
                problems = seen[key]
            else:
                out.checked += 1
                problems, state = await check_recovery(crashed, rec.prefixes, img.promised)
                seen[key] = problems
                if state is not None and not problems:
                    if rec.prefixes.matches(state)[-1] == img.promised:
                        out.exact += 1
                    else:
                        out.ahead += 1
            out.add(describe(img), variant, problems)
    return out


def chosen_points(name: str, rec: Recording) -> list[CrashImage]:
    sample = CI_SAMPLE[name]
    if LONG or sample is None or sample >= len(rec.images):
        return rec.images
    rng = random.Random(SAMPLE_SEED)
    picked = [*sorted(rng.sample(range(len(rec.images) - 1), sample - 1)), len(rec.images) - 1]
    return [rec.images[i] for i in picked]


# --------------------------------------------------------------------------- the prefix property


@slow_when_long
@pytest.mark.parametrize("name", list(WORKLOADS))
async def test_power_loss_at_every_io_point_recovers_a_prefix_with_every_acknowledged_commit(
    name: str, report: list[str], record_property: Callable[[str, object], None]
) -> None:
    rec = await recorded(name)
    kinds = Counter((op.kind, (filenames.parse_name(op.path) or ("", 0))[0]) for op in rec.fs.ops)
    # The workload must reach the machinery it is meant to crash.
    assert kinds["create", "wal"] >= 4, "too few WAL rotations"
    assert kinds["create", "sst"] >= 6, "too few flushes and compactions"
    assert kinds["remove", "sst"] >= 2, "no compaction removed its inputs"
    assert kinds["rename", ""] == sum(1 for _, e, _ in rec.log.marks if e == "open"), "CURRENT not set per open"

    result = await sweep(rec, chosen_points(name, rec), {})
    line = (
        f"crash[{name}]: {result.points} of {len(rec.images)} crash points x {len(VARIANTS)} variants "
        f"= {result.images} images, {result.checked} distinct recovered and checked "
        f"({result.exact} exactly the promised prefix, {result.ahead} further), "
        f"{len(rec.prefixes.commits)} commits, {len(result.violations)} violations"
    )
    report.append(line)
    record_property("summary", line)
    if result.violations:
        pytest.fail("\n".join([line, *result.violations[:25]]))


@slow_when_long
async def test_power_loss_during_recovery_leaves_the_state_recovery_would_have_reached(
    report: list[str], record_property: Callable[[str, object], None]
) -> None:
    """Recovery writes too (a level-0 table from the replayed WAL, a new MANIFEST, CURRENT, a
    new WAL, removals): a crash at any of its operations must leave exactly the state an
    uninterrupted recovery reaches, since recovery adds and drops no commit."""
    rec = await recorded("large")
    # crash images with batches in the WAL to replay, spread over the run
    candidates = [img for img in rec.images if img.promised > 0]
    bases = candidates[:: max(1, len(candidates) // (40 if LONG else 10))]
    result = Sweep()
    nested_points = 0
    for base_img in bases:
        base = base_img.fs.crash()
        problems, expected = await check_recovery(freeze(base), rec.prefixes, base_img.promised)
        if problems:
            result.add(describe(base_img), "drop", problems)
            continue
        rfs = freeze(base)
        nested: list[CrashImage] = []

        def freeze_before(
            op: Op, rfs: MemoryFileSystem = rfs, nested: list[CrashImage] = nested, acked: int = base_img.promised
        ) -> None:
            with rfs._mutex:
                nested.append(CrashImage(len(nested), op, acked, freeze(rfs)))

        rfs.fail_hook = freeze_before
        db = await quanta.open(PATH, fs=rfs, **SMALL_OPTIONS)
        await db.close()
        rfs.fail_hook = None
        nested_points += len(nested)
        for img in nested:
            for vi, (variant, kwargs) in enumerate(VARIANTS.items()):
                result.checked += 1
                crashed = img.fs.crash(**kwargs, rng=random.Random(img.point * len(VARIANTS) + vi))
                problems, state = await check_recovery(crashed, rec.prefixes, base_img.promised)
                if state is not None and state != expected:
                    problems.append("state differs from the one an uninterrupted recovery reaches")
                where = f"{describe(base_img)}, then during recovery {describe(img)}"
                result.add(where, variant, problems)
    line = (
        f"crash[recovery]: {len(bases)} crashed images, {nested_points} crash points inside their "
        f"recovery x {len(VARIANTS)} variants = {result.checked} checked, {len(result.violations)} violations"
    )
    report.append(line)
    record_property("summary", line)
    if result.violations:
        pytest.fail("\n".join([line, *result.violations[:25]]))


# --------------------------------------------------------------------------- protocol audit

RULES = {
    "R1": "a table is written, synced and its directory entry synced before a MANIFEST record names it",
    "R2": "CURRENT changes only as CURRENT.tmp create, write, sync, rename, sync_dir (durable before open "
    "returns), naming a MANIFEST whose base record is durable",
    "R3": "a WAL, table or MANIFEST is removed only when no MANIFEST a crash could leave current needs it",
    "R4": "every open creates a fresh WAL segment, durable before open returns, and never appends to an older one",
    "R5": "a commit is acknowledged only after its WAL record is synced and its segment's name is durable",
}


@dataclass
class _File:
    path: str
    inode: _Inode
    created: int  # event index of its create
    kind: str  # "wal" | "sst" | "manifest" | "current" | "current_tmp" | "other"
    number: int = -1
    cursor: int = 0  # bytes of the inode consumed by the writes seen so far
    first_write: int = -1
    last_write: int = -1
    last_sync: int = -1
    record_writes: int = 0  # writes after the header (WAL and MANIFEST)
    records: list[tuple[int, VersionEdit]] = field(default_factory=list)  # manifests: (event index, edit)
    names_manifest: int | None = None  # CURRENT.tmp: the manifest it names


@dataclass
class Audit:
    checks: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def bad(self, rule: str, at: int, what: str) -> None:
        self.violations.append(f"{rule} at event {at}: {what}")


def events_of(ops: list[Op], marks: list[tuple[int, str, int]]) -> list[Op]:
    """The op list with the workload's marks (open/opened/commit/ack) merged in as pseudo-ops."""
    out: list[Op] = []
    it = iter(marks)
    mark = next(it, None)
    for i in range(len(ops) + 1):
        while mark is not None and mark[0] <= i:
            out.append(Op(mark[1], "", mark[2]))
            mark = next(it, None)
        if i < len(ops):
            out.append(ops[i])
    return out


def _classify(path: str) -> tuple[str, int]:
    base = os.path.basename(path)
    if base == filenames.CURRENT:
        return "current", -1
    if base == filenames.CURRENT + ".tmp":
        return "current_tmp", -1
    parsed = filenames.parse_name(base)
    return parsed if parsed is not None else ("other", -1)


def audit(events: list[Op], created: list[_Inode]) -> Audit:
    """Check ``events`` (ops and marks, see :func:`events_of`) against RULES.

    ``created`` holds the inode of each ``create`` in order, so the bytes of every write can
    be read back: MANIFEST records are decoded to learn which tables they add and delete.
    "Durable" below means: as a power loss at this event would leave it.
    """
    a = Audit()
    files: dict[str, _File] = {}  # path -> file, as the running process sees them
    manifests: dict[int, _File] = {}
    inodes = iter(created)
    last_sync_dir = -1
    current: int | None = None  # the MANIFEST CURRENT names
    durable_current: int | None = None  # ... as a crash now would leave it
    open_at = -1
    wals_before_open = -1
    in_commit: int | None = None
    record_of_commit: dict[int, tuple[_File, int]] = {}

    def durable_version(number: int) -> tuple[set[int], int]:
        """Live tables and log number of MANIFEST ``number`` from its synced records only."""
        live: set[int] = set()
        log_number = 0
        m = manifests.get(number)
        for at, edit in m.records if m is not None else []:
            if at < m.last_sync:  # type: ignore[union-attr]
                live -= {n for _, n in edit.deleted}
                live |= {meta.number for _, meta in edit.added}
                log_number = edit.log_number if edit.log_number is not None else log_number
        return live, log_number

    for at, ev in enumerate(events):
        kind, path = ev.kind, ev.path
        if kind == "create":
            f = _File(path, next(inodes), at, *_classify(path))
            files[path] = f
            if f.kind == "manifest":
                manifests[f.number] = f
            if f.kind == "current":
                a.bad("R2", at, "CURRENT created in place instead of renamed from CURRENT.tmp")
        elif kind == "write":
            f = files[path]
            assert isinstance(ev.arg, int)
            offset, f.cursor = f.cursor, f.cursor + ev.arg
            data = bytes(f.inode.data[offset : f.cursor])
            header = offset == 0 and f.kind in ("wal", "manifest")
            if f.first_write < 0:
                f.first_write = at
            if f.kind == "current":
                a.bad("R2", at, "CURRENT written in place")
            elif f.kind == "current_tmp":
                f.names_manifest = int(data.split(b"\n")[0].removeprefix(b"MANIFEST-"))
            elif f.kind == "manifest" and not header:
                assert offset >= HEADER_SIZE
                edit = VersionEdit.decode(data[RECORD_HEADER_SIZE:], path=path, offset=offset)
                f.records.append((at, edit))
                for _, meta in edit.added:
                    a.checks["R1"] += 1
                    t = files.get(os.path.join(os.path.dirname(path), filenames.table_name(meta.number)))
                    if t is None:
                        a.bad("R1", at, f"{os.path.basename(path)} names missing table {meta.number}")
                    elif t.last_sync <= t.last_write:
                        a.bad("R1", at, f"{os.path.basename(path)} names table {meta.number} before it is synced")
                    elif last_sync_dir <= t.created:
                        a.bad(
                            "R1", at, f"{os.path.basename(path)} names table {meta.number} before its name is durable"
                        )
            elif f.kind == "wal" and not header:
                f.record_writes += 1
                a.checks["R4"] += 1
                if f.created < open_at:
                    a.bad("R4", at, f"appends to {os.path.basename(path)}, a segment from before the last open")
                if in_commit is not None:
                    record_of_commit[in_commit] = (f, at)
            f.last_write = at
        elif kind == "sync":
            files[path].last_sync = at
        elif kind == "sync_dir":
            last_sync_dir = at
            durable_current = current
        elif kind == "rename":
            assert isinstance(ev.arg, str)
            f = files.pop(path)
            files[ev.arg] = f
            f.path = ev.arg
            if os.path.basename(ev.arg) == filenames.CURRENT:
                a.checks["R2"] += 1
                if f.kind != "current_tmp":
                    a.bad("R2", at, f"CURRENT replaced by {os.path.basename(path)}, not CURRENT.tmp")
                elif f.first_write < 0 or f.last_sync <= f.last_write:
                    a.bad("R2", at, "CURRENT.tmp renamed before it was written and synced")
                named = manifests.get(f.names_manifest) if f.names_manifest is not None else None
                if named is None or not named.records or named.last_sync <= named.records[0][0]:
                    a.bad("R2", at, f"CURRENT names MANIFEST {f.names_manifest} before its base record is durable")
                current = f.names_manifest
                f.kind = "current"
        elif kind == "remove":
            f = files.pop(path)
            a.checks["R3"] += 1
            for number in {c for c in (current, durable_current) if c is not None}:
                live, log_number = durable_version(number)
                name = os.path.basename(path)
                if f.kind == "sst" and f.number in live:
                    a.bad("R3", at, f"removes {name}, live in the durable part of MANIFEST {number}")
                elif f.kind == "wal" and f.record_writes and f.number >= log_number:  # an unused spare is free
                    a.bad("R3", at, f"removes {name}, not retired by the durable part of MANIFEST {number}")
                elif f.kind == "manifest" and f.number == number:
                    a.bad("R3", at, f"removes {name}, which CURRENT may name after a crash")
        elif kind == "commit":
            in_commit = ev.arg  # type: ignore[assignment]
        elif kind == "ack":
            a.checks["R5"] += 1
            found = record_of_commit.get(ev.arg)  # type: ignore[arg-type]
            if found is None:
                a.bad("R5", at, f"commit {ev.arg} acknowledged without a WAL record")
            else:
                wal, wrote = found
                if wal.last_sync <= wrote:
                    a.bad("R5", at, f"commit {ev.arg} acknowledged before its WAL record was synced")
                if last_sync_dir <= wal.created:
                    a.bad(
                        "R5", at, f"commit {ev.arg} acknowledged before {os.path.basename(wal.path)}'s name is durable"
                    )
            in_commit = None
        elif kind == "open":
            open_at = at
            wals_before_open = max([f.number for f in files.values() if f.kind == "wal"], default=-1)
        elif kind == "opened":
            a.checks["R4"] += 1
            fresh = [
                f for f in files.values() if f.kind == "wal" and f.created > open_at and f.number > wals_before_open
            ]
            if not fresh:
                a.bad("R4", at, "open returned without creating a fresh WAL segment")
            elif not any(f.last_sync > f.first_write >= 0 and last_sync_dir > f.created for f in fresh):
                a.bad("R4", at, "open returned before its fresh WAL segment was durable")
            a.checks["R2"] += 1
            if durable_current != current:
                a.bad("R2", at, "open returned before the CURRENT rename was made durable by sync_dir")
    return a


async def test_persistence_protocol_audit(report: list[str], record_property: Callable[[str, object], None]) -> None:
    for name in SYNC_WORKLOADS:  # R5 is the promise of durability="sync"
        rec = await recorded(name)
        result = audit(events_of(rec.fs.ops, rec.log.marks), rec.fs.created)
        counts = ", ".join(f"{rule} x{result.checks[rule]}" for rule in RULES)
        line = (
            f"audit[{name}]: {len(rec.fs.ops)} ops, {len(RULES)} rules ({counts}), {len(result.violations)} violations"
        )
        report.append(line)
        record_property(f"audit_{name}", line)
        assert all(result.checks[rule] > 0 for rule in RULES), f"a rule was never exercised: {line}"
        if result.violations:
            pytest.fail("\n".join([line, *result.violations[:25]]))


# --------------------------------------------------------------------------- the checkers can fail


def _find(events: list[Op], pred: Callable[[int, Op], bool], start: int = 0, reverse: bool = False) -> int:
    order = range(len(events) - 1, start - 1, -1) if reverse else range(start, len(events))
    return next(i for i in order if pred(i, events[i]))


def _is(kind: str, suffix: str = "") -> Callable[[int, Op], bool]:
    return lambda _, op: op.kind == kind and op.path.endswith(suffix)


NOOP = Op("noop", "")


def drop_table_sync(ev: list[Op]) -> None:
    ev[_find(ev, _is("sync", ".sst"))] = NOOP


def drop_current_tmp_sync(ev: list[Op]) -> None:
    ev[_find(ev, _is("sync", "CURRENT.tmp"), reverse=True)] = NOOP


def drop_sync_dir_after_current(ev: list[Op]) -> None:
    rename = _find(ev, lambda _, op: op.kind == "rename" and str(op.arg).endswith("CURRENT"), reverse=True)
    ev[_find(ev, _is("sync_dir"), start=rename)] = NOOP


def remove_table_before_manifest_sync(ev: list[Op]) -> None:
    # a compaction: MANIFEST write (deleting its inputs), MANIFEST sync, inputs removed. Other
    # files' operations (a group commit's WAL sync, from its worker thread) may come between
    # them, so the MANIFEST operations are matched among themselves: the first table removal
    # whose last two MANIFEST operations before it are a write and a sync moves before that sync.
    last: list[int] = []  # positions of the last two MANIFEST operations so far
    for i, op in enumerate(ev):
        if "MANIFEST" in op.path:
            last = [*last[-1:], i]
        elif (
            op.kind == "remove"
            and op.path.endswith(".sst")
            and len(last) == 2
            and (ev[last[0]].kind, ev[last[1]].kind) == ("write", "sync")
        ):
            ev.insert(last[1], ev.pop(i))
            return
    raise AssertionError("the workload removed no table after a MANIFEST write and sync")


def open_returns_before_fresh_wal(ev: list[Op]) -> None:
    opened = _find(ev, _is("opened"), reverse=True)
    wal = _find(ev, lambda i, op: i < opened and op.kind == "create" and op.path.endswith(".wal"), reverse=True)
    ev.insert(wal, ev.pop(opened))


def drop_commit_wal_sync(ev: list[Op]) -> None:
    ack = _find(ev, _is("ack"), start=len(ev) // 2)
    commit = _find(ev, lambda i, op: i < ack and op.kind == "commit", reverse=True)
    record = _find(ev, _is("write", ".wal"), start=commit)
    for i in range(record, ack):
        if ev[i].kind == "sync" and ev[i].path == ev[record].path:
            ev[i] = NOOP


@pytest.mark.parametrize(
    ("tamper", "rule"),
    [
        (drop_table_sync, "R1"),
        (drop_current_tmp_sync, "R2"),
        (drop_sync_dir_after_current, "R2"),
        (remove_table_before_manifest_sync, "R3"),
        (open_returns_before_fresh_wal, "R4"),
        (drop_commit_wal_sync, "R5"),
    ],
)
async def test_audit_reports_a_tampered_operation_list(tamper: Callable[[list[Op]], None], rule: str) -> None:
    rec = await recorded("small")
    events = events_of(rec.fs.ops, rec.log.marks)
    before = audit(events, rec.fs.created).violations
    tamper(events)
    after = audit(events, rec.fs.created).violations
    assert before == []
    assert any(v.startswith(rule) for v in after), after


def test_prefix_states_reject_a_partial_batch_and_a_lost_commit() -> None:
    plan = WORKLOADS["small"][0]()
    prefixes = PrefixStates(commits_of(plan))
    i, batch = next((i, c) for i, c in enumerate(prefixes.commits) if c.api == "batch" and len(c.ops) > 2)
    half = Commit("batch", batch.ops[: len(batch.ops) // 2])
    assert prefixes.matches(apply(prefixes.states[i], batch)) == [i + 1]
    assert prefixes.matches(apply(prefixes.states[i], half)) == []
    assert max(prefixes.matches(prefixes.states[i])) < i + 1  # i.e. (b) flags it when i + 1 were acknowledged


async def test_crash_check_catches_an_engine_whose_wal_fsync_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation test of the whole harness: make WAL fsync a no-op and acknowledged commits
    must go missing at some crash point."""
    monkeypatch.setattr(WalWriter, "sync", lambda self: None)
    plan = make_plan(5, 25)
    fs = RecordingFS()
    log = WorkloadLog()
    images: list[CrashImage] = []

    def freeze_before(op: Op) -> None:
        with fs._mutex:
            images.append(CrashImage(len(images), op, log.acked, freeze(fs)))  # durability="sync"

    fs.fail_hook = freeze_before
    await run_workload(fs, plan, log)
    monkeypatch.undo()
    rec = Recording(plan, PrefixStates(commits_of(plan)), fs, log, True, images)
    result = await sweep(rec, images[::3], {})
    assert any("(b) lost promised commits" in v for v in result.violations), result.violations[:5]


# --------------------------------------------------------------------------- regressions
# Minimal reproductions of engine bugs the sweeps above found (BUG-1, BUG-2); each failed with
# CorruptionError before the fix, and the sweeps reported the same failure at many points.


async def test_power_loss_while_creating_a_database_leaves_a_directory_open_can_use() -> None:
    """Creating a database writes 000001.wal, MANIFEST-000002, CURRENT.tmp and only then renames
    CURRENT into place. A file system that persists directory entries without a directory
    fsync (ext4's journal commit does, every few seconds) can keep the first names and lose
    CURRENT. Nothing was ever acknowledged, so open() must start over -- not raise
    CorruptionError ("database files present but CURRENT is missing") forever, as it did
    when ``Engine._check_is_database`` had no notion of an interrupted creation (BUG-1)."""
    fs = MemoryFileSystem()
    frozen: list[MemoryFileSystem] = []

    def before_current_rename(op: Op) -> None:
        if op.kind == "rename" and not frozen:
            frozen.append(freeze(fs))

    fs.fail_hook = before_current_rename
    db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    await db.close()
    crashed = frozen[0].crash(keep_unsynced_dir_entries=True)
    assert crashed.listdir(PATH) == ["000001.wal", "CURRENT.tmp", "MANIFEST-000002"]

    db = await quanta.open(PATH, fs=crashed, **SMALL_OPTIONS)
    try:
        assert [kv async for kv in db.kv.scan()] == []
        await db.kv.put(b"k", b"v")
    finally:
        await db.close()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"", id="nothing-written"),  # handled: a 0-byte log is an empty, torn log
        pytest.param(bytes(32), id="zero-filled"),  # XFS-like: the size reached the disk, the data did not
        pytest.param(b"QNTAWAL\x00\x01\x00", id="torn"),  # a torn write kept the header's first bytes
    ],
)
async def test_power_loss_while_a_wal_segment_is_created_leaves_a_database_open_can_use(header: bytes) -> None:
    """The background spare-segment maker creates ``NNNNNN.wal``, writes its 32-byte header and
    syncs it. Power lost before that sync, on a file system that kept the name, leaves the
    segment with whatever the disk held: nothing, zeros or a torn header. No commit can have
    been written to it (commits go to a segment only after its header and name are durable),
    so open() must treat it as empty. It used to raise CorruptionError for anything but a
    0-byte file (``FileHeader.decode``, before ``wal_recovery="salvage"`` is consulted), so
    the database could not be opened at all (BUG-2)."""
    fs = MemoryFileSystem()
    frozen: list[tuple[str, MemoryFileSystem]] = []

    def before_spare_header_sync(op: Op) -> None:
        current = os.path.join(PATH, filenames.CURRENT)
        if op.kind == "sync" and op.path.endswith(".wal") and current in fs.files and not frozen:
            if fs.files[op.path].synced == 0:
                frozen.append((op.path, freeze(fs)))

    fs.fail_hook = before_spare_header_sync
    db = await quanta.open(PATH, fs=fs, **SMALL_OPTIONS)
    await db.kv.put(b"k", b"v")
    await db.close()
    path, image = frozen[0]
    crashed = image.crash(keep_unsynced_dir_entries=True)
    crashed.files[path].data[:] = header
    crashed.files[path].synced = len(header)

    db = await quanta.open(PATH, fs=crashed, **SMALL_OPTIONS)
    try:
        assert [kv async for kv in db.kv.scan()] in ([], [(b"k", b"v")])
        await db.verify()
    finally:
        await db.close()
