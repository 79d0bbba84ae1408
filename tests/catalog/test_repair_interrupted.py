"""A ``db.repair()`` that stops part-way (Catalog.repair_indexes): its progress callback
raising, a cancellation (``task.cancel()``, an anyio cancel scope) at every commit of the
repair, an I/O error at every file operation. Whatever stopped it:

* the exception that stopped it reaches the caller unchanged, with a note saying what was
  left (the indexes still being rebuilt, the entities not reached) and how to finish;
* the indexes left being rebuilt stay hidden from the planner, so every query answers what
  the records say (by reading them), and the in-memory catalog is what was committed (a
  cancelled commit can still complete after its caller is gone);
* while the database still takes writes, calling ``db.repair()`` again in the same open
  finishes it: a database that verifies clean, every index ready, the same answers; after a
  fatal I/O error, reopening resumes the indexes left being rebuilt and a second repair
  does the rest."""

from __future__ import annotations

import asyncio
import errno
from typing import Annotated, Any

import anyio
import pytest
from helpers_crash import SMALL_OPTIONS
from test_repair import PATH, _Chunk, _damaged, _expected, _queries, _records, _sample
from test_verify_entries import DAMAGES, Member

import quanta
from quanta import Index, PrimaryKey, QuantaError
from quanta._catalog import builder as builder_module
from quanta._catalog.format import BUILDING, READY, StoredSchema, job_key, schema_key
from quanta._catalog.store import Store
from quanta._schema.keyspace import record_key
from quanta._storage.vfs import MemoryFileSystem, Op
from quanta.errors import StorageIOError


@quanta.entity
class Tag:
    id: Annotated[int, PrimaryKey()]
    label: Annotated[str, Index()]


TAGS = [Tag(id=i, label=f"l{i % 4}") for i in range(12)]


async def _setup(fs: MemoryFileSystem | None = None, **options: Any) -> MemoryFileSystem:
    """Member with every kind of entry damage (test_verify_entries.DAMAGES), and Tag (sorted
    after Member: the repair reaches it second) with one entry deleted."""
    fs = await _damaged(sorted(DAMAGES), fs, **options)
    async with quanta.open(PATH, fs=fs, entities=[Member, Tag], **options) as db:
        await db.collection(Tag).put_many(TAGS)
        entries = [k async for k, _ in db.kv.scan(prefix=b"\x00Qi", include_reserved=True) if b"Tag" in k]
        entry = entries[0]
        await db._engine.write([entry], [None], len(entry))
        assert await problems(db) > len(DAMAGES)
    return fs


async def problems(db: quanta.Database) -> int:
    """How many problems ``verify(deep=True)`` reports."""
    return (await db.verify(deep=True)).problem_count


async def answers(db: quanta.Database) -> dict[str, list[int]]:
    """The indexed queries of test_repair, by whatever plan the planner makes now."""
    out = {label: sorted(m.id for m in await q.all()) for label, q in _queries(db.collection(Member)).items()}
    out["tag l1"] = sorted(t.id for t in await db.collection(Tag).where(Tag.label == "l1").all())
    return out


def expected(objs: list[Member]) -> dict[str, list[int]]:
    return {**_expected(objs), "tag l1": [t.id for t in TAGS if t.label == "l1"]}


def building(db: quanta.Database) -> list[str]:
    return [
        f"{name}.{i.name}" for name, s in sorted(db._catalog.schemas.items()) for i in s.indexes if i.state == BUILDING
    ]


def hidden_ones_are_not_used(db: quanta.Database) -> None:
    """Every query whose index is left being rebuilt is planned without it."""
    left = {n.split(".")[1] for n in building(db) if n.startswith("Member.")}
    for label, q in _queries(db.collection(Member)).items():
        index_line = q.explain().splitlines()[1]
        for name in left:
            assert f"index:    {name} on" not in index_line, (label, index_line)


def catalog_is_what_was_committed(db: quanta.Database) -> None:
    """The in-memory schemas and index jobs equal the committed ones."""
    store = Store(db._engine)
    for name in ("Member", "Tag"):
        data = store.get(schema_key(name))
        assert data is not None
        on_disk = StoredSchema.from_bytes(data)
        assert [(i.name, i.state) for i in db._catalog.schemas[name].indexes] == [
            (i.name, i.state) for i in on_disk.indexes
        ], name
        for idx in on_disk.indexes:
            job = db._catalog.index_jobs.get((name, idx.name))
            stored = store.get(job_key(name, job.kind if job and job.kind != "rebuild" else "build", idx.name))
            assert (job is None) == (stored is None), (name, idx.name, job)
            if job is not None:
                assert stored is not None and builder_module.IndexJob.from_bytes(stored).kind == job.kind


async def finishes(db: quanta.Database, want: dict[str, list[int]]) -> None:
    """``db.repair()`` again: everything rebuilt, clean, the same answers."""
    report = await db.repair()
    assert set(report.indexes) == {
        "Member.email",
        "Member.nick",
        "Member.name",
        "Member.tags",
        "Member.city_age",
        "Tag.label",
    }
    assert await problems(db) == 0
    assert building(db) == [] and not db._catalog.index_jobs
    assert all(i.state == READY for s in db._catalog.schemas.values() for i in s.indexes)
    assert await answers(db) == want


# =========================================================================== the progress callback


@pytest.mark.parametrize(
    ("where", "left", "not_reached"),
    [
        (("drop_index", "email"), ["Member." + i for i in ("city_age", "email", "name", "nick", "tags")], True),
        (("build_index", "nick"), ["Member." + i for i in ("city_age", "name", "nick", "tags")], True),
        (("drop_index", "tags"), ["Member.city_age", "Member.tags"], True),
        (("drop_index", "label"), ["Tag.label"], False),
    ],
)
async def test_a_repair_stopped_by_its_progress_callback_is_finished_by_calling_it_again(
    where: tuple[str, str], left: list[str], not_reached: bool
) -> None:
    fs = await _setup()
    async with quanta.open(PATH, fs=fs, entities=[Member, Tag]) as db:
        want = expected(await _records(db))

        def stop(p: quanta.SchemaProgress) -> None:
            if (p.task, p.index) == where:
                raise RuntimeError("stopped by the operator")

        with pytest.raises(RuntimeError, match="stopped by the operator") as caught:
            await db.repair(progress=stop)
        note = "\n".join(getattr(caught.value, "__notes__", []))
        assert note.startswith("db.repair() was interrupted part-way."), note
        assert f"{len(left)} indexes are left being rebuilt ({', '.join(sorted(left, key=note.find))})" in note
        assert all(n in note for n in left)
        assert "queries do not use them until they are complete" in note
        assert ("unique indexes Member.email" in note or "unique indexes Member.nick" in note) == any(
            n in left for n in ("Member.email", "Member.nick")
        )
        assert ("Not reached yet (their indexes are as they were): Tag." in note) == not_reached
        assert "call db.repair() again" in note
        assert sorted(building(db)) == sorted(left)
        catalog_is_what_was_committed(db)
        hidden_ones_are_not_used(db)
        assert await answers(db) == want  # answered by reading the records
        new = Member(id=500, email="new@x.org", name="n3", city="Rome", age=30)
        if any(n in left for n in ("Member.email", "Member.nick")):
            # A unique index is half-rebuilt: a put cannot be checked against it, so none is taken.
            with pytest.raises(quanta.IntegrityError, match="stopped part-way"):
                await db.collection(Member).put(new)
            assert await db.collection(Member).get(500) is None
        else:
            await db.collection(Member).put(new)
        want = expected(await _records(db))
        assert await answers(db) == want
        await finishes(db, want)
    async with quanta.open(PATH, fs=fs, entities=[Member, Tag]) as db:  # and it stays so
        assert await problems(db) == 0 and await answers(db) == want


# ================================================================================= cancellation


def _write_points(monkeypatch: pytest.MonkeyPatch, at: int, cancel: Any) -> list[int]:
    """Make ``cancel()`` run just before the repair's ``at``-th commit (every commit of the
    catalog goes through ``Store.write``; the builder's chunks are transactions, counted
    through ``builder.Transaction``). Returns the counter (one cell)."""
    count = [0]
    real_write = Store.write
    real_tx = builder_module.Transaction

    def tick() -> None:
        count[0] += 1
        if count[0] == at:
            cancel()

    async def write(self: Store, keys: list[bytes], values: list[bytes | None]) -> None:
        tick()
        await real_write(self, keys, values)

    class Transaction(real_tx):  # type: ignore[misc, valid-type]
        async def commit(self) -> Any:
            tick()
            return await super().commit()

    monkeypatch.setattr(Store, "write", write)
    monkeypatch.setattr(builder_module, "Transaction", Transaction)
    return count


async def test_a_repair_cancelled_at_any_commit_is_finished_by_calling_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fs = await _setup(**SMALL_OPTIONS)
    with monkeypatch.context() as m, _Chunk(8):  # how many commits a repair makes
        counter = _write_points(m, 0, lambda: None)
        async with quanta.open(PATH, fs=fs.snapshot(), entities=[Member, Tag], **SMALL_OPTIONS) as db:
            await db.repair()
        commits = counter[0]
    assert commits > 30, commits
    outcomes = {"left being rebuilt": 0, "nothing left": 0}
    for at in range(1, commits + 1):
        with monkeypatch.context() as m, _Chunk(8):
            async with quanta.open(PATH, fs=fs.snapshot(), entities=[Member, Tag], **SMALL_OPTIONS) as db:
                want = expected(await _records(db))
                if at % 2:
                    scope = anyio.CancelScope()
                    _write_points(m, at, scope.cancel)
                    with scope:
                        await db.repair()
                    assert scope.cancelled_caught, at
                else:
                    task = asyncio.create_task(db.repair())
                    _write_points(m, at, task.cancel)
                    with pytest.raises(asyncio.CancelledError):
                        await task
                m.undo()
                outcomes["left being rebuilt" if building(db) else "nothing left"] += 1
                catalog_is_what_was_committed(db)
                hidden_ones_are_not_used(db)
                assert await answers(db) == want, at
                await finishes(db, want)
    assert all(outcomes.values()), outcomes


# ================================================================================== I/O errors


async def test_an_io_error_at_any_point_of_a_repair_is_reported_and_reopening_finishes_it() -> None:
    base = await _setup(**SMALL_OPTIONS)
    probe = base.snapshot()
    with _Chunk(8):
        async with quanta.open(PATH, fs=probe, entities=[Member, Tag], **SMALL_OPTIONS) as db:
            start = len(probe.ops)
            await db.repair()
            points = len(probe.ops) - start
    assert points > 30, points
    seen = {"raised": 0, "left being rebuilt": 0}
    for point, _ in _sample(list(range(points))):
        fs = base.snapshot()
        with _Chunk(8):
            db = await quanta.open(PATH, fs=fs, entities=[Member, Tag], **SMALL_OPTIONS)
            want = expected(await _records(db))
            damaged = await answers(db)
            count = [0]

            def fail(op: Op, count: list[int] = count, point: int = point) -> None:
                count[0] += 1
                if count[0] == point + 1:
                    raise StorageIOError(f"{op.kind} failed for {op.path} (injected)", errno=errno.EIO, path=op.path)

            fs.fail_hook = fail
            left: list[str] = []
            try:
                await db.repair()
            except QuantaError as exc:  # StorageIOError, DatabaseFailedError or BackgroundError
                seen["raised"] += 1
                note = "\n".join(getattr(exc, "__notes__", []))
                assert note.startswith("db.repair() was interrupted part-way."), (point, exc)
                assert "The database stopped accepting writes: close it and open it again" in note, note
                left = building(db)
                seen["left being rebuilt"] += bool(left)
                if left:
                    assert f"{len(left)} indexes are left being rebuilt" in note, note
                hidden_ones_are_not_used(db)
                # reads go on: by the records where an index is hidden; an index the repair had
                # not reached yet (the note says which) still answers with its damage
                got = await answers(db)
                assert all(got[k] in (want[k], damaged[k]) for k in want), point
                if left == [n for n in building(db)] and len(left) == 6:
                    assert got == want
            finally:
                fs.fail_hook = None
                try:
                    await db.close()
                except QuantaError:
                    pass  # a background job met the fault after the repair returned
            async with quanta.open(PATH, fs=fs, entities=[Member, Tag], **SMALL_OPTIONS) as db:
                await db.indexes_ready()
                resumed = [n for n in left if n not in building(db)]
                assert resumed == left, (point, left, building(db))  # the open resumed each one
                got = await answers(db)
                assert all(got[k] in (want[k], damaged[k]) for k in want), point
                await finishes(db, want)
    assert seen["raised"] and seen["left being rebuilt"], seen


# ========================================================================= a record that cannot be read


async def test_a_repair_meeting_an_unreadable_record_says_which_and_finishes_once_it_is_gone() -> None:
    fs = await _setup()
    async with quanta.open(PATH, fs=fs, entities=[Member, Tag]) as db:
        key = record_key("Member", 7)
        await db._engine.write([key], [b"\xc1 not a record"], len(key) + 14)
        with pytest.raises(quanta.CorruptionError) as caught:
            await db.repair()
        assert "the Member record with primary key 7" in str(caught.value), caught.value
        note = "\n".join(getattr(caught.value, "__notes__", []))
        assert "indexes are left being rebuilt" in note and "call db.repair() again" in note, note
        assert db._engine.check_writable() is None  # the database goes on
        hidden_ones_are_not_used(db)
        await db._engine.write([key], [None], len(key))  # the operator deletes the record
        await finishes(db, expected(await _records(db)))
