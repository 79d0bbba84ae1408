"""Render a benchmark report (the dict ``run.py`` builds and writes as JSON) as Markdown."""

from __future__ import annotations

import math
from typing import Any

import workloads as wl

SYSTEM_ORDER = ("quanta", "sqlite3", "aiosqlite", "plyvel", "lmdb")


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    a = abs(x)
    if isinstance(x, float) and x.is_integer() and a < 10_000 and a >= 1:
        x = int(x)
    if isinstance(x, int):
        return f"{x:,}"
    if a >= 10_000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a == 0:
        return "0"
    return f"{x:.3g}"


def _cell(cells: dict[str, Any], system: str, metric: str) -> str:
    c = cells.get(system)
    if c is None:
        return "·"  # not run on this system
    if c.get("skipped"):
        return "skipped"
    if c["errors"] and not c["samples"]:
        return "ERROR"
    text = fmt(c.get("median", {}).get(metric))
    return text + (" (!)" if c["errors"] else "")


def _ratio(v: dict[str, Any]) -> str:
    if v.get("anchor"):
        return f"{fmt(v.get('ratio'))}x {v['anchor']}" if v.get("ratio") is not None else "—"
    return fmt(v.get("value"))


def markdown(report: dict[str, Any], selected: list[wl.Workload]) -> str:
    m = report["machine"]
    lines = ["# QuantaDB benchmark results", ""]
    lines.append(f"Command: `{report['command']}` ({report['mode']} mode, {report['elapsed_s']} s)")
    lines.append("")
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['mem_total_gib']} GiB RAM, "
        f"Python {m['python']} ({m['python_impl']}), {m['platform']}; temp dir on {m['bench_fs']}, "
        f"fdatasync p50 {m['fdatasync_us_p50']} us; load average (1/5/15 min) {m.get('loadavg_at_start')} at "
        f"start, {report.get('loadavg_at_end')} at end."
    )
    lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".")
    lines.append("")
    lines.append(f"QuantaDB source: git {m.get('quanta_git', 'unknown')}.")
    if m.get("debug_env_removed"):
        lines.append(f"(Removed from the trials' environment: {', '.join(m['debug_env_removed'])}.)")
    p = report["params"]
    lines.append("")
    lines.append(
        f"N = {p['n']:,} records (keys `user:%08d`, ~100-byte msgpack values); median of {p['repeats']} "
        "repeats per row ("
        + ", ".join(f"{k} {v}" for k, v in p["repeats_by_group"].items())
        + "); each trial in a fresh process and a fresh directory; "
        "ratio = median(quanta) / median(anchor) in this run."
    )
    if report.get("quanta_skipped"):
        lines += ["", f"**QuantaDB was not measured: {report['quanta_skipped']}.**"]
    lines += ["", "## Summary", ""]
    header = (
        "| Workload | Unit | " + " | ".join(SYSTEM_ORDER) + " | Ratio | Target | Result | Best-of ratio | CPU ratio |"
    )
    lines += [header, "|" + "---|" * (len(SYSTEM_ORDER) + 7)]
    for w in selected:
        if w.name in ("floor",):
            continue
        data = report["workloads"][w.name]
        cells = data["systems"]
        values = " | ".join(_cell(cells, s, w.metric) for s in SYSTEM_ORDER)
        verdicts = data["verdicts"] or [None]
        for v in verdicts:
            if v is None:
                ratio, target, result, best, cpu = "—", "(context)", "", "", ""
            else:
                ratio, target, result = _ratio(v), v["target"], f"**{v['result']}**"
                best = f"{fmt(v['ratio_best'])}x" if v.get("ratio_best") is not None else "—"
                cpu = f"{fmt(v['ratio_cpu'])}x" if v.get("ratio_cpu") is not None else "—"
            lines.append(f"| {w.title} | {w.unit} | {values} | {ratio} | {target} | {result} | {best} | {cpu} |")
    lines.append("")
    lines.append(
        "Values are medians over repeats; Ratio = median(quanta) / median(anchor), which the verdict uses. "
        "Best-of ratio = best repeat of quanta / best repeat of the anchor (less sensitive to a noisy machine; "
        "context only). CPU ratio (read rows) = the same ratio in CPU time of the measuring thread, which the OS "
        "descheduling the process does not inflate (context only). `·` = not run on that system; "
        "`(!)` = some repeats failed (see Errors)."
    )

    if "floor" in report["workloads"]:
        fl = report["workloads"]["floor"]["systems"].get("python", {}).get("median", {})
        lines += ["", "## Pure-Python floor (same machine, same run)", "", "| Operation | Cost |", "|---|---|"]
        names = {
            "sorteddict_insert_100k_ms": ("SortedDict insert of 100k ascending keys", "ms"),
            "sorteddict_insert_ns": ("SortedDict insert, per key", "ns"),
            "sorteddict_get_ns": ("SortedDict get", "ns"),
            "dict_get_ns": ("dict get", "ns"),
            "msgpack_packb_ns": ("msgpack.packb of one value dict", "ns"),
            "msgpack_unpackb_ns": ("msgpack.unpackb of one value", "ns"),
            "await_coroutine_ns": ("await a trivial coroutine", "ns"),
            "async_for_item_ns": ("async for over an async generator, per item", "ns"),
            "sleep0_ns": ("await asyncio.sleep(0)", "ns"),
            "thread_hop_us": ("loop.run_in_executor round trip (thread hop)", "us"),
        }
        for key, (label, unit) in names.items():
            if key in fl:
                lines.append(f"| {label} | {fmt(fl[key])} {unit} |")

    lines += ["", "## Details (medians; every metric each trial reported)", ""]
    for w in selected:
        if w.name == "floor":
            continue
        data = report["workloads"][w.name]
        cells = data["systems"]
        systems = [s for s in SYSTEM_ORDER if s in cells]
        lines += [f"### {w.title} (`{w.name}`)", ""]
        metrics: list[str] = []
        for s in systems:
            metrics.extend(k for k in cells[s].get("median", {}) if k not in metrics)
        if not metrics:
            lines += ["No samples.", ""]
            continue
        lines.append("| metric | " + " | ".join(systems) + " |")
        lines.append("|---|" + "---|" * len(systems))
        for k in metrics:
            lines.append(f"| {k} | " + " | ".join(fmt(cells[s].get("median", {}).get(k)) for s in systems) + " |")
        spread = " | ".join(
            f"{fmt(cells[s]['spread']['min'])}..{fmt(cells[s]['spread']['max'])} (n={cells[s]['spread']['n']})"
            if cells[s].get("spread")
            else "—"
            for s in systems
        )
        lines.append(f"| {w.metric} range over repeats | {spread} |")
        lines.append("")

    errors = [
        (w.name, s, e)
        for w in selected
        for s, c in report["workloads"][w.name]["systems"].items()
        for e in c.get("errors", [])
    ]
    if errors:
        lines += ["## Errors", ""]
        seen = set()
        for name, system, e in errors:
            err = e if isinstance(e, str) else e.get("error")
            key = (system, err)
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"- `{name}` on {system}: {err}")
            tb = None if isinstance(e, str) else (e.get("traceback") or e.get("output"))
            if tb:
                lines += ["", "```", tb.strip()[-1500:], "```", ""]
    return "\n".join(lines) + "\n"
