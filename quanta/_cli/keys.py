"""Readable keys and values for ``dump`` and ``scan``: the entity layer's reserved keys
decoded (quanta/_schema/keyspace.py) instead of printed as bytes.

```
record        User[42]
index entry   User.city_age('Oslo', 31) -> User[42]
unique entry  User.email('ann@example.com') -> User[42]      (the target is in the value)
catalog       catalog User / catalog User ~seq / catalog User ~job migrate
kv key        b'user:1'                                       (as Python writes bytes)
```
A key that does not decode (a damaged file) is shown as bytes, never an error: dump's job is
to show what is there.
"""

from __future__ import annotations

from typing import Any

from .._codec import decode_key, decode_tuple
from .._schema import CATALOG, INDEX, NS, RECORD, UNIQUE, decode_value

__all__ = ["show_bytes", "show_key", "show_value"]


def show_bytes(b: bytes | None, limit: int = 48) -> str:
    """``b`` as Python writes it, cut after ``limit`` bytes; None (a deletion) as ``<tombstone>``."""
    if b is None:
        return "<tombstone>"
    text = repr(b[:limit])
    return text + (f"...(+{len(b) - limit} bytes)" if len(b) > limit else "")


def _args(values: tuple[Any, ...]) -> str:
    return ", ".join(repr(v) for v in values)


def show_key(key: bytes, value: bytes | None = None, limit: int = 48) -> str:
    """The readable form of ``key`` (see the module docstring); ``value`` completes a unique
    entry (whose record's key is its value)."""
    if not key.startswith(NS) or len(key) < 3:
        return show_bytes(key, limit)
    kind, rest = key[2:3], key[3:]
    try:
        t = decode_tuple(rest)
        entity = str(t[0])
        if kind == RECORD and len(t) == 2:
            return f"{entity}[{t[1]!r}]"
        if kind == INDEX and len(t) >= 3:
            return f"{entity}.{t[1]!s}({_args(t[2:-1])}) -> {entity}[{t[-1]!r}]"
        if kind == UNIQUE and len(t) >= 2:
            target = "" if value is None else f" -> {entity}[{decode_key(value)!r}]"
            return f"{entity}.{t[1]!s}({_args(t[2:])}){target}"
        if kind == CATALOG:
            return " ".join(["catalog", entity, *(str(x) for x in t[1:3])])
    except Exception:  # not a well-formed entity key: show the bytes
        pass
    return show_bytes(key, limit)


def show_value(key: bytes, value: bytes | None, limit: int = 48) -> str:
    """The readable form of ``value`` stored under ``key``: a record's schema version and
    field values (msgpack ``[version, field, ...]``) decoded, as ``v1 [42, 'Ann']``; an
    entry's target left out (:func:`show_key` shows it); other values as bytes."""
    if value is None:
        return "<tombstone>"
    if key.startswith(NS + RECORD):
        try:
            rec = decode_value(value)
        except Exception:
            return show_bytes(value, limit)
        # a record is [schema version, field values...] (quanta/_schema): "v1 [values]"
        text = f"v{rec[0]} {rec[1:]!r}" if type(rec) is list and rec and type(rec[0]) is int else repr(rec)
        return text if len(text) <= 4 * limit else text[: 4 * limit] + "..."
    if key.startswith(NS + INDEX) or key.startswith(NS + UNIQUE):
        return ""
    if key.startswith(NS + CATALOG):
        return f"({len(value)} bytes)"
    return show_bytes(value, limit)
