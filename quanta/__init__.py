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

from ._db import Batch, Database, KeyValue, Snapshot, open
from ._options import MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options
from .errors import (
    BackgroundError,
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
)

__version__ = "0.1.0"

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "BackgroundError",
    "Batch",
    "CorruptionError",
    "Database",
    "DatabaseClosedError",
    "DatabaseExistsError",
    "DatabaseFailedError",
    "DatabaseLockedError",
    "DatabaseNotFoundError",
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
    "__version__",
    "errors",
    "open",
]

from . import errors
