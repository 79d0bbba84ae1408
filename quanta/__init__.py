"""QuantaDB: an asyncio-native, reactive, embedded data store.

```python
import quanta

async with quanta.open("data/app") as db:
    await db.kv.put(b"user:1", b"Ann")
    print(await db.kv.get(b"user:1"))
```

Everything public is listed in ``__all__``; modules whose names start with ``_`` are
implementation and may change without notice.
"""

from __future__ import annotations

import inspect as _inspect
import typing as _typing

from ._access import (
    MASKED,
    Policy,
    Principal,
    Session,
    SessionCollection,
    SessionKeyValue,
    SessionQuery,
    allow,
    allow_kv,
    mask,
)
from ._audit import ConsistencyProof, InclusionProof, SignedHead  # audit log (issue 17)
from ._catalog import RepairReport, SchemaProgress, VerifyProblem, VerifyReport, migration
from ._db import Database, open
from ._entity import Collection, Query
from ._kv import Batch, KeyValue, Snapshot, SnapshotKeyValue
from ._options import MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, OpenOptions, Options
from ._query import Plan, asc, between, contains, desc, in_
from ._reactive import Change, ChangeSet, ResultDiff, Watch
from ._schema import (
    Backlink,
    Index,
    Length,
    Link,
    Links,
    OneOf,
    Pattern,
    PrimaryKey,
    Range,
    Unique,
    auto,
    backlink,
    entity,
    field,
    link,
    links,
    validator,
)
from ._storage import BackupInfo, SystemEvent
from ._transfer import TransferReport
from ._txn import MAX_TX_KEYS, MAX_TX_RANGES, Transaction, TransactionKeyValue
from .errors import (
    AuditVerificationError,
    BackgroundError,
    ConflictError,
    CorruptionError,
    DatabaseClosedError,
    DatabaseExistsError,
    DatabaseFailedError,
    DatabaseLockedError,
    DatabaseNotFoundError,
    ImportValidationError,
    IntegrityError,
    InvalidArgumentError,
    InvalidTypeError,
    LimitExceededError,
    NotADatabaseError,
    PermissionDeniedError,
    QuantaError,
    QueryError,
    ReaderLagError,
    ReadOnlyError,
    ReservedKeyError,
    SchemaError,
    SchemaMismatchError,
    StorageIOError,
    SubscriberOverflowError,
    TransactionClosedError,
    UniqueViolationError,
    UnsupportedPlatformError,
    ValidationError,
    Violation,
    WrongEventLoopError,
)

__version__ = "0.1.0"

__all__ = [
    "MASKED",
    "MAX_BATCH_BYTES",
    "MAX_KEY_BYTES",
    "MAX_TX_KEYS",
    "MAX_TX_RANGES",
    "MAX_VALUE_BYTES",
    "AuditVerificationError",
    "BackgroundError",
    "Backlink",
    "BackupInfo",
    "Batch",
    "Change",
    "ChangeSet",
    "Collection",
    "ConflictError",
    "ConsistencyProof",
    "CorruptionError",
    "Database",
    "DatabaseClosedError",
    "DatabaseExistsError",
    "DatabaseFailedError",
    "DatabaseLockedError",
    "DatabaseNotFoundError",
    "ImportValidationError",
    "InclusionProof",
    "Index",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "KeyValue",
    "Length",
    "LimitExceededError",
    "Link",
    "Links",
    "NotADatabaseError",
    "OneOf",
    "OpenOptions",
    "Options",
    "Pattern",
    "PermissionDeniedError",
    "Plan",
    "Policy",
    "PrimaryKey",
    "Principal",
    "QuantaError",
    "Query",
    "QueryError",
    "Range",
    "ReadOnlyError",
    "ReaderLagError",
    "RepairReport",
    "ReservedKeyError",
    "ResultDiff",
    "SchemaError",
    "SchemaMismatchError",
    "SchemaProgress",
    "Session",
    "SessionCollection",
    "SessionKeyValue",
    "SessionQuery",
    "SignedHead",
    "Snapshot",
    "SnapshotKeyValue",
    "StorageIOError",
    "SubscriberOverflowError",
    "SystemEvent",
    "Transaction",
    "TransactionClosedError",
    "TransactionKeyValue",
    "TransferReport",
    "Unique",
    "UniqueViolationError",
    "UnsupportedPlatformError",
    "ValidationError",
    "VerifyProblem",
    "VerifyReport",
    "Violation",
    "Watch",
    "WrongEventLoopError",
    "__version__",
    "allow",
    "allow_kv",
    "asc",
    "audit",
    "auto",
    "backlink",
    "between",
    "contains",
    "desc",
    "entity",
    "errors",
    "field",
    "in_",
    "link",
    "links",
    "mask",
    "migration",
    "open",
    "validator",
]

from . import audit, errors


def _claim_public_names() -> None:
    """Everything public shows the facade as its home, as httpx does: ``quanta.Database``,
    not ``quanta._db.Database`` (in reprs, tracebacks, docs and pickles; pickle finds each
    class here). A class's string annotations are resolved in the module its ``__module__``
    names (``typing.get_type_hints``, pydantic, FastAPI), so they are resolved first, where
    they were written; ones that never resolved (TYPE_CHECKING names) are left as they are."""
    namespace = globals()
    for name in __all__:
        obj = namespace[name]
        if isinstance(obj, type):
            own = _inspect.get_annotations(obj)
            if own:
                try:
                    hints = _typing.get_type_hints(obj, include_extras=True)
                except NameError:
                    pass
                else:
                    obj.__annotations__ = {key: hints.get(key, value) for key, value in own.items()}
            obj.__module__ = "quanta"
        elif callable(obj) and hasattr(obj, "__code__"):
            obj.__module__ = "quanta"


_claim_public_names()
