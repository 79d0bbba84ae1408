"""The block cache: decoded SSTable blocks, least recently used first out, bounded in bytes.

Concurrency: not thread-safe. The cache is used from the event-loop thread only; a background
worker (compaction in a thread or process) opens its table readers with ``cache=None``.

Invariants, true between calls:

* ``bytes`` is the sum of the charges of the cached items and never exceeds ``capacity_bytes``.
* ``_lru`` and ``_files`` hold exactly the same keys: ``_lru`` in recency order (least recently
  used first), ``_files`` grouped by file number (so :meth:`BlockCache.evict_file` does not scan
  the whole cache) and remembering each item's charge.

A key is ``(file_number, block_index)``. File numbers are never reused (one counter for all
files), so a cached block can never be mistaken for a block of a newer table; ``evict_file``
only gives the memory back early.

The charge of a block is what the caller says (the table reader charges the block's size on
disk). A decoded block takes more memory than that, about 2-3x for small entries, because of
Python object headers; size the capacity with that in mind.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["BlockCache", "CacheStats"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of the cache counters."""

    hits: int
    misses: int
    bytes: int
    entries: int


class BlockCache:
    """An LRU cache of decoded blocks whose charges sum to at most ``capacity_bytes``.

    ``capacity_bytes == 0`` disables caching: ``get`` always misses and ``put`` keeps nothing.
    """

    __slots__ = ("_files", "_lru", "bytes", "capacity_bytes", "hits", "misses")

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, not {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._lru: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._files: dict[int, dict[int, int]] = {}  # file_number -> {block_index: charge}

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key: tuple[int, int]) -> bool:
        """Whether ``key`` is cached (does not count as a use, nor as a hit or miss)."""
        return key in self._lru

    def get(self, key: tuple[int, int]) -> object | None:
        """The cached value of ``key`` (now the most recently used), or ``None``."""
        # On every warm read: one dict probe and one C call on a hit, nothing else.
        try:
            value = self._lru[key]
        except KeyError:
            self.misses += 1
            return None
        self._lru.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: tuple[int, int], value: object, charge: int) -> None:
        """Cache ``value`` under ``key`` as the most recently used item, evicting as needed.

        An item whose charge exceeds the whole capacity is not cached (and evicts nothing).
        Replacing an existing key replaces its value and charge.
        Requires: ``charge >= 0``.
        """
        if charge > self.capacity_bytes or not self.capacity_bytes:
            self._discard(key)
            return
        lru = self._lru
        file_number, block_index = key
        blocks = self._files.get(file_number)
        if blocks is None:
            blocks = self._files[file_number] = {}
        old = blocks.get(block_index)
        if old is not None:
            self.bytes -= old
        blocks[block_index] = charge
        lru[key] = value
        lru.move_to_end(key)
        self.bytes += charge
        while self.bytes > self.capacity_bytes:
            (victim_file, victim_block), _ = lru.popitem(last=False)
            self._forget(victim_file, victim_block)

    def evict_file(self, file_number: int) -> None:
        """Drop every cached block of ``file_number`` (its table was deleted)."""
        blocks = self._files.pop(file_number, None)
        if blocks is None:
            return
        lru = self._lru
        for block_index, charge in blocks.items():
            del lru[file_number, block_index]
            self.bytes -= charge

    def clear(self) -> None:
        """Drop everything (the counters are kept)."""
        self._lru.clear()
        self._files.clear()
        self.bytes = 0

    @property
    def stats(self) -> CacheStats:
        return CacheStats(hits=self.hits, misses=self.misses, bytes=self.bytes, entries=len(self._lru))

    def _discard(self, key: tuple[int, int]) -> None:
        if key in self._lru:
            del self._lru[key]
            self._forget(*key)

    def _forget(self, file_number: int, block_index: int) -> None:
        blocks = self._files[file_number]
        self.bytes -= blocks.pop(block_index)
        if not blocks:
            del self._files[file_number]
