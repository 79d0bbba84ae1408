"""``db.repair()`` / ``quanta repair PATH --rebuild-indexes`` (Catalog.repair_indexes,
quanta/_catalog/repair.py): every kind of entry damage ``verify(deep=True)`` reports (the
damages of test_verify_entries.py, one at a time and all together) is gone after a repair,
the database verifies clean and the indexed queries answer what the records say; a crash at
any point of a repair leaves either the damaged database untouched or a rebuild that the
next open resumes, never wrong entries; the failure paths (closed, read-only, no class, bad
arguments) and the CLI."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import pytest
from helpers_crash import LONG, SMALL_OPTIONS, RecordingFS, freeze
from test_verify_entries import DAMAGES, Member, members

import quanta
from quanta import DatabaseClosedError, Index, InvalidArgumentError, InvalidTypeError, PrimaryKey, ReadOnlyError
from quanta._catalog import builder as builder_module
from quanta._catalog.format import BUILDING, READY
from quanta._schema import entity_info
from quanta._schema.keyspace import CATALOG, INDEX, NS, UNIQUE, record_key, unique_prefix
from quanta._storage.vfs import MemoryFileSystem

PATH = "/db"
SAMPLE = 24  # crash points checked in the default run (all with QUANTA_LONG=1)


@quanta.entity
class Tag:
    id: Annotated[int, PrimaryKey()]
    label: Annotated[str, Index()]


@quanta.entity
class Writer:
    id: Annotated[int, PrimaryKey()]
    name: str


@quanta.entity
class Article:
    id: Annotated[int, PrimaryKey()]
    author: quanta.Link[Writer] = quanta.link(on_delete="cascade")


def _queries(coll: quanta.Collection[Member]) -> dict[str, Any]:
    """One query per index (each answered from its entries once the index is ready)."""
    return {
        "name n3": coll.where(Member.name == "n3"),
        "name n1": coll.where(Member.name == "n1"),
        "name gone": coll.where(Member.name == "gone"),
        "city_age": coll.where(Member.city == "Rome", Member.age >= 25),
        "tags b": coll.where(quanta.contains(Member.tags, "b")),
        "email m8": coll.where(Member.email == "m8@x.org"),
        "email m9": coll.where(Member.email == "m9@x.org"),
        "nick4": coll.where(Member.nick == "nick4"),
        "nick ghost": coll.where(Member.nick == "ghost"),
    }


def _expected(objs: list[Member]) -> dict[str, list[int]]:
    """What the queries of :func:`_queries` must answer for the records ``objs``."""
    tests = {
        "name n3": lambda m: m.name == "n3",
        "name n1": lambda m: m.name == "n1",
        "name gone": lambda m: m.name == "gone",
        "city_age": lambda m: m.city == "Rome" and m.age >= 25,
        "tags b": lambda m: "b" in m.tags,
        "email m8": lambda m: m.email == "m8@x.org",
        "email m9": lambda m: m.email == "m9@x.org",
        "nick4": lambda m: m.nick == "nick4",
        "nick ghost": lambda m: m.nick == "ghost",
    }
    return {label: sorted(m.id for m in objs if test(m)) for label, test in tests.items()}


async def _answers(db: quanta.Database) -> dict[str, list[int]]:
    coll = db.collection(Member)
    out = {}
    for label, q in _queries(coll).items():
        assert "index" in q.explain().lower(), (label, q.explain())  # answered from the entries
        out[label] = sorted(m.id for m in await q.all())
    return out


async def _records(db: quanta.Database) -> list[Member]:
    return list(await db.collection(Member).query().all())


async def _damaged(names: list[str], fs: MemoryFileSystem | None = None, **options: Any) -> MemoryFileSystem:
    fs = fs if fs is not None else MemoryFileSystem()
    async with quanta.open(PATH, fs=fs, entities=[Member], **options) as db:
        await db.collection(Member).put_many(members(40))
        for name in names:
            await DAMAGES[name][0](db)
        result = await db.verify(deep=True)
        assert result.problem_count >= len(names), result
    return fs


def _all_entries_ready(db: quanta.Database) -> bool:
    stored = db._catalog.schemas["Member"]
    return all(i.state == READY for i in stored.indexes) and not db._catalog.index_jobs


# =============================================================================== repair restores


@pytest.mark.parametrize("damage", [*sorted(DAMAGES), "all of them"])
async def test_repair_removes_every_kind_of_damage(damage: str) -> None:
    names = sorted(DAMAGES) if damage == "all of them" else [damage]
    fs = await _damaged(names)
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:
        objs = await _records(db)
        want = _expected(objs)
        report = await db.repair()
        assert report.indexes == (
            "Member.email",
            "Member.nick",
            "Member.name",
            "Member.tags",
            "Member.city_age",
        ), report.indexes  # unique indexes first
        assert report.records == len(objs) and report.skipped == ()
        expected_entries = 3 * len(objs) + sum(len(m.tags) for m in objs) + sum(m.nick is not None for m in objs)
        assert report.entries == expected_entries
        result = await db.verify(deep=True)
        assert result.problems == () and result.problem_count == 0, result.problems
        assert result.index_entries == expected_entries
        assert _all_entries_ready(db)
        assert await _answers(db) == want
        assert await _records(db) == objs  # the records are untouched
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:  # and it stays so
        assert (await db.verify(deep=True)).problem_count == 0
        assert await _answers(db) == want


async def test_a_sound_database_is_left_as_it_was() -> None:
    fs = await _damaged([])
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:
        before = {k: v async for k, v in db.kv.scan(prefix=NS, include_reserved=True) if k[2:3] != CATALOG}
        want = await _answers(db)
        report = await db.repair()
        after = {k: v async for k, v in db.kv.scan(prefix=NS, include_reserved=True) if k[2:3] != CATALOG}
        assert report.entries_removed == report.entries == len([k for k in before if k[2:3] in (INDEX, UNIQUE)])
        assert after == before and await _answers(db) == want
        history = db._catalog.schemas["Member"].history
        assert [h.event for h in history[-5:]] == ["index_built"] * 5


async def test_progress_reports_the_delete_then_the_build_of_each_index() -> None:
    fs = await _damaged(["index entry deleted"])
    reports: list[quanta.SchemaProgress] = []
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:
        await db.repair(progress=reports.append)
    finished = [(r.task, r.index) for r in reports if r.finished]
    assert finished == [
        (task, index)
        for index in ("email", "nick", "name", "tags", "city_age")
        for task in ("drop_index", "build_index")
    ], finished
    assert all(r.entity == "Member" for r in reports)
    assert any(r.task == "build_index" and not r.finished and r.done == 40 == r.total for r in reports)


async def test_queries_do_not_use_an_index_while_it_is_rebuilt() -> None:
    fs = await _damaged(["index entry deleted"])  # the entry of record 3, which has name n3
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:
        coll = db.collection(Member)
        q = coll.where(Member.name == "n3")
        assert "index_range" in q.explain() and 3 not in [m.id for m in await q.all()]  # the damage shows
        plans: list[str] = []

        def during(p: quanta.SchemaProgress) -> None:
            if p.index == "name" and not p.finished:
                plans.append(q.explain())

        await db.repair(progress=during)
        assert plans and all("full_scan" in plan for plan in plans), plans
        assert "index_range" in q.explain() and 3 in [m.id for m in await q.all()]


# =============================================================================== failure paths


async def test_closed_read_only_and_bad_arguments_are_refused_before_anything_is_written() -> None:
    fs = await _damaged(["orphan entry (no record)"])
    db = await quanta.open(PATH, fs=fs, entities=[Member])
    with pytest.raises(InvalidTypeError, match="rebuild_indexes must be a bool"):
        await db.repair(rebuild_indexes="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="nothing to do"):
        await db.repair(rebuild_indexes=False)
    with pytest.raises(InvalidTypeError, match="progress"):
        await db.repair(progress=42)  # type: ignore[arg-type]
    assert (await db.verify(deep=True)).problem_count == 1  # still damaged: nothing was done
    await db.close()
    with pytest.raises(DatabaseClosedError):
        await db.repair()
    async with quanta.open(PATH, fs=fs, entities=[Member], read_only=True) as ro:
        with pytest.raises(ReadOnlyError):
            await ro.repair()
        assert (await ro.verify(deep=True)).problem_count == 1


async def test_an_entity_without_a_class_in_use_is_skipped_and_said_so() -> None:
    fs = await _damaged(["index entry deleted"])
    async with quanta.open(PATH, fs=fs, entities=[Tag]) as db:
        await db.collection(Tag).put_many([Tag(id=i, label=f"l{i}") for i in range(5)])
    async with quanta.open(PATH, fs=fs, entities=[Tag]) as db:  # Member's class not declared
        report = await db.repair()
        assert report.indexes == ("Tag.label",) and report.records == 5 and report.entries == 5
        assert len(report.skipped) == 1 and report.skipped[0].startswith("Member: its indexes were not rebuilt")
        assert "no entity class is in use" in report.skipped[0]
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:
        assert (await db.verify(deep=True)).problem_count == 1  # untouched


async def test_a_class_used_through_a_collection_is_repaired_too() -> None:
    fs = await _damaged(["stale entry (old values)"])
    async with quanta.open(PATH, fs=fs) as db:
        db.collection(Member)  # admitted: its class is in use now
        report = await db.repair()
        assert "Member.name" in report.indexes and report.skipped == ()
        assert (await db.verify(deep=True)).problem_count == 0


async def test_link_index_entries_are_rebuilt_too() -> None:
    fs = MemoryFileSystem()
    async with quanta.open(PATH, fs=fs, entities=[Writer, Article]) as db:
        await db.collection(Writer).put_many([Writer(id=i, name=f"w{i}") for i in range(3)])
        await db.collection(Article).put_many([Article(id=i, author=i % 3) for i in range(12)])  # type: ignore[arg-type]
        assert (await db.verify(deep=True)).problem_count == 0
        link_entries = [k async for k, _ in db.kv.scan(prefix=NS + INDEX, include_reserved=True) if b"Article" in k]
        assert len(link_entries) == 12  # the automatic index of the link
        await db._engine.write([link_entries[4]], [None], len(link_entries[4]))
        result = await db.verify(deep=True)
        assert result.problem_count == 1 and "index 'author'" in result.problems[0].message, result.problems
        report = await db.repair()
        assert "Article.author" in report.indexes and report.entries_removed == 11
        assert (await db.verify(deep=True)).problem_count == 0
        await db.collection(Writer).delete(1)  # the cascade finds its referrers through the rebuilt entries
        assert sorted(a.id for a in await db.collection(Article).query().all()) == [0, 2, 3, 5, 6, 8, 9, 11]


async def test_records_sharing_a_unique_value_fail_that_index_only_and_say_which() -> None:
    fs = await _damaged([])
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:
        twin = Member(id=5, email="m4@x.org", name="n5", city="Rome", age=25)
        key = record_key("Member", 5)
        await db._engine.write([key], [entity_info(Member).encode(twin)], 100)  # damage: a duplicate email
        with pytest.raises(quanta.SchemaMismatchError, match=r"records 4 and 5 both have 'm4@x\.org'") as caught:
            await db.repair()
        assert "not these unique ones" in str(caught.value) and "the index was removed" in str(caught.value)
        stored = db._catalog.schemas["Member"]
        assert stored.index("email") is None and all(i.state == READY for i in stored.indexes)
        assert not db._catalog.index_jobs
        assert not [k async for k, _ in db.kv.scan(prefix=unique_prefix("Member", "email"), include_reserved=True)]
        assert (await db.verify(deep=True)).problem_count == 0  # every other index was rebuilt
        await db.collection(Member).delete(5)
    async with quanta.open(PATH, fs=fs, entities=[Member]) as db:  # the open builds it again
        assert db._catalog.schemas["Member"].index("email") is not None
        assert (await db.verify(deep=True)).problem_count == 0
        assert [m.id for m in await db.collection(Member).where(Member.email == "m4@x.org").all()] == [4]


# =============================================================================== crashes


class _Chunk:
    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.saved = builder_module.CHUNK
        builder_module.CHUNK = self.n

    def __exit__(self, *exc: object) -> None:
        builder_module.CHUNK = self.saved


def _sample(images: list[MemoryFileSystem]) -> list[tuple[int, MemoryFileSystem]]:
    indexed = list(enumerate(images))
    if LONG or len(indexed) <= SAMPLE:
        return indexed
    rng = random.Random(14)
    return [indexed[0], *sorted(rng.sample(indexed[1:-1], SAMPLE - 2), key=lambda p: p[0]), indexed[-1]]


async def test_a_crash_at_any_point_of_a_repair_leaves_the_damage_or_resumes_the_rebuild() -> None:
    fs = RecordingFS()
    await _damaged(sorted(DAMAGES), fs, **SMALL_OPTIONS)
    async with quanta.open(PATH, fs=fs, entities=[Member], **SMALL_OPTIONS) as db:
        damaged_problems = (await db.verify(deep=True)).problems
        want = _expected(await _records(db))
    images: list[MemoryFileSystem] = []

    def freeze_before(_: object) -> None:
        with fs._mutex:
            images.append(freeze(fs))

    with _Chunk(8):  # several chunks per index: crashes between chunks too
        fs.fail_hook = freeze_before
        async with quanta.open(PATH, fs=fs, entities=[Member], **SMALL_OPTIONS) as db:
            await db.repair()
        fs.fail_hook = None
        images.append(freeze(fs))
        outcomes = {"damage untouched": 0, "resumed at open": 0, "repaired": 0}
        problems: list[str] = []
        for point, img in _sample(images):
            async with quanta.open(PATH, fs=img.crash(), entities=[Member], **SMALL_OPTIONS) as db:
                resumed = any(i.state == BUILDING for i in db._catalog.schemas["Member"].indexes) or bool(
                    db._catalog.index_jobs
                )
                await db.indexes_ready()
                found = (await db.verify(deep=True)).problems
                if found:
                    # before the first commit of the repair: exactly the damage, nothing else
                    if found != damaged_problems:
                        problems.append(f"point {point}: {found[:3]}")
                    outcomes["damage untouched"] += 1
                    await db.repair()  # ... and running it again repairs it
                    found = (await db.verify(deep=True)).problems
                    if found:
                        problems.append(f"point {point}: still damaged after a second repair: {found[:3]}")
                else:
                    outcomes["resumed at open" if resumed else "repaired"] += 1
                if not _all_entries_ready(db):
                    problems.append(f"point {point}: index jobs left")
                if await _answers(db) != want:
                    problems.append(f"point {point}: wrong query answers")
    assert not problems, problems[:5]
    assert all(outcomes.values()), outcomes


# =============================================================================== the CLI


async def test_an_interrupted_repair_shows_in_quanta_schema_and_resumes_at_open(tmp_path: Path) -> None:
    import io

    from quanta import _cli

    path = str(tmp_path / "db")
    async with quanta.open(path, entities=[Member]) as db:
        await db.collection(Member).put_many(members(40))
        await DAMAGES["stale entry (old values)"][0](db)

        def stop(p: quanta.SchemaProgress) -> None:
            if p.task == "drop_index" and p.index == "name":
                raise RuntimeError("interrupted")

        with pytest.raises(RuntimeError, match="interrupted"):
            await db.repair(progress=stop)
    out = io.StringIO()
    await _cli.schema(path, out=out)
    line = next(x for x in out.getvalue().splitlines() if "(name)" in x)
    assert line.split()[:3] == ["name", "(name)", "building"] and "repair: deleting the old entries" in line, line
    email = next(x for x in out.getvalue().splitlines() if "(email)" in x)
    assert email.split()[-1] == "ready", email  # rebuilt before the interruption
    async with quanta.open(path, entities=[Member]) as db:
        await db.indexes_ready()
        assert _all_entries_ready(db)
        assert (await db.verify(deep=True)).problem_count == 0
        assert await _answers(db) == _expected(await _records(db))


def test_the_cli_repairs_the_classes_a_module_declares(tmp_path: Path) -> None:
    models = tmp_path / "models.py"
    models.write_text(
        textwrap.dedent(
            """
            from typing import Annotated
            import quanta
            from quanta import Index, PrimaryKey, Unique

            @quanta.entity
            class Thing:
                id: Annotated[int, PrimaryKey()]
                name: Annotated[str, Index()]
                code: Annotated[str, Unique()]
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
        from quanta._codec import encode_key
        from quanta._schema.keyspace import index_key, unique_key
        async def main():
            async with quanta.open({str(path)!r}, entities=[Thing]) as db:
                await db.collection(Thing).put_many([Thing(id=i, name=f"t{{i}}", code=f"c{{i}}") for i in range(5)])
                for key, value in [
                    (index_key("Thing", "name", ["t2"], 2), None),
                    (unique_key("Thing", "code", ["c9"]), encode_key(9)),
                ]:
                    await db._engine.write([key], [value], len(key))
        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    def quanta_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quanta", *args], capture_output=True, text=True, timeout=60)

    assert quanta_cli("verify", "--deep", str(path), "--module", str(models)).returncode == 1
    usage = quanta_cli("repair", str(path))
    assert usage.returncode == 2 and "--rebuild-indexes" in usage.stderr, usage
    bare = quanta_cli("repair", str(path), "--rebuild-indexes")
    assert bare.returncode == 1, bare
    assert "SKIPPED: Thing: its indexes were not rebuilt" in bare.stdout and "INCOMPLETE: 0 indexes" in bare.stdout
    run = quanta_cli("repair", str(path), "--rebuild-indexes", "--module", str(models))
    assert run.returncode == 0, run
    assert "rebuilt Thing.code\nrebuilt Thing.name\n" in run.stdout, run.stdout
    assert "OK: 2 indexes rebuilt from 5 records; 10 entries deleted, 10 written" in run.stdout, run.stdout
    check = quanta_cli("verify", "--deep", str(path), "--module", str(models))
    assert check.returncode == 0 and "0 problems" in check.stdout, check.stdout
    missing = quanta_cli("repair", str(tmp_path / "nope"), "--rebuild-indexes", "--module", str(models))
    assert missing.returncode == 1 and "quanta repair: DatabaseNotFoundError" in missing.stderr, missing
