"""The audit log's Merkle tree against RFC 6962 / RFC 9162: known answers (Certificate
Transparency's test vectors), a naive reference written from the RFC's recursive definitions
for every pair of sizes up to 64 (and random pairs up to 400), and every mutation of every
proof rejected (the immudb advisory GHSA-672p-m5jq-mrh8: a verifier that skipped elements)."""

from __future__ import annotations

import hashlib
import random

import pytest

import quanta
import quanta.audit
from quanta._audit import (
    EMPTY_ROOT,
    ConsistencyProof,
    Frontier,
    InclusionProof,
    MemoryTree,
    leaf_hash,
    root_from_consistency,
    root_from_inclusion,
)

# Certificate Transparency's merkle_tree_test leaves and roots (RFC 6962 section 2.1.3 worked tree).
CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"]]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}  # fmt: skip
CT_CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}  # fmt: skip


# ---------------------------------------------------------------- a naive reference (RFC 9162 2.1.1-2.1.4)


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:  # d: leaf hashes
    if not d:
        return _h(b"")
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.fixture(scope="module")
def big_tree() -> tuple[MemoryTree, list[bytes]]:
    d = leaves(400)
    tree = MemoryTree()
    for x in d:
        tree.append(x)
    return tree, d


# ---------------------------------------------------------------- known answers


def test_ct_known_roots_and_proofs() -> None:
    tree = MemoryTree()
    for leaf in CT_LEAVES:
        tree.append(leaf_hash(leaf))
    assert (
        tree.root(0) == EMPTY_ROOT == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    )
    for n, root in enumerate(CT_ROOTS, start=1):
        assert tree.root(n).hex() == root
        assert quanta.audit.tree_root(leaf_hash(x) for x in CT_LEAVES[:n]).hex() == root
    for (m, n), path in CT_INCLUSION.items():
        assert [h.hex() for h in tree.inclusion_proof(m, n).hashes] == path
        assert (
            root_from_inclusion(leaf_hash(CT_LEAVES[m]), m, n, [bytes.fromhex(h) for h in path]).hex()
            == CT_ROOTS[n - 1]
        )
    for (m, n), path in CT_CONSISTENCY.items():
        assert [h.hex() for h in tree.consistency_proof(m, n).hashes] == path
        old, new = root_from_consistency(m, n, bytes.fromhex(CT_ROOTS[m - 1]), [bytes.fromhex(h) for h in path])
        assert (old.hex(), new.hex()) == (CT_ROOTS[m - 1], CT_ROOTS[n - 1])


# ---------------------------------------------------------------- against the reference, every pair up to 64


def _check_pair(tree: MemoryTree, d: list[bytes], m: int, n: int) -> None:
    if m < n:  # m as a leaf index
        p = tree.inclusion_proof(m, n)
        assert list(p.hashes) == ref_path(m, d[:n])
        assert root_from_inclusion(d[m], m, n, p.hashes) == ref_mth(d[:n])
    c = tree.consistency_proof(m, n)
    want = [] if m in (0, n) else ref_subproof(m, d[:n], True)
    assert list(c.hashes) == want
    old, new = root_from_consistency(m, n, ref_mth(d[:m]), c.hashes)
    assert old == ref_mth(d[:m])
    if 0 < m < n:
        assert new == ref_mth(d[:n])


def test_every_pair_of_sizes_up_to_64(big_tree: tuple[MemoryTree, list[bytes]]) -> None:
    tree, d = big_tree
    for n in range(1, 65):
        assert tree.root(n) == ref_mth(d[:n])
        for m in range(n + 1):
            _check_pair(tree, d, m, n)


def test_random_pairs_up_to_400(big_tree: tuple[MemoryTree, list[bytes]]) -> None:
    tree, d = big_tree
    rng = random.Random(17)
    for _ in range(300):
        n = rng.randint(65, 400)
        _check_pair(tree, d, rng.randint(0, n), n)


def test_frontier_matches_stored_nodes(big_tree: tuple[MemoryTree, list[bytes]]) -> None:
    tree, d = big_tree
    f = Frontier()
    for i, x in enumerate(d[:130]):
        f.append(x)
        rebuilt = Frontier(i + 1, [tree.node(lv, ix) for lv, ix in Frontier.positions(i + 1)])
        assert rebuilt.root() == f.root() == ref_mth(d[: i + 1])
    assert len(Frontier.positions(2**40 - 1)) == 40


# ---------------------------------------------------------------- every mutation of every proof is rejected


def _flips(hashes: tuple[bytes, ...]) -> list[tuple[bytes, ...]]:
    out = []
    for i, h in enumerate(hashes):
        for j in range(len(h)):
            for bit in (0x01, 0x80):
                changed = bytearray(h)
                changed[j] ^= bit
                out.append((*hashes[:i], bytes(changed), *hashes[i + 1 :]))
    return out


def _shapes(hashes: tuple[bytes, ...], extra: bytes) -> list[tuple[bytes, ...]]:
    """Dropped, added, duplicated, swapped, reversed and truncated element lists."""
    out: list[tuple[bytes, ...]] = []
    n = len(hashes)
    for i in range(n):
        out.append(hashes[:i] + hashes[i + 1 :])
        out.append((*hashes[:i], hashes[i], *hashes[i:]))
    for i in range(n + 1):
        out.append((*hashes[:i], extra, *hashes[i:]))
    for i in range(n):
        for j in range(i + 1, n):
            if hashes[i] != hashes[j]:
                swapped = list(hashes)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                out.append(tuple(swapped))
    if n > 1:
        out.append(tuple(reversed(hashes)))
    out.append((*hashes, b"\x00" * 32))
    return [s for s in out if s != hashes]


def _head(size: int, root: bytes) -> quanta.SignedHead:
    return quanta.SignedHead(size, root, 0, b"\x00" * 64)  # signatures are verify_head's job


def _rejected(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
    except quanta.AuditVerificationError:
        return True
    return False


def test_every_inclusion_proof_mutation_is_rejected(big_tree: tuple[MemoryTree, list[bytes]]) -> None:
    tree, d = big_tree
    checked = 0
    for n in [*range(1, 18), 31, 32, 33, 63, 64, 65, 100]:
        head = _head(n, tree.root(n))
        for m in range(n):
            p = tree.inclusion_proof(m, n)
            quanta.audit.verify_inclusion(d[m], p, head)  # the genuine proof holds
            bad = [InclusionProof(m, n, h) for h in [*_flips(p.hashes), *_shapes(p.hashes, d[(m + 1) % n])]]
            bad += [InclusionProof(i, n, p.hashes) for i in range(n + 2) if i != m]  # another index
            # another size in the proof: rejected against the head. (Another size in the proof
            # *and* the head can verify: the RFC's path for a leaf can be the same in trees of
            # different sizes. The size is authenticated by the head's signature instead,
            # test_a_head_with_another_size_fails_its_signature.)
            bad += [InclusionProof(m, other, p.hashes) for other in (n - 1, n + 1, 2 * n, 0) if other != n]
            for b in bad:
                assert _rejected(quanta.audit.verify_inclusion, d[m], b, head), (m, n, b)
                checked += 1
            wrong_leaf = bytearray(d[m])
            wrong_leaf[0] ^= 1
            assert _rejected(quanta.audit.verify_inclusion, bytes(wrong_leaf), p, head)
            assert _rejected(
                quanta.audit.verify_inclusion, d[m], p, _head(n, tree.root(n - 1) if n > 1 else d[m][::-1])
            )
    assert checked > 50_000


def test_every_consistency_proof_mutation_is_rejected(big_tree: tuple[MemoryTree, list[bytes]]) -> None:
    tree, d = big_tree
    checked = 0
    for n in [*range(1, 18), 32, 33, 64, 65, 100]:
        new = _head(n, tree.root(n))
        for m in range(n + 1):
            old = _head(m, tree.root(m))
            c = tree.consistency_proof(m, n)
            quanta.audit.verify_consistency(old, new, c)
            bad = [ConsistencyProof(m, n, h) for h in [*_flips(c.hashes), *_shapes(c.hashes, d[0])]]
            for b in bad:
                assert _rejected(quanta.audit.verify_consistency, old, new, b), (m, n, b)
                checked += 1
            for om in range(n + 1):  # a proof claimed for another old size (with that head's true root)
                if om != m and c.hashes:
                    other = _head(om, tree.root(om))
                    assert _rejected(quanta.audit.verify_consistency, other, new, ConsistencyProof(om, n, c.hashes))
            # heads whose roots were changed: the old root, the new root
            if m > 0:
                assert _rejected(quanta.audit.verify_consistency, _head(m, tree.root(m)[::-1]), new, c)
            if 0 < m < n:  # (every log extends the empty one: from size 0 any new root is consistent)
                assert _rejected(quanta.audit.verify_consistency, old, _head(n, tree.root(n)[::-1]), c)
            assert _rejected(quanta.audit.verify_consistency, old, new, ConsistencyProof(m, n + 1, c.hashes))
            assert _rejected(quanta.audit.verify_consistency, old, _head(n + 1, tree.root(n + 1)), c)
    # a truncated log: the newer head is smaller than the old one
    p = tree.consistency_proof(5, 10)
    assert _rejected(quanta.audit.verify_consistency, _head(10, tree.root(10)), _head(5, tree.root(5)),
                     ConsistencyProof(10, 5, p.hashes))  # fmt: skip
    assert checked > 20_000


def test_a_head_with_another_size_fails_its_signature(big_tree: tuple[MemoryTree, list[bytes]]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from quanta._audit import sign_head

    tree, d = big_tree
    key = Ed25519PrivateKey.generate()
    head = sign_head(key, 3, tree.root(3), 5)
    quanta.audit.verify_head(head, key.public_key())
    quanta.audit.verify_inclusion(d[0], tree.inclusion_proof(0, 3), head)
    forged = quanta.SignedHead(4, head.root, head.time, head.signature)
    quanta.audit.verify_inclusion(d[0], InclusionProof(0, 4, tree.inclusion_proof(0, 3).hashes), forged)
    with pytest.raises(quanta.AuditVerificationError):
        quanta.audit.verify_head(forged, key.public_key())


def test_malformed_proofs_raise_quanta_errors() -> None:
    head = _head(4, b"\x01" * 32)
    with pytest.raises(quanta.AuditVerificationError):
        quanta.audit.verify_inclusion(b"\x00" * 32, InclusionProof(0, 4, (b"short",)), head)
    with pytest.raises(quanta.InvalidTypeError):
        quanta.audit.verify_inclusion(b"\x00" * 32, "not a proof", head)  # type: ignore[arg-type]
    with pytest.raises(quanta.AuditVerificationError):
        quanta.audit.verify_inclusion(b"\x00" * 31, InclusionProof(0, 4, ()), head)
    with pytest.raises(quanta.AuditVerificationError):
        quanta.audit.verify_inclusion(b"\x00" * 32, InclusionProof(-1, 4, ()), head)
    with pytest.raises(quanta.InvalidTypeError):
        quanta.audit.verify_consistency(head, head, InclusionProof(0, 4, ()))  # type: ignore[arg-type]
    assert issubclass(quanta.AuditVerificationError, quanta.CorruptionError)
