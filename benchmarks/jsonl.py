"""Throughput and peak memory of the JSON Lines export and import (quanta/_transfer).

Usage: ``python benchmarks/jsonl.py [--count 1000000] [--cache-mib 64] [--dir DIR] [--keep]``

The ``ops_export*`` / ``ops_import*`` rows of ``run.py`` measure the same phases at 100k records
against a sqlite3 anchor; this script is the QuantaDB-only form for large counts (the issue asks
for 1M), with the suite's code (``ops_model.py``, ``ops_quanta.py``).

Fills a database with ``count`` records of a typical entity (``ops_quanta.User``: an auto key,
a unique email, an indexed city, an int, a list of str, a datetime and an Any dict), then, each
in its own child process so that each peak RSS is its own: exports it (``db.export_jsonl``),
imports the file into an empty database (``db.import_jsonl``, both passes). Prints one JSON line
per phase: seconds, records/s, MB/s of the file and the child's memory (``peak_rss_mib``, the
phase's own peak RSS: ``VmHWM`` reset when the phase starts; ``rss_growth_mib``, that peak
minus the RSS when the phase began; see ``ops_model.transfer_child``); the fill's is shown for
scale (it holds one put_many batch at a time). The databases use ``durability="os"`` (an fsync
per commit would measure the disk, not the transfer) and a block cache of ``--cache-mib`` (the
default 64 MiB; a scan of a large database fills it, so it is part of every phase's peak).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import ops_model as om  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="where the databases and the file go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the directory")
    parser.add_argument("--cache-mib", type=int, default=64, help="block cache of each database (MiB)")
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="quanta-jsonl-bench-")
    os.makedirs(root, exist_ok=True)
    src, dst, file = os.path.join(root, "src"), os.path.join(root, "dst"), os.path.join(root, "export.jsonl")
    os.environ["QUANTA_BENCH_CACHE_MIB"] = str(args.cache_mib)
    try:
        for phase, path in (("fill", src), ("export", src), ("import", dst)):
            result = om.run_transfer("quanta", phase, path, file, args.count, timeout=3600)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
