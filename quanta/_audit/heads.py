"""Signed tree heads and the pure verifiers of heads and proofs.

A signed head says "the audit log had ``size`` entries and Merkle root ``root`` at ``time``",
signed with the database's Ed25519 signing key. The signature covers this message::

    off  size  field
      0    24  b"quanta-audit-head-v1\\x00\\x00\\x00\\x00"   (domain separation, fixed)
     24     8  size     u64 big-endian: the number of entries (leaves)
     32    32  root     MTH of the first ``size`` entries (merkle.py)
     64     8  time     u64 big-endian: nanoseconds since the Unix epoch

A stored head (the value under an ``a h`` key, see log.py) is::

    off  size  field
      0     1  format version (1)
      1     8  size     u64 BE
      9     8  time     u64 BE
     17    32  root
     49    64  signature (Ed25519, over the message above)
                                                          113 bytes in all

and its JSON form (``SignedHead.to_json``, what an operator keeps outside the database) is
``{"size": 3, "root": "<hex>", "time": 1765140000000000000, "signature": "<hex>"}``.
**These layouts and the domain string are part of the on-disk format.**

The verifiers are pure functions: they need no database, only what the database handed out
(heads and proofs) and the public key. Each raises :class:`quanta.AuditVerificationError`
when the check fails and returns ``None`` when it holds.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import AuditVerificationError, InvalidArgumentError, InvalidTypeError
from .merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ConsistencyProof,
    InclusionProof,
    root_from_consistency,
    root_from_inclusion,
)

__all__ = [
    "HEAD_DOMAIN",
    "HeadFormat",
    "PublicKeyLike",
    "SignedHead",
    "public_key_of",
    "sign_head",
    "verify_consistency",
    "verify_head",
    "verify_inclusion",
]

HEAD_DOMAIN = b"quanta-audit-head-v1\x00\x00\x00\x00"
assert len(HEAD_DOMAIN) == 24
SIGNATURE_SIZE = 64
_MESSAGE = struct.Struct(">Q32sQ")
_STORED = struct.Struct(">BQQ32s64s")


class HeadFormat(IntEnum):
    V1 = 1  # the layout above


PublicKeyLike = Ed25519PublicKey | bytes
"""An Ed25519 public key, or its 32 raw bytes."""


@dataclass(frozen=True, slots=True)
class SignedHead:
    """The audit log's state, signed: ``size`` entries whose Merkle root is ``root`` (32
    bytes), at ``time`` (nanoseconds since the Unix epoch), ``signature`` (64 bytes, Ed25519).
    Keep heads outside the database (``to_json``): a later log must be consistent with them
    (``verify_consistency``), which is what detects a rewritten or truncated log."""

    size: int
    root: bytes
    time: int
    signature: bytes

    def message(self) -> bytes:
        """The bytes the signature covers (the layout in the module docstring)."""
        return HEAD_DOMAIN + _MESSAGE.pack(self.size, self.root, self.time)

    def to_bytes(self) -> bytes:
        return _STORED.pack(HeadFormat.V1, self.size, self.time, self.root, self.signature)

    @classmethod
    def from_bytes(cls, data: bytes, *, path: str = "<audit head>") -> SignedHead:
        if len(data) != _STORED.size or data[0] != HeadFormat.V1:
            raise AuditVerificationError("a stored signed head has a bad length or format version", path=path)
        _, size, time, root, signature = _STORED.unpack(data)
        return cls(size, root, time, signature)

    def to_json(self) -> str:
        return json.dumps(
            {"size": self.size, "root": self.root.hex(), "time": self.time, "signature": self.signature.hex()}
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedHead:
        """Parse :meth:`to_json`'s output; raises ``InvalidArgumentError`` for anything else."""
        try:
            raw: Any = json.loads(text)
            head = cls(int(raw["size"]), bytes.fromhex(raw["root"]), int(raw["time"]), bytes.fromhex(raw["signature"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgumentError(f"not a signed audit head in JSON: {exc}") from None
        _check_head(head)
        return head


def _check_head(head: object) -> SignedHead:
    if not isinstance(head, SignedHead):
        raise InvalidTypeError(f"expected a quanta.SignedHead, got {type(head).__name__}")
    ok = (
        isinstance(head.size, int)
        and 0 <= head.size < 1 << 63
        and isinstance(head.time, int)
        and 0 <= head.time < 1 << 64
        and isinstance(head.root, bytes)
        and len(head.root) == HASH_SIZE
        and isinstance(head.signature, bytes)
        and len(head.signature) == SIGNATURE_SIZE
    )
    if not ok:
        raise AuditVerificationError(
            "a signed head with a field of the wrong type or size", path=f"<audit head {head.size}>"
        )
    return head


def sign_head(key: Ed25519PrivateKey, size: int, root: bytes, time: int) -> SignedHead:
    unsigned = SignedHead(size, root, time, b"")
    return SignedHead(size, root, time, key.sign(unsigned.message()))


def public_key_of(key: object) -> Ed25519PublicKey:
    """``key`` (an ``Ed25519PublicKey`` or its 32 raw bytes) as an ``Ed25519PublicKey``."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, bytes):
        if len(key) != 32:
            raise InvalidArgumentError(f"an Ed25519 public key is 32 bytes, got {len(key)}")
        return Ed25519PublicKey.from_public_bytes(key)
    if isinstance(key, Ed25519PrivateKey):
        raise InvalidTypeError("pass the public key (private_key.public_key()), not the private key")
    raise InvalidTypeError(f"public_key must be an Ed25519PublicKey or 32 bytes, got {type(key).__name__}")


def verify_head(head: SignedHead, public_key: PublicKeyLike) -> None:
    """Check that ``head`` was signed by the holder of ``public_key``'s private key. Raises
    :class:`quanta.AuditVerificationError` if not."""
    _check_head(head)
    key = public_key_of(public_key)
    try:
        key.verify(head.signature, head.message())
    except InvalidSignature:
        raise AuditVerificationError(
            "the head's signature does not verify with this public key (signed by another key, or altered)",
            path=f"<audit head {head.size}>",
        ) from None


def verify_inclusion(entry_hash: bytes, proof: InclusionProof, head: SignedHead) -> None:
    """Check that the entry whose leaf hash is ``entry_hash`` (``AuditEntry.leaf_hash``,
    ``quanta.audit.leaf_hash(entry_bytes)``) is entry ``proof.index`` of the log ``head``
    describes. Check the head itself with :func:`verify_head` first. Raises
    :class:`quanta.AuditVerificationError` if the proof does not prove it."""
    _check_head(head)
    if not isinstance(proof, InclusionProof):
        raise InvalidTypeError(f"expected a quanta.InclusionProof, got {type(proof).__name__}")
    if proof.size != head.size:
        raise AuditVerificationError(
            f"the proof is for a log of {proof.size} entries, the head for {head.size}", path="<inclusion proof>"
        )
    root = root_from_inclusion(entry_hash, proof.index, proof.size, proof.hashes)
    if root != head.root:
        raise AuditVerificationError(
            f"entry {proof.index} is not in the log this head describes (the proof leads to another root)",
            path="<inclusion proof>",
        )


def verify_consistency(old_head: SignedHead, head: SignedHead, proof: ConsistencyProof) -> None:
    """Check that the log ``old_head`` describes is a prefix of the log ``head`` describes:
    nothing in the first ``old_head.size`` entries was changed, removed or reordered since.
    Check both heads with :func:`verify_head` first. Raises
    :class:`quanta.AuditVerificationError` if not (a truncated log too: ``head.size <
    old_head.size``)."""
    _check_head(old_head)
    _check_head(head)
    if not isinstance(proof, ConsistencyProof):
        raise InvalidTypeError(f"expected a quanta.ConsistencyProof, got {type(proof).__name__}")
    what = "<consistency proof>"
    if proof.old_size != old_head.size or proof.new_size != head.size:
        raise AuditVerificationError(
            f"the proof is between sizes {proof.old_size} and {proof.new_size}, "
            f"the heads are at {old_head.size} and {head.size}",
            path=what,
        )
    if head.size < old_head.size:
        raise AuditVerificationError(
            f"the log has {head.size} entries, fewer than the {old_head.size} of the earlier head: it was truncated",
            path=what,
        )
    old_root, new_root = root_from_consistency(proof.old_size, proof.new_size, old_head.root, proof.hashes)
    if old_head.size == 0:
        if old_head.root != EMPTY_ROOT:
            raise AuditVerificationError("a head of an empty log with a root that is not the empty root", path=what)
        return
    if old_head.size == head.size:
        if old_head.root != head.root:
            raise AuditVerificationError(
                "two heads of the same size with different roots: the log was rewritten", path=what
            )
        return
    if old_root != old_head.root or new_root != head.root:
        raise AuditVerificationError(
            f"the log of {head.size} entries does not extend the earlier one of {old_head.size}: "
            "an entry in the first part was changed, removed, inserted or reordered",
            path=what,
        )
