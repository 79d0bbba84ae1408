"""``db.import_jsonl(file, on_conflict=...)`` while another writer writes (quanta/_transfer/
importer.py, the write phase): the validation pass checked the database as it was then, so
the write phase checks again, in each batch's transaction, what exists *now*.

* ``"error"``: a primary key (or kv key) a writer inserted after the validation stops the
  import with ``IntegrityError`` naming the line and the key, a unique value a writer claimed
  with ``UniqueViolationError`` naming the line and the value; that writer's record is never
  overwritten, nothing of the batch is written, the batches before it stay, and the message
  says how to finish (re-run with ``"skip"`` or ``"replace"``), which works;
* a writer that commits one of a batch's keys while the batch's transaction is open makes its
  commit lose; the batch is retried and meets ``on_conflict`` like any other existing key.

The writer runs at fixed points (between the two passes, before a given batch, inside a
batch's transaction) by wrapping the importer's functions, so every case is deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest

import quanta
from quanta import IntegrityError, PrimaryKey, Unique, UniqueViolationError
from quanta._transfer import importer


@quanta.entity(name="CcUser")
class User:
    id: Annotated[int, PrimaryKey()]
    email: Annotated[str, Unique()]
    name: str = ""


USERS = [User(id=i, email=f"u{i}@x.io", name=f"file{i}") for i in range(1, 7)]  # user i is on line i + 1


async def exported(tmp_path: Path, *, kv: bool = False) -> Path:
    out = tmp_path / "users.jsonl"
    async with quanta.open(tmp_path / "src", entities=[User]) as src:
        await src.collection(User).put_many(USERS)
        if kv:
            await src.kv.put(b"k1", b"from the file")
        await src.export_jsonl(out, kv=kv)
    return out


async def users(db: quanta.Database) -> dict[int, tuple[str, str]]:
    return {u.id: (u.email, u.name) for u in await db.collection(User).query().all()}


def before_the_write_phase(monkeypatch: pytest.MonkeyPatch, writer: Any) -> None:
    """Run ``await writer()`` after the validation pass, before the first write."""
    real = importer._write

    async def write(*args: Any, **kwargs: Any) -> Any:
        await writer()
        return await real(*args, **kwargs)

    monkeypatch.setattr(importer, "_write", write)


def before_batch(monkeypatch: pytest.MonkeyPatch, n: int, writer: Any) -> None:
    """Run ``await writer()`` before the ``n``-th batch is written (counted from 1)."""
    real = importer._write_batch
    calls = [0]

    async def write_batch(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            await writer()
        return await real(*args, **kwargs)

    monkeypatch.setattr(importer, "_write_batch", write_batch)


# =============================================================================== on_conflict="error"


async def test_a_primary_key_inserted_between_the_passes_stops_the_import_and_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = await exported(tmp_path)
    async with quanta.open(tmp_path / "dst", entities=[User]) as db:
        coll = db.collection(User)

        async def writer() -> None:
            await coll.put(User(id=4, email="writer@x.io", name="the writer's"))

        before_the_write_phase(monkeypatch, writer)
        with pytest.raises(IntegrityError) as caught:
            await db.import_jsonl(out)
        message = str(caught.value)
        assert type(caught.value) is IntegrityError
        assert message.startswith("import stopped at line 5: CcUser: a record with primary key 4 exists"), message
        assert "on_conflict='error' does not overwrite it" in message
        assert "Nothing of this batch (from line 2) was written, nor before it" in message
        assert "re-run the import with on_conflict='skip'" in message
        assert await users(db) == {4: ("writer@x.io", "the writer's")}  # not overwritten; nothing written
        monkeypatch.undo()
        report = await db.import_jsonl(out, on_conflict="skip")  # what the message says finishes it
        assert report.skipped == 1 and report.records == {"CcUser": 5}
        assert await users(db) == {
            **{u.id: (u.email, u.name) for u in USERS},
            4: ("writer@x.io", "the writer's"),
        }


async def test_a_key_inserted_during_the_write_phase_stops_it_at_that_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK", 2)  # batches: lines 2-3, 4-5, 6-7
    out = await exported(tmp_path)
    async with quanta.open(tmp_path / "dst", entities=[User]) as db:
        coll = db.collection(User)

        async def writer() -> None:
            await coll.put(User(id=5, email="writer@x.io", name="the writer's"))

        before_batch(monkeypatch, 3, writer)  # after the batches of lines 2-3 and 4-5
        with pytest.raises(IntegrityError, match="import stopped at line 6: CcUser: a record with primary key 5") as c:
            await db.import_jsonl(out)
        assert "Nothing of this batch (from line 6) was written; the lines before it are imported (4 records" in str(
            c.value
        )
        assert await users(db) == {
            **{u.id: (u.email, u.name) for u in USERS[:4]},
            5: ("writer@x.io", "the writer's"),
        }
        monkeypatch.undo()
        report = await db.import_jsonl(out, on_conflict="skip")
        assert report.skipped == 5 and report.records == {"CcUser": 1}
        assert (await users(db))[6] == ("u6@x.io", "file6") and (await users(db))[5][1] == "the writer's"


async def test_a_unique_value_claimed_between_the_passes_stops_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = await exported(tmp_path)
    async with quanta.open(tmp_path / "dst", entities=[User]) as db:
        coll = db.collection(User)

        async def writer() -> None:
            await coll.put(User(id=100, email="u3@x.io", name="the writer's"))

        before_the_write_phase(monkeypatch, writer)
        for on_conflict in ("error", "skip", "replace"):
            with pytest.raises(UniqueViolationError) as caught:
                await db.import_jsonl(out, on_conflict=on_conflict)  # type: ignore[arg-type]
            exc = caught.value
            assert str(exc).startswith(
                "import stopped at line 4: CcUser.email: the value 'u3@x.io' is used by another record"
            ), exc
            assert (exc.entity, exc.index, exc.value) == ("CcUser", "email", "u3@x.io")
            assert "change or delete that record, then re-run the import" in str(exc)
            assert await users(db) == {100: ("u3@x.io", "the writer's")}
            await coll.delete(100)  # (the writer puts it again before the next write phase)
        monkeypatch.undo()
        report = await db.import_jsonl(out, on_conflict="skip")
        assert report.records == {"CcUser": 6}


async def test_a_kv_key_inserted_between_the_passes_stops_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = await exported(tmp_path, kv=True)
    async with quanta.open(tmp_path / "dst", entities=[User]) as db:

        async def writer() -> None:
            await db.kv.put(b"k1", b"the writer's")

        before_the_write_phase(monkeypatch, writer)
        with pytest.raises(IntegrityError, match=r"import stopped at line 8: kv key b'k1' exists in the database"):
            await db.import_jsonl(out)
        assert await db.kv.get(b"k1") == b"the writer's" and await users(db) == {}


# ============================================================ a commit inside a batch's transaction


@pytest.mark.parametrize("on_conflict", ["error", "skip", "replace"])
async def test_a_write_racing_a_batch_makes_it_retry_and_meet_on_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_conflict: str
) -> None:
    out = await exported(tmp_path)
    async with quanta.open(tmp_path / "dst", entities=[User]) as db:
        coll = db.collection(User)
        real = importer.put_records
        raced = [0]

        async def put_records(info: Any, kv: Any, objs: list[Any], pks: list[Any], **kw: Any) -> None:
            if not raced[0]:  # the batch has read that user 2 is absent: now a writer commits it
                raced[0] += 1
                await coll.put(User(id=2, email="writer@x.io", name="the writer's"))
            await real(info, kv, objs, pks, **kw)

        monkeypatch.setattr(importer, "put_records", put_records)
        if on_conflict == "error":
            with pytest.raises(IntegrityError, match="import stopped at line 3: CcUser: a record with primary key 2"):
                await db.import_jsonl(out, on_conflict="error")
            assert await users(db) == {2: ("writer@x.io", "the writer's")}
        else:
            report = await db.import_jsonl(out, on_conflict=on_conflict)  # type: ignore[arg-type]
            got = await users(db)
            assert len(got) == 6
            if on_conflict == "skip":
                assert report.skipped == 1 and got[2] == ("writer@x.io", "the writer's")
            else:
                assert report.replaced == 1 and got[2] == ("u2@x.io", "file2")
        assert raced[0] == 1
