"""Bloom filters: one per SSTable, so a point read can skip a table that lacks the key.

Concurrency: pure functions over immutable ``bytes``; safe anywhere.

Encoding (the payload of an SSTable's filter block)::

    +----------------------------------+-----------+
    | bit array, nbytes bytes          | k: u8     |
    +----------------------------------+-----------+

    bit p of the array is bit (p & 7) of byte (p >> 3), least significant bit first
    nbits = 8 * nbytes, nbytes = ceil(max(64, n * bits_per_key) / 8)

An empty payload means "no filter" (``bits_per_key == 0``): every key may be present.

Key ``key`` sets (and a probe tests) the k bits ``(h1 + i * h2) mod nbits`` for ``i`` in
``0..k-1``, computed on unbounded Python integers (no 32-bit wrap-around), where::

    h1 = zlib.crc32(key)            CRC-32, zlib polynomial, initial value 0
    h2 = zlib.crc32(key[::-1])      the same CRC of the key's bytes in reverse order

Worked example: the filter of ``[b"a"]`` at 10 bits per key has nbits = 64 and k = 7;
h1 = 0xe8b7be43 and h2 = 0xe8b7be43 (a one-byte key reads the same both ways), so the bits set
are ``(h1 + i * h2) % 64`` = 3, 6, 9, 12, 15, 18, 21 and the filter is
``48 92 24 00 00 00 00 00 07``.

The hash functions, the probe formula, the bit order and the trailing k byte are part of the
on-disk format: changing any of them silently turns old filters into false negatives (lost
keys), so a change needs a new ``FormatVersion``.

Departures from the textbook (LevelDB's ``util/bloom.cc``), and why:

* The hash must be the same in every process (Python's ``hash()`` of bytes is salted per
  process) and C-fast. LevelDB derives the probe stride from its 32-bit hash by rotation. Here
  that leaves only 32 bits of entropy: with 100k keys two different keys share all their probes
  with probability about n / 2**32 = 2.3e-5, which is 12x the false-positive rate 32 bits per
  key should give, and the measured rate with a CRC was 11x-100x the theory at 16 and 32 bits
  per key. Two CRCs over different bit orders give 64 bits and measure at the theoretical rate
  (``benchmarks/bloom_fpr.py``). Rejected: blake2b/md5 (5-8x slower per key from Python),
  ``binascii.crc_hqx`` as h2 (only 16 bits, measured 3.5x the theory at 32 bits per key),
  ``adler32`` seeded with h1 (cheaper, but measured 1.1-1.8x the theory at 32 bits per key).
* The number of probes is ``round(bits_per_key * ln 2)`` capped at ``MAX_PROBES`` = 10.
  The optimum for 32 bits per key is 22, but every probe of a present key (and every probe at
  build time) is Python bytecode; past 10 the false-positive rate is already below 2e-6, where
  the filter's own cost dominates the rare wasted block read it saves.
* One filter covers the whole table (LevelDB keeps one per 2 KiB of data). The filter is read
  once when the table is opened and kept, so there is no reason to split it.
* Building works a probe round at a time over all keys with ``map`` (C loops) into a
  byte-per-bit scratch array that ``int(..., 2)`` packs in one call: a per-key, per-probe
  Python loop would cost several times more.
"""

from __future__ import annotations

import math
import operator
import zlib
from collections import deque
from collections.abc import Iterable
from itertools import repeat

__all__ = [
    "MAX_BITS_PER_KEY",
    "MAX_PROBES",
    "bloom_may_contain",
    "bloom_probes",
    "build_bloom",
    "filter_probes",
    "theoretical_fpr",
]

MAX_PROBES = 10
MAX_BITS_PER_KEY = 64
_MIN_BITS = 64

_crc32 = zlib.crc32
_reverse = operator.itemgetter(slice(None, None, -1))


def bloom_probes(bits_per_key: int) -> int:
    """The number of probes k a filter with ``bits_per_key`` uses (0 when there is no filter)."""
    if bits_per_key <= 0:
        return 0
    return max(1, min(MAX_PROBES, round(bits_per_key * math.log(2))))


def theoretical_fpr(bits_per_key: int) -> float:
    """The textbook false-positive rate ``(1 - e**(-k / bits_per_key)) ** k`` for our k."""
    if bits_per_key <= 0:
        return 1.0
    k = bloom_probes(bits_per_key)
    return float((1.0 - math.exp(-k / bits_per_key)) ** k)


def build_bloom(keys: Iterable[bytes], bits_per_key: int) -> bytes:
    """The encoded filter of ``keys`` (see the module docstring); ``b""`` if ``bits_per_key == 0``.

    Requires: ``0 <= bits_per_key <= MAX_BITS_PER_KEY``. Duplicate keys are harmless but are
    counted when sizing the filter, so pass each key once.
    """
    if not 0 <= bits_per_key <= MAX_BITS_PER_KEY:
        raise ValueError(f"bits_per_key must be in 0..{MAX_BITS_PER_KEY}, not {bits_per_key}")
    if bits_per_key == 0:
        return b""
    keys = keys if isinstance(keys, list) else list(keys)
    k = bloom_probes(bits_per_key)
    nbytes = (max(_MIN_BITS, len(keys) * bits_per_key) + 7) >> 3
    nbits = nbytes << 3
    h1s = list(map(_crc32, keys))
    h2s = list(map(_crc32, map(_reverse, keys)))
    cells = bytearray(b"0") * nbits  # one ASCII digit per bit, packed below
    set_cell = cells.__setitem__
    ones = repeat(0x31)  # b"1"
    to_bit = nbits.__rmod__
    positions = h1s
    for probe in range(k):
        deque(map(set_cell, map(to_bit, positions), ones), maxlen=0)
        if probe + 1 < k:
            positions = list(map(operator.add, positions, h2s))
    # Reversed, the digits read as a binary number whose bit p is cell p.
    bits = int(cells[::-1], 2).to_bytes(nbytes, "little")
    return bits + bytes((k,))


def bloom_may_contain(filter: bytes, key: bytes) -> bool:
    """False if ``key`` is certainly not in the set ``filter`` was built from; else True."""
    if not filter:
        return True
    nbits = (len(filter) - 1) << 3
    bit = _crc32(key) % nbits
    if not filter[bit >> 3] >> (bit & 7) & 1:
        return False  # about half of all absent keys stop here, before the second hash
    # (h1 + i * h2) mod nbits, stepped in residues so every int stays one machine digit.
    delta = _crc32(key[::-1]) % nbits
    for _ in range(filter[-1] - 1):
        bit = (bit + delta) % nbits
        if not filter[bit >> 3] >> (bit & 7) & 1:
            return False
    return True


def filter_probes(filter: bytes) -> int | None:
    """The k of an encoded filter, 0 for "no filter", or None if ``filter`` is not valid."""
    if not filter:
        return 0
    if len(filter) < 1 + (_MIN_BITS >> 3):
        return None
    k = filter[-1]
    return k if 1 <= k <= MAX_PROBES else None
