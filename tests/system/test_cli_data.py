"""The data commands of ``quanta`` (get, scan, count, put, delete, query), the readable keys of
``dump`` and ``scan --all``, and the error paths, run in-process with typer's CliRunner.

The contract (quanta/_cli/): every error exits 1 with one line ``quanta CMD: ErrorType:
message`` on stderr, never a traceback; a query expression is parsed with ``ast`` and mapped
onto the typed query API, so nothing in it is evaluated.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest
from typer.testing import CliRunner

import quanta
from quanta._cli import app
from quanta._cli.output import Output

runner = CliRunner()


def run(*args: str | Path, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    return result.stdout, result.stderr


def one_line_error(err: str, command: str, kind: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"quanta {command}: {kind}: "), err
    return lines[0]


@quanta.entity(name="CliCity", indexes=[quanta.Index("country", "pop")])
class City:
    id: Annotated[int, quanta.PrimaryKey()]
    name: Annotated[str, quanta.Unique()]
    country: str
    pop: int = 0
    nick: str | None = None


CITIES = [
    City(id=1, name="Oslo", country="NO", pop=700, nick="Tigerstaden"),
    City(id=2, name="Bergen", country="NO", pop=290),
    City(id=3, name="Rome", country="IT", pop=2800, nick="Urbs"),
    City(id=4, name="Milan", country="IT", pop=1400),
    City(id=5, name="Lima", country="PE", pop=9700),
]


async def _build(path: Path) -> None:
    async with quanta.open(path, entities=[City]) as db:
        await db.collection(City).put_many(CITIES)
        await db.kv.put_many([(b"cfg:a", b"1"), (b"cfg:b", b"two"), (b"log:1", b"\xff\x00")])


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "db"
    asyncio.run(_build(path))
    return path


@pytest.fixture
def own_db(tmp_path: Path) -> Path:
    path = tmp_path / "db"
    asyncio.run(_build(path))
    return path


# =============================================================================== version and help


def test_version_and_help() -> None:
    out, _ = run("--version")
    assert out == f"quanta {quanta.__version__}\n"
    out, _ = run("query", "--help")
    assert "--order-by" in out and "--explain" in out and "--json" in out


# =============================================================================== kv


def test_get_put_delete_and_count_kv_pairs(own_db: Path) -> None:
    assert run("get", own_db, "cfg:b")[0] == "two\n"
    assert json.loads(run("get", own_db, "cfg:a", "--json")[0]) == {"key": "cfg:a", "value": "1"}
    assert run("get", own_db, "log:1")[0] == "b'\\xff\\x00'\n"  # not UTF-8: Python's bytes form
    _, err = run("get", own_db, "nope", code=1)
    assert err == "quanta get: no value for key b'nope'\n"
    assert run("count", own_db)[0] == "3\n"
    assert json.loads(run("count", own_db, "--prefix", "cfg:", "--json")[0]) == {"count": 2}

    out, _ = run("put", own_db, "cfg:c", "three")
    assert out.startswith("put b'cfg:c' (5 bytes) as commit #")
    run("put", own_db, "--hex", "6366673a64", "ff01")
    assert run("get", own_db, "cfg:d")[0] == "b'\\xff\\x01'\n"
    assert run("delete", own_db, "cfg:a")[0].startswith("deleted b'cfg:a' as commit #")
    assert "was not there" in run("delete", own_db, "cfg:a")[0]
    assert run("count", own_db)[0] == "4\n"


def test_scan_in_key_order_with_prefix_limit_and_json(db_path: Path) -> None:
    out, _ = run("scan", db_path)
    assert out.splitlines() == ["b'cfg:a'  b'1'", "b'cfg:b'  b'two'", "b'log:1'  b'\\xff\\x00'"]
    assert run("scan", db_path, "--prefix", "cfg:", "--limit", "1")[0] == "b'cfg:a'  b'1'\n"
    rows = [json.loads(line) for line in run("scan", db_path, "--json")[0].splitlines()]
    assert rows == [
        {"key": "cfg:a", "value": "1"},
        {"key": "cfg:b", "value": "two"},
        {"key": "log:1", "value": {"hex": "ff00"}},
    ]


def test_put_and_delete_refuse_the_entity_key_space(own_db: Path) -> None:
    for args in (("put", own_db, "--hex", "005172", "00"), ("delete", own_db, "--hex", "0051")):
        _, err = run(*args, code=1)
        line = one_line_error(err, str(args[0]), "ReservedKeyError")
        assert "b'\\x00Q" in line or "reserved" in line, line
    assert run("count", own_db, "CliCity")[0] == "5\n"  # nothing changed
    _, err = run("put", own_db, "--hex", "zz", "00", code=1)
    one_line_error(err, "put", "InvalidArgumentError")


# =============================================================================== entities


def test_get_scan_and_count_entities_without_their_class(db_path: Path) -> None:
    """The CLI has no entity classes: it rebuilds one from the stored schema."""
    out, _ = run("get", db_path, "--entity", "CliCity", "3")
    assert out == "CliCity[3] {'id': 3, 'name': 'Rome', 'country': 'IT', 'pop': 2800, 'nick': 'Urbs'}\n"
    doc = json.loads(run("get", db_path, "-e", "CliCity", "1", "--json")[0])
    assert doc == {
        "entity": "CliCity",
        "key": 1,
        "record": {"id": 1, "name": "Oslo", "country": "NO", "pop": 700, "nick": "Tigerstaden"},
    }
    _, err = run("get", db_path, "-e", "CliCity", "99", code=1)
    assert err == "quanta get: no CliCity record with primary key 99\n"
    out, _ = run("scan", db_path, "--entity", "CliCity", "--limit", "2")
    assert out.splitlines()[0].split() == ["id", "name", "country", "pop", "nick"]
    assert out.splitlines()[1].split() == ["1", "Oslo", "NO", "700", "Tigerstaden"]
    assert len(out.splitlines()) == 3
    assert run("count", db_path, "CliCity")[0] == "5\n"


def _ids(out: str) -> list[int]:
    return [r["id"] for r in json.loads(out)]


def test_query_maps_expressions_onto_the_typed_query_api(db_path: Path) -> None:
    def q(expr: str, *more: str) -> list[int]:
        ids = _ids(run("query", db_path, "CliCity", expr, "--json", *more)[0])
        return ids if "--order-by" in more else sorted(ids)  # no order asked: the access order

    assert q("country == 'NO'") == [1, 2]
    assert q("pop > 1000 and country != 'PE'") == [3, 4]
    assert q("country == 'IT' or pop < 300") == [2, 3, 4]
    assert q("not country == 'NO'") == [3, 4, 5]
    assert q("1000 < pop <= 9700") == [3, 4, 5]  # a chain, and a literal on the left
    assert q("country in ['IT', 'PE']") == [3, 4, 5]
    assert q("country not in ['IT', 'PE']") == [1, 2]
    assert q("name.startswith('M') or name.startswith('L')") == [4, 5]
    assert q("between(pop, 500, 3000)") == [1, 3, 4]
    assert q("in_(id, [2, 5])") == [2, 5]
    assert q("nick is None") == [2, 4, 5]
    assert q("CliCity.nick is not None") == [1, 3]
    assert q("pop >= 0", "--order-by", "-pop", "--limit", "2") == [5, 3]
    assert q("country == 'NO'", "--order-by", "pop asc") == [2, 1]
    assert _ids(run("query", db_path, "CliCity", "--json", "--order-by", "name desc", "--limit", "1")[0]) == [3]


def test_query_prints_a_table_and_explains_its_plan(db_path: Path) -> None:
    out, _ = run("query", db_path, "CliCity", "country == 'IT' and pop > 2000")
    assert [line.split()[:3] for line in out.splitlines()] == [["id", "name", "country"], ["3", "Rome", "IT"]]
    out, _ = run("query", db_path, "CliCity", "country == 'IT' and pop > 2000", "--explain")
    assert out.startswith("plan for CliCity: index_range") and "country_pop" in out, out
    doc = json.loads(run("query", db_path, "CliCity", "name == 'Lima'", "--explain", "--json")[0])
    assert doc["access"] == "unique_get" and doc["index"] == "name", doc


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("country ==", "bad expression"),
        ("population > 3", "CliCity has no field 'population'"),
        ("__import__('os').system('touch /tmp/quanta-pwned')", "is not a field method"),
        ("__import__('os')", "unknown function __import__"),
        ("name.upper() == 'X'", "names no field"),
        ("open('/etc/passwd')", "unknown function open"),
        ("pop > pop", "not with another field"),
        ("pop > len('abc')", "is not a literal value"),
        ("pop", "a field alone is not a condition"),
        ("pop + 1 > 3", "names no field"),
        ("pop > 'many'", "pop > 'many': expected a value of type int"),  # the query API's own check
        ("between(pop, 1)", "wrong number of arguments"),
        ("pop is 3", "'is' and 'is not' take a field and None"),
        ("country in 'NO'", "'in' takes a list"),
        ("lambda: 1", "not a condition"),
        ("(x := 3)", "not a condition"),
    ],
)
def test_bad_expressions_exit_1_with_a_query_error(db_path: Path, expr: str, needle: str) -> None:
    _, err = run("query", db_path, "CliCity", expr, code=1)
    line = one_line_error(err, "query", "QueryError")
    assert needle in line, line
    assert not Path("/tmp/quanta-pwned").exists()


def test_query_errors_for_unknown_entities_order_keys_and_databases(db_path: Path, tmp_path: Path) -> None:
    _, err = run("query", db_path, "Nope", "x == 1", code=1)
    assert "no entity 'Nope' is stored in this database (stored: CliCity)" in one_line_error(
        err, "query", "InvalidArgumentError"
    )
    _, err = run("query", db_path, "CliCity", "pop > 1", "--order-by", "-size", code=1)
    assert "CliCity has no field 'size'" in one_line_error(err, "query", "QueryError")
    _, err = run("query", tmp_path / "missing", "CliCity", code=1)
    one_line_error(err, "query", "DatabaseNotFoundError")
    assert not (tmp_path / "missing").exists()


MOOD_MODULE = """
import enum
from typing import Annotated
import quanta

class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"

@quanta.entity(name="CliMoody")
class Moody:
    id: Annotated[int, quanta.PrimaryKey()]
    mood: Mood = Mood.HAPPY
"""


def test_a_class_that_cannot_be_rebuilt_asks_for_its_module(tmp_path: Path) -> None:
    module = tmp_path / "moody_models.py"
    module.write_text(textwrap.dedent(MOOD_MODULE))
    script = (
        "import asyncio, sys, quanta; sys.path.insert(0, sys.argv[1]); import moody_models as m\n"
        "async def main():\n"
        "    async with quanta.open(sys.argv[2], entities=[m.Moody]) as db:\n"
        "        await db.collection(m.Moody).put_many([m.Moody(id=1), m.Moody(id=2, mood=m.Mood.SAD)])\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path), str(tmp_path / "db")], check=True, timeout=60)
    _, err = run("query", tmp_path / "db", "CliMoody", "id > 0", code=1)
    line = one_line_error(err, "query", "InvalidArgumentError")
    assert "CliMoody.mood" in line and "--module" in line, line
    out, _ = run("query", tmp_path / "db", "CliMoody", "id > 1", "--module", module, "--json")
    assert json.loads(out) == [{"id": 2, "mood": "sad"}]


def test_a_writer_holding_the_database_makes_put_fail_with_one_line(own_db: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys, quanta\n"
            "async def main():\n"
            "    async with quanta.open(sys.argv[1]):\n"
            "        print('ready', flush=True)\n"
            "        sys.stdin.readline()\n"
            "asyncio.run(main())\n",
            str(own_db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        _, err = run("put", own_db, "k", "v", code=1)
        one_line_error(err, "put", "DatabaseLockedError")
        assert run("get", own_db, "cfg:a")[0] == "1\n"  # reads open read-only beside the writer
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()


# =============================================================================== readable keys


def test_scan_all_and_dump_show_entity_keys_decoded(own_db: Path) -> None:
    out, _ = run("scan", own_db, "--all")
    lines = out.splitlines()
    assert any(line.startswith("CliCity[3]") and "'Rome'" in line for line in lines), out
    assert "CliCity.country_pop('IT', 2800) -> CliCity[3]" in lines, out
    assert "CliCity.name('Rome') -> CliCity[3]" in lines, out
    assert any(line.startswith("catalog CliCity") for line in lines), out
    assert ["b'cfg:a'", "b'1'"] in [line.split() for line in lines]

    [table] = [p for p in sorted(own_db.glob("*.sst")) if b"Tigerstaden" in p.read_bytes()]
    out, _ = run("dump", table)
    lines = out.splitlines()
    assert any(re.fullmatch(r"  CliCity\.country_pop\('NO', 700\) -> CliCity\[1\] @\d+", x) for x in lines), out
    assert any(re.fullmatch(r"  CliCity\[1\] @\d+ v1 \[1, 'Oslo', 'NO', 700, 'Tigerstaden'\]", x) for x in lines), out
    entries = [json.loads(line) for line in run("dump", table, "--json")[0].splitlines()]
    assert entries[0]["kind"] == "sstable"
    assert {"key": "CliCity.name('Oslo') -> CliCity[1]", "value": ""} in [
        {"key": e["key"], "value": e["value"]} for e in entries[1:]
    ]


# =============================================================================== the other commands


def test_stats_verify_backup_and_compact_speak_json(own_db: Path, tmp_path: Path) -> None:
    stats = json.loads(run("stats", own_db, "--json")[0])
    assert stats["last_seq"] >= 2
    report = json.loads(run("verify", own_db, "--deep", "--json")[0])
    assert report["ok"] is True and report["records"] == 5 and report["problems"] == []
    info = json.loads(run("backup", own_db, tmp_path / "bk", "--json")[0])
    assert info["path"] == str(tmp_path / "bk") and info["seq"] == stats["last_seq"]
    out, _ = run("compact", own_db)
    assert out.startswith(f"compacted {own_db}: ") and "-> L" in out, out
    assert json.loads(run("compact", own_db, "--json")[0])["after"]
    assert run("count", tmp_path / "bk", "CliCity")[0] == "5\n"


def test_schema_of_a_database_prints_its_entities(db_path: Path) -> None:
    out, _ = run("schema", db_path)
    assert out.startswith("CliCity  version 1  class ")
    assert any(line.split()[:2] == ["indexes", "name"] for line in out.splitlines()), out
    doc = json.loads(run("schema", db_path, "--json")[0])
    assert [e["name"] for e in doc["entities"]] == ["CliCity"]


def test_a_terminal_gets_rich_tables() -> None:
    from rich.console import Console

    buf = io.StringIO()
    out = Output(file=buf)
    assert not out.rich  # a StringIO is not a terminal: plain text
    out.console = Console(file=buf, force_terminal=True, width=60, color_system=None)
    out.rich = True
    out.table(("key", "value"), [("a", "1"), ("bb", "22")])
    text = buf.getvalue()
    assert "┃ key" in text and "│ bb " in text and "└" in text, text


def test_unknown_entity_for_scan_and_count(db_path: Path) -> None:
    for args in (("scan", db_path, "--entity", "Nope"), ("count", db_path, "Nope")):
        _, err = run(*args, code=1)
        one_line_error(err, str(args[0]), "InvalidArgumentError")


def test_a_real_terminal_gets_a_rich_table_and_a_pipe_gets_plain_text(db_path: Path) -> None:
    """Under a pseudo-terminal (pexpect) the same command draws a rich table; a test reads the screen."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "quanta", "query", str(db_path), "CliCity", "pop > 1000", "--order-by", "id"],
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        encoding="utf-8",
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", child.before)
    assert child.exitstatus == 0, screen
    assert "┃ id" in screen and "┃ name" in screen, screen  # the header row of a rich table
    assert "│ Rome" in screen and "│ Lima" in screen and "└" in screen, screen
    piped, _ = run("query", db_path, "CliCity", "pop > 1000", "--order-by", "id")
    assert "│" not in piped and piped.splitlines()[1].split()[:2] == ["3", "Rome"]
