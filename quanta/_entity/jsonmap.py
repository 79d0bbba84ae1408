r"""The JSON mapping of entity values: what ``Query.to_dicts()`` returns and what a JSON Lines
export (``quanta/_transfer``) writes, and its inverse for an import.

A value's JSON form depends on the type it is declared with (its parsed
``quanta._schema.typenode.TypeNode``). Where the declaration says the type, the JSON is the
plain form a web client expects (an ISO 8601 string for a datetime, a string for a UUID);
where it does not (an ``Any`` field, and the contents of ``Any``), the JSON carries a tag, a
one-key object ``{"$tag": form}``, for every type JSON has no literal for. The mapping is
exact: decoding the JSON of a value with the same declaration gives a value that encodes to
the same stored bytes (the same type, sign of zero, NaN bits, zone, fold, dict order)::

    declared              JSON in a declared position       JSON in an Any position
    None                  null                              null
    bool                  true / false                      true / false
    int (any size)        number                            number
    float                 number (-0.0 kept)                number
      nan, inf, -inf      {"$float": "nan"|"inf"|"-inf"}    the same
      NaN, other bits     {"$float": "nan:7ff8000000000001"} (the 16 hex digits of the double)
    str                   string                            string
      with surrogates     {"$str": base64 of its UTF-8 with surrogates passed through}
    bytes                 base64 string (RFC 4648, padded)  {"$bytes": base64}
    datetime              ISO 8601 string (see below)       {"$datetime": the string}
    date                  "2024-05-01"                      {"$date": ...}
    time                  ISO 8601 string (see below)       {"$time": ...}
    timedelta             "P1DT3600.000001S", "-P0DT1S"     {"$timedelta": ...}
    Decimal               str(d): "1.50", "-0", "NaN"       {"$decimal": ...}
    UUID                  "1b4e28ba-2fa1-11d2-883f-0016d3cca427"   {"$uuid": ...}
    Enum member           its value, as in an Any position  (refused in Any, as on put)
    list[T]               array                             array
    tuple[...]            array                             {"$tuple": array}
    set[T], frozenset[T]  array                             {"$set": array}, {"$frozenset": array}
    dict[str, V]          object (order kept)               object, when every key is a str
                                                            not starting with "$"
    dict[K, V], K not str array of [key, value] pairs       {"$dict": [[key, value], ...]}
      (or a str key with surrogates)
    T | None              null or T's form                  -
    dataclass             object of its fields, in order    -
    Link[T]               the target's primary key (T's key type's form)
    Links[T]              array of primary keys

Datetimes and times: ``datetime.isoformat()`` (``2024-05-01T12:30:00.250000+02:00``), then
optional suffixes in brackets: the zone key of a ``zoneinfo.ZoneInfo`` zone
(``...+02:00[Europe/Oslo]``; on import the key decides the offset), ``[tzname=EST]`` for a
``timezone(offset, "EST")`` with a name of its own (percent-encoded), ``[fold=1]`` when fold
is set. A ``time`` in a ZoneInfo zone has no offset: ``12:30:00[Europe/Oslo]``.

Big ints are exact in Python's ``json`` (JavaScript readers lose precision past 2**53).
A str with surrogate code points (``"\udc80"``, which Python strings may hold and UTF-8
cannot) is tagged ``$str``: JSON's only way to write one, a ``\u`` escape, turns an escaped
high and low surrogate in a row into one character.

Everything here is pure. An encoder or decoder is built once per call of
:func:`entity_encoder`/:func:`entity_decoder` (one closure per position of the declared type),
then applied to every object: an export or import builds them once per entity.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import uuid
import zoneinfo
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any
from urllib.parse import quote, unquote

from .._schema import ANY_TYPES, EntityInfo, Link, TypeNode, any_problem
from ..errors import InvalidTypeError

__all__ = [
    "JsonDecoder",
    "JsonEncoder",
    "any_from_json",
    "any_to_json",
    "entity_decoder",
    "entity_dicts",
    "entity_encoder",
    "json_decoder",
    "json_encoder",
]

JsonEncoder = Callable[[Any], Any]
JsonDecoder = Callable[[Any, str], Any]
"""``decode(json_value, path)``: the Python value, or ``InvalidTypeError`` naming ``path``."""

_DOUBLE = struct.Struct(">d")
_BITS = struct.Struct(">Q")
_CANONICAL_NAN = 0x7FF8000000000000
_ZoneInfo = zoneinfo.ZoneInfo

# ------------------------------------------------------------------------------- scalars


def _float_json(v: float) -> Any:
    if math.isfinite(v):
        return v
    if v != v:
        bits = _BITS.unpack(_DOUBLE.pack(v))[0]
        return {"$float": "nan" if bits == _CANONICAL_NAN else f"nan:{bits:016x}"}
    return {"$float": "inf" if v > 0 else "-inf"}


def _float_from(j: Any, path: str) -> float:
    t = type(j)
    if t is float:
        return j  # type: ignore[no-any-return]
    if t is int:
        try:
            return float(j)
        except OverflowError:
            raise InvalidTypeError(f"{path}: the int {j} is too large for a float") from None
    if t is dict and len(j) == 1 and type(s := j.get("$float")) is str:
        if s == "nan":
            return math.nan
        if s == "inf":
            return math.inf
        if s == "-inf":
            return -math.inf
        if s.startswith("nan:") and len(s) == 20:
            try:
                f: float = _DOUBLE.unpack(bytes.fromhex(s[4:]))[0]
            except ValueError:
                pass
            else:
                if f != f:
                    return f
    raise _bad(path, "float", j)


def _str_json(v: str) -> Any:
    """A str, or ``{"$str": base64}`` (its UTF-8 with surrogates passed through) for a str
    holding surrogate code points: JSON can write a lone surrogate only as a ``\\u`` escape,
    and two such escapes in a row read back as one character (``"\\ud800\\udc00"`` is
    U+10000), so such strings are not written as JSON strings."""
    if v.isascii():
        return v
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return {"$str": base64.b64encode(v.encode("utf-8", "surrogatepass")).decode("ascii")}
    return v


def _plain_key(k: Any) -> bool:
    """Can ``k`` be an object key as it is (a str with no surrogates)?"""
    return k.__class__ is str and (k.isascii() or _str_json(k) is k)


def _str_from(j: Any, path: str) -> str:
    if type(j) is str:
        return j
    if type(j) is dict and len(j) == 1 and type(b := j.get("$str")) is str:
        try:
            return base64.b64decode(b.encode("ascii"), validate=True).decode("utf-8", "surrogatepass")
        except (binascii.Error, UnicodeError):
            pass
    raise _bad(path, "str", j)


def _bytes_json(v: bytes) -> str:
    return base64.b64encode(v).decode("ascii")


def _bytes_from(j: Any, path: str) -> bytes:
    if type(j) is str:
        try:
            return base64.b64decode(j.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            pass
    raise _bad(path, "bytes (base64)", j)


def _zone_suffix(tz: tzinfo | None, fold: int) -> str:
    out = ""
    if tz is not None:
        key = getattr(tz, "key", None) if type(tz) is _ZoneInfo else None
        if key is not None:
            out = f"[{key}]"
        elif type(tz) is timezone:
            name = tz.tzname(None)
            offset = tz.utcoffset(None)
            if name != timezone(offset).tzname(None):
                out = f"[tzname={quote(name, safe='', errors='surrogatepass')}]"
    if fold:
        out += "[fold=1]"
    return out


def _datetime_json(v: datetime) -> str:
    tz = v.tzinfo
    base = v.isoformat()
    if tz is not None and v.utcoffset() is None:  # pragma: no cover - refused on put
        raise InvalidTypeError(f"the tzinfo {tz!r} gives no UTC offset here")
    return base + _zone_suffix(tz, v.fold)


def _time_json(v: time) -> str:
    return v.isoformat() + _zone_suffix(v.tzinfo, v.fold)


_SUFFIX = re.compile(r"\[([^\[\]]*)\]$")


def _split_suffixes(s: str) -> tuple[str, str | None, str | None, int]:
    """``(iso part, zone key, tzname, fold)`` of a datetime or time string."""
    key: str | None = None
    name: str | None = None
    fold = 0
    tags: list[str] = []
    while (m := _SUFFIX.search(s)) is not None:
        tags.append(m.group(1))
        s = s[: m.start()]
    for tag in reversed(tags):
        if tag == "fold=1":
            fold = 1
        elif tag.startswith("tzname="):
            name = unquote(tag[7:], errors="surrogatepass")
        elif "=" not in tag and tag:
            key = tag
        else:
            raise ValueError(f"unknown suffix [{tag}]")
    return s, key, name, fold


def _zone(key: str | None, name: str | None, tz: tzinfo | None) -> tzinfo | None:
    if key is not None:
        try:
            return _ZoneInfo(key)
        except Exception:
            raise ValueError(f"unknown time zone {key!r}") from None
    if name is not None:
        offset = tz.utcoffset(None) if tz is not None else None
        if offset is None:
            raise ValueError("a [tzname=...] needs a UTC offset")
        return timezone(offset, name)
    return tz


def _datetime_from(j: Any, path: str) -> datetime:
    if type(j) is str:
        try:
            iso, key, name, fold = _split_suffixes(j)
            v = datetime.fromisoformat(iso)
            tz = _zone(key, name, v.tzinfo)
            return v.replace(tzinfo=tz, fold=fold)
        except ValueError:
            pass
    raise _bad(path, "datetime (ISO 8601)", j)


def _time_from(j: Any, path: str) -> time:
    if type(j) is str:
        try:
            iso, key, name, fold = _split_suffixes(j)
            v = time.fromisoformat(iso)
            return v.replace(tzinfo=_zone(key, name, v.tzinfo), fold=fold)
        except ValueError:
            pass
    raise _bad(path, "time (ISO 8601)", j)


def _date_from(j: Any, path: str) -> date:
    if type(j) is str and len(j) == 10:
        try:
            return date.fromisoformat(j)
        except ValueError:
            pass
    raise _bad(path, "date (YYYY-MM-DD)", j)


def _timedelta_json(v: timedelta) -> str:
    sign = ""
    if v < timedelta(0):
        sign, v = "-", -v
    frac = f".{v.microseconds:06d}" if v.microseconds else ""
    return f"{sign}P{v.days}DT{v.seconds}{frac}S"


_TD = re.compile(r"(-?)P(\d+)DT(\d+)(?:\.(\d{6}))?S")


def _timedelta_from(j: Any, path: str) -> timedelta:
    if type(j) is str and (m := _TD.fullmatch(j)) is not None:
        try:
            v = timedelta(days=int(m.group(2)), seconds=int(m.group(3)), microseconds=int(m.group(4) or 0))
            return -v if m.group(1) else v
        except OverflowError:
            pass
    raise _bad(path, "timedelta (P<days>DT<seconds>S)", j)


def _decimal_from(j: Any, path: str) -> Decimal:
    if type(j) is str:
        try:
            return Decimal(j)
        except InvalidOperation:
            pass
    raise _bad(path, "Decimal (a string)", j)


def _uuid_from(j: Any, path: str) -> uuid.UUID:
    if type(j) is str:
        try:
            return uuid.UUID(j)
        except ValueError:
            pass
    raise _bad(path, "UUID (a string)", j)


def _bad(path: str, expected: str, j: Any) -> InvalidTypeError:
    shown = repr(j)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidTypeError(f"{path}: expected {expected}, got {shown}")


def _exact(t: type) -> JsonDecoder:
    label = t.__name__

    def dec(j: Any, path: str) -> Any:
        if type(j) is t:
            return j
        raise _bad(path, label, j)

    return dec


_TYPED_ENC: dict[type, JsonEncoder] = {
    str: _str_json,
    float: _float_json,
    bytes: _bytes_json,
    datetime: _datetime_json,
    date: date.isoformat,
    time: _time_json,
    timedelta: _timedelta_json,
    Decimal: str,
    uuid.UUID: str,
}
_TYPED_DEC: dict[type, JsonDecoder] = {
    int: _exact(int),
    str: _str_from,
    bool: _exact(bool),
    float: _float_from,
    bytes: _bytes_from,
    datetime: _datetime_from,
    date: _date_from,
    time: _time_from,
    timedelta: _timedelta_from,
    Decimal: _decimal_from,
    uuid.UUID: _uuid_from,
}

# ------------------------------------------------------------------------------- Any

_TAGS: dict[type, str] = {
    bytes: "$bytes",
    datetime: "$datetime",
    date: "$date",
    time: "$time",
    timedelta: "$timedelta",
    Decimal: "$decimal",
    uuid.UUID: "$uuid",
}
_UNTAG: dict[str, JsonDecoder] = {tag: _TYPED_DEC[t] for t, tag in _TAGS.items()}


def any_to_json(v: Any) -> Any:
    """The JSON form of a value of an ``Any`` position (the right column of the table)."""
    c = v.__class__
    if c is int or c is bool or v is None:
        return v
    if c is str:
        return _str_json(v)
    if c is float:
        return _float_json(v)
    tag = _TAGS.get(c)
    if tag is not None:
        return {tag: _TYPED_ENC[c](v)}
    if c is list:
        return [any_to_json(x) for x in v]
    if c is tuple:
        return {"$tuple": [any_to_json(x) for x in v]}
    if c is set:
        return {"$set": [any_to_json(x) for x in v]}
    if c is frozenset:
        return {"$frozenset": [any_to_json(x) for x in v]}
    if c is dict:
        if all(_plain_key(k) and not k.startswith("$") for k in v):
            return {k: any_to_json(x) for k, x in v.items()}
        return {"$dict": [[any_to_json(k), any_to_json(x)] for k, x in v.items()]}
    if isinstance(v, Enum):  # an enum's value in a declared enum position
        return any_to_json(v.value)
    if c in ANY_TYPES:  # pragma: no cover - every member is handled above
        return v
    any_problem(v, "value")
    raise InvalidTypeError(f"a value of type {c.__qualname__} has no JSON form")  # pragma: no cover


def _dict_from_pairs(
    pairs: list[Any], path: str, kdec: Callable[[Any, str], Any], vdec: Callable[[Any, str], Any]
) -> dict[Any, Any]:
    """A dict from its JSON form as ``[[key, value], ...]`` (keys that JSON objects cannot
    hold), each key and value decoded by ``kdec``/``vdec``."""
    out: dict[Any, Any] = {}
    for i, pair in enumerate(pairs):
        if type(pair) is not list or len(pair) != 2:
            raise _bad(f"{path}[{i}]", "a [key, value] pair", pair)
        key = kdec(pair[0], f"{path} key")
        try:
            out[key] = vdec(pair[1], f"{path}[{key!r}]")
        except TypeError as exc:
            if isinstance(exc, InvalidTypeError):
                raise
            raise InvalidTypeError(f"{path}: the key {key!r} cannot be hashed") from None
    return out


def any_from_json(j: Any, path: str) -> Any:
    """The inverse of :func:`any_to_json`; ``InvalidTypeError`` naming ``path`` for JSON that
    is no value's form."""
    c = j.__class__
    if c is str or c is int or c is bool or c is float or j is None:
        return j
    if c is list:
        return [any_from_json(x, f"{path}[{i}]") for i, x in enumerate(j)]
    if c is dict:
        if len(j) == 1:
            (tag, inner), *_ = j.items()
            if tag.startswith("$"):
                return _untag(tag, inner, path)
        if any(k.startswith("$") for k in j):
            raise InvalidTypeError(f"{path}: an object key starting with '$' must be a one-key tag")
        return {k: any_from_json(x, f"{path}[{k!r}]") for k, x in j.items()}
    raise _bad(path, "a JSON value", j)  # pragma: no cover - json.loads makes nothing else


def _untag(tag: str, inner: Any, path: str) -> Any:
    dec = _UNTAG.get(tag)
    if dec is not None:
        return dec(inner, path)
    if tag == "$float":
        return _float_from({tag: inner}, path)
    if tag == "$str":
        return _str_from({tag: inner}, path)
    if tag in ("$tuple", "$set", "$frozenset", "$dict"):
        if type(inner) is not list:
            raise _bad(path, f"an array in {tag}", inner)
        if tag == "$dict":
            return _dict_from_pairs(inner, path, any_from_json, any_from_json)
        items = [any_from_json(x, f"{path}[{i}]") for i, x in enumerate(inner)]
        if tag == "$tuple":
            return tuple(items)
        try:
            return set(items) if tag == "$set" else frozenset(items)
        except TypeError:
            raise InvalidTypeError(f"{path}: a {tag[1:]} element cannot be hashed") from None
    raise InvalidTypeError(f"{path}: unknown tag {tag!r}")


# ------------------------------------------------------------------------------- typed

LinkKey = Callable[[TypeNode], TypeNode]
"""For a ``link``/``links`` node: the node of the target's primary key."""


def _link_key(node: TypeNode) -> TypeNode:
    spec = node.py
    if spec is not None and hasattr(spec, "target_info"):
        info: EntityInfo = spec.target_info
        pk_node: TypeNode = info.pk_field.type_node
        return pk_node
    if node.args:  # a node built from a stored description: args[0] is the key's node
        return node.args[0]
    return TypeNode("any")


def json_encoder(node: TypeNode, link_key: LinkKey = _link_key) -> JsonEncoder:
    """The encoder of values declared as ``node`` (cached on the node per ``link_key``)."""
    return _Encoders(link_key).get(node)


class _Encoders:
    """Builds encoders, sharing them between equal positions of one tree (recursive
    dataclasses refer back to the encoder being built)."""

    def __init__(self, link_key: LinkKey) -> None:
        self.link_key = link_key
        self.made: dict[int, JsonEncoder] = {}
        self.keep: list[TypeNode] = []

    def get(self, node: TypeNode) -> JsonEncoder:
        found = self.made.get(id(node))
        if found is None:
            self.keep.append(node)  # ids stay unique while the tree is being walked
            found = self._make(node)
        return found

    def _make(self, node: TypeNode) -> JsonEncoder:
        k = node.kind
        if k == "any":
            return any_to_json
        if k == "scalar":
            return _TYPED_ENC.get(node.py, _same)
        if k == "enum":
            return _enum_json
        if k == "optional":
            inner = self.get(node.args[0])
            return lambda v: None if v is None else inner(v)
        if k in ("list", "vtuple", "set", "frozenset"):
            elem = self.get(node.args[0])
            if elem is _same:
                return list
            return lambda v: [elem(x) for x in v]
        if k == "tuple":
            encs = [self.get(a) for a in node.args]
            return lambda v: [e(x) for e, x in zip(encs, v, strict=True)]
        if k == "dict":
            kn, vn = node.args
            kenc, venc = self.get(kn), self.get(vn)
            if (kn.kind == "scalar" and kn.py is str) or kn.kind == "any":
                return lambda v: (
                    {key: venc(x) for key, x in v.items()}
                    if all(_plain_key(key) for key in v)
                    else [[kenc(key), venc(x)] for key, x in v.items()]
                )
            return lambda v: [[kenc(key), venc(x)] for key, x in v.items()]
        if k == "dataclass":
            cell: list[tuple[tuple[str, JsonEncoder], ...]] = []

            def enc_dc(v: Any) -> Any:
                fields = cell[0]
                if isinstance(v, (list, tuple)):  # the stored form: an array of the fields
                    return {name: f(x) for (name, f), x in zip(fields, v, strict=False)}
                if isinstance(v, dict):
                    return {name: f(v[name]) for name, f in fields if name in v}
                return {name: f(getattr(v, name)) for name, f in fields}

            self.made[id(node)] = enc_dc
            cell.append(tuple((name, self.get(sub)) for name, sub in node.fields))
            return enc_dc
        if k == "link":
            key = self.get(self.link_key(node))
            return lambda v: None if v is None else key(v.pk if isinstance(v, Link) else v)
        if k == "links":
            key = self.get(self.link_key(node))
            return lambda v: [key(x.pk if isinstance(x, Link) else x) for x in v]
        return any_to_json


def _same(v: Any) -> Any:
    return v


def _enum_json(v: Any) -> Any:
    return any_to_json(v.value if isinstance(v, Enum) else v)


def json_decoder(node: TypeNode, link_key: LinkKey = _link_key) -> JsonDecoder:
    """The decoder into values declared as ``node`` (an entity class's parsed type)."""
    return _Decoders(link_key).get(node)


class _Decoders:
    def __init__(self, link_key: LinkKey) -> None:
        self.link_key = link_key
        self.made: dict[int, JsonDecoder] = {}
        self.keep: list[TypeNode] = []

    def get(self, node: TypeNode) -> JsonDecoder:
        found = self.made.get(id(node))
        if found is None:
            self.keep.append(node)
            found = self._make(node)
        return found

    def _make(self, node: TypeNode) -> JsonDecoder:
        k = node.kind
        if k == "any":
            return any_from_json
        if k == "scalar":
            return _TYPED_DEC[node.py]
        if k == "enum":
            cls = node.py

            def dec_enum(j: Any, path: str) -> Any:
                value = any_from_json(j, path)
                try:
                    return cls(value)
                except (ValueError, TypeError):
                    raise InvalidTypeError(f"{path}: {value!r} is not a value of {cls.__qualname__}") from None

            return dec_enum
        if k == "optional":
            inner = self.get(node.args[0])
            return lambda j, path: None if j is None else inner(j, path)
        if k in ("list", "vtuple", "set", "frozenset"):
            elem = self.get(node.args[0])
            make: Callable[[Iterable[Any]], Any] = {"list": list, "vtuple": tuple, "set": set, "frozenset": frozenset}[
                k
            ]

            def dec_seq(j: Any, path: str) -> Any:
                if type(j) is not list:
                    raise _bad(path, f"an array ({node.label})", j)
                try:
                    return make(elem(x, f"{path}[{i}]") for i, x in enumerate(j))
                except TypeError as exc:
                    if isinstance(exc, InvalidTypeError):
                        raise
                    raise InvalidTypeError(f"{path}: an element cannot be hashed") from None

            return dec_seq
        if k == "tuple":
            decs = [self.get(a) for a in node.args]

            def dec_tuple(j: Any, path: str) -> Any:
                if type(j) is not list or len(j) != len(decs):
                    raise _bad(path, f"an array of {len(decs)} ({node.label})", j)
                return tuple(d(x, f"{path}[{i}]") for i, (d, x) in enumerate(zip(decs, j, strict=True)))

            return dec_tuple
        if k == "dict":
            kn, vn = node.args
            kdec, vdec = self.get(kn), self.get(vn)

            def dec_dict(j: Any, path: str) -> Any:
                if type(j) is dict:
                    return {kdec(key, f"{path} key"): vdec(x, f"{path}[{key!r}]") for key, x in j.items()}
                if type(j) is list:
                    return _dict_from_pairs(j, path, kdec, vdec)
                raise _bad(path, f"an object or an array of pairs ({node.label})", j)

            return dec_dict
        if k == "dataclass":
            cell: list[Fields] = []
            cls = node.py

            def dec_dc(j: Any, path: str) -> Any:
                if type(j) is not dict:
                    raise _bad(path, f"an object ({cls.__qualname__})", j)
                return build(cls, cell[0], j, path)

            self.made[id(node)] = dec_dc
            cell.append(tuple((name, self.get(sub), _fast(sub)) for name, sub in node.fields))
            return dec_dc
        if k == "link":
            key = self.get(self.link_key(node))
            return lambda j, path: None if j is None else key(j, path)
        if k == "links":
            key = self.get(self.link_key(node))

            def dec_links(j: Any, path: str) -> Any:
                if type(j) is not list:
                    raise _bad(path, f"an array of primary keys ({node.label})", j)
                return [key(x, f"{path}[{i}]") for i, x in enumerate(j)]

            return dec_links
        raise InvalidTypeError(f"no JSON decoder for {node.label}")  # pragma: no cover


_object_new = object.__new__
_object_setattr = object.__setattr__


class _Never:
    """No JSON value has this class: a field without a fast path."""


Fields = tuple[tuple[str, JsonDecoder, type], ...]
"""A dataclass's fields for :func:`build`: ``(name, decoder, fast)``, where a JSON value of
class ``fast`` is already the field's value (str, int, bool and float fields, also optional)."""


def _fast(node: TypeNode) -> type:
    if node.kind == "optional":
        node = node.args[0]
    if node.kind == "scalar" and node.py in (str, int, bool, float):
        return node.py  # type: ignore[no-any-return]
    return _Never


def build(cls: type, fields: Fields, j: dict[str, Any], path: str) -> Any:
    """An object of dataclass ``cls`` with every field decoded from ``j``, made as the record
    codec makes one (no ``__init__`` or ``__post_init__`` call: the fields are the data).
    Unknown and missing fields raise ``InvalidTypeError``."""
    if len(j) != len(fields):
        names = [name for name, _, _ in fields]
        unknown = [k for k in j if k not in names]
        if unknown:
            raise InvalidTypeError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}")
    obj: Any = _object_new(cls)
    for name, dec, fast in fields:
        try:
            v = j[name]
        except KeyError:
            missing = [n for n, _, _ in fields if n not in j]
            raise InvalidTypeError(f"{path}: missing field(s) {', '.join(map(repr, missing))}") from None
        if v.__class__ is not fast:
            v = dec(v, f"{path}.{name}")
        _object_setattr(obj, name, v)
    return obj


# ------------------------------------------------------------------------------- entities


def entity_encoder(info: EntityInfo) -> Callable[[Any], dict[str, Any]]:
    """An object of entity ``info`` (or its stored array of field values, without the
    version) -> its JSON object, fields in declaration order."""
    fields = tuple((f.name, json_encoder(f.type_node)) for f in info.fields)

    def enc(obj: Any) -> dict[str, Any]:
        return {name: f(getattr(obj, name)) for name, f in fields}

    return enc


def entity_decoder(info: EntityInfo) -> Callable[[Any], Any]:
    """A JSON object -> an (unchecked) object of entity ``info``; ``InvalidTypeError`` naming
    the field for a value of the wrong form. Run ``info.check`` on the result for the type
    checks, constraints and validators."""
    decoders = _Decoders(_link_key)
    fields = tuple((f.name, decoders.get(f.type_node), _fast(f.type_node)) for f in info.fields)
    cls, name = info.cls, info.name

    def dec(j: Any) -> Any:
        if type(j) is not dict:
            raise _bad(name, f"an object ({name})", j)
        return build(cls, fields, j, name)

    return dec


def entity_dicts(info: EntityInfo, objs: Iterable[Any]) -> list[dict[str, Any]]:
    """``Query.to_dicts()``: the JSON objects of ``objs`` (objects of entity ``info``)."""
    enc = entity_encoder(info)
    return [enc(obj) for obj in objs]
