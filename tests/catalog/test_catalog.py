"""The schema catalog (quanta/_catalog): stored schemas, comparing them with declared classes,
additive changes applied at open, background index builds, and refusals.

What is proved here, on the in-memory file layer (and on a real directory where the storage
is the subject):

* **Round trip.** A declared class's schema (fields and their type descriptions, key,
  indexes, version, history) is stored under the catalog kind ``c`` and reads back equal,
  also after a reopen; type descriptions cover every storable type.
* **Additive changes are applied at open**, each by itself: a new field with a default, a
  new optional field, a removed field holding no data, reordered fields, a version bump
  without steps (records rewritten, values kept); a widened type (``T`` to ``T | None``, an
  enum gaining members) without touching a record; a new index built **in the background**
  with progress reports, invisible to the planner until complete (queries give the same
  results before, during and after), consistent under concurrent writes; a dropped index's
  entries deleted; a new unique index built before open returns (a duplicate fails the open).
* **Every other change is refused** with ``SchemaMismatchError`` listing each difference
  (type change, rename, removed field with data, new required field, new primary key, older
  version), and the stored key-value state is exactly what it was.
* Classes used without being declared at open are admitted against the catalog (never
  written); read-only opens never write.

Migrations and crash tests are in test_migrations.py; the CLI commands in test_cli_schema.py.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pytest

import quanta
from quanta import Index, PrimaryKey, SchemaMismatchError, Unique
from quanta._catalog import StoredSchema, decide, differences, schema_of
from quanta._catalog.format import describe, label, schema_key
from quanta._codec import decode_tuple, encode_tuple
from quanta._schema import entity_info
from quanta._schema.keyspace import NS, index_key, record_key, unique_key
from quanta._storage.vfs import MemoryFileSystem

PATH = "/db"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 256 records (not 2048), so that a few thousand records cross many chunk
    boundaries: progress reports, resumption and concurrent writers between chunks."""
    from quanta._catalog import builder, rewrite

    monkeypatch.setattr(builder, "CHUNK", 256)
    monkeypatch.setattr(rewrite, "CHUNK", 256)


async def open_db(fs: MemoryFileSystem, *entities: type, **options: Any) -> quanta.Database:
    return await quanta.open(PATH, fs=fs, entities=list(entities), **options)


async def state(fs: MemoryFileSystem) -> dict[bytes, bytes]:
    """Every key and value stored (the whole logical state, catalog included)."""
    async with quanta.open(PATH, fs=fs) as db:
        return {k: v async for k, v in db.kv.scan(include_reserved=True)}


async def entity_image(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan(prefix=NS, include_reserved=True) if k[2:3] != b"c"}


def expected_entries(entity: str, objs: list[Any], indexes: dict[str, tuple[str, bool]]) -> dict[bytes, bytes]:
    """The index entries ``objs`` call for, from the key layout (keyspace.py), not from the
    collection's code. ``indexes``: name -> (field, unique)."""
    from quanta._codec import encode_key

    out: dict[bytes, bytes] = {}
    for obj in objs:
        pk = obj.id
        for name, (field, unique) in indexes.items():
            value = getattr(obj, field)
            if unique:
                if value is not None:
                    out[unique_key(entity, name, (value,))] = encode_key(pk)
            else:
                out[index_key(entity, name, (value,), pk)] = encode_key(pk)
    return out


# =============================================================================== versions of one entity


def user_v1() -> type:
    @quanta.entity(name="User")
    class User:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"
        nick: str | None = None

    return User


def people(cls: type, n: int = 50) -> list[Any]:
    return [cls(id=i, name=f"user {i}", city=["Oslo", "Rome", "Lima"][i % 3]) for i in range(1, n + 1)]


async def seeded(n: int = 50) -> tuple[MemoryFileSystem, type]:
    fs = MemoryFileSystem()
    v1 = user_v1()
    async with await open_db(fs, v1) as db:
        await db.collection(v1).put_many(people(v1, n))
    return fs, v1


# =============================================================================== round trip


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"


@quanta.entity(name="Everything", indexes=[Index("a", "b")])
class Everything:
    id: Annotated[int, PrimaryKey(auto=True)]
    a: int
    b: Annotated[str, Unique()]
    c: float | None
    d: list[str] = quanta.field(default_factory=list)
    e: tuple[int, str] = (0, "")
    f: tuple[int, ...] = ()
    g: dict[str, bytes] = quanta.field(default_factory=dict)
    h: set[uuid.UUID] = quanta.field(default_factory=set)
    i: frozenset[int] = frozenset()
    j: Color = Color.RED
    k: datetime.datetime | None = None
    m: decimal.Decimal = decimal.Decimal(0)
    n: Any = None
    o: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)


async def test_a_declared_schema_is_stored_and_reads_back_equal() -> None:
    fs = MemoryFileSystem()
    async with await open_db(fs, Everything) as db:
        stored = db._catalog.schemas["Everything"]
        raw = await db.kv._get(schema_key("Everything"))
    assert raw is not None and StoredSchema.from_bytes(raw) == stored
    want = schema_of(entity_info(Everything))
    assert stored.replace(history=()) == want
    assert [h.event for h in stored.history] == ["created"]
    labels = {f.name: f.type_label for f in stored.fields}
    assert labels == {
        "id": "int",
        "a": "int",
        "b": "str",
        "c": "float | None",
        "d": "list[str]",
        "e": "tuple[int, str]",
        "f": "tuple[int, ...]",
        "g": "dict[str, bytes]",
        "h": "set[UUID]",
        "i": "frozenset[int]",
        "j": "Color",
        "k": "datetime | None",
        "m": "Decimal",
        "n": "Any",
        "o": "list[str]",
    }
    assert stored.field("j") is not None and stored.field("j").type == ["enum", "Color", ["r", "g"]]  # type: ignore[union-attr]
    assert [(i.name, i.fields, i.unique, i.multi, i.state) for i in stored.indexes] == [
        ("b", ("b",), True, False, "ready"),
        ("o", ("o",), False, True, "ready"),
        ("a_b", ("a", "b"), False, False, "ready"),
    ]
    async with await open_db(fs, Everything) as db:  # identical: nothing written
        assert db._catalog.schemas["Everything"] == stored


def test_a_recursive_dataclass_is_described_with_a_reference() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Node:
        value: int
        children: list[Node] = dataclasses.field(default_factory=list)

    @quanta.entity
    class Tree:
        id: Annotated[int, PrimaryKey()]
        root: Node

    desc = describe(entity_info(Tree).field("root").type_node)
    assert desc == ["dataclass", "Node", [["value", "int"], ["children", ["list", ["ref", "Node"]]]]]
    assert label(desc) == "Node"


# =============================================================================== the pure comparison


def test_differences_name_each_change_and_what_it_needs() -> None:
    @quanta.entity(name="User", version=2, indexes=[Index("city", "name")])
    class V2:
        id: Annotated[int, PrimaryKey()]
        name: Annotated[str, Index()]
        city: int
        age: int = 0
        email: str

    old = schema_of(entity_info(user_v1()))
    new = schema_of(entity_info(V2))
    got = {(d.kind, d.field or d.index): d.need for d in differences(old, new)}
    assert got == {
        ("version", None): "rewrite",
        ("field_type", "city"): "migration",
        ("field_added", "age"): "rewrite",
        ("field_added", "email"): "migration",
        ("field_removed", "nick"): "migration",
        ("index_added", "name"): "index",
        ("index_added", "city_name"): "index",
        ("class", None): "catalog",
    }
    assert str(next(d for d in differences(old, new) if d.field == "city")) == (
        "User.city: type changed from str to int"
    )


def test_decide_applies_additive_changes_and_refuses_the_rest() -> None:
    old = schema_of(entity_info(user_v1()))

    @quanta.entity(name="User")
    class Additive:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"
        nick: str | None = None
        age: int = 0

    @quanta.entity(name="User")
    class Widened:
        id: Annotated[int, PrimaryKey()]
        name: str | None
        city: Annotated[str, Index()] = "Oslo"
        nick: str | None = None

    @quanta.entity(name="User")
    class Dropped:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"

    additive = schema_of(entity_info(Additive))
    assert decide(old, additive, has_records=True).action == "rewrite"
    widened = decide(old, schema_of(entity_info(Widened)), has_records=True)
    assert widened.action == "catalog" and [i.name for i in widened.index_added] == ["city"]
    dropped = schema_of(entity_info(Dropped))
    assert decide(old, dropped, has_records=True, removed_with_data=[]).action == "rewrite"
    refused = decide(old, dropped, has_records=True, removed_with_data=["nick"])
    assert refused.action == "mismatch" and [d.field for d in refused.problems] == ["nick"]
    assert "holding data" in str(refused.problems[0]) and "version=2" in refused.hint
    assert decide(old, dropped, has_records=False, removed_with_data=["nick"]).action == "catalog"
    assert decide(old, old, has_records=True).action == "none"


# =============================================================================== additive changes at open


async def test_a_new_field_with_a_default_and_a_new_optional_field_are_added_to_every_record() -> None:
    fs, _ = await seeded()

    @quanta.entity(name="User")
    class User:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"
        nick: str | None = None
        age: int = 18
        tags: list[str] = quanta.field(default_factory=list)
        email: str | None

    reports: list[quanta.SchemaProgress] = []
    async with await open_db(fs, User, on_progress=reports.append) as db:
        users = await db.collection(User).query().all()
        history = db._catalog.schemas["User"].history
    assert len(users) == 50
    assert users[4] == User(id=5, name="user 5", city="Lima", age=18, tags=[], email=None)
    assert [h.event for h in history] == ["created", "rewritten"]
    assert "age: new field (int, with a default)" in history[-1].detail and history[-1].records == 50
    assert reports[-1].finished and reports[-1].task == "rewrite" and reports[-1].done == 50


async def test_a_removed_field_that_holds_no_data_and_reordered_fields_are_rewritten() -> None:
    fs, _ = await seeded()

    @quanta.entity(name="User")
    class User:
        city: str = "Oslo"
        name: str
        id: Annotated[int, PrimaryKey()]

    async with await open_db(fs, User) as db:
        got = await db.collection(User).get(7)
    assert got == User(id=7, name="user 7", city="Rome")


async def test_a_version_bump_without_steps_rewrites_the_records_in_the_new_version() -> None:
    fs, _ = await seeded()
    before = await state(fs)

    @quanta.entity(name="User", version=3)
    class User:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"
        nick: str | None = None

    async with await open_db(fs, User) as db:
        assert db._catalog.schemas["User"].version == 3
        assert await db.collection(User).get(2) == User(id=2, name="user 2", city="Lima")
        record = await db.kv._get(record_key("User", 2))
    assert record is not None and record[1] == 3  # [version, ...]: the version byte
    assert before[record_key("User", 2)][1] == 1


async def test_a_widened_type_and_a_larger_enum_change_only_the_catalog() -> None:
    class Size(enum.Enum):
        S = 1
        M = 2

    class Size2(enum.Enum):
        S = 1
        M = 2
        L = 3

    @quanta.entity(name="Shirt")
    class Shirt:
        id: Annotated[int, PrimaryKey()]
        size: Size
        stock: int

    @quanta.entity(name="Shirt")
    class Shirt2:
        id: Annotated[int, PrimaryKey()]
        size: Size2
        stock: int | None

    fs = MemoryFileSystem()
    async with await open_db(fs, Shirt) as db:
        await db.collection(Shirt).put_many([Shirt(id=i, size=Size.M, stock=i) for i in range(10)])
    before = await state(fs)
    async with await open_db(fs, Shirt2) as db:
        assert await db.collection(Shirt2).get(3) == Shirt2(id=3, size=Size2.M, stock=3)
        assert db._catalog.schemas["Shirt"].history[-1].event == "changed"
    after = await state(fs)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {schema_key("Shirt")}  # not one record rewritten


async def test_an_empty_collection_takes_any_new_schema() -> None:
    fs = MemoryFileSystem()
    v1 = user_v1()
    async with await open_db(fs, v1):
        pass

    @quanta.entity(name="User")
    class User:
        uid: Annotated[str, PrimaryKey()]
        score: float

    async with await open_db(fs, User) as db:
        assert db._catalog.schemas["User"].primary_key == "uid"
        await db.collection(User).put(User(uid="a", score=1.5))


# =============================================================================== indexes


def user_with_city_index() -> type:
    @quanta.entity(name="User")
    class User:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: Annotated[str, Index()] = "Oslo"
        nick: str | None = None

    return User


async def test_a_new_index_is_built_in_the_background_and_used_only_once_complete() -> None:
    fs, _ = await seeded(3000)
    User = user_with_city_index()
    reports: list[quanta.SchemaProgress] = []
    async with await open_db(fs, User, on_progress=reports.append) as db:
        users = db.collection(User)
        query = users.where(User.city == "Rome")
        assert db._catalog.schemas["User"].index("city").state == "building"  # type: ignore[union-attr]
        assert query.plan().access == "full_scan"  # the planner does not see it yet
        during = await query.all()
        await db.indexes_ready()
        assert db._catalog.schemas["User"].index("city").state == "ready"  # type: ignore[union-attr]
        after_query = users.where(User.city == "Rome")
        assert after_query.plan().access == "index_range" and after_query.plan().index.name == "city"  # type: ignore[union-attr]
        after = await after_query.all()
        assert during == after and len(after) == 1000
        assert await users.where(User.city == "Rome").count() == 1000
        history = db._catalog.schemas["User"].history
    builds = [r for r in reports if r.task == "build_index"]
    assert builds[-1].finished and builds[-1].done == builds[-1].total == 3000
    assert [r.done for r in builds[:-1]] == sorted(r.done for r in builds[:-1]) and len(builds) > 3
    assert [h.event for h in history] == ["created", "changed", "index_built"]
    async with await open_db(fs, User) as db:  # nothing left to do
        assert db._catalog.hidden("User") == frozenset() and not db._catalog.index_jobs


async def test_writes_during_an_index_build_leave_the_index_exact() -> None:
    fs, _ = await seeded(2000)
    User = user_with_city_index()
    async with await open_db(fs, User) as db:
        users = db.collection(User)

        async def churn() -> None:
            for i in range(1, 400):
                if i % 3 == 0:
                    await users.delete(i * 5)
                elif i % 3 == 1:
                    await users.put(User(id=i * 5, name="moved", city="Pune"))
                else:
                    await users.put(User(id=5000 + i, name="new", city="Rome"))

        await asyncio.gather(churn(), db.indexes_ready())
        await db.indexes_ready()
        objs = await users.query().all()
        image = await entity_image(db)
    want = {record_key("User", o.id): v for o in objs for k, v in image.items() if k == record_key("User", o.id)}
    want.update(expected_entries("User", objs, {"city": ("city", False)}))
    assert image == want


async def test_a_dropped_index_has_its_entries_deleted() -> None:
    fs = MemoryFileSystem()
    User = user_with_city_index()
    async with await open_db(fs, User) as db:
        await db.collection(User).put_many(people(User, 600))
    v1 = user_v1()
    async with await open_db(fs, v1) as db:
        assert db._catalog.schemas["User"].index("city").state == "dropping"  # type: ignore[union-attr]
        await db.indexes_ready()
        assert db._catalog.schemas["User"].index("city") is None
        assert not [k async for k, _ in db.kv.scan(prefix=NS + b"i", include_reserved=True)]
        assert [h.event for h in db._catalog.schemas["User"].history][-2:] == ["changed", "index_dropped"]


async def test_an_interrupted_build_resumes_at_the_next_open() -> None:
    fs, _ = await seeded(3000)
    User = user_with_city_index()
    started = asyncio.Event()

    def first_chunk(p: quanta.SchemaProgress) -> None:
        if p.task == "build_index" and p.done:
            started.set()

    async with await open_db(fs, User, on_progress=first_chunk):
        await started.wait()
    # closed mid-build: the job is stored with its cursor
    async with await open_db(fs) as db:
        job = db._catalog.index_jobs[("User", "city")]
        assert 0 < job.done < 3000
    async with await open_db(fs, User) as db:
        await db.indexes_ready()
        users = db.collection(User)
        assert await users.where(User.city == "Lima").count() == 1000
        objs = await users.query().all()
        entries = {k async for k, _ in db.kv.scan(prefix=NS + b"i", include_reserved=True)}
    assert entries == set(expected_entries("User", objs, {"city": ("city", False)}))


async def test_a_new_unique_index_is_built_before_open_returns() -> None:
    fs, _ = await seeded(700)

    @quanta.entity(name="User")
    class User:
        id: Annotated[int, PrimaryKey()]
        name: Annotated[str, Unique()]
        city: str = "Oslo"
        nick: str | None = None

    async with await open_db(fs, User) as db:
        assert db._catalog.schemas["User"].index("name").state == "ready"  # type: ignore[union-attr]
        users = db.collection(User)
        assert (await users.where(User.name == "user 9").first()) == User(id=9, name="user 9", city="Oslo")
        with pytest.raises(quanta.UniqueViolationError):
            await users.put(User(id=9999, name="user 9"))


async def test_a_unique_index_over_duplicates_fails_the_open_with_the_data_untouched() -> None:
    fs = MemoryFileSystem()
    v1 = user_v1()
    async with await open_db(fs, v1) as db:
        await db.collection(v1).put_many([*people(v1, 700), v1(id=1000, name="user 650")])
    before = await state(fs)

    @quanta.entity(name="User")
    class User:
        id: Annotated[int, PrimaryKey()]
        name: Annotated[str, Unique()]
        city: str = "Oslo"
        nick: str | None = None

    with pytest.raises(SchemaMismatchError, match=r"records 650 and 1000 both have 'user 650'"):
        await open_db(fs, User)
    assert await state(fs) == before
    async with await open_db(fs, v1) as db:
        assert await db.collection(v1).count() == 701


# =============================================================================== refusals


def incompatible_versions() -> dict[str, tuple[type, list[str]]]:
    @quanta.entity(name="User")
    class TypeChange:
        id: Annotated[int, PrimaryKey()]
        name: int
        city: str = "Oslo"
        nick: str | None = None

    @quanta.entity(name="User")
    class Rename:
        id: Annotated[int, PrimaryKey()]
        full_name: str
        city: str = "Oslo"
        nick: str | None = None

    @quanta.entity(name="User")
    class RemovedWithData:
        id: Annotated[int, PrimaryKey()]
        nick: str | None = None

    @quanta.entity(name="User")
    class NewRequired:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"
        nick: str | None = None
        email: str

    @quanta.entity(name="User")
    class NewKey:
        id: int
        name: Annotated[str, PrimaryKey()]
        city: str = "Oslo"
        nick: str | None = None

    @quanta.entity(name="User")
    class Everything:
        uid: Annotated[int, PrimaryKey()]
        name: bytes
        email: str

    return {
        "type change": (TypeChange, ["User.name: type changed from str to int"]),
        "rename": (
            Rename,
            ["User.full_name: new required field (str) without a default", "User.name: field removed"],
        ),
        "removed field with data": (RemovedWithData, ["User.name: field removed", "User.city: field removed"]),
        "new required field": (NewRequired, ["User.email: new required field (str) without a default"]),
        "new primary key": (NewKey, ["User: primary key changed from 'id' to 'name'"]),
        "all at once": (
            Everything,
            [
                "User: primary key changed from 'id' to 'uid'",
                "User.uid: new required field",
                "User.name: type changed from str to bytes",
                "User.email: new required field",
                "User.id: field removed",
                "User.city: field removed",
            ],
        ),
    }


@pytest.mark.parametrize("case", list(incompatible_versions()))
async def test_an_incompatible_change_raises_listing_every_difference_with_the_data_untouched(case: str) -> None:
    fs, v1 = await seeded()
    before = await state(fs)
    cls, expected = incompatible_versions()[case]
    with pytest.raises(SchemaMismatchError) as caught:
        await open_db(fs, cls)
    message = str(caught.value)
    for line in expected:
        assert line in message
    assert "the data is untouched" in message and "version=2" in message
    assert caught.value.differences and all(str(d) in message for d in caught.value.differences)
    assert await state(fs) == before
    async with await open_db(fs, v1) as db:  # the old class still reads everything
        assert len(await db.collection(v1).query().all()) == 50


async def test_an_older_class_than_the_stored_version_is_refused() -> None:
    fs, _ = await seeded()

    @quanta.entity(name="User", version=2)
    class User:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"
        nick: str | None = None

    async with await open_db(fs, User):
        pass
    with pytest.raises(SchemaMismatchError, match="version 2, newer than the class's version 1"):
        await open_db(fs, user_v1())


async def test_every_mismatching_class_is_reported_at_once() -> None:
    fs = MemoryFileSystem()

    @quanta.entity(name="A")
    class A:
        id: Annotated[int, PrimaryKey()]
        x: int

    @quanta.entity(name="B")
    class B:
        id: Annotated[int, PrimaryKey()]
        y: int

    async with await open_db(fs, A, B) as db:
        await db.collection(A).put(A(id=1, x=1))
        await db.collection(B).put(B(id=1, y=1))

    @quanta.entity(name="A")
    class A2:
        id: Annotated[int, PrimaryKey()]
        x: str

    @quanta.entity(name="B")
    class B2:
        id: Annotated[int, PrimaryKey()]
        y: bytes

    with pytest.raises(SchemaMismatchError) as caught:
        await open_db(fs, A2, B2)
    assert [str(d) for d in caught.value.differences] == [
        "A.x: type changed from int to str",
        "B.y: type changed from int to bytes",
    ]


async def test_bad_entities_arguments_are_refused_before_anything_is_opened() -> None:
    fs = MemoryFileSystem()
    with pytest.raises(quanta.InvalidTypeError):
        quanta.open(PATH, fs=fs, entities=[int])
    with pytest.raises(quanta.InvalidTypeError):
        quanta.open(PATH, fs=fs, entities=user_v1())
    with pytest.raises(quanta.InvalidTypeError, match="both stored as 'User'"):
        quanta.open(PATH, fs=fs, entities=[user_v1(), user_v1()])
    with pytest.raises(quanta.InvalidTypeError):
        quanta.open(PATH, fs=fs, on_progress=3)  # type: ignore[arg-type]
    assert PATH not in fs.dirs


# =============================================================================== classes not declared at open


async def test_an_undeclared_class_is_admitted_only_if_the_stored_schema_reads_unchanged() -> None:
    fs, _ = await seeded()
    async with await open_db(fs) as db:
        assert len(await db.collection(user_v1()).query().all()) == 50  # an equal class: fine
        with pytest.raises(SchemaMismatchError, match="declare it when opening the database"):
            db.collection(user_with_city_index())
        async with db.transaction() as tx:
            with pytest.raises(SchemaMismatchError):
                tx.collection(user_with_city_index())

        @quanta.entity(name="User")
        class Widened:
            id: Annotated[int, PrimaryKey()]
            name: str | None
            city: str = "Oslo"
            nick: str | None = None

        assert (await db.collection(Widened).get(1)) == Widened(id=1, name="user 1", city="Rome")

        @quanta.entity(name="Other")
        class Other:
            id: Annotated[int, PrimaryKey()]

        await db.collection(Other).put(Other(id=1))  # unknown to the catalog: unchecked, not recorded
        assert "Other" not in db._catalog.schemas


async def test_records_written_without_a_declared_class_are_adopted_at_the_first_declared_open() -> None:
    fs = MemoryFileSystem()
    User = user_with_city_index()
    async with quanta.open(PATH, fs=fs) as db:
        await db.collection(User).put_many(people(User, 100))
        damaged = index_key("User", "city", ("Rome",), 2)  # a damaged entry adoption repairs
        unrecorded = NS + b"c" + encode_tuple(("User",))  # as an older release stored them: no schema
        await db.kv._engine.write([damaged, unrecorded], [None, None], 64)  # below db.kv's reserved-key check
    async with await open_db(fs, User) as db:
        assert [h.event for h in db._catalog.schemas["User"].history] == ["adopted"]
        users = db.collection(User)
        assert await users.where(User.city == "Rome").count() == 34
        objs = await users.query().all()
        entries = {k async for k, _ in db.kv.scan(prefix=NS + b"i", include_reserved=True)}
    assert entries == set(expected_entries("User", objs, {"city": ("city", False)}))


async def test_a_read_only_open_writes_nothing_and_hides_unbuilt_indexes() -> None:
    fs, _ = await seeded()
    before = await state(fs)
    User = user_with_city_index()
    async with await open_db(fs, User, read_only=True) as db:
        q = db.collection(User).where(User.city == "Lima")
        assert q.plan().access == "full_scan" and await q.count() == 17

    @quanta.entity(name="User")
    class Added:
        id: Annotated[int, PrimaryKey()]
        name: str
        city: str = "Oslo"
        nick: str | None = None
        age: int = 0

    with pytest.raises(SchemaMismatchError, match="read_only"):
        await open_db(fs, Added, read_only=True)
    assert await state(fs) == before


@pytest.mark.parametrize("backend", ["memory", "disk"])
async def test_the_catalog_survives_a_reopen_on_both_file_layers(backend: str, tmp_path: Any) -> None:
    options: dict[str, Any] = {"fs": MemoryFileSystem()} if backend == "memory" else {}
    path = PATH if backend == "memory" else str(tmp_path / "db")
    User = user_with_city_index()
    async with quanta.open(path, entities=[User], **options) as db:
        await db.collection(User).put_many(people(User, 20))
        first = db._catalog.schemas["User"]
    async with quanta.open(path, entities=[User], **options) as db:
        assert db._catalog.schemas["User"] == first
        keys = [decode_tuple(k[3:]) async for k, _ in db.kv.scan(prefix=NS + b"c", include_reserved=True)]
    assert keys == [("User",)]


# =============================================================================== cancellation


async def test_a_cancelled_open_with_an_index_build_resumes_cleanly() -> None:
    """Cancel the open (with a new unique index to build) after 0, 1, 2... loop turns: the next
    open finishes the job and the index is exact."""
    fs, _ = await seeded(1500)

    @quanta.entity(name="User")
    class User:
        id: Annotated[int, PrimaryKey()]
        name: Annotated[str, Unique()]
        city: str = "Oslo"
        nick: str | None = None

    turns = 0
    while True:
        task = asyncio.ensure_future(open_db(fs, User))
        for _ in range(turns):
            await asyncio.sleep(0)
        if task.done():
            await (await task).close()
            break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        turns += 7
    async with await open_db(fs, User) as db:
        assert db._catalog.schemas["User"].index("name").state == "ready"  # type: ignore[union-attr]
        objs = await db.collection(User).query().all()
        entries = {k async for k, _ in db.kv.scan(prefix=NS + b"u", include_reserved=True)}
    assert entries == set(expected_entries("User", objs, {"name": ("name", True)}))
    assert turns > 7


Opener = Callable[..., Awaitable[quanta.Database]]


async def test_a_cancelled_wait_for_the_indexes_leaves_the_build_running() -> None:
    fs, _ = await seeded(2000)
    User = user_with_city_index()
    async with await open_db(fs, User) as db:
        waiter = asyncio.ensure_future(db.indexes_ready())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await db.indexes_ready()
        assert db._catalog.schemas["User"].index("city").state == "ready"  # type: ignore[union-attr]


async def test_a_failed_background_build_stops_the_database_and_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from quanta._catalog import builder

    fs, _ = await seeded(600)
    User = user_with_city_index()

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(builder, "build", broken)
    db = await open_db(fs, User)
    with pytest.raises(RuntimeError, match="disk on fire"):
        await db.indexes_ready()
    with pytest.raises(quanta.BackgroundError):
        await db.collection(User).put(User(id=1, name="x"))
    with pytest.raises(quanta.BackgroundError):
        await db.close()
    monkeypatch.undo()
    async with await open_db(fs, User) as db:  # the job is still stored: the next open builds it
        await db.indexes_ready()
        assert await db.collection(User).where(User.city == "Oslo").count() == 200
