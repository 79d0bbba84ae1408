"""Regression tests for issue 13 (values accepted then unreadable, reused auto keys,
unchecked schemas, errors escaping the hierarchy)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from helpers_crash import SMALL_OPTIONS, RecordingFS, freeze

import quanta
from quanta import PrimaryKey
from quanta._schema.keyspace import record_key
from quanta._storage.vfs import MemoryFileSystem
from quanta.errors import CorruptionError, InvalidTypeError, LimitExceededError, SchemaMismatchError

PATH = "/db"


@quanta.entity
class Item:
    id: Annotated[int, PrimaryKey()]
    meta: Any = None
    d: dict[Any, int] | None = None


@quanta.entity(name="Auto")
class Auto:
    id: Annotated[int, PrimaryKey(auto=True)] = 0


@quanta.entity(name="F")
class F:
    id: Annotated[float, PrimaryKey()]
    x: float = 0.0


async def test_any_values_round_trip_exactly_or_are_refused() -> None:
    async with quanta.open(PATH, fs=MemoryFileSystem()) as db:
        items = db.collection(Item)
        await items.put(Item(id=1, meta={(1, 2): "x"}, d={(1, 2): 3}))
        await items.put(Item(id=2, meta=((1, 2), [3], {frozenset({1})})))
        one, two = await items.get(1), await items.get(2)
        assert one is not None and one.meta == {(1, 2): "x"} and one.d == {(1, 2): 3}
        assert two is not None and two.meta == ((1, 2), [3], {frozenset({1})}) and type(two.meta) is tuple
        assert type(two.meta[1]) is list
        with pytest.raises(InvalidTypeError, match=r"Item\.meta\[1\]\[2\]: a value of type object"):
            await items.put(Item(id=3, meta=[1, {2: object()}]))
        assert await items.get(3) is None
        assert await items.count() == 2


async def test_an_unreadable_record_is_named_deletable_and_listed_by_verify() -> None:
    async with quanta.open(PATH, fs=MemoryFileSystem()) as db:
        items = db.collection(Item)
        await items.put_many([Item(id=1), Item(id=2)])
        await db.kv._engine.write([record_key("Item", 3)], [b"\xc1junk"], 64)  # db.kv refuses reserved keys
        with pytest.raises(CorruptionError, match="primary key 3"):
            await items.query().all()
        with pytest.raises(CorruptionError, match="primary key 3"):
            await items.get(3)
        assert await items.get(1) is not None
        report = await db.verify(deep=True)
        assert len(report.problems) == 1 and "primary key 3" in report.problems[0].message
        assert await items.delete(3)
        assert [i.id for i in await items.query().all()] == [1, 2]
        assert (await db.verify(deep=True)).problems == ()


async def test_auto_keys_are_not_reused_after_a_delete_a_rollback_and_a_reopen() -> None:
    fs = MemoryFileSystem()
    async with quanta.open(PATH, fs=fs) as db:
        autos = db.collection(Auto)
        assert await autos.put_many([Auto(), Auto(), Auto()]) == [1, 2, 3]
        assert await autos.delete(3)
        tx = db.transaction()
        async with tx:
            assert await tx.collection(Auto).put_many([Auto(), Auto()]) == [4, 5]
            await tx.rollback()
        assert await autos.put(Auto()) == 6  # in-process: never handed out twice
        assert await autos.delete(6)
    async with quanta.open(PATH, fs=fs) as db:
        assert await db.collection(Auto).put(Auto()) == 7  # no committed key comes back


async def test_a_crash_at_any_io_point_never_hands_out_an_acknowledged_auto_key_again() -> None:
    """Power loss before every file operation of a workload of auto-key puts, deletes (which
    persist the counter) and a rollback: after recovery, the next key handed out is above
    every key whose put was acknowledged before that point (acknowledged = durable with the
    default durability="sync")."""
    fs = RecordingFS()
    images: list[tuple[MemoryFileSystem, int]] = []
    acked = 0

    def freeze_before(_: object) -> None:
        with fs._mutex:
            images.append((freeze(fs), acked))

    fs.fail_hook = freeze_before
    async with quanta.open(PATH, fs=fs, **SMALL_OPTIONS) as db:
        autos = db.collection(Auto)
        for _ in range(3):
            pks = await autos.put_many([Auto(), Auto()])
            acked = max(acked, *pks)
            assert await autos.delete(pks[-1])  # the largest key: only the counter remembers it
            async with db.transaction() as tx:
                await tx.collection(Auto).put(Auto())
                await tx.rollback()
    fs.fail_hook = None
    images.append((freeze(fs), acked))
    assert len(images) > 20 and images[-1][1] == acked > 0
    problems: list[str] = []
    for point, (img, top) in enumerate(images):
        async with quanta.open(PATH, fs=img.crash(), **SMALL_OPTIONS) as db:
            nxt = await db.collection(Auto).put(Auto())
            if nxt <= top:
                problems.append(f"point {point}: handed out {nxt} after acknowledging {top}")
    assert not problems, problems


async def test_a_class_whose_types_changed_is_refused_without_entities() -> None:
    fs = MemoryFileSystem()

    @quanta.entity(name="N")
    class N1:
        id: Annotated[int, PrimaryKey()]
        n: int = 0

    @quanta.entity(name="N")
    class N2:
        id: Annotated[int, PrimaryKey()]
        n: str = ""

    async with quanta.open(PATH, fs=fs) as db:
        await db.collection(N1).put(N1(id=1, n=5))
        with pytest.raises(SchemaMismatchError):
            db.collection(N2)  # two classes under one entity name
    async with quanta.open(PATH, fs=fs) as db:
        with pytest.raises(SchemaMismatchError):
            db.collection(N2)


async def test_huge_ints_for_floats_and_oversized_records_are_quanta_errors() -> None:
    async with quanta.open(PATH, fs=MemoryFileSystem()) as db:
        fs_ = db.collection(F)
        with pytest.raises(InvalidTypeError, match="too large for a float"):
            await fs_.put(F(id=1.0, x=10**400))  # type: ignore[arg-type]
        with pytest.raises(InvalidTypeError, match="too large for a float"):
            await fs_.put(F(id=10**400))  # type: ignore[arg-type]
        items = db.collection(Item)
        with pytest.raises(LimitExceededError, match="MAX_VALUE_BYTES"):
            await items.put(Item(id=1, meta=b"x" * (quanta.MAX_VALUE_BYTES + 1)))
        assert await items.count() == 0 and await fs_.count() == 0
