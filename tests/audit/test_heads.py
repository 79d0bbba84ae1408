"""Signed heads: Ed25519 over a domain-separated message; another key, or any changed field,
fails ``verify_head``; the stored and JSON forms round-trip."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import quanta
import quanta.audit
from quanta._audit import HEAD_DOMAIN, sign_head

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def test_a_head_verifies_with_its_key_only() -> None:
    head = sign_head(KEY, 12, b"\x07" * 32, 1_765_000_000_000_000_000)
    quanta.audit.verify_head(head, KEY.public_key())
    quanta.audit.verify_head(head, KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    with pytest.raises(quanta.AuditVerificationError, match="another key"):
        quanta.audit.verify_head(head, OTHER.public_key())
    with pytest.raises(quanta.AuditVerificationError):
        quanta.audit.verify_head(sign_head(OTHER, 12, b"\x07" * 32, head.time), KEY.public_key())
    assert head.message().startswith(HEAD_DOMAIN) and len(head.message()) == 24 + 8 + 32 + 8


def test_every_changed_field_fails() -> None:
    head = sign_head(KEY, 12, b"\x07" * 32, 99)
    changed = [
        dataclasses.replace(head, size=13),
        dataclasses.replace(head, size=0),
        dataclasses.replace(head, time=100),
        dataclasses.replace(head, root=b"\x07" * 31 + b"\x06"),
    ]
    for i in range(64):
        sig = bytearray(head.signature)
        sig[i] ^= 0x01
        changed.append(dataclasses.replace(head, signature=bytes(sig)))
    changed += [dataclasses.replace(head, signature=head.signature[:63]), dataclasses.replace(head, root=b"")]
    for bad in changed:
        with pytest.raises(quanta.AuditVerificationError):
            quanta.audit.verify_head(bad, KEY.public_key())


def test_forms_round_trip_and_bad_input_is_refused() -> None:
    head = sign_head(KEY, 3, b"\xaa" * 32, 5)
    assert quanta.SignedHead.from_bytes(head.to_bytes()) == head
    assert len(head.to_bytes()) == 113
    assert quanta.SignedHead.from_json(head.to_json()) == head
    with pytest.raises(quanta.InvalidArgumentError):
        quanta.SignedHead.from_json('{"size": 3}')
    with pytest.raises(quanta.AuditVerificationError):
        quanta.SignedHead.from_bytes(head.to_bytes()[:-1])
    with pytest.raises(quanta.InvalidTypeError):
        quanta.audit.verify_head(head, KEY)  # type: ignore[arg-type]  # the private key
    with pytest.raises(quanta.InvalidArgumentError):
        quanta.audit.verify_head(head, b"\x00" * 31)
    with pytest.raises(quanta.InvalidTypeError):
        quanta.audit.verify_head("head", KEY.public_key())  # type: ignore[arg-type]
