r"""msgpack extension types: how values msgpack has no type for are stored.

The record codec (``adapter.py``) and :func:`encode_value` pack with the per-thread packers
below, whose ``default`` hook turns these values into extension types; ``_ext_hook`` turns them
back on decode.

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
    12    tuple (in Any)      a msgpack array of the elements; written only for tuples in
                              ``Any`` positions, where a plain array would come back as a
                              list (and, as a dict key or set element, fail to hash)

Zone kinds: 0 ``datetime.timezone(offset)`` (text empty); 1 ``zoneinfo.ZoneInfo(text)``,
whose offset is stored too (0 for a ``time``, which has no offset in a zone), so that if
the key is missing from the reader's time-zone database a fixed offset keeps the instant;
2 ``timezone(offset, text)``. Any other tzinfo is stored as kind 0 with the offset it gives
at that moment.

**The extension codes and their payloads are part of the on-disk format** (with the record
layout in ``adapter.py``): every stored record is written with them; a change needs a new
``RecordFormat`` and a migration that rewrites the records.

Concurrency: everything is pure except one msgpack ``Packer`` per thread (a packer is not
safe to share: its ``default`` hook runs Python code mid-pack, where another thread could
enter the same packer).
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any

import msgpack

from ..errors import CorruptionError, InvalidTypeError, QuantaError
from .typenode import ANY_TYPES
from .typenode import SUPPORTED as _SUPPORTED

__all__ = ["ExtCode", "decode_value", "encode_value", "exact_any"]


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
    TUPLE = 12


_RECORD = "<record>"  # the CorruptionError path: a record is not a file

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


def _dec_tuple(data: bytes) -> tuple[Any, ...]:
    return tuple(msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, unicode_errors="surrogatepass"))


# ---------------------------------------------------------------------------------------------
# ``Any`` values: stored so that they read back as the same value of the same type.


def exact_any(v: Any) -> Any:
    """``v`` (a value of an ``Any`` position, already checked by :func:`any_problem`) in the
    form the record packer stores exactly: tuples as extension type 12 (a plain array reads
    back as a list), sets and frozensets as 10 and 11 with their elements converted alike.
    Lists and dicts of scalars are returned as they are."""
    c = v.__class__
    if c in ANY_TYPES:
        return v
    if c is list:
        if ANY_TYPES.issuperset(map(type, v)):
            return v
        return [exact_any(x) for x in v]
    if c is tuple:
        items = [exact_any(x) for x in v]
        try:
            payload = _packers.pack(items)
        except UnicodeEncodeError:
            payload = _packers.pack_sp(items)
        return _tuple_new(_ExtType, (12, payload))
    if c is dict:
        if ANY_TYPES.issuperset(map(type, v)) and ANY_TYPES.issuperset(map(type, v.values())):
            return v
        return {exact_any(k): exact_any(x) for k, x in v.items()}
    if c is set or c is frozenset:
        return _set_ext([exact_any(x) for x in v], 10 if c is set else 11)
    return v  # not storable: the packer's ``default`` hook raises InvalidTypeError


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
    12: _dec_tuple,
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
