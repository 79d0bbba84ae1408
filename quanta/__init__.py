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

from ._db import Database, open
from ._kv import Batch, KeyValue, Snapshot
from ._options import MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options
from ._reactive import Change, ChangeSet, Feed, Stream
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
    ReadOnlyError,
    StorageIOError,
    SubscriberOverflowError,
    TransactionClosedError,
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
    "ConflictError",
    "CorruptionError",
    "Database",
    "DatabaseClosedError",
    "DatabaseExistsError",
    "DatabaseFailedError",
    "DatabaseLockedError",
    "DatabaseNotFoundError",
    "Feed",
    "InvalidArgumentError",
    "InvalidTypeError",
    "KeyValue",
    "LimitExceededError",
    "NotADatabaseError",
    "Options",
    "QuantaError",
    "ReadOnlyError",
    "Snapshot",
    "StorageIOError",
    "Stream",
    "SubscriberOverflowError",
    "SystemEvent",
    "Transaction",
    "TransactionClosedError",
    "TransactionKeyValue",
    "__version__",
    "errors",
    "open",
]

from . import errors
