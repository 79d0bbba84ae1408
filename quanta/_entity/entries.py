"""Index entries of entity records: the key builders of an entity (``entity_keys``) and the
entries a record has in its indexes (``index_entries``; ``new_index_entries`` for a bulk
insert, a column at a time). Pure functions of the declarations and the objects: the write
path (``writes.py``), cascades (``_relations.py``), index builds and rewrites
(``quanta/_catalog``) all compute entries here. Storage layout: ``quanta/_schema/keyspace.py``.
"""

from __future__ import annotations

from typing import Any

from .._codec import encode_key, encode_keys, encode_tuple
from .._schema import EntityInfo, EntityKeys, index_value

__all__ = ["entity_keys", "index_entries", "new_index_entries"]

_getattr = getattr


def entity_keys(info: EntityInfo) -> EntityKeys:
    """The entity's key builders, made once per class."""
    keys: EntityKeys | None = info.cls.__dict__.get("__quanta_keys__")
    if keys is None:
        keys = EntityKeys(info.name, [idx.name for idx in info.indexes])
        keys.pk_type = info.pk_field.key_type
        type.__setattr__(info.cls, "__quanta_keys__", keys)
    return keys


def index_entries(info: EntityInfo, keys: EntityKeys, obj: Any, pk: Any) -> dict[bytes, bytes]:
    """Every index entry of ``obj`` (key -> value)."""
    out: dict[bytes, bytes] = {}
    rel = info.relations
    get = index_value if rel is not None and rel.links else _getattr  # links index their keys
    for idx in info.indexes:
        if idx.multi:
            elements = get(obj, idx.fields[0])
            if elements:
                prefix = keys.index_prefixes[idx.name]
                epk = encode_key(pk)
                for element in set(elements):
                    out[prefix + encode_key(element) + epk] = epk
            continue
        values = tuple([get(obj, f) for f in idx.fields])
        if idx.unique:
            if any(type(v) is float and v == 0.0 for v in values):
                values = tuple(0.0 if type(v) is float and v == 0.0 else v for v in values)  # -0.0 == 0.0
            if None not in values:
                out[keys.unique(idx.name, values)] = encode_key(pk)
        else:
            out[keys.index(idx.name, values, pk)] = encode_key(pk)
    return out


def new_index_entries(
    info: EntityInfo, keys: EntityKeys, objs: list[Any], epks: list[bytes]
) -> tuple[list[bytes], list[bytes | None]]:
    """Keys and values of every non-unique index entry of ``objs`` (whose encoded primary
    keys are ``epks``): ``index_entries`` for a bulk insert, one index at a time, a column at a
    time (an entry is the index prefix, the encoded values, then the encoded primary key;
    its value is the encoded primary key)."""
    out: list[bytes] = []
    values: list[bytes | None] = []
    rel = info.relations
    get = index_value if rel is not None and rel.links else _getattr  # links index their keys
    for idx in info.indexes:
        p = keys.index_prefixes[idx.name]
        if idx.multi:
            f = idx.fields[0]
            for obj, e in zip(objs, epks, strict=True):
                elements = get(obj, f)
                if elements:
                    distinct = set(elements)
                    out += [p + encode_key(el) + e for el in distinct]
                    values += [e] * len(distinct)
            continue
        if len(idx.fields) == 1:
            column = encode_keys([get(obj, idx.fields[0]) for obj in objs])
            out += [p + v + e for v, e in zip(column, epks, strict=True)]
        else:
            fields = idx.fields
            out += [p + encode_tuple([get(obj, f) for f in fields]) + e for obj, e in zip(objs, epks, strict=True)]
        values += epks
    return out, values
