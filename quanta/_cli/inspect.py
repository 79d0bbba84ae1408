"""``stats``, ``verify``, ``repair``, ``schema`` and ``migrate``: looking at a database (opened
read-only, except ``repair``) and its stored schemas."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import time
from typing import Any, TextIO

from .. import _db
from .._catalog import CatalogState, EntityPreview, EntityReport, SchemaProgress, StoredSchema, render, to_version_for
from ..errors import InvalidArgumentError
from .entities import entity_classes, import_module
from .output import Output, bytes_text, plain_columns, progress_bar

__all__ = ["migrate", "repair", "schema", "stats", "verify"]


def _classes(modules: list[str] | None) -> list[type]:
    return [cls for m in modules or () for cls in entity_classes(import_module(m))]


# ---------------------------------------------------------------------------- stats


async def stats(path: str, out: Output) -> None:
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        s = await db.stats()
    if out.as_json:
        out.json(s)
        return
    head = [
        ("database", str(s["path"])),
        ("last seq", str(s["last_seq"])),
        ("memtable", f"{s['memtable_entries']} entries (unflushed WAL data), {bytes_text(s['memtable_bytes'])}"),
        ("tables", f"{s['table_files']} files, {bytes_text(s['live_table_bytes'])}"),
    ]
    levels = [(f"L{lv['level']}", f"{lv['files']} files", bytes_text(lv["bytes"])) for lv in s["levels"] if lv["files"]]
    if out.rich:
        out.table(("", ""), head, header=False)
        out.table(("level", "files", "bytes"), levels)
        return
    for line in plain_columns(head, gap=3):
        out.line(line)
    for line in plain_columns(levels):
        out.line("  " + line)


# ---------------------------------------------------------------------------- verify / repair


async def verify(
    path: str, out: Output, progress: bool | None = None, deep: bool = False, modules: list[str] | None = None
) -> int:
    """Checks the tables (and with ``deep`` every entity record, and the index and unique
    entries against the records); prints each problem and returns how many there are (the
    exit status is 1 if any)."""
    classes = _classes(modules)
    with progress_bar("verifying tables", progress) as bar:
        async with _db.open(path, read_only=True, create_if_missing=False, entities=classes) as db:
            result = await db.verify(progress=bar, deep=deep)
            tail = (await db.stats())["recovery_tail"]
    wal = "WAL replay clean" if tail == "clean" else f"WAL tail {tail} (an unfinished write at a crash was dropped)"
    if out.as_json:
        doc = dataclasses.asdict(result)
        doc["problems"] = [str(p) for p in result.problems]
        out.json({**doc, "ok": result.ok, "wal_tail": tail})
        return result.problem_count
    for problem in result.problems:
        out.line(f"PROBLEM: {problem}", style="red")
    if result.problem_count > len(result.problems):
        out.line(f"PROBLEM: ... and {result.problem_count - len(result.problems)} more", style="red")
    for note in result.skipped:
        out.line(f"NOT CHECKED: {note}", style="yellow")
    records = (
        f"; {result.records} records, {result.index_entries} index entries, {result.links} links, "
        f"{result.problem_count} problems"
        if deep
        else ""
    )
    status = "OK" if result.ok else "FAILED"
    out.line(
        f"{status}: {result.tables} tables, {result.entries} entries{records}; manifest clean; {wal}",
        style="bold green" if result.ok else "bold red",
    )
    return result.problem_count


async def repair(path: str, modules: list[str] | None, out: Output, progress: bool | None = None) -> int:
    """Rebuild the index and unique entries of the entities MODULE declares from their
    records (the database opened writable by this command, so no other writer runs); prints
    what was rebuilt and each entity skipped, and returns how many were skipped (the exit
    status is 1 if any: their entries were not checked or rebuilt)."""
    classes = _classes(modules)
    with progress_bar("rebuilding", progress) as bar:

        def report(p: SchemaProgress) -> None:
            bar.describe(f"{'deleting' if p.task == 'drop_index' else 'building'} {p.entity}.{p.index}")
            bar(p.done, p.total if p.task == "build_index" else max(p.done, 1))

        async with _db.open(path, create_if_missing=False, entities=classes) as db:
            result = await db.repair(rebuild_indexes=True, progress=report)
    if out.as_json:
        out.json({**dataclasses.asdict(result), "ok": not result.skipped})
        return len(result.skipped)
    for name in result.indexes:
        out.line(f"rebuilt {name}")
    for message in result.skipped:
        out.line(f"SKIPPED: {message}", style="yellow")
    status = "INCOMPLETE" if result.skipped else "OK"
    out.line(
        f"{status}: {len(result.indexes)} indexes rebuilt from {result.records} records; "
        f"{result.entries_removed} entries deleted, {result.entries} written",
        style="bold yellow" if result.skipped else "bold green",
    )
    return len(result.skipped)


# ---------------------------------------------------------------------------- schema


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


async def schema(path: str, out: Output | TextIO | None = None, as_json: bool = False) -> None:
    """Print the stored schemas, their index states, unfinished jobs and version history.
    ``out``: an :class:`Output`, a text stream, or None for stdout."""
    output = out if isinstance(out, Output) else Output(file=out, as_json=as_json)
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        state = await db.schema_state()
    if output.as_json:
        output.json(_schema_doc(state))
        return
    if not state.schemas and not state.untracked:
        output.line(f"no entity schemas are stored in {path}")
        return
    for i, s in enumerate(state.schemas.values()):
        if i:
            output.line()
        _print_schema(s, state, output)
    for name in state.untracked:
        output.line(f"\n{name}  records stored, no schema yet (declare the class at open to record it)")


def _schema_doc(state: CatalogState) -> dict[str, Any]:
    return {
        "entities": [s.to_map() for s in state.schemas.values()],
        "jobs": [
            {"entity": n, "kind": j.kind, "to": j.to_version, "phase": j.phase, "done": j.done, "moved": j.moved}
            for n, j in sorted(state.record_jobs.items())
        ]
        + [
            {"entity": n, "kind": j.kind, "index": i, "done": j.done, "total": j.total}
            for (n, i), j in sorted(state.index_jobs.items())
        ],
        "untracked": list(state.untracked),
    }


def _print_schema(s: StoredSchema, state: CatalogState, out: Output) -> None:
    """One entity: a header line, then labelled sections of aligned columns (a rich table
    per section on a terminal)."""
    job = state.record_jobs.get(s.name)
    fields = [
        (f.name, f.type_label, ", ".join(n for n, on in (("optional", f.optional), ("default", f.default)) if on))
        for f in s.fields
    ]
    indexes = []
    for idx in s.indexes:
        state_text = idx.state
        ij = state.index_jobs.get((s.name, idx.name))
        if ij is not None and ij.kind == "build" and ij.total:
            state_text += f" {ij.done:,}/{ij.total:,}"
        elif ij is not None and ij.kind == "rebuild":
            state_text += " (repair: deleting the old entries; the next open with the class resumes it)"
        kind = "unique " if idx.unique else "multi " if idx.multi else ""
        indexes.append((idx.name, f"{kind}({', '.join(idx.fields)})", state_text))
    history = [
        (f"v{h.version}", _when(h.time), h.event, h.detail + (f"  ({h.records:,} records)" if h.records else ""))
        for h in s.history
    ]
    pending = (
        f"{job.kind} to version {job.to_version}: {job.phase}, {job.done:,} converted, "
        f"{job.moved:,}/{job.staged:,} moved (finishes at the next writable open with the class)"
        if job is not None
        else None
    )
    if out.rich:
        out.line(f"{s.name}  version {s.version}  class {s.cls}", style="bold")
        out.line(f"key {s.primary_key}{' (auto)' if s.auto else ''}")
        out.table(("field", "type", "notes"), fields)
        if indexes:
            out.table(("index", "fields", "state"), indexes)
        if s.validators:
            out.line(f"validators {', '.join(s.validators)}")
        if pending:
            out.line(f"pending {pending}", style="yellow")
        out.table(("version", "time", "event", "detail"), history)
        return
    out.line(f"{s.name}  version {s.version}  class {s.cls}")
    out.line(f"  {'key':<8}  {s.primary_key}{' (auto)' if s.auto else ''}")
    for label, rows in (("fields", fields), ("indexes", indexes)):
        for i, line in enumerate(plain_columns(rows)):
            out.line(f"  {label if i == 0 else '':<8}  {line}".rstrip())
    if s.validators:
        out.line(f"  validators {', '.join(s.validators)}")
    if pending:
        out.line(f"  {'pending':<8}  {pending}")
    for i, line in enumerate(plain_columns([(v, when, event, detail) for v, when, event, detail in history], gap=2)):
        out.line(f"  {'history' if i == 0 else '':<8}  {line}".rstrip())


# ---------------------------------------------------------------------------- migrate


def migrate(path: str, module: str, output: str | None, out: Output, now: float | None = None) -> str | None:
    """Diff MODULE's entity classes against the stored schemas; write a migration skeleton
    for the classes that need one. Returns the file written (None if none was needed)."""
    mod = import_module(module)
    classes = entity_classes(mod)
    if not classes:
        raise InvalidArgumentError(f"{module} declares no @quanta.entity classes")
    reports = asyncio.run(_migration_reports(path, classes))
    for r in reports:
        out.line(r.line)
    if not any(r.status == "needs_migration" for r in reports):
        out.line("nothing to write: no class needs a migration")
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
    out.line(f"wrote {target}: fill in its TODOs, then import it before opening the database with the classes")
    return target


async def _migration_reports(path: str, classes: list[type]) -> list[EntityReport]:
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        return [_entity_report(cls, await db.preview_schema(cls)) for cls in classes]


def _entity_report(cls: type, p: EntityPreview) -> EntityReport:
    name, stored, declared, decision = cls.__qualname__, p.stored, p.declared, p.decision
    if stored is None:
        return EntityReport(name, declared.name, "new", None, declared)
    if p.action == "none":
        return EntityReport(name, declared.name, "same", stored, declared)
    if p.action == "migrate":
        return EntityReport(name, declared.name, "covered", stored, declared, decision)
    if p.action != "mismatch" or decision is None:
        return EntityReport(name, declared.name, "automatic", stored, declared, decision)
    if declared.version < stored.version:
        return EntityReport(name, declared.name, "downgrade", stored, declared, decision)
    return EntityReport(
        name, declared.name, "needs_migration", stored, declared, decision, to_version_for(stored, declared)
    )
