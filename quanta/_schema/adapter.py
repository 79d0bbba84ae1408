r"""The record codec ("type adapter"): entity objects to msgpack bytes and back.

``@quanta.entity`` calls :func:`build_codec` once per class. It writes Python source for
three functions specialised to the class's fields (``encode``, ``decode``, ``check``) and
compiles them with ``exec``, as attrs and cattrs do: the hot path is one C ``msgpack`` call
plus straight-line attribute loads and stores, with no per-field dispatch, no
``dataclasses.asdict`` and no ``__init__`` call on decode. The generated source is registered
with ``linecache``, so tracebacks show it (file name ``<quanta codec User>``).

Record layout (one msgpack array)::

    [version, value_0, value_1, ..., value_n-1]

``version`` is the entity's declared ``version`` (``@entity(version=2)``); ``value_i`` is
field ``i`` in declaration order (``FieldInfo.position == i``, so it sits at array index
``i + 1``). Values are msgpack-native where msgpack has the type (None, bool, int within 64
bits, float as binary64, str as UTF-8 with lone surrogates passed through, bytes as ``bin``,
list, tuple as an array, dict as a map) and extension types otherwise (table below). Enum
members are stored by value and decoded into the declared Enum class; dataclasses and
embedded entities are stored inline as arrays of their fields (no version of their own) and
decoded into the declared class; tuples are decoded as tuples where a tuple is declared.
Where the type is ``Any`` nothing is converted on decode: arrays come back as lists, enums
as their values.

Worked example: the issue's ``User`` (``id``, ``email``, ``name``, ``city``, ``age``,
``tags``), version 1, ``User(id=7, email="a@x.io", name="A", city="Oslo", age=30,
tags=["x"])``, is 21 bytes::

    97                      array of 7
    01                      version 1
    07                      id 7
    a6 61 40 78 2e 69 6f    email "a@x.io"
    a1 41                   name "A"
    a4 4f 73 6c 6f          city "Oslo"
    1e                      age 30
    91 a1 78                tags ["x"]

Extension types (msgpack ``ExtType(code, payload)``; integers big-endian)::

    code  type                payload
    1     int beyond 64 bits  two's complement, minimal length (msgpack ints stop at
                              -2**63 .. 2**64-1)
    2     datetime, naive     >HBBBBBI year month day hour minute second microsecond,
                              then one byte fold=1 only when fold is set
    3     datetime, aware     the 11 wall-clock bytes of code 2, u8 fold, i64 utcoffset in
                              microseconds, u8 zone kind, zone text (UTF-8, may be empty)
    4     date                >HBB year month day
    5     time, naive         >BBBI hour minute second microsecond, then fold=1 if set
    6     time, aware         the 7 bytes of code 5, u8 fold, i64 offset (us), u8 zone kind,
                              zone text
    7     timedelta           >iII days seconds microseconds
    8     Decimal             ASCII ``str(d)`` (exact: sign, digits, exponent, NaN, sNaN, inf)
    9     UUID                16 bytes (UUID.bytes)
    10    set                 a msgpack array of the elements in a canonical order, so equal
                              sets encode alike: by value when all are int, all str or all
                              bytes; otherwise by their encoded bytes
    11    frozenset           as 10

Zone kinds: 0 ``datetime.timezone(offset)`` (text empty); 1 ``zoneinfo.ZoneInfo(text)``,
whose offset is stored too (0 for a ``time``, which has no offset in a zone), so that if
the key is missing from the reader's time-zone database a fixed offset keeps the instant;
2 ``timezone(offset, text)``. Any other tzinfo is stored as kind 0 with the offset it gives
at that moment.

**The record layout, the extension codes and their payloads are part of the on-disk format.**
Every stored record is written with them; a change needs a new :class:`RecordFormat` and a
migration that rewrites the records.

Validation (``check``): top-level field values must have their declared type exactly
(``bool`` is not an ``int``; ``date`` excludes ``datetime``; an ``int`` in a ``float`` field
is converted in place). Elements of lists, tuples, sets and dicts are checked with one C
pass over their types; only when that finds something unexpected does a Python walk
convert ints to floats or name the offending element (``User.tags[3]: expected str, got
int``). Dataclass-typed fields are walked field by field.

Concurrency: everything is pure; the generated functions share no mutable state except one
msgpack ``Packer`` per thread (a packer is not safe to share: its ``default`` hook runs
Python code mid-pack, where another thread could enter the same packer).
"""

from __future__ import annotations

import dataclasses
import linecache
import struct
import threading
import types
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any, NamedTuple, NoReturn

import msgpack

from ..errors import CorruptionError, InvalidTypeError, QuantaError, SchemaError

__all__ = [
    "Codec",
    "ExtCode",
    "RecordFormat",
    "TypeNode",
    "UnsupportedType",
    "build_codec",
    "decode_value",
    "encode_value",
    "parse_type",
    "type_label",
]


class RecordFormat(IntEnum):
    """Versions of the record encoding (the layout and extension table above)."""

    V1 = 1  # first release: [version, *fields], extension codes 1..11


class ExtCode(IntEnum):
    """msgpack extension type codes (part of the on-disk format)."""

    BIGINT = 1
    DATETIME = 2
    DATETIME_TZ = 3
    DATE = 4
    TIME = 5
    TIME_TZ = 6
    TIMEDELTA = 7
    DECIMAL = 8
    UUID = 9
    SET = 10
    FROZENSET = 11


class UnsupportedType(Exception):
    """A declared type the codec cannot store; the entity layer turns it into a SchemaError
    naming the class and field."""


_RECORD = "<record>"  # the CorruptionError path: a record is not a file

# ---------------------------------------------------------------------------------------------
# Types: the declared annotation, normalised to a small tree the generators walk.

SCALAR_TYPES: tuple[type, ...] = (int, float, str, bytes, bool, datetime, date, time, timedelta, Decimal, uuid.UUID)
_ENUM_VALUE_TYPES = (*SCALAR_TYPES, type(None))
_NONE = type(None)


@dataclasses.dataclass(eq=False, slots=True)
class TypeNode:
    """One node of a parsed type.

    ``kind``: ``any``, ``scalar`` (``py`` is the type), ``enum`` (``py`` the Enum class),
    ``optional`` (``args[0]`` the non-None type), ``list``, ``vtuple`` (``tuple[T, ...]``),
    ``tuple`` (fixed, one arg per element), ``set``, ``frozenset``, ``dict`` (key, value),
    ``dataclass`` (``py`` the class; ``fields`` its ``(name, node)`` pairs, filled after the
    node is registered so that recursive dataclasses terminate).
    """

    kind: str
    py: Any = None
    args: tuple[TypeNode, ...] = ()
    fields: tuple[tuple[str, TypeNode], ...] = ()

    @property
    def label(self) -> str:
        return type_label(self)


def type_label(node: TypeNode) -> str:
    """How messages name a type: ``int``, ``list[str]``, ``Color | None``, ``Address``."""
    k = node.kind
    if k == "any":
        return "Any"
    if k in ("scalar", "enum", "dataclass"):
        return str(node.py.__qualname__)
    if k == "optional":
        return f"{type_label(node.args[0])} | None"
    if k == "vtuple":
        return f"tuple[{type_label(node.args[0])}, ...]"
    inner = ", ".join(type_label(a) for a in node.args) if node.args else "()"
    return f"{k}[{inner}]"


_ANY = TypeNode("any")
_CONTAINERS: dict[Any, str] = {list: "list", set: "set", frozenset: "frozenset", tuple: "tuple", dict: "dict"}
_SUPPORTED = (
    "int, float, str, bytes, bool, datetime, date, time, timedelta, Decimal, UUID, Enum, "
    "dataclasses, Any, X | None, list[T], tuple[...], set[T], frozenset[T], dict[K, V]"
)


def strip_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``(type, metadata)`` of a possibly ``Annotated`` type (the outer metadata only)."""
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        return args[0], tuple(args[1:])
    return tp, ()


def parse_type(tp: Any, localns: dict[str, Any] | None = None, _seen: dict[type, TypeNode] | None = None) -> TypeNode:
    """Parse a declared (resolved) type; raise :class:`UnsupportedType` if the codec cannot
    store it. Dataclasses are parsed field by field (their string annotations resolved in
    their module, then in ``localns``)."""
    seen: dict[type, TypeNode] = {} if _seen is None else _seen
    tp, _ = strip_annotated(tp)
    if isinstance(tp, typing.NewType):
        return parse_type(tp.__supertype__, localns, seen)
    if tp is Any or tp is object:
        return _ANY
    if tp in SCALAR_TYPES:
        return TypeNode("scalar", tp)
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not _NONE]
        if len(args) != 1 or len(args) == len(typing.get_args(tp)):
            raise UnsupportedType(
                f"unsupported type {_show(tp)}: a union other than X | None (supported: {_SUPPORTED})"
            )
        inner = parse_type(args[0], localns, seen)
        return inner if inner.kind in ("optional", "any") else TypeNode("optional", args=(inner,))
    if isinstance(tp, type) and origin is None:
        if issubclass(tp, Enum):
            return _parse_enum(tp)
        if dataclasses.is_dataclass(tp):
            return _parse_dataclass(tp, localns, seen)
        if tp in _CONTAINERS:  # bare list, dict, ...: elements of any type
            return _parse_container(tp, (), localns, seen)
    if origin in _CONTAINERS:
        type_args = typing.get_args(tp)
        if origin is tuple and not type_args:  # tuple[()]: get_args cannot tell it from bare tuple
            return TypeNode("tuple")
        return _parse_container(origin, type_args, localns, seen)
    if origin is not None and dataclasses.is_dataclass(origin):
        raise UnsupportedType(f"unsupported type {_show(tp)}: generic dataclasses are not supported")
    hint = ""
    if origin is not None and getattr(origin, "__module__", "") == "collections.abc":
        hint = " (declare a concrete list[...], set[...], tuple[...] or dict[...])"
    if tp is None or tp is _NONE:
        hint = " (a field that is always None stores nothing)"
    raise UnsupportedType(f"unsupported type {_show(tp)}{hint} (supported: {_SUPPORTED})")


def _show(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def _parse_enum(tp: type[Enum]) -> TypeNode:
    for member in tp:
        if type(member.value) not in _ENUM_VALUE_TYPES:
            raise UnsupportedType(
                f"enum {tp.__qualname__}: member {member.name} has a value of type "
                f"{type(member.value).__qualname__}; members are stored by value, which must be "
                "None, bool, int, float, str, bytes, Decimal, UUID or a date/time type"
            )
    return TypeNode("enum", tp)


def _parse_container(origin: type, args: tuple[Any, ...], localns: Any, seen: dict[type, TypeNode]) -> TypeNode:
    kind = _CONTAINERS[origin]
    if kind == "tuple":
        if not args:
            return TypeNode("vtuple", args=(_ANY,))
        if len(args) == 2 and args[1] is Ellipsis:
            return TypeNode("vtuple", args=(parse_type(args[0], localns, seen),))
        return TypeNode("tuple", args=tuple(parse_type(a, localns, seen) for a in args))
    if kind == "dict":
        key, value = (parse_type(a, localns, seen) for a in args) if args else (_ANY, _ANY)
        if not _is_map_key(key):
            raise UnsupportedType(
                f"unsupported type dict[{type_label(key)}, ...]: dict keys must be None, bool, int, float, "
                "str, bytes, Decimal, UUID, date/time types or Enum members (optionally | None)"
            )
        return TypeNode("dict", args=(key, value))
    elem = parse_type(args[0], localns, seen) if args else _ANY
    if kind in ("set", "frozenset") and not _is_hashable(elem):
        raise UnsupportedType(f"unsupported type {kind}[{type_label(elem)}]: set elements must be hashable")
    return TypeNode(kind, args=(elem,))


def _is_map_key(node: TypeNode) -> bool:
    if node.kind == "optional":
        node = node.args[0]
    return node.kind in ("scalar", "enum", "any")


def _is_hashable(node: TypeNode) -> bool:
    k = node.kind
    if k in ("scalar", "enum", "any"):
        return True
    if k in ("optional", "vtuple", "tuple", "frozenset"):
        return all(_is_hashable(a) for a in node.args)
    if k == "dataclass":
        return node.py.__hash__ is not None
    return False


def _parse_dataclass(cls: type, localns: Any, seen: dict[type, TypeNode]) -> TypeNode:
    if cls in seen:
        return seen[cls]
    node = TypeNode("dataclass", cls)
    seen[cls] = node  # registered before its fields are parsed: recursive types terminate
    try:
        hints = typing.get_type_hints(cls, localns=localns, include_extras=True)
    except Exception as exc:
        raise UnsupportedType(f"cannot resolve the annotations of {cls.__qualname__}: {exc}") from exc
    fields = []
    for f in dataclasses.fields(cls):
        try:
            fields.append((f.name, parse_type(hints[f.name], localns, seen)))
        except UnsupportedType as exc:
            raise UnsupportedType(f"{cls.__qualname__}.{f.name}: {exc}") from None
    node.fields = tuple(fields)
    return node


# ---------------------------------------------------------------------------------------------
# Extension types

_ExtType = msgpack.ExtType
# ExtType is a namedtuple whose __new__ re-checks its arguments (a third of the cost of
# encoding a UUID); ours are right by construction, so the tuple is built directly.
_tuple_new = tuple.__new__
_WALL = struct.Struct(">HBBBBBI")  # datetime wall clock: 11 bytes
_CLOCK = struct.Struct(">BBBI")  # time of day: 7 bytes
_DATE = struct.Struct(">HBB")
_TZ = struct.Struct(">BqB")  # fold, offset (us), zone kind
_TD = struct.Struct(">iII")
_US = timedelta(microseconds=1)
_ZONE_FIXED, _ZONE_INFO, _ZONE_NAMED = 0, 1, 2


def _zone_info_type() -> type | None:
    try:
        import zoneinfo
    except ImportError:  # pragma: no cover - always present on CPython 3.9+
        return None
    return zoneinfo.ZoneInfo


_ZoneInfo = _zone_info_type()


def _pack_zone(tz: tzinfo, offset: timedelta | None, fold: int) -> bytes:
    key: str | None = getattr(tz, "key", None) if type(tz) is _ZoneInfo else None
    if key is not None:
        off = 0 if offset is None else offset // _US
        return _TZ.pack(fold, off, _ZONE_INFO) + key.encode()
    if offset is None:
        raise InvalidTypeError(f"the tzinfo {tz!r} gives no UTC offset here, so the value cannot be stored")
    if type(tz) is timezone and tz is not UTC:
        name = tz.tzname(None)
        if name != timezone(offset).tzname(None):  # a name the user gave
            return _TZ.pack(fold, offset // _US, _ZONE_NAMED) + name.encode("utf-8", "surrogatepass")
    return _TZ.pack(fold, offset // _US, _ZONE_FIXED)


_FIXED_ZONES: dict[int, timezone] = {}


def _unpack_zone(data: bytes, pos: int) -> tuple[tzinfo, int]:
    fold, off, kind = _TZ.unpack_from(data, pos)
    text = data[pos + _TZ.size :]
    if kind == _ZONE_INFO and _ZoneInfo is not None:
        try:
            return _ZoneInfo(text.decode()), fold
        except Exception:  # key missing from this machine's tz database: keep the instant
            pass
    elif kind == _ZONE_NAMED:
        return timezone(timedelta(microseconds=off), text.decode("utf-8", "surrogatepass")), fold
    elif kind != _ZONE_FIXED:
        raise ValueError(f"unknown zone kind {kind}")
    tz = _FIXED_ZONES.get(off)
    if tz is None:
        tz = _FIXED_ZONES[off] = timezone(timedelta(microseconds=off))
    return tz, fold


def _enc_datetime(v: datetime) -> msgpack.ExtType:
    wall = _WALL.pack(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)
    tz = v.tzinfo
    if tz is None:
        return _tuple_new(_ExtType, (2, wall + b"\x01" if v.fold else wall))
    return _tuple_new(_ExtType, (3, wall + _pack_zone(tz, v.utcoffset(), v.fold)))


def _dec_datetime(data: bytes) -> datetime:
    if len(data) == 11:
        return datetime(*_WALL.unpack(data))
    if data[11:] != b"\x01":
        raise ValueError("bad naive datetime payload")
    return datetime(*_WALL.unpack_from(data), fold=1)


def _dec_datetime_tz(data: bytes) -> datetime:
    tz, fold = _unpack_zone(data, 11)
    year, month, day, hour, minute, second, us = _WALL.unpack_from(data)
    return datetime(year, month, day, hour, minute, second, us, tzinfo=tz, fold=fold)


def _enc_time(v: time) -> msgpack.ExtType:
    clock = _CLOCK.pack(v.hour, v.minute, v.second, v.microsecond)
    tz = v.tzinfo
    if tz is None:
        return _tuple_new(_ExtType, (5, clock + b"\x01" if v.fold else clock))
    return _tuple_new(_ExtType, (6, clock + _pack_zone(tz, v.utcoffset(), v.fold)))


def _dec_time(data: bytes) -> time:
    if len(data) == 7:
        return time(*_CLOCK.unpack(data))
    if data[7:] != b"\x01":
        raise ValueError("bad naive time payload")
    return time(*_CLOCK.unpack_from(data), fold=1)


def _dec_time_tz(data: bytes) -> time:
    tz, fold = _unpack_zone(data, 7)
    hour, minute, second, us = _CLOCK.unpack_from(data)
    return time(hour, minute, second, us, tzinfo=tz, fold=fold)


def _enc_date(v: date) -> msgpack.ExtType:
    return _tuple_new(_ExtType, (4, _DATE.pack(v.year, v.month, v.day)))


def _dec_date(data: bytes) -> date:
    return date(*_DATE.unpack(data))


def _enc_timedelta(v: timedelta) -> msgpack.ExtType:
    return _tuple_new(_ExtType, (7, _TD.pack(v.days, v.seconds, v.microseconds)))


def _dec_timedelta(data: bytes) -> timedelta:
    return timedelta(*_TD.unpack(data))


def _enc_decimal(v: Decimal) -> msgpack.ExtType:
    return _tuple_new(_ExtType, (8, str(v).encode("ascii")))


def _dec_decimal(data: bytes) -> Decimal:
    return Decimal(data.decode("ascii"))


def _enc_uuid(v: uuid.UUID) -> msgpack.ExtType:
    return _tuple_new(_ExtType, (9, v.bytes))


_object_new = object.__new__
_object_setattr = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_UUID_FAST = set(getattr(uuid.UUID, "__slots__", ())) >= {"int", "is_safe"}


def _dec_uuid(data: bytes) -> uuid.UUID:
    if len(data) != 16:
        raise ValueError("a UUID payload is 16 bytes")
    if not _UUID_FAST:  # pragma: no cover - CPython's UUID has had these slots since 3.8
        return uuid.UUID(bytes=data)
    # What UUID.__init__ ends with, minus its argument checks (as quanta._codec.keys does).
    u = _object_new(uuid.UUID)
    _object_setattr(u, "int", int.from_bytes(data, "big"))
    _object_setattr(u, "is_safe", _SAFE_UNKNOWN)
    return u


def _enc_bigint(v: int) -> msgpack.ExtType:
    n = int(v)
    return _tuple_new(_ExtType, (1, n.to_bytes((n.bit_length() + 8) >> 3, "big", signed=True)))


def _dec_bigint(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


_SORTABLE = frozenset({int, str, bytes})  # element types with a total order and one encoding per value
_EMPTY_ARRAY = b"\x90"


def _set_ext(elements: Any, code: int) -> msgpack.ExtType:
    """A set as an array in a canonical order, so equal sets encode alike: sorted values when
    they are all ints, all str or all bytes; otherwise sorted by their encodings (mixed types,
    floats with NaN, frozensets, whose ``<`` is only a partial order)."""
    if not elements:
        return _tuple_new(_ExtType, (code, _EMPTY_ARRAY))
    kinds = set(map(type, elements))
    if len(kinds) == 1 and kinds <= _SORTABLE:
        try:
            # No ``default`` hook on this packer: no Python code runs mid-pack, so the
            # per-thread packer cannot be re-entered (a set inside a set takes the other path).
            return _tuple_new(_ExtType, (code, _packers.plain(sorted(elements))))
        except (OverflowError, UnicodeEncodeError):  # big ints, lone surrogates
            pass
    packer = msgpack.Packer(use_bin_type=True, default=_default, unicode_errors="surrogatepass")
    encoded = sorted(packer.pack(x) for x in elements)
    return _tuple_new(_ExtType, (code, packer.pack_array_header(len(encoded)) + b"".join(encoded)))


def _enc_set(v: set[Any]) -> msgpack.ExtType:
    return _set_ext(v, 10)


def _enc_frozenset(v: frozenset[Any]) -> msgpack.ExtType:
    return _set_ext(v, 11)


def _unpack_elements(data: bytes) -> Any:
    # Arrays inside a set come back as tuples (hashable); the generated decoder converts
    # elements further where the declared type asks.
    return msgpack.unpackb(
        data, ext_hook=_ext_hook, use_list=False, strict_map_key=False, unicode_errors="surrogatepass"
    )


def _dec_set(data: bytes) -> set[Any]:
    return set(_unpack_elements(data))


def _dec_frozenset(data: bytes) -> frozenset[Any]:
    return frozenset(_unpack_elements(data))


_EXT_ENCODERS: dict[type, Callable[[Any], msgpack.ExtType]] = {
    datetime: _enc_datetime,
    date: _enc_date,
    time: _enc_time,
    timedelta: _enc_timedelta,
    Decimal: _enc_decimal,
    uuid.UUID: _enc_uuid,
    set: _enc_set,
    frozenset: _enc_frozenset,
    int: _enc_bigint,  # msgpack calls ``default`` for ints it cannot hold
}

_EXT_DECODERS: dict[int, Callable[[bytes], Any]] = {
    1: _dec_bigint,
    2: _dec_datetime,
    3: _dec_datetime_tz,
    4: _dec_date,
    5: _dec_time,
    6: _dec_time_tz,
    7: _dec_timedelta,
    8: _dec_decimal,
    9: _dec_uuid,
    10: _dec_set,
    11: _dec_frozenset,
}
assert set(_EXT_DECODERS) == {c.value for c in ExtCode}


def _default(value: Any) -> Any:
    """msgpack's ``default`` hook: extension types for what msgpack does not know (and for
    ints beyond 64 bits, for which msgpack calls it too)."""
    f = _EXT_ENCODERS.get(value.__class__)
    if f is not None:
        return f(value)
    if isinstance(value, Enum):  # plain Enum members (int and str enums pack natively)
        v = value.value
        f = _EXT_ENCODERS.get(v.__class__)
        if f is None or (f is _enc_bigint and _INT_MIN <= v <= _UINT_MAX):
            return v  # msgpack packs it as it is (msgpack calls ``default`` once per value)
        return f(v)
    for klass in type(value).__mro__[1:]:  # subclasses of the supported types
        f = _EXT_ENCODERS.get(klass)
        if f is not None:
            return f(value)
    raise InvalidTypeError(
        f"a value of type {type(value).__qualname__} cannot be stored (supported: {_SUPPORTED}; "
        "dataclasses only where declared)"
    )


_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1  # msgpack's int range


def _ext_hook(code: int, data: bytes) -> Any:
    f = _EXT_DECODERS.get(code)
    if f is None:
        raise ValueError(f"unknown msgpack extension type {code}")
    return f(data)


class _Packers(threading.local):
    """One set of packers per thread (see the module docstring). ``pack_sp`` passes lone
    surrogates through and is used only when ``pack`` refuses a string; ``plain`` has no
    ``default`` hook, so it never runs Python code mid-pack (and so is safe to use from
    within the hook, for the elements of a set)."""

    def __init__(self) -> None:
        self.pack = msgpack.Packer(use_bin_type=True, default=_default).pack
        self.pack_sp = msgpack.Packer(use_bin_type=True, default=_default, unicode_errors="surrogatepass").pack
        self.plain = msgpack.Packer(use_bin_type=True).pack  # flat sets of int, str or bytes


_packers = _Packers()


def encode_value(value: Any) -> bytes:
    """Any storable value (as for an ``Any`` field) to msgpack bytes with the extension types."""
    try:
        return _packers.pack(value)  # type: ignore[no-any-return]
    except UnicodeEncodeError:
        return _packers.pack_sp(value)  # type: ignore[no-any-return]


def decode_value(data: bytes) -> Any:
    """The inverse of :func:`encode_value` (arrays come back as lists)."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, unicode_errors="surrogatepass")
    except QuantaError:
        raise
    except Exception as exc:
        raise CorruptionError(f"malformed msgpack value: {exc}", path=_RECORD) from exc


# ---------------------------------------------------------------------------------------------
# Validation: the slow path of ``check`` (the generated fast path calls it only when a value
# is not plainly of its declared type).


def _fail(node: TypeNode, value: Any, path: str, detail: str = "") -> NoReturn:
    raise InvalidTypeError(f"{path}: expected {type_label(node)}, got {type(value).__qualname__}{detail}")


def coerce(node: TypeNode, v: Any, path: str, shown: TypeNode | None = None) -> Any:
    """``v`` if it has type ``node``; an equal value with ints turned into floats where floats
    are declared; else ``InvalidTypeError`` naming ``path`` (``User.tags[3]``) and the
    expected type (``shown``, if given: ``T | None`` when checking the T of an optional)."""
    if shown is None:
        shown = node
    k = node.kind
    if k == "scalar":
        t = node.py
        if t is int:
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        elif t is float:
            if isinstance(v, float):
                return v
            if isinstance(v, int) and not isinstance(v, bool):
                return float(v)
        elif t is date:
            if isinstance(v, date) and not isinstance(v, datetime):
                return v
        elif isinstance(v, t):
            return v
        _fail(shown, v, path)
    if k == "any":
        return v
    if k == "optional":
        return None if v is None else coerce(node.args[0], v, path, node)
    if k == "enum":
        if isinstance(v, node.py):
            return v
        _fail(shown, v, path)
    if k == "list" or k == "vtuple":
        ctype = list if k == "list" else tuple
        if not isinstance(v, ctype):
            _fail(shown, v, path)
        elem = node.args[0]
        out = None
        for i, x in enumerate(v):
            y = coerce(elem, x, f"{path}[{i}]")
            if y is not x:
                if out is None:
                    out = list(v)
                out[i] = y
        return v if out is None else ctype(out)
    if k == "tuple":
        if not isinstance(v, tuple):
            _fail(shown, v, path)
        if len(v) != len(node.args):
            _fail(shown, v, path, f" of length {len(v)}")
        items = tuple(coerce(a, x, f"{path}[{i}]") for i, (a, x) in enumerate(zip(node.args, v, strict=True)))
        return v if all(a is b for a, b in zip(items, v, strict=True)) else items
    if k == "set" or k == "frozenset":
        stype = set if k == "set" else frozenset
        if not isinstance(v, stype):  # (a frozenset is not a set, nor the other way round)
            _fail(shown, v, path)
        elem = node.args[0]
        changed = False
        elements: list[Any] = []
        for x in v:
            y = coerce(elem, x, f"{path} element")
            changed = changed or y is not x
            elements.append(y)
        return stype(elements) if changed else v
    if k == "dict":
        if not isinstance(v, dict):
            _fail(shown, v, path)
        kn, vn = node.args
        pairs = list(v.items())
        out_d: dict[Any, Any] | None = None
        for i, (key, x) in enumerate(pairs):
            key2 = coerce(kn, key, f"{path} key")
            y = coerce(vn, x, f"{path}[{key!r}]")
            if out_d is None and (key2 is not key or y is not x):
                out_d = dict(pairs[:i])
            if out_d is not None:
                out_d[key2] = y
        return v if out_d is None else out_d
    if k == "dataclass":
        if not isinstance(v, node.py):
            _fail(shown, v, path)
        for name, fnode in node.fields:
            try:
                x = getattr(v, name)
            except AttributeError:
                raise InvalidTypeError(f"{path}.{name}: missing") from None
            y = coerce(fnode, x, f"{path}.{name}")
            if y is not x:
                _object_setattr(v, name, y)  # works for frozen and slotted dataclasses too
        return v
    raise AssertionError(k)  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Code generation


class Codec(NamedTuple):
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    check: Callable[[Any], None]
    source: str


def _needs_enc(node: TypeNode) -> bool:
    """Does a value of this type need converting before msgpack sees it? Dataclasses do
    (to arrays), and plain Enum members (to their values: ``_default`` would do it too, but a
    call from msgpack back into Python costs more than ``.value``); containers holding them.
    msgpack and ``_default`` handle every other type."""
    if node.kind == "dataclass":
        return True
    if node.kind == "enum":
        return not issubclass(node.py, _NATIVE)
    return any(_needs_enc(a) for a in node.args)


_NATIVE = (int, str, float, bytes)  # enums mixing these in are packed by msgpack as they are


def _needs_dec(node: TypeNode, frozen: bool) -> bool:
    """Does the msgpack-decoded value need converting into the declared type? ``frozen``:
    the value sits inside a set, where arrays were decoded as tuples."""
    k = node.kind
    if k in ("enum", "dataclass"):
        return True
    if k == "list":
        return frozen or _needs_dec(node.args[0], frozen)
    if k in ("vtuple", "tuple"):
        return not frozen or any(_needs_dec(a, frozen) for a in node.args)
    if k in ("set", "frozenset"):
        return _needs_dec(node.args[0], True)
    return any(_needs_dec(a, frozen) for a in node.args)  # optional, dict; scalar/any: False


def _fast_types(node: TypeNode) -> frozenset[type] | None:
    """The classes that need no slow-path look for a value of this type (None: always walk)."""
    if node.kind == "scalar":
        return frozenset({node.py})
    if node.kind == "enum":
        return frozenset({node.py})
    if node.kind == "optional":
        inner = _fast_types(node.args[0])
        return None if inner is None else inner | {_NONE}
    return None


class _Gen:
    """Accumulates the namespace and helper functions of one class's generated codec."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_new": _object_new,
            "_osa": _object_setattr,
            "_type": type,
            "_set_ext": _set_ext,
            "_coerce": coerce,
        }
        self.defs: list[str] = []
        self.n = 0
        self.enc_fns: dict[type, str] = {}
        self.dec_fns: dict[tuple[type, bool], str] = {}

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"_{prefix}{self.n}"

    def const(self, value: Any, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.ns[name] = value
        return name

    # -- encode

    def enc(self, node: TypeNode, x: str) -> str:
        if not _needs_enc(node):
            return x
        k = node.kind
        if k == "dataclass":
            return f"{self.enc_dataclass(node)}({x})"
        if k == "enum":
            return f"{x}.value"
        if k == "optional":
            t = self.name("t")
            return f"(None if ({t} := {x}) is None else {self.enc(node.args[0], t)})"
        if k in ("list", "vtuple", "set", "frozenset"):
            t = self.name("t")
            items = f"[{self.enc(node.args[0], t)} for {t} in {x}]"
            if k in ("set", "frozenset"):
                return f"_set_ext({items}, {10 if k == 'set' else 11})"
            return items
        if k == "tuple":
            fn = self.name("et")
            body = ", ".join(self.enc(a, f"v[{i}]") for i, a in enumerate(node.args))
            self.defs.append(f"def {fn}(v):\n    return [{body}]\n")
            return f"{fn}({x})"
        if k == "dict":
            tk, tv = self.name("t"), self.name("t")
            return f"{{{tk}: {self.enc(node.args[1], tv)} for {tk}, {tv} in {x}.items()}}"
        raise AssertionError(k)  # pragma: no cover

    def enc_dataclass(self, node: TypeNode) -> str:
        cls = node.py
        fn = self.enc_fns.get(cls)
        if fn is None:
            fn = self.enc_fns[cls] = self.name("e")
            items = ", ".join(self.enc(f, f"o.{name}") for name, f in node.fields)
            self.defs.append(f"def {fn}(o):  # {cls.__qualname__}\n    return [{items}]\n")
        return fn

    # -- decode

    def dec(self, node: TypeNode, x: str, frozen: bool = False) -> str:
        if not _needs_dec(node, frozen):
            return x
        k = node.kind
        if k == "enum":
            return f"{self.const(_EnumMap(node.py), 'm')}[{x}]"
        if k == "dataclass":
            return f"{self.dec_dataclass(node, frozen)}({x})"
        if k == "optional":
            t = self.name("t")
            return f"(None if ({t} := {x}) is None else {self.dec(node.args[0], t, frozen)})"
        if k == "list":
            elem = node.args[0]
            if not _needs_dec(elem, frozen):
                return f"list({x})"
            t = self.name("t")
            return f"[{self.dec(elem, t, frozen)} for {t} in {x}]"
        if k == "vtuple":
            elem = node.args[0]
            if not _needs_dec(elem, frozen):
                return f"tuple({x})"
            t = self.name("t")
            return f"tuple([{self.dec(elem, t, frozen)} for {t} in {x}])"
        if k == "tuple":
            if not any(_needs_dec(a, frozen) for a in node.args):
                return f"tuple({x})"
            fn = self.name("dt")
            names = [f"a{i}" for i in range(len(node.args))]
            body = "".join(f"{self.dec(a, n, frozen)}, " for a, n in zip(node.args, names, strict=True))
            self.defs.append(f"def {fn}(v):\n    {', '.join(names)}, = v\n    return ({body})\n")
            return f"{fn}({x})"
        if k in ("set", "frozenset"):
            t = self.name("t")
            items = f"[{self.dec(node.args[0], t, True)} for {t} in {x}]"
            return f"{k}({items})"
        if k == "dict":
            kn, vn = node.args
            tk, tv = self.name("t"), self.name("t")
            return f"{{{self.dec(kn, tk, frozen)}: {self.dec(vn, tv, frozen)} for {tk}, {tv} in {x}.items()}}"
        raise AssertionError(k)  # pragma: no cover

    def dec_dataclass(self, node: TypeNode, frozen: bool) -> str:
        cls = node.py
        fn = self.dec_fns.get((cls, frozen))
        if fn is None:
            fn = self.dec_fns[cls, frozen] = self.name("d")
            c = self.const(cls, "C")
            lines = [f"def {fn}(a):  # {cls.__qualname__}"]
            names = [f"_x{i}" for i in range(len(node.fields))]
            lines.append(f"    {''.join(n + ', ' for n in names)}= a" if names else "    () = a")
            lines.append(f"    o = _new({c})")
            direct = _plain_setattr(cls)
            for (name, f), var in zip(node.fields, names, strict=True):
                value = self.dec(f, var, frozen)
                lines.append(f"    o.{name} = {value}" if direct else f"    _osa(o, {name!r}, {value})")
            lines.append("    return o\n")
            self.defs.append("\n".join(lines))
        return fn

    # -- check

    def check_lines(self, node: TypeNode, attr: str, path: str, direct: bool) -> list[str]:
        """Statements checking ``o.<attr>`` (bound to ``v``): a cheap test of the value's class
        (and of its elements' classes, in one C pass), and the slow walk (``coerce``) only when
        the test fails; a converted value (int -> float) is stored back."""
        if node.kind == "any":
            return []
        value = f"_coerce({self.const(node, 'n')}, v, {path!r})"
        fix = f"o.{attr} = {value}" if direct else f"_osa(o, {attr!r}, {value})"
        optional = node.kind == "optional"
        cond = self.suspect(node.args[0] if optional else node)
        if cond is None:  # no cheap test: always walk (fixed tuples, dataclasses, nested containers)
            test = "v is not None" if optional else None
        else:
            test = f"v is not None and ({cond})" if optional else cond
        if test is None:
            return [f"v = o.{attr}", fix]
        return [f"v = o.{attr}", f"if {test}:", f"    {fix}"]

    def suspect(self, node: TypeNode) -> str | None:
        """An expression over ``v``, false when ``v`` surely has type ``node``; None if there is
        no cheap one."""
        if node.kind in ("scalar", "enum"):
            return f"v.__class__ is not {self.const(node.py, 'T')}"
        ctype = _CONTAINER_CLASSES.get(node.kind)
        if ctype is None:
            return None
        conds = [f"v.__class__ is not {self.const(ctype, 'T')}"]
        for i, arg in enumerate(node.args):
            if arg.kind == "any":
                continue
            fast = _fast_types(arg)
            if fast is None:
                return None
            src = "v.values()" if node.kind == "dict" and i == 1 else "v"  # (a dict iterates its keys)
            conds.append(f"not {self.const(fast, 'S')}.issuperset(map(_type, {src}))")
        return " or ".join(conds)


_CONTAINER_CLASSES: dict[str, type] = {"list": list, "vtuple": tuple, "set": set, "frozenset": frozenset, "dict": dict}


def _plain_setattr(cls: type) -> bool:
    """Can the generated code assign ``o.name = value`` (no ``__setattr__`` override, as in a
    frozen dataclass)? Else it calls ``object.__setattr__``."""
    setattr_: Any = cls.__setattr__
    return setattr_ is _object_setattr


class _EnumMap(dict[Any, Any]):
    """value -> member; a miss (a Flag combination, an enum with ``_missing_``) asks the
    class, which raises ValueError for a value that is no member."""

    __slots__ = ("enum",)

    def __init__(self, enum_cls: type[Enum]) -> None:
        super().__init__({m.value: m for m in enum_cls.__members__.values()})
        self.enum = enum_cls

    def __missing__(self, value: Any) -> Any:
        return self.enum(value)


def build_codec(cls: type, entity_name: str, version: int, fields: list[tuple[str, TypeNode]]) -> Codec:
    """Generate, compile and return the codec of entity class ``cls``.

    Requires: ``fields`` are the class's dataclass fields in declaration order, each with its
    parsed type. ``entity_name`` prefixes check messages (``User.age: expected int, got str``).
    """
    gen = _Gen()
    ns = gen.ns
    ns.update(
        _cls=cls,
        _pk=_packers,
        _unpackb=msgpack.unpackb,
        _ext_hook=_ext_hook,
        _QuantaError=QuantaError,
        _VERSION=version,
    )
    n = len(fields)
    qual = cls.__qualname__
    direct = _plain_setattr(cls)

    # encode
    values = ", ".join(gen.enc(node, f"o.{name}") for name, node in fields)
    items = f"[_VERSION, {values}]" if fields else "[_VERSION]"
    encode_src = (
        f"def encode(o):\n"
        f"    try:\n"
        f"        return _pk.pack({items})\n"
        f"    except UnicodeEncodeError:\n"
        f"        return _pk.pack_sp({items})\n"
        f"    except Exception as exc:\n"
        f"        _encode_failed(o, exc)\n"
    )

    # decode
    names = [f"_x{i}" for i in range(n)]
    lines = [
        "def decode(data):",
        "    try:",
        '        r = _unpackb(data, ext_hook=_ext_hook, strict_map_key=False, unicode_errors="surrogatepass")',
        f"        _v, {''.join(v + ', ' for v in names)}= r",
        "        if _v != _VERSION:",
        "            raise ValueError",
        "        o = _new(_cls)",
    ]
    for (name, node), var in zip(fields, names, strict=True):
        value = gen.dec(node, var)
        lines.append(f"        o.{name} = {value}" if direct else f"        _osa(o, {name!r}, {value})")
    lines += [
        "        return o",
        "    except _QuantaError:",
        "        raise",
        "    except Exception as exc:",
        "        _decode_failed(data, exc)\n",
    ]
    decode_src = "\n".join(lines)

    # check
    lines = [
        "def check(o):",
        "    if o.__class__ is not _cls and not isinstance(o, _cls):",
        "        _not_instance(o)",
    ]
    for name, node in fields:
        lines += ["    " + s for s in gen.check_lines(node, name, f"{entity_name}.{name}", direct)]
    lines.append("    return None\n")
    check_src = "\n".join(lines)

    source = "\n".join([*gen.defs, encode_src, decode_src, check_src])
    filename = f"<quanta codec {qual} at {id(cls):#x}>"
    exec(compile(source, filename, "exec"), ns)  # the generated source is shown below it
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)

    check: Callable[[Any], None] = ns["check"]

    def _not_instance(o: Any) -> NoReturn:
        raise InvalidTypeError(f"{entity_name}: expected a {qual} instance, got {type(o).__qualname__}")

    def _encode_failed(o: Any, exc: Exception) -> NoReturn:
        try:
            check(o)  # names the field at fault, if it is a type error
        except AttributeError as missing:
            raise InvalidTypeError(f"{entity_name}: {missing}") from exc
        if isinstance(exc, QuantaError):
            raise exc
        raise InvalidTypeError(f"{entity_name}: the record cannot be encoded: {exc}") from exc

    def _decode_failed(data: Any, exc: Exception) -> NoReturn:
        try:
            stored = msgpack.unpackb(data, ext_hook=lambda code, d: None, strict_map_key=False)[0]
        except Exception:
            stored = None
        if type(stored) is int and stored != version:
            raise SchemaError(
                f"{entity_name}: a stored record has version {stored} but the class declares version {version}"
            ) from exc
        raise CorruptionError(f"malformed {entity_name} record: {type(exc).__name__}: {exc}", path=_RECORD) from exc

    ns.update(_not_instance=_not_instance, _encode_failed=_encode_failed, _decode_failed=_decode_failed)
    return Codec(ns["encode"], ns["decode"], check, source)
