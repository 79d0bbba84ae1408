"""Why table blocks are read with pread and not mmap: a measurement.

Reads random 4 KiB blocks of a 64 MiB file (in the page cache) with os.pread and with a
slice of an mmap, the two ways a block can reach Python as bytes. Prints the median per
read over several rounds. Run: python benchmarks/pread_vs_mmap.py
"""

from __future__ import annotations

import mmap
import os
import random
import statistics
import tempfile
import time

SIZE = 64 << 20
BLOCK = 4096
READS = 20_000


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "blob")
        with open(path, "wb") as f:
            f.write(os.urandom(SIZE))
        fd = os.open(path, os.O_RDONLY)
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        rng = random.Random(1)
        offsets = [rng.randrange(0, SIZE - BLOCK) // BLOCK * BLOCK for _ in range(READS)]
        for _ in range(2):  # warm the page cache and the mapping
            for off in offsets:
                os.pread(fd, BLOCK, off)
                mm[off : off + BLOCK]
        results: dict[str, list[float]] = {"pread": [], "mmap slice": []}
        for _ in range(7):
            t = time.perf_counter()
            for off in offsets:
                os.pread(fd, BLOCK, off)
            results["pread"].append((time.perf_counter() - t) / READS)
            t = time.perf_counter()
            for off in offsets:
                mm[off : off + BLOCK]
            results["mmap slice"].append((time.perf_counter() - t) / READS)
        mm.close()
        os.close(fd)
    for name, xs in results.items():
        print(f"{name:>10}: median {statistics.median(xs) * 1e6:.2f} us per 4 KiB block (page cache warm)")


if __name__ == "__main__":
    main()
