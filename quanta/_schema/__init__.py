"""The schema layer: entity declarations and their record codecs.

Upper layers (the collection, the query planner, the ``quanta`` facade) import this facade.
``entity`` turns a class into an entity class and stores an :class:`EntityInfo` (fields,
primary key, indexes, the generated ``encode``/``decode``/``check``) in
``cls.__quanta_entity__``; ``entity_info(cls)`` returns it.
"""

from .entity import entity, entity_info
from .fields import Index, PrimaryKey, Unique, field
from .info import EntityInfo, FieldInfo, IndexInfo

__all__ = [
    "EntityInfo",
    "FieldInfo",
    "Index",
    "IndexInfo",
    "PrimaryKey",
    "Unique",
    "entity",
    "entity_info",
    "field",
]
