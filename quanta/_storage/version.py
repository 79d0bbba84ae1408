"""Versions: which tables are live, at which level, and which compaction to run next.

A :class:`Version` is an immutable picture of the table files: level 0 holds tables flushed
from memtables (they may overlap; newest first), levels 1.. hold tables with disjoint key
ranges sorted by key. A new version is made by applying a ``VersionEdit`` (from the
manifest) to the current one; nothing mutates a version, so a reader holding one is never
surprised.

Compaction picking is a pure function of a version and a :class:`LevelPolicy`, as in
mini-lsm's ``generate_compaction_task``: leveled, size-ratio based.

* L0's score is ``files / l0_compaction_trigger``; level L >= 1's score is
  ``bytes / (l1_target_bytes * multiplier ** (L - 1))``.
* The level with the highest score >= 1 is compacted: for L0, every L0 table plus the
  overlapping L1 tables; for L >= 1, one table (round-robin by key, LevelDB's compact
  pointer) plus the overlapping tables of L + 1.
* Tombstones may be dropped when no deeper level overlaps the output's key range.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

from .manifest import FileMeta, VersionEdit

__all__ = ["NUM_LEVELS", "CompactionTask", "LevelPolicy", "Version", "pick_compaction"]

NUM_LEVELS = 7


@dataclass(frozen=True)
class LevelPolicy:
    l0_compaction_trigger: int = 4
    l1_target_bytes: int = 16 << 20
    level_multiplier: int = 10
    target_file_bytes: int = 4 << 20

    def max_bytes(self, level: int) -> int:
        return int(self.l1_target_bytes * self.level_multiplier ** (level - 1))


@dataclass(frozen=True)
class CompactionTask:
    level: int
    output_level: int
    inputs: tuple[FileMeta, ...]  # from `level` (for L0: newest first)
    next_inputs: tuple[FileMeta, ...]  # overlapping tables of `output_level`
    drop_tombstones: bool

    @property
    def all_inputs(self) -> tuple[FileMeta, ...]:
        return self.inputs + self.next_inputs

    @property
    def input_bytes(self) -> int:
        return sum(f.size for f in self.all_inputs)


@dataclass(frozen=True, eq=False)
class Version:
    levels: tuple[tuple[FileMeta, ...], ...] = field(default_factory=lambda: ((),) * NUM_LEVELS)

    def __post_init__(self) -> None:
        # per-level lists of largest keys, for bisecting to the one table that may hold a key
        largest = tuple([f.largest for f in files] for files in self.levels)
        object.__setattr__(self, "largest_keys", largest)
        # the non-empty levels >= 1 in order, for point reads
        deep = tuple((largest[lvl], self.levels[lvl]) for lvl in range(1, len(self.levels)) if self.levels[lvl])
        object.__setattr__(self, "deep_levels", deep)

    largest_keys: tuple[list[bytes], ...] = field(init=False, repr=False, default=())
    deep_levels: tuple[tuple[list[bytes], tuple[FileMeta, ...]], ...] = field(init=False, repr=False, default=())

    def apply(self, edit: VersionEdit) -> Version:
        """Return the version ``edit`` makes of this one."""
        levels = [list(files) for files in self.levels]
        deleted = {(level, number) for level, number in edit.deleted}
        if deleted:
            levels = [[f for f in files if (lvl, f.number) not in deleted] for lvl, files in enumerate(levels)]
        for level, meta in edit.added:
            levels[level].append(meta)
        # L0: newest first (a higher max_seq is newer; file numbers break ties)
        levels[0].sort(key=lambda f: (f.max_seq, f.number), reverse=True)
        for files in levels[1:]:
            files.sort(key=lambda f: f.smallest)
        return Version(tuple(tuple(files) for files in levels))

    def files(self) -> Iterable[tuple[int, FileMeta]]:
        for level, files in enumerate(self.levels):
            for f in files:
                yield level, f

    def live_numbers(self) -> set[int]:
        return {f.number for _, f in self.files()}

    def level_bytes(self, level: int) -> int:
        return sum(f.size for f in self.levels[level])

    def overlapping(self, level: int, smallest: bytes, largest: bytes) -> list[FileMeta]:
        """Tables of ``level`` whose key range meets ``[smallest, largest]``."""
        files = self.levels[level]
        if level == 0:
            return [f for f in files if f.largest >= smallest and f.smallest <= largest]
        i = bisect_left(self.largest_keys[level], smallest)
        out = []
        for f in files[i:]:
            if f.smallest > largest:
                break
            out.append(f)
        return out

    def find_in_level(self, level: int, key: bytes) -> FileMeta | None:
        """The one table of a level >= 1 whose range contains ``key``, if any."""
        i = bisect_left(self.largest_keys[level], key)
        files = self.levels[level]
        if i < len(files) and files[i].smallest <= key:
            return files[i]
        return None

    def to_edit(self) -> VersionEdit:
        """A full description of this version, the first record of a new manifest."""
        return VersionEdit(added=[(level, f) for level, f in self.files()])

    def check_invariants(self) -> None:
        """Raise AssertionError if levels >= 1 overlap or are unsorted (tests and debug runs)."""
        for level in range(1, NUM_LEVELS):
            files = self.levels[level]
            for a, b in itertools.pairwise(files):
                assert a.largest < b.smallest, f"L{level} tables {a.number} and {b.number} overlap"
            for f in files:
                assert f.smallest <= f.largest


def _key_range(files: Iterable[FileMeta]) -> tuple[bytes, bytes]:
    fs = list(files)
    return min(f.smallest for f in fs), max(f.largest for f in fs)


def pick_compaction(
    version: Version, policy: LevelPolicy, compact_pointer: dict[int, bytes] | None = None
) -> CompactionTask | None:
    """The most urgent compaction for ``version``, or None when every level is within bounds.

    ``compact_pointer`` maps a level to the largest key of its last compacted table, so
    levels >= 1 are compacted round-robin across their key space.
    """
    best_level, best_score = -1, 1.0
    for level in range(NUM_LEVELS - 1):
        if level == 0:
            score = len(version.levels[0]) / policy.l0_compaction_trigger
        else:
            score = version.level_bytes(level) / policy.max_bytes(level)
        if score >= best_score:
            best_level, best_score = level, score
    if best_level < 0:
        return None
    return compaction_for_level(version, best_level, compact_pointer)


def compaction_for_level(
    version: Version, level: int, compact_pointer: dict[int, bytes] | None = None
) -> CompactionTask | None:
    files = version.levels[level]
    if not files:
        return None
    if level == 0:
        inputs: tuple[FileMeta, ...] = files
    else:
        pointer = (compact_pointer or {}).get(level)
        i = 0 if pointer is None else bisect_right(version.largest_keys[level], pointer)
        inputs = (files[i % len(files)],)
    smallest, largest = _key_range(inputs)
    output_level = level + 1
    next_inputs = tuple(version.overlapping(output_level, smallest, largest))
    if next_inputs:
        smallest, largest = _key_range(inputs + next_inputs)
    deeper = any(version.overlapping(lvl, smallest, largest) for lvl in range(output_level + 1, NUM_LEVELS))
    return CompactionTask(level, output_level, inputs, next_inputs, drop_tombstones=not deeper)
