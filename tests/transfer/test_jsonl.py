"""Issue 14 item 2: JSON Lines export and import (quanta/_transfer), and Query.to_dicts.

The round trip is checked on the raw bytes: every record, index entry and unique entry of
the source database is compared with the target's, key by key."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import pytest

import quanta
from quanta import Index, PrimaryKey, Unique
from quanta._entity.jsonmap import entity_encoder
from quanta._schema import entity_info
from quanta._transfer import importer

NS = b"\x00Q"


class Mood(enum.Enum):
    HAPPY = 1
    SAD = "sad"
    RAW = b"\x00"


@dataclass(frozen=True)
class Address:
    city: str
    geo: tuple[float, float] | None = None


@quanta.entity(name="TrAuthor")
class Author:
    id: int = quanta.auto()
    email: Annotated[str, Unique()] = ""
    age: Annotated[int, quanta.Range(min=0, max=150)] = 0

    @quanta.validator("email")
    @staticmethod
    def _email_has_at(value: str) -> None:
        if value and "@" not in value:
            raise ValueError("must contain @")


@quanta.entity(name="TrPost", indexes=[Index("title", "score")])
class Post:
    id: Annotated[uuid.UUID, PrimaryKey()]
    title: str
    author: quanta.Link[Author] = quanta.link(on_delete="cascade")
    reviewer: quanta.Link[Author | None] = quanta.link(default=None)
    parent: quanta.Link[Post | None] = quanta.link(default=None)
    tags: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)
    score: float = 0.0
    at: datetime | None = None
    day: date | None = None
    clock: time | None = None
    took: timedelta | None = None
    price: Decimal | None = None
    blob: bytes = b""
    mood: Mood | None = None
    seen: set[int] = quanta.field(default_factory=set)
    frozen: frozenset[str] = frozenset()
    pair: tuple[int, str] | None = None
    counts: dict[str, int] = quanta.field(default_factory=dict)
    by_day: dict[date, float] = quanta.field(default_factory=dict)
    home: Address | None = None
    extra: Any = None
    big: int = 0


def sample_posts(a: int, b: int) -> list[Post]:
    u = [uuid.UUID(int=i) for i in range(1, 5)]
    return [
        Post(
            id=u[0],
            title="first",
            author=a,
            reviewer=b,
            parent=u[1],  # a link to a record further down the file
            tags=["x", "y"],
            score=-0.0,
            at=datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/Oslo")),
            day=date(1, 1, 1),
            clock=time(23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30), "IST"), fold=1),
            took=timedelta(days=-3, microseconds=7),
            price=Decimal("-0.000"),
            blob=b"\x00\xff\x10",
            mood=Mood.RAW,
            seen={3, 1, 2},
            frozen=frozenset({"b", "a"}),
            pair=(2**70, "\udcff"),  # a big int and a lone surrogate
            counts={"$b": 1, "a": 2},
            by_day={date(2020, 2, 29): math.inf},
            home=Address("Oslo", (59.9, -0.0)),
            extra={"nan": math.nan, "t": (1, b"x", frozenset({1.5})), 3: [None, True], "$x": {"$y": 1}},
            big=-(2**100),
        ),
        Post(id=u[1], title="second", author=a, parent=u[1], score=2.5, at=datetime(2024, 1, 1, fold=1)),
        Post(id=u[2], title="third", author=b, score=-math.inf, counts={"n": 1}, mood=Mood.HAPPY, extra=Decimal("NaN")),
        Post(id=u[3], title="fourth", author=b, mood=Mood.SAD, extra=[uuid.UUID(int=9), datetime(2000, 1, 1)]),
    ]


async def fill(db: quanta.Database) -> None:
    authors = db.collection(Author)
    a = await authors.put(Author(email="a@x.io", age=30))
    b = await authors.put(Author(email="b@x.io", age=40))
    posts = sample_posts(a, b)
    await db.collection(Post).put_many([posts[1], posts[2], posts[3]])
    await db.collection(Post).put(posts[0])
    await db.kv.put(b"user-key", b"\x00\x01value")


async def entity_space(db: quanta.Database) -> list[tuple[bytes, bytes]]:
    """Every record, index entry and unique entry (kinds r, i, u) of the entity key space."""
    out: list[tuple[bytes, bytes]] = []
    async with db.snapshot() as snap:
        for kind in (b"r", b"i", b"u"):
            out += [kv async for kv in snap.kv._scan(NS + kind, NS + bytes([kind[0] + 1]))]
    return out


async def test_export_then_import_gives_identical_bytes(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with quanta.open(tmp_path / "src") as src:
        await fill(src)
        report = await src.export_jsonl(out, kv=True)
        before = await entity_space(src)
    assert report.records == {"TrAuthor": 2, "TrPost": 4} and report.kv == 1 and report.lines == 9
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 10
    head = json.loads(lines[0])
    assert head["format"] == "quanta-jsonl" and head["version"] == 1 and head["kv"] is True
    assert [e["name"] for e in head["entities"]] == ["TrAuthor", "TrPost"]
    end = json.loads(lines[-2])["end"]
    assert (end["records"], end["kv"]) == (6, 1)
    assert end["sha256"] == hashlib.sha256(b"".join(x + b"\n" for x in lines[:-2])).hexdigest()
    first = json.loads(lines[3])["record"]
    assert first["at"] == "2024-03-31T02:30:00+01:00[Europe/Oslo]" or first["at"].endswith("[Europe/Oslo]")
    assert first["score"] == 0.0 and math.copysign(1, first["score"]) == -1
    assert first["blob"] == "AP8Q" and first["mood"] == {"$bytes": "AA=="}
    assert first["counts"] == {"$b": 1, "a": 2} and first["by_day"] == [["2020-02-29", {"$float": "inf"}]]
    assert first["took"] == "-P2DT86399.999993S" and first["price"] == "-0.000"
    async with quanta.open(tmp_path / "dst", entities=[Author, Post]) as dst:
        got = await dst.import_jsonl(out)
        assert got.records == {"TrAuthor": 2, "TrPost": 4} and got.kv == 1
        assert await entity_space(dst) == before
        assert await dst.kv.get(b"user-key") == b"\x00\x01value"
        # the auto key goes on after the imported ones
        assert await dst.collection(Author).put(Author(email="c@x.io")) == 3
        post = await dst.collection(Post).get(uuid.UUID(int=1))
        assert post is not None and (await post.author.load()).email == "a@x.io"


async def test_export_needs_no_class_and_filters_entities(tmp_path: Path) -> None:
    async with quanta.open(tmp_path / "src") as src:
        await fill(src)
    out = tmp_path / "authors.jsonl"
    async with quanta.open(tmp_path / "src") as src:  # no class declared or used
        report = await src.export_jsonl(str(out), entities=["TrAuthor"])
        assert report.records == {"TrAuthor": 2} and report.kv == 0
        report = await src.export_jsonl(tmp_path / "all.jsonl")
        assert report.records == {"TrAuthor": 2, "TrPost": 4}
        with pytest.raises(quanta.InvalidArgumentError, match="no entity 'Nope'"):
            await src.export_jsonl(out, entities=["Nope"])
        with pytest.raises(quanta.InvalidTypeError):
            await src.export_jsonl(out, entities="TrAuthor")
        with pytest.raises(quanta.InvalidTypeError):
            await src.export_jsonl(42)  # type: ignore[arg-type]
        with pytest.raises(quanta.InvalidTypeError):
            await src.export_jsonl(out, kv="yes")  # type: ignore[arg-type]
    lines = out.read_text().splitlines()
    assert [json.loads(x)["record"]["email"] for x in lines[1:-1]] == ["a@x.io", "b@x.io"]


async def test_to_dicts_is_json_ready(tmp_path: Path) -> None:
    async with quanta.open(tmp_path / "db") as db:
        await fill(db)
        rows = await db.collection(Post).where(Post.title == "first").to_dicts()
        assert len(rows) == 1
        text = json.dumps(rows, allow_nan=False)
        row = json.loads(text)[0]
        assert row["id"] == "00000000-0000-0000-0000-000000000001"
        assert row["author"] == 1 and row["reviewer"] == 2
        assert row["home"] == {"city": "Oslo", "geo": [59.9, -0.0]}
        assert list(row) == [f.name for f in entity_info(Post).fields]
        assert await db.collection(Author).query().to_dicts() == [
            {"id": 1, "email": "a@x.io", "age": 30},
            {"id": 2, "email": "b@x.io", "age": 40},
        ]


def _write_file(path: Path, head: dict[str, Any], lines: list[Any], *, trailer: bool = True) -> None:
    records = sum(1 for x in lines if isinstance(x, dict) and "entity" in x)
    kv = sum(1 for x in lines if isinstance(x, dict) and "key" in x)
    text = [json.dumps(head)] + [x if isinstance(x, str) else json.dumps(x) for x in lines]
    if trailer:
        text.append(json.dumps({"end": {"records": records, "kv": kv}}))
    path.write_text("\n".join(text) + "\n")


async def _header(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "h.jsonl"
    async with quanta.open(tmp_path / "h") as db:
        await db.collection(Author).put(Author(email="h@x.io"))
        await db.collection(Post).put(Post(id=uuid.UUID(int=99), title="t", author=1))
        await db.export_jsonl(out, kv=True)
    return dict(json.loads(out.read_text().splitlines()[0]))


async def test_import_validates_every_line_before_writing(tmp_path: Path) -> None:
    head = await _header(tmp_path)

    def author(pk: int, email: str, age: int = 1) -> dict[str, Any]:
        return {"entity": "TrAuthor", "record": {"id": pk, "email": email, "age": age}}

    def post(pk: int, author: int, parent: int | None = None) -> dict[str, Any]:
        rec = Post(id=uuid.UUID(int=pk), title="t", author=author)
        return {
            "entity": "TrPost",
            "record": {
                **_post_json(rec),
                "parent": None if parent is None else str(uuid.UUID(int=parent)),
            },
        }

    lines: list[Any] = [
        author(1, "a@x.io"),  # line 2: fine
        "{not json",  # 3
        {"entity": "Nope", "record": {}},  # 4
        author(2, "b@x.io", age=200),  # 5: Range
        {"entity": "TrAuthor", "record": {"id": "3", "email": "c@x.io", "age": 1}},  # 6: type
        author(4, "no-at"),  # 7: validator
        author(5, "a@x.io"),  # 8: unique within the file
        author(6, "taken@x.io"),  # 9: unique against the database
        author(1, "d@x.io"),  # 10: primary key given twice
        post(10, 1, parent=11),  # 11: fine (parent on line 12)
        post(11, 1, parent=12),  # 12: parent 12 is nowhere
        post(13, 77),  # 13: author 77 is nowhere
        {"entity": "TrAuthor", "record": {"id": 7, "email": "e@x.io"}},  # 14: missing field
        {"key": "AFFx", "value": "AA=="},  # 15: a reserved key
        {"key": "a2V5", "value": "dg=="},  # 16: fine
        {"what": 1},  # 17
    ]
    path = tmp_path / "bad.jsonl"
    _write_file(path, head, lines)
    async with quanta.open(tmp_path / "dst", entities=[Author, Post]) as db:
        await db.collection(Author).put(Author(id=100, email="taken@x.io"))
        before = await entity_space(db)
        with pytest.raises(quanta.ImportValidationError) as info:
            await db.import_jsonl(path)
        err = info.value
        assert isinstance(err, quanta.InvalidArgumentError)
        got = dict(err.problems)
        assert sorted(got) == [3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 17], err.problems
        assert "not JSON" in got[3] and "unknown entity 'Nope'" in got[4]
        assert "between 0 and 150" in got[5] or "150" in got[5]
        assert "expected int" in got[6] and "must contain @" in got[7]
        assert "first on line 2" in got[8] and "another record in the database" in got[9]
        assert "primary key 1 given again (first on line 2)" in got[10]
        assert "TrPost.parent" in got[12] and "TrPost.author: links to primary key 77" in got[13]
        assert "missing field" in got[14] and "reserved" in got[15]
        assert err.count == 13 and "line 3:" in str(err)
        assert await entity_space(db) == before
        assert await db.kv.get(b"key") is None


def _post_json(p: Post) -> dict[str, Any]:
    return entity_encoder(entity_info(Post))(p)


async def test_import_refuses_a_truncated_file_and_a_foreign_header(tmp_path: Path) -> None:
    head = await _header(tmp_path)
    path = tmp_path / "cut.jsonl"
    _write_file(path, head, [{"entity": "TrAuthor", "record": {"id": 1, "email": "", "age": 0}}], trailer=False)
    async with quanta.open(tmp_path / "dst", entities=[Author, Post]) as db:
        with pytest.raises(quanta.ImportValidationError, match="no trailer"):
            await db.import_jsonl(path)
        path.write_text('{"format": "other"}\n')
        with pytest.raises(quanta.ImportValidationError, match="line 1: not a QuantaDB"):
            await db.import_jsonl(path)
        path.write_text("")
        with pytest.raises(quanta.ImportValidationError, match="empty"):
            await db.import_jsonl(path)
        with pytest.raises(quanta.InvalidArgumentError, match="no file"):
            await db.import_jsonl(tmp_path / "missing.jsonl")
        with pytest.raises(quanta.InvalidArgumentError, match="on_conflict"):
            await db.import_jsonl(path, on_conflict="merge")
        with pytest.raises(quanta.InvalidTypeError):
            await db.import_jsonl(path, on_conflict=None)  # type: ignore[arg-type]
        with pytest.raises(quanta.InvalidTypeError):
            await db.import_jsonl(path, progress=3)  # type: ignore[arg-type]
        assert await entity_space(db) == []


async def test_on_conflict_error_skip_replace(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with quanta.open(tmp_path / "src") as src:
        await fill(src)
        await src.export_jsonl(out)
        want = await entity_space(src)
    async with quanta.open(tmp_path / "dst", entities=[Author, Post]) as db:
        authors = db.collection(Author)
        await authors.put(Author(id=1, email="other@x.io", age=5))
        with pytest.raises(quanta.ImportValidationError) as info:
            await db.import_jsonl(out)
        assert [n for n, _ in info.value.problems] == [2]
        report = await db.import_jsonl(out, on_conflict="skip")
        assert report.skipped == 1 and report.records == {"TrAuthor": 1, "TrPost": 4}
        kept = await authors.get(1)
        assert kept is not None and kept.email == "other@x.io"
        report = await db.import_jsonl(out, on_conflict="replace")
        assert report.replaced == 6 and report.total == 6 and report.kv == 0
        assert await entity_space(db) == want
        assert await authors.put(Author(email="z@x.io")) == 3  # the seeded counter went past the file's keys


async def test_a_write_phase_cut_short_is_finished_by_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "CHUNK", 2)  # batches of two lines; links reach later batches
    out = tmp_path / "out.jsonl"
    async with quanta.open(tmp_path / "src") as src:
        await fill(src)
        await src.export_jsonl(out)
        want = await entity_space(src)

    class Stop(Exception):
        pass

    def progress(phase: str, lines: int) -> None:
        if phase == "write":
            raise Stop

    async with quanta.open(tmp_path / "dst", entities=[Author, Post]) as db:
        with pytest.raises(Stop):
            await db.import_jsonl(out, progress=progress)
        partial = await entity_space(db)
        assert 0 < len(partial) < len(want)  # whole batches: the first ones
        assert set(partial) <= set(want)
        await db.import_jsonl(out, on_conflict="replace")
        assert await entity_space(db) == want


async def test_import_with_the_class_from_the_schema_path(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with quanta.open(tmp_path / "src") as src:
        await fill(src)
        await src.export_jsonl(out)
    async with quanta.open(tmp_path / "dst") as db:  # no class in use: imported by its stored path
        report = await db.import_jsonl(out)
        assert report.records == {"TrAuthor": 2, "TrPost": 4}


def scratch_dirs(where: Path) -> list[Path]:
    return list(where.glob(".quanta-import-*"))


async def test_cancelled_export_and_import(tmp_path: Path) -> None:
    """A cancelled export leaves a file an import refuses (no trailer); a cancelled import's
    validation writes nothing and removes its scratch store."""
    import asyncio

    out = tmp_path / "out.jsonl"
    async with quanta.open(tmp_path / "src") as src:
        await src.collection(Author).put_many([Author(email=f"a{i}@x.io") for i in range(5000)])
        started = asyncio.Event()

        def progress(phase: str, lines: int) -> None:
            started.set()

        task = asyncio.create_task(src.export_jsonl(out, progress=progress))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await src.export_jsonl(tmp_path / "whole.jsonl")
    async with quanta.open(tmp_path / "dst", entities=[Author, Post]) as db:
        with pytest.raises(quanta.ImportValidationError, match="no trailer"):
            await db.import_jsonl(out)
        started = asyncio.Event()
        task = asyncio.create_task(db.import_jsonl(tmp_path / "whole.jsonl", progress=progress))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await entity_space(db) == []
        assert not scratch_dirs(tmp_path)  # the scratch store is gone
        report = await db.import_jsonl(tmp_path / "whole.jsonl")
        assert report.records == {"TrAuthor": 5000}
        assert not scratch_dirs(tmp_path)


async def test_an_insert_during_the_import_gets_a_key_past_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    monkeypatch.setattr(importer, "CHUNK", 1)
    out = tmp_path / "out.jsonl"
    async with quanta.open(tmp_path / "src") as src:
        await src.collection(Author).put_many([Author(email="a@x.io"), Author(email="b@x.io")])
        await src.export_jsonl(out, entities=["TrAuthor"])
    async with quanta.open(tmp_path / "dst", entities=[Author]) as db:
        authors = db.collection(Author)
        await authors.put(Author(id=100, email="old@x.io"))  # the counter is in use: next is 101
        await authors.delete(100)
        await authors.put(Author(id=1, email="x@x.io"))
        await authors.delete(1)
        db._entities.next["TrAuthor"] = 2  # as if only key 1 had been handed out so far
        tasks: list[asyncio.Task[Any]] = []

        def progress(phase: str, lines: int) -> None:
            if phase == "write" and not tasks:  # after the first batch (author 1)
                tasks.append(asyncio.ensure_future(authors.put(Author(email="new@x.io"))))

        await db.import_jsonl(out, progress=progress)
        key = await tasks[0]
        assert key > 2
        assert [a.email for a in await authors.query().all()] == ["a@x.io", "b@x.io", "new@x.io"]


async def test_an_import_never_imports_a_module_the_file_names(tmp_path: Path) -> None:
    import sys

    head = await _header(tmp_path)
    for schema in head["entities"]:
        schema["class"] = "jsonl_side_effect_module.Thing"
    (tmp_path / "jsonl_side_effect_module.py").write_text("raise SystemExit('imported!')\n")
    path = tmp_path / "foreign.jsonl"
    _write_file(path, head, [])
    sys.path.insert(0, str(tmp_path))
    try:
        async with quanta.open(tmp_path / "dst") as db:  # no class in use
            with pytest.raises(quanta.ImportValidationError, match="is not imported"):
                await db.import_jsonl(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert "jsonl_side_effect_module" not in sys.modules
