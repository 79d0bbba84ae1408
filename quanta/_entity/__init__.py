"""The entity layer: collections (``_collection.py``), entity writes (``writes.py``) and their
index entries (``entries.py``), relations (``_relations.py``), queries (``_queries.py``) and
the executor that runs their plans (``executor.py``), the JSON mapping of entity values
(``jsonmap.py``), over transactions (``quanta/_txn``),
declarations (``quanta/_schema``) and the planner (``quanta/_query``).

Inside, a write flows down: ``_collection``/``_queries`` -> ``writes`` -> ``_relations`` ->
``executor`` -> ``entries``, then the transaction. What other layers use is exported here.
"""

from ._collection import Collection, EntityContext, SchemaCatalog, entity_info_of
from ._queries import Query
from .entries import entity_keys, index_entries, new_index_entries
from .jsonmap import any_from_json, any_to_json, entity_decoder, entity_encoder, json_encoder
from .writes import put_records

__all__ = [
    "Collection",
    "EntityContext",
    "Query",
    "SchemaCatalog",
    "any_from_json",
    "any_to_json",
    "entity_decoder",
    "entity_encoder",
    "entity_info_of",
    "entity_keys",
    "index_entries",
    "json_encoder",
    "new_index_entries",
    "put_records",
]
