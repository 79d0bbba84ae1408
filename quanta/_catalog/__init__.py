"""The schema catalog: stored schemas, schema versions, migrations and index jobs.

The database (``quanta/_db.py``) owns one :class:`Catalog`; the collection layer reaches it
through the database's ``quanta._entity.EntityContext`` (``catalog``, typed by the entity
layer's ``SchemaCatalog`` protocol, which :class:`Catalog` implements) to admit classes and
to hide incomplete indexes from the planner. ``migration`` is the public decorator.

Modules: ``format.py`` (the on-disk format), ``diff.py`` (comparing schemas; pure),
``migrations.py`` (steps and record conversions; pure), ``store.py`` (chunked storage
access), ``rewrite.py`` (staged, crash-safe record rewrites), ``builder.py`` (index builds
and drops), ``repair.py`` (rebuilding entries), ``verify.py`` (deep verify), ``catalog.py``
(the async shell), ``autogen.py`` (migration skeletons for the CLI).
"""

from .autogen import EntityReport, render, to_version_for
from .catalog import Catalog, CatalogState, EntityPreview, check_entities
from .diff import Decision, Difference, decide, differences
from .format import HistoryEntry, StoredField, StoredIndex, StoredSchema, schema_of
from .migrations import Step, migration, steps_of
from .progress import SchemaProgress
from .repair import RepairReport
from .verify import ProblemKind, ProblemLog, VerifyProblem, VerifyReport

__all__ = [
    "Catalog",
    "CatalogState",
    "EntityPreview",
    "check_entities",
    "Decision",
    "EntityReport",
    "Difference",
    "RepairReport",
    "ProblemKind",
    "ProblemLog",
    "VerifyProblem",
    "VerifyReport",
    "HistoryEntry",
    "SchemaProgress",
    "Step",
    "StoredField",
    "StoredIndex",
    "StoredSchema",
    "decide",
    "differences",
    "migration",
    "render",
    "schema_of",
    "steps_of",
    "to_version_for",
]
