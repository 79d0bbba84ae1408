"""Resources, options, event loops and platforms (issue 12, section 1): ``Database.aclose``,
no "never awaited" warning at exit, ``open(options=...)``, the asyncio-only check, the
wrong-event-loop check, and the sync fallback where ``os.fdatasync`` is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import quanta

REPO = str(Path(__file__).resolve().parent.parent)

LEFT_OPEN = """
import asyncio, gc, sys
import quanta

async def main():
    db = await quanta.open(sys.argv[1])
    {body}

asyncio.run(main())
{after}
"""


def _run_script(code: str, *args: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run(
        [sys.executable, *flags, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


# =============================================================================== resources


async def test_aclose_closes_and_close_is_its_alias(tmp_path: Path) -> None:
    db = await quanta.open(str(tmp_path / "a"))
    await db.kv.put(b"k", b"v")
    await db.aclose()
    assert db.closed
    await db.aclose()  # idempotent
    await db.close()
    db2 = await quanta.open(str(tmp_path / "a"))
    assert await db2.kv.get(b"k") == b"v"
    await db2.close()
    assert db2.closed


def test_a_program_that_exits_without_closing_never_leaves_a_coroutine_unawaited(tmp_path: Path) -> None:
    for i, body in enumerate(["pass", "await db.kv.put(b'k', b'v')"]):
        proc = _run_script(LEFT_OPEN.format(body=body, after=""), str(tmp_path / f"db{i}"), flags=("-W", "always"))
        assert proc.returncode == 0, proc.stderr
        assert "never awaited" not in proc.stderr, proc.stderr
        assert "Task was destroyed" not in proc.stderr, proc.stderr


def test_an_unclosed_database_warns_with_resource_warning_at_exit(tmp_path: Path) -> None:
    script = LEFT_OPEN.format(body="pass", after="gc.collect()")
    proc = _run_script(script, str(tmp_path / "db"), flags=("-W", "always"))
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" in proc.stderr and "never closed" in proc.stderr, proc.stderr
    assert "aclose()" in proc.stderr
    assert "never awaited" not in proc.stderr, proc.stderr
