"""The order-preserving key codec (quanta/_codec/keys.py).

The promises, each proved below: memcmp order of the encodings is value order (per type, across
types by tag, and for tuples position by position); equal encodings exactly for equal values;
decoding is the exact inverse and accepts nothing but canonical encodings; ``encode_tuple``
prefixes are byte prefixes and ``prefix_range`` selects exactly the tuples that extend a prefix;
bad input of any kind is a clear error from ``quanta.errors``. Golden bytes pin the format.
"""

from __future__ import annotations

import enum
import math
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import quanta._codec
from quanta._codec import (
    MAX_NESTING,
    KeyFormat,
    KeyTag,
    KeyValue,
    decode_key,
    decode_tuple,
    encode_key,
    encode_keys,
    encode_tuple,
    prefix_end,
    prefix_range,
    successor,
)
from quanta._codec import keys as keysmod
from quanta.errors import CorruptionError, InvalidArgumentError, InvalidTypeError

# ---------------------------------------------------------------------------------------------
# Strategies. Each kind has a wide strategy (every value of the type) and a narrow one (a few
# values, so that draws often tie or share prefixes, which is where order bugs live).

INT_EDGES = sorted(
    {s * (2 ** (8 * k) + d) for k in range(12) for d in (-1, 0, 1) for s in (1, -1)}
    | {2**1000, -(2**1000), 2**1000 - 1, -(2**1000) + 1, 10**400, -(10**400)}
)
FLOAT_EDGES = [0.0, -0.0, math.inf, -math.inf, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 1.0]
FIXED_OFFSETS = st.one_of(
    st.just(UTC),
    st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
    ),
)
CHUNKS = [b"\x00", b"\xff", b"\x00\xff", b"\x00\x00", b"a", b"\x01"]

WIDE: dict[str, st.SearchStrategy[Any]] = {
    "none": st.none(),
    "bool": st.booleans(),
    "int": st.one_of(st.integers(), st.integers(-(2**1100), 2**1100), st.sampled_from(INT_EDGES)),
    "float": st.one_of(st.floats(allow_nan=False), st.sampled_from(FLOAT_EDGES)),
    "str": st.one_of(st.text(st.characters(exclude_categories=())), st.text("a\x00\xff\u0100\U0001f600\ud800")),
    "bytes": st.one_of(st.binary(), st.lists(st.sampled_from(CHUNKS)).map(b"".join)),
    "date": st.dates(),
    "datetime": st.datetimes(),
    "datetime_utc": st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=FIXED_OFFSETS
    ),
    "uuid": st.one_of(st.uuids(), st.integers(0, 2**128 - 1).map(lambda i: uuid.UUID(int=i))),
}
NARROW: dict[str, st.SearchStrategy[Any]] = {
    "none": st.none(),
    "bool": st.booleans(),
    "int": st.one_of(st.integers(-3, 3), st.sampled_from(INT_EDGES)),
    "float": st.sampled_from([*FLOAT_EDGES, -1.0, 0.5]),
    "str": st.text("a\x00\xff\U0001f600", max_size=3),
    "bytes": st.lists(st.sampled_from(CHUNKS), max_size=3).map(b"".join),
    "date": st.sampled_from([date(1, 1, 1), date(2024, 2, 29), date(9999, 12, 31)]),
    "datetime": st.sampled_from([datetime(1, 1, 1), datetime(2024, 2, 29, 12), datetime.max]),
    "datetime_utc": st.sampled_from(
        [datetime(2024, 1, 1, 12, tzinfo=UTC), datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))]
    ),
    "uuid": st.integers(0, 3).map(lambda i: uuid.UUID(int=i)),
}
KINDS = sorted(WIDE)
# Python raises on None < None; every other kind is totally ordered within itself.
ORDERED_KINDS = [k for k in KINDS if k != "none"]


def either(kind: str) -> st.SearchStrategy[Any]:
    return st.one_of(WIDE[kind], NARROW[kind])


SCALARS = st.one_of(*(either(k) for k in KINDS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=10)


def oracle(v: Any) -> tuple[Any, ...]:
    """The documented order as a Python sort key: type rank first (the tag order), then the
    value; -0.0 just below 0.0; aware datetimes by instant (which is how Python compares them)."""
    t = type(v)
    if v is None:
        return (0,)
    if t is bool:
        return (1, v)
    if t is int:
        return (2, v)
    if t is float:
        return (3, v, math.copysign(1.0, v))
    if t is str:
        return (4, v)
    if t is bytes:
        return (5, v)
    if t is date:
        return (6, v)
    if t is datetime:
        return (7, v) if v.utcoffset() is None else (8, v)
    if t is uuid.UUID:
        return (9, v)
    assert t is tuple
    return (10, tuple(oracle(x) for x in v))


def same(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same value of the same type (floats down to the sign of zero)."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


def round_tripped(v: Any) -> Any:
    """What decoding ``v``'s encoding must give: ``v``, with aware datetimes in UTC."""
    if type(v) is tuple:
        return tuple(round_tripped(x) for x in v)
    if type(v) is datetime and v.utcoffset() is not None:
        return v.astimezone(UTC)
    return v


def check_order(a: Any, b: Any, ka: bytes, kb: bytes) -> None:
    assert (ka < kb) == (oracle(a) < oracle(b)), (a, b, ka.hex(" "), kb.hex(" "))
    assert (ka == kb) == (oracle(a) == oracle(b)), (a, b, ka.hex(" "), kb.hex(" "))


# ---------------------------------------------------------------------------------------------
# Order and equality


@pytest.mark.parametrize("kind", ORDERED_KINDS)
@settings(max_examples=100)
@given(data=st.data())
def test_same_type_order_is_python_order(kind: str, data: st.DataObject) -> None:
    a = data.draw(either(kind), label="a")
    b = data.draw(either(kind), label="b")
    ka, kb = encode_key(a), encode_key(b)
    if kind == "float" and a == b == 0.0:  # the one documented exception: -0.0 just below 0.0
        assert (ka < kb) == (math.copysign(1, a) < math.copysign(1, b))
        assert (ka == kb) == (math.copysign(1, a) == math.copysign(1, b))
        return
    assert (ka < kb) == (a < b), (a, b, ka.hex(" "), kb.hex(" "))
    assert (ka == kb) == (a == b), (a, b, ka.hex(" "), kb.hex(" "))


@settings(max_examples=250)
@given(VALUES, VALUES)
def test_any_two_values_order_by_tag_then_value(a: Any, b: Any) -> None:
    check_order(a, b, encode_key(a), encode_key(b))


@settings(max_examples=150)
@given(st.lists(VALUES, max_size=4), st.lists(VALUES, max_size=4))
def test_encode_tuple_orders_like_the_tuple(a: list[Any], b: list[Any]) -> None:
    check_order(tuple(a), tuple(b), encode_tuple(a), encode_tuple(b))


@st.composite
def typed_tuple_pair(draw: st.DrawFn) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Two tuples that agree on the type of each position (as an index's columns do), of any
    lengths up to the schema's, with values that often tie."""
    kinds = draw(st.lists(st.sampled_from(ORDERED_KINDS), max_size=4))

    def column(kind: str) -> st.SearchStrategy[Any]:
        s = st.one_of(NARROW[kind], WIDE[kind])
        return s.map(lambda f: f + 0.0) if kind == "float" else s  # -0.0 -> 0.0: Python's tie

    def row() -> tuple[Any, ...]:
        n = draw(st.integers(0, len(kinds)))
        return tuple(draw(column(k)) for k in kinds[:n])

    return row(), row()


@settings(max_examples=400)
@given(typed_tuple_pair())
def test_typed_tuples_order_and_prefixes(pair: tuple[tuple[Any, ...], tuple[Any, ...]]) -> None:
    a, b = pair
    ka, kb = encode_tuple(a), encode_tuple(b)
    assert (ka < kb) == (a < b), (a, b)
    assert (ka == kb) == (a == b), (a, b)
    assert (encode_key(a) < encode_key(b)) == (a < b)
    # Byte prefix <=> tuple prefix, and prefix_range selects exactly the extensions of a.
    extends = b[: len(a)] == a
    assert kb.startswith(ka) == extends, (a, b)
    start, stop = prefix_range(ka)
    assert (start <= kb and (stop is None or kb < stop)) == extends, (a, b)


@settings(max_examples=100)
@given(st.lists(VALUES, max_size=4), st.lists(VALUES, max_size=3))
def test_encode_tuple_of_a_prefix_is_a_byte_prefix(p: list[Any], rest: list[Any]) -> None:
    key = encode_tuple(p + rest)
    assert key.startswith(encode_tuple(p))
    start, stop = prefix_range(encode_tuple(p))
    assert start <= key
    assert stop is None or key < stop
    assert stop is None if not p else stop is not None
    # Every key of a tuple that does not start with p is outside the range (after it or before).
    for i, v in enumerate(p):
        other = [*p[:i], (v, "x"), *p[i + 1 :]]  # a different value (a tuple) at position i
        k = encode_tuple(other)
        assert not (start <= k and (stop is None or k < stop))


def test_tricky_strings_and_bytes_sort_like_python() -> None:
    strings = ["", "\x00", "\x00\x00", "\x00\x01", "\x00\xff", "\x01", "a", "a\x00", "a\x00\x00", "a\x00b", "ab"]
    strings += ["\x7f", "\x80", "\xff", "\u07ff", "\u0800", "\ud7ff", "\ud800", "\udfff", "\ue000", "\uffff"]
    strings += ["\U00010000", "\U0010ffff"]
    assert sorted(strings, key=encode_key) == sorted(strings)
    blobs = [b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\x00\xff\xff", b"\x01", b"\xff", b"\xff\x00", b"\xff\xff"]
    assert sorted(blobs, key=encode_key) == sorted(blobs)
    # As the first column of a composite key, too: ("a", anything) < ("a\x00", ...).
    rows = [(s, n) for s in strings for n in (-1, 0, 1)]
    assert sorted(rows, key=encode_tuple) == sorted(rows)


def test_huge_ints_sort_and_round_trip() -> None:
    values = [*INT_EDGES, 2**5000 + 7, -(2**5000) - 7, 2**64 * 3, 2**72 - 1]
    assert sorted(values, key=encode_key) == sorted(values)
    for v in values:
        assert decode_key(encode_key(v)) == v
        assert decode_tuple(encode_tuple((v, "tail"))) == (v, "tail")


def test_zero_and_negative_zero() -> None:
    neg, pos = encode_key(-0.0), encode_key(0.0)
    assert neg < pos and successor(neg) <= pos  # adjacent: nothing encodes between them
    assert encode_key(-5e-324) < neg
    assert neg.hex() == "187fffffffffffffff" and pos.hex() == "188000000000000000"
    assert math.copysign(1.0, decode_key(neg)) == -1.0  # type: ignore[arg-type]


def test_cross_type_order_is_the_tag_order() -> None:
    one_of_each: list[KeyValue] = [
        None,
        False,
        True,
        -(2**100),
        10**30,
        -math.inf,
        math.inf,
        "",
        "\U0010ffff",
        b"",
        b"\xff",
        date.min,
        date.max,
        datetime.min,
        datetime.max,
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
        uuid.UUID(int=0),
        uuid.UUID(int=2**128 - 1),
        (),
        ((),),
    ]
    keys = [encode_key(v) for v in one_of_each]
    assert keys == sorted(keys)
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)


def test_bool_int_float_and_naive_aware_never_collide() -> None:
    assert len({encode_key(v) for v in (True, 1, 1.0)}) == 3
    assert len({encode_key(v) for v in (False, 0, 0.0)}) == 3
    naive = datetime(2024, 1, 1, 12)
    assert encode_key(naive) != encode_key(naive.replace(tzinfo=UTC))
    assert encode_key(date(2024, 1, 1)) != encode_key(datetime(2024, 1, 1))


def test_aware_datetimes_are_instants() -> None:
    paris = datetime(2024, 6, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    utc = datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert encode_key(paris) == encode_key(utc)
    back = decode_key(encode_key(paris))
    assert back == paris and isinstance(back, datetime) and back.tzinfo is UTC
    odd = timezone(timedelta(hours=-3, minutes=-7, seconds=-5, microseconds=-11))
    v = datetime(2024, 6, 1, 12, 0, 0, 1, tzinfo=odd)
    assert decode_key(encode_key(v)) == v
    # fold is not stored; naive datetimes differing only in fold are equal anyway.
    assert encode_key(datetime(2024, 11, 3, 1, 30, fold=1)) == encode_key(datetime(2024, 11, 3, 1, 30))


# ---------------------------------------------------------------------------------------------
# Round trips and the two forms


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=100)
@given(data=st.data())
def test_round_trip_every_type(kind: str, data: st.DataObject) -> None:
    v = data.draw(either(kind))
    key = encode_key(v)
    assert same(decode_key(key), round_tripped(v))
    assert decode_key(bytearray(key)) == decode_key(memoryview(key)) == decode_key(key)


@settings(max_examples=150)
@given(VALUES)
def test_round_trip_any_value(v: Any) -> None:
    key = encode_key(v)
    assert same(decode_key(key), round_tripped(v))
    assert encode_tuple((v,)) == key
    if type(v) is tuple:
        assert key == b"\x50" + encode_tuple(v) + b"\x00"
        assert same(decode_tuple(encode_tuple(v)), round_tripped(v))
        assert same(decode_tuple(encode_tuple(list(v))), round_tripped(v))


def test_empty_tuple_forms() -> None:
    assert encode_tuple(()) == b"" and decode_tuple(b"") == ()
    assert encode_key(()) == b"\x50\x00" and decode_key(b"\x50\x00") == ()
    assert prefix_range(b"") == (b"", None)


def test_subclasses_encode_as_their_base_type() -> None:
    class Color(enum.IntEnum):
        RED = 7

    class Mode(enum.StrEnum):
        FAST = "fast"

    class Loud(str):
        def __str__(self) -> str:
            return "LOUD"

        def encode(self, *args: Any, **kwargs: Any) -> bytes:
            return b"LOUD"

    class Point(NamedTuple):
        x: int
        y: str

    class Stamp(datetime):
        pass

    class MyUUID(uuid.UUID):
        pass

    class Blob(bytes):
        pass

    class Real(float):
        pass

    cases: list[tuple[Any, KeyValue]] = [
        (Color.RED, 7),
        (Mode.FAST, "fast"),
        (Loud("quiet"), "quiet"),
        (Point(1, "a"), (1, "a")),
        (Stamp(2024, 1, 2, 3), datetime(2024, 1, 2, 3)),
        (MyUUID(int=5), uuid.UUID(int=5)),
        (Blob(b"\x00x"), b"\x00x"),
        (Real(2.5), 2.5),
    ]
    for sub, base in cases:
        assert encode_key(sub) == encode_key(base), sub
        assert encode_tuple([sub]) == encode_tuple([base])
        back = decode_key(encode_key(sub))
        assert same(back, base), (back, base)


def test_uuid_decodes_to_a_real_uuid() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    back = decode_key(encode_key(u))
    assert isinstance(back, uuid.UUID) and back == u and hash(back) == hash(u)
    assert back.is_safe is uuid.SafeUUID.unknown and str(back) == str(u) and back.version == u.version
    assert keysmod._new_uuid_slow(u.int) == u


def test_nesting_limit() -> None:
    def nest(depth: int) -> Any:
        v: Any = 1
        for _ in range(depth):
            v = (v,)
        return v

    deepest = nest(MAX_NESTING)
    assert decode_key(encode_key(deepest)) == deepest
    assert decode_tuple(encode_tuple([deepest])) == (deepest,)
    with pytest.raises(InvalidArgumentError, match="nest"):
        encode_key(nest(MAX_NESTING + 1))
    with pytest.raises(InvalidArgumentError, match="nest"):
        encode_tuple([nest(MAX_NESTING + 1)])
    too_deep = b"\x50" * (MAX_NESTING + 1) + b"\x00" * (MAX_NESTING + 1)
    with pytest.raises(CorruptionError, match="nested"):
        decode_key(too_deep)
    with pytest.raises(CorruptionError, match="nested"):
        decode_key(b"\x50" * 100_000)  # no RecursionError, no hang


# ---------------------------------------------------------------------------------------------
# Golden bytes: the format cannot drift silently.

GOLDEN: list[tuple[KeyValue, str]] = [
    (None, "04"),
    (False, "08"),
    (True, "09"),
    (0, "10 80"),
    (1, "10 81 01"),
    (-1, "10 7f fe"),
    (255, "10 81 ff"),
    (256, "10 82 01 00"),
    (-256, "10 7e fe ff"),
    (2**64 - 1, "10 88 ff ff ff ff ff ff ff ff"),
    (-(2**64) + 1, "10 78 00 00 00 00 00 00 00 00"),
    (2**64, "10 ff 00 00 00 00 00 00 00 09 01 00 00 00 00 00 00 00 00"),
    (-(2**64), "10 00 ff ff ff ff ff ff ff f6 fe ff ff ff ff ff ff ff ff"),
    (1.0, "18 bf f0 00 00 00 00 00 00"),
    (-1.0, "18 40 0f ff ff ff ff ff ff"),
    (-0.0, "18 7f ff ff ff ff ff ff ff"),
    (math.inf, "18 ff f0 00 00 00 00 00 00"),
    ("", "20 00 00"),
    ("a\x00b", "20 61 00 ff 62 00 00"),
    ("é", "20 c3 a9 00 00"),
    (b"a\x00", "28 61 00 ff 00 00"),
    (b"\xff", "28 ff 00 00"),
    (date(2024, 1, 2), "30 00 0b 46 47"),
    (datetime(2024, 1, 2, 3, 4, 5, 6), "38 00 e2 cd ec bf 79 93 46"),
    (datetime(2024, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))), "39 00 e2 cd ec bf 79 93 46"),
    (uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"), "40 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff"),
    ((), "50 00"),
    (("alice", 42, None), "50 20 61 6c 69 63 65 00 00 10 81 2a 04 00"),
    ((1, (2,)), "50 10 81 01 50 10 81 02 00 00"),
]


@pytest.mark.parametrize(("value", "hexed"), GOLDEN, ids=[repr(v)[:40] for v, _ in GOLDEN])
def test_golden_bytes(value: KeyValue, hexed: str) -> None:
    assert encode_key(value).hex(" ") == hexed
    assert same(decode_key(bytes.fromhex(hexed)), round_tripped(value))


def test_golden_tags_and_versions() -> None:
    assert {t.name: t.value for t in KeyTag} == {
        "NONE": 0x04,
        "FALSE": 0x08,
        "TRUE": 0x09,
        "INT": 0x10,
        "FLOAT": 0x18,
        "STR": 0x20,
        "BYTES": 0x28,
        "DATE": 0x30,
        "DATETIME": 0x38,
        "DATETIME_UTC": 0x39,
        "UUID": 0x40,
        "TUPLE": 0x50,
    }
    assert all(0x00 < t < 0xFF for t in KeyTag)  # 0x00 ends tuples, 0xff escapes NULs
    assert [v.value for v in KeyFormat] == [1]
    assert MAX_NESTING == 32


def test_worked_examples_in_the_docstring() -> None:
    doc = keysmod.__doc__ or ""
    assert encode_tuple(("alice", 42, None)).hex(" ") == "20 61 6c 69 63 65 00 00 10 81 2a 04"
    assert "20 61 6c 69 63 65 00 00 10 81 2a 04" in doc
    assert "part of the on-disk format" in doc
    examples: list[tuple[KeyValue, str]] = [
        (-1, "10 7f fe"),
        (2**64, "10 ff 00 00 00 00 00 00 00 09 01 00 00 00 00 00 00 00 00"),
        (date(2024, 1, 2), "30 00 0b 46 47"),
    ]
    for value, line in examples:
        assert encode_key(value).hex(" ") == line and line in doc


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "nan", [math.nan, -math.nan, float("nan"), struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]]
)
def test_nan_is_refused(nan: float) -> None:
    calls: list[Callable[[], bytes]] = [
        lambda: encode_key(nan),
        lambda: encode_key((1, nan)),
        lambda: encode_tuple(["a", nan]),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError, match="NaN"):
            call()


class Opaque:
    pass


@pytest.mark.parametrize(
    "bad",
    [[1], {"a": 1}, {1}, frozenset(), Opaque(), bytearray(b"x"), memoryview(b"x"), Decimal(1), 1j, timedelta(1)],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_types_are_named(bad: object) -> None:
    name = type(bad).__qualname__
    value: Any = bad
    calls: list[Callable[[], bytes]] = [
        lambda: encode_key(value),
        lambda: encode_key(("ok", value)),
        lambda: encode_tuple([1, value]),
    ]
    for call in calls:
        with pytest.raises(InvalidTypeError, match=name):
            call()


@pytest.mark.parametrize("bad", ["abc", b"abc", 5, None, iter([1])], ids=repr)
def test_encode_tuple_wants_a_sequence(bad: object) -> None:
    with pytest.raises(InvalidTypeError, match="sequence"):
        encode_tuple(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dt",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
    ],
)
def test_aware_datetime_outside_the_utc_range(dt: datetime) -> None:
    with pytest.raises(InvalidArgumentError, match="outside the datetime range"):
        encode_key(dt)


@pytest.mark.parametrize(
    ("hexed", "message"),
    [
        ("", "empty key"),
        ("00", "unknown type tag 0x00"),
        ("ff", "unknown type tag 0xff"),
        ("05", "unknown type tag 0x05"),
        ("10", "truncated int"),
        ("10 81", "truncated int"),
        ("10 81 00", "non-minimal int"),
        ("10 82 00 ff", "non-minimal int"),
        ("10 7f ff", "non-minimal int"),
        ("10 90", "unknown int header 0x90"),
        ("10 ff 00 00 00 00 00 00 00 08 01 00 00 00 00 00 00 00", "non-minimal int length"),
        ("10 ff 00 00 00 00 00 00 00 09 00 00 00 00 00 00 00 00 01", "non-minimal int"),
        ("10 ff ff ff ff ff ff ff ff ff 01", "truncated int"),
        ("10 00 ff ff ff ff ff ff ff f6 ff ff ff ff ff ff ff ff ff", "non-minimal int"),
        ("10 ff 00 00", "truncated int length"),
        ("18 ff f8 00 00 00 00 00 00", "NaN"),
        ("18 00 07 ff ff ff ff ff ff", "NaN"),
        ("18 80 00", "truncated float"),
        ("20 61", "terminator"),
        ("20 61 00", "terminator"),
        ("20 61 00 01 00 00", "unescaped 0x00"),
        ("20 ff 00 00", "invalid UTF-8"),
        ("20 c0 80 00 00", "invalid UTF-8"),
        ("28 00 00 00 00", "trailing"),
        ("30 00 00 00 00", "date ordinal 0 out of range"),
        ("30 00 37 b9 dc", "out of range"),
        ("30 00 0b", "truncated date"),
        ("38 ff ff ff ff ff ff ff ff", "datetime out of range"),
        ("39 00 00", "truncated datetime"),
        ("40 00 11", "truncated UUID"),
        ("50", "end marker"),
        ("50 04", "end marker"),
        ("04 04", "1 trailing bytes"),
        ("50 00 00", "trailing"),
    ],
)
def test_malformed_keys(hexed: str, message: str) -> None:
    with pytest.raises(CorruptionError, match=message) as info:
        decode_key(bytes.fromhex(hexed))
    assert info.value.path == "<key>"
    assert info.value.offset is not None and 0 <= info.value.offset <= len(bytes.fromhex(hexed))


def test_corruption_names_the_offset() -> None:
    with pytest.raises(CorruptionError) as info:
        decode_tuple(bytes.fromhex("20 61 00 00 10 81 00"))  # ("a", non-minimal 0)
    assert info.value.offset == 6 and "<key> at offset 6" in str(info.value)


@pytest.mark.parametrize("bad", ["abc", 5, None], ids=repr)
def test_decode_wants_bytes(bad: object) -> None:
    for fn in (decode_key, decode_tuple):
        with pytest.raises(InvalidTypeError, match="bytes"):
            fn(bad)  # type: ignore[arg-type]


def decodes_canonically(data: bytes, decode: Callable[[bytes], Any], encode: Callable[[Any], bytes]) -> None:
    """``data`` decodes to a value that encodes back to exactly ``data``, or is refused with
    CorruptionError: nothing else (no IndexError, no RecursionError, no second encoding)."""
    try:
        value = decode(data)
    except CorruptionError as exc:
        assert exc.path == "<key>"
        return
    assert encode(value) == data, (data.hex(" "), value)


KEYISH_BYTES = st.lists(
    st.one_of(
        st.sampled_from(
            [0x00, 0x04, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0x39, 0x40, 0x50, 0x78, 0x80, 0x81, 0xFF]
        ),
        st.integers(0, 255),
    ),
    max_size=48,
).map(bytes)


@settings(max_examples=400)
@given(st.one_of(st.binary(max_size=64), KEYISH_BYTES))
@example(bytes.fromhex("20 ed a0 80 ed b0 80 00 00"))  # a surrogate pair stays two lone surrogates
@example(bytes.fromhex("50 50 20 00 ff 00 00 00 00"))
def test_random_bytes_decode_canonically_or_raise_corruption(data: bytes) -> None:
    decodes_canonically(data, decode_key, encode_key)
    decodes_canonically(data, decode_tuple, encode_tuple)


@settings(max_examples=150)
@given(VALUES, st.data())
def test_damaged_keys_decode_canonically_or_raise_corruption(v: Any, data: st.DataObject) -> None:
    key = encode_key(v)
    # Every strict prefix of an encoded value is refused: encodings are prefix-free.
    for cut in range(len(key)):
        with pytest.raises(CorruptionError):
            decode_key(key[:cut])
    i = data.draw(st.integers(0, len(key) - 1), label="index")
    byte = data.draw(st.integers(0, 255), label="byte")
    damaged = key[:i] + bytes([byte]) + key[i + 1 :]
    decodes_canonically(damaged, decode_key, encode_key)
    decodes_canonically(key + data.draw(st.binary(min_size=1, max_size=4)), decode_key, encode_key)


# ---------------------------------------------------------------------------------------------
# Ranges


def test_prefix_end_and_successor_examples() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None and prefix_end(b"") is None
    assert prefix_range(b"a\xff") == (b"a\xff", b"b")
    assert successor(b"ab") == b"ab\x00" and successor(b"") == b"\x00"
    # Exclusive lower bound on a column: everything after every ("alice", ...) tuple.
    after_alice = prefix_end(encode_tuple(["alice"]))
    assert after_alice is not None
    assert encode_tuple(["alice", 2**100]) < after_alice <= encode_tuple(["alice\x00"]) < encode_tuple(["alicf"])


@settings(max_examples=300)
@given(st.binary(max_size=6), st.binary(max_size=8))
def test_prefix_range_is_exactly_the_keys_with_the_prefix(prefix: bytes, key: bytes) -> None:
    start, stop = prefix_range(prefix)
    assert (start <= key and (stop is None or key < stop)) == key.startswith(prefix)
    for k in (prefix + key, prefix + b"\xff" * 5):
        assert start <= k and (stop is None or k < stop)


@settings(max_examples=300)
@given(st.binary(max_size=6), st.binary(max_size=8))
def test_successor_is_the_next_byte_string(key: bytes, other: bytes) -> None:
    nxt = successor(key)
    assert key < nxt
    assert not (key < other < nxt)


# ---------------------------------------------------------------------------------------------
# The facade


def test_facade_exports_exactly_all() -> None:
    for name in quanta._codec.__all__:
        assert hasattr(quanta._codec, name), name
    public = {n for n in vars(quanta._codec) if not n.startswith("_") and n not in ("keys", "annotations")}
    assert public == set(quanta._codec.__all__)
    assert set(keysmod.__all__) == set(quanta._codec.__all__)


@given(
    st.one_of(
        st.lists(VALUES, max_size=80),
        st.lists(st.sampled_from([0, 1, -1, 255, 256, 2**63, -(2**64), 7]), max_size=200),  # ints: one comprehension
        st.lists(st.sampled_from(["Oslo", "Rome", "", None, b"Oslo", 1, True, 1.0, -0.0, 0.0, 0]), max_size=200),
    )
)
@example([True, 1, 1.0] * 30)  # equal values of different types never share an encoding
@example([0.0, -0.0] * 40)
@example(["a", b"a", None] * 30)
def test_encode_keys_is_encode_key_of_each(values: list[Any]) -> None:
    """``encode_keys`` (the entity layer's column encoder: a fast path for small ints, a
    cache for repeated values) gives exactly ``encode_key`` of every value."""
    assert encode_keys(values) == [encode_key(v) for v in values]


def test_encode_keys_names_a_bad_value_like_encode_key() -> None:
    with pytest.raises(InvalidTypeError, match="object"):
        encode_keys(["a"] * 100 + [object()])
    with pytest.raises(InvalidArgumentError):
        encode_keys([1.0] * 10 + [math.nan])
