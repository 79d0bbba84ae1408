"""Entity declarations (quanta/_schema/entity.py) and the record codec (adapter.py).

What is proved here: a decorated class is a keyword-only dataclass whose class-level field
access is a query field; every bad declaration is a ``SchemaError`` naming the class and the
field; every supported type survives encode -> decode with its value and its Python type
(Hypothesis, one property per declared type and one over a class that has them all);
``check`` names the field and the element at fault; malformed records are
``CorruptionError``. Golden bytes pin the record format.

This module uses ``from __future__ import annotations`` on purpose: every annotation below is
a string the decorator resolves (module globals, the declaring function's locals, the class
itself).
"""

from __future__ import annotations

import dataclasses
import linecache
import math
import sys
import threading
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum, IntFlag, StrEnum
from typing import Annotated, Any, ClassVar, NewType
from zoneinfo import ZoneInfo

import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import quanta._schema
from quanta._query.expr import Field
from quanta._schema import EntityInfo, FieldInfo, Index, IndexInfo, PrimaryKey, Unique, entity, entity_info, field
from quanta._schema.adapter import ExtCode, decode_value, encode_value
from quanta.errors import CorruptionError, InvalidTypeError, SchemaError

# ---------------------------------------------------------------------------------------------
# Declarations shared by the tests (module level, so forward references resolve)


class Color(Enum):
    RED = "red"
    GREEN = "green"
    CRIMSON = "red"  # an alias: decodes to RED


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class Perm(IntFlag):
    R = 4
    W = 2
    X = 1


class Mood(StrEnum):
    CALM = "calm"
    GLAD = "glad"


@dataclass(frozen=True)
class Point:
    x: int
    y: float


@dataclass
class Address:
    street: str
    city: str
    zip: str | None = None
    where: Point | None = None


@dataclass(slots=True)
class Slotted:
    a: int
    b: list[str]


@entity
class Customer:
    id: Annotated[int, PrimaryKey()]
    name: str
    vip: bool = False


@entity(indexes=[Index("city", "age")])
class User:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    email: Annotated[str, Unique()]
    name: Annotated[str, Index()]
    city: str
    age: int = 0
    tags: Annotated[list[str], Index(multi=True)] = field(default_factory=list)


@dataclass
class Line:
    sku: str
    qty: int
    price: Decimal


@entity(name="orders", version=3)
class Order:
    id: Annotated[uuid.UUID, PrimaryKey()]
    customer: Customer  # an embedded entity, declared above
    ship_to: Address | None = None
    lines: list[Line] = field(default_factory=list)
    status: Color = Color.GREEN


@entity
class Node:
    id: Annotated[int, PrimaryKey()]
    children: list[Node] = field(default_factory=list)  # a self-reference
    parent_id: int | None = None


UserId = NewType("UserId", int)


def same(a: Any, b: Any) -> bool:
    """Equal values of the very same types, all the way down (NaN equals NaN, -0.0 is not 0.0,
    Decimals compare by their text, datetimes by fields, tzinfo and fold)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, datetime | time):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and a.tzinfo == b.tzinfo
            and (a.tzinfo is None or a.tzname() == b.tzname())
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, set | frozenset):
        return a == b and all(any(same(x, y) for y in b) for x in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def roundtrip(obj: Any) -> Any:
    info = entity_info(type(obj))
    return info.decode(info.encode(obj))


def schema_error(build: Callable[[], object], *words: str) -> str:
    with pytest.raises(SchemaError) as caught:
        build()
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)
    return message


# ---------------------------------------------------------------------------------------------
# The facade


def test_facade_all() -> None:
    assert set(quanta._schema.__all__) >= {
        "entity",
        "field",
        "PrimaryKey",
        "Index",
        "Unique",
        "EntityInfo",
        "FieldInfo",
        "IndexInfo",
    }
    for name in quanta._schema.__all__:
        assert hasattr(quanta._schema, name), name
    public = {
        n
        for n in vars(quanta._schema)
        if not n.startswith("_") and not isinstance(getattr(quanta._schema, n), types.ModuleType)
    }
    assert public <= set(quanta._schema.__all__), public - set(quanta._schema.__all__)


# ---------------------------------------------------------------------------------------------
# What the decorator builds


def test_entity_info_of_the_issue_example() -> None:
    info = User.__quanta_entity__
    assert info is entity_info(User)
    assert isinstance(info, EntityInfo)
    assert (info.cls, info.name, info.primary_key, info.auto, info.version) == (User, "User", "id", True, 1)
    assert [f.name for f in info.fields] == ["id", "email", "name", "city", "age", "tags"]
    assert [f.position for f in info.fields] == list(range(6))
    assert info.indexes == (
        IndexInfo("email", ("email",), unique=True),
        IndexInfo("name", ("name",)),
        IndexInfo("tags", ("tags",), multi=True),
        IndexInfo("city_age", ("city", "age")),
    )
    tags = info.field("tags")
    assert isinstance(tags, FieldInfo)
    assert (tags.annotation, tags.base, tags.optional, tags.key_type) == (list[str], list[str], False, None)
    assert (tags.element_type, tags.element_key_type, tags.has_default) == (str, str, True)
    assert info.field("email").key_type is str and not info.field("email").has_default
    assert info.pk_field.name == "id"


def test_entity_options_and_field_infos() -> None:
    info = entity_info(Order)
    assert (info.name, info.version, info.auto, info.pk_field.key_type) == ("orders", 3, False, uuid.UUID)
    ship_to = info.field("ship_to")
    assert (ship_to.annotation, ship_to.base, ship_to.optional, ship_to.key_type) == (
        Address | None,
        Address,
        True,
        None,
    )
    assert info.field("status").key_type is None  # a plain Enum has no order
    assert info.field("lines").element_type is Line and info.field("lines").element_key_type is None

    @entity
    class Reading:
        at: Annotated[datetime, PrimaryKey()]
        level: Annotated[Level, Index()]
        mood: Annotated[Mood | None, Index()] = None
        sensor: Annotated[str, Index(name="by_sensor")] = ""
        codes: Annotated[frozenset[int], Index(multi=True)] = frozenset()
        raw: Annotated[bytes, "user metadata is ignored"] = b""

    info = entity_info(Reading)
    assert [f.key_type for f in info.fields] == [datetime, Level, Mood, str, None, bytes]
    assert info.field("mood").optional and info.field("mood").base is Mood
    assert [i.name for i in info.indexes] == ["level", "mood", "by_sensor", "codes"]
    assert info.indexes[-1] == IndexInfo("codes", ("codes",), unique=False, multi=True)


def test_field_annotations_lose_their_metadata() -> None:
    @entity
    class Meta:
        id: Annotated[int, PrimaryKey(), "doc"]
        a: list[Annotated[int, "m"]] | None = None
        b: typing.Optional[Annotated[str, "m"]] = None  # noqa: UP045 (the typing.Union spelling)
        c: typing.List[Annotated[int, "m"]] = field(default_factory=list)  # noqa: UP006
        d: tuple[()] = ()

    info = entity_info(Meta)
    assert [f.annotation for f in info.fields] == [int, list[int] | None, str | None, typing.List[int], tuple[()]]  # noqa: UP006
    assert info.field("a").base == list[int] and info.field("b").optional
    assert info.field("d").type_node.kind == "tuple" and not info.field("d").type_node.args
    with pytest.raises(InvalidTypeError, match=r"Meta\.d: expected tuple\[\(\)\], got tuple of length 1"):
        info.check(Meta(id=1, d=(1,)))  # type: ignore[arg-type]


def test_entity_info_of_a_plain_class() -> None:
    with pytest.raises(TypeError, match=r"not a @quanta\.entity class"):
        entity_info(Point)


def test_markers() -> None:
    assert Unique("a", "b") == Index("a", "b", unique=True)
    assert isinstance(Unique(), Index) and Unique().unique
    assert repr(Index("city", "age", name="ca")) == "Index('city', 'age', name='ca')"
    assert repr(Unique(multi=True)) == "Unique(multi=True)"
    assert PrimaryKey(auto=True) == PrimaryKey(True) != PrimaryKey()
    assert len({Index("a"), Index("a"), Unique("a")}) == 2


# ---------------------------------------------------------------------------------------------
# Dataclass behaviour


def test_keyword_only_defaults_repr_eq() -> None:
    u = User(email="a@x.io", name="Ann", city="Oslo")
    assert (u.id, u.age, u.tags) == (0, 0, [])
    assert repr(u) == "User(id=0, email='a@x.io', name='Ann', city='Oslo', age=0, tags=[])"
    assert u == User(email="a@x.io", name="Ann", city="Oslo") != User(email="b@x.io", name="Ann", city="Oslo")
    assert User(email="a", name="n", city="c").tags is not User(email="a", name="n", city="c").tags
    with pytest.raises(TypeError):
        User(1, "a@x.io", "Ann", "Oslo")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        User(email="a@x.io", name="Ann")  # type: ignore[call-arg]
    assert dataclasses.is_dataclass(User)
    assert dataclasses.replace(u, age=5).age == 5
    assert User.__hash__ is None  # mutable records, as dataclasses with eq


def test_auto_key_gets_a_default() -> None:
    @entity
    class A:
        id: Annotated[int, PrimaryKey(auto=True)]  # no default given: 0
        x: int

    @entity
    class B:
        id: Annotated[int | None, PrimaryKey(auto=True)]  # None for an optional key
        x: int

    # (statically the key is required unless declared with "= 0": dataclass_transform sees no default)
    assert A(x=1).id == 0 and A(id=5, x=1).id == 5  # type: ignore[call-arg]
    assert B(x=1).id is None  # type: ignore[call-arg]
    assert entity_info(A).pk_field.has_default and entity_info(B).pk_field.optional


def test_post_init_runs_on_construction_not_on_decode() -> None:
    calls = []

    @entity
    class P:
        id: Annotated[str, PrimaryKey()]

        def __post_init__(self) -> None:
            calls.append(self.id)

    p = P(id="k")
    assert calls == ["k"]
    assert roundtrip(p) == p and calls == ["k"]


def test_class_field_access_is_a_query_field() -> None:
    f = User.age
    assert isinstance(f, Field)
    assert f.name == "age" and f.owner is User
    assert User.age is f  # one per field
    assert isinstance(User.tags, Field) and User.tags.name == "tags"  # default_factory fields too
    u = User(email="a@x.io", name="Ann", city="Oslo", age=3)
    assert u.age == 3 and u.tags == []
    del u.age
    with pytest.raises(AttributeError, match="age"):
        u.age  # noqa: B018

    class Sub(User):  # an undecorated subclass: fields refer to it
        pass

    assert Sub.age.owner is Sub and Sub.age.name == "age"
    assert Sub(email="a", name="b", city="c").age == 0


def test_entity_subclass_and_inherited_fields() -> None:
    @entity
    class Base:
        id: Annotated[int, PrimaryKey()]
        name: str = ""

    @entity(name="Special")
    class Special(Base):
        extra: Annotated[int, Index()] = 0

    info = entity_info(Special)
    assert [f.name for f in info.fields] == ["id", "name", "extra"]
    assert Special.name.owner is Special and Base.name.owner is Base
    s = Special(id=1, name="x", extra=2)
    assert same(roundtrip(s), s)


def test_class_variables_are_not_fields() -> None:
    @entity
    class CV:
        registry: ClassVar[dict[str, int]] = {}
        id: Annotated[int, PrimaryKey()]

    assert [f.name for f in entity_info(CV).fields] == ["id"]
    assert CV.registry == {}


def test_any_values() -> None:
    values = [None, 1, 2**80, "s", b"b", [1, [2]], {"k": {1: "v"}}, {1, 2}, frozenset({"a"}), Decimal("1.5"), Level.LOW]
    for v in values:
        assert decode_value(encode_value(v)) == v
    assert decode_value(encode_value((1, 2))) == [1, 2]  # no declared type: arrays are lists
    assert decode_value(encode_value(Color.RED)) == "red"  # and enums their values
    with pytest.raises(InvalidTypeError, match="cannot be stored"):
        encode_value(object())


def test_field_specifier_options() -> None:
    @entity
    class F:
        id: Annotated[int, PrimaryKey()]
        secret: str = field(default="", repr=False)
        note: str = field(default="n", compare=False)
        seen: int = field(default=0, init=False)

    f = F(id=1, secret="s", note="a")
    assert "secret" not in repr(f)
    assert f == F(id=1, secret="s", note="b")
    f.seen = 4
    assert roundtrip(f).seen == 4  # every field is stored, init or not


# ---------------------------------------------------------------------------------------------
# Bad declarations: SchemaError naming class and field


def test_missing_primary_key() -> None:
    def build() -> None:
        @entity
        class NoKey:
            name: str

    schema_error(build, "NoKey", "no primary key", "PrimaryKey()")


def test_two_primary_keys() -> None:
    def build() -> None:
        @entity
        class TwoKeys:
            a: Annotated[int, PrimaryKey()]
            b: Annotated[str, PrimaryKey()]

    schema_error(build, "TwoKeys.a", "more than one primary key", "a, b")

    def build2() -> None:
        @entity
        class Twice:
            a: Annotated[int, PrimaryKey(), PrimaryKey()]

    schema_error(build2, "Twice.a", "more than one primary key")


@pytest.mark.parametrize("key_type", [str, bool, float, Level, uuid.UUID])
def test_auto_needs_an_int_key(key_type: type) -> None:
    def build() -> None:
        entity(
            type("AutoKey", (), {"__annotations__": {"key": Annotated[key_type, PrimaryKey(auto=True)]}, "key": None})
        )

    schema_error(build, "AutoKey.key", "auto=True", "int key")


@pytest.mark.parametrize(
    ("key_type", "words"),
    [
        (list[int], "cannot be ordered"),
        (dict[str, int], "cannot be ordered"),
        (Decimal, "cannot be ordered"),
        (time, "cannot be ordered"),
        (Color, "cannot be ordered"),
        (Point, "cannot be ordered"),
        (str | None, "cannot be None"),
    ],
)
def test_primary_key_must_be_orderable(key_type: Any, words: str) -> None:
    def build() -> None:
        entity(type("BadKey", (), {"__annotations__": {"pk": Annotated[key_type, PrimaryKey()]}}))

    schema_error(build, "BadKey.pk", words)


@pytest.mark.parametrize("field_type", [dict[str, int], Decimal, Color, Point, list[int], time, timedelta, Any])
def test_index_must_be_orderable(field_type: Any) -> None:
    def build() -> None:
        entity(
            type(
                "BadIndex",
                (),
                {"__annotations__": {"id": Annotated[int, PrimaryKey()], "value": Annotated[field_type, Index()]}},
            )
        )

    schema_error(build, "BadIndex.value", "cannot index", "cannot be ordered")


def test_composite_index_problems() -> None:
    def unknown() -> None:
        @entity(indexes=[Index("city", "agee")])
        class Person:
            id: Annotated[int, PrimaryKey()]
            city: str
            age: int

    schema_error(unknown, "Person.agee", "unknown field", "city, age")

    def unorderable() -> None:
        @entity(indexes=[Unique("city", "prefs")])
        class Person2:
            id: Annotated[int, PrimaryKey()]
            city: str
            prefs: dict[str, str]

    schema_error(unorderable, "Person2.prefs", "cannot index")

    def empty() -> None:
        @entity(indexes=[Index()])
        class Person3:
            id: Annotated[int, PrimaryKey()]

    schema_error(empty, "Person3", "names no fields")

    def twice() -> None:
        @entity(indexes=[Index("a", "a")])
        class Person4:
            id: Annotated[int, PrimaryKey()]
            a: int

    schema_error(twice, "Person4.a", "twice")

    def not_an_index() -> None:
        @entity(indexes=["city"])  # type: ignore[list-item]
        class Person5:
            id: Annotated[int, PrimaryKey()]
            city: str

    schema_error(not_an_index, "Person5", "Index(...)")

    def fields_on_a_field() -> None:
        @entity
        class Person6:
            id: Annotated[int, PrimaryKey()]
            city: Annotated[str, Index("city", "age")]
            age: int

    schema_error(fields_on_a_field, "Person6.city", "indexes=[Index('city', 'age')]")

    def not_names() -> None:
        @entity(indexes=[Index(["city", "age"])])  # type: ignore[arg-type]
        class Person8:
            id: Annotated[int, PrimaryKey()]
            city: str

    schema_error(not_names, "Person8", "field names (str)")

    def on_the_key() -> None:
        @entity
        class Person7:
            id: Annotated[int, PrimaryKey(), Unique()]

    schema_error(on_the_key, "Person7.id", "needs no index")


def test_multi_entry_index_problems() -> None:
    def not_a_collection() -> None:
        @entity
        class Doc:
            id: Annotated[int, PrimaryKey()]
            title: Annotated[str, Index(multi=True)]

    schema_error(not_a_collection, "Doc.title", "multi=True", "collection")

    def unorderable_elements() -> None:
        @entity
        class Doc2:
            id: Annotated[int, PrimaryKey()]
            parts: Annotated[list[dict[str, int]], Index(multi=True)]

    schema_error(unorderable_elements, "Doc2.parts", "multi=True", "cannot be ordered")

    def composite() -> None:
        @entity(indexes=[Index("a", "b", multi=True)])
        class Doc3:
            id: Annotated[int, PrimaryKey()]
            a: list[int]
            b: int

    schema_error(composite, "Doc3.a", "exactly one")

    def optional_elements() -> None:
        @entity
        class Doc4:
            id: Annotated[int, PrimaryKey()]
            a: Annotated[list[int | None], Index(multi=True)]

    schema_error(optional_elements, "Doc4.a", "multi=True")


def test_duplicate_index_names() -> None:
    def build() -> None:
        @entity(indexes=[Index("a", name="a")])
        class Dup:
            id: Annotated[int, PrimaryKey()]
            a: Annotated[int, Index()]

    schema_error(build, "Dup.a", "two indexes are named 'a'", "name=")

    def build2() -> None:
        @entity
        class Dup2:
            id: Annotated[int, PrimaryKey()]
            a: Annotated[int, Index(name="x")]
            b: Annotated[int, Unique(name="x")]

    schema_error(build2, "Dup2.b", "two indexes are named 'x'")


@pytest.mark.parametrize(
    ("field_type", "words"),
    [
        (complex, "unsupported type complex"),
        (int | str, "X | None"),
        (Sequence[int], "concrete list"),
        (dict[tuple[int, int], str], "dict keys"),
        (set[list[int]], "hashable"),
        (set[Address], "hashable"),  # not frozen: unhashable
        (list[complex], "complex"),
        (type(None), "always None"),
        (Callable[[], int], "unsupported type"),
    ],
)
def test_unsupported_field_types(field_type: Any, words: str) -> None:
    def build() -> None:
        entity(type("Odd", (), {"__annotations__": {"id": Annotated[int, PrimaryKey()], "value": field_type}}))

    schema_error(build, "Odd.value", words)


def test_unsupported_types_inside_dataclasses_and_enums() -> None:
    def nested() -> None:
        @dataclass
        class Inner:
            z: complex

        @entity
        class Outer:
            id: Annotated[int, PrimaryKey()]
            inner: list[Inner]

    schema_error(nested, "Outer.inner", "Inner.z", "complex")

    def enum_values() -> None:
        class Bad(Enum):
            A = (1, 2)

        @entity
        class WithEnum:
            id: Annotated[int, PrimaryKey()]
            bad: Bad

    schema_error(enum_values, "WithEnum.bad", "Bad", "member A")


def test_markers_must_be_instances() -> None:
    def build() -> None:
        @entity
        class Cls:
            id: Annotated[int, PrimaryKey]

    schema_error(build, "Cls.id", "PrimaryKey()")


def test_unresolvable_forward_reference() -> None:
    def build() -> None:
        @entity
        class Early:
            id: Annotated[int, PrimaryKey()]
            later: Later | None = None  # noqa: F821 (not defined yet: the point of the test)

    schema_error(build, "Early.later", "Later", "cannot resolve")


def test_other_bad_declarations() -> None:
    def already_dataclass() -> None:
        @entity
        @dataclass
        class D:
            id: Annotated[int, PrimaryKey()]

    schema_error(already_dataclass, "D", "already a dataclass")

    def mutable_default() -> None:
        @entity
        class M:
            id: Annotated[int, PrimaryKey()]
            tags: list[str] = []  # noqa: RUF012

    schema_error(mutable_default, "M", "default_factory")

    schema_error(lambda: entity(version=0)(type("V", (), {})), "V", "version")
    schema_error(lambda: entity(name="")(type("N", (), {})), "N", "name")
    schema_error(lambda: entity(42), "decorates a class")  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------
# Forward references, embedding, recursion


def test_forward_references_and_embedded_entities() -> None:
    order = Order(
        id=uuid.UUID(int=7),
        customer=Customer(id=1, name="Ann"),
        ship_to=Address(street="Main 1", city="Oslo", where=Point(x=1, y=2.5)),
        lines=[Line(sku="a", qty=2, price=Decimal("9.99")), Line(sku="b", qty=1, price=Decimal("0.10"))],
        status=Color.RED,
    )
    back = roundtrip(order)
    assert back == order and same(back, order)
    assert type(back.customer) is Customer and type(back.lines[0]) is Line and type(back.ship_to.where) is Point
    assert back.status is Color.RED
    assert same(
        roundtrip(Order(id=uuid.UUID(int=1), customer=Customer(id=2, name="B"))),
        Order(id=uuid.UUID(int=1), customer=Customer(id=2, name="B")),
    )
    # the embedded entity's own record is unaffected
    assert same(roundtrip(Customer(id=3, name="C", vip=True)), Customer(id=3, name="C", vip=True))


def test_recursive_entity() -> None:
    tree = Node(id=1, children=[Node(id=2, parent_id=1), Node(id=3, parent_id=1, children=[Node(id=4, parent_id=3)])])
    back = roundtrip(tree)
    assert back == tree and type(back.children[1].children[0]) is Node


def test_local_classes_resolve_in_the_declaring_function() -> None:
    @dataclass
    class Tag:
        label: str

    @entity
    class Post:
        id: Annotated[int, PrimaryKey()]
        tags: list[Tag]
        meta: dict[str, Tag | None]

    post = Post(id=1, tags=[Tag("a")], meta={"x": Tag("b"), "y": None})
    assert roundtrip(post) == post


def test_slotted_and_frozen_dataclasses() -> None:
    @entity
    class Holder:
        id: Annotated[int, PrimaryKey()]
        s: Slotted
        points: frozenset[Point]
        pair: tuple[Point, Slotted | None]

    h = Holder(
        id=1, s=Slotted(a=1, b=["x"]), points=frozenset({Point(1, 2.0), Point(3, 4.0)}), pair=(Point(5, 6.0), None)
    )
    back = roundtrip(h)
    assert same(back, h) and type(back.points) is frozenset


# ---------------------------------------------------------------------------------------------
# Round trips of every supported type (Hypothesis)

ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-3), "BRT"), ZoneInfo("Europe/Oslo")]


def strategy(tp: Any, hashable: bool = False) -> st.SearchStrategy[Any]:
    """Values of the declared type ``tp`` (``hashable``: fit for a set or as a dict key)."""
    if typing.get_origin(tp) is Annotated:
        return strategy(typing.get_args(tp)[0], hashable)
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if isinstance(tp, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy(inner, hashable)
    if isinstance(tp, NewType):
        return strategy(tp.__supertype__, hashable)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        int: st.integers() | st.integers(-(2**70), 2**70),
        float: st.floats(allow_nan=not hashable),
        str: st.text(max_size=8),
        bytes: st.binary(max_size=8),
        bool: st.booleans(),
        datetime: st.datetimes(timezones=st.none() | st.sampled_from(ZONES)),
        date: st.dates(),
        time: st.times(timezones=st.none() | st.sampled_from(ZONES)),
        timedelta: st.timedeltas(),
        Decimal: st.decimals(allow_nan=not hashable, places=None),
        uuid.UUID: st.uuids(),
        Any: st.none() | st.integers() | st.text(max_size=4) | st.lists(st.integers(), max_size=3),
    }
    if tp is Any and hashable:
        return st.none() | st.integers() | st.text(max_size=4)
    if tp in simple:
        return simple[tp]
    if tp in (list, tuple, dict):  # bare: elements of any type
        return strategy({list: list[Any], tuple: tuple[Any, ...], dict: dict[Any, Any]}[tp], hashable)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return st.builds(tp, **{f.name: strategy(hints[f.name], hashable) for f in dataclasses.fields(tp) if f.init})
    if origin is list:
        return st.lists(strategy(args[0]), max_size=4)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy(args[0], hashable), max_size=4).map(tuple)
        return st.tuples(*(strategy(a, hashable) for a in args))
    if origin is set:
        return st.sets(strategy(args[0], True), max_size=4)
    if origin is frozenset:
        return st.frozensets(strategy(args[0], True), max_size=4)
    if origin is dict:
        return st.dictionaries(strategy(args[0], True), strategy(args[1]), max_size=4)
    raise AssertionError(tp)


TYPES: list[Any] = [
    int,
    float,
    str,
    bytes,
    bool,
    datetime,
    date,
    time,
    timedelta,
    Decimal,
    uuid.UUID,
    Color,
    Level,
    Perm,
    Mood,
    UserId,
    Any,
    int | None,
    list[int],
    list[float | None],
    list[list[str]],
    tuple[int, ...],
    tuple[int, str, Color],
    tuple[()],
    set[str],
    frozenset[datetime],
    set[tuple[Level, str]],
    set[frozenset[int]],
    dict[str, int],
    dict[int, list[Decimal]],
    dict[Color, tuple[int, ...]],
    dict[str, Any],
    Point,
    Address | None,
    list[Address],
    set[Point],
    Customer,
    list[Slotted],
    Annotated[list[Annotated[str, "x"]], "y"],
    tuple[Color, ...],
    tuple[Point, ...],
    list[Perm],
    frozenset[Mood],
    dict[Level, Color | None],
    list,
    tuple,
    dict,
]


@pytest.mark.parametrize("tp", TYPES, ids=[repr(t).replace("typing.", "") for t in TYPES])
def test_every_type_round_trips(tp: Any) -> None:
    cls = entity(type("Holder", (), {"__annotations__": {"id": Annotated[int, PrimaryKey()], "value": tp}}))
    info = entity_info(cls)

    @settings(max_examples=40)
    @given(strategy(tp))
    def prop(value: Any) -> None:
        obj = cls(id=1, value=value)
        info.check(obj)  # valid values pass, unchanged
        assert same(obj.value, value)
        data = info.encode(obj)
        back = info.decode(data)
        assert same(back, obj), (value, back.value)
        assert info.encode(back) == data

    prop()


@entity
class AllTypes:
    id: Annotated[uuid.UUID, PrimaryKey()]
    i: int
    f: float
    s: str
    b: bytes
    flag: bool
    dt: datetime
    d: date
    t: time
    td: timedelta
    dec: Decimal
    color: Color
    level: Level
    perm: Perm
    mood: Mood | None
    maybe: int | None
    ints: list[int]
    pair: tuple[str, float]
    ids: set[uuid.UUID]
    frozen: frozenset[str]
    by_name: dict[str, list[Point]]
    anything: Any
    address: Address | None
    customer: Customer


EDGY = AllTypes(
    id=uuid.UUID(int=0),
    i=2**100,
    f=-0.0,
    s="lone \udc80 surrogate",
    b=b"\x00\xff",
    flag=True,
    dt=datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
    d=date.max,
    t=time(23, 59, 59, 999999, fold=1),
    td=timedelta(days=-999999999),
    dec=Decimal("-0E+7"),
    color=Color.CRIMSON,
    level=Level.HIGH,
    perm=Perm.R | Perm.W,
    mood=None,
    maybe=-(2**63) - 1,
    ints=[2**64, -1],
    pair=("\udcff", math.inf),
    ids={uuid.UUID(int=1), uuid.UUID(int=2)},
    frozen=frozenset(),
    by_name={"": [Point(-1, math.nan)]},
    anything={"k": [1, "two", None]},
    address=Address(street="s", city="c", zip=None, where=None),
    customer=Customer(id=-5, name="x"),
)


@settings(max_examples=150)
@given(strategy(AllTypes))
@example(EDGY)
def test_an_entity_with_every_type_round_trips(obj: AllTypes) -> None:
    info = entity_info(AllTypes)
    info.check(obj)
    data = info.encode(obj)
    back = info.decode(data)
    assert same(back, obj)
    assert type(back) is AllTypes
    assert info.encode(back) == data


def test_values_that_need_care() -> None:
    @entity
    class V:
        id: Annotated[int, PrimaryKey()]
        dt: datetime
        t: time
        dec: Decimal
        f: float

    oslo = ZoneInfo("Europe/Oslo")
    cases = [
        V(
            id=1,
            dt=datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=oslo),
            t=time(1, tzinfo=oslo),
            dec=Decimal("sNaN"),
            f=math.nan,
        ),
        V(
            id=2,
            dt=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1), "CET")),
            t=time(fold=1),
            dec=Decimal("-Infinity"),
            f=-math.inf,
        ),
        V(
            id=3,
            dt=datetime(1, 1, 1),
            t=time(12, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
            dec=Decimal("1.000"),
            f=5e-324,
        ),
    ]
    for v in cases:
        back = roundtrip(v)
        assert same(back, v), (v, back)
    back = roundtrip(cases[0])
    assert back.dt.tzinfo is oslo and back.dt.utcoffset() == timedelta(hours=1)  # the second 02:30
    assert roundtrip(cases[1]).dt.tzname() == "CET"
    assert roundtrip(V(id=4, dt=datetime(2024, 1, 1, tzinfo=UTC), t=time(), dec=Decimal(0), f=0.0)).dt.tzinfo is UTC


def test_flags_aliases_and_str_enums() -> None:
    @entity
    class E:
        id: Annotated[int, PrimaryKey()]
        perm: Perm
        color: Color
        mood: Mood

    back = roundtrip(E(id=1, perm=Perm.R | Perm.X, color=Color.CRIMSON, mood=Mood.GLAD))
    assert back.perm == Perm.R | Perm.X and type(back.perm) is Perm
    assert back.color is Color.RED and back.mood is Mood.GLAD


def test_set_encoding_is_deterministic() -> None:
    @entity
    class S:
        id: Annotated[int, PrimaryKey()]
        words: set[str]

    info = entity_info(S)
    words = [f"w{i}" for i in range(50)]
    a = S(id=1, words=set(words))
    b = S(id=1, words=set(reversed(words)))
    assert info.encode(a) == info.encode(b)


def test_encoding_from_many_threads() -> None:
    """Each thread packs with its own packer: the ``default`` hook (datetimes, sets) runs
    Python code mid-pack, where a shared packer would interleave two records."""
    info = entity_info(AllTypes)
    objs = [
        dataclasses.replace(EDGY, i=i, s=f"s{i}" * i, pair=("p", i), ids={uuid.UUID(int=n) for n in range(i)})
        for i in range(8)
    ]
    expected = [info.encode(o) for o in objs]
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            for _ in range(300):
                if info.encode(objs[i]) != expected[i]:
                    errors.append(f"thread {i}: wrong bytes")
                    return
        except Exception as exc:
            errors.append(f"thread {i}: {exc!r}")

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(objs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []


def test_generated_source_is_shown_in_tracebacks() -> None:
    code = entity_info(User).decode.__code__
    source = "".join(linecache.getlines(code.co_filename))
    assert "def decode(data):" in source and "o.email = " in source


# ---------------------------------------------------------------------------------------------
# The format


def test_record_golden_bytes() -> None:
    u = User(id=7, email="a@x.io", name="A", city="Oslo", age=30, tags=["x"])
    data = entity_info(User).encode(u)
    assert data.hex(" ") == "97 01 07 a6 61 40 78 2e 69 6f a1 41 a4 4f 73 6c 6f 1e 91 a1 78"
    assert msgpack.unpackb(data) == [1, 7, "a@x.io", "A", "Oslo", 30, ["x"]]
    # version first: Order declares version 3
    order = Order(id=uuid.UUID(int=1), customer=Customer(id=2, name="B"))
    raw = msgpack.unpackb(entity_info(Order).encode(order), ext_hook=lambda code, data: (code, data))
    assert raw == [3, (9, uuid.UUID(int=1).bytes), [2, "B", False], None, [], "green"]


@pytest.mark.parametrize(
    ("value", "code", "payload"),
    [
        (2**64, ExtCode.BIGINT, "01 00 00 00 00 00 00 00 00"),
        (-(2**63) - 1, ExtCode.BIGINT, "ff 7f ff ff ff ff ff ff ff"),
        (datetime(2024, 1, 2, 3, 4, 5, 6), ExtCode.DATETIME, "07 e8 01 02 03 04 05 00 00 00 06"),
        (
            datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=2))),
            ExtCode.DATETIME_TZ,
            # wall clock (11 bytes), fold, offset +2 h in microseconds, zone kind 0 (fixed)
            "07 e8 01 02 00 00 00 00 00 00 00  00  00 00 00 01 ad 27 48 00  00",
        ),
        (date(2024, 1, 2), ExtCode.DATE, "07 e8 01 02"),
        (time(13, 14, 15, 16), ExtCode.TIME, "0d 0e 0f 00 00 00 10"),
        (timedelta(days=-1, seconds=5), ExtCode.TIMEDELTA, "ff ff ff ff 00 00 00 05 00 00 00 00"),
        (Decimal("-1.50"), ExtCode.DECIMAL, "2d 31 2e 35 30"),
        (uuid.UUID(int=255), ExtCode.UUID, "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff"),
        ({3, 1, 2}, ExtCode.SET, "93 01 02 03"),
        (frozenset({"b"}), ExtCode.FROZENSET, "91 a1 62"),
    ],
)
def test_extension_golden_bytes(value: Any, code: int, payload: str) -> None:
    data = encode_value(value)
    ext = msgpack.unpackb(data)
    assert isinstance(ext, msgpack.ExtType)
    assert (ext.code, ext.data.hex(" ")) == (code, " ".join(payload.split()))
    assert same(decode_value(data), value)


def test_zoneinfo_payload_carries_the_key() -> None:
    ext = msgpack.unpackb(encode_value(datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("Europe/Oslo"))))
    assert ext.code == ExtCode.DATETIME_TZ and ext.data.endswith(b"\x01Europe/Oslo")


# ---------------------------------------------------------------------------------------------
# check(): type errors name the field


def test_check_messages() -> None:
    check = entity_info(User).check
    good = dict(email="a@x.io", name="Ann", city="Oslo")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"age": "30"}, "User.age: expected int, got str"),
        ({"age": True}, "User.age: expected int, got bool"),
        ({"age": 1.0}, "User.age: expected int, got float"),
        ({"email": b"a"}, "User.email: expected str, got bytes"),
        ({"tags": ["a", 2]}, "User.tags[1]: expected str, got int"),
        ({"tags": ("a",)}, "User.tags: expected list[str], got tuple"),
        ({"id": None}, "User.id: expected int, got NoneType"),
    ]
    for changes, message in cases:
        with pytest.raises(InvalidTypeError) as caught:
            check(User(**{**good, **changes}))
        assert str(caught.value) == message
    with pytest.raises(InvalidTypeError, match="User: expected a User instance, got Customer"):
        check(Customer(id=1, name="x"))
    # encode does not validate (check does, before any write), but when msgpack refuses a
    # value, the error names the field
    with pytest.raises(InvalidTypeError, match=r"User\.age: expected int, got object"):
        entity_info(User).encode(User(**good, age=object()))  # type: ignore[arg-type]


def test_check_nested_and_collections() -> None:
    @entity
    class C:
        id: Annotated[int, PrimaryKey()]
        when: date | None = None
        address: Address | None = None
        scores: dict[str, float] = field(default_factory=dict)
        pairs: list[tuple[int, str]] = field(default_factory=list)
        ids: set[int] = field(default_factory=set)
        color: Color = Color.RED
        anything: Any = None

    check = entity_info(C).check
    bad: list[tuple[dict[str, Any], str]] = [
        ({"when": datetime(2024, 1, 1)}, "C.when: expected date | None, got datetime"),
        ({"address": Address(street="s", city=5)}, "C.address.city: expected str, got int"),  # type: ignore[arg-type]
        ({"address": Address(street="s", city="c", where=Point(1, "y"))}, "C.address.where.y: expected float, got str"),  # type: ignore[arg-type]
        ({"address": {"street": "s"}}, "C.address: expected Address | None, got dict"),
        ({"scores": {"a": "b"}}, "C.scores['a']: expected float, got str"),
        ({"scores": {1: 1.0}}, "C.scores key: expected str, got int"),
        ({"pairs": [(1, "a"), (2, 3)]}, "C.pairs[1][1]: expected str, got int"),
        ({"pairs": [(1, "a", 3)]}, "C.pairs[0]: expected tuple[int, str], got tuple of length 3"),
        ({"ids": frozenset({1})}, "C.ids: expected set[int], got frozenset"),
        ({"ids": {1, "2"}}, "C.ids element: expected int, got str"),
        ({"color": "red"}, "C.color: expected Color, got str"),
    ]
    for changes, message in bad:
        with pytest.raises(InvalidTypeError) as caught:
            check(C(id=1, **changes))
        assert str(caught.value) == message
    with pytest.raises(InvalidTypeError, match=r"C\.anything: a value of type object cannot be stored exactly"):
        check(C(id=1, anything=object()))  # Any holds only what reads back as itself
    with pytest.raises(InvalidTypeError, match="cannot be stored"):
        entity_info(C).encode(C(id=1, anything=object()))


def test_check_converts_ints_to_floats() -> None:
    @entity
    class M:
        id: Annotated[int, PrimaryKey()]
        x: float
        xs: list[float]
        maybe: float | None = None
        point: Point | None = None
        by_key: dict[str, float] = field(default_factory=dict)

    m = M(id=1, x=3, xs=[1.5, 2, 3], maybe=4, point=Point(1, 2), by_key={"a": 1.0, "b": 2})
    original_xs = m.xs
    entity_info(M).check(m)
    assert same(m, M(id=1, x=3.0, xs=[1.5, 2.0, 3.0], maybe=4.0, point=Point(1, 2.0), by_key={"a": 1.0, "b": 2.0}))
    assert original_xs == [1.5, 2, 3]  # the caller's list is not mutated: a converted copy is stored
    with pytest.raises(InvalidTypeError, match=r"M.xs\[0\]: expected float, got bool"):
        entity_info(M).check(M(id=1, x=1.0, xs=[True]))


def test_check_accepts_subclasses_and_enum_ints() -> None:
    class MyStr(str):
        pass

    @entity
    class K:
        id: Annotated[int, PrimaryKey()]
        n: int
        s: str

    k = K(id=1, n=Level.HIGH, s=MyStr("x"))
    entity_info(K).check(k)
    back = roundtrip(k)
    assert back.n == 2 and back.s == "x"


# ---------------------------------------------------------------------------------------------
# Malformed records


def test_decode_errors() -> None:
    info = entity_info(User)
    good = info.encode(User(email="a", name="b", city="c"))
    for data in [
        b"",
        b"\xc1",
        good[:-1],
        good + b"\x00",
        msgpack.packb([1, 2]),
        msgpack.packb({"a": 1}),
        b"\xd4\x63\x00",
    ]:
        with pytest.raises(CorruptionError, match="User record"):
            info.decode(data)
    with pytest.raises(CorruptionError):
        info.decode(msgpack.packb([1, 0, "a", "b", "c", 0, msgpack.ExtType(99, b"")]))
    with pytest.raises(CorruptionError):
        entity_info(Order).decode(msgpack.packb([3, msgpack.ExtType(9, b"short"), [1, "a", False], None, [], "green"]))
    with pytest.raises(CorruptionError):
        entity_info(Order).decode(msgpack.packb([3, None, [1, "a", False], None, [], "purple"]))
    with pytest.raises(SchemaError, match="version 2 but the class declares version 1"):
        info.decode(msgpack.packb([2, 0, "a", "b", "c", 0, [], "extra"]))
    with pytest.raises(CorruptionError):
        decode_value(b"\xc1")
    wall = bytes.fromhex("07e8010200000000000000")
    with pytest.raises(CorruptionError):  # unknown zone kind
        decode_value(msgpack.packb(msgpack.ExtType(3, wall + bytes.fromhex("00 0000000000000000 07"))))
    with pytest.raises(CorruptionError):  # naive datetime with a bad trailer
        decode_value(msgpack.packb(msgpack.ExtType(2, wall + b"\x02")))


def test_a_zone_missing_from_the_tz_database_keeps_the_instant() -> None:
    wall = bytes.fromhex("07e8010200000000000000")
    offset = (2 * 3600 * 10**6).to_bytes(8, "big")
    value = decode_value(msgpack.packb(msgpack.ExtType(3, wall + b"\x00" + offset + b"\x01No/Such_Zone")))
    assert value == datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    assert value.utcoffset() == timedelta(hours=2)
