"""Options of :func:`quanta.open`, validated before anything is touched on disk."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict

from ._storage.vfs import FileSystem
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["MAX_BATCH_BYTES", "MAX_KEY_BYTES", "MAX_VALUE_BYTES", "OpenOptions", "Options", "resolve_options"]

#: Largest key, in bytes. Keys are compared and stored whole in index blocks; long keys are a
#: modelling mistake better caught early.
MAX_KEY_BYTES = 16 * 1024
#: Largest value, in bytes.
MAX_VALUE_BYTES = 16 * 1024 * 1024
#: Largest batch (sum of key and value bytes); a batch is one WAL record and lives in memory.
MAX_BATCH_BYTES = 256 * 1024 * 1024

Durability = Literal["sync", "os"]
WalRecovery = Literal["strict", "salvage"]
CompactionExecutor = Literal["auto", "process", "loop"]


@dataclass(frozen=True)
class Options:
    """Every tunable of a database. See docs/options.md for guidance on each."""

    durability: Durability = "sync"
    memtable_bytes: int = 16 << 20
    max_immutable_memtables: int = 2
    block_size: int = 4096
    block_cache_bytes: int = 64 << 20
    #: bits per key of each level's bloom filter: L0 gets the first, L1 the second, deeper
    #: levels the last (an int sets every level). 0 disables the filter.
    bloom_bits_per_key: tuple[int, ...] = (32, 16, 8)
    read_only: bool = False
    create_if_missing: bool = True
    error_if_exists: bool = False
    #: "strict": a damaged record in the middle of a WAL is a CorruptionError. "salvage":
    #: skip damaged records and keep what is intact (data in them is lost: use for recovery).
    wal_recovery: WalRecovery = "strict"
    l0_compaction_trigger: int = 4
    l0_stop_writes_trigger: int = 12
    l1_target_bytes: int = 16 << 20
    level_multiplier: int = 10
    target_file_bytes: int = 4 << 20
    #: where compaction merges run: "process" (a worker process; real files only),
    #: "loop" (on the event loop in short slices). "auto" picks process for real files.
    compaction_executor: CompactionExecutor = "auto"
    #: seconds a writable open waits for another writer to release the directory (polling
    #: with backoff, as sqlite's busy_timeout); 0 fails at once with DatabaseLockedError.
    lock_timeout: float = 0.0
    #: seconds between a read-only open's looks at the writer's MANIFEST and WAL (it
    #: follows the writer's commits); 0 stops following (the state as of the open).
    follow_interval: float = 0.05
    fs: FileSystem | None = None

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], base: Options | None = None) -> Options:
        """Validated options: ``base`` (default: the defaults) with the fields in ``kwargs``
        replaced. Unknown names raise InvalidArgumentError, bad values InvalidTypeError or
        InvalidArgumentError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        opts = cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)
        bpk: object = opts.bloom_bits_per_key
        if isinstance(bpk, int) and not isinstance(bpk, bool):
            opts = dataclasses.replace(opts, bloom_bits_per_key=(bpk,))
        elif isinstance(bpk, list):
            opts = dataclasses.replace(opts, bloom_bits_per_key=tuple(bpk))
        opts.validate()
        return opts

    def validate(self) -> None:
        _choice("durability", self.durability, ("sync", "os"))
        _choice("wal_recovery", self.wal_recovery, ("strict", "salvage"))
        _choice("compaction_executor", self.compaction_executor, ("auto", "process", "loop"))
        for name in ("read_only", "create_if_missing", "error_if_exists"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidTypeError(f"option {name} must be a bool, got {type(getattr(self, name)).__name__}")
        _int("memtable_bytes", self.memtable_bytes, 4096, 1 << 34)
        _int("max_immutable_memtables", self.max_immutable_memtables, 1, 64)
        _int("block_size", self.block_size, 256, 1 << 20)
        _int("block_cache_bytes", self.block_cache_bytes, 0, 1 << 40)
        _int("l0_compaction_trigger", self.l0_compaction_trigger, 2, 1000)
        _int("l0_stop_writes_trigger", self.l0_stop_writes_trigger, self.l0_compaction_trigger, 10000)
        _int("l1_target_bytes", self.l1_target_bytes, 4096, 1 << 40)
        _int("level_multiplier", self.level_multiplier, 2, 1000)
        _int("target_file_bytes", self.target_file_bytes, 4096, 1 << 34)
        if not isinstance(self.bloom_bits_per_key, tuple) or not self.bloom_bits_per_key:
            raise InvalidTypeError("option bloom_bits_per_key must be an int or a non-empty sequence of ints")
        for bits in self.bloom_bits_per_key:
            _int("bloom_bits_per_key", bits, 0, 64)
        if self.fs is not None and not all(
            callable(getattr(self.fs, name, None)) for name in ("create", "open_read", "rename", "listdir", "lock")
        ):
            raise InvalidTypeError(
                f"option fs must be a quanta file system (OSFileSystem, MemoryFileSystem), got {type(self.fs).__name__}"
            )
        _seconds("lock_timeout", self.lock_timeout, 86400.0)
        _seconds("follow_interval", self.follow_interval, 3600.0)
        if self.read_only and self.error_if_exists:
            raise InvalidArgumentError("read_only=True and error_if_exists=True cannot both hold")

    def bits_for_level(self, level: int) -> int:
        tiers = self.bloom_bits_per_key
        return tiers[min(level, len(tiers) - 1)]


class OpenOptions(TypedDict, total=False):
    """The keyword options of :func:`quanta.open`, for type checkers: one key per field of
    :class:`quanta.Options` (a test keeps them in step), so ``quanta.open(p, durabilty="sync")``
    is a type error. ``bloom_bits_per_key`` also takes one int or a list."""

    durability: Durability
    memtable_bytes: int
    max_immutable_memtables: int
    block_size: int
    block_cache_bytes: int
    bloom_bits_per_key: int | tuple[int, ...] | list[int]
    read_only: bool
    create_if_missing: bool
    error_if_exists: bool
    wal_recovery: WalRecovery
    l0_compaction_trigger: int
    l0_stop_writes_trigger: int
    l1_target_bytes: int
    level_multiplier: int
    target_file_bytes: int
    compaction_executor: CompactionExecutor
    lock_timeout: float
    follow_interval: float
    fs: FileSystem | None


def resolve_options(options: Options | None, kwargs: Mapping[str, Any]) -> Options:
    """The options of one ``open``: ``options`` (an :class:`Options`, default the defaults)
    with every keyword option given replacing its field, validated."""
    if options is not None and not isinstance(options, Options):
        raise InvalidTypeError(f"options must be a quanta.Options, got {type(options).__name__}")
    return Options.from_kwargs(kwargs, options)


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidArgumentError(f"option {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _int(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidTypeError(f"option {name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"option {name} must be between {lo} and {hi}, got {value}")


def _seconds(name: str, value: object, hi: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidTypeError(f"option {name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= hi:  # NaN fails this too
        raise InvalidArgumentError(f"option {name} must be between 0 and {hi:g} seconds, got {value}")
