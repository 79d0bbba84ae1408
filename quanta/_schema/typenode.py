"""Declared types, parsed: the small tree the codec generators walk, and the type checks.

:func:`parse_type` turns a field's (resolved) annotation into a :class:`TypeNode`, or raises
:class:`UnsupportedType` for a type the codec cannot store (``entity.py`` turns that into a
``SchemaError`` naming the class and field). :func:`coerce` is the slow path of the generated
``check`` (``adapter.py``): the fast path calls it only when a value is not plainly of its
declared type.

Type checks: top-level field values must have their declared type exactly (``bool`` is not an
``int``; ``date`` excludes ``datetime``; an ``int`` in a ``float`` field is converted in
place). Elements of lists, tuples, sets and dicts are checked with one C pass over their
types; only when that finds something unexpected does a Python walk (:func:`coerce`) convert
ints to floats or name the offending element (``User.tags[3]: expected str, got int``).
Dataclass-typed fields are walked field by field.

Everything here is pure: no I/O, no shared mutable state.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, NoReturn

from ..errors import InvalidTypeError

__all__ = [
    "ANY_TYPES",
    "SCALAR_TYPES",
    "SUPPORTED",
    "TypeNode",
    "UnsupportedType",
    "any_problem",
    "coerce",
    "parse_type",
    "strip_annotated",
    "type_label",
]

_object_setattr = object.__setattr__


class UnsupportedType(Exception):
    """A declared type the codec cannot store; the entity layer turns it into a SchemaError
    naming the class and field."""


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
    node is registered so that recursive dataclasses terminate), ``link`` and ``links`` (a
    ``quanta.Link``/``Links`` field; ``py`` its ``links.LinkSpec``; made by the entity layer,
    never by :func:`parse_type`).
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
    if k in ("link", "links"):
        return f"{'Links' if k == 'links' else 'Link'}[{node.py.target_name}]"  # py: the LinkSpec
    if k == "vtuple":
        return f"tuple[{type_label(node.args[0])}, ...]"
    inner = ", ".join(type_label(a) for a in node.args) if node.args else "()"
    return f"{k}[{inner}]"


_ANY = TypeNode("any")
_CONTAINERS: dict[Any, str] = {list: "list", set: "set", frozenset: "frozenset", tuple: "tuple", dict: "dict"}
SUPPORTED = (
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
            raise UnsupportedType(f"unsupported type {_show(tp)}: a union other than X | None (supported: {SUPPORTED})")
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
    raise UnsupportedType(f"unsupported type {_show(tp)}{hint} (supported: {SUPPORTED})")


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
# Validation: the slow path of ``check`` (the generated fast path calls it only when a value
# is not plainly of its declared type).


ANY_TYPES: frozenset[type] = frozenset(
    {_NONE, bool, int, float, str, bytes, datetime, date, time, timedelta, Decimal, uuid.UUID}
)
"""The scalar classes an ``Any`` position stores exactly (besides list, tuple, dict, set and
frozenset of them). Subclasses (Enum members, IntEnum, str subclasses, ...) are refused: they
would read back as their base class."""
_ANY_LABEL = (
    "None, bool, int, float, str, bytes, datetime, date, time, timedelta, Decimal, UUID and "
    "list, tuple, dict, set, frozenset of them"
)


def any_problem(v: Any, path: str) -> None:
    """Raise ``InvalidTypeError`` naming ``path`` and the offending part (``Item.meta[2][0]``)
    if ``v`` holds anything an ``Any`` position cannot store exactly (see :data:`ANY_TYPES`)."""
    try:
        found = _any_bad(v)
    except RecursionError:
        raise InvalidTypeError(f"{path}: the value is nested too deeply to be stored") from None
    if found is not None:
        where, bad = found
        raise InvalidTypeError(
            f"{path}{where}: a value of type {type(bad).__qualname__} cannot be stored exactly in an Any "
            f"position (it would read back as another type); storable there: {_ANY_LABEL}"
        )


def _any_bad(v: Any) -> tuple[str, Any] | None:
    """``(path suffix, offending value)`` of the first unstorable part of ``v``, or None."""
    c = v.__class__
    if c in ANY_TYPES:
        return None
    if c is list or c is tuple:
        for i, x in enumerate(v):
            if x.__class__ not in ANY_TYPES and (found := _any_bad(x)) is not None:
                return f"[{i}]{found[0]}", found[1]
        return None
    if c is dict:
        for k, x in v.items():
            if k.__class__ not in ANY_TYPES and (found := _any_bad(k)) is not None:
                return f" key {k!r}{found[0]}", found[1]
            if x.__class__ not in ANY_TYPES and (found := _any_bad(x)) is not None:
                return f"[{k!r}]{found[0]}", found[1]
        return None
    if c is set or c is frozenset:
        for x in v:
            if x.__class__ not in ANY_TYPES and (found := _any_bad(x)) is not None:
                return f" element {x!r}{found[0]}", found[1]
        return None
    return "", v


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
                try:
                    return float(v)
                except OverflowError:
                    raise InvalidTypeError(f"{path}: the int {v} is too large for a float") from None
        elif t is date:
            if isinstance(v, date) and not isinstance(v, datetime):
                return v
        elif isinstance(v, t):
            return v
        _fail(shown, v, path)
    if k == "any":
        if v.__class__ not in ANY_TYPES:
            any_problem(v, path)
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
