"""The schema layer: entity declarations and their record codecs.

Upper layers (the query planner, the entity layer, live queries, the catalog, the ``quanta``
facade) import this facade, never its modules: what they use is exported here (the
declarations, ``EntityInfo`` and friends, the key space layout of ``keyspace.py``, the link
helpers of ``relations.py``).
``entity`` turns a class into an entity class and stores an :class:`EntityInfo` (fields,
primary key, indexes, the generated ``encode``/``decode``/``check``) in
``cls.__quanta_entity__``; ``entity_info(cls)`` returns it. ``Range``, ``Length``,
``Pattern``, ``OneOf`` (field constraints) and ``validator`` declare what ``check`` validates.
``Link``, ``Links``, ``Backlink`` with ``link``, ``links``, ``backlink`` declare links between
entities (``relations.py``).
"""

from .constraints import Constraint, Length, OneOf, Pattern, Range
from .entity import entity, entity_info
from .fields import AutoKey, Index, PrimaryKey, Unique, auto, field
from .info import EntityInfo, FieldInfo, IndexInfo, ValidatorInfo
from .keyspace import (
    CATALOG,
    CATALOG_PREFIX,
    INDEX,
    NS,
    RECORD,
    UNIQUE,
    EntityKeys,
    bad_record_error,
    catalog_key,
    index_prefix,
    record_key,
    record_prefix,
    sequence_key,
    unique_prefix,
)
from .linkvalues import SOURCE
from .msgpack_ext import decode_value
from .relations import (
    Backlink,
    Link,
    Links,
    LinkSpec,
    backlink,
    has_pending,
    index_value,
    link,
    links,
    resolve_pending,
)
from .typenode import ANY_TYPES, TypeNode, any_problem
from .validation import validator

__all__ = [
    "ANY_TYPES",
    "CATALOG",
    "INDEX",
    "NS",
    "RECORD",
    "SOURCE",
    "UNIQUE",
    "EntityKeys",
    "LinkSpec",
    "TypeNode",
    "any_problem",
    "bad_record_error",
    "catalog_key",
    "decode_value",
    "index_prefix",
    "has_pending",
    "index_value",
    "record_key",
    "record_prefix",
    "resolve_pending",
    "sequence_key",
    "unique_prefix",
    "CATALOG_PREFIX",
    "AutoKey",
    "Backlink",
    "Constraint",
    "EntityInfo",
    "FieldInfo",
    "Index",
    "IndexInfo",
    "Length",
    "Link",
    "Links",
    "OneOf",
    "Pattern",
    "PrimaryKey",
    "Range",
    "Unique",
    "ValidatorInfo",
    "auto",
    "backlink",
    "entity",
    "entity_info",
    "field",
    "link",
    "links",
    "validator",
]
