"""The entity layer: collections (``_collection.py``), entity writes, relations
(``_relations.py``) and queries with their executor (``_queries.py``), over transactions
(``quanta/_txn``), declarations (``quanta/_schema``) and the planner (``quanta/_query``).

What other layers use is exported here; the modules inside are this package's own."""

from ._collection import Collection, entity_info_of
from ._queries import Query

__all__ = ["Collection", "Query", "entity_info_of"]
