"""The SSTable bloom filter (quanta/_storage/bloom.py).

The byte-for-byte encoding is also pinned by tests/testdata/sstable/bloom_filter.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanta._storage import bloom as bloommod
from quanta._storage.bloom import (
    MAX_PROBES,
    bloom_may_contain,
    bloom_probes,
    build_bloom,
    filter_probes,
    theoretical_fpr,
)

N_KEYS = 100_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=300, unique=True), st.integers(1, 64))
def test_no_false_negatives(keys: list[bytes], bits_per_key: int) -> None:
    flt = build_bloom(keys, bits_per_key)
    assert all(bloom_may_contain(flt, k) for k in keys)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=200), st.integers(1, 64))
def test_filter_size_and_probe_byte(keys: list[bytes], bits_per_key: int) -> None:
    flt = build_bloom(iter(keys), bits_per_key)  # any iterable
    assert len(flt) == (max(64, len(keys) * bits_per_key) + 7) // 8 + 1
    assert flt[-1] == bloom_probes(bits_per_key) == filter_probes(flt)


def test_worked_example_in_the_docstring() -> None:
    flt = build_bloom([b"a"], 10)
    assert flt == bytes.fromhex("10 40 00 01 04 10 40 04 07")
    assert "10 40 00 01 04 10 40 04 07" in (bloommod.__doc__ or "")


def test_zero_bits_per_key_means_no_filter() -> None:
    assert build_bloom([b"a", b"b"], 0) == b""
    assert bloom_may_contain(b"", b"anything")
    assert filter_probes(b"") == 0


@pytest.mark.parametrize("bits_per_key", [-1, 65, 1000])
def test_bits_per_key_out_of_range(bits_per_key: int) -> None:
    with pytest.raises(ValueError, match="bits_per_key"):
        build_bloom([b"a"], bits_per_key)


def test_probes_follow_ln2_and_are_capped() -> None:
    assert [bloom_probes(b) for b in (0, 1, 2, 8, 10, 14, 16, 32, 64)] == [0, 1, 1, 6, 7, 10, 10, 10, 10]
    assert MAX_PROBES == 10


def test_empty_key_set_rejects_everything() -> None:
    flt = build_bloom([], 10)
    assert filter_probes(flt) == 7
    assert not any(bloom_may_contain(flt, b"k%d" % i) for i in range(100))


@pytest.mark.parametrize(
    "flt", [b"\x07", b"\x00" * 7 + b"\x07", b"\x00" * 9, b"\x00" * 8 + b"\x0b", b"\x00" * 8 + b"\xff"]
)
def test_filter_probes_rejects_malformed_filters(flt: bytes) -> None:
    assert filter_probes(flt) is None


def test_hash_does_not_depend_on_the_process() -> None:
    """Python's hash() of bytes is salted per process; the filter must not be."""
    keys = [b"user:%08d" % i for i in range(500)]
    code = (
        "import sys; from quanta._storage.bloom import build_bloom;"
        "sys.stdout.write(build_bloom([b'user:%08d' % i for i in range(500)], 10).hex())"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout == build_bloom(keys, 10).hex()


# --------------------------------------------------------------------------- false positives


def _sequential() -> tuple[list[bytes], list[bytes]]:
    keys = [b"user:%08d" % i for i in range(N_KEYS)]
    absent = [b"user:%08d" % i for i in range(N_KEYS, N_KEYS + 1_000_000)]
    return keys, absent


def _random() -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(7)
    keys = [rng.randbytes(16) for _ in range(N_KEYS)]
    present = set(keys)
    absent = [k for k in (rng.randbytes(16) for _ in range(1_000_000)) if k not in present]
    return keys, absent


@pytest.fixture(scope="module", params=["user:%08d", "random16"])
def key_set(request: pytest.FixtureRequest) -> tuple[list[bytes], list[bytes]]:
    return _sequential() if request.param == "user:%08d" else _random()


@pytest.mark.parametrize(("bits_per_key", "probes"), [(8, 200_000), (16, 1_000_000)])
def test_false_positive_rate_is_near_the_theory(
    key_set: tuple[list[bytes], list[bytes]], bits_per_key: int, probes: int
) -> None:
    keys, absent = key_set
    flt = build_bloom(keys, bits_per_key)
    sample = absent[:probes]
    fpr = sum(bloom_may_contain(flt, k) for k in sample) / len(sample)
    theory = theoretical_fpr(bits_per_key)
    # 8 bits/key expects ~4300 false positives and 16 bits/key ~470: 1.5x is many sigmas away.
    assert theory / 1.5 < fpr < theory * 1.5, (fpr, theory)


def test_false_positive_rate_at_32_bits_per_key_has_no_32_bit_floor(key_set: tuple[list[bytes], list[bytes]]) -> None:
    """The theory (1.9e-6) gives ~2 false positives in a million probes, too few to measure
    within 1.5x here (benchmarks/bloom_fpr.py does, with --probes 20000000). What this can
    check: a hash with only 32 bits of entropy would show n / 2**32 = 2.3e-5, ~23 per million."""
    keys, absent = key_set
    flt = build_bloom(keys, 32)
    false_positives = sum(bloom_may_contain(flt, k) for k in absent)
    assert false_positives <= 12, false_positives  # P(Poisson(1.9) > 12) < 1e-7


def test_theoretical_fpr() -> None:
    assert theoretical_fpr(0) == 1.0
    assert theoretical_fpr(10) == pytest.approx((1 - math.exp(-0.7)) ** 7)
    assert theoretical_fpr(32) == pytest.approx((1 - math.exp(-10 / 32)) ** 10)
