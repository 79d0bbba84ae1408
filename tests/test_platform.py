"""Resources, options, event loops and platforms (issue 12, section 1): ``Database.aclose``,
no "never awaited" warning at exit, ``open(options=...)``, the asyncio-only check, the
wrong-event-loop check, and the sync fallback where ``os.fdatasync`` is missing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

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


# =============================================================================== options


def test_open_options_lists_every_field_of_options() -> None:
    typed = typing.get_type_hints(quanta.OpenOptions)
    assert set(typed) == {f.name for f in dataclasses.fields(quanta.Options)}
    assert quanta.OpenOptions.__required_keys__ == frozenset()  # total=False: every key optional
    assert quanta.OpenOptions.__module__ == "quanta"
    assert "OpenOptions" in quanta.__all__


async def test_open_takes_an_options_object(tmp_path: Path) -> None:
    opts = quanta.Options(durability="os", memtable_bytes=1 << 20, bloom_bits_per_key=(10,))
    async with quanta.open(str(tmp_path / "db"), options=opts) as db:
        assert db.options == opts
        await db.kv.put(b"k", b"v")
    async with quanta.open(str(tmp_path / "db"), options=quanta.Options(read_only=True)) as db:
        assert await db.kv.get(b"k") == b"v"
        with pytest.raises(quanta.ReadOnlyError):
            await db.kv.put(b"k", b"w")


async def test_keyword_options_override_fields_of_options(tmp_path: Path) -> None:
    base = quanta.Options(durability="os", memtable_bytes=1 << 20, block_size=8192)
    async with quanta.open(str(tmp_path / "db"), options=base, memtable_bytes=2 << 20, bloom_bits_per_key=7) as db:
        assert db.options.durability == "os" and db.options.block_size == 8192  # from options=
        assert db.options.memtable_bytes == 2 << 20  # the keyword wins
        assert db.options.bloom_bits_per_key == (7,)  # normalized as a keyword alone is
    assert base.memtable_bytes == 1 << 20  # the object passed in is not changed


async def test_keyword_options_alone_still_work(tmp_path: Path) -> None:
    async with quanta.open(str(tmp_path / "db"), durability="os", bloom_bits_per_key=[9, 5]) as db:
        assert db.options.durability == "os" and db.options.bloom_bits_per_key == (9, 5)


@pytest.mark.parametrize(
    ("options", "kwargs", "error"),
    [
        (quanta.Options(durability="fast"), {}, quanta.InvalidArgumentError),  # type: ignore[arg-type]
        (quanta.Options(memtable_bytes="big"), {}, quanta.InvalidTypeError),  # type: ignore[arg-type]
        (quanta.Options(), {"memtable_bytes": 1}, quanta.InvalidArgumentError),
        (quanta.Options(), {"durabilty": "sync"}, quanta.InvalidArgumentError),
        (quanta.Options(read_only=True), {"error_if_exists": True}, quanta.InvalidArgumentError),
        ({"durability": "sync"}, {}, quanta.InvalidTypeError),
    ],
)
def test_bad_options_raise_before_touching_disk(
    tmp_path: Path, options: Any, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    path = tmp_path / "db"
    with pytest.raises(error):
        quanta.open(str(path), options=options, **kwargs)
    assert not path.exists()
