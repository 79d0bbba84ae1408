"""``verify(deep=True)`` checks index and unique entries and links against the records, and
the catalog against the entity key space (quanta/_catalog/verify.py): a sound database
reports nothing, every way of damaging them is reported (with its kind, entity and key),
and writers running during the check cause no false report."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import pytest

import quanta
from quanta import Index, PrimaryKey, Unique
from quanta._codec import encode_key
from quanta._schema.keyspace import index_key, record_key, unique_key
from quanta._storage.vfs import MemoryFileSystem


@quanta.entity(indexes=[Index("city", "age")])
class Member:
    id: Annotated[int, PrimaryKey()]
    email: Annotated[str, Unique()]
    name: Annotated[str, Index()]
    city: str
    age: int
    tags: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)
    nick: Annotated[str | None, Unique()] = None


def members(n: int) -> list[Member]:
    return [
        Member(
            id=i,
            email=f"m{i}@x.org",
            name=f"n{i % 7}",
            city=["Oslo", "Rome"][i % 2],
            age=20 + i % 30,
            tags=["a", "b"][: i % 3],
            nick=None if i % 4 else f"nick{i}",
        )
        for i in range(n)
    ]


async def _raw(db: quanta.Database, key: bytes, value: bytes | None) -> None:
    await db._engine.write([key], [value], len(key) + len(value or b""))  # db.kv refuses reserved keys


Damage = Callable[[quanta.Database], Awaitable[None]]

DAMAGES: dict[str, tuple[Damage, str]] = {
    "index entry deleted": (
        lambda db: _raw(db, index_key("Member", "name", ["n3"], 3), None),
        "has no ",
    ),
    "composite entry deleted": (
        lambda db: _raw(db, index_key("Member", "city_age", ["Rome", 25], 5), None),
        "has no ",
    ),
    "multi-entry element deleted": (
        lambda db: _raw(db, index_key("Member", "tags", ["b"], 5), None),
        "has no ",
    ),
    "unique entry deleted": (
        lambda db: _raw(db, unique_key("Member", "email", ["m8@x.org"]), None),
        "has no ",
    ),
    "orphan entry (no record)": (
        lambda db: _raw(db, index_key("Member", "name", ["n1"], 999), encode_key(999)),
        "names no record",
    ),
    "stale entry (old values)": (
        lambda db: _raw(db, index_key("Member", "name", ["gone"], 2), encode_key(2)),
        "does not match",
    ),
    "unique entry for a None value": (
        lambda db: _raw(db, unique_key("Member", "nick", ["ghost"]), encode_key(1)),
        "does not match",
    ),
    "entry naming another record": (
        lambda db: _raw(db, unique_key("Member", "email", ["m9@x.org"]), encode_key(10)),
        "names another record",
    ),
    "record deleted behind its entries": (
        lambda db: _raw(db, record_key("Member", 6), None),
        "names no record",
    ),
}


KINDS = {
    "has no ": "missing_entry",
    "names no record": "orphan_entry",
    "does not match": "stale_entry",
    "names another record": "misdirected_entry",
}


async def _open(fs: MemoryFileSystem | None = None) -> quanta.Database:
    db = await quanta.open("/db", fs=fs or MemoryFileSystem(), entities=[Member])
    await db.collection(Member).put_many(members(40))
    return db


async def test_a_sound_database_has_no_problems() -> None:
    db = await _open()
    try:
        result = await db.verify(deep=True)
        assert result.problems == () and result.problem_count == 0
        # name, city_age and email for every record, tags per element, nick for every 4th
        expected = 40 * 3 + sum(len(m.tags) for m in members(40)) + 10
        assert result.index_entries == expected
    finally:
        await db.close()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_every_kind_of_damage_is_reported(damage: str) -> None:
    db = await _open()
    try:
        harm, words = DAMAGES[damage]
        await harm(db)
        result = await db.verify(deep=True)
        assert result.problem_count >= 1, damage
        assert any(words in p.message and p.kind == KINDS[words] for p in result.problems), result.problems
        assert all(p.message.startswith("Member: ") and p.entity == "Member" for p in result.problems)
    finally:
        await db.close()


async def test_writers_during_the_check_cause_no_false_report() -> None:
    db = await _open()
    coll = db.collection(Member)
    stop = asyncio.Event()

    async def writer() -> None:
        i = 1000
        while not stop.is_set():
            await coll.put(Member(id=i % 60, email=f"w{i}@x.org", name=f"w{i % 5}", city="Oslo", age=i % 9))
            if i % 3 == 0:
                await coll.delete((i + 7) % 60)
            i += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    try:
        for _ in range(5):
            result = await db.verify(deep=True)
            assert result.problems == (), result.problems
    finally:
        stop.set()
        await task
        await db.close()


def test_the_cli_checks_the_entries_of_the_classes_a_module_declares(tmp_path: Path) -> None:
    models = tmp_path / "models.py"
    models.write_text(
        textwrap.dedent(
            """
            from typing import Annotated
            import quanta
            from quanta import Index, PrimaryKey

            @quanta.entity
            class Thing:
                id: Annotated[int, PrimaryKey()]
                name: Annotated[str, Index()]
            """
        )
    )
    path = tmp_path / "db"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import quanta
        from models import Thing
        from quanta._schema.keyspace import index_key
        async def main():
            async with quanta.open({str(path)!r}, entities=[Thing]) as db:
                await db.collection(Thing).put_many([Thing(id=i, name=f"t{{i}}") for i in range(5)])
                key = index_key("Thing", "name", ["t2"], 2)
                await db._engine.write([key], [None], len(key))
        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    run = subprocess.run(
        [sys.executable, "-m", "quanta", "verify", "--deep", str(path), "--module", str(models)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run
    assert "PROBLEM: Thing: the record with primary key 2 has no index 'name' entry ('t2', 2)" in run.stdout, run.stdout
    assert "5 records, 5 index entries, 0 links, 1 problems" in run.stdout, run.stdout
    plain = subprocess.run(
        [sys.executable, "-m", "quanta", "verify", "--deep", str(path)], capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 0 and "0 index entries" in plain.stdout, plain.stdout
    assert "NOT CHECKED: Thing: its index entries and links were not checked" in plain.stdout, plain.stdout


# ------------------------------------------------------------------------------------ links


@quanta.entity
class Author:
    id: Annotated[int, PrimaryKey()]
    name: str


@quanta.entity
class Post:
    id: Annotated[int, PrimaryKey()]
    author: quanta.Link[Author] = quanta.link()
    editors: quanta.Links[Author] = quanta.links()


async def _linked() -> quanta.Database:
    db = await quanta.open("/db", fs=MemoryFileSystem(), entities=[Author, Post])
    await db.collection(Author).put_many([Author(id=i, name=f"a{i}") for i in range(5)])
    authors = await db.collection(Author).get_many(range(5))
    await db.collection(Post).put_many(
        [Post(id=i, author=authors[i % 5], editors=[authors[(i + 1) % 5], authors[(i + 2) % 5]]) for i in range(10)]
    )
    return db


async def test_links_to_existing_records_are_counted_and_clean() -> None:
    db = await _linked()
    try:
        result = await db.verify(deep=True)
        assert result.ok and result.links == 10 * 3, result
    finally:
        await db.close()


async def test_a_link_to_a_record_that_does_not_exist_is_reported_as_dangling() -> None:
    db = await _linked()
    try:
        await _raw(db, record_key("Author", 3), None)  # behind the cascades' back
        result = await db.verify(deep=True)
        dangling = [p for p in result.problems if p.kind == "dangling_link"]
        # Author 3 is the author of posts 3 and 8, an editor of 1, 2, 6 and 7
        assert sorted(p.key for p in dangling) == sorted(record_key("Post", i) for i in (1, 2, 3, 6, 7, 8))
        assert all(p.entity == "Post" and "which does not exist (a dangling link)" in p.message for p in dangling)
        assert any("Post: the record with primary key 3 links (author) to Author 3" in p.message for p in dangling)
        assert result.problem_count == len(result.problems) == 6
    finally:
        await db.close()


# ------------------------------------------------------------------------- catalog/key space


@pytest.mark.parametrize(
    ("kind", "key", "words"),
    [
        ("unknown_entity", record_key("Ghost", 1), "records of entity 'Ghost', which has no stored schema"),
        ("unknown_index", index_key("Member", "nosuch", ["x"], 1), "which the stored schema of Member does not have"),
        ("unknown_index", unique_key("Member", "name", ["n1"]), "which the stored schema declares non-unique"),
        ("unknown_index", index_key("Member", "email", ["m1@x.org"], 1), "which the stored schema declares unique"),
        ("unknown_index", index_key("Ghost", "name", ["x"], 1), "an entity with no stored schema"),
        ("unknown_key", b"\x00Qz-whatever", "a key of no known kind"),
        ("unknown_key", b"\x00Qr\xff\xfe", "an unreadable key"),
    ],
)
@pytest.mark.parametrize("with_class", [True, False])
async def test_keys_the_catalog_does_not_account_for_are_reported(
    kind: str, key: bytes, words: str, with_class: bool
) -> None:
    fs = MemoryFileSystem()
    db = await _open(fs)
    await _raw(db, key, b"\x91\x01")
    await db.close()
    db = await quanta.open("/db", fs=fs, entities=[Member] if with_class else [])
    try:
        result = await db.verify(deep=True)
        found = [p for p in result.problems if p.kind == kind]
        assert len(found) == 1 and words in found[0].message and found[0].key == key, result.problems
        assert result.skipped == (() if with_class else (result.skipped[0],))
        if not with_class:
            assert result.skipped[0].startswith("Member: its index entries and links were not checked")
    finally:
        await db.close()


async def test_the_problem_list_is_capped_and_the_count_goes_on() -> None:
    db = await _open()
    try:
        n = 1200
        keys = [index_key("Member", "name", ["x"], 10_000 + i) for i in range(n)]
        await db._engine.write(keys, [encode_key(10_000 + i) for i in range(n)], sum(len(k) + 8 for k in keys))
        result = await db.verify(deep=True)
        assert result.problem_count == n and len(result.problems) == 1000 and not result.ok
        assert {p.kind for p in result.problems} == {"orphan_entry"}
    finally:
        await db.close()


async def test_without_deep_nothing_but_the_tables_is_checked() -> None:
    db = await _open()
    try:
        await _raw(db, record_key("Ghost", 1), b"\x91\x01")
        result = await db.verify()
        assert result == quanta.VerifyReport(tables=result.tables, entries=result.entries)
        assert result.records is None and result.links is None and result.ok
    finally:
        await db.close()
