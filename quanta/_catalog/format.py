"""The catalog's on-disk format: stored schemas, unfinished jobs and staged records.

Everything lives under the reserved catalog kind ``c`` of the entity key space
(``quanta/_schema/keyspace.py``), keyed by order-preserving tuples (``quanta._codec``)::

    schema        NS "c" (entity,)                         -> StoredSchema, msgpack map
    job           NS "c" (entity, "~job", kind, name)      -> job state, msgpack map
    staged record NS "c" (entity, "~stage", pk)            -> a record in the target shape
    unique claim  NS "c" (entity, "~claim", index, *vals)  -> encode_key(pk) of the claimant

``kind`` is ``"build"`` or ``"drop"`` (``name``: the index) or ``"migrate"`` (``name`` is
``""``). Staged records and claims exist only while a migration runs (``rewrite.py``); a job
key only while its job is unfinished. The tuple encoding is prefix-free, so ``(entity,)`` and
the longer tuples of the same entity never collide, and the staged records of an entity are
one contiguous range that a loader skips in one seek.

A stored schema (msgpack map with str keys; ``CatalogFormat.V1``)::

    {"format": 1, "name": "User", "version": 2, "class": "app.models.User",
     "primary_key": "id", "auto": true,
     "fields": [{"name": "id", "type": "int", "optional": false, "default": true,
                 "constraints": []}, ...],
     "indexes": [{"name": "email", "fields": ["email"], "unique": true, "multi": false,
                  "state": "ready"}, ...],
     "validators": ["app.models.check_dates"],
     "history": [{"version": 1, "time": 1714557600.0, "event": "created",
                  "detail": "...", "records": 0}, ...]}

Index ``state``: ``ready`` (complete; queries may use it), ``building`` (entries are being
written for existing records; writers already maintain it; queries must not use it) or
``dropping`` (the class no longer declares it; its entries are being deleted). ``history``
events: ``created``, ``adopted``, ``changed``, ``rewritten``, ``migrated``, ``index_built``,
``index_dropped``.

Type descriptions (``"type"``) are plain msgpack data that name the stored shape of a value
precisely enough to decode an old record without its class, and to compare shapes::

    "int" "float" "str" "bytes" "bool" "datetime" "date" "time" "timedelta"
    "Decimal" "UUID" "Any"                       scalars, and Any
    ["optional", T]                              T | None
    ["list", T] ["set", T] ["frozenset", T]      collections
    ["vtuple", T]                                tuple[T, ...]
    ["tuple", [T1, T2, ...]]                     fixed tuples
    ["dict", K, V]                               dicts
    ["enum", "Color", [v1, v2, ...]]             enums, stored by value (values msgpack-able
                                                 as they are, else their repr)
    ["dataclass", "Address", [[name, T], ...]]   nested dataclasses, stored as arrays
    ["ref", "Address"]                           a dataclass already being described
                                                 (recursive types)
    ["other", kind, label]                       a kind this version does not know

**The key layout, the map keys, the states, the events and the type descriptions are part
of the on-disk format.** A change needs a new :class:`CatalogFormat`.

Everything here is pure: no I/O, no event loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from enum import Enum, IntEnum
from typing import Any

import msgpack

from .._codec import encode_key, encode_tuple, prefix_end
from .._schema import CATALOG, INDEX, NS, RECORD, UNIQUE, EntityInfo, catalog_key
from ..errors import CorruptionError

__all__ = [
    "BUILDING",
    "CATALOG_PREFIX",
    "DROPPING",
    "READY",
    "CatalogFormat",
    "HistoryEntry",
    "StoredField",
    "StoredIndex",
    "StoredSchema",
    "claim_key",
    "claim_prefix",
    "compatible",
    "describe",
    "entity_ranges",
    "job_key",
    "label",
    "pack",
    "schema_key",
    "schema_of",
    "stage_key",
    "stage_prefix",
    "unpack",
]


class CatalogFormat(IntEnum):
    """Versions of the catalog's stored maps."""

    V1 = 1  # first release: the layout in the module docstring


READY, BUILDING, DROPPING = "ready", "building", "dropping"
CATALOG_PREFIX = NS + CATALOG
_CATALOG_PATH = "<catalog>"  # the CorruptionError path: a catalog entry is not a file


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise CorruptionError(f"malformed catalog entry: {exc}", path=_CATALOG_PATH) from exc


# ---------------------------------------------------------------------------------- keys


def schema_key(entity: str) -> bytes:
    return catalog_key(entity)


def job_key(entity: str, kind: str, name: str = "") -> bytes:
    return CATALOG_PREFIX + encode_tuple((entity, "~job", kind, name))


def stage_prefix(entity: str) -> bytes:
    return CATALOG_PREFIX + encode_tuple((entity, "~stage"))


def stage_key(entity: str, pk: Any) -> bytes:
    return stage_prefix(entity) + encode_key(pk)


def claim_prefix(entity: str) -> bytes:
    return CATALOG_PREFIX + encode_tuple((entity, "~claim"))


def claim_key(entity: str, index: str, values: Sequence[Any]) -> bytes:
    return claim_prefix(entity) + encode_tuple((index, *values))


def entity_ranges(entity: str) -> list[tuple[bytes, bytes | None]]:
    """The ``[start, stop)`` ranges of every record, index entry and unique entry of
    ``entity`` (what a migration replaces)."""
    head = encode_key(entity)
    out = []
    for kind in (RECORD, INDEX, UNIQUE):
        start = NS + kind + head
        out.append((start, prefix_end(start)))
    return out


# ---------------------------------------------------------------------------------- types


def describe(node: Any, _path: tuple[type, ...] = ()) -> Any:
    """The stored description of a parsed type (``quanta._schema.typenode.TypeNode``)."""
    kind = node.kind
    if kind == "any":
        return "Any"
    if kind == "scalar":
        return node.py.__name__
    if kind == "optional":
        return ["optional", describe(node.args[0], _path)]
    if kind in ("list", "set", "frozenset", "vtuple"):
        return [kind, describe(node.args[0], _path)]
    if kind == "tuple":
        return ["tuple", [describe(a, _path) for a in node.args]]
    if kind == "dict":
        return ["dict", describe(node.args[0], _path), describe(node.args[1], _path)]
    if kind == "enum":
        return ["enum", node.py.__name__, [_enum_value(m) for m in node.py]]
    if kind == "dataclass":
        if node.py in _path:
            return ["ref", node.py.__name__]
        inner = (*_path, node.py)
        return ["dataclass", node.py.__name__, [[name, describe(sub, inner)] for name, sub in node.fields]]
    label_ = getattr(node, "label", kind)
    return ["other", kind, str(label_)]


def _enum_value(member: Enum) -> Any:
    value = member.value
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    return repr(value)


def label(desc: Any) -> str:
    """How messages and the CLI name a described type: ``int``, ``list[str] | None``."""
    if isinstance(desc, str):
        return desc
    if not isinstance(desc, list) or not desc:
        return repr(desc)
    kind = desc[0]
    if kind == "optional":
        return f"{label(desc[1])} | None"
    if kind == "vtuple":
        return f"tuple[{label(desc[1])}, ...]"
    if kind in ("list", "set", "frozenset"):
        return f"{kind}[{label(desc[1])}]"
    if kind == "tuple":
        return f"tuple[{', '.join(label(d) for d in desc[1]) or '()'}]"
    if kind == "dict":
        return f"dict[{label(desc[1])}, {label(desc[2])}]"
    if kind in ("enum", "dataclass", "ref"):
        return str(desc[1])
    if kind == "other":
        return str(desc[2])
    return repr(desc)


def compatible(stored: Any, declared: Any) -> bool:
    """Can a value stored as ``stored`` be read, unchanged, as ``declared``? True for equal
    types and for widenings that need no rewrite: ``T`` to ``T | None``, an enum gaining
    members, and those inside containers and dataclasses (same fields, same order)."""
    if stored == declared:
        return True
    if isinstance(declared, list) and declared and declared[0] == "optional":
        inner = stored[1] if isinstance(stored, list) and stored and stored[0] == "optional" else stored
        return compatible(inner, declared[1])
    if not (isinstance(stored, list) and isinstance(declared, list) and stored and declared):
        return False
    kind = stored[0]
    if kind != declared[0]:
        return False
    if kind == "enum":
        return set(map(_hashable, stored[2])) <= set(map(_hashable, declared[2]))
    if kind in ("list", "set", "frozenset", "vtuple"):
        return compatible(stored[1], declared[1])
    if kind == "tuple":
        return len(stored[1]) == len(declared[1]) and all(map(compatible, stored[1], declared[1]))
    if kind == "dict":
        return compatible(stored[1], declared[1]) and compatible(stored[2], declared[2])
    if kind == "dataclass":
        old, new = stored[2], declared[2]
        return len(old) == len(new) and all(
            a[0] == b[0] and compatible(a[1], b[1]) for a, b in zip(old, new, strict=True)
        )
    return False


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# ---------------------------------------------------------------------------------- schemas


@dataclasses.dataclass(frozen=True, slots=True)
class StoredField:
    """One field as stored: ``type`` is its description (above); ``default`` says the class
    gave it a default (or a default factory); ``constraints`` are the declared constraints'
    ``as_dict()`` forms (recorded for the CLI; not compared)."""

    name: str
    type: Any
    optional: bool
    default: bool
    constraints: tuple[Any, ...] = ()

    @property
    def type_label(self) -> str:
        return label(self.type)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredIndex:
    name: str
    fields: tuple[str, ...]
    unique: bool = False
    multi: bool = False
    state: str = READY

    def same_definition(self, other: StoredIndex) -> bool:
        return (self.name, self.fields, self.unique, self.multi) == (
            other.name,
            other.fields,
            other.unique,
            other.multi,
        )

    @property
    def text(self) -> str:
        kind = "unique " if self.unique else "multi-entry " if self.multi else ""
        return f"{kind}index {self.name!r} on ({', '.join(self.fields)})"


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryEntry:
    version: int
    time: float
    event: str
    detail: str
    records: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredSchema:
    """What the catalog knows about one entity (see the module docstring)."""

    name: str
    version: int
    cls: str
    primary_key: str
    auto: bool
    fields: tuple[StoredField, ...]
    indexes: tuple[StoredIndex, ...] = ()
    validators: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def field(self, name: str) -> StoredField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def index(self, name: str) -> StoredIndex | None:
        for idx in self.indexes:
            if idx.name == name:
                return idx
        return None

    @property
    def shape(self) -> tuple[Any, ...]:
        """What decides how a record is stored: version, key, fields and their types."""
        return (self.version, self.primary_key, tuple((f.name, repr(f.type), f.optional) for f in self.fields))

    def replace(self, **changes: Any) -> StoredSchema:
        return dataclasses.replace(self, **changes)

    def with_history(self, *entries: HistoryEntry) -> StoredSchema:
        return dataclasses.replace(self, history=self.history + tuple(entries))

    def with_index_state(self, name: str, state: str | None) -> StoredSchema:
        """The index ``name`` in ``state`` (None: removed)."""
        out = []
        for idx in self.indexes:
            if idx.name == name:
                if state is None:
                    continue
                idx = dataclasses.replace(idx, state=state)
            out.append(idx)
        return dataclasses.replace(self, indexes=tuple(out))

    # ------------------------------------------------------------------ serialisation

    def to_map(self) -> dict[str, Any]:
        return {
            "format": int(CatalogFormat.V1),
            "name": self.name,
            "version": self.version,
            "class": self.cls,
            "primary_key": self.primary_key,
            "auto": self.auto,
            "fields": [
                {
                    "name": f.name,
                    "type": f.type,
                    "optional": f.optional,
                    "default": f.default,
                    "constraints": list(f.constraints),
                }
                for f in self.fields
            ],
            "indexes": [
                {"name": i.name, "fields": list(i.fields), "unique": i.unique, "multi": i.multi, "state": i.state}
                for i in self.indexes
            ],
            "validators": list(self.validators),
            "history": [
                {"version": h.version, "time": h.time, "event": h.event, "detail": h.detail, "records": h.records}
                for h in self.history
            ],
        }

    def to_bytes(self) -> bytes:
        return pack(self.to_map())

    @classmethod
    def from_map(cls, m: Any) -> StoredSchema:
        try:
            if m["format"] != CatalogFormat.V1:
                raise CorruptionError(
                    f"catalog entry {m.get('name')!r} has format {m['format']}; this QuantaDB reads format 1",
                    path=_CATALOG_PATH,
                )
            return cls(
                name=m["name"],
                version=m["version"],
                cls=m["class"],
                primary_key=m["primary_key"],
                auto=m["auto"],
                fields=tuple(
                    StoredField(f["name"], f["type"], f["optional"], f["default"], tuple(f.get("constraints", ())))
                    for f in m["fields"]
                ),
                indexes=tuple(
                    StoredIndex(i["name"], tuple(i["fields"]), i["unique"], i["multi"], i["state"])
                    for i in m["indexes"]
                ),
                validators=tuple(m.get("validators", ())),
                history=tuple(
                    HistoryEntry(h["version"], h["time"], h["event"], h["detail"], h.get("records"))
                    for h in m["history"]
                ),
            )
        except CorruptionError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptionError(f"malformed catalog entry: {type(exc).__name__}: {exc}", path=_CATALOG_PATH) from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredSchema:
        return cls.from_map(unpack(data))


def schema_of(info: EntityInfo, *, indexes: Iterable[StoredIndex] | None = None) -> StoredSchema:
    """The stored schema of entity class ``info`` (no history; every index ``ready`` unless
    ``indexes`` gives them)."""
    fields = tuple(
        StoredField(
            f.name,
            describe(f.type_node),
            f.type_node.kind in ("optional", "any"),
            f.has_default,
            tuple(_constraint(c) for c in getattr(f, "constraints", ())),
        )
        for f in info.fields
    )
    if indexes is None:
        indexes = (StoredIndex(i.name, tuple(i.fields), i.unique, i.multi) for i in info.indexes)
    cls = info.cls
    return StoredSchema(
        name=info.name,
        version=info.version,
        cls=f"{cls.__module__}.{cls.__qualname__}",
        primary_key=info.primary_key,
        auto=info.auto,
        fields=fields,
        indexes=tuple(indexes),
        validators=tuple(v.name for v in getattr(info, "validators", ())),
    )


def _constraint(c: Any) -> Any:
    as_dict = getattr(c, "as_dict", None)
    if callable(as_dict):
        try:
            value = as_dict()
            pack(value)
            return value
        except Exception:
            pass
    return repr(c)
