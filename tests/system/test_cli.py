"""``python -m quanta``: demo, stats, verify and dump, run as a user runs them (subprocesses).

The contract (quanta/_cli/): exit status 0 on success, 1 with a one-line message naming the
problem when a database is damaged or cannot be opened, 2 on usage errors; never a traceback.
``stats`` and ``verify`` open read-only and change nothing on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest

import quanta
from quanta._storage import filenames

TIMEOUT = 120


def cli(*args: str | Path, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "quanta", *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def files_of(path: Path, kind: str) -> list[Path]:
    return sorted(p for p in path.iterdir() if (filenames.parse_name(p.name) or ("", 0))[0] == kind)


def fingerprint(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


async def _build(path: Path, wal_copy: Path) -> None:
    async with quanta.open(str(path), memtable_bytes=8192, block_size=512) as db:
        await db.kv.put_many([(b"deep:%04d" % i, b"value %d" % i) for i in range(300)])
        await db.compact()
        await db.kv.put_many([(b"l0:%04d" % i, b"x" * 20) for i in range(40)])
        await db.flush()
        await db.kv.put_many([(b"wal:a", b"1"), (b"wal:b", b"2")])
        await db.kv.delete(b"deep:0000")
        shutil.copytree(path, wal_copy, ignore=shutil.ignore_patterns("LOCK"))  # the WAL still holds those
    s = None
    async with quanta.open(str(path), read_only=True) as db:
        s = await db.stats()
    assert s["levels"][0]["files"] >= 1 and sum(lv["files"] for lv in s["levels"][1:]) >= 1


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a closed database with tables in L0 and deeper, a copy taken while its WAL held data)."""
    base = tmp_path_factory.mktemp("cli")
    asyncio.run(_build(base / "db", base / "walcopy"))
    return base / "db", base / "walcopy"


@pytest.fixture
def db_dir(built: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the built database (tests may damage it)."""
    return Path(shutil.copytree(built[0], tmp_path / "db"))


# =============================================================================== help and usage


def test_help_lists_every_command() -> None:
    out = cli("--help").stdout
    for command in ("demo", "stats", "verify", "dump", "get", "scan", "count", "put", "delete", "query", "compact"):
        assert command in out
    assert "Usage: quanta dump" in cli("dump", "--help").stdout
    assert cli("--version").stdout == f"quanta {quanta.__version__}\n"


def test_usage_errors_exit_with_status_2() -> None:
    assert "Missing command" in cli(check=2).stderr
    assert "Missing argument 'file'" in cli("dump", check=2).stderr
    assert "No such command 'frobnicate'" in cli("frobnicate", check=2).stderr
    assert "valid integer" in cli("demo", "x", "--records", "many", check=2).stderr
    for bad in ("0", "99", "1000001", "10000000"):  # the option states its range and enforces it
        err = cli("demo", "x", "--records", bad, check=2).stderr
        assert "Invalid value for '--records'" in err and ("100" in err or "1000000" in err), err


# =============================================================================== demo

DEMO_LINES = [
    r"QuantaDB demo in {path}",
    r"1\. put_many: {n} records in (one durable batch|\d+ durable batches) in \d+ ms",
    r"2\. get user:{probe} -> \{'id': {probe_id}, 'name': 'user {probe_id}', .*\} \(\d+ us\)",
    r"3\. scan from user:{half}, limit 1000: {rows} rows, user:{half} \.\. user:{half_end} in .* ms",
    r"4\. snapshot isolation: the snapshot still reads 'user 1'; the database reads 'renamed'",
    r"5\. a batch deleted 10 users and wrote config:motd atomically; a change stream saw it as one change set "
    r"#\d+ of 11 changes",
    r"6\. two transactions raised user:00000020's age: the first committed, the second was refused with "
    r"ConflictError; age=39",
    r"7\. flush \+ compaction in \d+ ms -> L\d: \d+ file\(s\).*",
    r"8\. reopened in .* ms: config:motd=b'hello from a batch', user:00000003=None, {users} users",
    r"9\. verify: \d+ table\(s\), {entries} entries, all checksums good",
    r"10\. entities: {people} DemoPerson records with a unique and a composite index in \d+ ms; Oslo aged 30-39, "
    r"oldest first: \[\d+, \d+, \d+\] via index_range on city_age in .* ms",
    r"11\. live query \(3 oldest in Oslo\): two commits that did not change it emitted nothing; a 99-year-old "
    r"arrived as a diff in .* ms: inserted at \[0\], removed from \[2\]",
    r"Done\. Run `python -m quanta stats {path}` \(or `schema`, `scan`, `query`\) to look inside\.",
]


def check_demo_output(out: str, path: Path, records: int, *, rerun: bool = False) -> None:
    lines = out.splitlines()
    if rerun:  # the second line says so; the tables also hold the earlier run's entities
        assert re.fullmatch(r"  \(found an existing database: last commit #\d+; the demo rewrites its keys\)", lines[1])
        del lines[1]
    assert len(lines) == len(DEMO_LINES), out
    fmt = {
        "path": re.escape(str(path)),
        "n": f"{records:,}",
        "probe": f"{records * 42 // 1000:08d}",
        "probe_id": str(records * 42 // 1000),
        "half": f"{records // 2:08d}",
        "half_end": f"{min(records - 1, records // 2 + 999):08d}",
        "rows": str(min(1000, records - records // 2)),
        "users": f"{records - 10:,}",  # the batch deleted ten
        "entries": r"[\d,]+" if rerun else f"{records - 8:,}",  # ... and added config:motd, DemoPerson's schema
        "people": f"{min(records, 20_000):,}",
    }
    for line, pattern in zip(lines, DEMO_LINES, strict=True):
        for name, value in fmt.items():
            pattern = pattern.replace("{" + name + "}", value)
        assert re.fullmatch(pattern, line), (line, pattern)


def test_demo_with_2000_records_runs_the_tour_and_leaves_a_valid_database(tmp_path: Path) -> None:
    path = tmp_path / "demo"
    check_demo_output(cli("demo", path, "--records", "2000").stdout, path, 2000)
    assert cli("verify", path).stdout.startswith("OK:")
    # a second run finds the database, says so, and still succeeds
    again = cli("demo", path, "--records", "2000").stdout
    assert "found an existing database" in again and "9. verify:" in again


def test_demo_reruns_on_the_same_path_with_any_records_and_declares_its_entity(tmp_path: Path) -> None:
    """Issue 18: a second run with another --records failed with UniqueViolationError, and
    ``quanta schema`` on the demo's database said "no schema yet"."""
    path = tmp_path / "demo"
    for records in (3000, 500, 2000, 100):
        out = cli("demo", path, "--records", str(records)).stdout
        check_demo_output(out, path, records, rerun=records != 3000)
    schema = cli("schema", path).stdout
    assert schema.startswith("DemoPerson  version 1  class quanta._cli.demo.DemoPerson"), schema
    assert "no schema yet" not in schema
    assert cli("count", path, "DemoPerson").stdout == "103\n"  # 100 people and the three of step 11
    deep = cli("verify", "--deep", path, "--module", "quanta._cli.demo").stdout
    assert re.fullmatch(r"OK: \d+ tables, \d+ entries; 103 records, 206 index entries, 0 links, 0 problems; .*\n", deep)


def test_demo_splits_a_large_load_into_batches(tmp_path: Path) -> None:
    """Every --records the option accepts fits: the load is split into batches below
    MAX_BATCH_BYTES (here made small, so a small run shows the split)."""
    import io

    from quanta._cli import demo as demo_module

    out = io.StringIO()
    saved = demo_module.BATCH_RECORDS
    demo_module.BATCH_RECORDS = 1000
    try:
        asyncio.run(demo_module.demo(str(tmp_path / "d"), 2500, out=out))
    finally:
        demo_module.BATCH_RECORDS = saved
    assert "1. put_many: 2,500 records in 3 durable batches in " in out.getvalue()
    check_demo_output(out.getvalue(), tmp_path / "d", 2500)
    assert demo_module.MAX_RECORDS * 80 // demo_module.BATCH_RECORDS < quanta.MAX_BATCH_BYTES


def test_demo_with_a_relative_path_reports_where_it_is(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "quanta", "demo", "rel", "--records", "100"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"QuantaDB demo in {tmp_path / 'rel'}"
    assert (tmp_path / "rel" / "CURRENT").exists()


# =============================================================================== stats and verify


def test_stats_prints_levels_and_counters(db_dir: Path) -> None:
    before = fingerprint(db_dir)
    out = cli("stats", db_dir).stdout
    assert re.search(rf"^database\s+{re.escape(str(db_dir))}$", out, re.M), out
    assert re.search(r"^last seq\s+\d+$", out, re.M)
    assert re.search(r"^tables\s+\d+ files, ", out, re.M)
    assert re.search(r"^\s+L0\s+\d+ files", out, re.M)
    assert re.search(r"^\s+L[1-6]\s+\d+ files", out, re.M)
    assert fingerprint(db_dir) == before  # read-only: nothing changed on disk


def test_stats_json_is_machine_readable(db_dir: Path) -> None:
    s = json.loads(cli("stats", "--json", db_dir).stdout)
    assert s["path"] == str(db_dir)
    assert s["last_seq"] == 4  # four commits built it
    assert s["table_files"] == sum(lv["files"] for lv in s["levels"]) >= 2
    assert {"commits", "flushes", "compactions", "levels", "block_cache", "recovery_tail"} <= set(s)


def test_stats_sees_data_still_in_the_wal(built: tuple[Path, Path], tmp_path: Path) -> None:
    walcopy = Path(shutil.copytree(built[1], tmp_path / "w"))
    s = json.loads(cli("stats", "--json", walcopy).stdout)
    assert s["memtable_entries"] == 3 and s["recovered_wal_batches"] == 2


def test_verify_reports_tables_and_entries(db_dir: Path) -> None:
    before = fingerprint(db_dir)
    out = cli("verify", db_dir).stdout
    m = re.fullmatch(r"OK: (\d+) tables, (\d+) entries; manifest clean; WAL replay clean\n", out)
    assert m, out
    assert int(m.group(2)) == 300 + 40 + 3  # every version still in a table
    assert fingerprint(db_dir) == before


def test_verify_reports_a_torn_wal_tail(built: tuple[Path, Path], tmp_path: Path) -> None:
    """A WAL cut inside its last record (a crash during an append) is not damage, but verify
    says that the unfinished write was dropped."""
    walcopy = Path(shutil.copytree(built[1], tmp_path / "w"))
    [wal] = [w for w in files_of(walcopy, "wal") if w.stat().st_size > 32]
    wal.write_bytes(wal.read_bytes()[:-1])
    out = cli("verify", walcopy).stdout
    assert out.startswith("OK:") and "WAL tail torn" in out, out


def test_verify_progress_bar_on_request(db_dir: Path) -> None:
    proc = cli("verify", "--progress", db_dir)
    assert "verifying tables" in proc.stderr and re.search(r"(\d+)/\1\b", proc.stderr)  # rich: label, done/total


@quanta.entity(name="CliItem")
class CliItem:
    id: Annotated[int, quanta.PrimaryKey()]
    name: str = ""


async def _build_with_a_corrupt_record(path: Path) -> None:
    from quanta._schema.keyspace import record_key

    async with quanta.open(str(path)) as db:
        await db.collection(CliItem).put_many([CliItem(id=1, name="a"), CliItem(id=2, name="b")])
        await db.kv._engine.write([record_key("CliItem", 3)], [b"\xc1junk"], 64)  # db.kv refuses reserved keys


def test_verify_deep_lists_unreadable_records_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "deep"
    asyncio.run(_build_with_a_corrupt_record(path))
    assert cli("verify", path).stdout.startswith("OK:")  # the tables themselves are sound
    out = cli("verify", "--deep", path, check=1).stdout
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM: ")]
    assert len(problems) == 1 and "primary key 3" in problems[0], out
    assert "FAILED:" in out and "3 records, 0 index entries, 0 links, 1 problems" in out, out


def test_verify_deep_on_a_sound_database_exits_0(tmp_path: Path) -> None:
    async def build() -> None:
        async with quanta.open(str(tmp_path / "ok")) as db:
            await db.collection(CliItem).put(CliItem(id=1))

    asyncio.run(build())
    out = cli("verify", "--deep", tmp_path / "ok").stdout
    assert out.startswith("OK:") and "PROBLEM" not in out, out
    assert "1 records, 0 index entries, 0 links, 0 problems" in out, out


def test_stats_and_verify_on_a_missing_or_foreign_path_exit_1(tmp_path: Path) -> None:
    for command in ("stats", "verify"):
        err = cli(command, tmp_path / "missing", check=1).stderr
        assert "DatabaseNotFoundError" in err and str(tmp_path / "missing") in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("buy milk")
    for command in ("stats", "verify"):
        err = cli(command, tmp_path / "notes", check=1).stderr
        assert "NotADatabaseError" in err, err
    assert not (tmp_path / "missing").exists()


def test_inspecting_a_foreign_directory_writes_nothing_into_it(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("buy milk")
    cli("stats", tmp_path / "notes", check=1)
    cli("verify", tmp_path / "notes", check=1)
    assert os.listdir(tmp_path / "notes") == ["todo.txt"]


def test_verify_names_a_damaged_table_and_exits_1(db_dir: Path) -> None:
    table = files_of(db_dir, "sst")[0]
    data = bytearray(table.read_bytes())
    data[40] ^= 0x10  # inside the first data block
    table.write_bytes(bytes(data))
    err = cli("verify", db_dir, check=1).stderr
    assert err.startswith("quanta verify: CorruptionError: ") and str(table) in err, err
    assert len(err.strip().splitlines()) == 1


def test_stats_names_a_damaged_manifest_and_exits_1(db_dir: Path) -> None:
    [manifest] = files_of(db_dir, "manifest")
    data = bytearray(manifest.read_bytes())
    data[10] ^= 0xFF  # the header's format version
    manifest.write_bytes(bytes(data))
    err = cli("stats", db_dir, check=1).stderr
    assert "CorruptionError" in err and str(manifest) in err, err


def test_read_only_commands_work_while_a_writer_holds_and_writes_the_database(db_dir: Path) -> None:
    """stats, verify, schema and dump open read-only, which takes no lock: they run while an
    application (here this process, flushing and compacting meanwhile) has it open."""

    async def hold() -> list[subprocess.CompletedProcess[str]]:
        async with quanta.open(str(db_dir), memtable_bytes=8192, block_size=512) as db:
            stop = asyncio.Event()

            async def write() -> None:
                i = 0
                while not stop.is_set():
                    await db.kv.put_many([(b"live:%06d" % (i * 10 + j), b"x" * 200) for j in range(10)])
                    i += 1
                    if i % 20 == 0:
                        await db.compact()
                    await asyncio.sleep(0.001)

            writer = asyncio.create_task(write())
            try:
                procs = []
                for args in (("stats", "--json"), ("verify",), ("schema",)):
                    procs.append(await asyncio.to_thread(cli, *args, db_dir))
                manifest = await asyncio.to_thread(lambda: next(db_dir.glob("MANIFEST-*")))
                procs.append(await asyncio.to_thread(cli, "dump", manifest))
            finally:
                stop.set()
                await writer
            return procs

    stats, verify, schema, dump = asyncio.run(hold())
    assert json.loads(stats.stdout)["last_seq"] > 0
    assert verify.stdout.startswith("OK:"), verify.stdout
    assert schema.returncode == 0 and dump.returncode == 0


# =============================================================================== dump


def test_dump_a_wal_segment(built: tuple[Path, Path]) -> None:
    wals = [w for w in files_of(built[1], "wal") if w.stat().st_size > 32]
    assert len(wals) == 1
    out = cli("dump", wals[0]).stdout.splitlines()
    assert out[0] == f"WAL {wals[0]}: 2 batches, tail clean"
    assert re.fullmatch(r"batch seq=3 ops=2", out[1])
    assert out[2:4] == ["  put b'wal:a' b'1'", "  put b'wal:b' b'2'"]
    assert out[4] == "batch seq=4 ops=1"
    assert out[5].rstrip() == "  del b'deep:0000'"
    assert len(out) == 6


def test_dump_an_sstable(db_dir: Path) -> None:
    for table in files_of(db_dir, "sst"):
        out = cli("dump", table).stdout.splitlines()
        m = re.fullmatch(rf"SSTable {re.escape(str(table))}: (\d+) entries in (\d+) blocks, (\d+) B, keys .*", out[0])
        assert m, out[0]
        assert len(out) == 1 + int(m.group(1))
        assert int(m.group(3)) == table.stat().st_size
        assert all(re.fullmatch(r"  b'[^']+' @\d+ (b'.*'|<tombstone>)", line) for line in out[1:])
    deep = next(t for t in files_of(db_dir, "sst") if b"deep:0001" in t.read_bytes())
    assert "  b'deep:0001' @1 b'value 1'" in cli("dump", deep).stdout.splitlines()


def test_dump_a_manifest_and_a_directory(db_dir: Path) -> None:
    [manifest] = files_of(db_dir, "manifest")
    out = cli("dump", manifest).stdout
    lines = out.splitlines()
    assert re.fullmatch(rf"MANIFEST {re.escape(str(manifest))}: \d+ edits", lines[0])
    assert re.fullmatch(r"edit 0: log_number=\d+ next_file=\d+ last_seq=\d+", lines[1])
    live = {p.name for p in files_of(db_dir, "sst")}
    listed = set(re.findall(r"\+ L\d (\d+\.sst) ", out))
    assert live <= listed
    # a directory dumps the manifest CURRENT names
    assert cli("dump", db_dir).stdout == out


def test_dump_limit_stops_early(db_dir: Path) -> None:
    table = files_of(db_dir, "sst")[-1]
    out = cli("dump", table, "--limit", "3").stdout.splitlines()
    assert len(out) == 4 and out[-1].startswith("... (stopped after 3 lines")


def test_dump_into_a_closed_pipe_is_not_an_error(db_dir: Path) -> None:
    table = max(files_of(db_dir, "sst"), key=lambda p: p.stat().st_size)
    proc = subprocess.Popen(
        [sys.executable, "-m", "quanta", "dump", str(table)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=TIMEOUT) == 0, err
    assert "Broken pipe" not in err


def test_dump_of_damaged_files_exits_1_and_names_the_file(db_dir: Path) -> None:
    table = files_of(db_dir, "sst")[0]
    data = bytearray(table.read_bytes())
    data[-10] ^= 0x01  # footer checksum no longer matches
    table.write_bytes(bytes(data))
    err = cli("dump", table, check=1).stderr
    assert err.startswith("quanta dump: CorruptionError: ") and str(table) in err, err

    [manifest] = files_of(db_dir, "manifest")
    data = bytearray(manifest.read_bytes())
    data[40] ^= 0x01  # inside the first record
    manifest.write_bytes(bytes(data))
    assert "CorruptionError" in cli("dump", manifest, check=1).stderr

    current = db_dir / "CURRENT"
    current.write_bytes(b"MANIFEST-999999\n")
    err = cli("dump", db_dir, check=1).stderr
    assert "CorruptionError" in err and str(current) in err


def test_dump_of_something_else_exits_1(tmp_path: Path) -> None:
    text = tmp_path / "000007.sst"
    text.write_text("not a table at all\n")
    err = cli("dump", text, check=1).stderr
    assert "is not a QuantaDB WAL, SSTable or MANIFEST" in err and str(text) in err
    sqlite = tmp_path / "000009.wal"
    with sqlite3.connect(sqlite) as conn:
        conn.execute("create table t (x)")
    conn.close()
    assert "is not a QuantaDB" in cli("dump", sqlite, check=1).stderr
    err = cli("dump", tmp_path / "missing.sst", check=1).stderr
    assert "No such file" in err
    empty = tmp_path / "000011.wal"
    empty.write_bytes(b"")
    cli("dump", empty, check=1)
