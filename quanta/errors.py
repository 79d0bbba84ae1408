"""The QuantaDB error hierarchy.

Every failure a caller can meet is raised as a subclass of :class:`QuantaError`, so one
``except quanta.QuantaError`` catches them all. Bad input is rejected *before* anything is
written; the classes below say what went wrong, never how the engine happens to be built.

```
QuantaError
├── InvalidArgumentError (ValueError)   bad option, empty key, ...
│   ├── InvalidTypeError (TypeError)    a str where bytes are required, ...
│   ├── LimitExceededError              key, value or batch over the documented limits
│   ├── ValidationError                 an entity breaks its constraints or validators
│   │                                   (lists every violation)
│   ├── ImportValidationError           a JSON Lines file an import refuses (lists each bad
│   │                                   line with its number; nothing was written)
│   ├── SchemaError (TypeError)         a bad entity declaration (names class and field)
│   ├── QueryError                      an ill-typed or impossible query, raised when built
│   └── ReservedKeyError                a db.kv call inside the entity key space (b"\x00Q...")
├── CorruptionError                     a checksum or structure check failed (names file, offset)
│   └── AuditVerificationError          the audit log, a signed head or a proof fails its check
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
├── ReaderLagError                      a read-only open missed a writer's commits (its
│                                       subscriptions end; reads go on at the newer state)
├── SchemaMismatchError                 declared entity classes differ from the stored schemas
│                                       and no migration covers it (lists each difference)
├── PermissionDeniedError               a session's policy does not allow the operation
│                                       (names the entity, key and action; never a hidden key)
├── IntegrityError                      a write would break a relationship or uniqueness rule
│   └── UniqueViolationError            a put would give a unique index a duplicate value
├── StorageIOError                      an operating-system I/O call failed (errno kept)
├── UnsupportedPlatformError            Windows, or an event loop other than asyncio
├── WrongEventLoopError                 a database used from another event loop than its own
└── DatabaseFailedError                 a fatal failure stopped writes; reopen to recover
    └── BackgroundError                 ... and it happened in background flush/compaction
```

``Violation`` (one broken rule: entity, field, reason, value) is the record a
``ValidationError`` lists; it is data, not an error, so it is not in ``__all__`` here (the
``quanta`` facade exports it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

__all__ = [
    "AuditVerificationError",
    "BackgroundError",
    "ConflictError",
    "CorruptionError",
    "DatabaseClosedError",
    "DatabaseExistsError",
    "DatabaseFailedError",
    "DatabaseLockedError",
    "DatabaseNotFoundError",
    "ImportValidationError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "LimitExceededError",
    "NotADatabaseError",
    "PermissionDeniedError",
    "QuantaError",
    "ReadOnlyError",
    "ReaderLagError",
    "ReservedKeyError",
    "StorageIOError",
    "QueryError",
    "SchemaError",
    "SchemaMismatchError",
    "SubscriberOverflowError",
    "TransactionClosedError",
    "UniqueViolationError",
    "UnsupportedPlatformError",
    "ValidationError",
    "WrongEventLoopError",
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


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule of one entity object, as listed by :class:`ValidationError`.

    ``entity``: the entity's stored name; ``field``: the field (None for an entity-level,
    cross-field rule); ``reason``: what the rule asks (``must be between 0 and 150``);
    ``value``: the offending value (the element, for a rule on the elements of a collection;
    None for an entity-level rule); ``key``: the object's primary key, when it has one yet
    (None for an auto key not assigned yet). ``str()`` reads
    ``User[7].age: must be between 0 and 150 (got 200)``.

    A validator may raise ``ValidationError([Violation(field="end", reason="...")])`` to
    report several violations or to name the field of a cross-field rule; ``entity`` and
    ``key`` left empty are filled in.
    """

    entity: str = ""
    field: str | None = None
    reason: str = ""
    value: object = None
    key: object = None

    def __str__(self) -> str:
        where = self.entity if self.key is None else f"{self.entity}[{self.key!r}]"
        if self.field is not None:
            where = f"{where}.{self.field}"
        shown = "" if self.field is None else f" (got {_short_repr(self.value)})"
        return f"{where}: {self.reason}{shown}"


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ValidationError(InvalidArgumentError):
    """An entity object breaks its declared constraints (``Range``, ``Length``, ``Pattern``,
    ``OneOf``) or its validators. ``violations`` lists every one (entity, field, reason,
    value); ``str()`` shows them, one per line. Raised before anything is written: a batch
    with one invalid object writes nothing."""

    _SHOWN = 20  # violations written out in the message; all are in ``violations``

    def __init__(self, violations: Iterable[Violation], message: str | None = None) -> None:
        self.violations: list[Violation] = list(violations)
        if message is None:
            message = _violations_message(self.violations, self._SHOWN)
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), (self.violations, self.args[0]), {})


class ImportValidationError(InvalidArgumentError):
    """``db.import_jsonl`` found bad lines in the file and wrote nothing. ``problems`` lists
    ``(line, message)`` pairs (line numbers count from 1, the header; the first
    ``MAX_PROBLEMS`` problems are kept), ``count`` how many were found in all; ``str()``
    shows the first ones, one per line."""

    MAX_PROBLEMS = 1000
    _SHOWN = 20

    def __init__(
        self, problems: Iterable[tuple[int, str]], count: int | None = None, message: str | None = None
    ) -> None:
        self.problems: list[tuple[int, str]] = list(problems)
        self.count = len(self.problems) if count is None else count
        if message is None:
            head = f"the import file has {self.count} bad line(s); nothing was written:"
            lines = [head, *(f"  line {n}: {m}" for n, m in self.problems[: self._SHOWN])]
            if self.count > self._SHOWN:
                lines.append(f"  ... and {self.count - self._SHOWN} more (see .problems)")
            message = "\n".join(lines)
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), (self.problems, self.count, self.args[0]), {})


def _violations_message(violations: list[Violation], shown: int) -> str:
    if len(violations) == 1:
        return str(violations[0])
    lines = [f"{len(violations)} violations:"]
    lines += [f"  {v}" for v in violations[:shown]]
    if len(violations) > shown:
        lines.append(f"  ... and {len(violations) - shown} more")
    return "\n".join(lines)


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


class AuditVerificationError(CorruptionError):
    """The audit log failed verification (``quanta.audit``, docs/audit.md): an entry that no
    longer hashes to its leaf, a tree that does not match a signed head, a head whose
    signature is not the signing key's, or a proof that does not prove what it claims.
    ``path`` names what failed (``<audit entry 41>``, ``<audit head 1200>``, ``<inclusion
    proof>``, ...), not always a file."""

    def __init__(self, message: str, *, path: str = "<audit log>", offset: int | None = None) -> None:
        super().__init__(message, path=path, offset=offset)


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


class ReaderLagError(QuantaError):
    """A read-only open following a writer in another process missed some of its commits:
    the WAL segment holding them was flushed and removed before the reader read it (the
    reader fell a whole segment behind between two looks). The reader's subscriptions
    (``changes()``, watches, live queries) end with this error, since their changes can no
    longer be told exactly; reads go on, at the writer's newer state once the reader has
    reloaded. Subscribe again (and re-read) to go on."""


class SchemaError(InvalidArgumentError, TypeError):
    """An entity class is declared wrongly (a missing or duplicate primary key, an index on a
    field that cannot be ordered, ``auto=True`` on a non-int key, ...). Raised when the
    class is decorated; the message names the class and the field."""


class ReservedKeyError(InvalidArgumentError):
    """A ``db.kv`` or ``tx.kv`` call named a key inside the reserved entity key space (keys
    starting with ``b"\x00Q"``: entity records, indexes, the catalog). Entity data changes only
    through collections and migrations; nothing was written. ``db.kv.scan(...,
    include_reserved=True)`` shows those keys for debugging (docs/kv.md)."""


class QueryError(InvalidArgumentError):
    """A query is ill-typed or impossible (a comparison with a value of the wrong type, an
    unknown field, ``contains`` on a field that is not a collection, ...). Raised when the
    query is built, not when it runs."""


class SchemaMismatchError(QuantaError):
    """The entity classes a program declares differ from the schemas stored in the database
    in a way no automatic step applies (a type change, a rename, a removed field that holds
    data, a new required field without a default) and no migration covers it. Raised when the
    database is opened; the data is untouched. ``differences`` lists each difference (its
    ``str()`` is shown in the message)."""

    def __init__(self, message: str, *, differences: Iterable[object] = ()) -> None:
        super().__init__(message)
        self.differences: tuple[object, ...] = tuple(differences)

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args, {"differences": self.differences})


class PermissionDeniedError(QuantaError):
    """A session (``db.session(principal)``) tried something its database's policy does not
    allow (docs/access-control.md): a read of an entity or kv prefix no rule grants, a write
    or delete of a row no rule allows, a filter or sort on a masked field. ``entity``,
    ``key`` and ``action`` say which (``key`` is only ever one the caller named or may see;
    empty when the refusal is not about one row). Nothing of the write was made."""

    def __init__(self, message: str, *, entity: str = "", key: object = None, action: str = "") -> None:
        super().__init__(message)
        self.entity = entity
        self.key = key
        self.action = action

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args, {"entity": self.entity, "key": self.key, "action": self.action})


class IntegrityError(QuantaError):
    """A write would break a rule between records: a duplicate value in a unique index
    (:class:`UniqueViolationError`), a link to a record that does not exist, a delete that an
    ``on_delete="restrict"`` link forbids. Nothing of the write was made."""


class UniqueViolationError(IntegrityError):
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


class UnsupportedPlatformError(QuantaError):
    """QuantaDB cannot run here: on Windows (it needs POSIX file locks and ``fsync``
    semantics), or under an event loop other than asyncio (trio, for example). Raised by
    ``quanta.open`` before anything touches the disk; the message names what is supported:
    Linux and macOS, CPython 3.11+, asyncio (directly or through anyio's asyncio backend)."""


class WrongEventLoopError(QuantaError):
    """A database was used from an event loop other than the one that opened it (a second
    ``asyncio.run``, another thread's loop). A database belongs to the loop it was opened on:
    open it (and close it) inside the loop that uses it."""


class DatabaseFailedError(QuantaError):
    """A fatal failure (for example a failed fsync) stopped the database from accepting writes.

    The state on disk is consistent; close the database and open it again. The original
    failure is chained as ``__cause__``.
    """


class BackgroundError(DatabaseFailedError):
    """A background flush or compaction failed; the original exception is ``__cause__``."""


def _rebuild(cls: type[QuantaError], args: tuple[object, ...], kwargs: dict[str, object]) -> QuantaError:
    return cls(*args, **kwargs)
