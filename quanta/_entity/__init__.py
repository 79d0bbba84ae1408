"""The entity layer: collections (``_collection.py``), entity writes (``writes.py``) and their
index entries (``entries.py``), relations (``_relations.py``), queries (``_queries.py``) and
the executor that runs their plans (``executor.py``: the one place plans run, for
queries, counts, deletes by query and live queries), the aggregates (``aggregates.py``),
over transactions (``quanta/_txn``), declarations (``quanta/_schema``) and the planner
(``quanta/_query``).
the executor that runs their plans (``executor.py``), the JSON mapping of entity values
(``jsonmap.py``), over transactions (``quanta/_txn``),
declarations (``quanta/_schema``) and the planner (``quanta/_query``).

Inside, a write flows down: ``_collection``/``_queries`` -> ``writes`` -> ``_relations`` ->
``executor`` -> ``entries``, then the transaction. What other layers use is exported here.
"""

from ._collection import Collection, EntityContext, LiveQueries, SchemaCatalog, entity_info_of
from ._queries import Query
from .aggregates import AGGREGATES, Aggregate, check_aggregate
from .entries import entity_keys, index_entries, new_index_entries
from .executor import ReadView, match_counts, rows
from .jsonmap import any_from_json, any_to_json, entity_decoder, entity_encoder, json_encoder
from .writes import put_records

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "Collection",
    "EntityContext",
    "LiveQueries",
    "Query",
    "ReadView",
    "SchemaCatalog",
    "check_aggregate",
    "entity_info_of",
    "entity_keys",
    "index_entries",
    "match_counts",
    "new_index_entries",
    "rows",
    "any_from_json",
    "any_to_json",
    "entity_decoder",
    "entity_encoder",
    "json_encoder",
    "put_records",
]
