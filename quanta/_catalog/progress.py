"""Progress reports of the catalog's long jobs: migrations, rewrites, index builds and drops.

``quanta.open(path, entities=[...], on_progress=callback)`` calls ``callback`` with a
:class:`SchemaProgress` after every chunk of every job (and once with ``finished=True`` at the
end), on the event loop thread. Jobs run at open (migrations, rewrites, unique index builds)
report before ``open`` returns; background index builds and drops report later. The callback
must be quick and must not raise: an exception from it fails the job (at open: the open).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

__all__ = ["SchemaProgress", "Task"]

Task = Literal["migrate", "rewrite", "adopt", "build_index", "drop_index"]


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaProgress:
    """One progress report.

    ``task``: ``migrate`` (migration steps), ``rewrite`` (an automatic rewrite in a new shape),
    ``adopt`` (records found without a stored schema, checked and rewritten), ``build_index``,
    ``drop_index``. ``entity``; ``index`` for index jobs; ``from_version``/``to_version`` for
    the record jobs. ``phase``: for record jobs ``stage`` (converting and checking, old records
    untouched), ``swap`` (replacing the old records) or ``done``; ``build``/``drop``/``done``
    for index jobs. ``done`` of ``total`` records (``total`` counted when the job started; for
    a drop, entries). ``finished``: the last report of the job.
    """

    task: Task
    entity: str
    phase: str
    done: int
    total: int
    index: str | None = None
    from_version: int | None = None
    to_version: int | None = None
    finished: bool = False

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(self.done / self.total, 1.0)
