"""``backup``, ``compact``, ``export`` and ``import``: copying a database's contents."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import aiofiles

from .. import _db
from .._transfer import header_modules
from .entities import entity_classes, import_module
from .output import LineProgress, Output, bytes_text, progress_bar

__all__ = ["backup", "compact", "export_cmd", "import_cmd"]


async def backup(src: str, dest: str, out: Output, progress: bool | None = None) -> None:
    """Back up SRC (opened read-only) into DEST; print what the backup holds."""
    with progress_bar("backing up", progress, unit="bytes") as bar:
        async with _db.open(src, read_only=True, create_if_missing=False) as db:
            info = await db.backup(dest, progress=bar)
            source = db.path
    if out.as_json:
        out.json({"source": source, **dataclasses.asdict(info)})
        return
    out.line(
        f"backup of {source} in {info.path}: every commit up to #{info.seq}; "
        f"{info.tables} tables ({info.linked} linked, {info.copied} copied, {info.reused} reused), "
        f"{bytes_text(info.wal_bytes)} of WAL, {bytes_text(info.bytes)} ({bytes_text(info.bytes_written)} written) "
        f"in {info.seconds:.2f} s"
    )


async def compact(path: str, out: Output) -> None:
    """Flush and compact PATH (opened for writing: no application may have it open)."""
    async with _db.open(path, create_if_missing=False) as db:
        before = (await db.stats())["levels"]
        await db.compact()
        after = (await db.stats())["levels"]
    if out.as_json:
        out.json({"before": before, "after": after})
        return

    def shape(levels: list[dict[str, Any]]) -> str:
        return ", ".join(f"L{lv['level']}: {lv['files']}" for lv in levels if lv["files"]) or "no tables"

    out.line(f"compacted {path}: {shape(before)} -> {shape(after)} (files per level)")


async def export_cmd(path: str, output: str | None, entities: list[str] | None, kv: bool) -> dict[str, Any]:
    """``quanta export``: returns the report (printed on stderr as JSON: stdout may be the
    export itself)."""
    with LineProgress.shown(False if output is None else None) as progress:
        async with _db.open(path, read_only=True, create_if_missing=False) as db:
            report = await db.export_jsonl(output or "/dev/stdout", entities=entities or None, kv=kv, progress=progress)
    result = report.as_dict()
    print(json.dumps(result), file=sys.stderr)
    return result


async def import_cmd(path: str, file: str, on_conflict: str, modules: list[str] | None) -> dict[str, Any]:
    """``quanta import``: the classes of ``modules`` (default: the modules the file's header
    names, found from the current directory) are declared at open, so they are checked against
    the stored schemas as an app's open does."""
    if not modules:  # the modules of the classes the file's schemas name (trusted files only)
        async with aiofiles.open(file, "rb") as f:
            modules = header_modules(await f.readline())
    classes = [cls for m in modules for cls in entity_classes(import_module(m))]
    with LineProgress.shown(None) as progress:
        async with _db.open(path, entities=classes) as db:
            report = await db.import_jsonl(file, on_conflict=on_conflict, progress=progress)
    result = report.as_dict()
    print(json.dumps(result), file=sys.stdout)
    return result
