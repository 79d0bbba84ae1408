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

from ._collection import Collection, Query
from ._db import Database, open
from ._kv import Batch, KeyValue, Snapshot
from ._options import MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options
from ._query import asc, between, contains, desc, in_
from ._reactive import Change, ChangeSet, Feed, Stream
from ._schema import Index, PrimaryKey, Unique, entity, field
from ._storage import SystemEvent
from ._txn import MAX_TX_KEYS, MAX_TX_RANGES, Transaction, TransactionKeyValue
from .errors import (
    BackgroundError,
    ConflictError,
    CorruptionError,
    DatabaseClosedError,
    DatabaseExistsError,
    DatabaseFailedError,
    DatabaseLockedError,
    DatabaseNotFoundError,
    InvalidArgumentError,
    InvalidTypeError,
    LimitExceededError,
    NotADatabaseError,
    QuantaError,
    QueryError,
    ReadOnlyError,
    SchemaError,
    StorageIOError,
    SubscriberOverflowError,
    TransactionClosedError,
    UniqueViolationError,
)

__version__ = "0.1.0"

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_KEY_BYTES",
    "MAX_TX_KEYS",
    "MAX_TX_RANGES",
    "MAX_VALUE_BYTES",
    "BackgroundError",
    "Batch",
    "Change",
    "ChangeSet",
    "Collection",
    "ConflictError",
    "CorruptionError",
    "Database",
    "DatabaseClosedError",
    "DatabaseExistsError",
    "DatabaseFailedError",
    "DatabaseLockedError",
    "DatabaseNotFoundError",
    "Feed",
    "Index",
    "InvalidArgumentError",
    "InvalidTypeError",
    "KeyValue",
    "LimitExceededError",
    "NotADatabaseError",
    "Options",
    "PrimaryKey",
    "QuantaError",
    "Query",
    "QueryError",
    "ReadOnlyError",
    "SchemaError",
    "Snapshot",
    "StorageIOError",
    "Stream",
    "SubscriberOverflowError",
    "SystemEvent",
    "Transaction",
    "TransactionClosedError",
    "TransactionKeyValue",
    "Unique",
    "UniqueViolationError",
    "__version__",
    "asc",
    "between",
    "contains",
    "desc",
    "entity",
    "errors",
    "field",
    "in_",
    "open",
]

from . import errors
