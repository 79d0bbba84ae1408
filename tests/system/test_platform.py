"""Resources, options, event loops and platforms (issue 12, section 1): ``Database.aclose``,
no "never awaited" warning at exit, ``open(options=...)``, the asyncio-only check, the
wrong-event-loop check, and the sync fallback where ``os.fdatasync`` is missing."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import os
import stat
import subprocess
import sys
import threading
import typing
from pathlib import Path
from typing import Any

import pytest

import quanta
from quanta._storage.vfs import check_platform, pick_sync

REPO = str(Path(__file__).resolve().parent.parent.parent)

LEFT_OPEN = """
import asyncio, gc, sys
import quanta

async def main():
    db = await quanta.open(sys.argv[1])
    {body}

asyncio.run(main())
{after}
"""


async def _first(rows: typing.AsyncIterator[object]) -> object:
    async for row in rows:
        return row
    return None


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


INDEXED = """
import asyncio, sys
from typing import Annotated
import quanta

@quanta.entity(name="Person")
class Person:
    id: int = quanta.auto()
    city: {city} = "Oslo"

async def main():
    {body}

asyncio.run(main())
"""


def test_an_index_build_left_running_at_exit_leaves_no_coroutine_unawaited(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    fill = (
        "async with quanta.open(sys.argv[1], entities=[Person]) as db:\n"
        "        await db.collection(Person).put_many([Person(city=str(i)) for i in range(300)])"
    )
    proc = _run_script(INDEXED.format(city="str", body=fill), path)
    assert proc.returncode == 0, proc.stderr
    # A new index: built in the background after open returns; the program exits at once.
    leave = "db = await quanta.open(sys.argv[1], entities=[Person])"
    proc = _run_script(INDEXED.format(city="Annotated[str, quanta.Index()]", body=leave), path, flags=("-W", "always"))
    assert proc.returncode == 0, proc.stderr
    assert "never awaited" not in proc.stderr, proc.stderr


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


# =============================================================================== event loops


def test_open_under_trio_raises_unsupported_platform_error(tmp_path: Path) -> None:
    import anyio

    pytest.importorskip("trio")  # in the test extra: a missing trio is a broken environment, not a skip
    path = tmp_path / "db"
    seen: list[BaseException] = []

    async def main() -> None:
        try:
            await quanta.open(str(path))
        except quanta.QuantaError as exc:
            seen.append(exc)

    anyio.run(main, backend="trio")
    assert len(seen) == 1 and isinstance(seen[0], quanta.UnsupportedPlatformError), seen
    assert "asyncio" in str(seen[0]) and "trio" in str(seen[0])
    assert not path.exists()  # refused before anything touched the disk


def test_open_under_anyio_asyncio_backend_works(tmp_path: Path) -> None:
    import anyio

    async def main() -> bytes | None:
        async with quanta.open(str(tmp_path / "db")) as db:
            await db.kv.put(b"k", b"v")
            return await db.kv.get(b"k")

    assert anyio.run(main, backend="asyncio") == b"v"


def test_a_database_used_from_a_second_asyncio_run_says_wrong_event_loop(tmp_path: Path) -> None:
    async def first() -> quanta.Database:
        db = await quanta.open(str(tmp_path / "db"))
        await db.kv.put(b"k", b"v")
        return db

    db = asyncio.run(first())  # returns without closing: that loop ends

    async def second() -> None:
        with pytest.raises(quanta.WrongEventLoopError, match="another event loop"):
            await db.kv.put(b"k", b"w")
        with pytest.raises(quanta.WrongEventLoopError):
            await db.kv.get(b"k")
        with pytest.raises(quanta.WrongEventLoopError):
            db.snapshot()
        with pytest.raises(quanta.WrongEventLoopError):
            async with db.transaction():
                pass
        await db.aclose()  # closing from the wrong loop is allowed and quiet

    asyncio.run(second())


async def test_a_database_used_from_another_threads_loop_says_wrong_event_loop(tmp_path: Path) -> None:
    db = await quanta.open(str(tmp_path / "db"))
    await db.kv.put(b"k", b"v")
    errors: dict[str, BaseException | None] = {}

    async def elsewhere() -> None:
        for name, op in [
            ("get", lambda: db.kv.get(b"k")),
            ("put", lambda: db.kv.put(b"k", b"w")),
            ("scan", lambda: _first(db.kv.scan())),
        ]:
            try:
                await op()
            except BaseException as exc:
                errors[name] = exc
            else:
                errors[name] = None
        try:
            db.snapshot()
        except BaseException as exc:
            errors["snapshot"] = exc
        try:
            async with db.transaction() as tx:
                await tx.kv.get(b"k")
        except BaseException as exc:
            errors["transaction"] = exc
        try:
            async with db.changes() as stream:
                await stream.aclose()
        except BaseException as exc:
            errors["changes"] = exc

    thread = threading.Thread(target=lambda: asyncio.run(elsewhere()))
    thread.start()
    await asyncio.to_thread(thread.join)
    assert set(errors) == {"get", "put", "scan", "snapshot", "transaction", "changes"}
    # Point reads do not check the loop (too costly on the hot path; see Engine.check_loop):
    assert errors.pop("get") is None
    for name, exc in errors.items():
        assert isinstance(exc, quanta.WrongEventLoopError), (name, exc)
    assert await db.kv.get(b"k") == b"v"  # nothing was written from the other loop
    await db.aclose()


# =============================================================================== platforms


class _FakeOs:
    def __init__(self, *, fdatasync: bool) -> None:
        self.calls: list[tuple[str, int]] = []
        if fdatasync:
            self.fdatasync = lambda fd: self.calls.append(("fdatasync", fd))

    def fsync(self, fd: int) -> None:
        self.calls.append(("fsync", fd))


class _FakeFcntl:
    F_FULLFSYNC = 51

    def __init__(self, fails: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.fails = fails

    def fcntl(self, fd: int, cmd: int) -> int:
        self.calls.append((fd, cmd))
        if self.fails is not None:
            raise OSError(self.fails, os.strerror(self.fails))
        return 0


def test_pick_sync_prefers_fdatasync() -> None:
    fake_os, fake_fcntl = _FakeOs(fdatasync=True), _FakeFcntl()
    pick_sync(fake_os, fake_fcntl)(7)
    assert fake_os.calls == [("fdatasync", 7)] and fake_fcntl.calls == []


def test_pick_sync_uses_full_fsync_without_fdatasync() -> None:
    fake_os, fake_fcntl = _FakeOs(fdatasync=False), _FakeFcntl()
    pick_sync(fake_os, fake_fcntl)(7)
    assert fake_fcntl.calls == [(7, 51)] and fake_os.calls == []


def test_pick_sync_falls_back_to_fsync_when_full_fsync_is_refused() -> None:
    fake_os, fake_fcntl = _FakeOs(fdatasync=False), _FakeFcntl(fails=errno.ENOTSUP)
    pick_sync(fake_os, fake_fcntl)(7)
    assert fake_fcntl.calls == [(7, 51)] and fake_os.calls == [("fsync", 7)]
    with pytest.raises(OSError):  # a real I/O error is not papered over
        pick_sync(fake_os, _FakeFcntl(fails=errno.EIO))(7)


def test_pick_sync_uses_fsync_without_fdatasync_or_full_fsync() -> None:
    fake_os = _FakeOs(fdatasync=False)
    pick_sync(fake_os, None)(7)
    pick_sync(fake_os, object())(8)  # an fcntl without F_FULLFSYNC (Linux)
    assert fake_os.calls == [("fsync", 7), ("fsync", 8)]


def _regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


async def test_writes_are_durable_through_fsync_where_fdatasync_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if _regular(fd):
            synced.append(fd)
        real_fsync(fd)

    monkeypatch.delattr(os, "fdatasync", raising=False)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.delattr(fcntl, "F_FULLFSYNC", raising=False)
    path = str(tmp_path / "db")
    async with quanta.open(path, durability="sync") as db:
        before = len(synced)
        await db.kv.put(b"k", b"v")
        assert len(synced) > before  # the commit's WAL sync went through os.fsync
    async with quanta.open(path) as db:
        assert await db.kv.get(b"k") == b"v"


async def test_writes_are_durable_through_full_fsync_where_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def fake_fcntl(fd: int, cmd: int, *args: Any) -> int:
        assert cmd == 51
        calls.append(fd)
        real_fsync(fd)
        return 0

    monkeypatch.delattr(os, "fdatasync", raising=False)
    monkeypatch.setattr(fcntl, "F_FULLFSYNC", 51, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", fake_fcntl)
    path = str(tmp_path / "db")
    async with quanta.open(path, durability="sync") as db:
        before = len(calls)
        await db.kv.put(b"k", b"v")
        assert len(calls) > before
    monkeypatch.undo()
    async with quanta.open(path) as db:
        assert await db.kv.get(b"k") == b"v"


def test_open_on_windows_raises_unsupported_platform_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    path = tmp_path / "db"
    with pytest.raises(quanta.UnsupportedPlatformError, match="Linux and macOS"):
        quanta.open(str(path))
    assert not path.exists()


def test_check_platform_names_what_is_supported() -> None:
    check_platform("linux")
    check_platform("darwin")
    with pytest.raises(quanta.UnsupportedPlatformError, match="Windows"):
        check_platform("win32")


def test_the_package_imports_without_fcntl() -> None:
    code = (
        "import sys; sys.modules['fcntl'] = None\n"  # import fcntl now raises ImportError, as on Windows
        "import quanta, quanta._storage.vfs as vfs\n"
        "assert vfs._fcntl_module() is None\n"
        "print('ok')\n"
    )
    proc = _run_script(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_pypi_classifiers_say_what_is_supported() -> None:
    import tomllib

    project = tomllib.loads((Path(REPO) / "pyproject.toml").read_text())["project"]
    classifiers = set(project["classifiers"])
    assert {
        "Development Status :: 4 - Beta",
        "Framework :: AsyncIO",
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
        "License :: OSI Approved :: MIT License",
        "Topic :: Database",
    } <= classifiers
    assert not any("Windows" in c for c in classifiers)
    assert any(dep.startswith("trio") for dep in project["optional-dependencies"]["test"])
