r"""The JSON Lines export format (``db.export_jsonl``, ``quanta export``).

A file is UTF-8 text, one JSON object per line (``\n`` ends every line)::

    line 1     header   {"format": "quanta-jsonl", "version": 1, "seq": 4711, "kv": false,
                         "entities": [<stored schema>, ...]}
    line 2..   record   {"entity": "User", "record": {"id": 7, "email": "a@x.io", ...}}
               kv pair  {"key": "<base64>", "value": "<base64>"}
    last line  trailer  {"end": {"records": 1000, "kv": 0, "sha256": "9f86d0...0f00a08"}}

``seq`` is the sequence number of the snapshot the export read: every line is the state as of
that commit. ``entities`` holds each exported entity's stored schema exactly as the catalog
keeps it (``quanta/_catalog/format.py``, the ``StoredSchema`` map with its field type
descriptions, indexes and history), written through the ``Any`` mapping of
``quanta/_entity/jsonmap.py`` (so an enum value that is bytes stays bytes). Records come
entity by entity (in the header's order), each entity's in primary-key order; a record's
fields are in declaration order and each value is in the JSON form its stored type gives it
(the mapping table in ``jsonmap.py`` and docs/operations.md). kv pairs (``kv=True``) follow
the records, in key order; the entity layer's reserved keys (``b"\x00Q"...``) are never
among them. The trailer counts what came before it: a file without one (an export that was
interrupted) is refused by an import.

**The format name, the version, the map keys and the line order are part of the file format**
(``FormatVersion``); a change needs a new version that readers can tell apart.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from .._catalog import StoredSchema
from .._entity import any_from_json, any_to_json

__all__ = ["FORMAT", "FormatVersion", "dump_line", "header", "schema_from_json", "trailer"]

FORMAT = "quanta-jsonl"


class FormatVersion(IntEnum):
    """Versions of the JSON Lines format."""

    V1 = 1  # first release: the layout in the module docstring


def dump_line(obj: Any) -> bytes:
    """One line: compact JSON, UTF-8, ``\\n``-terminated. Strings with lone surrogates (which
    UTF-8 cannot hold) are written with ``\\u`` escapes instead."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def header(seq: int, kv: bool, schemas: list[StoredSchema]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": int(FormatVersion.V1),
        "seq": seq,
        "kv": kv,
        "entities": [any_to_json(s.to_map()) for s in schemas],
    }


def trailer(records: int, kv: int, sha256: str | None = None) -> dict[str, Any]:
    end: dict[str, Any] = {"records": records, "kv": kv}
    if sha256 is not None:
        end["sha256"] = sha256
    return {"end": end}


def schema_from_json(j: Any) -> StoredSchema:
    """A header's schema entry back as a :class:`StoredSchema` (``CorruptionError`` or
    ``InvalidTypeError`` if it is not one)."""
    return StoredSchema.from_map(any_from_json(j, "schema"))
