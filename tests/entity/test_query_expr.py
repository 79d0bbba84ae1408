"""Query expressions: the operators, what ``evaluate`` means, and every ``QueryError`` raised
when a query is built (quanta/_query/expr.py).

The entity is built by hand (an ``EntityInfo`` and ``Field`` class attributes), as the
``@quanta.entity`` decorator builds it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from quanta._query import Expr, Field, Order, and_, as_order, asc, between, contains, desc, in_, not_, or_
from quanta._query.expr import And, Between, Compare, Contains, In, IsNone, Not, Or, StartsWith
from quanta._schema.info import EntityInfo, FieldInfo, IndexInfo
from quanta.errors import QuantaError, QueryError


class Color(enum.IntEnum):
    RED = 1
    BLUE = 2


class Mood(enum.Enum):
    HAPPY = "h"
    SAD = "s"


class Record:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class Item(Record):
    pass


class Other(Record):
    pass


def make_entity(cls: type, fields: list[tuple[str, Any, Any, bool, Any, Any]], pk: str) -> EntityInfo:
    infos = tuple(
        FieldInfo(name, ann, base, opt, i, key_type, elem)
        for i, (name, ann, base, opt, key_type, elem) in enumerate(fields)
    )
    info = EntityInfo(cls, cls.__name__, infos, pk, False, (IndexInfo("name", ("name",)),))
    cls.__quanta_entity__ = info  # type: ignore[attr-defined]
    for f in infos:
        setattr(cls, f.name, Field(cls, f.name))
    return info


ITEM = make_entity(
    Item,
    [
        ("id", int, int, False, int, None),
        ("name", str, str, False, str, None),
        ("nick", str | None, str, True, str, None),
        ("age", int | None, int, True, int, None),
        ("score", float, float, False, float, None),
        ("flag", bool, bool, False, bool, None),
        ("data", bytes, bytes, False, bytes, None),
        ("born", date, date, False, date, None),
        ("seen", datetime | None, datetime, True, datetime, None),
        ("uid", uuid.UUID, uuid.UUID, False, uuid.UUID, None),
        ("color", Color, Color, False, Color, None),
        ("mood", Mood, Mood, False, None, None),
        ("tags", list[str], list[str], False, None, str),
        ("nums", set[int], set[int], False, None, int),
        ("pair", tuple[int, ...], tuple[int, ...], False, None, int),
        ("maybe", list[str | None], list[str | None], False, None, str),
        ("meta", dict[str, int], dict[str, int], False, None, None),
        ("ltags", list[str] | None, list[str], True, None, str),
    ],
    "id",
)
OTHER = make_entity(Other, [("id", int, int, False, int, None), ("name", str, str, False, str, None)], "id")

It: Any = Item  # field access on the hand-built class is dynamic
Ot: Any = Other

BASE: dict[str, Any] = {
    "id": 1,
    "name": "Ann",
    "nick": None,
    "age": 30,
    "score": 1.5,
    "flag": True,
    "data": b"\x00ab",
    "born": date(2000, 1, 2),
    "seen": datetime(2024, 1, 1, 12),
    "uid": uuid.UUID(int=5),
    "color": Color.RED,
    "mood": Mood.HAPPY,
    "tags": ["x", "y"],
    "nums": {1, 2},
    "pair": (1, 2),
    "maybe": ["a", None],
    "meta": {"k": 1},
    "ltags": None,
}


def item(**changes: Any) -> Any:
    return Item(**{**BASE, **changes})


# ---------------------------------------------------------------------------------------------
# Building and printing


def test_operators_build_nodes() -> None:
    assert isinstance(It.age == 3, Compare)
    assert repr(It.age == 3) == "Item.age == 3"
    assert repr(It.age != 3) == "Item.age != 3"
    assert repr(It.age < 3) == "Item.age < 3"
    assert repr(It.age <= 3) == "Item.age <= 3"
    assert repr(It.age > 3) == "Item.age > 3"
    assert repr(It.age >= 3) == "Item.age >= 3"
    assert repr(3 < It.age) == "Item.age > 3"  # reflected by Python
    assert repr(3 == It.age) == "Item.age == 3"
    assert repr(It.name.startswith("A")) == "Item.name.startswith('A')"
    assert repr(It.nick.is_none()) == "Item.nick.is_none()"
    assert repr(It.nick.is_not_none()) == "Item.nick.is_not_none()"
    assert repr(between(It.age, 1, 5)) == "between(Item.age, 1, 5)"
    assert repr(in_(It.name, ("a", "b"))) == "in_(Item.name, ['a', 'b'])"
    assert repr(contains(It.tags, "x")) == "contains(Item.tags, 'x')"
    assert isinstance(It.name.startswith("A"), StartsWith)
    assert isinstance(It.nick.is_none(), IsNone)
    assert isinstance(between(It.age, 1, 5), Between)
    assert isinstance(in_(It.age, [1]), In)
    assert isinstance(contains(It.tags, "x"), Contains)


def test_combinators_and_their_repr() -> None:
    a, b, c = It.age > 1, It.name == "x", It.score < 2
    assert repr(a & b) == "(Item.age > 1) & (Item.name == 'x')"
    assert repr(a | b) == "(Item.age > 1) | (Item.name == 'x')"
    assert repr(~a) == "~(Item.age > 1)"
    assert repr(~(a | b) & c) == "~((Item.age > 1) | (Item.name == 'x')) & (Item.score < 2.0)"
    assert repr(~contains(It.tags, "x")) == "~contains(Item.tags, 'x')"
    # & and | flatten; a single expression is itself.
    conj = (a & b) & c
    assert isinstance(conj, And) and len(conj.items) == 3
    assert and_(a, and_(b, c)) == conj
    disj = a | (b | c)
    assert isinstance(disj, Or) and len(disj.items) == 3 and or_(a, b, c) == disj
    assert and_(a) is a and or_(a) is a
    assert isinstance(not_(a), Not) and not_(a) == ~a


def test_structural_equality_and_hash() -> None:
    assert (It.age == 3) == (It.age == 3)
    assert (It.age == 3) != (It.age == 4)
    assert (It.age == 3) != (It.age != 3)
    assert (It.age == 3) != (Ot.id == 3)
    assert ((It.age > 1) & (It.name == "x")) == ((It.age > 1) & (It.name == "x"))
    assert ((It.age > 1) & (It.name == "x")) != ((It.age > 1) | (It.name == "x"))
    assert (Field(Item, "age") == 3) == (It.age == 3)  # a fresh Field builds the same node
    assert hash(It.age == 3) == hash(Field(Item, "age") == 3)
    assert len({It.age == 3, It.age == 3, It.age == 4}) == 2
    assert (It.age == 3) != "Item.age == 3"


def test_field_identity_hash_and_info() -> None:
    f = It.age
    assert {f: 1}[f] == 1  # a dict of fields never calls the query __eq__
    assert f in {f}
    assert f.owner is Item and f.name == "age"
    assert f.info == ITEM.field("age")
    assert f.entity is ITEM
    assert repr(f) == "Item.age"


def test_values_are_normalised() -> None:
    e = It.score == 1
    assert isinstance(e, Compare) and type(e.value) is float and e.value == 1.0
    assert repr(between(It.score, 1, 2)) == "between(Item.score, 1.0, 2.0)"
    c = It.color == 2
    assert isinstance(c, Compare) and c.value is Color.BLUE
    s = in_(It.score, [1, 2.5])
    assert isinstance(s, In) and [type(v) for v in s.values] == [float, float]
    assert isinstance(in_(It.age, (v for v in [1, 2])), In)  # any iterable, once


def test_orders() -> None:
    assert repr(asc(It.age)) == "asc(Item.age)" and not asc(It.age).descending
    assert repr(desc(It.age)) == "desc(Item.age)" and desc(It.age).descending
    assert as_order(It.age) == asc(It.age)
    assert as_order(desc(It.age)) == desc(It.age)
    assert desc(It.age) != asc(It.age)
    assert isinstance(desc(It.age), Order)
    assert len({asc(It.age), asc(Field(Item, "age")), desc(It.age)}) == 2


# ---------------------------------------------------------------------------------------------
# evaluate


def test_comparisons_follow_python() -> None:
    x = item(age=30, name="Ann", score=1.5)
    assert (It.age == 30).evaluate(x)
    assert not (It.age == 31).evaluate(x)
    assert (It.age != 31).evaluate(x)
    assert (It.age < 31).evaluate(x) and not (It.age < 30).evaluate(x)
    assert (It.age <= 30).evaluate(x) and not (It.age <= 29).evaluate(x)
    assert (It.age > 29).evaluate(x) and not (It.age > 30).evaluate(x)
    assert (It.age >= 30).evaluate(x) and not (It.age >= 31).evaluate(x)
    assert (It.name > "Al").evaluate(x) and (It.name < "B").evaluate(x)
    assert (It.score == 1.5).evaluate(x)
    assert (It.score == 0.0).evaluate(item(score=-0.0))  # Python: -0.0 == 0.0
    assert not (It.score < 0.0).evaluate(item(score=-0.0))
    assert (It.color == Color.RED).evaluate(x) and (It.color < 2).evaluate(x)
    assert (It.mood == Mood.HAPPY).evaluate(x) and (It.mood != "s").evaluate(x)
    assert (It.tags == ["x", "y"]).evaluate(x)
    assert (It.flag == True).evaluate(x)  # noqa: E712 (a query)
    assert (It.uid > uuid.UUID(int=4)).evaluate(x)


def test_none_field_satisfies_only_none_tests() -> None:
    x = item(age=None)
    for e in (It.age == 3, It.age != 3, It.age < 3, It.age <= 3, It.age > 3, It.age >= 3, between(It.age, 0, 9)):
        assert not e.evaluate(x), e
    assert (It.age == None).evaluate(x)  # noqa: E711 (a query)
    assert not (It.age != None).evaluate(x)  # noqa: E711
    assert It.age.is_none().evaluate(x) and not It.age.is_not_none().evaluate(x)
    assert (It.age != None).evaluate(item(age=0))  # noqa: E711
    assert not (It.age == None).evaluate(item(age=0))  # noqa: E711
    # No three-valued logic: ~ is plain `not`.
    assert (~(It.age < 3)).evaluate(x)
    assert (~(It.age != 3)).evaluate(x)
    assert not It.nick.startswith("").evaluate(item(nick=None))
    assert not contains(It.ltags, "x").evaluate(item(ltags=None))
    assert contains(It.ltags, "x").evaluate(item(ltags=["x"]))


def test_between_in_startswith_contains() -> None:
    x = item(age=5, name="Ann", data=b"\x00ab", tags=["x", "y"], nums={1, 2}, pair=(3, 4), maybe=["a", None])
    assert between(It.age, 5, 5).evaluate(x) and between(It.age, 1, 5).evaluate(x) and between(It.age, 5, 9).evaluate(x)
    assert not between(It.age, 6, 9).evaluate(x)
    assert not between(It.age, 9, 1).evaluate(x)  # lo > hi: empty, not an error
    assert in_(It.age, [1, 5]).evaluate(x) and not in_(It.age, [1, 2]).evaluate(x)
    assert not in_(It.age, []).evaluate(x)  # empty in_: always false
    assert in_(It.age, [None, 7]).evaluate(item(age=None))
    assert not in_(It.age, [5, 7]).evaluate(item(age=None))
    assert It.name.startswith("An").evaluate(x) and It.name.startswith("").evaluate(x)
    assert not It.name.startswith("ann").evaluate(x)
    assert It.data.startswith(b"\x00a").evaluate(x) and not It.data.startswith(b"a").evaluate(x)
    assert contains(It.tags, "x").evaluate(x) and not contains(It.tags, "z").evaluate(x)
    assert contains(It.nums, 2).evaluate(x) and not contains(It.nums, 3).evaluate(x)
    assert contains(It.pair, 4).evaluate(x)
    assert contains(It.maybe, None).evaluate(x)


def test_and_or_not_evaluate() -> None:
    x = item(age=5, name="Ann")
    t, f = It.age == 5, It.name == "Bob"
    assert (t & t).evaluate(x) and not (t & f).evaluate(x)
    assert (t | f).evaluate(x) and not (f | f).evaluate(x)
    assert (~f).evaluate(x) and not (~t).evaluate(x)
    assert and_(t, t, t).evaluate(x) and or_(f, f, t).evaluate(x)


def test_naive_and_aware_datetimes() -> None:
    aware = datetime(2024, 1, 1, 12, tzinfo=UTC)
    naive = datetime(2024, 1, 1, 12)
    x = item(seen=naive)
    assert not (It.seen == aware).evaluate(x)
    assert (It.seen != aware).evaluate(x)
    assert not (It.seen < aware).evaluate(x)  # Python raises; the predicate is just false
    assert not (It.seen >= aware).evaluate(x)
    assert (~(It.seen < aware)).evaluate(x)
    paris = datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert (It.seen == paris).evaluate(item(seen=aware))  # the same instant


# ---------------------------------------------------------------------------------------------
# Every QueryError


def raises(match: str) -> Any:
    return pytest.raises(QueryError, match=match)


def test_query_error_is_in_the_hierarchy() -> None:
    assert issubclass(QueryError, QuantaError) and issubclass(QueryError, ValueError)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: It.age == "3", r"Item\.age == '3': expected a value of type int, got str"),
        (lambda: It.age > "x", r"Item\.age > 'x': expected a value of type int"),
        (lambda: It.age == 3.5, "expected a value of type int, got float"),
        (lambda: It.age == True, "expected a value of type int, got bool"),  # noqa: E712
        (lambda: It.flag == 1, "expected a value of type bool, got int"),
        (lambda: It.score == "1", "expected a value of type float, got str"),
        (lambda: It.score == True, "expected a value of type float, got bool"),  # noqa: E712
        (lambda: It.score == float("nan"), "NaN"),
        (lambda: It.score < 10**400, "too large for a float"),
        (lambda: It.name == b"Ann", "expected a value of type str, got bytes"),
        (lambda: It.data == "ab", "expected a value of type bytes, got str"),
        (lambda: It.born == datetime(2024, 1, 1), "expected a value of type date, got datetime"),
        (lambda: It.seen == date(2024, 1, 1), "expected a value of type datetime, got date"),
        (lambda: It.uid == "not-a-uuid", "expected a value of type UUID"),
        (lambda: It.color == 7, r"7 is not a value of Color \(one of 1, 2\)"),
        (lambda: It.mood == "x", "is not a value of Mood"),
        (lambda: It.tags == "x", r"expected a value of type list\[str\], got str"),
        (lambda: It.nums == [1], r"expected a value of type set\[int\], got list"),
        (lambda: It.meta == [], "expected a value of type dict"),
    ],
)
def test_wrong_value_types(build: Any, match: str) -> None:
    with raises(match):
        build()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: It.name == None, r"Item\.name is declared str, not optional, so it is never None"),  # noqa: E711
        (lambda: It.name != None, "not optional"),  # noqa: E711
        (lambda: It.age < None, r"None has no order; use Item\.age\.is_none\(\)"),
        (lambda: It.age >= None, "None has no order"),
        (lambda: between(It.age, None, 3), "None has no order"),
        (lambda: in_(It.name, ["a", None]), r"Item\.name is declared str, not optional; None never matches"),
        (lambda: It.name.is_none(), r"Item\.name\.is_none\(\): Item\.name is declared str, not optional"),
        (lambda: It.name.is_not_none(), "not optional"),
        (lambda: contains(It.tags, None), r"the elements of Item\.tags \(list\[str\]\) are never None"),
    ],
)
def test_none_where_the_field_is_not_optional(build: Any, match: str) -> None:
    with raises(match):
        build()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: It.tags < ["a"], r"Item\.tags \(list\[str\]\) cannot be ordered, so < does not apply"),
        (lambda: It.meta >= {}, "cannot be ordered"),
        (lambda: It.mood > Mood.SAD, r"Item\.mood \(Mood\) cannot be ordered"),
        (lambda: between(It.tags, ["a"], ["b"]), "cannot be ordered, so between does not apply"),
        (lambda: asc(It.tags), "cannot be ordered, so order_by does not apply"),
        (lambda: desc(It.meta), "cannot be ordered"),
        (lambda: as_order("age"), r"order_by\(\) takes an entity field"),
        (lambda: between(It.seen, datetime(2024, 1, 1), datetime(2024, 1, 2, tzinfo=UTC)), "cannot be compared"),
    ],
)
def test_order_on_what_cannot_be_ordered(build: Any, match: str) -> None:
    with raises(match):
        build()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: contains(It.name, "A"), r"contains\(\) needs a list, set or tuple field; Item\.name is str"),
        (lambda: contains(It.meta, "k"), "needs a list, set or tuple field"),
        (lambda: contains(It.tags, 3), "expected a value of type str, got int"),
        (lambda: contains(It.nums, "1"), "expected a value of type int, got str"),
        (lambda: contains(It.pair, "a"), "expected a value of type int"),
        (lambda: contains("tags", "x"), r"contains\(\) takes an entity field such as User\.age first"),
        (lambda: It.age.startswith("1"), r"startswith needs a str or bytes field; Item\.age is int \| None"),
        (lambda: It.flag.startswith("T"), "startswith needs a str or bytes field"),
        (lambda: It.tags.startswith("x"), "startswith needs a str or bytes field"),
        (lambda: It.name.startswith(b"A"), "the prefix must be str, got bytes"),
        (lambda: It.data.startswith("A"), "the prefix must be bytes, got str"),
        (lambda: in_(It.name, "Oslo"), r"in_\(\) takes a collection of values .*, got str"),
        (lambda: in_(It.age, 3), "got int"),
        (lambda: in_(It.age, [1, "2"]), "expected a value of type int, got str"),
        (lambda: in_("age", [1]), "takes an entity field"),
        (lambda: between(It.age, 1, "9"), "expected a value of type int, got str"),
    ],
)
def test_collections_prefixes_and_in(build: Any, match: str) -> None:
    with raises(match):
        build()


def test_fields_of_two_entities_cannot_mix() -> None:
    msg = r"one query cannot mix entities: Other\.name is a field of Other, the rest of the query is about Item"
    with raises(msg):
        (It.age > 3) & (Ot.name == "x")
    with raises(msg):
        (It.age > 3) | (Ot.name == "x")
    with raises("cannot mix entities"):
        and_(It.age > 3, It.name == "a", ~(Ot.name == "x"))
    with raises("cannot mix entities"):
        or_(Ot.id == 1, It.age > 3)


def test_comparing_two_fields_is_refused() -> None:
    with raises(r"comparing a field with another field \(Item\.id\) is not supported"):
        It.age == It.id  # noqa: B015
    with raises("expected a value, got a query expression"):
        It.age == (It.id == 3)  # noqa: B015


def test_truth_value_is_refused() -> None:
    with raises(r"Item\.age == 3: a query expression has no truth value: combine conditions with & and \|"):
        if It.age == 3:
            pass
    with raises("between"):
        1 < It.age < 5  # noqa: B015 (Python evaluates (1 < age) and (age < 5))
    with raises("no truth value"):
        _ = (It.age > 1) and (It.age < 5)
    with raises("no truth value"):
        _ = not (It.age > 1)
    with raises(r"Item\.age: a field has no truth value"):
        bool(It.age)
    assert [It.age > 1].index(It.age > 1) == 0  # expressions compare structurally, as values


def test_unknown_fields_and_classes() -> None:
    with raises(r"Item has no field 'nope'"):
        Field(Item, "nope") == 3  # noqa: B015
    with raises(r"Item has no field 'nope'"):
        between(Field(Item, "nope"), 1, 2)

    class Plain:
        pass

    with raises(r"Plain is not an entity class \(decorate it with @quanta\.entity\)"):
        Field(Plain, "x") > 1  # noqa: B015


def test_combinators_take_expressions_only() -> None:
    with raises(r"and_\(\) needs at least one expression"):
        and_()
    with raises(r"or_\(\) needs at least one expression"):
        or_()
    with raises(r"and_\(\): expected a query expression such as User\.age > 3, got bool True"):
        and_(It.age > 1, True)  # type: ignore[arg-type]
    with raises("expected a query expression"):
        (It.age > 1) & "x"  # type: ignore[operator]
    with raises(r"not_\(\): expected a query expression"):
        not_(3)  # type: ignore[arg-type]


def test_expr_base_is_abstract() -> None:
    class Odd(Expr):
        pass

    with pytest.raises(NotImplementedError):
        Odd().evaluate(None)
    with pytest.raises(NotImplementedError):
        _ = Odd().owner
