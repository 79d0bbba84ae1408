"""Shared fixtures. `db_factory` opens databases on the in-memory file layer and on a real
temporary directory (every test that takes it runs on both, as in tinydb's conftest)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import quanta
from quanta._storage.vfs import FileSystem, MemoryFileSystem, OSFileSystem

# Tests are grouped by layer (tests/storage, kv, entity, live, catalog, system); the helpers they
# share live in tests/support and are imported by name.
sys.path.insert(0, str(Path(__file__).parent / "support"))

# Shared machines are noisy: no per-example deadline and no "too slow" health check, so a
# loaded CI runner cannot turn a passing property into a flaky failure.
settings.register_profile("quanta", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("quanta")

OpenFn = Callable[..., Awaitable[quanta.Database]]


@pytest.fixture(params=["memory", "disk"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_factory(backend: str, tmp_path: Any) -> AsyncIterator[OpenFn]:
    """``await open_db(**options)`` opens (or reopens) the test's database."""
    memfs = MemoryFileSystem()
    path = str(tmp_path / "db")
    opened: list[quanta.Database] = []

    async def open_db(**options: Any) -> quanta.Database:
        if backend == "memory":
            options.setdefault("fs", memfs)
        db = await quanta.open(path, **options)
        opened.append(db)
        return db

    open_db.fs = memfs if backend == "memory" else None  # type: ignore[attr-defined]
    open_db.path = path  # type: ignore[attr-defined]
    yield open_db
    for db in opened:
        if not db.closed:
            try:
                await db.close()
            except quanta.QuantaError:
                pass


@pytest.fixture
async def db(db_factory: OpenFn) -> quanta.Database:
    return await db_factory()


@pytest.fixture(params=["memory", "os"])
def fsdir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FileSystem, str]]:
    """A file layer and a directory in it: the same test on the in-memory file layer and on
    a real temp directory."""
    if request.param == "memory":
        fs = MemoryFileSystem()
        fs.mkdir("/db")
        yield fs, "/db"
    else:
        yield OSFileSystem(), str(tmp_path)


def invariants_on() -> bool:
    return os.environ.get("QUANTA_INVARIANTS") == "1"
