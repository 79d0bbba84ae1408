"""The audit log: a tamper-evident Merkle log of every commit, with signed heads (docs/audit.md).

``merkle.py`` (RFC 9162 hashing and proofs) and ``heads.py`` (signed heads, the pure
verifiers) are pure; the public ``quanta.audit`` module re-exports what an outside verifier
needs from them.
"""

from .heads import (
    HEAD_DOMAIN,
    PublicKeyLike,
    SignedHead,
    public_key_of,
    sign_head,
    verify_consistency,
    verify_head,
    verify_inclusion,
)
from .merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ConsistencyProof,
    Frontier,
    InclusionProof,
    MemoryTree,
    consistency_path,
    inclusion_path,
    leaf_hash,
    node_hash,
    range_hash,
    root_from_consistency,
    root_from_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "HEAD_DOMAIN",
    "ConsistencyProof",
    "Frontier",
    "InclusionProof",
    "MemoryTree",
    "PublicKeyLike",
    "SignedHead",
    "consistency_path",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "public_key_of",
    "range_hash",
    "root_from_consistency",
    "root_from_inclusion",
    "sign_head",
    "verify_consistency",
    "verify_head",
    "verify_inclusion",
]
