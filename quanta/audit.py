"""Verify a QuantaDB audit log from outside the database (docs/audit.md).

Pure functions over what ``db.audit`` hands out (signed heads, proofs, entries) and the
signing key's public half; none of them opens a database::

    quanta.audit.verify_head(head, public_key)
    quanta.audit.verify_inclusion(entry.leaf_hash, proof, head)
    quanta.audit.verify_consistency(old_head, head, proof)

Each raises :class:`quanta.AuditVerificationError` when the check fails. ``leaf_hash`` and
``node_hash`` are RFC 9162's hashes, ``tree_root`` the root of a list of leaf hashes (to
recompute a whole log), ``EMPTY_ROOT`` the root of the empty log.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._audit import (
    EMPTY_ROOT,
    ConsistencyProof,
    InclusionProof,
    MemoryTree,
    SignedHead,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_head,
    verify_inclusion,
)
from .errors import AuditVerificationError

__all__ = [
    "EMPTY_ROOT",
    "AuditVerificationError",
    "ConsistencyProof",
    "InclusionProof",
    "SignedHead",
    "leaf_hash",
    "node_hash",
    "tree_root",
    "verify_consistency",
    "verify_head",
    "verify_inclusion",
]


def tree_root(leaf_hashes: Iterable[bytes]) -> bytes:
    """The Merkle root (RFC 9162 MTH) of a log whose entries hash to ``leaf_hashes``, in order."""
    tree = MemoryTree()
    for h in leaf_hashes:
        tree.append(h)
    return tree.root()
