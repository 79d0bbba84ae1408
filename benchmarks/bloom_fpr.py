"""Measured false-positive rate and speed of the SSTable bloom filter (quanta/_storage/bloom.py).

Usage: ``python benchmarks/bloom_fpr.py [--keys 100000] [--probes 1000000] [--bits 8,16,32]``

For each bits-per-key tier and two key shapes (sequential ``b"user:%08d"`` keys, probed with
the following, absent, sequential keys; and random 16-byte keys, probed with other random
keys) it prints k, the measured and theoretical false-positive rates, their ratio, and the
build and probe time per key. At 32 bits per key the expected count is ~2 per million probes,
so the measured rate needs ``--probes 20000000`` or more to mean much.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta._storage.bloom import bloom_may_contain, bloom_probes, build_bloom, theoretical_fpr


def key_sets(n: int, probes: int) -> list[tuple[str, list[bytes], list[bytes]]]:
    rng = random.Random(42)
    sequential = [b"user:%08d" % i for i in range(n)]
    absent_sequential = [b"user:%08d" % i for i in range(n, n + probes)]
    rand = [rng.randbytes(16) for _ in range(n)]
    present = set(rand)
    absent_rand = [k for k in (rng.randbytes(16) for _ in range(probes)) if k not in present]
    return [("user:%08d", sequential, absent_sequential), ("random16", rand, absent_rand)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=1_000_000)
    parser.add_argument("--bits", default="8,16,32")
    args = parser.parse_args()
    tiers = [int(b) for b in args.bits.split(",")]

    print(f"{args.keys} keys, {args.probes} absent probes per row; Python {sys.version.split()[0]}")
    header = f"{'keys':>10} {'bits/key':>8} {'k':>3} {'measured FPR':>13} {'theory FPR':>11} {'ratio':>6}"
    print(header + f" {'build us/key':>12} {'probe us/key':>12} {'hit us/key':>10}")
    for name, keys, absent in key_sets(args.keys, args.probes):
        for bits in tiers:
            t0 = time.perf_counter()
            flt = build_bloom(keys, bits)
            t1 = time.perf_counter()
            false_positives = sum(map(bloom_may_contain, [flt] * len(absent), absent))
            t2 = time.perf_counter()
            assert all(bloom_may_contain(flt, k) for k in keys), "false negative"
            t3 = time.perf_counter()
            fpr = false_positives / len(absent)
            theory = theoretical_fpr(bits)
            ratio = fpr / theory if theory else math.nan
            print(
                f"{name:>10} {bits:>8} {bloom_probes(bits):>3} {fpr:>13.3e} {theory:>11.3e} {ratio:>6.2f}"
                f" {(t1 - t0) / len(keys) * 1e6:>12.3f} {(t2 - t1) / len(absent) * 1e6:>12.3f}"
                f" {(t3 - t2) / len(keys) * 1e6:>10.3f}"
            )


if __name__ == "__main__":
    main()
