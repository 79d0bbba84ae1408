"""Optimistic concurrency control: which keys were written since a transaction began.

A transaction runs on a snapshot (sequence number ``start``) and buffers its writes. When it
commits, :meth:`ConflictTracker.check` runs under the engine's write lock, just before the
commit is appended: the commit is refused with ``ConflictError`` if any batch appended after
``start`` wrote a key the transaction read (point reads), wrote, or that falls in a range it
scanned. Committed transactions are therefore serializable in commit order: everything a
transaction read was still current at the moment it committed. (This is backward validation
as in Kung & Robinson's OCC, and what Badger calls its oracle; plain snapshot isolation
would only check writes.)

State, kept only while some transaction is open (no transaction: no cost on the commit path):

* ``_last_write`` -- key -> seq of the newest batch that wrote it (point checks: one dict probe);
* ``_seqs``/``_batches`` -- the keys of every batch appended while tracking, in seq order
  (range checks walk the batches after ``start`` -- the writes a scan could have missed).

Entries at or below the oldest open transaction's ``start`` can never cause a conflict and are
pruned when that transaction ends. Memory bound: at most ``max_keys`` tracked key writes; past
it the oldest open transactions are *expired* (their commit fails with ConflictError, their
reads stay valid) until the tracker fits. A read-only transaction never commits anything, so
expiry cannot hurt it.

Concurrency rules: event-loop thread only; every method is synchronous.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from ..errors import ConflictError

__all__ = ["MAX_TRACKED_KEYS", "ConflictTracker", "TxState"]

MAX_TRACKED_KEYS = 1_000_000
"""Key writes remembered for open transactions before the oldest ones expire."""


class TxState:
    """What the tracker needs of one open transaction."""

    __slots__ = ("expired", "ranges", "reads", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.reads: set[bytes] = set()
        self.ranges: list[tuple[bytes, bytes | None]] = []  # [lo, hi); hi None: unbounded
        self.expired = False


class ConflictTracker:
    def __init__(self, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.max_keys = max_keys
        self._open: dict[TxState, None] = {}  # in begin order: the first is the oldest
        self._last_write: dict[bytes, int] = {}
        self._seqs: list[int] = []
        self._batches: list[list[bytes]] = []
        self._head = 0  # _seqs[:_head] are pruned
        self._tracked = 0

    @property
    def active(self) -> bool:
        return bool(self._open)

    @property
    def tracked_keys(self) -> int:
        return self._tracked

    def begin(self, start: int, inflight: Iterable[tuple[int, list[bytes]]] = ()) -> TxState:
        """Register a transaction reading at ``start``. ``inflight``: batches appended but not
        yet visible (seq > start), which must count as written after it began; only needed
        when tracking was off until now."""
        tx = TxState(start)
        replay = not self._open
        self._open[tx] = None  # first: record() ignores batches while no transaction is open
        if replay:
            for seq, keys in inflight:
                self.record(seq, keys)
        return tx

    def end(self, tx: TxState) -> None:
        """Forget ``tx`` (committed, rolled back or expired) and prune what nobody needs."""
        self._open.pop(tx, None)
        self._prune()

    def record(self, seq: int, keys: list[bytes]) -> None:
        """A batch was appended (the engine's append hook, in seq order)."""
        if not self._open:
            return  # the last open transaction expired: nothing to protect
        self._seqs.append(seq)
        self._batches.append(keys)
        self._last_write.update(dict.fromkeys(keys, seq))
        self._tracked += len(keys)
        if self._tracked > self.max_keys:
            self._expire_oldest()

    def check(self, tx: TxState, writes: Iterable[bytes]) -> None:
        """Raise ConflictError if a batch appended after ``tx.start`` touched what ``tx``
        read, wrote or scanned. Requires: called under the write lock, before appending."""
        if tx.expired:
            raise ConflictError(
                f"the transaction stayed open while more than {self.max_keys} keys were written and "
                "expired; keep transactions short, or split the work"
            )
        start = tx.start
        last = self._last_write
        if last:
            get = last.get
            for keys, what in ((tx.reads, "read"), (writes, "wrote")):
                for key in keys:
                    if get(key, 0) > start:
                        raise ConflictError(
                            f"key {key!r:.80} that this transaction {what} was written by another commit "
                            "since it began",
                            key=key,
                        )
        if tx.ranges:
            self._check_ranges(tx)

    def _check_ranges(self, tx: TxState) -> None:
        los, his = _merge(tx.ranges)
        first = bisect_right(self._seqs, tx.start, self._head)
        for keys in self._batches[first:]:
            for key in keys:
                i = bisect_right(los, key) - 1
                if i >= 0 and (his[i] is None or key < his[i]):  # type: ignore[operator]
                    raise ConflictError(
                        f"another commit wrote key {key!r:.80} into a range this transaction scanned, since it began",
                        key=key,
                    )

    def _prune(self) -> None:
        if not self._open:
            self._last_write.clear()
            self._seqs.clear()
            self._batches.clear()
            self._head = 0
            self._tracked = 0
            return
        oldest = min(tx.start for tx in self._open)
        stop = bisect_right(self._seqs, oldest, self._head)
        last = self._last_write
        for i in range(self._head, stop):
            seq = self._seqs[i]
            keys = self._batches[i]
            self._tracked -= len(keys)
            for key in keys:
                if last.get(key) == seq:
                    del last[key]
        self._head = stop
        if self._head > 1024 and self._head * 2 > len(self._seqs):
            del self._seqs[: self._head]
            del self._batches[: self._head]
            self._head = 0

    def _expire_oldest(self) -> None:
        while self._open and self._tracked > self.max_keys:
            oldest = min(self._open, key=lambda tx: tx.start)
            oldest.expired = True
            del self._open[oldest]
            self._prune()


def _merge(ranges: list[tuple[bytes, bytes | None]]) -> tuple[list[bytes], list[bytes | None]]:
    """Sorted, disjoint ``[lo, hi)`` ranges covering the same keys as ``ranges``."""
    los: list[bytes] = []
    his: list[bytes | None] = []
    for lo, hi in sorted(ranges, key=lambda r: r[0]):
        if his and (his[-1] is None or lo <= his[-1]):  # overlaps or touches the previous one
            prev = his[-1]
            his[-1] = None if prev is None or hi is None else max(prev, hi)
        else:
            los.append(lo)
            his.append(hi)
    return los, his
