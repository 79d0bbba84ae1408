"""Where entity records and index entries live in the key-value space.

Every key of the entity layer starts with the reserved two bytes ``NS = b"\\x00Q"``, then a kind
byte, then an order-preserving tuple (``quanta._codec.encode_tuple``)::

    record        NS "r" (entity, pk)                         -> the record (msgpack)
    index entry   NS "i" (entity, index, v1, ..., vn, pk)     -> (pk,)      non-unique, multi
    unique entry  NS "u" (entity, index, v1, ..., vn)         -> (pk,)      unique indexes

An entry's value ``(pk,)`` is ``encode_key(pk)``, the last bytes of its record's key: a query
turns an entry into its record's key by concatenation, with no decoding.
    catalog       NS "c" (entity,)                            -> the stored schema
    key counter   NS "c" (entity, "~seq")                     -> encode_key(n): no auto key
                                                                 below n may be handed out

Because the tuple encoding is order-preserving and prefix-free, all records of an entity are
one contiguous range ordered by primary key, and all entries of an index are one range
ordered by the indexed values (then by primary key): an equality on the first k fields of a
composite index plus a range on field k+1 is one contiguous key range. ``db.kv`` and ``tx.kv``
refuse keys starting with ``b"\\x00Q"`` (``ReservedKeyError``) and their scans step over them;
this layer reads and writes them through the readers' internal methods (``_get``,
``_get_many``, ``_scan``, ``_scan_chunks``, ``_put_generated``).

**The prefix, the kind bytes and the tuple layouts are part of the on-disk format.**
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._codec import decode_key, encode_key, encode_tuple, prefix_end
from .._kv import RESERVED_END, RESERVED_PREFIX
from ..errors import CorruptionError

__all__ = [
    "CATALOG_PREFIX",
    "NS",
    "EntityKeys",
    "bad_record_error",
    "catalog_key",
    "index_key",
    "index_prefix",
    "record_key",
    "record_prefix",
    "sequence_key",
    "unique_key",
    "unique_prefix",
]

NS = RESERVED_PREFIX  # b"\x00Q": db.kv / tx.kv refuse it and their scans skip it (quanta/_kv.py)
assert NS == b"\x00Q" and prefix_end(NS) == RESERVED_END
RECORD, INDEX, UNIQUE, CATALOG = b"r", b"i", b"u", b"c"
CATALOG_PREFIX = NS + CATALOG  # every catalog key (schemas, auto-key counters) starts with it


def record_key(entity: str, pk: Any) -> bytes:
    return NS + RECORD + encode_tuple((entity, pk))


def record_prefix(entity: str) -> tuple[bytes, bytes | None]:
    """``[start, stop)`` of every record of ``entity``."""
    start = NS + RECORD + encode_tuple((entity,))
    return start, prefix_end(start)


def index_key(entity: str, index: str, values: Sequence[Any], pk: Any) -> bytes:
    return NS + INDEX + encode_tuple((entity, index, *values, pk))


def index_prefix(entity: str, index: str, values: Sequence[Any] = ()) -> bytes:
    """The byte prefix shared by every entry of ``index`` whose first values are ``values``."""
    return NS + INDEX + encode_tuple((entity, index, *values))


def unique_key(entity: str, index: str, values: Sequence[Any]) -> bytes:
    return NS + UNIQUE + encode_tuple((entity, index, *values))


def unique_prefix(entity: str, index: str, values: Sequence[Any] = ()) -> bytes:
    return NS + UNIQUE + encode_tuple((entity, index, *values))


def catalog_key(entity: str) -> bytes:
    return NS + CATALOG + encode_tuple((entity,))


def bad_record_error(entity: str, key: bytes, problem: str) -> CorruptionError:
    """The error for the stored record under ``key`` that cannot be read (``problem`` says
    why), naming the entity, the primary key and the key's bytes."""
    start = NS + RECORD + encode_key(entity)
    try:
        pk: Any = decode_key(key[len(start) :])
    except Exception:
        pk = key[len(start) :]
    return CorruptionError(
        f"the {entity} record with primary key {pk!r} (key {key.hex()}) cannot be read: {problem}; "
        f"delete({pk!r}) removes it, and db.verify(deep=True) lists every such record",
        path=f"<record {entity} {pk!r}>",
    )


def sequence_key(entity: str) -> bytes:
    """Where an auto-key entity keeps the smallest key it may still hand out after a reopen
    (written in the same batch as a delete of its largest keys; see ``_collection.py``)."""
    return NS + CATALOG + encode_tuple((entity, "~seq"))


class EntityKeys:
    """The functions above for one entity, with the constant prefixes encoded once (the
    tuple encoding concatenates its elements, so a key is a prefix plus the rest): the hot
    path of every write of the entity layer."""

    __slots__ = ("entity", "index_prefixes", "pk_type", "record_prefix", "unique_prefixes")

    def __init__(self, entity: str, indexes: Sequence[str]) -> None:
        self.entity = entity
        head = encode_key(entity)
        self.record_prefix = NS + RECORD + head
        self.index_prefixes = {name: NS + INDEX + head + encode_key(name) for name in indexes}
        self.unique_prefixes = {name: NS + UNIQUE + head + encode_key(name) for name in indexes}
        self.pk_type: type | None = None  # the primary key's declared type (set by the collection)

    def record(self, pk: Any) -> bytes:
        return self.record_prefix + encode_key(pk)

    def index(self, index: str, values: Sequence[Any], pk: Any) -> bytes:
        return self.index_prefixes[index] + encode_tuple((*values, pk))

    def unique(self, index: str, values: Sequence[Any]) -> bytes:
        return self.unique_prefixes[index] + encode_tuple(values)
