"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs (pure).

The audit log's entries are the leaves ``D[0], D[1], ...`` of a Merkle tree hashed exactly as
Certificate Transparency hashes its log (RFC 9162 section 2.1.1; RFC 6962 section 2.1)::

    leaf hash     SHA-256(0x00 || entry bytes)
    node hash     SHA-256(0x01 || left || right)
    MTH({})       SHA-256()                                   the empty tree
    MTH(D[n])     MTH(D[0:k]) and MTH(D[k:n]) combined as a node, k the largest power of two
                  smaller than n (so the left subtree is always complete)

The two prefix bytes separate leaves from nodes (a leaf can never be passed off as a node,
the second-preimage attack on plain Merkle trees). **The prefixes, SHA-256 and the split rule
are part of the on-disk and wire format**: a root, a proof or a signed head made by one
version verifies under every later one.

Proofs are the RFC's: an inclusion proof ``PATH(m, D[n])`` (section 2.1.3) and a consistency
proof ``PROOF(m, D[n])`` (section 2.1.4) are lists of at most ``ceil(log2 n)`` (inclusion) or
``ceil(log2 n) + 1`` (consistency) 32-byte hashes; the verifiers are the RFC's algorithms of
sections 2.1.3.2 and 2.1.4.2, which recompute the root(s) from the proof and reject a proof
of any other length. Every element is checked (a proof with an element left unread is
rejected: the immudb advisory GHSA-672p-m5jq-mrh8 was a verifier that skipped some).

Generation reads complete subtrees only. A *complete subtree* ``(level, index)`` is the node
over leaves ``[index * 2**level, (index + 1) * 2**level)``; once its last leaf is appended it
never changes, so a store can keep each one once (``Frontier.append`` lists the ones each new
leaf completes: two per leaf on average). Every subtree the RFC's recursions ask for is either
complete or the right edge of the tree, which :func:`range_hash` builds from at most
``log2 n`` complete ones: a proof costs O(log n) node reads.

Departure from the textbook: none in the hashing. The proof generators take a ``node(level,
index)`` callable instead of the leaf list, so the same code serves the in-memory tree of the
tests and the database's stored nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import AuditVerificationError, InvalidArgumentError, InvalidTypeError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ConsistencyProof",
    "Frontier",
    "InclusionProof",
    "MemoryTree",
    "NodeSource",
    "consistency_path",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_consistency",
    "root_from_inclusion",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeSource = Callable[[int, int], bytes]
"""``node(level, index)``: the hash of the complete subtree over leaves
``[index << level, (index + 1) << level)`` (level 0: the leaf hash)."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one leaf (one audit entry's bytes)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """That leaf ``index`` is in the tree of ``size`` leaves: ``hashes`` is RFC 9162's
    ``PATH(index, D[size])``, the sibling hashes from the leaf up to the root."""

    index: int
    size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """That the tree of ``old_size`` leaves is a prefix of the tree of ``new_size`` leaves:
    ``hashes`` is RFC 9162's ``PROOF(old_size, D[new_size])``."""

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


class Frontier:
    """The right edge of a growing tree: the roots of the complete subtrees whose sizes are
    the binary digits of ``size`` (at most 64 hashes), enough to append a leaf and to compute
    the root without reading anything else.

    ``append`` returns every complete subtree the new leaf completes, ``(level, index,
    hash)``, the leaf itself first: what a store keeps to answer proofs later."""

    __slots__ = ("size", "stack")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if len(stack) != size.bit_count():
            raise InvalidArgumentError(f"a frontier of {size} leaves has {size.bit_count()} hashes, not {len(stack)}")
        self.size = size
        self.stack = list(stack)  # largest subtree first (the leftmost)

    @staticmethod
    def positions(size: int) -> list[tuple[int, int]]:
        """``(level, index)`` of the frontier's subtrees for a tree of ``size`` leaves, leftmost
        first (what to read to rebuild a frontier from stored nodes)."""
        out = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        index = self.size
        made = [(0, index, leaf)]
        h = leaf
        level = 0
        while index >> level & 1:  # the subtree to the left at this level is complete: merge
            h = node_hash(self.stack.pop(), h)
            level += 1
            made.append((level, index >> level, h))
        self.stack.append(h)
        self.size += 1
        return made

    def root(self) -> bytes:
        """MTH of the whole tree (the frontier's subtrees folded right to left)."""
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


def range_hash(node: NodeSource, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for a range the RFC's recursions produce (``lo`` a multiple of the
    largest power of two below ``hi - lo``, or the range complete): one node read when the
    range is a complete subtree, at most ``log2(hi - lo)`` otherwise."""
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        return node(level, lo >> level)
    k = _split(n)
    return node_hash(range_hash(node, lo, lo + k), range_hash(node, lo + k, hi))


def inclusion_path(node: NodeSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 ``PATH(index, D[size])``, leaf sibling first. Requires ``0 <= index < size``."""
    out: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append(range_hash(node, lo + k, hi))
            hi = lo + k
        else:
            out.append(range_hash(node, lo, lo + k))
            lo += k
    out.reverse()  # the recursion appends on the way back up: the deepest sibling first
    return out


def consistency_path(node: NodeSource, old: int, new: int) -> list[bytes]:
    """RFC 9162 ``PROOF(old, D[new])`` = ``SUBPROOF(old, D[new], true)``. Empty when
    ``old == new`` or ``old == 0`` (every tree extends the empty one). Requires
    ``0 <= old <= new``."""
    if old == 0 or old == new:
        return []
    out: list[bytes] = []
    lo, hi, m, complete = 0, new, old, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append(range_hash(node, lo + k, hi))
            hi = lo + k
        else:
            out.append(range_hash(node, lo, lo + k))
            lo += k
            m -= k
            complete = False
    if not complete:
        out.append(range_hash(node, lo, hi))
    out.reverse()
    return out


def _check_hashes(hashes: object, what: str) -> tuple[bytes, ...]:
    if not isinstance(hashes, tuple | list):
        raise InvalidTypeError(f"{what} hashes must be a tuple of bytes, got {type(hashes).__name__}")
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise AuditVerificationError(f"{what} holds an element that is not a {HASH_SIZE}-byte hash", path=what)
    return tuple(hashes)


def _check_size(value: object, name: str, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value >= 1 << 63:
        raise AuditVerificationError(f"{name} {value} is out of range", path=what)
    return value


def root_from_inclusion(leaf: bytes, index: int, size: int, hashes: Sequence[bytes]) -> bytes:
    """The root that ``hashes`` (``PATH(index, D[size])``) proves for ``leaf`` (RFC 9162
    section 2.1.3.2). Raises :class:`AuditVerificationError` for a proof that cannot be one:
    an index outside the tree, too many or too few hashes, an element that is not a hash."""
    what = "<inclusion proof>"
    index = _check_size(index, "index", what)
    size = _check_size(size, "size", what)
    path = _check_hashes(hashes, what)
    if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
        raise AuditVerificationError("the entry hash is not a 32-byte hash", path=what)
    if index >= size:
        raise AuditVerificationError(f"leaf {index} is not in a tree of {size} leaves", path=what)
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise AuditVerificationError("the proof is longer than the tree is deep", path=what)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditVerificationError("the proof is shorter than the tree is deep", path=what)
    return r


def root_from_consistency(
    old_size: int, new_size: int, old_root: bytes, hashes: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """``(old_root', new_root')`` that ``hashes`` (``PROOF(old_size, D[new_size])``) proves
    (RFC 9162 section 2.1.4.2): the proof holds iff ``old_root'`` is ``old_root`` and
    ``new_root'`` the newer tree's root. Between equal sizes, or from the empty tree, the
    proof must be empty and ``(old_root, old_root)`` comes back (the caller compares the
    roots directly). Raises :class:`AuditVerificationError` for a proof that cannot be one
    (a smaller new size, too many or too few hashes, an element that is not a hash)."""
    what = "<consistency proof>"
    old_size = _check_size(old_size, "old size", what)
    new_size = _check_size(new_size, "new size", what)
    path = list(_check_hashes(hashes, what))
    if old_size > new_size:
        raise AuditVerificationError(f"a tree of {old_size} leaves cannot be a prefix of one of {new_size}", path=what)
    if old_size == 0 or old_size == new_size:
        if path:
            raise AuditVerificationError("a proof between these sizes must be empty", path=what)
        return old_root, old_root
    if not path:
        raise AuditVerificationError("the proof is empty", path=what)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise AuditVerificationError("the proof is longer than the tree is deep", path=what)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditVerificationError("the proof is shorter than the tree is deep", path=what)
    return fr, sr


class MemoryTree:
    """A whole tree in memory (tests, and a verifier that recomputes a log): the leaf hashes
    and every complete subtree, with the same proof generators the database uses."""

    def __init__(self) -> None:
        self.frontier = Frontier()
        self.nodes: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return self.frontier.size

    def append(self, leaf: bytes) -> None:
        for level, index, h in self.frontier.append(leaf):
            self.nodes[level, index] = h

    def node(self, level: int, index: int) -> bytes:
        return self.nodes[level, index]

    def root(self, size: int | None = None) -> bytes:
        n = len(self) if size is None else size
        return EMPTY_ROOT if n == 0 else range_hash(self.node, 0, n)

    def inclusion_proof(self, index: int, size: int) -> InclusionProof:
        return InclusionProof(index, size, tuple(inclusion_path(self.node, index, size)))

    def consistency_proof(self, old: int, new: int) -> ConsistencyProof:
        return ConsistencyProof(old, new, tuple(consistency_path(self.node, old, new)))
