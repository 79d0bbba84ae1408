"""Issue 13 item 1, as a property: a value put either comes back equal and of the same type
at every level, or the put raises a quanta error and writes nothing."""

from __future__ import annotations

import asyncio
import enum
import math
import zoneinfo
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

from hypothesis import given, settings
from hypothesis import strategies as st

import quanta
from quanta import PrimaryKey
from quanta._storage.vfs import MemoryFileSystem


class Color(enum.Enum):
    RED = 1
    BLUE = "b"


@quanta.entity(name="RtAny")
class RtAny:
    id: Annotated[int, PrimaryKey()]
    v: Any = None


@quanta.entity(name="RtTyped")
class RtTyped:
    id: Annotated[int, PrimaryKey()]
    li: list[int] | None = None
    dsf: dict[str, float] | None = None
    ti: tuple[int, ...] | None = None
    ss: set[str] | None = None
    oi: int | None = None
    c: Color | None = None
    dt: datetime | None = None
    dec: Decimal | None = None
    lb: list[bytes] | None = None


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type at every level; -0.0 is not 0.0, NaN matches NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, (datetime, time)):
        return a == b and a.fold == b.fold and repr(a.tzinfo) == repr(b.tzinfo)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for k, x in a.items():
            match = [k2 for k2 in b if same(k, k2)]
            if len(match) != 1 or not same(x, b[match[0]]):
                return False
        return True
    return bool(a == b)


def check_same() -> None:
    assert not same(0.0, -0.0) and not same(1, True) and not same((1,), [1]) and same(math.nan, math.nan)
    assert not same({1: 1}, {1.0: 1}) and not same(frozenset({1}), {1})


zones = st.builds(timezone, st.integers(-23 * 60 + 1, 23 * 60 - 1).map(lambda m: timedelta(minutes=m)))
if zoneinfo.available_timezones():  # named zones (ext zone kind 1) where the tz database is installed
    zones = zones | st.timezones()
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 0.0, math.inf, -math.inf])
huge = st.integers(min_value=-(2**200), max_value=2**200)
ints = st.integers() | huge | st.sampled_from([2**63, -(2**63) - 1, 2**64])
texts = st.text() | st.text(st.characters(categories=["Cs", "Lu"]))  # with lone surrogates
decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from([Decimal("-0"), Decimal("1.00")])
datetimes = st.datetimes() | st.datetimes(timezones=zones) | st.datetimes().map(lambda d: d.replace(fold=1))
times = st.times() | st.times(timezones=zones)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    texts,
    st.binary(),
    st.dates(),
    datetimes,
    times,
    st.timedeltas(),
    decimals,
    st.uuids(),
    st.sampled_from(list(Color)),  # refused in Any fields (subclass values)
)
# A signalling NaN cannot be hashed, so it is never a set element or a dict key.
hashable_scalars = scalars.filter(lambda v: not (isinstance(v, Decimal) and v.is_snan()))
hashable = st.recursive(hashable_scalars, lambda c: st.tuples(c, c) | st.frozensets(c, max_size=3), max_leaves=6)
anything = st.recursive(
    scalars,
    lambda c: (
        st.lists(c, max_size=4)
        | st.lists(c, max_size=4).map(tuple)
        | st.dictionaries(hashable, c, max_size=3)
        | st.sets(hashable, max_size=3)
        | st.frozensets(hashable, max_size=3)
    ),
    max_leaves=12,
)


def run_property(
    cls: type, values: st.SearchStrategy[dict[str, Any]], examples: int, stored_at_least: int = 0
) -> tuple[int, int]:
    """Runs the property; returns (values stored, values refused)."""
    loop = asyncio.new_event_loop()
    try:
        db = loop.run_until_complete(quanta.open("/db", fs=MemoryFileSystem()))
        coll = db.collection(cls)
        pks = iter(range(1, 10**9))
        stored: list[int] = []
        refused: list[int] = []

        @settings(max_examples=examples, deadline=None)
        @given(values)
        def prop(fields: dict[str, Any]) -> None:
            pk = next(pks)
            obj = cls(id=pk, **fields)

            async def step() -> None:
                try:
                    await coll.put(obj)
                except quanta.QuantaError:
                    assert await coll.get(pk) is None
                    assert await coll.count() == len(stored)
                    refused.append(pk)
                    return
                stored.append(pk)
                back = await coll.get(pk)
                assert back is not None
                for name, value in fields.items():
                    assert same(getattr(back, name), value), (name, value, getattr(back, name))

            loop.run_until_complete(step())

        try:
            prop()
        finally:
            loop.run_until_complete(db.close())
    finally:
        loop.close()
    assert len(stored) >= stored_at_least, (len(stored), len(refused))  # the property is not vacuous
    return len(stored), len(refused)


def test_same_tells_types_signs_and_nans_apart() -> None:
    check_same()


def test_any_fields_round_trip_exactly_or_refuse() -> None:
    run_property(RtAny, st.fixed_dictionaries({"v": anything}), 2000, stored_at_least=1000)


def test_typed_fields_round_trip_exactly_or_refuse() -> None:
    typed: dict[str, st.SearchStrategy[Any]] = {
        "li": st.none() | st.lists(ints, max_size=4),
        "dsf": st.none() | st.dictionaries(texts, floats, max_size=3),
        "ti": st.none() | st.lists(ints, max_size=4).map(tuple),
        "ss": st.none() | st.sets(texts, max_size=3),
        "oi": st.none() | ints,
        "c": st.none() | st.sampled_from(list(Color)),
        "dt": st.none() | datetimes,
        "dec": st.none() | decimals,
        "lb": st.none() | st.lists(st.binary(), max_size=3),
    }
    run_property(RtTyped, st.fixed_dictionaries(typed), 2000, stored_at_least=500)


def test_typed_fields_refuse_wrong_types_without_writing() -> None:
    run_property(RtTyped, st.fixed_dictionaries({"li": anything, "oi": anything}), 300)
