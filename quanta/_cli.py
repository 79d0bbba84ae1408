"""``python -m quanta`` / ``quanta``: demo, stats, verify, repair, dump, schema, migrate, backup, export, import.

```
quanta demo [PATH]          the guided tour (default PATH: ./quanta-demo.db)
quanta stats PATH           levels, files, sizes, counters of a database (opened read-only)
quanta verify PATH          read and check every table, the manifest and the WAL
quanta verify --deep PATH [--module MODULE ...]
                            also decode every entity record and, for the classes MODULE
                            declares, check every index and unique entry against the records
                            (exit status 1 on any problem)
quanta repair PATH --rebuild-indexes --module MODULE [--module MODULE ...]
                            rebuild the index and unique entries of the classes MODULE
                            declares from the records, crash-safely (exit status 1 if an
                            entity with indexes was skipped: no class for it)
quanta dump FILE            a WAL segment, SSTable or MANIFEST in readable form
quanta schema PATH          the stored entity schemas, index states, unfinished jobs, history
quanta migrate PATH --autogenerate MODULE
                            diff MODULE's entity classes against the stored schemas and
                            write a migration skeleton (opened read-only)
quanta backup SRC DEST      a consistent copy of SRC in DEST (SRC opened read-only; DEST new,
                            empty, or an earlier backup of SRC, which is updated)
quanta export PATH [--entity NAME ...] [-o FILE] [--kv]
                            the records (and with --kv the kv pairs) as JSON Lines, to FILE
                            or stdout (opened read-only; needs no entity class)
quanta import PATH FILE [--on-conflict error|replace|skip] [--module MODULE ...]
                            a JSON Lines export into PATH, validated before the first write;
                            the entity classes come from MODULE, else from the module path
                            each schema in the file names
```
Exit status: 0 on success, 1 when the database is damaged or cannot be opened, 2 on usage
errors. Long work shows a progress bar on stderr (when it is a terminal, or with --progress).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TextIO

import aiofiles

from . import _db
from ._catalog import EntityReport, SchemaProgress, StoredSchema, render, to_version_for
from ._schema import EntityInfo
from ._storage import (
    MANIFEST_MAGIC,
    SSTABLE_MAGIC,
    WAL_MAGIC,
    OSFileSystem,
    TableReader,
    filenames,
    read_current,
    replay_manifest,
    replay_wal,
)
from ._transfer import header_modules
from .errors import InvalidArgumentError, QuantaError

__all__ = ["main"]

DEFAULT_DEMO_PATH = "quanta-demo.db"


class Progress:
    """A one-line progress bar: ``label [#####.....] 42/100``, redrawn in place."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = -1.0

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(total, 1)
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self._last < 0.05:
            return
        self._last = now
        width = 30
        filled = int(width * done / self.total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# ---------------------------------------------------------------------------- demo


async def demo(path: str, records: int = 100_000, out: TextIO = sys.stdout) -> None:
    """The quick-start tour: bulk load, point reads, scans, a snapshot, reopen, verify."""
    import msgpack

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    say(f"QuantaDB demo in {path}")
    async with _db.open(path) as db:
        stats = await db.stats()
        if stats["last_seq"]:
            say(f"  (found an existing database: last commit #{stats['last_seq']}; the demo rewrites its keys)")
        items = [
            (
                b"user:%08d" % i,
                msgpack.packb({"id": i, "name": f"user {i}", "email": f"u{i}@example.com", "age": 18 + i % 60}),
            )
            for i in range(records)
        ]
        t = time.perf_counter()
        await db.kv.put_many(items)
        say(f"1. put_many: {records:,} records in one durable batch in {(time.perf_counter() - t) * 1e3:.0f} ms")

        t = time.perf_counter()
        probe = b"user:%08d" % (records * 42 // 1000)
        value = await db.kv.get(probe)
        say(f"2. get {probe.decode()} -> {msgpack.unpackb(value)} ({(time.perf_counter() - t) * 1e6:.0f} us)")

        t = time.perf_counter()
        start = b"user:%08d" % (records // 2)
        rows = [key async for key, _ in db.kv.scan(start=start, limit=1000)]
        say(
            f"3. scan from {start.decode()}, limit 1000: {len(rows)} rows, {rows[0].decode()} .. {rows[-1].decode()}"
            f" in {(time.perf_counter() - t) * 1e3:.1f} ms"
        )
        async with db.snapshot() as snap:
            await db.kv.put(b"user:00000001", msgpack.packb({"id": 1, "name": "renamed"}))
            old = msgpack.unpackb(await snap.kv.get(b"user:00000001"))["name"]
            new = msgpack.unpackb(await db.kv.get(b"user:00000001"))["name"]
            say(f"4. snapshot isolation: the snapshot still reads {old!r}; the database reads {new!r}")
        async with db.changes() as stream:  # the change bus: every later commit, in order
            batch = db.kv.batch()
            for i in range(10):
                batch.delete(b"user:%08d" % i)
            batch.put(b"config:motd", b"hello from a batch")
            await batch.commit()
            change_set = await anext(stream)
        say(
            "5. a batch deleted 10 users and wrote config:motd atomically; a change stream saw it as one "
            f"change set #{change_set.seq} of {len(change_set.changes)} changes"
        )
        key = b"user:%08d" % 20
        first, second = db.transaction(), db.transaction()
        for tx in (first, second):
            user = msgpack.unpackb(await tx.kv.get(key))
            await tx.kv.put(key, msgpack.packb({**user, "age": user["age"] + 1}))
        await first.commit()
        try:
            await second.commit()
            outcome = "committed too (a bug!)"
        except QuantaError as exc:
            outcome = f"was refused with {type(exc).__name__}"
        age = msgpack.unpackb(await db.kv.get(key))["age"]
        say(f"6. two transactions raised {key.decode()}'s age: the first committed, the second {outcome}; age={age}")
        t = time.perf_counter()
        await db.compact()
        stats = await db.stats()
        levels = ", ".join(f"L{lv['level']}: {lv['files']} file(s)" for lv in stats["levels"] if lv["files"])
        say(f"7. flush + compaction in {(time.perf_counter() - t) * 1e3:.0f} ms -> {levels}")
    t = time.perf_counter()
    async with _db.open(path) as db:
        reopen_ms = (time.perf_counter() - t) * 1e3
        motd = await db.kv.get(b"config:motd")
        gone = await db.kv.get(b"user:00000003")
        n = 0
        async for _ in db.kv.scan(prefix=b"user:"):
            n += 1
        say(f"8. reopened in {reopen_ms:.1f} ms: config:motd={motd!r}, user:00000003={gone!r}, {n:,} users")
        result = await db.verify()
        say(f"9. verify: {result.tables} table(s), {result.entries:,} entries, all checksums good")
        await _demo_entities(db, min(records, 20_000), say)
    say("Done. Run `python -m quanta stats " + path + "` to look inside.")


async def _demo_entities(db: _db.Database, n: int, say: Callable[[str], None]) -> None:
    """Steps 10 and 11: the same people as entities, with indexes, a planned query and a live
    query."""
    from typing import Annotated

    from . import _query, _schema

    @_schema.entity(name="DemoPerson", indexes=[_schema.Index("city", "age")])
    class Person:
        id: Annotated[int, _schema.PrimaryKey()]
        email: Annotated[str, _schema.Unique()]
        name: str
        city: str
        age: int = 0

    cities = ["Oslo", "Rome", "Lima", "Pune"]
    people = db.collection(Person)
    t = time.perf_counter()
    await people.put_many(
        Person(id=i, email=f"u{i}@example.com", name=f"user {i}", city=cities[i % 4], age=18 + i % 60) for i in range(n)
    )
    load_ms = (time.perf_counter() - t) * 1e3
    query = people.where(Person.city == "Oslo", _query.between(Person.age, 30, 39)).order_by(_query.desc(Person.age))
    t = time.perf_counter()
    rows = await query.limit(3).all()
    query_ms = (time.perf_counter() - t) * 1e3
    plan = query.plan()
    index = plan.index.name if plan.index is not None else "none"
    say(
        f"10. entities: {n:,} Person records with a unique and a composite index in {load_ms:.0f} ms; "
        f"Oslo aged 30-39, oldest first: {[p.age for p in rows]} via {plan.access} on {index} in {query_ms:.1f} ms"
    )

    # Step 11: the three oldest in Oslo as a live query; commits that change it arrive as diffs.
    await people.delete_many([n, n + 1, n + 2])  # left by an earlier run of the demo
    oldest = people.where(Person.city == "Oslo").order_by(_query.desc(Person.age), Person.id).limit(3)
    async with oldest.watch_diff() as diffs:
        await anext(diffs)  # the current result, as a diff from nothing
        await people.put(Person(id=n + 1, email="young@example.com", name="young", city="Oslo", age=1))
        await people.put(Person(id=n + 2, email="far@example.com", name="far away", city="Rome", age=120))
        t = time.perf_counter()
        await people.put(Person(id=n, email="new@example.com", name="newcomer", city="Oslo", age=99))
        diff = await anext(diffs)  # nothing came for the two commits that did not change the top 3
        live_ms = (time.perf_counter() - t) * 1e3
    say(
        f"11. live query (3 oldest in Oslo): two commits that did not change it emitted nothing; a 99-year-old "
        f"arrived as a diff in {live_ms:.1f} ms: inserted at {[i for i, _ in diff.inserted]}, "
        f"removed from {[i for i, _ in diff.removed]}"
    )


# ---------------------------------------------------------------------------- stats / verify


async def stats(path: str, out: TextIO = sys.stdout, as_json: bool = False) -> None:
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        s = await db.stats()
    if as_json:
        print(json.dumps(s, indent=2, default=str), file=out)
        return
    print(f"database   {s['path']}", file=out)
    print(f"last seq   {s['last_seq']}", file=out)
    print(
        f"memtable   {s['memtable_entries']} entries (unflushed WAL data), {_fmt_bytes(s['memtable_bytes'])}", file=out
    )
    print(f"tables     {s['table_files']} files, {_fmt_bytes(s['live_table_bytes'])}", file=out)
    for lv in s["levels"]:
        if lv["files"]:
            print(f"  L{lv['level']}       {lv['files']:>4} files  {_fmt_bytes(lv['bytes']):>10}", file=out)


async def verify(
    path: str,
    out: TextIO = sys.stdout,
    progress: bool | None = None,
    deep: bool = False,
    modules: list[str] | None = None,
) -> int:
    """Checks the tables (and with ``deep`` every entity record, and the index and unique
    entries against the records); prints each problem and returns how many there are (the
    exit status is 1 if any)."""
    bar = Progress("verifying tables", 1, enabled=progress)
    classes = [cls for m in modules or () for cls in _entity_classes(_import_module(m))]
    async with _db.open(path, read_only=True, create_if_missing=False, entities=classes) as db:
        result = await db.verify(progress=bar.update, deep=deep)
        tail = (await db.stats())["recovery_tail"]
    wal = "WAL replay clean" if tail == "clean" else f"WAL tail {tail} (an unfinished write at a crash was dropped)"
    for problem in result.problems:
        print(f"PROBLEM: {problem}", file=out)
    if result.problem_count > len(result.problems):
        print(f"PROBLEM: ... and {result.problem_count - len(result.problems)} more", file=out)
    for note in result.skipped:
        print(f"NOT CHECKED: {note}", file=out)
    records = (
        f"; {result.records} records, {result.index_entries} index entries, {result.links} links, "
        f"{result.problem_count} problems"
        if deep
        else ""
    )
    status = "OK" if result.ok else "FAILED"
    print(f"{status}: {result.tables} tables, {result.entries} entries{records}; manifest clean; {wal}", file=out)
    return result.problem_count


async def repair(path: str, modules: list[str] | None, out: TextIO = sys.stdout, progress: bool | None = None) -> int:
    """Rebuild the index and unique entries of the entities MODULE declares from their
    records (the database opened writable by this command, so no other writer runs); prints
    what was rebuilt and each entity skipped, and returns how many were skipped (the exit
    status is 1 if any: their entries were not checked or rebuilt)."""
    classes = [cls for m in modules or () for cls in _entity_classes(_import_module(m))]
    bar = Progress("rebuilding", 1, enabled=progress)

    def report(p: SchemaProgress) -> None:
        bar.label = f"{'deleting' if p.task == 'drop_index' else 'building'} {p.entity}.{p.index}"
        bar.update(p.done, p.total if p.task == "build_index" else max(p.done, 1))

    async with _db.open(path, create_if_missing=False, entities=classes) as db:
        result = await db.repair(rebuild_indexes=True, progress=report)
    for name in result.indexes:
        print(f"rebuilt {name}", file=out)
    for message in result.skipped:
        print(f"SKIPPED: {message}", file=out)
    status = "INCOMPLETE" if result.skipped else "OK"
    print(
        f"{status}: {len(result.indexes)} indexes rebuilt from {result.records} records; "
        f"{result.entries_removed} entries deleted, {result.entries} written",
        file=out,
    )
    return len(result.skipped)


# ---------------------------------------------------------------------------- dump


def _show(b: bytes | None, limit: int = 48) -> str:
    if b is None:
        return "<tombstone>"
    text = repr(b[:limit])
    return text + (f"...(+{len(b) - limit} bytes)" if len(b) > limit else "")


def dump(path: str, out: TextIO = sys.stdout, limit: int | None = None) -> None:
    """Print a WAL segment, SSTable or MANIFEST (or a database directory's CURRENT chain)."""
    fs = OSFileSystem()
    if os.path.isdir(path):
        number = read_current(fs, path)
        path = os.path.join(path, filenames.manifest_name(number))
    with open(path, "rb") as f:
        magic = f.read(8)
    parsed = filenames.parse_name(path)
    lines = _dump_lines(fs, path, magic, parsed[1] if parsed else None)
    for i, line in enumerate(lines):
        if limit is not None and i >= limit:
            print(f"... (stopped after {limit} lines; use --limit)", file=out)
            break
        print(line, file=out)


def _dump_lines(fs: OSFileSystem, path: str, magic: bytes, number: int | None) -> Iterator[str]:
    if magic == WAL_MAGIC:
        replay = replay_wal(fs, path, number if number is not None else _header_number(path))
        yield f"WAL {path}: {len(replay.batches)} batches, tail {replay.tail}"
        for seq, keys, values in replay.batches:
            yield f"batch seq={seq} ops={len(keys)}"
            for k, v in zip(keys, values, strict=False):
                yield f"  {'del' if v is None else 'put'} {_show(k)} {'' if v is None else _show(v)}"
    elif magic == MANIFEST_MAGIC:
        edits = replay_manifest(fs, path, number if number is not None else _header_number(path))
        yield f"MANIFEST {path}: {len(edits)} edits"
        for i, e in enumerate(edits):
            yield (f"edit {i}: log_number={e.log_number} next_file={e.next_file_number} last_seq={e.last_seq}")
            for level, m in e.added:
                yield (
                    f"  + L{level} {filenames.table_name(m.number)} {m.size} B {m.entries} entries "
                    f"[{_show(m.smallest, 24)} .. {_show(m.largest, 24)}] seq {m.min_seq}..{m.max_seq}"
                )
            for level, num in e.deleted:
                yield f"  - L{level} {filenames.table_name(num)}"
    elif magic == SSTABLE_MAGIC:
        reader = TableReader.open(fs, path, number if number is not None else _header_number(path), None)
        try:
            p = reader.properties
            yield (
                f"SSTable {path}: {p.entries} entries in {reader.num_blocks} blocks, {p.file_size} B, "
                f"keys {_show(p.smallest, 24)} .. {_show(p.largest, 24)}, seq {p.min_seq}..{p.max_seq}"
            )
            for key, seq, value in reader.iter_entries():
                yield f"  {_show(key)} @{seq} {_show(value)}"
        finally:
            reader.close()
    else:
        raise QuantaError(f"{path} is not a QuantaDB WAL, SSTable or MANIFEST (magic {magic!r})")


def _header_number(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:24], "little")


# ---------------------------------------------------------------------------- schema / migrate


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


async def schema(path: str, out: TextIO = sys.stdout, as_json: bool = False) -> None:
    """Print the stored schemas, their index states, unfinished jobs and version history."""
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        catalog = db._catalog
        schemas = sorted(catalog.schemas.values(), key=lambda s: s.name)
        with_records = await catalog.record_entities()
        record_jobs = dict(catalog.record_jobs)
        index_jobs = dict(catalog.index_jobs)
    untracked = [n for n in with_records if n not in catalog.schemas]
    if as_json:
        doc = {
            "entities": [s.to_map() for s in schemas],
            "jobs": [
                {"entity": n, "kind": j.kind, "to": j.to_version, "phase": j.phase, "done": j.done, "moved": j.moved}
                for n, j in sorted(record_jobs.items())
            ]
            + [
                {"entity": n, "kind": j.kind, "index": i, "done": j.done, "total": j.total}
                for (n, i), j in sorted(index_jobs.items())
            ],
            "untracked": untracked,
        }
        print(json.dumps(doc, indent=2, default=repr), file=out)
        return
    if not schemas and not untracked:
        print(f"no entity schemas are stored in {path}", file=out)
        return
    for i, s in enumerate(schemas):
        if i:
            print(file=out)
        _print_schema(s, record_jobs.get(s.name), index_jobs, out)
    for name in untracked:
        print(f"\n{name}  records stored, no schema yet (declare the class at open to record it)", file=out)


def _print_schema(s: StoredSchema, job: Any, index_jobs: dict[tuple[str, str], Any], out: TextIO) -> None:
    def say(line: str) -> None:
        print(line, file=out)

    say(f"{s.name}  version {s.version}  class {s.cls}")
    say(f"  key       {s.primary_key}{' (auto)' if s.auto else ''}")
    width = max(len(f.name) for f in s.fields)
    tw = max(len(f.type_label) for f in s.fields)
    for i, f in enumerate(s.fields):
        notes = ", ".join(n for n, on in (("optional", f.optional), ("default", f.default)) if on)
        say(f"  {'fields' if i == 0 else '':<8}  {f.name:<{width}}  {f.type_label:<{tw}}  {notes}".rstrip())
    if s.indexes:
        iw = max(len(x.name) for x in s.indexes)
        defs = [f"{'unique ' if x.unique else 'multi ' if x.multi else ''}({', '.join(x.fields)})" for x in s.indexes]
        dw = max(map(len, defs))
        for i, (idx, text) in enumerate(zip(s.indexes, defs, strict=True)):
            state = idx.state
            ij = index_jobs.get((s.name, idx.name))
            if ij is not None and ij.kind == "build" and ij.total:
                state += f" {ij.done:,}/{ij.total:,}"
            elif ij is not None and ij.kind == "rebuild":
                state += " (repair: deleting the old entries; the next open with the class resumes it)"
            say(f"  {'indexes' if i == 0 else '':<8}  {idx.name:<{iw}}  {text:<{dw}}  {state}")
    if s.validators:
        say(f"  validators {', '.join(s.validators)}")
    if job is not None:
        say(
            f"  pending   {job.kind} to version {job.to_version}: {job.phase}, {job.done:,} converted, "
            f"{job.moved:,}/{job.staged:,} moved (finishes at the next writable open with the class)"
        )
    for i, h in enumerate(s.history):
        records = f"  ({h.records:,} records)" if h.records else ""
        say(f"  {'history' if i == 0 else '':<8}  v{h.version}  {_when(h.time)}  {h.event:<13} {h.detail}{records}")


def _import_module(spec: str) -> ModuleType:
    """Import MODULE (a dotted name, found from the current directory too) or a .py file."""
    try:
        if spec.endswith(".py") or os.sep in spec:
            file = os.path.abspath(spec)
            name = os.path.splitext(os.path.basename(file))[0]
            sys.path.insert(0, os.path.dirname(file))
            loader_spec = importlib.util.spec_from_file_location(name, file)
            if loader_spec is None or loader_spec.loader is None:
                raise ImportError(f"not a Python file: {file}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(spec)
    except QuantaError:
        raise
    except Exception as exc:
        raise InvalidArgumentError(f"cannot import {spec}: {type(exc).__name__}: {exc}") from exc


def _entity_classes(module: ModuleType) -> list[type]:
    out: dict[str, type] = {}
    for value in vars(module).values():
        if not isinstance(value, type):
            continue
        info = getattr(value, "__quanta_entity__", None)
        if isinstance(info, EntityInfo) and info.cls is value:
            out.setdefault(info.name, value)
    return [out[name] for name in sorted(out)]


def migrate(
    path: str, module: str, output: str | None = None, out: TextIO = sys.stdout, now: float | None = None
) -> str | None:
    """Diff MODULE's entity classes against the stored schemas; write a migration skeleton
    for the classes that need one. Returns the file written (None if none was needed)."""
    mod = _import_module(module)
    classes = _entity_classes(mod)
    if not classes:
        raise InvalidArgumentError(f"{module} declares no @quanta.entity classes")
    reports = asyncio.run(_migration_reports(path, classes))
    for r in reports:
        print(r.line, file=out)
    if not any(r.status == "needs_migration" for r in reports):
        print("nothing to write: no class needs a migration", file=out)
        return None
    stamp = datetime.datetime.fromtimestamp(time.time() if now is None else now)
    target = output or f"quanta_migration_{stamp:%Y%m%d_%H%M%S}.py"
    if os.path.exists(target):
        raise InvalidArgumentError(f"{target} exists; choose another name with --output")
    name = os.path.splitext(os.path.basename(module))[0] if module.endswith(".py") else module
    source = render(name, reports, path=path, when=f"{stamp:%Y-%m-%d %H:%M:%S}")
    compile(source, target, "exec")  # a skeleton is valid Python, whatever its TODOs
    with open(target, "x", encoding="utf-8") as f:
        f.write(source)
    print(f"wrote {target}: fill in its TODOs, then import it before opening the database with the classes", file=out)
    return target


async def _migration_reports(path: str, classes: list[type]) -> list[EntityReport]:
    reports = []
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        for cls in classes:
            action, stored, declared, decision, hint = await db._catalog.preview(cls)
            reports.append(_entity_report(cls, action, stored, declared, decision, hint))
    return reports


def _entity_report(
    cls: type, action: str, stored: StoredSchema | None, declared: StoredSchema, decision: Any, hint: str
) -> EntityReport:
    name = cls.__qualname__
    if stored is None:
        return EntityReport(name, declared.name, "new", None, declared)
    if action == "none":
        return EntityReport(name, declared.name, "same", stored, declared)
    if action == "migrate":
        return EntityReport(name, declared.name, "covered", stored, declared, decision)
    if action != "mismatch" or decision is None:
        return EntityReport(name, declared.name, "automatic", stored, declared, decision)
    if declared.version < stored.version:
        return EntityReport(name, declared.name, "downgrade", stored, declared, decision)
    return EntityReport(
        name, declared.name, "needs_migration", stored, declared, decision, to_version_for(stored, declared)
    )


# ---------------------------------------------------------------------------- backup


async def backup(src: str, dest: str, out: TextIO = sys.stdout, progress: bool | None = None) -> None:
    """Back up SRC (opened read-only) into DEST; print what the backup holds."""
    bar = Progress("backing up", 1, enabled=progress)
    async with _db.open(src, read_only=True, create_if_missing=False) as db:
        info = await db.backup(dest, progress=bar.update)
        source = db.path
    print(
        f"backup of {source} in {info.path}: every commit up to #{info.seq}; "
        f"{info.tables} tables ({info.linked} linked, {info.copied} copied, {info.reused} reused), "
        f"{_fmt_bytes(info.wal_bytes)} of WAL, {_fmt_bytes(info.bytes)} ({_fmt_bytes(info.bytes_written)} written) "
        f"in {info.seconds:.2f} s",
        file=out,
    )


# ---------------------------------------------------------------------------- export / import


class _LineProgress:
    """``phase: 12,345 lines``, redrawn in place on stderr (a terminal, or ``enabled``)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.phase = ""

    def __call__(self, phase: str, lines: int) -> None:
        if not self.enabled:
            return
        if self.phase and phase != self.phase:
            sys.stderr.write("\n")
        self.phase = phase
        sys.stderr.write(f"\r{phase}: {lines:,} lines")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.phase:
            sys.stderr.write("\n")


async def export_cmd(
    path: str, output: str | None, entities: list[str] | None, kv: bool, out: TextIO | None = None
) -> dict[str, Any]:
    """``quanta export``: returns the report (printed on ``out`` as JSON)."""
    progress = _LineProgress(False if output is None else None)
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        report = await db.export_jsonl(output or "/dev/stdout", entities=entities or None, kv=kv, progress=progress)
    progress.done()
    result = report.as_dict()
    print(json.dumps(result), file=out or sys.stderr)  # stdout may be the export itself
    return result


async def import_cmd(
    path: str, file: str, on_conflict: str, modules: list[str] | None, out: TextIO | None = None
) -> dict[str, Any]:
    """``quanta import``: the classes of ``modules`` (default: the modules the file's header
    names, found from the current directory) are declared at open, so they are checked against
    the stored schemas as an app's open does."""
    if not modules:  # the modules of the classes the file's schemas name (trusted files only)
        async with aiofiles.open(file, "rb") as f:
            modules = header_modules(await f.readline())
    classes = [cls for m in modules for cls in _entity_classes(_import_module(m))]
    progress = _LineProgress()
    async with _db.open(path, entities=classes) as db:
        report = await db.import_jsonl(file, on_conflict=on_conflict, progress=progress)
    progress.done()
    result = report.as_dict()
    print(json.dumps(result), file=out or sys.stdout)
    return result


# ---------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quanta", description="QuantaDB command-line tools")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the guided demo")
    d.add_argument("path", nargs="?", default=DEFAULT_DEMO_PATH)
    d.add_argument("--records", type=int, default=100_000)
    s = sub.add_parser("stats", help="print a database's levels and counters")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")
    v = sub.add_parser("verify", help="check every table's checksums and order")
    v.add_argument("path")
    v.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
    v.add_argument(
        "--deep",
        action="store_true",
        help="also decode every entity record and check index entries against records; exit 1 on any problem",
    )
    v.add_argument(
        "--module",
        metavar="MODULE",
        action="append",
        help="module (or .py file) declaring entity classes, whose index entries --deep checks",
    )
    r = sub.add_parser("repair", help="rebuild index and unique entries from the records (--rebuild-indexes)")
    r.add_argument("path")
    r.add_argument(
        "--rebuild-indexes",
        action="store_true",
        required=True,
        help="delete every index and unique entry of the classes MODULE declares and build them from the records",
    )
    r.add_argument(
        "--module",
        metavar="MODULE",
        action="append",
        help="module (or .py file) declaring the entity classes whose indexes are rebuilt",
    )
    r.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
    u = sub.add_parser("dump", help="print a WAL, SSTable or MANIFEST file")
    u.add_argument("file")
    u.add_argument("--limit", type=int, default=None, help="stop after N lines")
    c = sub.add_parser("schema", help="print the stored entity schemas and their version history")
    c.add_argument("path")
    c.add_argument("--json", action="store_true")
    m = sub.add_parser("migrate", help="write a migration skeleton from MODULE's entity classes")
    m.add_argument("path")
    m.add_argument(
        "--autogenerate", metavar="MODULE", required=True, help="module (or .py file) declaring the entity classes"
    )
    m.add_argument("--output", metavar="FILE", default=None, help="the file to write (default: a timestamped name)")
    b = sub.add_parser("backup", help="copy a database consistently into DEST (incremental if DEST holds a backup)")
    b.add_argument("src")
    b.add_argument("dest")
    b.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
    x = sub.add_parser("export", help="write the records (and kv pairs) as JSON Lines")
    x.add_argument("path")
    x.add_argument("--entity", metavar="NAME", action="append", help="export only this entity (repeatable)")
    x.add_argument("-o", "--output", metavar="FILE", default=None, help="the file to write (default: stdout)")
    x.add_argument("--kv", action="store_true", help="also export the db.kv pairs")
    i = sub.add_parser("import", help="import a JSON Lines export (validated before the first write)")
    i.add_argument("path")
    i.add_argument("file")
    i.add_argument("--on-conflict", choices=["error", "replace", "skip"], default="error")
    i.add_argument("--module", metavar="MODULE", action="append", help="module (or .py file) declaring the classes")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and not 100 <= args.records <= 10_000_000:
        parser.error("demo --records must be between 100 and 10,000,000")
    commands: dict[str, Callable[[], Any]] = {
        "demo": lambda: asyncio.run(demo(os.path.abspath(args.path), args.records)),
        "stats": lambda: asyncio.run(stats(args.path, as_json=args.json)),
        "verify": lambda: asyncio.run(verify(args.path, progress=args.progress, deep=args.deep, modules=args.module)),
        "repair": lambda: asyncio.run(repair(args.path, args.module, progress=args.progress)),
        "dump": lambda: dump(args.file, limit=args.limit),
        "schema": lambda: asyncio.run(schema(args.path, as_json=args.json)),
        "migrate": lambda: migrate(args.path, args.autogenerate, args.output),
        "backup": lambda: asyncio.run(backup(args.src, args.dest, progress=args.progress)),
        "export": lambda: asyncio.run(export_cmd(args.path, args.output, args.entity, args.kv)),
        "import": lambda: asyncio.run(import_cmd(args.path, args.file, args.on_conflict, args.module)),
    }
    try:
        result = commands[args.command]()
    except QuantaError as exc:
        print(f"quanta {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `quanta dump x | head`
        sys.stderr.close()  # no second complaint from the interpreter at exit
        return 0
    except OSError as exc:
        print(f"quanta {args.command}: {exc}", file=sys.stderr)
        return 1
    return 1 if args.command in ("verify", "repair") and result else 0
