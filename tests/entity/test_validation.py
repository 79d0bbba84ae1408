"""Validation: field constraints (``Range``, ``Length``, ``Pattern``, ``OneOf``), field and entity
validators, and ``ValidationError`` (quanta/_schema/constraints.py, validation.py).

What is proved here:

* every constraint kind accepts what its rule allows and names what it does not, also inside
  ``X | None`` (None passes) and on the elements of collections; a Hypothesis property per
  kind: the check accepts exactly the values the rule's predicate accepts;
* every bad declaration is a ``SchemaError`` at decoration time naming the class and field;
* one ``ValidationError`` lists every violation (entity, field, reason, value); type errors
  come first, as ``InvalidTypeError``; validators run in the documented order, and an
  unexpected exception in one propagates with a note;
* before anything is written: ``put`` and ``put_many`` of an invalid object write nothing (a
  batch with one invalid object writes nothing), and a transaction stays usable;
* a class without rules gets the same generated ``check`` as before (no extra cost).
"""

from __future__ import annotations

import dataclasses
import linecache
import math
import pickle
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Annotated, Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import quanta
from quanta import Length, OneOf, Pattern, PrimaryKey, Range, ValidationError, Violation
from quanta._schema import entity_info
from quanta.errors import InvalidArgumentError, InvalidTypeError, QuantaError, SchemaError

# ---------------------------------------------------------------------------------------------
# Declarations shared by the tests


class Size(Enum):
    S = "s"
    M = "m"
    L = "l"


class Level(IntEnum):
    LOW = 1
    MID = 2
    HIGH = 3


@quanta.entity
class Person:
    """The issue's constraints, one of each kind, plus the optional and element forms."""

    id: Annotated[int, PrimaryKey()]
    name: Annotated[str, Length(min=1, max=80)]
    age: Annotated[int, Range(0, 150)] = 0
    code: Annotated[str, Pattern(r"[A-Z]{3}-\d{2}")] = "ABC-12"
    size: Annotated[Size, OneOf(Size.S, Size.M)] = Size.M
    nick: Annotated[str, Length(max=5)] | None = None
    tags: list[Annotated[str, Length(min=1, max=4)]] = quanta.field(default_factory=list)


def person(**changes: Any) -> Person:
    values: dict[str, Any] = {"id": 1, "name": "Ann"}
    values.update(changes)
    return Person(**values)


def violations(obj: Any) -> list[Violation]:
    """The violations ``check`` reports for ``obj`` ([] if it passes)."""
    try:
        entity_info(type(obj)).check(obj)
    except ValidationError as exc:
        return exc.violations
    return []


def fields_of(obj: Any) -> list[str | None]:
    return [v.field for v in violations(obj)]


def schema_error(make: Callable[[], object], *words: str) -> str:
    with pytest.raises(SchemaError) as caught:
        make()
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)
    return message


def entity_with(annotation: Any, default: Any = dataclasses.MISSING, **options: Any) -> type:
    """An entity class ``E(id, x)`` whose field ``x`` has ``annotation``."""
    ns: dict[str, Any] = {"__annotations__": {"id": Annotated[int, PrimaryKey()], "x": annotation}}
    if default is not dataclasses.MISSING:
        ns["x"] = default
    cls: type = quanta.entity(**options)(type("E", (), ns))
    return cls


def accepts(cls: type, value: Any) -> bool:
    obj = cls(id=1, x=value)
    try:
        entity_info(cls).check(obj)
    except ValidationError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The public surface


def test_the_names_are_public() -> None:
    for name in ("Range", "Length", "Pattern", "OneOf", "validator", "ValidationError", "Violation"):
        assert name in quanta.__all__
    for name in ("IntegrityError", "SchemaMismatchError"):
        assert name in quanta.__all__ and name in quanta.errors.__all__


def test_the_error_hierarchy() -> None:
    assert issubclass(ValidationError, InvalidArgumentError)  # bad input: nothing was written
    assert issubclass(ValidationError, ValueError) and not issubclass(ValidationError, TypeError)
    assert issubclass(quanta.IntegrityError, QuantaError)
    assert issubclass(quanta.UniqueViolationError, quanta.IntegrityError)
    assert issubclass(quanta.SchemaMismatchError, QuantaError)
    assert not issubclass(quanta.SchemaMismatchError, SchemaError)  # not a declaration error
    for cls in (ValidationError, quanta.IntegrityError, quanta.SchemaMismatchError):
        assert cls.__doc__


def test_errors_survive_pickling() -> None:
    err = ValidationError([Violation("User", "age", "must be >= 0", -1, 7), Violation("User", None, "bad")])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ValidationError and back.violations == err.violations and str(back) == str(err)
    mismatch = quanta.SchemaMismatchError("2 differences", differences=["User.age: int -> str", "User.x: removed"])
    back2 = pickle.loads(pickle.dumps(mismatch))
    assert back2.differences == mismatch.differences and str(back2) == "2 differences"
    integrity = pickle.loads(pickle.dumps(quanta.IntegrityError("restricted")))
    assert type(integrity) is quanta.IntegrityError and str(integrity) == "restricted"


def test_violation_and_error_text() -> None:
    v = Violation("User", "age", "must be between 0 and 150", 200, 7)
    assert str(v) == "User[7].age: must be between 0 and 150 (got 200)"
    assert str(Violation("User", None, "end must not be before start")) == "User: end must not be before start"
    assert str(Violation("User", "name", "too long", "x" * 100)).endswith("xxx...)")
    assert str(ValidationError([v])) == str(v)
    many = ValidationError([Violation("User", f"f{i}", "bad", i) for i in range(25)])
    text = str(many)
    assert text.startswith("25 violations:\n  User.f0: bad (got 0)")
    assert "User.f19" in text and "User.f20" not in text and text.endswith("... and 5 more")
    assert len(many.violations) == 25


# ---------------------------------------------------------------------------------------------
# Each constraint kind, happy and failing


def test_a_valid_object_passes_and_is_unchanged() -> None:
    p = person(age=150, tags=["a", "abcd"], nick="Annie")
    before = dataclasses.replace(p)
    entity_info(Person).check(p)
    assert p == before


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"age": -1}, "age", "must be between 0 and 150"),
        ({"age": 151}, "age", "must be between 0 and 150"),
        ({"name": ""}, "name", "length must be between 1 and 80, is 0"),
        ({"name": "x" * 81}, "name", "length must be between 1 and 80, is 81"),
        ({"code": "abc-12"}, "code", r"must match the pattern '[A-Z]{3}-\d{2}'"),
        ({"code": "ABC-123"}, "code", "must match the pattern"),  # fullmatch, not search
        ({"code": "xABC-12"}, "code", "must match the pattern"),
        ({"size": Size.L}, "size", "must be one of Size.S, Size.M"),
        ({"nick": "toolong"}, "nick", "length must be <= 5, is 7"),
        ({"tags": ["ok", ""]}, "tags", "element [1]: length must be between 1 and 4, is 0"),
        ({"tags": ["abcde"]}, "tags", "element [0]: length must be between 1 and 4, is 5"),
    ],
)
def test_each_constraint_names_the_field_the_rule_and_the_value(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    obj = person(**changes)
    with pytest.raises(ValidationError) as caught:
        entity_info(Person).check(obj)
    [v] = caught.value.violations
    assert (v.entity, v.field, v.key) == ("Person", field, 1) and v.reason.startswith(reason)
    value = changes[field]
    assert v.value == (value[[x for x in value].index(v.value)] if isinstance(value, list) else value)
    assert str(caught.value).startswith(f"Person[1].{field}: {reason}")


def test_every_violation_is_listed_in_field_order() -> None:
    obj = person(name="", age=200, code="nope", size=Size.L, nick="toolong", tags=["", "ok", "abcde"])
    found = violations(obj)
    assert [(v.field, v.reason.split(":")[0]) for v in found] == [
        ("name", "length must be between 1 and 80, is 0"),
        ("age", "must be between 0 and 150"),
        ("code", r"must match the pattern '[A-Z]{3}-\d{2}'"),
        ("size", "must be one of Size.S, Size.M"),
        ("nick", "length must be <= 5, is 7"),
        ("tags", "element [0]"),
        ("tags", "element [2]"),
    ]
    message = str(ValidationError(found))
    assert message.startswith("7 violations:\n  Person[1].name: length must be between 1 and 80, is 0 (got '')")


def test_none_passes_the_constraints_of_an_optional_field() -> None:
    assert violations(person(nick=None)) == []

    @quanta.entity
    class Opt:
        id: Annotated[int, PrimaryKey()]
        a: Annotated[int | None, Range(1, 9)] = None  # Annotated around the optional
        b: Annotated[int, Range(1, 9)] | None = None  # ... or inside it
        c: Annotated[list[int] | None, Length(max=2)] = None
        d: list[Annotated[int, Range(1, 9)] | None] = quanta.field(default_factory=list)  # optional elements

    assert violations(Opt(id=1)) == []
    assert violations(Opt(id=1, a=5, b=5, c=[1], d=[None, 3, None])) == []
    found = violations(Opt(id=1, a=0, b=10, c=[1, 2, 3], d=[None, 0]))
    assert [(v.field, v.value) for v in found] == [("a", 0), ("b", 10), ("c", [1, 2, 3]), ("d", 0)]
    assert found[3].reason == "element [1]: must be between 1 and 9"
    info = entity_info(Opt)
    assert [f.constraints for f in info.fields[1:3]] == [(Range(1, 9),), (Range(1, 9),)]
    assert info.field("d").element_constraints == (Range(1, 9),)


def test_open_ended_ranges_and_other_ordered_types() -> None:
    @quanta.entity
    class R:
        id: Annotated[int, PrimaryKey()]
        n: Annotated[int, Range(min=0)] = 0
        top: Annotated[float, Range(max=1.5)] = 0.0
        price: Annotated[Decimal, Range(Decimal("0.01"), 100)] = Decimal(1)
        word: Annotated[str, Range("b", "d")] = "c"
        raw: Annotated[bytes, Range(b"a", b"b")] = b"a"
        day: Annotated[date, Range(date(2020, 1, 1), date(2030, 1, 1))] = date(2025, 1, 1)
        at: Annotated[datetime, Range(min=datetime(2020, 1, 1, tzinfo=UTC))] = datetime(2025, 1, 1, tzinfo=UTC)
        noon: Annotated[time, Range(time(9), time(17))] = time(12)
        wait: Annotated[timedelta, Range(max=timedelta(hours=1))] = timedelta(0)
        level: Annotated[Level, Range(max=2)] = Level.LOW
        mood: Annotated[str, Range("a", "m")] | None = None

    assert violations(R(id=1, n=10**30)) == []
    cases: dict[str, Any] = {
        "n": -1,
        "top": 1.6,
        "price": Decimal("0.001"),
        "word": "e",
        "raw": b"c",
        "day": date(2031, 1, 1),
        "at": datetime(2019, 1, 1, tzinfo=UTC),
        "noon": time(8),
        "wait": timedelta(hours=2),
        "level": Level.HIGH,
        "mood": "z",
    }
    for name, bad in cases.items():
        assert fields_of(R(id=1, **{name: bad})) == [name], name
    assert violations(R(id=1, top=math.inf))[0].reason == "must be <= 1.5"
    assert violations(R(id=1, n=-5))[0].reason == "must be >= 0"
    assert violations(R(id=1, top=2))[0].value == 2.0  # the int was converted (the type check), then ranged


def test_nan_is_in_no_range_and_incomparable_values_are_violations() -> None:
    @quanta.entity
    class N:
        id: Annotated[int, PrimaryKey()]
        x: Annotated[float, Range(0, 1)] = 0.5
        d: Annotated[Decimal, Range(0, 1)] = Decimal("0.5")
        at: Annotated[datetime, Range(min=datetime(2020, 1, 1))] = datetime(2021, 1, 1)
        xs: list[Annotated[float, Range(0, 1)]] = quanta.field(default_factory=list)

    assert fields_of(N(id=1, x=math.nan)) == ["x"]
    assert fields_of(N(id=1, xs=[0.5, math.nan])) == ["xs"]  # (min/max would not see it: not used for floats)
    assert fields_of(N(id=1, xs=[math.nan, 0.5])) == ["xs"]
    assert fields_of(N(id=1, d=Decimal("NaN"))) == ["d"]
    assert fields_of(N(id=1, d=Decimal("sNaN"))) == ["d"]
    [v] = violations(N(id=1, at=datetime(2021, 1, 1, tzinfo=UTC)))  # aware against a naive bound
    assert v.field == "at" and "cannot compare" in v.reason

    @quanta.entity
    class Times:
        id: Annotated[int, PrimaryKey()]
        ats: list[Annotated[datetime, Range(min=datetime(2020, 1, 1))]] = quanta.field(default_factory=list)

    assert violations(Times(id=1, ats=[datetime(2021, 1, 1), datetime(2022, 1, 1)])) == []
    found = violations(Times(id=1, ats=[datetime(2021, 1, 1), datetime(2021, 1, 1, tzinfo=UTC), datetime(2019, 1, 1)]))
    assert [v.reason.split(":")[0] for v in found] == ["element [1]", "element [2]"]
    assert "cannot compare" in found[0].reason


def test_length_on_every_sized_type() -> None:
    @quanta.entity
    class L:
        id: Annotated[int, PrimaryKey()]
        s: Annotated[str, Length(2, 2)] = "ab"
        b: Annotated[bytes, Length(max=2)] = b""
        li: Annotated[list[int], Length(min=1)] = quanta.field(default_factory=lambda: [1])
        t: Annotated[tuple[int, ...], Length(max=1)] = ()
        se: Annotated[set[int], Length(max=1)] = quanta.field(default_factory=set)
        fs: Annotated[frozenset[str], Length(max=1)] = frozenset()
        d: Annotated[dict[str, int], Length(max=1)] = quanta.field(default_factory=dict)

    assert violations(L(id=1)) == []
    bad: dict[str, Any] = {
        "s": "abc",
        "b": b"abc",
        "li": [],
        "t": (1, 2),
        "se": {1, 2},
        "fs": frozenset({"a", "b"}),
        "d": {"a": 1, "b": 2},
    }
    for name, value in bad.items():
        assert fields_of(L(id=1, **{name: value})) == [name], name
    assert violations(L(id=1, s="a"))[0].reason == "length must be 2, is 1"


def test_pattern_flags_compiled_patterns_and_bytes() -> None:
    @quanta.entity
    class P:
        id: Annotated[int, PrimaryKey()]
        a: Annotated[str, Pattern(r"[a-z]+", flags=re.IGNORECASE)] = "abc"
        b: Annotated[str, Pattern(re.compile(r"\d+"))] = "1"
        c: Annotated[bytes, Pattern(rb"[\x00-\x7f]*")] = b""
        d: set[Annotated[str, Pattern(r"#\w+")]] = quanta.field(default_factory=set)

    assert violations(P(id=1, a="ABC", b="123", c=b"ascii", d={"#a", "#b"})) == []
    assert fields_of(P(id=1, a="a1", b="1a", c=b"\xff", d={"#a", "b"})) == ["a", "b", "c", "d"]
    assert violations(P(id=1, d={"nope"}))[0].reason.startswith("an element: must match")  # (a set has no positions)


def test_one_of_on_every_kind_of_value() -> None:
    @quanta.entity
    class Choice:
        id: Annotated[int, PrimaryKey()]
        s: Annotated[str, OneOf("a", "b")] = "a"
        f: Annotated[float, OneOf(0.5, 1)] = 1.0  # an int value in a float field
        lv: Annotated[Level, OneOf(Level.LOW, Level.HIGH)] = Level.LOW
        pair: Annotated[list[int], OneOf([1, 2], [3])] = quanta.field(default_factory=lambda: [3])  # unhashable
        anything: Annotated[Any, OneOf(None, 1, "x")] = None
        many: frozenset[Annotated[int, OneOf(1, 2, 3)]] = frozenset()

    assert violations(Choice(id=1, f=1, many=frozenset({1, 3}))) == []
    found = violations(Choice(id=1, s="c", f=2.0, lv=Level.MID, pair=[2, 1], anything=2, many=frozenset({4})))
    assert [v.field for v in found] == ["s", "f", "lv", "pair", "anything", "many"]
    assert found[0].reason == "must be one of 'a', 'b'"
    assert "..." in OneOf(*range(20)).reason(0) and "(20 values)" in OneOf(*range(20)).reason(0)


# ---------------------------------------------------------------------------------------------
# Type errors and violations


def test_type_errors_come_first_as_invalid_type_error() -> None:
    obj = person(name="", age="old")  # a violation (name) and a type error (age)
    with pytest.raises(InvalidTypeError, match=r"Person\.age: expected int, got str"):
        entity_info(Person).check(obj)
    with pytest.raises(InvalidTypeError, match=r"Person\.tags\[1\]: expected str, got int"):
        entity_info(Person).check(person(tags=["", 1]))


# ---------------------------------------------------------------------------------------------
# Validators


def no_spaces(value: str) -> None:
    if " " in value:
        raise ValueError("must not contain spaces")


def ends_after_start(b: Booking) -> None:
    if b.end < b.start:
        raise ValueError("end must not be before start")


CALLS: list[str] = []


@quanta.entity(validators=[ends_after_start, quanta.validator("code", "title")(no_spaces)])
class Booking:
    id: Annotated[int, PrimaryKey(auto=True)]
    code: Annotated[str, Length(max=8)]
    title: str = "t"
    start: date = date(2024, 1, 1)
    end: date = date(2024, 1, 2)
    room: int | None = None

    @quanta.validator("room")
    @staticmethod
    def _room_exists(value: int) -> bool:
        CALLS.append(f"room {value}")
        return value in (1, 2, 3)

    @quanta.validator()
    def _at_most_a_week(self) -> None:
        CALLS.append("week")
        if (self.end - self.start).days > 7:
            raise ValueError("at most 7 days")


def booking(**changes: Any) -> Booking:
    values: dict[str, Any] = {"code": "B1"}
    values.update(changes)
    return Booking(**values)


def test_validators_are_registered_in_order() -> None:
    info = entity_info(Booking)
    assert [(vi.fields, vi.name) for vi in info.validators] == [
        ((), "ends_after_start"),
        (("code", "title"), "no_spaces"),
        (("room",), "Booking._room_exists"),
        ((), "Booking._at_most_a_week"),
    ]
    assert info.validators[2].fn is Booking.__dict__["_room_exists"].__func__


def test_field_and_entity_validators() -> None:
    assert violations(booking(room=2)) == []
    [v] = violations(booking(title="a b"))
    assert (v.entity, v.field, v.reason, v.value, v.key) == ("Booking", "title", "must not contain spaces", "a b", None)
    [v] = violations(booking(room=9))  # returning False rejects
    assert (v.field, v.reason, v.value) == ("room", "rejected by Booking._room_exists", 9)
    [v] = violations(booking(end=date(2023, 1, 1)))
    assert (v.field, v.reason, v.value) == (None, "end must not be before start", None)
    [v] = violations(booking(end=date(2024, 3, 1)))
    assert v.reason == "at most 7 days"
    assert str(ValidationError([v])) == "Booking: at most 7 days"


def test_validator_order_and_what_they_may_rely_on() -> None:
    CALLS.clear()
    assert violations(booking(room=None)) == []
    assert CALLS == ["week"]  # a field validator is never called with None
    CALLS.clear()
    found = violations(booking(code="has spaces too long", title="x y", room=9, end=date(2023, 1, 1)))
    # code breaks its Length, so its validator does not run; title's and room's do; entity
    # validators do not run while a field is invalid.
    assert [(v.field, v.reason) for v in found] == [
        ("code", "length must be <= 8, is 19"),
        ("title", "must not contain spaces"),
        ("room", "rejected by Booking._room_exists"),
    ]
    assert "week" not in CALLS


def test_a_validator_may_report_several_violations() -> None:
    def two_problems(p: Any) -> None:
        raise ValidationError([Violation(field="a", reason="first"), Violation(field="b", reason="second", value=2)])

    cls = entity_with(int, 0, validators=[two_problems])
    found = violations(cls(id=5, x=0))
    assert found == [Violation("E", "a", "first", None, 5), Violation("E", "b", "second", 2, 5)]


def test_an_unexpected_exception_in_a_validator_propagates_with_a_note() -> None:
    def broken(value: int) -> None:
        raise KeyError("oops")

    cls = entity_with(int, 0, validators=[quanta.validator("x")(broken)])
    with pytest.raises(KeyError) as caught:
        entity_info(cls).check(cls(id=1, x=3))
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1 and "validator" in notes[0] and "broken" in notes[0] and "E.x" in notes[0]


def test_validators_of_a_base_class_apply_to_an_entity_subclass() -> None:
    class Mixin:
        @quanta.validator("name")
        @staticmethod
        def _upper(value: str) -> bool:
            return value.isupper()

    @quanta.entity
    class Child(Mixin):
        id: Annotated[int, PrimaryKey()]
        name: str = ""

    assert fields_of(Child(id=1, name="abc")) == ["name"]
    assert violations(Child(id=1, name="ABC")) == []


def test_a_validator_marked_twice_covers_both_fields() -> None:
    @quanta.validator("a")
    @quanta.validator("b")
    def positive(v: int) -> bool:
        return v > 0

    @quanta.entity(validators=[positive])
    class T:
        id: Annotated[int, PrimaryKey()]
        a: int = 1
        b: int = 1

    assert entity_info(T).validators[0].fields == ("b", "a")
    assert fields_of(T(id=1, a=0, b=0)) == ["a", "b"]


def test_one_function_serves_different_fields_of_different_classes() -> None:
    def short(v: str) -> bool:
        return len(v) < 3

    @quanta.entity(validators=[quanta.validator("a")(short)])
    class A:
        id: Annotated[int, PrimaryKey()]
        a: str = ""
        b: str = ""

    @quanta.entity(validators=[quanta.validator("b")(short)])  # (not a and b: marking copies)
    class B:
        id: Annotated[int, PrimaryKey()]
        a: str = ""
        b: str = ""

    assert not hasattr(short, "__quanta_validator__")
    assert [vi.fields for vi in entity_info(A).validators] == [("a",)]
    assert [vi.fields for vi in entity_info(B).validators] == [("b",)]
    assert fields_of(A(id=1, a="long", b="long")) == ["a"] and fields_of(B(id=1, a="long", b="long")) == ["b"]
    assert quanta.validator("x")(short)("ab") is True  # the copy is the same function


def test_validator_rejects_what_it_cannot_mark() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        quanta.validator("x")(3)


# ---------------------------------------------------------------------------------------------
# Bad declarations: SchemaError at decoration time, naming class and field


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        (Annotated[int, Pattern(r"\d+")], ["a str Pattern needs a str field, not int"]),
        (Annotated[bytes, Pattern(r"\d+")], ["a str Pattern needs a str field, not bytes"]),
        (Annotated[str, Pattern("(")], ["not a valid regular expression"]),
        (Annotated[str, Pattern(3)], ["takes a str or bytes"]),  # type: ignore[arg-type]
        (Annotated[str, Range(0, 150)], ["Range min=0 cannot be compared with str values"]),
        (Annotated[bool, Range(0, 1)], ["Range needs an ordered type", "not bool"]),
        (Annotated[uuid.UUID, Range(max=uuid.UUID(int=1))], ["Range needs an ordered type"]),
        (Annotated[list[int], Range(0, 1)], ["Range needs an ordered type", "list[int]"]),
        (Annotated[Size, Range("a", "b")], ["Range needs an ordered type", "Size"]),
        (Annotated[int, Range(5, 1)], ["Range min 5 is greater than max 1"]),
        (Annotated[int, Range()], ["Range() bounds nothing"]),
        (Annotated[float, Range(math.nan, 1)], ["Range min is NaN"]),
        (Annotated[int, Range(True, 5)], ["Range min=True cannot be compared"]),
        (Annotated[date, Range(datetime(2020, 1, 1))], ["cannot be compared with date values"]),
        (Annotated[datetime, Range(datetime(2020, 1, 1), datetime(2021, 1, 1, tzinfo=UTC))], ["cannot be compared"]),
        (Annotated[int, Length(max=3)], ["Length needs a str, bytes or collection field, not int"]),
        (Annotated[str, Length(min=-1)], ["Length min must be an int >= 0, got -1"]),
        (Annotated[str, Length(max=2.5)], ["Length max must be an int >= 0"]),  # type: ignore[arg-type]
        (Annotated[str, Length(min=3, max=1)], ["Length min 3 is greater than max 1"]),
        (Annotated[str, Length()], ["Length() bounds nothing"]),
        (Annotated[Any, Length(max=1)], ["not Any"]),
        (Annotated[str, OneOf()], ["OneOf() allows nothing"]),
        (Annotated[str, OneOf("a", 1)], ["OneOf value 1 is not a str"]),
        (Annotated[int, OneOf(1, True)], ["OneOf value True is not a int"]),
        (Annotated[Size, OneOf("s")], ["OneOf value 's' is not a Size"]),
        (Annotated[str, Range], ["write Range(...) (an instance), not Range"]),
        (list[Annotated[int, Length(max=1)]], ["on the elements: Length needs"]),
        (dict[str, Annotated[int, Range(0, 1)]], ["Range(0, 1) is nested where it would not be checked"]),
        (list[list[Annotated[int, Range(0, 1)]]], ["is nested where it would not be checked"]),
        (dict[str, Annotated[str, Pattern]], ["E.x: Pattern is nested where it would not be checked"]),
        (tuple[Annotated[int, Range(0, 1)], str], ["is nested where it would not be checked"]),
        (list[Annotated[int, Range]], ["write Range(...) (an instance)"]),
    ],
)
def test_a_constraint_that_cannot_apply_is_a_schema_error(annotation: Any, words: list[str]) -> None:
    message = schema_error(lambda: entity_with(annotation), *words)
    assert message.startswith("E.x: "), message


@dataclasses.dataclass
class Address:
    street: str
    zip: Annotated[str, Pattern(r"\d{5}")] = "00000"


def test_constraints_inside_an_embedded_dataclass_are_refused() -> None:
    schema_error(
        lambda: entity_with(Address | None, None), "E.x: the embedded Address.zip declares Pattern", "validator"
    )
    schema_error(lambda: entity_with(list[Address]), "E.x: the embedded Address.zip")


def test_an_embedded_entity_with_constraints_is_refused() -> None:
    def make() -> None:
        @quanta.entity
        class Outer:
            id: Annotated[int, PrimaryKey()]
            member: Member | None = None

    schema_error(make, ".Outer.member: the embedded Member.name declares Length(min=1, max=20)")


def test_an_auto_key_takes_no_constraints() -> None:
    def make() -> None:
        @quanta.entity
        class A:
            id: Annotated[int, PrimaryKey(auto=True), Range(min=1)]

    schema_error(make, "A.id: an auto primary key", "no constraints")


def test_bad_validator_declarations() -> None:
    def one(v: Any) -> None:
        pass

    async def later(v: Any) -> None:
        pass

    def two(a: Any, b: Any) -> None:
        pass

    schema_error(
        lambda: entity_with(int, 0, validators=[quanta.validator("nope")(one)]), "E.nope:", "unknown field 'nope'"
    )
    schema_error(lambda: entity_with(int, 0, validators=[later]), "E: validator", "is async")
    schema_error(lambda: entity_with(int, 0, validators=[two]), "must take one argument (the object)")
    schema_error(
        lambda: entity_with(int, 0, validators=[quanta.validator("x")(two)]),
        "must take one argument (the field's value)",
    )
    schema_error(lambda: entity_with(int, 0, validators=[3]), "takes functions, got 3")
    schema_error(lambda: entity_with(int, 0, validators=one), "takes a list of functions")
    schema_error(lambda: entity_with(int, 0, validators=[quanta.validator(1)(one)]), "takes field names (str)")  # type: ignore[arg-type]

    def in_body() -> None:
        @quanta.entity
        class B:
            id: Annotated[int, PrimaryKey()]

            @quanta.validator("missing")
            @staticmethod
            def _v(value: int) -> None:
                pass

    schema_error(in_body, ".B.missing: validator", "B._v names an unknown field 'missing' (fields: id)")

    def a_classmethod() -> None:
        @quanta.entity
        class C:
            id: Annotated[int, PrimaryKey()]

            @quanta.validator("id")
            @classmethod
            def _v(cls, value: int) -> None:
                pass

    schema_error(a_classmethod, ".C: a validator is a plain function or a @staticmethod, not a classmethod")


# ---------------------------------------------------------------------------------------------
# What the schema layer records


def test_constraints_are_plain_data_on_field_info() -> None:
    info = entity_info(Person)
    assert info.field("age").constraints == (Range(0, 150),)
    assert info.field("tags").constraints == () and info.field("tags").element_constraints == (Length(1, 4),)
    assert info.field("id").constraints == ()
    assert [c.as_dict() for f in info.fields for c in (*f.constraints, *f.element_constraints)] == [
        {"kind": "length", "min": 1, "max": 80},
        {"kind": "range", "min": 0, "max": 150},
        {"kind": "pattern", "pattern": r"[A-Z]{3}-\d{2}", "flags": 0},
        {"kind": "one_of", "values": [Size.S, Size.M]},
        {"kind": "length", "min": None, "max": 5},
        {"kind": "length", "min": 1, "max": 4},
    ]
    assert Range(0, 1) == Range(0, 1) != Range(0, 2) and hash(Range(0, 1)) == hash(Range(0, 1))
    assert Pattern("a") == Pattern("a") != Pattern("a", re.I) and OneOf([1]) == OneOf([1]) and hash(OneOf([1]))
    assert Length(1, 2) != Range(1, 2)
    assert [
        repr(c) for c in (Range(0, 1), Range(min=0), Range(max=1), Length(max=3), Pattern("x", 2), OneOf(1, 2))
    ] == [
        "Range(0, 1)",
        "Range(min=0)",
        "Range(max=1)",
        "Length(max=3)",
        "Pattern('x', flags=2)",
        "OneOf(1, 2)",
    ]


def _check_source(cls: type) -> str:
    [name] = [k for k in linecache.cache if k.startswith(f"<quanta codec {cls.__qualname__} at {id(cls):#x}>")]
    source = "".join(linecache.cache[name][2])
    return source[source.index("def check(o):") :]


def test_a_class_without_rules_gets_the_plain_type_check() -> None:
    plain = entity_with(int, 0)
    source = _check_source(plain)
    assert "_q" not in source and "try:" not in source  # no validation code at all
    ruled = entity_with(Annotated[int, Range(0, 9)], 0)
    ruled_source = _check_source(ruled)
    assert ruled_source.count("try:") == 1 and "(0 <= o.x <= 9)" in ruled_source
    assert ruled_source.replace(source.rstrip().removesuffix("return None").rstrip(), "").lstrip().startswith("try:")


# ---------------------------------------------------------------------------------------------
# Hypothesis: the check accepts exactly what the rule's predicate accepts

_bound = st.none() | st.integers(-50, 50)
_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0, -1.0])


@given(lo=_bound, hi=_bound, values=st.lists(st.integers(-60, 60) | st.integers(), max_size=5))
@example(lo=0, hi=0, values=[0, -1, 1])
def test_range_on_ints(lo: int | None, hi: int | None, values: list[int]) -> None:
    if (lo is None and hi is None) or (lo is not None and hi is not None and lo > hi):
        return
    cls = entity_with(Annotated[int, Range(lo, hi)], 0)
    elems = entity_with(list[Annotated[int, Range(lo, hi)]], None)

    def rule(v: int) -> bool:
        return (lo is None or lo <= v) and (hi is None or v <= hi)

    for v in values:
        assert accepts(cls, v) == rule(v), v
    assert accepts(elems, values) == all(rule(v) for v in values)


@given(lo=st.floats(-10, 10), width=st.floats(0, 20), values=st.lists(_floats, max_size=5))
@example(lo=0.0, width=0.0, values=[-0.0, math.nan])
def test_range_on_floats(lo: float, width: float, values: list[float]) -> None:
    hi = lo + width
    cls = entity_with(Annotated[float, Range(lo, hi)], 0.0)
    elems = entity_with(list[Annotated[float, Range(lo, hi)]], None)
    for v in values:
        assert accepts(cls, v) == (lo <= v <= hi), v
    assert accepts(elems, values) == all(lo <= v <= hi for v in values)


@given(
    lo=st.none() | st.integers(0, 5), hi=st.none() | st.integers(0, 5), values=st.lists(st.text(max_size=8), max_size=5)
)
def test_length_on_str(lo: int | None, hi: int | None, values: list[str]) -> None:
    if (lo is None and hi is None) or (lo is not None and hi is not None and lo > hi):
        return
    cls = entity_with(Annotated[str, Length(lo, hi)], "")
    elems = entity_with(set[Annotated[str, Length(lo, hi)]], None)

    def rule(v: str) -> bool:
        return (lo is None or lo <= len(v)) and (hi is None or len(v) <= hi)

    for v in values:
        assert accepts(cls, v) == rule(v), v
    assert accepts(elems, set(values)) == all(rule(v) for v in values)


PATTERNS = [r"[a-c]+", r"a*b?", r"\d{2,3}", r"(ab|ba)*", r"", r"."]


@given(pattern=st.sampled_from(PATTERNS), values=st.lists(st.text(alphabet="abc12\n", max_size=6), max_size=5))
def test_pattern_on_str(pattern: str, values: list[str]) -> None:
    cls = entity_with(Annotated[str, Pattern(pattern)], "")
    elems = entity_with(tuple[Annotated[str, Pattern(pattern)], ...], None)
    for v in values:
        assert accepts(cls, v) == (re.fullmatch(pattern, v) is not None), v
    assert accepts(elems, tuple(values)) == all(re.fullmatch(pattern, v) for v in values)


@given(allowed=st.lists(st.integers(-3, 3), min_size=1, max_size=4), values=st.lists(st.integers(-4, 4), max_size=5))
def test_one_of_on_ints(allowed: list[int], values: list[int]) -> None:
    cls = entity_with(Annotated[int, OneOf(*allowed)], 0)
    elems = entity_with(frozenset[Annotated[int, OneOf(*allowed)]], None)
    for v in values:
        assert accepts(cls, v) == (v in allowed), v
    assert accepts(elems, frozenset(values)) == all(v in allowed for v in values)


# ---------------------------------------------------------------------------------------------
# Before anything is written: collections and transactions


@pytest.fixture(params=["memory"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@quanta.entity
class Member:
    id: Annotated[int, PrimaryKey(auto=True)]
    name: Annotated[str, Length(min=1, max=20)]
    age: Annotated[int, Range(0, 150)] = 0


async def test_put_of_an_invalid_object_writes_nothing(db: quanta.Database) -> None:
    members = db.collection(Member)
    bad = Member(name="", age=-1)
    with pytest.raises(ValidationError) as caught:
        await members.put(bad)
    assert [v.field for v in caught.value.violations] == ["name", "age"]
    assert bad.id == 0  # no key was assigned
    assert await members.count() == 0
    ok = Member(name="Ann")
    assert await members.put(ok) == 1  # and no auto key was used up


async def test_a_batch_with_one_invalid_object_writes_nothing(db: quanta.Database) -> None:
    members = db.collection(Member)
    batch = [Member(id=i, name=f"m{i}", age=i % 100) for i in range(1, 101)]
    batch[57].age = 200
    with pytest.raises(ValidationError, match=r"Member\[58\]\.age: must be between 0 and 150 \(got 200\)"):
        await members.put_many(batch)
    assert await members.count() == 0
    assert await members.get_many([1, 58, 100]) == [None, None, None]
    batch[57].age = 57
    await members.put_many(batch)
    assert await members.count() == 100


async def test_an_invalid_put_in_a_transaction_leaves_the_transaction_usable(db: quanta.Database) -> None:
    members = db.collection(Member)
    await members.put(Member(id=1, name="Ann"))
    async with db.transaction() as tx:
        c = tx.collection(Member)
        await c.put(Member(id=2, name="Bo"))
        replacement = Member(id=1, name="x" * 21)
        with pytest.raises(ValidationError):
            await c.put(replacement)  # an update that breaks a rule
        assert (await c.get(1)) == Member(id=1, name="Ann")  # the old record is untouched
        await c.put(Member(id=3, name="Cy"))
    assert [m.name for m in await members.query().all()] == ["Ann", "Bo", "Cy"]


async def test_an_invalid_object_inside_run_transaction_rolls_back_everything(db: quanta.Database) -> None:
    members = db.collection(Member)

    async def work(tx: quanta.Transaction) -> None:
        c = tx.collection(Member)
        await c.put(Member(id=1, name="Ann"))
        await c.put(Member(id=2, name=""))

    with pytest.raises(ValidationError):
        await db.run_transaction(work)
    assert await members.count() == 0


# ---------------------------------------------------------------------------------------------
# Found while building this (fixed since in entity.py)


def test_an_index_marker_on_an_element_type_is_a_schema_error() -> None:
    # ``list[Annotated[str, Index()]]`` reads like a multi-entry index but declares none (the
    # right spelling is ``Annotated[list[str], Index(multi=True)]``); constraints in the same
    # place are checked, so the silent ignore is surprising.
    with pytest.raises(SchemaError, match=r"inside the field's type is not applied"):
        entity_with(list[Annotated[str, quanta.Index()]], None)
    with pytest.raises(SchemaError, match=r"Unique\(\) inside"):
        entity_with(dict[str, Annotated[int, quanta.Unique()]], None)
    with pytest.raises(SchemaError, match=r"PrimaryKey"):
        entity_with(Annotated[list[Annotated[int, quanta.PrimaryKey()]], quanta.Length(max=3)] | None, None)
