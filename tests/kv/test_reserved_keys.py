"""The reserved entity key space (keys starting with ``b"\\x00Q"``): ``db.kv``, ``tx.kv`` and
``snapshot.kv`` refuse every call naming a key in it with ``ReservedKeyError`` before anything
is written, their scans step over it (``include_reserved=True`` shows it), and the entity layer
still reads and writes it (issue 12, "Reserved key space")."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import pytest

import quanta
from quanta import Index, PrimaryKey
from quanta._catalog.format import schema_key
from quanta._cli import dump
from quanta._kv import RESERVED_END, RESERVED_PREFIX, user_ranges
from quanta._schema.keyspace import NS, record_key
from quanta._storage.vfs import MemoryFileSystem
from quanta.errors import InvalidArgumentError, ReservedKeyError

PATH = "/db"
RECORD = record_key("User", 1)


@quanta.entity(name="User")
class User:
    id: Annotated[int, PrimaryKey(auto=True)]
    name: Annotated[str, Index()] = ""
    email: Annotated[str, Index(unique=True)] = ""


async def collect(it: AsyncIterator[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [item async for item in it]


async def everything(db: quanta.Database) -> dict[bytes, bytes]:
    return dict(await collect(db.kv.scan(include_reserved=True)))


async def user_db() -> quanta.Database:
    """A database with user keys on both sides of the reserved space and one entity record."""
    db = await quanta.open(PATH, fs=MemoryFileSystem())
    await db.collection(User).put(User(id=0, name="ann", email="a@x"))
    await db.kv.put_many([(b"\x00A", b"low"), (b"\x00R", b"just-after"), (b"a", b"1"), (b"z", b"2")])
    return db


USER_KEYS = [b"\x00A", b"\x00R", b"a", b"z"]
RESERVED = [RECORD, NS, NS + b"x", b"\x00Q" + b"\xff" * 10, schema_key("User")]


def test_the_constant_is_the_keyspace_prefix() -> None:
    assert NS == RESERVED_PREFIX == b"\x00Q" and RESERVED_END == b"\x00R"


@pytest.mark.parametrize(
    ("lo", "hi", "parts"),
    [
        (None, None, [(None, b"\x00Q"), (b"\x00R", None)]),
        (b"a", None, [(b"a", None)]),
        (None, b"\x00P", [(None, b"\x00P")]),
        (b"\x00", b"\x01", [(b"\x00", b"\x00Q"), (b"\x00R", b"\x01")]),
        (b"\x00Qa", b"\x00Qz", []),
        (b"\x00Qa", b"b", [(b"\x00R", b"b")]),
        (b"\x00", b"\x00Qr", [(b"\x00", b"\x00Q")]),
        (b"\x00Q", b"\x00R", []),
    ],
)
def test_user_ranges_cut_the_reserved_space_out(lo: bytes | None, hi: bytes | None, parts: list[Any]) -> None:
    assert user_ranges(lo, hi) == parts


# ---------------------------------------------------------------- refused calls write nothing


def db_calls(db: quanta.Database, key: bytes) -> list[Callable[[], Awaitable[object]]]:
    async def batch_put() -> None:
        db.kv.batch().put(key, b"v")

    async def batch_delete() -> None:
        db.kv.batch().delete(key)

    async def watch() -> None:
        db.kv.watch(key)

    return [
        lambda: db.kv.get(key),
        lambda: db.kv.get_many([b"a", key]),
        lambda: db.kv.put(key, b"junk"),
        lambda: db.kv.delete(key),
        lambda: db.kv.put_many([(b"new", b"1"), (key, b"junk")]),
        lambda: db.kv.put_many([[b"new", b"1"], (key, b"junk")]),  # the item-by-item path
        batch_put,
        batch_delete,
        watch,
    ]


@pytest.mark.parametrize("key", RESERVED)
async def test_db_kv_refuses_every_call_on_a_reserved_key_and_writes_nothing(key: bytes) -> None:
    db = await user_db()
    try:
        before = await everything(db)
        assert RECORD in before
        for call in db_calls(db, key):
            with pytest.raises(ReservedKeyError, match="reserved entity key space"):
                await call()
        async with db.snapshot() as snap:
            with pytest.raises(ReservedKeyError):
                await snap.kv.get(key)
            with pytest.raises(ReservedKeyError):
                await snap.kv.get_many([key])
        assert await everything(db) == before
        assert issubclass(ReservedKeyError, InvalidArgumentError)
        assert await db.collection(User).get(1) == User(id=1, name="ann", email="a@x")
    finally:
        await db.close()


@pytest.mark.parametrize("key", RESERVED)
async def test_tx_kv_refuses_every_call_on_a_reserved_key_and_commits_nothing(key: bytes) -> None:
    db = await user_db()
    try:
        before = await everything(db)
        async with db.transaction() as tx:
            await tx.kv.put(b"fine", b"1")
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: tx.kv.get(key),
                lambda: tx.kv.get_many([key]),
                lambda: tx.kv.put(key, b"junk"),
                lambda: tx.kv.delete(key),
                lambda: tx.kv.put_many([(b"new", b"1"), (key, b"junk")]),
            ]
            for call in calls:
                with pytest.raises(ReservedKeyError):
                    await call()
            await tx.rollback()
        assert await everything(db) == before
    finally:
        await db.close()


async def test_the_fast_paths_still_accept_user_keys_next_to_the_reserved_space() -> None:
    db = await user_db()
    try:
        await db.kv.put(b"\x00P", b"1")
        await db.kv.put(b"\x00", b"2")
        db.kv.watch(b"\x00R")
        assert await db.kv.get(b"\x00R") == b"just-after"
        assert await db.kv.get_many([b"\x00", b"\x00P", b"\x00R"]) == [b"2", b"1", b"just-after"]
    finally:
        await db.close()


# ---------------------------------------------------------------- scans step over it


async def test_scans_skip_the_reserved_space_in_every_form() -> None:
    db = await user_db()
    try:
        assert [k for k, _ in await collect(db.kv.scan())] == USER_KEYS
        assert [k for k, _ in await collect(db.kv.scan(reverse=True))] == USER_KEYS[::-1]
        assert [k for k, _ in await collect(db.kv.scan(limit=2))] == USER_KEYS[:2]
        assert [k for k, _ in await collect(db.kv.scan(reverse=True, limit=3))] == USER_KEYS[::-1][:3]
        assert [k for k, _ in await collect(db.kv.scan(b"\x00", b"\x01"))] == [b"\x00A", b"\x00R"]
        assert [k for k, _ in await collect(db.kv.scan(b"\x00", b"\x01", reverse=True))] == [b"\x00R", b"\x00A"]
        assert [k for k, _ in await collect(db.kv.scan(prefix=b"\x00"))] == [b"\x00A", b"\x00R"]
        assert await collect(db.kv.scan(prefix=NS)) == []
        assert await collect(db.kv.scan(b"\x00Qa", b"\x00Qz")) == []
        assert await collect(db.kv.scan(limit=0)) == []
        seen = await everything(db)
        assert RECORD in seen and schema_key("User") in seen and any(k.startswith(NS + b"u") for k in seen)
        assert [k for k in seen if not k.startswith(NS)] == USER_KEYS
        reverse = [k for k, _ in await collect(db.kv.scan(reverse=True, include_reserved=True))]
        assert reverse == sorted(seen, reverse=True)
        async with db.snapshot() as snap:
            await db.kv.put(b"b", b"later")  # invisible to the snapshot
            assert [k for k, _ in await collect(snap.kv.scan())] == USER_KEYS
            assert RECORD in dict(await collect(snap.kv.scan(include_reserved=True)))
        with pytest.raises(quanta.InvalidTypeError):
            db.kv.scan(include_reserved=1)  # type: ignore[arg-type]
    finally:
        await db.close()


async def test_transaction_scans_skip_it_and_merge_their_own_writes() -> None:
    db = await user_db()
    try:
        async with db.transaction() as tx:
            await tx.kv.put(b"\x00B", b"own")
            await tx.kv.delete(b"a")
            await tx.collection(User).put(User(id=0, name="bob", email="b@x"))  # reserved writes
            want = [b"\x00A", b"\x00B", b"\x00R", b"z"]
            assert [k for k, _ in await collect(tx.kv.scan())] == want
            assert [k for k, _ in await collect(tx.kv.scan(reverse=True))] == want[::-1]
            assert [k for k, _ in await collect(tx.kv.scan(limit=3))] == want[:3]
            assert [k for k, _ in await collect(tx.kv.scan(reverse=True, limit=2))] == want[::-1][:2]
            assert [k for k, _ in await collect(tx.kv.scan(prefix=b"\x00"))] == want[:3]
            everything_tx = [k for k, _ in await collect(tx.kv.scan(include_reserved=True))]
            assert record_key("User", 2) in everything_tx and RECORD in everything_tx
        assert await db.collection(User).get(2) == User(id=2, name="bob", email="b@x")
    finally:
        await db.close()


# ---------------------------------------------------------------- the entity layer still works


async def test_entities_work_across_a_reopen_on_disk(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    async with quanta.open(path) as db:
        users = db.collection(User)
        await users.put_many([User(id=0, name=n, email=f"{n}@x") for n in ("a", "b", "c")])
        await users.delete(2)
        await db.kv.put(b"plain", b"1")
    async with quanta.open(path) as db:
        users = db.collection(User)
        fresh = User(id=0, name="d", email="d@x")
        await users.put(fresh)
        assert fresh.id == 4  # the auto-key counter is read from the reserved space
        assert [u.name for u in await users.query().order_by(User.id).all()] == ["a", "c", "d"]
        assert [u.id for u in await users.query().where(User.name == "c").all()] == [3]
        assert await collect(db.kv.scan()) == [(b"plain", b"1")]
        await db.verify()  # raises on a problem
    wals = sorted(str(p) for p in (tmp_path / "db").rglob("*") if p.suffix in (".wal", ".log", ".sst"))
    assert wals
    out = io.StringIO()
    dump(wals[0], out=out)
    assert out.getvalue()
