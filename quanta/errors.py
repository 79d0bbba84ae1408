"""The QuantaDB error hierarchy.

Every failure a caller can meet is raised as a subclass of :class:`QuantaError`, so one
``except quanta.QuantaError`` catches them all. Bad input is rejected *before* anything is
written; the classes below say what went wrong, never how the engine happens to be built.

```
QuantaError
├── InvalidArgumentError (ValueError)   bad option, empty key, ...
│   ├── InvalidTypeError (TypeError)    a str where bytes are required, ...
│   └── LimitExceededError              key, value or batch over the documented limits
├── CorruptionError                     a checksum or structure check failed (names file, offset)
├── DatabaseLockedError                 another process or open() holds the directory
├── DatabaseClosedError                 the database was closed
├── DatabaseNotFoundError               no database and create_if_missing=False
├── DatabaseExistsError                 a database exists and error_if_exists=True
├── NotADatabaseError                   the directory holds something that is not QuantaDB
├── ReadOnlyError                       a write on a database opened read_only=True
│                                       (or in a read-only transaction)
├── ConflictError                       a transaction lost to a concurrent commit; retry it
├── TransactionClosedError              a transaction used after it committed or rolled back
├── SubscriberOverflowError             a subscriber fell too far behind the change bus
├── SchemaError (TypeError)             a bad entity declaration (names class and field)
├── QueryError (ValueError)             an ill-typed or impossible query, raised when built
├── UniqueViolationError                a put would give a unique index a duplicate value
├── StorageIOError                      an operating-system I/O call failed (errno kept)
└── DatabaseFailedError                 a fatal failure stopped writes; reopen to recover
    └── BackgroundError                 ... and it happened in background flush/compaction
```
"""

from __future__ import annotations

__all__ = [
    "BackgroundError",
    "ConflictError",
    "CorruptionError",
    "DatabaseClosedError",
    "DatabaseExistsError",
    "DatabaseFailedError",
    "DatabaseLockedError",
    "DatabaseNotFoundError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "LimitExceededError",
    "NotADatabaseError",
    "QuantaError",
    "ReadOnlyError",
    "StorageIOError",
    "QueryError",
    "SchemaError",
    "SubscriberOverflowError",
    "TransactionClosedError",
    "UniqueViolationError",
]


class QuantaError(Exception):
    """Base class of every error QuantaDB raises on purpose."""


class InvalidArgumentError(QuantaError, ValueError):
    """An argument or option has a valid type but an invalid value."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """An argument has the wrong type (for example ``str`` where ``bytes`` is required)."""


class LimitExceededError(InvalidArgumentError):
    """A key, value or batch is larger than the documented limits.

    The limits are ``quanta.MAX_KEY_BYTES``, ``MAX_VALUE_BYTES`` and ``MAX_BATCH_BYTES``.
    """


class CorruptionError(QuantaError):
    """Stored data failed a checksum or a structural check.

    ``path`` names the damaged file and ``offset`` the byte offset of the damaged record,
    block or field (``None`` when the damage is not tied to one offset).
    """

    def __init__(self, message: str, *, path: str, offset: int | None = None) -> None:
        where = path if offset is None else f"{path} at offset {offset}"
        super().__init__(f"{message} ({where})")
        self.path = path
        self.offset = offset
        self._message = message

    def __reduce__(self) -> tuple[object, ...]:  # survives pickling (errors cross from worker processes)
        return _rebuild, (type(self), (self._message,), {"path": self.path, "offset": self.offset})


class DatabaseLockedError(QuantaError):
    """The database directory is already open for writing (in this or another process)."""


class DatabaseClosedError(QuantaError):
    """The operation was attempted on a closed database (or a snapshot of one)."""


class DatabaseNotFoundError(QuantaError):
    """No database exists at the path and ``create_if_missing=False`` was given."""


class DatabaseExistsError(QuantaError):
    """A database already exists at the path and ``error_if_exists=True`` was given."""


class NotADatabaseError(QuantaError):
    """The path exists but does not hold a QuantaDB database."""


class ReadOnlyError(QuantaError):
    """A write was attempted on a database opened with ``read_only=True``."""


class ConflictError(QuantaError):
    """A transaction could not commit: since it began, another commit wrote a key it read
    or wrote (``key``), or into a range it scanned. Nothing of the transaction was written;
    run it again (``db.run_transaction`` does so for you)."""

    def __init__(self, message: str, *, key: bytes | None = None) -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args, {"key": self.key})


class TransactionClosedError(QuantaError):
    """A transaction was used after it committed or rolled back."""


class SubscriberOverflowError(QuantaError):
    """A change-bus subscriber fell too far behind and was unsubscribed.

    It received every change set up to and including seq ``last_seq`` (None if its buffer
    was empty), and nothing after. Re-read the state and subscribe again, or subscribe with a
    larger ``buffer``.
    """

    def __init__(self, message: str, *, last_seq: int | None = None) -> None:
        super().__init__(message)
        self.last_seq = last_seq

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args, {"last_seq": self.last_seq})


class SchemaError(QuantaError, TypeError):
    """An entity class is declared wrongly (a missing or duplicate primary key, an index on a
    field that cannot be ordered, ``auto=True`` on a non-int key, ...). Raised when the
    class is decorated; the message names the class and the field."""


class QueryError(QuantaError, ValueError):
    """A query is ill-typed or impossible (a comparison with a value of the wrong type, an
    unknown field, ``contains`` on a field that is not a collection, ...). Raised when the
    query is built, not when it runs."""


class UniqueViolationError(QuantaError):
    """A write would give a unique index two records with the same value. Nothing of the
    write was made. ``entity``, ``index`` and ``value`` say which."""

    def __init__(self, message: str, *, entity: str = "", index: str = "", value: object = None) -> None:
        super().__init__(message)
        self.entity = entity
        self.index = index
        self.value = value

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args, {"entity": self.entity, "index": self.index, "value": self.value})


class StorageIOError(QuantaError):
    """An operating-system I/O call failed; ``errno`` and ``path`` say which and where."""

    def __init__(self, message: str, *, errno: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args, {"errno": self.errno, "path": self.path})


class DatabaseFailedError(QuantaError):
    """A fatal failure (for example a failed fsync) stopped the database from accepting writes.

    The state on disk is consistent; close the database and open it again. The original
    failure is chained as ``__cause__``.
    """


class BackgroundError(DatabaseFailedError):
    """A background flush or compaction failed; the original exception is ``__cause__``."""


def _rebuild(cls: type[QuantaError], args: tuple[object, ...], kwargs: dict[str, object]) -> QuantaError:
    return cls(*args, **kwargs)
