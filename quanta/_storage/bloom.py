"""Bloom filters: one per SSTable, so a point read can skip a table that lacks the key.

Concurrency: pure functions over immutable ``bytes``; safe anywhere.

Encoding (the payload of an SSTable's filter block)::

    +----------------------------------+-----------+
    | bit array, nbytes bytes          | k: u8     |
    +----------------------------------+-----------+

    bit p of the array is bit (p & 7) of byte (p >> 3), least significant bit first
    nbits = 8 * nbytes, nbytes = ceil(max(64, n * bits_per_key) / 8), nbits < 2**32

An empty payload means "no filter" (``bits_per_key == 0``): every key may be present.

Key ``key`` sets (and a probe tests) k bits that form one arithmetic progression, wrapping
around the end of the array::

    h1, h2 = zlib.crc32(key), zlib.crc32(key[::-1])    CRC-32 of the key, and of its bytes reversed
    stride = nbits // max(k - 1, 1)
    start  = (h1 * nbits) >> 32                        in [0, nbits)
    step   = ((h2 * stride) >> 32) + 1                 in [1, stride]
    bits     (start + i * step) mod nbits  for i in 0..k-1

Worked example: the filter of ``[b"a"]`` at 10 bits per key has nbits = 64, k = 7 and stride
10. A one-byte key reads the same reversed, so h1 = h2 = 0xe8b7be43; start = 58, step = 10,
and the bits are 58, 4, 14, 24, 34, 44, 54: the filter is ``10 40 00 01 04 10 40 04 07``.

The hash functions, the probe formula, the bit order and the trailing k byte are part of the
on-disk format: changing any of them silently turns old filters into false negatives (lost
keys), so a change needs a new ``FormatVersion``.

Departures from the textbook (LevelDB's ``util/bloom.cc``), and why:

* The hash must be the same in every process (Python's ``hash()`` of bytes is salted per
  process) and C-fast. LevelDB derives the probe step from its 32-bit hash by rotation. Here
  that leaves 32 bits of entropy: with 100k keys two keys share all their probes with
  probability about n / 2**32 = 2.3e-5, 12x the false-positive rate that 32 bits per key
  should give; measured with a CRC, it was 11x-100x the theory at 16 and 32 bits per key. Two
  CRCs over different byte orders give 64 bits and measure at the theory
  (``benchmarks/bloom_fpr.py``). Rejected: blake2b/md5 (5-8x slower per key from Python),
  ``binascii.crc_hqx`` as h2 (16 bits; 3.5x the theory at 32 bits per key), ``adler32``
  seeded with h1 (cheaper, but 1.28x the theory over 56M probes of sequential keys).
* ``start`` and ``step`` use multiply-shift instead of ``mod``, and the step is at most
  ``stride`` so that a progression wraps around at most once. Building then needs no Python
  loop per key or per probe: the starts, steps and ends of all keys are computed at once on
  64-bit lanes of one big integer, each key's k bits are set by one C-level extended-slice
  assignment ``cells[start:end:step] = b"1" * k`` into a byte-per-bit scratch array, the part
  past the end is ORed back onto the start, and ``int(..., 2)`` packs the bits. Cost: only
  ``nbits * stride`` progressions exist, so the false-positive rate has a floor of about
  ``(k - 1) / (n * bits_per_key**2)``: negligible at 8 and 16 bits per key, +5% of the theory at
  32 bits per key and 100k keys, +45% at 10k keys (measured +24%).
* The number of probes is ``round(bits_per_key * ln 2)`` capped at ``MAX_PROBES`` = 10.
  The optimum for 32 bits per key is 22, but every probe of a present key is Python bytecode;
  past 10 the false-positive rate is already below 2e-6, where the filter's own cost dominates
  the rare wasted block read it saves.
* One filter covers the whole table (LevelDB keeps one per 2 KiB of data). The filter is read
  once when the table is opened and kept, so there is no reason to split it.
"""

from __future__ import annotations

import math
import operator
import sys
import zlib
from array import array
from collections import deque
from collections.abc import Iterable
from itertools import repeat
from typing import Literal

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
_ORDER: Literal["little", "big"] = sys.byteorder
_LOW32_LANE = array("Q", [0xFFFF_FFFF]).tobytes()
_ONE_LANE = array("Q", [1]).tobytes()
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
    n = len(keys)
    k = bloom_probes(bits_per_key)
    nbytes = (max(_MIN_BITS, n * bits_per_key) + 7) >> 3
    nbits = nbytes << 3
    if nbits >= 1 << 32:
        raise ValueError(f"a filter of {n} keys at {bits_per_key} bits per key is too large")
    stride = nbits // (k - 1 or 1)
    # One ASCII digit per bit, with room for progressions that run past the end (folded below).
    cells = bytearray(b"0") * (nbits + (k - 1) * stride)
    if n:
        # Every key's start, step and end at once, as 64-bit lanes of one big integer.
        h1 = _lanes(map(_crc32, keys))
        h2 = _lanes(map(_crc32, map(_reverse, keys)))
        low32 = int.from_bytes(_LOW32_LANE * n, _ORDER)
        starts = (h1 * nbits >> 32) & low32
        steps = ((h2 * stride >> 32) & low32) + int.from_bytes(_ONE_LANE * n, _ORDER)
        ends = starts + steps * k
        slices = map(slice, _unlanes(starts, n), _unlanes(ends, n), _unlanes(steps, n))
        deque(map(operator.setitem, repeat(cells), slices, repeat(b"1" * k)), maxlen=0)
        tail = len(cells) - nbits
        if tail:  # bits past the end wrap around: OR the tail into the head (0x30 | 0x31 == 0x31)
            head = int.from_bytes(cells[:tail], "little") | int.from_bytes(cells[nbits:], "little")
            cells[:tail] = head.to_bytes(tail, "little")
    del cells[nbits:]
    # Reversed, the digits read as a binary number whose bit p is cell p.
    bits = int(cells[::-1], 2).to_bytes(nbytes, "little")
    return bits + bytes((k,))


def bloom_may_contain(filter: bytes, key: bytes) -> bool:
    """False if ``key`` is certainly not in the set ``filter`` was built from; else True."""
    if not filter:
        return True
    nbits = (len(filter) - 1) << 3
    bit = _crc32(key) * nbits >> 32
    if not filter[bit >> 3] >> (bit & 7) & 1:
        return False  # about half of all absent keys stop here, before the second hash
    k = filter[-1]
    step = (_crc32(key[::-1]) * (nbits // (k - 1 or 1)) >> 32) + 1
    for _ in range(k - 1):
        bit = (bit + step) % nbits
        if not filter[bit >> 3] >> (bit & 7) & 1:
            return False
    return True


def _lanes(values: Iterable[int]) -> int:
    """One integer holding each value (< 2**64) in its own 64-bit lane."""
    return int.from_bytes(array("Q", values).tobytes(), _ORDER)


def _unlanes(lanes: int, n: int) -> array[int]:
    return array("Q", lanes.to_bytes(8 * n, _ORDER))


def filter_probes(filter: bytes) -> int | None:
    """The k of an encoded filter, 0 for "no filter", or None if ``filter`` is not valid."""
    if not filter:
        return 0
    if len(filter) < 1 + (_MIN_BITS >> 3):
        return None
    k = filter[-1]
    return k if 1 <= k <= MAX_PROBES else None
