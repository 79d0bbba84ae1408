"""``quanta watch`` and ``quanta shell``: the live and the interactive commands.

``watch`` runs in its own process beside a writer (this test process), as it would beside an
application; the terminal forms run under a pseudo-terminal (pexpect) and the tests read
the screen.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import pytest
from typer.testing import CliRunner

import quanta
from quanta._cli import app

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07|\r")
ENV = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm"}


@quanta.entity(name="LiveTown")
class Town:
    id: Annotated[int, quanta.PrimaryKey()]
    name: str
    pop: int = 0


def _build(path: Path) -> None:
    async def build() -> None:
        async with quanta.open(path, entities=[Town]) as db:
            await db.collection(Town).put_many([Town(id=1, name="Oslo", pop=700), Town(id=2, name="Rome", pop=2800)])
            await db.kv.put(b"cfg:a", b"1")

    asyncio.run(build())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "db"
    _build(path)
    return path


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quanta",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line, "the watch process ended early: " + (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    return line.decode()


async def test_watch_follows_a_query_from_another_process(db_path: Path) -> None:
    """The writer (this process) holds the database; `watch` reads beside it and prints the
    result again after each commit that changes it, and only those."""
    async with quanta.open(db_path, entities=[Town]) as db:
        towns = db.collection(Town)
        proc = await _spawn(
            "watch", str(db_path), "LiveTown", "pop > 1000", "--order-by", "id", "--updates", "2", "--json"
        )
        try:
            first = json.loads(await _line(proc))
            assert [r["name"] for r in first["rows"]] == ["Rome"]
            await towns.put(Town(id=3, name="Lima", pop=9700))  # enters the result
            second = json.loads(await _line(proc))
            assert [r["name"] for r in second["rows"]] == ["Rome", "Lima"] and second["seq"] > first["seq"]
            await towns.put(Town(id=4, name="Bergen", pop=290))  # outside the query: no emission
            await towns.put(Town(id=2, name="Rome", pop=999))  # leaves the result
            third = json.loads(await _line(proc))
            assert [r["name"] for r in third["rows"]] == ["Lima"]
            assert third["seq"] == db.seq  # Bergen's commit emitted nothing
            assert await asyncio.wait_for(proc.wait(), 30) == 0  # --updates 2: done
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_watch_prints_raw_changes_with_decoded_keys(db_path: Path) -> None:
    async with quanta.open(db_path, entities=[Town]) as db:
        proc = await _spawn("watch", str(db_path), "--updates", "2")
        try:
            assert (await _line(proc)).startswith("# following every key from commit #")
            await db.kv.put(b"cfg:b", b"two")
            assert (await _line(proc)).rstrip("\n").endswith("put b'cfg:b' = b'two'")
            await db.collection(Town).delete(1)
            assert (await _line(proc)).rstrip("\n").endswith("delete LiveTown[1]")
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_watch_on_a_terminal_redraws_one_table(db_path: Path) -> None:
    """Under a pseudo-terminal, `watch` draws a rich table and redraws it in place after a
    commit made by another process (a `quanta put`, then an entity write)."""
    child = pexpect.spawn(
        sys.executable, ["-m", "quanta", "watch", str(db_path), "LiveTown", "--order-by", "id"],
        env=ENV, encoding="utf-8", timeout=30,
    )  # fmt: skip
    try:
        child.expect("LiveTown: 2 rows at commit")
        child.expect("└")
        screen = ANSI.sub("", child.before)
        assert "┃ id" in screen and "│ Oslo" in screen and "│ Rome" in screen, screen

        async def write() -> None:
            async with quanta.open(db_path, entities=[Town]) as db:
                await db.collection(Town).put(Town(id=9, name="Quito", pop=2000))

        asyncio.run(write())  # the writer: a second process beside the reader
        child.expect("LiveTown: 3 rows at commit")
        child.expect("└")
        assert "│ Quito" in ANSI.sub("", child.before)
        child.sendintr()  # Ctrl-C ends it, quietly, with status 0
        child.expect(pexpect.EOF)
        assert "Traceback" not in ANSI.sub("", child.before)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.signalstatus


def test_watch_errors(db_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["watch", str(tmp_path / "missing"), "--updates", "0"])
    assert r.exit_code == 1 and r.stderr.startswith("quanta watch: ") and "Traceback" not in r.stderr
    r = runner.invoke(app, ["watch", str(db_path), "NoSuchEntity", "--updates", "0"])
    assert r.exit_code == 1 and "NoSuchEntity" in r.stderr
    r = runner.invoke(app, ["watch", str(db_path), "LiveTown", "pop >", "--updates", "0"])
    assert r.exit_code == 1 and r.stderr.startswith("quanta watch: ")
    r = runner.invoke(app, ["watch", str(db_path), "LiveTown", "--updates", "0", "--json"])
    assert r.exit_code == 0 and [x["name"] for x in json.loads(r.stdout)["rows"]] == ["Oslo", "Rome"]


def test_shell_runs_commands_at_a_prompt_with_history(db_path: Path, tmp_path: Path) -> None:
    """An interactive session under a pseudo-terminal: commands, an error, Ctrl-C at the
    prompt, history recalled with the up arrow, and the history file written at exit."""
    history = tmp_path / "history"
    child = pexpect.spawn(
        sys.executable, ["-m", "quanta", "shell", str(db_path), "--history", str(history)],
        env=ENV, encoding="utf-8", timeout=30,
    )  # fmt: skip
    try:
        child.expect("QuantaDB shell on")
        child.expect_exact("quanta db> ")
        child.sendline("count LiveTown")
        child.expect_exact("quanta db> ")
        assert re.search(r"^2$", ANSI.sub("", child.before), re.M), child.before
        child.sendline("query LiveTown \"name == 'Rome'\"")
        child.expect_exact("quanta db> ")
        screen = ANSI.sub("", child.before)
        assert "┃ id" in screen and "│ Rome" in screen and "Oslo" not in screen, screen
        child.sendline("bogus 1")
        child.expect_exact("quanta db> ")
        assert "no command 'bogus'" in child.before
        child.sendline("get LiveTown 7 --entity")  # a usage error: click's message, the shell goes on
        child.expect_exact("quanta db> ")
        child.sendintr()  # Ctrl-C at the prompt: a new prompt
        child.expect_exact("quanta db> ")
        child.send("\x1b[A" * 3 + "\r")  # up arrow three times: `query LiveTown ...` again
        child.expect_exact("quanta db> ")
        assert "│ Rome" in ANSI.sub("", child.before)
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus is not None
    lines = history.read_text().splitlines()
    assert "count LiveTown" in lines and "query LiveTown \"name == 'Rome'\"" in lines


def test_shell_reads_commands_from_a_pipe(db_path: Path) -> None:
    import subprocess

    script = "get cfg:a\nput cfg:z 26\ncount --prefix cfg:\nhelp\nquery LiveTown 'pop >'\n"
    r = subprocess.run(
        [sys.executable, "-m", "quanta", "shell", str(db_path)],
        input=script, capture_output=True, text=True, timeout=60,
        env={**os.environ, "QUANTA_HISTORY": str(db_path.parent / "no-history")},
    )  # fmt: skip
    out = r.stdout.splitlines()
    assert out[0] == "1" and out[1].startswith("put b'cfg:z' (2 bytes) as commit #") and out[2] == "2", r.stdout
    assert "commands (each as on the command line, without the path):" in r.stdout
    assert r.stderr.startswith("quanta query: ") and "Traceback" not in r.stderr
    assert r.returncode == 1  # the last command's status
    assert not (db_path.parent / "no-history").exists()  # piped commands are not kept


def test_shell_on_a_missing_database_fails_before_the_prompt(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["shell", str(tmp_path / "none")])
    assert r.exit_code == 1 and r.stderr.startswith("quanta shell: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "none").exists()


def test_an_errors_notes_are_printed_after_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An exception's PEP 678 notes (an interrupted repair's "how to finish") reach the user."""
    import typer

    from quanta._cli.app import _guard

    def body() -> None:
        exc = quanta.errors.SchemaError("repair stopped")
        exc.add_note("run `quanta repair PATH --rebuild-indexes` again to finish")
        raise exc

    with pytest.raises(typer.Exit) as caught:
        _guard("repair", body)
    assert caught.value.exit_code == 1
    assert capsys.readouterr().err.splitlines() == [
        "quanta repair: SchemaError: repair stopped",
        "  note: run `quanta repair PATH --rebuild-indexes` again to finish",
    ]
