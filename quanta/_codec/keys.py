r"""Order-preserving binary encoding of typed key values and tuples.

The entity layer turns primary keys and index entries into storage keys with this module.
Invariants (the tests prove each one):

* **Order.** For values ``a`` and ``b`` of one type, ``encode_key(a) < encode_key(b)`` (plain
  ``bytes`` comparison, i.e. memcmp) exactly when ``a < b``, and the encodings are equal exactly
  when ``a == b``. The two exceptions, both deliberate: ``-0.0`` encodes just below ``0.0``
  (they are ``==`` in Python, but a key must round-trip the sign), and aware datetimes are
  ordered by their UTC instant. Across types the tag byte decides (table below).
* **Prefix-free.** No encoded value is a proper byte prefix of another. So a tuple is a
  prefix of another tuple exactly when its ``encode_tuple`` bytes are a prefix of the other's,
  and a byte-prefix scan over ``prefix_range(encode_tuple(p))`` returns exactly the keys whose
  tuple starts with ``p``.
* **Canonical.** One value, one encoding: ``decode_key`` accepts only bytes that
  ``encode_key`` produces (non-minimal integers, unescaped NULs, NaN patterns, trailing bytes,
  out-of-range dates are ``CorruptionError``), so ``encode_key(decode_key(b)) == b`` whenever
  the decode succeeds.

Everything here is pure and synchronous: no I/O, no shared mutable state, safe from any
thread or task.

**The tag values and layouts below are part of the on-disk format.** Every key of every
entity and index is written with them; changing a tag, a width or an escape makes existing
keys sort wrongly or fail to decode. A change needs a new ``KeyFormat`` and a migration that
rewrites the keys.

Tags (one byte; their numeric order is the cross-type order). ``None`` comes first so the
nulls of a nullable column sort first; then numbers, text, binary, time types, identifiers
and tuples, as in the FoundationDB tuple layer. Gaps leave room for new types in their
natural place (``Decimal`` beside the numbers, ``time`` beside the dates)::

    tag   type                  payload after the tag
    0x00  (end of tuple)        never a tag: terminates a tuple, so (a,) < (a, b)
    0x04  None                  -
    0x08  False                 -
    0x09  True                  -
    0x10  int                   header u8, then magnitude bytes (below)
    0x18  float                 8 bytes: IEEE 754 binary64, big-endian, sign-flipped
    0x20  str                   UTF-8 (surrogatepass), 0x00 escaped as 00 ff, then 00 00
    0x28  bytes                 the bytes, 0x00 escaped as 00 ff, then 00 00
    0x30  datetime.date         u32 BE: date.toordinal() (1 = 0001-01-01)
    0x38  datetime, naive       u64 BE: microseconds since 0001-01-01 00:00 (wall clock)
    0x39  datetime, aware       u64 BE: microseconds since 0001-01-01 00:00 UTC (the instant)
    0x40  uuid.UUID             16 bytes: UUID.bytes (big-endian, = order of UUID.int)
    0x50  tuple                 each element's encoding, then 0x00
    0xff  (reserved)            never a tag: 0xff is the escape byte, and a key starting with
                                0xff sorts after every encoded value

Integers (tag 0x10, then a header byte H; n is the value, k the byte length of abs(n))::

    H           payload                                     values
    0x00        u64 BE (2**64-1 - k), then k bytes:         n <= -(2**64), k > 8
                n + 2**(8k) - 1, big-endian
    0x78..0x7f  k = 0x80 - H bytes (8..1): n + 2**(8k) - 1  -(2**64) < n < 0
    0x80        none                                        n == 0
    0x81..0x88  k = H - 0x80 bytes (1..8): n, big-endian    0 < n < 2**64
    0xff        u64 BE k, then k bytes: n, big-endian       n >= 2**64, k > 8

    k is minimal: the first magnitude byte is never 0x00 (0xff for negatives). Negative
    payloads are the one's complement of abs(n) in k bytes, so a larger n gives larger
    bytes; longer negatives get smaller headers. Any int Python can hold fits (k < 2**64).

Floats (tag 0x18): ``struct.pack(">d", x)`` read as a u64 ``u``; if the sign bit is set,
every bit is inverted, otherwise only the sign bit is set. Then
``-inf < negatives < -0.0 < 0.0 < positives < inf``; ``-0.0`` is ``7f ff ff ff ff ff ff ff``
and ``0.0`` is ``80 00 00 00 00 00 00 00``. NaN is refused (``InvalidArgumentError``): it
has no place in an order, and ``nan != nan`` would make an equality lookup miss.

Strings and bytes: each 0x00 byte of the content becomes ``00 ff``, and ``00 00`` ends the
value. Content never holds ``00 00``, so the terminator is found with one ``bytes.find``,
and ``00 00`` sorts below ``00 ff`` (an escaped NUL) and below every other byte pair: a
string sorts before its extensions (``"a" < "a\x00" < "a\x00b" < "ab"``). Strings are
UTF-8, whose byte order is code point order, which is Python's ``str`` order; lone
surrogates (``"\udc80"``, from ``surrogateescape``) are encoded with ``surrogatepass``
rather than refused, which keeps that order.

Datetimes: naive and aware ones have separate tags and never compare equal (in Python
``naive == aware`` is False and ``<`` raises). Aware values are stored as their UTC instant
and decode with ``tzinfo=timezone.utc``: ``12:00+02:00`` and ``10:00Z`` are the same key,
as they are ``==`` in Python. An aware value whose instant falls outside ``datetime.min``..
``datetime.max`` in UTC is refused. ``fold`` is not stored (naive values differing only in
``fold`` are ``==``). ``date`` and ``datetime`` have different tags (a ``datetime`` is a
``date`` subclass; the ``datetime`` check comes first).

Worked example, ``encode_key(("alice", 42, None))`` (a tuple value, 14 bytes)::

    50                       tuple
    20 61 6c 69 63 65 00 00  str "alice"
    10 81 2a                 int 42: one magnitude byte
    04                       None
    00                       end of tuple

and ``encode_tuple(("alice", 42, None))`` is the same without the first and last byte,
``20 61 6c 69 63 65 00 00 10 81 2a 04``: composite keys are built with ``encode_tuple``, so
``encode_tuple(("alice",))`` is a byte prefix of it. More single values::

    -1              10 7f fe
    255             10 81 ff
    2**64           10 ff 00 00 00 00 00 00 00 09 01 00 00 00 00 00 00 00 00
    1.0             18 bf f0 00 00 00 00 00 00
    b"a\x00"        28 61 00 ff 00 00
    date(2024, 1, 2) 30 00 0b 46 47

Departures from the FoundationDB tuple layer, which this follows in spirit: strings end
with ``00 00`` instead of ``00`` (one byte more, but the encoding is prefix-free, so a plain
byte-prefix scan is a tuple-prefix scan; FoundationDB needs its own ``range()`` that stops
at ``prefix + ff``); one int tag with a header byte instead of a tag per length, and a u64
length for big ints instead of a 255-byte limit; dates, datetimes and big-int escapes of
our own. Ints and floats have separate tags and never compare equal (``1`` and ``1.0`` are
two keys): the schema layer coerces every field to its declared type before encoding, so a
column never mixes them. ``bool`` likewise is not ``int`` here (``True`` and ``1`` differ).

Subclasses of the supported types (``IntEnum``, ``StrEnum``, named tuples) encode as their
base type and decode as it.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from typing import Any, NoReturn, TypeAlias

from ..errors import CorruptionError, InvalidArgumentError, InvalidTypeError

__all__ = [
    "MAX_NESTING",
    "KeyFormat",
    "KeyTag",
    "KeyValue",
    "decode_key",
    "decode_tuple",
    "encode_key",
    "encode_keys",
    "encode_tuple",
    "prefix_end",
    "prefix_range",
    "successor",
]

KeyValue: TypeAlias = bool | int | float | str | bytes | date | datetime | uuid.UUID | tuple["KeyValue", ...] | None
"""A value that can be (part of) a key: the scalar types, and tuples of key values."""


class KeyFormat(IntEnum):
    """Versions of the key encoding (recorded by the layer that stores encoded keys)."""

    V1 = 1  # first release: the tags and layouts in this docstring


class KeyTag(IntEnum):
    """The first byte of each encoded value; numeric order is the cross-type order."""

    NONE = 0x04
    FALSE = 0x08
    TRUE = 0x09
    INT = 0x10
    FLOAT = 0x18
    STR = 0x20
    BYTES = 0x28
    DATE = 0x30
    DATETIME = 0x38  # naive: wall-clock fields
    DATETIME_UTC = 0x39  # aware: the UTC instant
    UUID = 0x40
    TUPLE = 0x50


MAX_NESTING = 32
"""How many tuple levels a key may hold: ``encode_key((1,))`` has one, ``encode_tuple(((1,),))``
one too (the sequence given to ``encode_tuple`` is not a level). Deeper keys are refused by
both ``encode_*`` (``InvalidArgumentError``) and ``decode_*`` (``CorruptionError``), which keeps
the recursion bounded on hostile input."""

_KEY = "<key>"  # the CorruptionError path: a key is not a file

# Plain ints for the hot paths (an IntEnum compare costs a method call).
_T_NONE, _T_FALSE, _T_TRUE = KeyTag.NONE.value, KeyTag.FALSE.value, KeyTag.TRUE.value
_T_INT, _T_FLOAT, _T_STR, _T_BYTES = KeyTag.INT.value, KeyTag.FLOAT.value, KeyTag.STR.value, KeyTag.BYTES.value
_T_DATE, _T_DT, _T_DTZ = KeyTag.DATE.value, KeyTag.DATETIME.value, KeyTag.DATETIME_UTC.value
_T_UUID, _T_TUPLE = KeyTag.UUID.value, KeyTag.TUPLE.value

_B_NONE, _B_FALSE, _B_TRUE = bytes([_T_NONE]), bytes([_T_FALSE]), bytes([_T_TRUE])
_B_STR, _B_BYTES, _B_UUID, _B_TUPLE = bytes([_T_STR]), bytes([_T_BYTES]), bytes([_T_UUID]), bytes([_T_TUPLE])
_END = b"\x00"  # end of tuple
_TERM = b"\x00\x00"  # end of str / bytes
_NUL, _ESC_NUL = b"\x00", b"\x00\xff"

# Int headers: _POS_HDR[k] / _NEG_HDR[k] is tag + header for a k-byte magnitude, k <= 8.
_SMALL_MAX = 8
_H_ZERO = 0x80
_H_BIG_POS, _H_BIG_NEG = 0xFF, 0x00
_POS_HDR = tuple(bytes([_T_INT, _H_ZERO + k]) for k in range(_SMALL_MAX + 1))
_NEG_HDR = tuple(bytes([_T_INT, _H_ZERO - k]) for k in range(_SMALL_MAX + 1))
_NEG_BIAS = tuple((1 << (8 * k)) - 1 for k in range(_SMALL_MAX + 1))  # n + bias = one's complement
_BIG_POS_HDR = bytes([_T_INT, _H_BIG_POS])
_BIG_NEG_HDR = bytes([_T_INT, _H_BIG_NEG])
_U64_MAX = (1 << 64) - 1
_SMALL_LIMIT = 1 << (8 * _SMALL_MAX)  # ints in [0, _SMALL_LIMIT) take the fast path

# Floats are sign-flipped bytewise: a table lookup and bytes.translate beat int arithmetic.
_B_FLOAT = bytes([_T_FLOAT])
_FLOAT_POS_HDR = tuple(bytes([_T_FLOAT, b | 0x80]) for b in range(256))  # encode, sign bit clear
_FLOAT_POS_FIRST = tuple(bytes([b & 0x7F]) for b in range(256))  # decode, sign bit set
_INVERT = bytes(range(255, -1, -1))
_DOUBLE = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_TAG_U64 = struct.Struct(">BQ")
_TAG_U32 = struct.Struct(">BI")

_US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1, 1, 1)
_EPOCH_UTC = datetime(1, 1, 1, tzinfo=UTC)
_MAX_ORDINAL = date.max.toordinal()
_MAX_US = (datetime.max - _EPOCH) // timedelta(microseconds=1)


# ---------------------------------------------------------------------------------------------
# Encoding


def encode_key(value: KeyValue) -> bytes:
    """The order-preserving encoding of one value (a tuple value is tagged and terminated).

    Raises ``InvalidTypeError`` for an unsupported type (naming it) and
    ``InvalidArgumentError`` for NaN, an aware datetime outside the UTC range, or tuples
    nested deeper than ``MAX_NESTING``. Never returns ``b""``.
    """
    # Fast paths for the common key types; everything else goes through _encode.
    # (``v: Any`` because mypy does not narrow on ``t is int``; ``out: bytes`` types the result.)
    t = type(value)
    out: bytes
    if t is int:
        v: Any = value
        if v >= 0:
            k = (v.bit_length() + 7) >> 3
            if k <= _SMALL_MAX:
                out = _POS_HDR[k] + v.to_bytes(k, "big")
                return out
        return _encode_int(v)
    if t is str:
        v = value
        out = _B_STR + v.encode("utf-8", "surrogatepass").replace(_NUL, _ESC_NUL) + _TERM
        return out
    return _encode(value, 0)


_CACHEABLE = frozenset({int, str, bytes, type(None)})  # never equal across types: a dict keyed by value is exact


def encode_keys(values: Sequence[KeyValue]) -> list[bytes]:
    """``[encode_key(v) for v in values]``, faster for the entity layer's columns: small
    non-negative ints in one comprehension without a call per value, and columns of ints,
    str, bytes and None with many repeats (an index on a city) encoded once per distinct
    value. (Not floats or bools: ``0.0 == -0.0`` and ``1 == True`` but their keys differ.)
    Errors as ``encode_key``."""
    types = set(map(type, values))
    if types == {int}:
        hdr = _POS_HDR
        try:
            return [hdr[(k := (v.bit_length() + 7) >> 3)] + v.to_bytes(k, "big") for v in values]  # type: ignore[union-attr]
        except (IndexError, OverflowError):  # a negative or a big int: the general path
            pass
    if len(values) >= 64 and types <= _CACHEABLE:
        distinct = set(values)
        if len(distinct) * 2 <= len(values):
            encoded = {v: encode_key(v) for v in distinct}
            return [encoded[v] for v in values]
    return list(map(encode_key, values))


def encode_tuple(values: Sequence[KeyValue]) -> bytes:
    """The encodings of ``values`` concatenated, without a tuple tag or terminator.

    This is the form for composite keys: ``encode_tuple(p)`` is a byte prefix of
    ``encode_tuple(p + q)``, and ``encode_tuple((v,)) == encode_key(v)``. Compare
    ``encode_key((a, b))``, a *value* that is a tuple: ``0x50``, the same bytes, ``0x00``.
    ``encode_tuple(())`` is ``b""``. Errors as ``encode_key``, plus ``InvalidTypeError`` when
    ``values`` is not a sequence (or is a str or bytes).
    """
    tv = type(values)
    if tv is not tuple and tv is not list:
        if isinstance(values, str | bytes | bytearray | memoryview) or not isinstance(values, Sequence):
            raise InvalidTypeError(f"encode_tuple() takes a sequence of key values, got {tv.__name__}")
    return _encode_items(values, 0)


def _encode_items(values: Any, depth: int) -> bytes:
    """The concatenated encodings of ``values`` (tuple elements at nesting ``depth``), with the
    str and small-int cases inlined: a composite key pays one call, not one per element."""
    parts: list[bytes] = []
    append = parts.append
    for v in values:
        t = type(v)
        if t is str:
            append(_B_STR + v.encode("utf-8", "surrogatepass").replace(_NUL, _ESC_NUL) + _TERM)
        elif t is int and 0 <= v < _SMALL_LIMIT:
            k = (v.bit_length() + 7) >> 3
            append(_POS_HDR[k] + v.to_bytes(k, "big"))
        else:
            append(_encode(v, depth))
    return b"".join(parts)


def _encode(value: Any, depth: int) -> bytes:
    """``value``'s encoding; ``depth`` counts the tuples around it."""
    t = type(value)
    out: bytes
    if t is str:
        out = _B_STR + value.encode("utf-8", "surrogatepass").replace(_NUL, _ESC_NUL) + _TERM
        return out
    if t is int:
        return _encode_int(value)
    if t is float:
        return _encode_float(value)
    if t is tuple:
        if depth >= MAX_NESTING:
            raise InvalidArgumentError(f"key tuples may nest at most {MAX_NESTING} deep")
        return _B_TUPLE + _encode_items(value, depth + 1) + _END
    encoder = _ENCODERS.get(t)
    if encoder is not None:
        out = encoder(value)
        return out
    return _encode_subclass(value, depth)


def _encode_int(n: int) -> bytes:
    if n >= 0:
        k = (n.bit_length() + 7) >> 3
        if k <= _SMALL_MAX:
            return _POS_HDR[k] + n.to_bytes(k, "big")
        return _BIG_POS_HDR + _U64.pack(k) + n.to_bytes(k, "big")
    k = ((-n).bit_length() + 7) >> 3
    if k <= _SMALL_MAX:
        return _NEG_HDR[k] + (n + _NEG_BIAS[k]).to_bytes(k, "big")
    return _BIG_NEG_HDR + _U64.pack(_U64_MAX - k) + (n + (1 << (8 * k)) - 1).to_bytes(k, "big")


def _encode_none(_value: None) -> bytes:
    return _B_NONE


def _encode_bool(value: bool) -> bytes:
    return _B_TRUE if value else _B_FALSE


def _encode_float(value: float) -> bytes:
    if value != value:
        raise InvalidArgumentError("NaN cannot be part of a key: it is not ordered and not equal to itself")
    b = _DOUBLE.pack(value)
    if b[0] < 0x80:  # sign bit clear: set it (the first byte and the tag come from a table)
        return _FLOAT_POS_HDR[b[0]] + b[1:]
    return _B_FLOAT + b.translate(_INVERT)  # negative: invert every bit


def _encode_bytes(value: bytes) -> bytes:
    return _B_BYTES + value.replace(_NUL, _ESC_NUL) + _TERM


def _encode_date(value: date) -> bytes:
    return _TAG_U32.pack(_T_DATE, value.toordinal())


def _encode_datetime(value: datetime) -> bytes:
    us = (
        (value.toordinal() - 1) * _US_PER_DAY
        + ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000
        + value.microsecond
    )
    offset = value.utcoffset() if value.tzinfo is not None else None
    if offset is None:  # naive (tzinfo None, or a tzinfo that says "unknown")
        return _TAG_U64.pack(_T_DT, us)
    us -= offset // timedelta(microseconds=1)
    if not 0 <= us <= _MAX_US:
        raise InvalidArgumentError(f"aware datetime {value.isoformat()} is outside the datetime range in UTC")
    return _TAG_U64.pack(_T_DTZ, us)


def _encode_uuid(value: uuid.UUID) -> bytes:
    return _B_UUID + value.bytes


_ENCODERS: dict[type, Any] = {
    type(None): _encode_none,
    bool: _encode_bool,
    bytes: _encode_bytes,
    date: _encode_date,
    datetime: _encode_datetime,
    uuid.UUID: _encode_uuid,
}


def _encode_subclass(value: Any, depth: int) -> bytes:
    """Subclasses of the supported types encode as their base type; anything else is refused.
    ``datetime`` is checked before ``date`` (its base class); ``bool`` cannot be subclassed."""
    # The unbound base-class methods, so a subclass's overrides cannot change the bytes.
    if isinstance(value, int):
        return _encode_int(int.__int__(value))
    if isinstance(value, float):
        return _encode_float(float.__float__(value))
    if isinstance(value, str):
        return _B_STR + str.encode(value, "utf-8", "surrogatepass").replace(_NUL, _ESC_NUL) + _TERM
    if isinstance(value, bytes):
        return _B_BYTES + bytes.replace(value, _NUL, _ESC_NUL) + _TERM
    if isinstance(value, datetime):
        return _encode_datetime(value)
    if isinstance(value, date):
        return _encode_date(value)
    if isinstance(value, uuid.UUID):
        return _encode_uuid(value)
    if isinstance(value, tuple):
        return _encode(tuple(value), depth)
    raise InvalidTypeError(
        f"a value of type {type(value).__qualname__} cannot be part of a key (supported: None, bool, int, "
        "float, str, bytes, datetime.date, datetime.datetime, uuid.UUID and tuples of these)"
    )


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_key(data: bytes | bytearray | memoryview) -> KeyValue:
    """The value ``encode_key`` encoded as ``data`` (exactly one value, no trailing bytes).

    Values come back with their base type: ``-0.0`` keeps its sign, an aware datetime comes
    back in UTC. Raises ``CorruptionError`` (``path="<key>"``, ``offset`` the byte at fault)
    for empty, truncated, non-canonical or otherwise malformed input.
    """
    if type(data) is not bytes:
        data = _as_bytes(data)
    if not data:
        _corrupt("empty key", 0)
    value, pos = _decode_at(data, 0, 0)
    if pos != len(data):
        _corrupt(f"{len(data) - pos} trailing bytes after the key", pos)
    return value


def decode_tuple(data: bytes | bytearray | memoryview) -> tuple[KeyValue, ...]:
    """The values ``encode_tuple`` encoded as ``data`` (``b""`` is the empty tuple).

    Raises ``CorruptionError`` as ``decode_key`` does.
    """
    if type(data) is not bytes:
        data = _as_bytes(data)
    end = len(data)
    pos = 0
    out: list[KeyValue] = []
    while pos < end:
        value, pos = _decode_at(data, pos, 0)
        out.append(value)
    return tuple(out)


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise InvalidTypeError(f"encoded keys are bytes, got {type(data).__name__}")


def _corrupt(message: str, offset: int) -> NoReturn:
    raise CorruptionError(f"malformed encoded key: {message}", path=_KEY, offset=offset)


def _decode_at(data: bytes, pos: int, depth: int) -> tuple[KeyValue, int]:
    """Decode the value whose tag is at ``data[pos]`` (``pos < len(data)``); return it and the
    offset just past it."""
    tag = data[pos]
    start = pos + 1
    if tag == _T_STR or tag == _T_BYTES:
        end = data.find(_NUL, start)
        if end < 0:
            _corrupt("string or bytes without its 00 00 terminator", start)
        if end + 1 < len(data) and data[end + 1] == 0:  # no NUL in the content (the usual case)
            raw = data[start:end]
        else:
            end = data.find(_TERM, end)
            if end < 0:
                _corrupt("string or bytes without its 00 00 terminator", start)
            raw = data[start:end]
            # Content may hold 0x00 only as the escape pair 00 ff (it cannot end with 0x00,
            # or find() would have stopped one byte earlier).
            if raw.count(_NUL) != raw.count(_ESC_NUL):
                _corrupt("unescaped 0x00 in a string or bytes", start + raw.index(_NUL))
            raw = raw.replace(_ESC_NUL, _NUL)
        if tag == _T_BYTES:
            return raw, end + 2
        try:
            return raw.decode("utf-8", "surrogatepass"), end + 2
        except UnicodeDecodeError as exc:
            _corrupt(f"invalid UTF-8 in a string ({exc.reason})", start + exc.start)
    # Then by how common each type is in keys; the rare ones pay a few more compares.
    if tag == _T_INT:
        return _decode_int(data, start)
    if tag == _T_UUID:
        if start + 16 > len(data):
            _corrupt("truncated UUID", start)
        return _new_uuid(int.from_bytes(data[start : start + 16], "big")), start + 16
    if tag == _T_DT or tag == _T_DTZ:
        if start + 8 > len(data):
            _corrupt("truncated datetime", start)
        (us,) = _U64.unpack_from(data, start)
        if us > _MAX_US:
            _corrupt("datetime out of range", start)
        return (_EPOCH if tag == _T_DT else _EPOCH_UTC) + timedelta(0, 0, us), start + 8
    if tag == _T_FLOAT:
        b = data[start : start + 8]
        if len(b) < 8:
            _corrupt("truncated float", start)
        (f,) = _DOUBLE.unpack(_FLOAT_POS_FIRST[b[0]] + b[1:] if b[0] & 0x80 else b.translate(_INVERT))
        if f != f:
            _corrupt("NaN float", start)
        return f, start + 8
    if tag == _T_NONE:
        return None, start
    if tag == _T_FALSE:
        return False, start
    if tag == _T_TRUE:
        return True, start
    if tag == _T_DATE:
        if start + 4 > len(data):
            _corrupt("truncated date", start)
        (ordinal,) = _U32.unpack_from(data, start)
        if not 1 <= ordinal <= _MAX_ORDINAL:
            _corrupt(f"date ordinal {ordinal} out of range", start)
        return date.fromordinal(ordinal), start + 4
    if tag == _T_TUPLE:
        if depth >= MAX_NESTING:
            _corrupt(f"tuples nested deeper than {MAX_NESTING}", pos)
        items: list[KeyValue] = []
        pos = start
        end = len(data)
        while True:
            if pos >= end:
                _corrupt("tuple without its end marker", pos)
            if data[pos] == 0:
                return tuple(items), pos + 1
            value, pos = _decode_at(data, pos, depth + 1)
            items.append(value)
    _corrupt(f"unknown type tag 0x{tag:02x}", pos)


def _new_uuid_fast(value: int) -> uuid.UUID:
    # What UUID.__init__ ends with, minus its argument checks: half the cost of UUID(int=...).
    u = _object_new(uuid.UUID)
    _object_setattr(u, "int", value)
    _object_setattr(u, "is_safe", _SAFE_UNKNOWN)
    return u


def _new_uuid_slow(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


_object_new = object.__new__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_object_setattr = object.__setattr__
# The fast constructor relies on UUID's slots ("int", "is_safe"), stable since Python 3.8;
# should they change, the public constructor takes over.
_new_uuid = _new_uuid_fast if set(getattr(uuid.UUID, "__slots__", ())) >= {"int", "is_safe"} else _new_uuid_slow


def _decode_int(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the int whose header byte is at ``data[pos]``."""
    end = len(data)
    if pos >= end:
        _corrupt("truncated int", pos)
    h = data[pos]
    pos += 1
    if _H_ZERO - _SMALL_MAX <= h <= _H_ZERO + _SMALL_MAX:
        if h >= _H_ZERO:
            k = h - _H_ZERO
            if pos + k > end:
                _corrupt("truncated int", pos)
            if k and data[pos] == 0:
                _corrupt("non-minimal int", pos)
            return int.from_bytes(data[pos : pos + k], "big"), pos + k
        k = _H_ZERO - h
        if pos + k > end:
            _corrupt("truncated int", pos)
        if data[pos] == 0xFF:
            _corrupt("non-minimal int", pos)
        return int.from_bytes(data[pos : pos + k], "big") - _NEG_BIAS[k], pos + k
    if h != _H_BIG_POS and h != _H_BIG_NEG:
        _corrupt(f"unknown int header 0x{h:02x}", pos - 1)
    if pos + 8 > end:
        _corrupt("truncated int length", pos)
    (k,) = _U64.unpack_from(data, pos)
    if h == _H_BIG_NEG:
        k = _U64_MAX - k
    pos += 8
    if k <= _SMALL_MAX:
        _corrupt("non-minimal int length", pos - 8)
    if pos + k > end:
        _corrupt("truncated int", pos)
    if data[pos] == (0 if h == _H_BIG_POS else 0xFF):
        _corrupt("non-minimal int", pos)
    magnitude = int.from_bytes(data[pos : pos + k], "big")
    return (magnitude if h == _H_BIG_POS else magnitude - (1 << (8 * k)) + 1), pos + k


# ---------------------------------------------------------------------------------------------
# Ranges over encoded keys


def successor(key: bytes) -> bytes:
    """The smallest byte string strictly greater than ``key``: ``key + b"\\x00"``.

    Use it to turn an inclusive bound into an exclusive one (``start = successor(last_seen)``
    resumes a scan just after ``last_seen``; ``stop = successor(k)`` makes ``k`` the last key).
    It is *not* past the keys that extend ``key``: for that, use ``prefix_end``.
    """
    return key + b"\x00"


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``prefix``.

    ``None`` when there is none (``prefix`` is empty or all ``0xff``): the range is unbounded
    above. For a non-empty ``encode_tuple`` result it is never ``None`` (tags are below
    ``0xff``), and ``prefix_end(encode_tuple(p))`` is the first key after every tuple starting
    with ``p``: an exclusive upper bound for ``<= p``, an inclusive lower one for ``> p``.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def prefix_range(prefix: bytes) -> tuple[bytes, bytes | None]:
    """``(start, stop)``: ``start <= key < stop`` holds exactly for the keys starting with
    ``prefix`` (``stop`` None: no upper bound). Since encodings are prefix-free,
    ``prefix_range(encode_tuple(p))`` covers exactly the keys whose tuple starts with ``p``."""
    return prefix, prefix_end(prefix)
