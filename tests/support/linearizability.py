"""A linearizability checker for key-value histories: Wing & Gong's search with Lowe's memoization.

A *history* is what concurrent clients observed: for every operation, the logical time it was
invoked, the time its response arrived, and the result it returned. The history is
*linearizable* (Herlihy & Wing) when the operations can be put in one total order such that

* the order respects real time: if A responded before B was invoked, A comes first, and
* replaying that order on a sequential model returns, for every operation, the result that
  operation observed.

The model here is the simplest correct key-value store: a ``dict`` of ``bytes``. Every action
of QuantaDB's API is one atomic step of it: ``get``, ``get_many``, ``put``, ``delete``,
``put_many`` and ``batch`` (atomic multi-key writes), ``scan`` (one atomic state, honouring
``start``/``stop``/``prefix``/``reverse``/``limit``), and transactions (:class:`Txn`): a committed
transaction reads and writes atomically at one point; a transaction that failed with
``ConflictError`` writes nothing, and its reads still show one state (QuantaDB transactions
read a snapshot taken when they began).

**Unknown outcomes.** An operation whose caller never saw the outcome (cancelled, timed out) is
``pending``: it may have taken effect, atomically, at any point after its invocation, or never.
``ret`` of a pending operation is ``None`` (no limit) or a deadline by which it was settled (a
``close()`` settles every commit in flight). ``result`` of a pending operation is
:data:`UNKNOWN`, except for a transaction cancelled while committing: its reads were observed,
so *if* it took effect they must match.

**The search** (Wing & Gong 1993, as in Knossos and Porcupine). Operations are indexed in
invocation order. A search node is the set of operations linearized so far and the model state
they lead to. An operation may come next iff it was invoked before the earliest response among
the operations not yet linearized (otherwise that one must come first); the search tries each
such candidate whose model result matches the observed one, depth first, and backtracks. Lowe's
memoization (2017) makes it practical: a node ``(linearized set, state)`` reached a second time
along another path has the same future, so it is explored once. The history is linearizable
iff some path linearizes every operation that is not pending. Pending operations are tried
last (they are needed only to explain what someone observed), and one is dropped ("never
happened") only when its deadline is the earliest one left: dropping changes no state, so
dropping it later is never worse.

**Failures** come with a diagnosis: the *shortest failing prefix* (cut the history at time t:
operations invoked after t are left out, operations still running at t become pending with an
unknown result; the shortest such cut that is not linearizable, found by bisection, as cutting
later can only add constraints), and a *minimal* history inside that prefix: the reads it does
not need are removed one by one (removing a read never makes a linearizable history
non-linearizable, as reads change no state, so what remains is still a genuine contradiction
among things the clients saw; writes stay, since removing one could invent a contradiction).

This module is plain synchronous code over values; ``tests/kv/test_linearizability.py`` tests it
on hand-written histories and then uses it on concurrent histories of real databases.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "UNKNOWN",
    "Action",
    "Batch",
    "Delete",
    "Get",
    "GetMany",
    "Op",
    "Put",
    "PutMany",
    "Scan",
    "SearchBudgetExceeded",
    "Txn",
    "Verdict",
    "check",
    "format_history",
]

State = tuple[tuple[bytes, bytes], ...]
"""A model state: the dict's items, sorted by key (hashable, so the memo can hold it)."""


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "?"


UNKNOWN: Any = _Unknown()
"""The result of an operation whose response was never seen: it is not compared."""


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return repr(value)[1:]  # b'a0' -> 'a0': shorter, still unambiguous in a listing
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_show, value)) + "]"
    return repr(value)


def _pairs(pairs: object) -> str:
    if not isinstance(pairs, tuple):
        return _show(pairs)
    if len(pairs) > 8 and len({v for _, v in pairs}) == 1:  # a wide write of one value
        return f"[{_show(pairs[0][0])}..{_show(pairs[-1][0])} ({len(pairs)} keys)={_show(pairs[0][1])}]"
    return "[" + ", ".join(f"{_show(k)}={'DEL' if v is None else _show(v)}" for k, v in pairs) + "]"


# ---------------------------------------------------------------------- the model's actions


@dataclass(frozen=True)
class Get:
    key: bytes
    writes = False

    def run(self, state: dict[bytes, bytes]) -> bytes | None:
        return state.get(self.key)

    def __str__(self) -> str:
        return f"get({_show(self.key)})"


@dataclass(frozen=True)
class GetMany:
    keys: tuple[bytes, ...]
    writes = False

    def run(self, state: dict[bytes, bytes]) -> tuple[bytes | None, ...]:
        return tuple(state.get(k) for k in self.keys)

    def __str__(self) -> str:
        return f"get_many({_show(self.keys)})"


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes
    writes = True

    def run(self, state: dict[bytes, bytes]) -> None:
        state[self.key] = self.value

    def __str__(self) -> str:
        return f"put({_show(self.key)}, {_show(self.value)})"


@dataclass(frozen=True)
class Delete:
    key: bytes
    writes = True

    def run(self, state: dict[bytes, bytes]) -> None:
        state.pop(self.key, None)

    def __str__(self) -> str:
        return f"delete({_show(self.key)})"


@dataclass(frozen=True)
class PutMany:
    """``put_many(pairs)``: every pair or none; a repeated key's last pair wins."""

    pairs: tuple[tuple[bytes, bytes], ...]
    writes = True

    def run(self, state: dict[bytes, bytes]) -> None:
        state.update(self.pairs)

    def __str__(self) -> str:
        return f"put_many({_pairs(self.pairs)})"


@dataclass(frozen=True)
class Batch:
    """A committed ``db.kv.batch()``: ``(key, value)`` puts and ``(key, None)`` deletes, in order."""

    ops: tuple[tuple[bytes, bytes | None], ...]
    writes = True

    def run(self, state: dict[bytes, bytes]) -> None:
        for key, value in self.ops:
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value

    def __str__(self) -> str:
        return f"batch({_pairs(self.ops)})"


@dataclass(frozen=True)
class Scan:
    """``scan(start, stop, prefix=, reverse=, limit=)``: the pairs with ``start <= key < stop``
    that start with ``prefix``, in key order (descending when ``reverse``), at most ``limit``.
    Written from the documentation, not from QuantaDB's own range arithmetic."""

    start: bytes | None = None
    stop: bytes | None = None
    prefix: bytes | None = None
    reverse: bool = False
    limit: int | None = None
    writes = False

    def run(self, state: dict[bytes, bytes]) -> tuple[tuple[bytes, bytes], ...]:
        keys = sorted(
            k
            for k in state
            if (self.start is None or k >= self.start)
            and (self.stop is None or k < self.stop)
            and (self.prefix is None or k.startswith(self.prefix))
        )
        if self.reverse:
            keys.reverse()
        if self.limit is not None:
            keys = keys[: self.limit]
        return tuple((k, state[k]) for k in keys)

    def __str__(self) -> str:
        args = [f"{name}={_show(getattr(self, name))}" for name in ("start", "stop", "prefix", "limit")]
        args = [a for a in args if not a.endswith("=None")] + (["reverse"] if self.reverse else [])
        return f"scan({', '.join(args)})"

    @staticmethod
    def show(result: object) -> str:
        return _pairs(result)


@dataclass(frozen=True)
class Txn:
    """A transaction: ``steps`` run in order against a private copy of the state (so a read
    sees the transaction's own earlier writes); its result is the tuple of every step's result
    (``None`` for writes). ``committed``: its writes take effect, atomically with its reads;
    otherwise (it raised ConflictError) it writes nothing and only its reads are checked."""

    steps: tuple[Get | GetMany | Scan | Put | Delete, ...]
    committed: bool = True

    @property
    def writes(self) -> bool:
        return self.committed and any(step.writes for step in self.steps)

    def run(self, state: dict[bytes, bytes]) -> tuple[object, ...]:
        local = dict(state)
        results = tuple(step.run(local) for step in self.steps)
        if self.committed:
            state.clear()
            state.update(local)
        return results

    def __str__(self) -> str:
        return f"txn{'' if self.committed else '(conflict)'}[{'; '.join(map(str, self.steps))}]"

    def show(self, result: object) -> str:
        if not isinstance(result, tuple) or len(result) != len(self.steps):
            return _show(result)
        return "[" + "; ".join(_show_result(s, r) for s, r in zip(self.steps, result, strict=True)) + "]"


Action = Get | GetMany | Put | Delete | PutMany | Batch | Scan | Txn


def _show_result(action: Action, result: object) -> str:
    if result is UNKNOWN:
        return "?"
    show = getattr(action, "show", None)
    return _show(result) if show is None else str(show(result))


def step(state: State, action: Action) -> tuple[State, object]:
    """Apply ``action`` to the model: ``(next state, result)``."""
    d = dict(state)
    result = action.run(d)
    if not action.writes:
        return state, result
    return tuple(sorted(d.items())), result


def freeze(state: Mapping[bytes, bytes] | None) -> State:
    return tuple(sorted((state or {}).items()))


# ---------------------------------------------------------------------- histories


@dataclass(frozen=True)
class Op:
    """One operation of a history.

    ``call`` and ``ret`` are logical times (one clock for the whole history; every event gets
    its own tick). ``ret`` is None for an operation that never responded. ``pending``: the
    outcome is unknown (it happened between ``call`` and ``ret``, or never). ``process`` only
    labels the client in listings.
    """

    call: int
    ret: int | None
    action: Action
    result: object = None
    pending: bool = False
    process: object = None

    def __post_init__(self) -> None:
        if self.ret is None and not self.pending:
            raise ValueError(f"{self}: an operation without a response must be pending")
        if self.ret is not None and self.ret <= self.call:
            raise ValueError(f"{self}: responded at {self.ret}, not after its invocation at {self.call}")

    def __str__(self) -> str:
        when = f"[{self.call:>4} .. {'...' if self.ret is None else self.ret:>4}]"
        who = "" if self.process is None else f"p{self.process} "
        outcome = "  (outcome unknown)" if self.pending else ""
        result = (
            ""
            if self.action.writes and (self.result is None or self.result is UNKNOWN)
            else f" -> {_show_result(self.action, self.result)}"
        )
        return f"{when} {who}{self.action}{result}{outcome}"


def format_history(ops: Iterable[Op]) -> str:
    """One line per operation, in invocation order."""
    return "\n".join(str(op) for op in sorted(ops, key=lambda op: op.call))


# ---------------------------------------------------------------------- the search


class SearchBudgetExceeded(Exception):
    """The search visited more than ``max_nodes`` nodes without deciding."""


_INF = float("inf")


def _search(ops: Sequence[Op], initial: State, max_nodes: int) -> tuple[list[Op] | None, int]:
    """A linearization of ``ops`` from ``initial`` (pending operations that never happened are
    left out), or None; and the number of search nodes visited."""
    ops = sorted(ops, key=lambda op: op.call)
    n = len(ops)
    calls = [op.call for op in ops]
    rets = [_INF if op.ret is None else op.ret for op in ops]
    pending = [op.pending for op in ops]
    by_ret = sorted(range(n), key=rets.__getitem__)
    required = sum(1 << i for i in range(n) if not pending[i])

    def children(mask: int, state: State) -> list[tuple[int, State, int]]:
        """``(mask, state, i)`` of every way to extend the node: linearize operation ``i``
        next, or (``i < 0``) drop pending operation ``~i``. Known operations first."""
        deadline, blocker = _INF, -1
        for i in by_ret:  # the earliest response (or deadline) not yet linearized
            if not mask >> i & 1:
                deadline, blocker = rets[i], i
                break
        first: list[tuple[int, State, int]] = []
        last: list[tuple[int, State, int]] = []
        i = (~mask & (mask + 1)).bit_length() - 1  # the first operation not yet linearized
        while i < n and calls[i] < deadline:
            if not mask >> i & 1:
                op = ops[i]
                after, result = step(state, op.action)
                if op.result is UNKNOWN or result == op.result:
                    (last if pending[i] else first).append((mask | 1 << i, after, i))
            i += 1
        if blocker >= 0 and pending[blocker]:
            last.append((mask | 1 << blocker, state, ~blocker))
        return first + last

    seen = {(0, initial)}
    path: list[int] = []
    stack = [iter(children(0, initial))]
    if required == 0:
        return [], 1
    while stack:
        for mask, state, i in stack[-1]:
            if (mask, state) in seen:
                continue
            seen.add((mask, state))
            if len(seen) > max_nodes:
                raise SearchBudgetExceeded(f"more than {max_nodes} search nodes")
            path.append(i)
            if mask & required == required:
                return [ops[j] for j in path if j >= 0], len(seen)
            stack.append(iter(children(mask, state)))
            break
        else:
            stack.pop()
            if path:
                path.pop()
    return None, len(seen)


def _cut(ops: Sequence[Op], t: int) -> list[Op]:
    """The history as it stood at time ``t``: operations invoked after ``t`` are left out; one
    still running at ``t`` becomes pending with an unknown result (a read then tells nothing
    and is left out)."""
    out = []
    for op in ops:
        if op.call > t:
            continue
        if op.ret is not None and op.ret <= t:
            out.append(op)
        elif op.action.writes:
            out.append(dataclasses.replace(op, ret=None, pending=True, result=UNKNOWN))
    return out


@dataclass(frozen=True)
class Verdict:
    """The answer of :func:`check`. ``linearization``: a witness order (when ``ok``).
    ``prefix``: the shortest failing prefix, ending at time ``cut``; ``minimal``: the part of
    it that still fails with every unneeded read removed (when not ``ok``).
    ``nodes``: search nodes visited by the first, full check."""

    ok: bool
    nodes: int
    linearization: tuple[Op, ...] = ()
    prefix: tuple[Op, ...] = ()
    cut: int | None = None
    minimal: tuple[Op, ...] = ()

    def explain(self) -> str:
        if self.ok:
            return f"linearizable ({len(self.linearization)} operations, {self.nodes} search nodes)"
        return (
            f"NOT linearizable. Shortest failing prefix: {len(self.prefix)} operations, cut at t={self.cut}.\n"
            f"A minimal contradiction inside it ({len(self.minimal)} operations):\n" + format_history(self.minimal)
        )


def check(
    history: Iterable[Op],
    initial: Mapping[bytes, bytes] | None = None,
    *,
    max_nodes: int = 2_000_000,
    diagnose: bool = True,
    diagnose_nodes: int = 200_000,
    diagnose_seconds: float = 60.0,
) -> Verdict:
    """Is ``history`` linearizable, starting from the state ``initial`` (empty by default)?

    Raises SearchBudgetExceeded when the search needs more than ``max_nodes`` nodes (a
    history with too much concurrency or too little information in its results). With
    ``diagnose`` a failure is narrowed down to its shortest failing prefix and a minimal
    contradiction: a few dozen more searches, each of at most ``diagnose_nodes`` nodes (a
    step that runs out is skipped: the answer is then less narrow, never wrong), and none
    started after ``diagnose_seconds``."""
    ops = list(history)
    start = freeze(initial)
    order, nodes = _search(ops, start, max_nodes)
    if order is not None:
        return Verdict(ok=True, nodes=nodes, linearization=tuple(order))
    if not diagnose:
        return Verdict(ok=False, nodes=nodes, prefix=tuple(ops), cut=None, minimal=tuple(ops))
    give_up = time.monotonic() + diagnose_seconds

    def fails(candidate: Sequence[Op]) -> bool:
        if time.monotonic() > give_up:
            return False
        try:
            return _search(candidate, start, min(max_nodes, diagnose_nodes))[0] is None
        except SearchBudgetExceeded:
            return False  # undecided: do not narrow on it

    # Bisect for the earliest time t whose cut fails (cuts are monotone: a later cut only
    # adds constraints). The full history fails, so times[-1] does.
    times = sorted({op.call for op in ops} | {op.ret for op in ops if op.ret is not None})
    lo, hi = 0, len(times) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(_cut(ops, times[mid])):
            hi = mid
        else:
            lo = mid + 1
    cut = times[hi]
    prefix = _cut(ops, cut)
    if hi < len(times) - 1 and not fails(prefix):  # a bisection step ran out of budget
        prefix, cut = ops, times[-1]
    # Remove reads while the rest still fails, latest first.
    minimal = sorted(prefix, key=lambda op: op.call)
    for op in sorted(minimal, key=lambda op: -op.call):
        if not op.action.writes:
            rest = [o for o in minimal if o is not op]
            if fails(rest):
                minimal = rest
    return Verdict(ok=False, nodes=nodes, prefix=tuple(prefix), cut=cut, minimal=tuple(minimal))
