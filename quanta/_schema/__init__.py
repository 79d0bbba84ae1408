"""The schema layer: entity declarations and their record codecs.

Upper layers (the collection, the query planner, the ``quanta`` facade) import this facade.
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
from .keyspace import CATALOG_PREFIX
from .relations import Backlink, Link, Links, backlink, link, links
from .validation import validator

__all__ = [
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
