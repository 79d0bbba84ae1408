"""Live queries: query results, counts, aggregates and records that stay current as commits
happen, as ``reactivex`` Observables and async iterators, maintained incrementally from the
change bus (docs/live.md).

Layout: ``diff.py`` (``ResultDiff``, pure), ``shape.py`` (result order keys and routing
values of a query, pure), ``states.py`` (the maintained values, synchronous), ``store.py``
(synchronous reads of a plan), ``dispatch.py`` (one dispatcher per entity class per
database, fed by the change bus inside each commit's publish), ``faces.py`` (delivery:
outlets: coalescing in front of the bus's queue, drained by ``quanta.Watch``), ``api.py`` (the entry points
``quanta/_entity/_collection.py`` and ``quanta/_entity/_queries.py`` delegate to).
"""

from .api import (
    LiveQueries,
    live,
    registry_of,
    watch,
    watch_aggregate,
    watch_count,
    watch_diff,
    watch_lazy,
    watch_object,
)
from .dispatch import LiveRegistry

__all__ = [
    "LiveQueries",
    "LiveRegistry",
    "live",
    "registry_of",
    "watch",
    "watch_aggregate",
    "watch_count",
    "watch_diff",
    "watch_lazy",
    "watch_object",
]
