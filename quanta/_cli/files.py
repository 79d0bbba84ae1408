"""``quanta dump FILE``: a WAL segment, SSTable or MANIFEST (or a database directory's
CURRENT manifest) in readable form, with the entity layer's keys decoded (keys.py).

Each line comes with a JSON form (``--json``: one object per line): the file's summary first
(``{"file": ..., "kind": "wal"|"sstable"|"manifest", ...}``), then one object per batch,
entry or edit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from .._storage import (
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
from ..errors import QuantaError
from .keys import show_key, show_value
from .output import Output

__all__ = ["dump"]

Line = tuple[str, dict[str, Any]]


def dump(path: str | os.PathLike[str], out: Output | Any = None, limit: int | None = None) -> None:
    """Print a WAL segment, SSTable or MANIFEST (or a database directory's CURRENT chain).
    ``out``: an :class:`Output`, a text stream, or None for stdout."""
    output = out if isinstance(out, Output) else Output(file=out)
    fs = OSFileSystem()
    path = os.fspath(path)
    if os.path.isdir(path):
        number = read_current(fs, path)
        path = os.path.join(path, filenames.manifest_name(number))
    with open(path, "rb") as f:
        magic = f.read(8)
    parsed = filenames.parse_name(path)
    for i, (text, doc) in enumerate(_dump_lines(fs, path, magic, parsed[1] if parsed else None)):
        if limit is not None and i >= limit:
            if output.as_json:
                output.json_line({"stopped_after": limit})
            else:
                output.line(f"... (stopped after {limit} lines; use --limit)", style="dim")
            break
        if output.as_json:
            output.json_line(doc)
        else:
            output.line(text)


def _entry(key: bytes, value: bytes | None) -> dict[str, Any]:
    return {"key": show_key(key, value), "value": None if value is None else show_value(key, value)}


def _dump_lines(fs: OSFileSystem, path: str, magic: bytes, number: int | None) -> Iterator[Line]:
    if magic == WAL_MAGIC:
        replay = replay_wal(fs, path, number if number is not None else _header_number(path))
        yield (
            f"WAL {path}: {len(replay.batches)} batches, tail {replay.tail}",
            {"file": path, "kind": "wal", "batches": len(replay.batches), "tail": replay.tail},
        )
        for seq, keys, values in replay.batches:
            yield f"batch seq={seq} ops={len(keys)}", {"batch": seq, "ops": len(keys)}
            for k, v in zip(keys, values, strict=False):
                op = "del" if v is None else "put"
                text = f"  {op} {show_key(k, v)} {'' if v is None else show_value(k, v)}".rstrip()
                yield text, {"seq": seq, "op": op, **_entry(k, v)}
    elif magic == MANIFEST_MAGIC:
        edits = replay_manifest(fs, path, number if number is not None else _header_number(path))
        yield f"MANIFEST {path}: {len(edits)} edits", {"file": path, "kind": "manifest", "edits": len(edits)}
        for i, e in enumerate(edits):
            yield (
                f"edit {i}: log_number={e.log_number} next_file={e.next_file_number} last_seq={e.last_seq}",
                {"edit": i, "log_number": e.log_number, "next_file": e.next_file_number, "last_seq": e.last_seq},
            )
            for level, m in e.added:
                name = filenames.table_name(m.number)
                yield (
                    f"  + L{level} {name} {m.size} B {m.entries} entries "
                    f"[{show_key(m.smallest)} .. {show_key(m.largest)}] seq {m.min_seq}..{m.max_seq}",
                    {
                        "add": name,
                        "level": level,
                        "size": m.size,
                        "entries": m.entries,
                        "smallest": show_key(m.smallest),
                        "largest": show_key(m.largest),
                        "min_seq": m.min_seq,
                        "max_seq": m.max_seq,
                    },
                )
            for level, num in e.deleted:
                yield f"  - L{level} {filenames.table_name(num)}", {"delete": filenames.table_name(num), "level": level}
    elif magic == SSTABLE_MAGIC:
        reader = TableReader.open(fs, path, number if number is not None else _header_number(path), None)
        try:
            p = reader.properties
            yield (
                f"SSTable {path}: {p.entries} entries in {reader.num_blocks} blocks, {p.file_size} B, "
                f"keys {show_key(p.smallest)} .. {show_key(p.largest)}, seq {p.min_seq}..{p.max_seq}",
                {
                    "file": path,
                    "kind": "sstable",
                    "entries": p.entries,
                    "blocks": reader.num_blocks,
                    "size": p.file_size,
                    "min_seq": p.min_seq,
                    "max_seq": p.max_seq,
                },
            )
            for key, seq, value in reader.iter_entries():
                text = f"  {show_key(key, value)} @{seq} {show_value(key, value)}".rstrip()
                yield text, {"seq": seq, **_entry(key, value)}
        finally:
            reader.close()
    else:
        raise QuantaError(f"{path} is not a QuantaDB WAL, SSTable or MANIFEST (magic {magic!r})")


def _header_number(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:24], "little")
