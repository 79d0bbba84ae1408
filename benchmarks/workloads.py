"""The benchmark rows: what each measures, on which systems, and the target it is judged against.

A *workload* is one row of the results table. Workloads that share setup run in one *group*
(one child process per system per repeat): the read rows all use one loaded database, first
memtable-resident, then after a reopen. Targets compare QuantaDB's median with an anchor's
median on the same row of the same run (a ratio), or with an absolute number.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

QUANTA = "quanta"
ANCHORS = ("sqlite3", "aiosqlite", "plyvel", "lmdb")
ALL = (QUANTA, *ANCHORS)
SYSTEM_MODULES = {
    "quanta": "sys_quanta",
    "sqlite3": "sys_sqlite3",
    "aiosqlite": "sys_aiosqlite",
    "plyvel": "sys_plyvel",
    "lmdb": "sys_lmdb",
    "python": "sys_floor",
}
#: The operations groups (issue 14) keep QuantaDB's and sqlite3's sides in modules of their own
#: (``ops_quanta.py``, ``ops_sqlite.py``); aiosqlite's and lmdb's are in their ``sys_*`` modules.
OPS_MODULES = {"quanta": "ops_quanta", "sqlite3": "ops_sqlite"}


def module_for(system: str, group: str) -> str:
    """The module whose ``GROUPS[group]`` runs ``system``'s trial of ``group``."""
    if group.startswith("ops_") and system in OPS_MODULES:
        return OPS_MODULES[system]
    return SYSTEM_MODULES[system]


@dataclass(frozen=True)
class Target:
    """``quanta <op> limit`` (absolute) or ``quanta / anchor <op> limit`` (ratio)."""

    limit: float
    anchor: str | None = None
    at_least: bool = False  # True: quanta must be >= limit (throughput); False: <= limit
    stretch: bool = False
    #: judge this metric instead of the row's primary one (absolute targets only)
    metric: str | None = None
    #: absolute targets only: add QuantaDB's median of this metric (measured in the same
    #: trials, e.g. the fsync time) to ``limit``
    plus: str | None = None

    @property
    def label(self) -> str:
        op = ">=" if self.at_least else "<="
        if self.anchor:
            text = f"{op} {self.limit:g}x {self.anchor}"
        elif self.plus:
            text = f"{op} {self.plus} + {self.limit:g}"
        else:
            text = f"{op} {self.limit:g}"
        if self.metric:
            text = f"{self.metric} {text}"
        return f"{text} (stretch)" if self.stretch else text


@dataclass(frozen=True)
class Workload:
    name: str
    group: str
    title: str
    metric: str  # the primary metric key in the trial result
    unit: str
    systems: tuple[str, ...]
    targets: tuple[Target, ...] = ()
    higher_is_better: bool = False
    in_quick: bool = True
    #: the same measurement in CPU time of the measuring thread (read rows): see _harness.cpu_ns
    cpu_metric: str | None = None


WORKLOADS: tuple[Workload, ...] = (
    Workload("floor", "floor", "Pure-Python floor (context)", "sorteddict_insert_100k_ms", "ms", ("python",)),
    Workload(
        "bulk_insert",
        "bulk",
        "Bulk insert N, durable, one batch",
        "total_ms",
        "ms",
        ALL,
        (Target(1.0, "sqlite3"), Target(1.5, "lmdb", stretch=True)),
    ),
    Workload("get", "reads", "Point get, memtable-resident", "us_per_op", "us/op", ALL, (Target(2.0, "lmdb"),)),
    Workload(
        "get_reopen",
        "reads",
        "Point get after reopen (tables, warm cache)",
        "us_per_op",
        "us/op",
        ALL,
        (Target(3.0, "lmdb"),),
    ),
    Workload("get_many", "reads", "get_many of N keys, memtable", "us_per_key", "us/key", ALL, (Target(1.0),)),
    Workload(
        "get_many_reopen", "reads", "get_many of N keys after reopen", "us_per_key", "us/key", ALL, (Target(1.0),)
    ),
    Workload(
        "scan_range",
        "reads",
        "Range scan, 1,000 keys from random start, memtable",
        "us_per_scan",
        "us/scan",
        ALL,
        (Target(1.5, "lmdb"),),
    ),
    Workload(
        "scan_range_reopen",
        "reads",
        "Range scan, 1,000 keys, after reopen",
        "us_per_scan",
        "us/scan",
        ALL,
        (Target(1.5, "lmdb"),),
    ),
    Workload("scan_full", "reads", "Full scan of N, memtable", "total_ms", "ms", ALL, (Target(1.5, "lmdb"),)),
    Workload(
        "scan_full_reopen", "reads", "Full scan of N, after reopen", "total_ms", "ms", ALL, (Target(1.5, "lmdb"),)
    ),
    Workload(
        "write_sync",
        "write_sync",
        "Single synced write, sequential (median latency)",
        "p50_us",
        "us",
        ALL,
        (Target(1.5, "sqlite3"),),
    ),
    Workload(
        "write_concurrent",
        "write_concurrent",
        "8 concurrent writers, synced puts (throughput)",
        "writes_per_s",
        "writes/s",
        ALL,
        (Target(3.0, "sqlite3", at_least=True),),
        higher_is_better=True,
    ),
    Workload(
        "reopen",
        "reopen",
        "Open after N puts + close",
        "open_ms",
        "ms",
        (QUANTA, "sqlite3", "plyvel", "lmdb"),
        (Target(50.0),),
    ),
    Workload(
        "loop_lag",
        "loop_lag",
        "Event-loop lag p99 during sustained writes + flush/compaction",
        "p99_ms",
        "ms",
        (QUANTA,),
        (Target(5.0),),
    ),
    Workload(
        "big",
        "big",
        "1M keys in batches of 10k, durable (insert time)",
        "insert_s",
        "s",
        (QUANTA, "sqlite3", "plyvel", "lmdb"),
        in_quick=False,
    ),
    *(
        Workload(
            f"change_latency_{dur}_{face}",
            "changes",
            f"Change latency p99, durability={dur}, {label}: put returned -> ChangeSet received",
            "p99_us",
            "us",
            (QUANTA, "aiosqlite"),
            (Target(1000.0),) if dur == "os" else (Target(500.0, plus="fsync_p50_us"),),
        )
        for dur in ("os", "sync")
        for face, label in (("iter", "async iterator"), ("rx", "Rx observer"))
    ),
    Workload(
        "fanout_0",
        "fanout",
        "Commit throughput, durability=os, one writer, 0 subscribers",
        "commits_per_s",
        "commits/s",
        (QUANTA, "aiosqlite"),
        higher_is_better=True,
    ),
    Workload(
        "fanout_10",
        "fanout",
        "Commit throughput, durability=os, 10 idle subscribers on other prefixes",
        "commits_per_s",
        "commits/s",
        (QUANTA,),
        higher_is_better=True,
    ),
    Workload(
        "fanout_1000",
        "fanout",
        "Commit throughput, durability=os, 1,000 idle subscribers on other prefixes",
        "commits_per_s",
        "commits/s",
        (QUANTA,),
        (Target(0.8, at_least=True, metric="vs_0_subscribers"),),
        higher_is_better=True,
    ),
    Workload(
        "fanout_consumed",
        "fanout",
        "Commit throughput, durability=os, 1 consumed subscriber on the written prefix",
        "commits_per_s",
        "commits/s",
        (QUANTA,),
        higher_is_better=True,
    ),
    *(
        Workload(
            f"txn_{dur}_{space}_{tasks}",
            "txn",
            f"Read-modify-write transactions, durability={dur}, {label}, {tasks} task{'s' if tasks > 1 else ''}",
            "tx_per_s",
            "tx/s",
            (QUANTA, "sqlite3", "aiosqlite", "lmdb"),
            higher_is_better=True,
        )
        for dur in ("sync", "os")
        for space, label in (("uniform", "10k keys"), ("hot", "100 hot keys"))
        for tasks in (1, 8)
    ),
    # Entity rows (entities_model.py): the same users, indexes and queries in QuantaDB
    # (@quanta.entity, db.collection) and in a sqlite3 table; reads return objects on both sides.
    Workload(
        "entity_bulk",
        "entity_bulk",
        "Entities: bulk insert of N users, one secondary index, one put_many, durable",
        "total_ms",
        "ms",
        (QUANTA, "sqlite3"),
        (Target(820.0), Target(1.0, "sqlite3")),
    ),
    Workload(
        "entity_get",
        "entity_reads",
        "Entities: get by primary key, warm (tables, cached)",
        "us_per_op",
        "us/op",
        (QUANTA, "sqlite3"),
        (Target(5.0),),
        cpu_metric="cpu_us_per_op",
    ),
    Workload(
        "entity_get_many",
        "entity_reads",
        "Entities: get_many of N random primary keys",
        "us_per_entity",
        "us/entity",
        (QUANTA, "sqlite3"),
        (Target(2.0), Target(0.8, stretch=True)),
        cpu_metric="cpu_us_per_entity",
    ),
    Workload(
        "entity_range_query",
        "entity_reads",
        "Entities: indexed range query (age BETWEEN, by age), 1,000 entities",
        "ms_per_query",
        "ms/query",
        (QUANTA, "sqlite3"),
        (Target(4.2), Target(1.5, "sqlite3")),
        cpu_metric="cpu_ms_per_query",
    ),
    Workload(
        "entity_composite",
        "entity_reads",
        "Entities: composite-index query (city == c and age >= y), ~N/100 entities",
        "ms_per_query",
        "ms/query",
        (QUANTA, "sqlite3"),
        cpu_metric="cpu_ms_per_query",
    ),
    Workload(
        "entity_in",
        "entity_reads",
        "Entities: in_ query over 3 cities (index on city, age), ~N/3 entities",
        "ms_per_query",
        "ms/query",
        (QUANTA, "sqlite3"),
        cpu_metric="cpu_ms_per_query",
    ),
    Workload(
        "entity_scan_filter",
        "entity_reads",
        "Entities: non-indexed filter (name == x), full scan of N, ~N/90 entities",
        "ms_per_query",
        "ms/query",
        (QUANTA, "sqlite3"),
        cpu_metric="cpu_ms_per_query",
    ),
)

# Live-query rows (live_model.py): QuantaDB's live queries and the naive strategy (re-run
# every query on each commit), QuantaDB only, in one trial.
WORKLOADS += (
    *(
        Workload(
            f"live_latency_{q}",
            "live",
            f"Live queries: commit -> observer latency p99, {q:,} live quer{'y' if q == 1 else 'ies'} open",
            "p99_us",
            "us",
            (QUANTA,),
            {1: (), 100: (Target(1000.0),), 10_000: (Target(5000.0),)}[q],
        )
        for q in (1, 100, 10_000)
    ),
    Workload(
        "live_write_10000",
        "live",
        "Live queries: cost of a write with 10,000 live queries open (one affected), vs none",
        "us_per_write",
        "us/write",
        (QUANTA,),
        (Target(2.0, metric="vs_no_live_queries"),),
    ),
    Workload(
        "live_big_result",
        "live",
        "Live queries: commit -> diff latency p99, one watch_diff over a 20,000-row result",
        "p99_us",
        "us",
        (QUANTA,),
    ),
    *(
        Workload(
            f"live_naive_{q}",
            "live",
            f"Naive strategy (re-run every query per commit): latency p99, {q:,} quer{'y' if q == 1 else 'ies'}",
            "p99_us",
            "us",
            (QUANTA,),
        )
        for q in (1, 100, 10_000)
    ),
)

# Operations rows (issue 14; ops_model.py, ops_quanta.py, ops_sqlite.py). Backup: a database of
# ``ops_backup_mib`` MiB and a writer committing synced single puts during the backups. plyvel
# is left out: LevelDB has no online backup (only a copy of a closed database, or RocksDB's
# BackupEngine/Checkpoint, which plyvel does not expose).
_BACKUP_SYSTEMS = (QUANTA, "sqlite3", "aiosqlite", "lmdb")
WORKLOADS += (
    Workload(
        "ops_backup",
        "ops_backup",
        "Online backup (64 MiB default, --ops-backup-mib) while a writer commits, dest beside the DB "
        "(QuantaDB hard-links its tables; plyvel: no online backup)",
        "mb_per_s",
        "MB/s",
        _BACKUP_SYSTEMS,
        higher_is_better=True,
    ),
    Workload(
        "ops_backup_commit",
        "ops_backup",
        "Worst commit latency of the writer during those backups (synced single puts)",
        "commit_max_ms",
        "ms",
        _BACKUP_SYSTEMS,
    ),
    Workload(
        "ops_backup_loop_lag",
        "ops_backup",
        "Max event-loop lag during those backups (asyncio systems)",
        "loop_lag_max_ms",
        "ms",
        (QUANTA, "aiosqlite"),
    ),
    Workload(
        "ops_backup_copy",
        "ops_backup",
        "Online backup while a writer commits, dest on another file system (/dev/shm: every system copies)",
        "mb_per_s",
        "MB/s",
        _BACKUP_SYSTEMS,
        higher_is_better=True,
    ),
    Workload(
        "ops_export",
        "ops_transfer",
        "JSON Lines export of ops_users users (100k default; sqlite3: SELECT + json.dumps per row)",
        "records_per_s",
        "records/s",
        (QUANTA, "sqlite3"),
        higher_is_better=True,
    ),
    Workload(
        "ops_export_rss",
        "ops_transfer",
        "JSON Lines export: peak RSS of the export process over its RSS at the start (absolute peak in details)",
        "rss_growth_mib",
        "MiB",
        (QUANTA, "sqlite3"),
    ),
    Workload(
        "ops_import",
        "ops_transfer",
        "JSON Lines import into an empty DB (sqlite3: json.loads + executemany, one transaction)",
        "records_per_s",
        "records/s",
        (QUANTA, "sqlite3"),
        higher_is_better=True,
    ),
    Workload(
        "ops_import_rss",
        "ops_transfer",
        "JSON Lines import: peak RSS of the import process over its RSS at the start (absolute peak in details)",
        "rss_growth_mib",
        "MiB",
        (QUANTA, "sqlite3"),
    ),
    Workload(
        "ops_repair",
        "ops_transfer",
        "Rebuild 2 indexes (1 unique) of those users: db.repair() vs sqlite3 REINDEX",
        "records_per_s",
        "records/s",
        (QUANTA, "sqlite3"),
        higher_is_better=True,
    ),
    Workload(
        "ops_reader_lag",
        "ops_readers",
        "Reader-process lag p99, writer commit -> live query emission, 4 readers, 10 ms follow interval "
        "(sqlite3: PRAGMA data_version poll)",
        "p99_ms",
        "ms",
        (QUANTA, "sqlite3"),
        (Target(20.0),),
    ),
    Workload(
        "ops_reader_cost",
        "ops_readers",
        "Writer throughput with 4 reader processes / alone (durability=os; sqlite3: WAL, NORMAL)",
        "vs_no_readers",
        "x",
        (QUANTA, "sqlite3"),
        (Target(0.9, at_least=True),),
        higher_is_better=True,
    ),
)

_CPU = {"us_per_op": "cpu_us_per_op", "us_per_key": "cpu_us_per_key", "us_per_scan": "cpu_us_per_scan"}
WORKLOADS = tuple(replace(w, cpu_metric=_CPU.get(w.metric, "cpu_ms")) if w.group == "reads" else w for w in WORKLOADS)
BY_NAME = {w.name: w for w in WORKLOADS}
GROUP_ORDER = (
    "floor",
    "bulk",
    "reads",
    "write_sync",
    "write_concurrent",
    "reopen",
    "loop_lag",
    "changes",
    "fanout",
    "txn",
    "entity_bulk",
    "entity_reads",
    "live",
    "ops_backup",
    "ops_transfer",
    "ops_readers",
    "big",
)

FULL_PARAMS: dict[str, Any] = {
    "n": 100_000,
    "get_ops": 100_000,
    "aiosqlite_ops": 10_000,
    "scans": 200,
    "scan_len": 1_000,
    "write_ops": 2_000,
    "conc_writers": 8,
    "conc_per_writer": 250,
    "lag_puts": 300_000,
    "lag_memtable": 2 << 20,
    "lag_yield_every": 10,
    "lag_idle_s": 1.0,
    "big_n": 1_000_000,
    "big_batch": 10_000,
    # change bus: commits per (durability, consumer); fan-out: commits per configuration and
    # round (aiosqlite: per round), the writer yields to the loop every `fanout_yield_every`
    "change_commits_os": 10_000,
    "change_commits_sync": 5_000,
    "fanout_commits": 10_000,
    "fanout_aiosqlite_commits": 5_000,
    "fanout_rounds": 3,
    "fanout_yield_every": 10,
    # transactions: committed transactions per configuration (split over the tasks)
    "txn_keys": 10_000,
    "txn_hot_keys": 100,
    "txn_count_sync": 500,
    "txn_count_os": 4_000,
    # entity rows: queries per row (entity_get and entity_get_many use get_ops ids)
    "entity_range_len": 1_000,
    "entity_range_queries": 100,
    "entity_composite_queries": 100,
    "entity_in_queries": 5,
    "entity_scan_queries": 5,
    # live queries: ping-pong commits per latency row, the naive strategy's (fewer where slow),
    # writes per round and rounds of the write-cost row
    "live_items": 20_000,
    "live_owners": 10_000,
    "live_commits": 10_000,
    "live_big_commits": 2_000,
    "live_naive_commits_1": 10_000,
    "live_naive_commits_100": 1_000,
    "live_naive_commits_10000": 20,
    "live_write_ops": 5_000,
    "live_write_rounds": 4,
    # operations rows: backup database size, backups per phase, writer-alone seconds before
    # them; users exported, imported and repaired; reader follow/poll interval, lag commits
    # (one every 2 ms), writer puts per writer-cost run
    "ops_backup_mib": 64,
    "ops_backup_runs": 5,
    "ops_baseline_s": 0.5,
    "ops_users": 100_000,
    "ops_follow_interval": 0.01,
    "ops_lag_commits": 500,
    "ops_reader_ops": 10_000,
    "repeats": 5,
    "repeats_by_group": {
        "loop_lag": 3,
        "big": 1,
        "floor": 3,
        "changes": 3,
        "txn": 3,
        "live": 3,
        "ops_backup": 3,
        "ops_transfer": 3,
        "ops_readers": 3,
    },
    "timeout_s": 900,
}

QUICK_PARAMS: dict[str, Any] = {
    **FULL_PARAMS,
    "n": 20_000,
    "get_ops": 20_000,
    "aiosqlite_ops": 3_000,
    "scans": 50,
    "write_ops": 300,
    "conc_per_writer": 60,
    "lag_puts": 60_000,
    "lag_memtable": 1 << 20,
    "lag_idle_s": 0.5,
    "change_commits_os": 2_000,
    "change_commits_sync": 500,
    "fanout_aiosqlite_commits": 1_500,
    "fanout_rounds": 2,
    "txn_count_sync": 200,
    "txn_count_os": 1_000,
    "entity_range_queries": 50,
    "entity_composite_queries": 50,
    "entity_in_queries": 3,
    "entity_scan_queries": 3,
    "live_commits": 2_000,
    "live_big_commits": 500,
    "live_naive_commits_1": 2_000,
    "live_naive_commits_100": 200,
    "live_naive_commits_10000": 5,
    "live_write_ops": 2_000,
    "live_write_rounds": 2,
    "ops_backup_mib": 16,
    "ops_backup_runs": 2,
    "ops_baseline_s": 0.3,
    "ops_users": 20_000,
    "ops_lag_commits": 200,
    "ops_reader_ops": 5_000,
    "repeats": 3,
    # Synced writes are short but at the mercy of other disk traffic: more repeats, cheaply.
    "repeats_by_group": {
        "loop_lag": 1,
        "big": 1,
        "floor": 1,
        "write_sync": 5,
        "write_concurrent": 5,
        "txn": 1,
        "live": 1,
        "ops_backup": 1,
        "ops_transfer": 1,
        "ops_readers": 1,
    },
    "timeout_s": 300,
}


def select(only: list[str] | None, quick: bool, big: bool | None) -> list[Workload]:
    """Workloads named (exactly or by prefix) in ``only``, else the default set for the mode.

    ``big`` (the 1M-key row) runs in full mode unless ``big`` is False, and in quick mode only
    when ``big`` is True or it is named in ``only``."""
    if only:
        chosen = [w for w in WORKLOADS if any(w.name == o or w.name.startswith(o) for o in only)]
        unknown = [o for o in only if not any(w.name == o or w.name.startswith(o) for w in WORKLOADS)]
        if unknown:
            raise SystemExit(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
        if big is False:
            chosen = [w for w in chosen if w.name != "big"]
        return chosen
    chosen = [w for w in WORKLOADS if w.in_quick or not quick]
    if big is True and not any(w.name == "big" for w in chosen):
        chosen.append(BY_NAME["big"])
    if big is False:
        chosen = [w for w in chosen if w.name != "big"]
    return chosen
