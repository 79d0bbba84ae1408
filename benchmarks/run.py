"""QuantaDB benchmark suite: QuantaDB and its anchors on the same workloads, in the same run.

Usage::

    python benchmarks/run.py                    # full run (9-11 min on 2 cores), includes 1M keys
    python benchmarks/run.py --quick            # N=20k, fewer repeats, no 1M row (~1 min)
    python benchmarks/run.py --only get,scan    # rows by name or name prefix
    python benchmarks/run.py --json out.json --markdown out.md

Rows (for ``--only``): floor, bulk_insert, get, get_reopen, get_many, get_many_reopen,
scan_range, scan_range_reopen, scan_full, scan_full_reopen, write_sync, write_concurrent,
reopen, loop_lag, change_latency_{os,sync}_{iter,rx}, fanout_{0,10,1000,consumed},
txn_{sync,os}_{uniform,hot}_{1,8}, entity_bulk, entity_get, entity_get_many, entity_range_query,
entity_composite, entity_in, entity_scan_filter, live_latency_{1,100,10000}, live_write_10000,
live_big_result, live_naive_{1,100,10000}, ops_backup, ops_backup_commit, ops_backup_loop_lag, ops_backup_copy,
ops_export, ops_export_rss, ops_import, ops_import_rss, ops_repair, ops_reader_lag, ops_reader_cost,
big (prefixes work: ``--only change_latency,fanout,txn``, ``--only entity``,
``--only live`` or ``--only ops``).
Exit status: 0, or 1 if a trial failed or answered wrongly, or 2 with ``--strict`` when a
(non-stretch) target FAILs.

How it measures
---------------
Each (workload group, system, repeat) is a *trial* run in a fresh child process with a fresh
temporary directory: no heap, GC or block-cache state carried from one system to the next, a
per-trial ``maxrss``, and a hung trial can be killed (its process group only) without losing the
run. (The OS page cache is shared, as it is for any application.) Repeats interleave the
systems in rotating order, so slow drift of a noisy machine hits every system alike. Each row
reports the MEDIAN over repeats; the ratio is ``median(quanta) / median(anchor)`` from the same
run. Beside it: the best-of ratio (best repeat vs best repeat) and, for read rows, the ratio in
CPU time of the measuring thread, both less sensitive to a loaded machine. The dataset (N records, see
``_harness.py``) is generated once per run and loaded by every trial.

Anchors: sqlite3 and aiosqlite (WAL, ``synchronous=FULL``), plyvel/LevelDB (``sync=True``),
lmdb (sync). Each anchor module's docstring gives its exact configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness  # noqa: E402
import workloads as wl  # noqa: E402

# ------------------------------------------------------------------------------------ child side


def run_trial(spec_path: str) -> int:
    """Child process entry: run one trial, write ``{workload: metrics, "_info": ...}`` as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    trial = _harness.Trial(**spec)
    out_path = spec_path + ".out"
    try:
        module = importlib.import_module(wl.module_for(trial.system, trial.group))
        fn = module.GROUPS[trial.group]
        trial.records()  # load before timing; the same objects for every system
        gc.collect()
        gc.freeze()  # the dataset is not the system's garbage: keep it out of GC scans
        result = fn(trial)
        Path(out_path).write_text(json.dumps({"ok": True, "result": result}, default=repr))
        return 0
    except BaseException as exc:
        Path(out_path).write_text(
            json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        )
        return 1


# ----------------------------------------------------------------------------------- parent side

#: Debug switches that make QuantaDB check expensive invariants; benchmarks measure the
#: production configuration, so trials run without them (the report says if they were set).
DEBUG_ENV = ("QUANTA_INVARIANTS", "QUANTA_LONG")
CHILD_ENV = {k: v for k, v in os.environ.items() if k not in DEBUG_ENV}


def _spawn(spec: dict[str, Any], root: Path, timeout: float) -> dict[str, Any]:
    name = f"{spec['group']}-{spec['system']}-{spec['repeat']}"
    spec_path = root / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    out_path = Path(str(spec_path) + ".out")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "run.py"), "--_trial", str(spec_path)],
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own process group: a timeout kills the trial and its workers only
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return {
            "ok": False,
            "error": f"timeout after {timeout:.0f} s",
            "output": output.decode(errors="replace")[-2000:],
        }
    if out_path.exists():
        res: dict[str, Any] = json.loads(out_path.read_text())
    else:
        res = {"ok": False, "error": f"child exited with code {proc.returncode} without a result"}
    if not res.get("ok"):
        res["output"] = output.decode(errors="replace")[-2000:]
    return res


def _quanta_available() -> str | None:
    """None when ``quanta.open`` exists, else why not."""
    try:
        import quanta
    except Exception as exc:
        return f"import quanta failed: {exc!r}"
    if not callable(getattr(quanta, "open", None)):
        return "quanta.open does not exist yet (engine not landed)"
    return None


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def aggregate(samples: list[dict[str, Any]]) -> dict[str, float]:
    keys: list[str] = []
    for s in samples:
        keys.extend(k for k in s if k not in keys)
    out: dict[str, float] = {}
    for k in keys:
        vals = [s[k] for s in samples if _numeric(s.get(k))]
        if vals:
            out[k] = _harness.median(vals)
    return out


def expectations(params: dict[str, Any], records: list[tuple[bytes, bytes]]) -> dict[str, dict[str, int]]:
    """What a correct system must report for each row's sanity counters."""
    n = len(records)
    index = {k: i for i, (k, _v) in enumerate(records)}
    starts = _harness.random_keys(records, params["scans"], 42 + 7)
    range_rows = sum(min(params["scan_len"], n - index[s]) for s in starts)
    total = params["conc_writers"] * params["conc_per_writer"]
    exp: dict[str, dict[str, int]] = {}
    for suffix in ("", "_reopen"):
        exp["get" + suffix] = {"misses": 0}
        exp["get_many" + suffix] = {"misses": 0}
        exp["scan_range" + suffix] = {"rows": range_rows}
        exp["scan_full" + suffix] = {"rows": n}
    for name in ("get", "get_many", "scan_range", "scan_full"):
        exp[name]["tables"] = 0  # memtable-resident rows: QuantaDB reports its table count
    exp["get_many"]["returned"] = exp["get_many_reopen"]["returned"] = params["get_ops"]
    exp["write_concurrent"] = {"stored": total}
    for name in wl.BY_NAME:
        if name.startswith("change_latency_"):
            exp[name] = {"mismatches": 0}
        elif name.startswith("txn_"):
            exp[name] = {"lost_updates": 0}
        elif name.startswith("live_") and name != "live_write_10000":
            exp[name] = {"mismatches": 0}
    # Fan-out: idle subscribers on other prefixes receive nothing; the consumed one, everything.
    commits = params["fanout_commits"] * params["fanout_rounds"]
    # table_files = 0: nothing was flushed while measuring.
    exp["fanout_0"] = {"published": 0, "subscribers": 0, "table_files": 0}
    exp["fanout_10"] = {"published": 0, "subscribers": 10, "table_files": 0}
    exp["fanout_1000"] = {"published": 0, "subscribers": 1000, "table_files": 0}
    exp["fanout_consumed"] = {"published": commits, "received": commits, "subscribers": 1, "table_files": 0}
    # Operations rows: every backup opened holds every loaded key; the export and the import
    # handled every user (the import's database holds them); repair rebuilt 2 indexes of every
    # user; every reader process reported.
    for name in ("ops_backup", "ops_backup_commit", "ops_backup_loop_lag", "ops_backup_copy"):
        exp[name] = {"bad_backups": 0, "backups": params["ops_backup_runs"]}
    users = params["ops_users"]
    for name in ("ops_export", "ops_export_rss", "ops_import", "ops_import_rss"):
        exp[name] = {"records": users}
    exp["ops_repair"] = {"records": users, "entries": 2 * users, "indexes": 2, "integrity_ok": 1}
    exp["ops_reader_lag"] = {"readers": 4, "commits": params["ops_lag_commits"]}
    exp["ops_reader_cost"] = {"readers": 4}
    return exp


def check(sample: dict[str, Any], expected: dict[str, int]) -> str | None:
    """A wrong answer makes the sample invalid: it is reported as an error, never timed."""
    bad = [f"{k}={sample.get(k)!r} (expected {v})" for k, v in expected.items() if k in sample and sample[k] != v]
    return "wrong result: " + ", ".join(bad) if bad else None


def evaluate(w: wl.Workload, cells: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per target: the ratio (or absolute value) and PASS/FAIL."""
    verdicts = []
    qmed = cells.get(wl.QUANTA, {}).get("median", {})
    for t in w.targets:
        q = qmed.get(t.metric or w.metric)
        v: dict[str, Any] = {"target": t.label, "anchor": t.anchor, "limit": t.limit, "stretch": t.stretch}
        if t.plus:  # the limit includes a quantity measured in the same trials (e.g. fsync time)
            extra = qmed.get(t.plus)
            v["limit"] = t.limit + extra if _numeric(extra) else None
            v["target"] = f"{t.label} = {v['limit']:.0f}" if v["limit"] is not None else t.label
        if t.anchor:
            a = cells.get(t.anchor, {}).get("median", {}).get(w.metric)
            value = q / a if (q is not None and a) else None
            v["ratio"] = value
            # Best-of-repeats ratio: on a noisy machine the fastest repeat of each side is the
            # least disturbed one. Reported beside the median ratio, never instead of it.
            qmin = cells.get(wl.QUANTA, {}).get("spread", {})
            amin = cells.get(t.anchor, {}).get("spread", {})
            key = "max" if w.higher_is_better else "min"
            if qmin and amin and amin.get(key):
                v["ratio_best"] = qmin[key] / amin[key]
            if w.cpu_metric:
                qc = cells.get(wl.QUANTA, {}).get("median", {}).get(w.cpu_metric)
                ac = cells.get(t.anchor, {}).get("median", {}).get(w.cpu_metric)
                if qc is not None and ac:
                    v["ratio_cpu"] = qc / ac
        else:
            value = q
            v["value"] = value
        if value is None or v["limit"] is None:
            v["result"] = "n/a"
        else:
            ok = value >= v["limit"] if t.at_least else value <= v["limit"]
            v["result"] = "PASS" if ok else "FAIL"
        verdicts.append(v)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller N, fewer repeats, no 1M-key row (< 3 min)")
    ap.add_argument("--json", metavar="PATH", help="write all samples, medians and verdicts as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="also write the Markdown report to PATH")
    ap.add_argument("--only", metavar="NAMES", help="comma-separated workload names or prefixes")
    ap.add_argument("--systems", metavar="NAMES", help="comma-separated subset of: " + ", ".join(wl.ALL))
    ap.add_argument("--repeats", type=int, help="repeats per row (default 5, quick 3)")
    ap.add_argument("-n", type=int, help="records in the dataset (default 100k, quick 20k)")
    big = ap.add_mutually_exclusive_group()
    big.add_argument("--big", dest="big", action="store_true", default=None, help="include the 1M-key row")
    big.add_argument("--no-big", dest="big", action="store_false", help="skip the 1M-key row")
    ap.add_argument("--ops-backup-mib", type=int, help="size of the backup rows' database (default 64, quick 16)")
    ap.add_argument("--ops-users", type=int, help="users in the export/import/repair rows (default 100k, quick 20k)")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where temp databases go (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("--strict", action="store_true", help="exit 2 when a (non-stretch) target FAILs")
    ap.add_argument("--_trial", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._trial:
        return run_trial(args._trial)

    params = dict(wl.QUICK_PARAMS if args.quick else wl.FULL_PARAMS)
    if args.n:
        params["n"] = params["get_ops"] = args.n
    if args.ops_backup_mib:
        params["ops_backup_mib"] = args.ops_backup_mib
    if args.ops_users:
        params["ops_users"] = args.ops_users
    if args.repeats:
        params["repeats"] = args.repeats
        # Every row gets R repeats, except the long ones (loop lag, 1M keys, floor): at most R.
        params["repeats_by_group"] = {
            k: min(v, args.repeats) for k, v in params["repeats_by_group"].items() if k in ("loop_lag", "big", "floor")
        }
    selected = wl.select(args.only.split(",") if args.only else None, args.quick, args.big)
    systems_filter = set(args.systems.split(",")) if args.systems else None
    skip_reason = _quanta_available()

    root = Path(tempfile.mkdtemp(prefix="quanta-bench-", dir=args.dir))
    started = time.time()
    machine = _harness.machine_info(str(root))
    machine["debug_env_removed"] = [k for k in DEBUG_ENV if k in os.environ]
    _log(
        f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"fdatasync p50 {machine['fdatasync_us_p50']} us on {machine['bench_fs']}"
    )
    if skip_reason:
        _log(f"quanta skipped: {skip_reason}")
    dataset = root / "dataset.msgpack"
    _harness.write_dataset(dataset, params["n"], seed=42)
    expected = expectations(params, _harness.load_dataset(dataset))

    results: dict[str, dict[str, Any]] = {w.name: {} for w in selected}
    infos: dict[str, dict[str, list[Any]]] = {}
    try:
        for group in wl.GROUP_ORDER:
            members = [w for w in selected if w.group == group]
            if not members:
                continue
            systems = [s for s in dict.fromkeys(s for w in members for s in w.systems)]
            if systems_filter:
                systems = [s for s in systems if s in systems_filter or s == "python"]
            repeats = params["repeats_by_group"].get(group, params["repeats"])
            for r in range(repeats):
                order = systems[r % len(systems) :] + systems[: r % len(systems)] if systems else []
                for system in order:
                    cells = [w for w in members if system in w.systems]
                    if system == wl.QUANTA and skip_reason:
                        for w in cells:
                            results[w.name].setdefault(system, {"samples": [], "errors": []})["skipped"] = skip_reason
                        continue
                    workdir = root / f"{group}-{system}-{r}"
                    spec = dataclasses.asdict(
                        _harness.Trial(
                            group=group,
                            system=system,
                            repeat=r,
                            workloads=[w.name for w in cells],
                            params=params,
                            dataset=str(dataset),
                            workdir=str(workdir),
                        )
                    )
                    spec.pop("_records", None)
                    t = time.time()
                    res = _spawn(spec, root, params["timeout_s"])
                    shutil.rmtree(workdir, ignore_errors=True)
                    status = "ok" if res.get("ok") else "ERROR " + res.get("error", "")
                    _log(f"[{group}] repeat {r + 1}/{repeats} {system:<9} {time.time() - t:6.1f} s  {status}")
                    for w in cells:
                        cell = results[w.name].setdefault(system, {"samples": [], "errors": []})
                        if res.get("ok"):
                            sample = res["result"].get(w.name)
                            problem = "trial returned no result for this row" if sample is None else None
                            problem = problem or check(sample, expected.get(w.name, {}))
                            if problem:
                                cell["errors"].append(problem)
                                _log(f"    {w.name}: {problem}")
                            else:
                                cell["samples"].append(sample)
                        else:
                            cell["errors"].append(
                                {
                                    "error": res.get("error"),
                                    "traceback": res.get("traceback"),
                                    "output": res.get("output"),
                                }
                            )
                    if res.get("ok") and "_info" in res["result"]:
                        infos.setdefault(group, {}).setdefault(system, []).append(res["result"]["_info"])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    for w in selected:
        for cell in results[w.name].values():
            cell["median"] = aggregate(cell["samples"])
            prim = [s[w.metric] for s in cell["samples"] if _numeric(s.get(w.metric))]
            if prim:
                cell["spread"] = {"min": min(prim), "max": max(prim), "n": len(prim)}
    verdicts = {w.name: evaluate(w, results[w.name]) for w in selected}
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *(argv or sys.argv[1:])])
    report = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "params": params,
        "machine": machine,
        "quanta_skipped": skip_reason,
        "elapsed_s": round(time.time() - started, 1),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "workloads": {
            w.name: {
                "title": w.title,
                "group": w.group,
                "metric": w.metric,
                "unit": w.unit,
                "higher_is_better": w.higher_is_better,
                "systems": results[w.name],
                "verdicts": verdicts[w.name],
            }
            for w in selected
        },
        "info": infos,
    }
    import report as rpt

    text = rpt.markdown(report, selected)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(_strict_json(report), indent=1, default=repr, allow_nan=False))
    _log(f"done in {report['elapsed_s']} s")
    failures = sum(1 for w in selected for c in results[w.name].values() if c["errors"])
    if failures:
        return 1
    missed = [v for w in selected for v in verdicts[w.name] if v["result"] == "FAIL" and not v["stretch"]]
    return 2 if (args.strict and missed) else 0


def _strict_json(value: Any) -> Any:
    """NaN/inf (an empty percentile, say) become null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
