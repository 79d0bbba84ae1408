"""The result of ``Database.repair()`` (the work is :meth:`Catalog.repair_indexes`).

How a repair rebuilds an entity's indexes, crash-safely, on the index-job machinery of
``builder.py`` and ``catalog.py``: one commit marks every index of the entity ``building``
(hidden from the planner from then on) and records for each a ``rebuild`` job (under the
index's build-job key). Each job then deletes the index's two entry ranges (chunked), turns
itself into an ordinary ``build`` job in one commit, and builds the entries from the records
(chunked, with a persisted cursor); the last commit marks the index ``ready``. A crash at any
point leaves the jobs stored: the next open resumes them like any unfinished build (unique
indexes before the open returns, the others in the background; a ``rebuild`` job that had not
finished deleting deletes again first), and the index stays hidden until it is complete.
"""

from __future__ import annotations

import dataclasses

__all__ = ["RepairReport"]


@dataclasses.dataclass(frozen=True, slots=True)
class RepairReport:
    """What ``await db.repair()`` did.

    ``indexes``: the rebuilt indexes as ``"Entity.index"``; ``records``: how many records their
    entries were built from (each entity counted once); ``entries_removed``: how many entries
    were deleted before the rebuild (the damaged ones among them); ``entries``: how many
    entries the rebuilt indexes hold afterwards; ``skipped``: one message per entity with
    stored indexes that was not repaired, saying why (its class is not in use).
    """

    indexes: tuple[str, ...]
    records: int
    entries_removed: int
    entries: int
    skipped: tuple[str, ...]
