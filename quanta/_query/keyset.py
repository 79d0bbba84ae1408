"""Key sets: what a predicate on one field selects, as intervals of encoded values.

The planner works in the byte space of the key codec (``quanta._codec``), never in value
space, so that its ranges are exact by construction. A predicate on one keyable field
compiles to a :class:`KeySet`: sorted, disjoint half-open intervals ``[lo, hi)`` of
``encode_key(value)`` bytes, such that

    **the predicate holds for a field value x  <=>  encode_key(x) lies in the key set**

for every value the field can hold (None, if optional, and values of its declared type).
``&``, ``|`` and ``~`` of predicates on one field are intersection, union and complement
(within the field's *domain*: None if optional, then the tag range of its type), so any
boolean combination of predicates on one field compiles, and stays exact.

Why the bounds are exact in an index, where a value is followed by more key bytes (the next
fields, then the primary key): every bound is either a complete encoding ``encode_key(v)``,
``prefix_end(encode_key(v))``, a tag byte, or a string/bytes prefix without its terminator
(and its ``prefix_end``). None of these has a complete encoding as a proper prefix (the
encoding is prefix-free, and a content prefix never contains the ``00 00`` terminator), so
``enc(x) < bound`` exactly when ``enc(x) + anything < bound``: an interval over the value
is the same interval over every key that starts with the value.

Value to bytes, for a field value x and a query value v::

    x == v        [enc(v), prefix_end(enc(v)))        every key starting with enc(v)
    x <  v        [tag floor of v, enc(v))             not None, not another type
    x <= v        [tag floor of v, prefix_end(enc(v)))
    x >  v        [prefix_end(enc(v)), tag ceiling of v)
    x.startswith(p)   [tag + content(p), prefix_end(tag + content(p)))
    x is None     [04, 05)

Two exceptions of Python's ``==`` to the codec's one-value-one-key rule are handled here:
``-0.0 == 0.0`` (two adjacent keys: ``x == 0.0`` is ``[enc(-0.0), prefix_end(enc(0.0)))``
and ``x < 0.0`` stops below ``enc(-0.0)``), and naive versus aware datetimes (different
tags; an order comparison between them is False, so order bounds stay inside the tag of
the query value, while ``!=`` spans both).

Every bound carries how to say it as a lower and as an upper bound, which is what
``Plan.explain()`` prints. Pure values and functions; no I/O.
"""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._codec import KeyTag, decode_key, encode_key, prefix_end
from .._schema import EntityInfo, FieldInfo
from ..errors import CorruptionError
from .expr import Between, Compare, Contains, Expr, In, IsNone, Leaf, Not, Or, StartsWith, _Junction
from .links import LinksAny

__all__ = [
    "Bound",
    "Interval",
    "KeySet",
    "compile_exists",
    "compile_scalar",
    "describe",
    "domain",
    "points",
]


@dataclass(frozen=True, slots=True)
class Bound:
    """A position in key space: ``key``, and how the interval reads when it starts here
    (``as_lo``, e.g. ``">= 30"``; empty for the start of a type) or ends here (``as_hi``).
    ``prefix`` marks the start of a ``startswith`` prefix."""

    key: bytes
    as_lo: str
    as_hi: str
    prefix: str | bytes | None = None


@dataclass(frozen=True, slots=True)
class Interval:
    """The keys ``k`` with ``lo.key <= k < hi.key``."""

    lo: Bound
    hi: Bound

    def __contains__(self, key: bytes) -> bool:
        return self.lo.key <= key < self.hi.key


KeySet = tuple[Interval, ...]
"""Sorted by ``lo.key``, pairwise disjoint, none empty. Intervals may touch (adjacent
points stay separate, so that they read as points)."""


def _end(key: bytes) -> bytes:
    end = prefix_end(key)
    assert end is not None  # a non-empty encoding never ends in 0xff only (tags are < 0xff)
    return end


_NEG_ZERO = encode_key(-0.0)
_ZERO_END = _end(encode_key(0.0))


def before(v: Any) -> Bound:
    """The position just before every key of ``v`` (for 0.0: before -0.0 too)."""
    low = -0.0 if type(v) is float and v == 0.0 else v
    return Bound(encode_key(low), f">= {v!r}", f"< {v!r}")


def after(v: Any) -> Bound:
    """The position just after every key of ``v`` (for -0.0: after 0.0 too)."""
    high = 0.0 if type(v) is float and v == 0.0 else v
    return Bound(_end(encode_key(high)), f"> {v!r}", f"<= {v!r}")


def point(v: Any) -> Interval:
    return Interval(before(v), after(v))


def _tag_bound(tag: int) -> Bound:
    return Bound(bytes([tag]), "", "")


def _type_tags(kt: type) -> tuple[int, int]:
    """``[first, last)`` tag bytes of the values of key type ``kt``."""
    if issubclass(kt, bool):
        return KeyTag.FALSE, KeyTag.TRUE + 1
    if issubclass(kt, int):
        return KeyTag.INT, KeyTag.INT + 1
    if issubclass(kt, float):
        return KeyTag.FLOAT, KeyTag.FLOAT + 1
    if issubclass(kt, str):
        return KeyTag.STR, KeyTag.STR + 1
    if issubclass(kt, bytes):
        return KeyTag.BYTES, KeyTag.BYTES + 1
    if issubclass(kt, datetime.datetime):
        return KeyTag.DATETIME, KeyTag.DATETIME_UTC + 1
    if issubclass(kt, datetime.date):
        return KeyTag.DATE, KeyTag.DATE + 1
    if issubclass(kt, uuid.UUID):
        return KeyTag.UUID, KeyTag.UUID + 1
    return KeyTag.NONE + 1, 0xFF  # unknown: everything but None


def _value_tags(v: Any) -> tuple[int, int]:
    """``[first, last)`` tags of the values an order comparison with ``v`` can accept."""
    if isinstance(v, bool):
        return KeyTag.FALSE, KeyTag.TRUE + 1
    tag = encode_key(v)[0]
    return tag, tag + 1


_NONE = point(None)


@functools.lru_cache(maxsize=256)
def domain(key_type: type, optional: bool) -> KeySet:
    """Every key a field of ``key_type`` can hold (None first if ``optional``)."""
    first, last = _type_tags(key_type)
    values = Interval(_tag_bound(first), _tag_bound(last))
    return (_NONE, values) if optional else (values,)


def _field_domain(fi: FieldInfo) -> KeySet:
    assert fi.key_type is not None
    return domain(fi.key_type, fi.optional)


def normalize(intervals: Iterable[Interval]) -> KeySet:
    """Sorted, empty intervals dropped, overlapping ones merged (touching ones kept apart)."""
    items = sorted((iv for iv in intervals if iv.lo.key < iv.hi.key), key=lambda iv: (iv.lo.key, iv.hi.key))
    out: list[Interval] = []
    for iv in items:
        if out and iv.lo.key < out[-1].hi.key:
            last = out[-1]
            if iv.hi.key > last.hi.key:
                out[-1] = Interval(last.lo, iv.hi)
        else:
            out.append(iv)
    return tuple(out)


def intersect(a: KeySet, b: KeySet) -> KeySet:
    """``a & b``. On equal keys the bound of ``b`` is kept (its wording is the predicate's)."""
    out: list[Interval] = []
    for x in a:
        for y in b:
            lo = y.lo if y.lo.key >= x.lo.key else x.lo
            hi = y.hi if y.hi.key <= x.hi.key else x.hi
            if lo.key < hi.key:
                out.append(Interval(lo, hi))
    return normalize(out)


def union(a: KeySet, b: KeySet) -> KeySet:
    return normalize((*a, *b))


def subtract(a: KeySet, b: KeySet) -> KeySet:
    """``a`` without ``b``."""
    out: list[Interval] = []
    for x in a:
        pieces = [x]
        for y in b:
            cut: list[Interval] = []
            for p in pieces:
                if y.hi.key <= p.lo.key or y.lo.key >= p.hi.key:
                    cut.append(p)
                    continue
                if p.lo.key < y.lo.key:
                    cut.append(Interval(p.lo, y.lo))
                if y.hi.key < p.hi.key:
                    cut.append(Interval(y.hi, p.hi))
            pieces = cut
        out.extend(pieces)
    return normalize(out)


def _point_keys(iv: Interval) -> list[bytes] | None:
    """The encodings of the values ``iv`` holds exactly, if it holds one (or -0.0 and 0.0)."""
    lo = iv.lo.key
    try:
        decode_key(lo)  # a complete encoding of one value, or not a point
    except CorruptionError:
        return None
    if iv.hi.key == prefix_end(lo):
        return [lo]
    if lo == _NEG_ZERO and iv.hi.key == _ZERO_END:
        return [lo, encode_key(0.0)]
    return None


def points(ks: KeySet) -> list[bytes] | None:
    """The encoded values if ``ks`` is a finite set of values (``[]`` for the empty set),
    in key order; None if it holds a range."""
    out: list[bytes] = []
    for iv in ks:
        keys = _point_keys(iv)
        if keys is None:
            return None
        out.extend(keys)
    return out


def describe(name: str, iv: Interval, element: bool = False) -> str:
    """``iv`` as a condition on field ``name`` (``element``: on an element of it)."""
    keys = _point_keys(iv)
    if keys is not None:
        values = [decode_key(k) for k in keys]
        if element:
            return " or ".join(f"{name} contains {v!r}" for v in values)
        if len(values) == 1:
            return f"{name} is None" if values[0] is None else f"{name} == {values[0]!r}"
        return f"{name} in {values!r}"
    p = iv.lo.prefix
    if p is not None and iv.hi.key == prefix_end(iv.lo.key):
        return f"{name}.startswith({p!r})"
    parts = [f"{name} {t}" for t in (iv.lo.as_lo, iv.hi.as_hi) if t]
    return " and ".join(parts) or f"{name} is not None"


# ---------------------------------------------------------------------------------------------
# Predicates to key sets


def _prefix_bounds(p: str | bytes) -> Interval:
    content = encode_key(p)[:-2]  # drop the 00 00 terminator: every value starting with p
    return Interval(
        Bound(content, f">= {p!r}", f"< {p!r}", prefix=p), Bound(_end(content), f"past {p!r}*", f"through {p!r}*")
    )


def _order_range(op: str, v: Any) -> Interval:
    first, last = _value_tags(v)
    floor, ceiling = _tag_bound(first), _tag_bound(last)
    if op == "<":
        return Interval(floor, before(v))
    if op == "<=":
        return Interval(floor, after(v))
    if op == ">":
        return Interval(after(v), ceiling)
    return Interval(before(v), ceiling)


def _leaf_keys(e: Leaf, dom: KeySet) -> KeySet:
    if isinstance(e, Compare):
        v = e.value
        if e.op == "==":
            return (point(v),)
        if e.op == "!=":
            not_none = subtract(dom, (_NONE,))
            return not_none if v is None else subtract(not_none, (point(v),))
        return (_order_range(e.op, v),)
    if isinstance(e, Between):
        lo_tags = _value_tags(e.lo)
        return intersect(
            (Interval(_tag_bound(lo_tags[0]), _tag_bound(lo_tags[1])),), (Interval(before(e.lo), after(e.hi)),)
        )
    if isinstance(e, In):
        return normalize(point(v) for v in e.values)
    if isinstance(e, StartsWith):
        return (_prefix_bounds(e.prefix),)
    if isinstance(e, IsNone):
        return subtract(dom, (_NONE,)) if e.negated else (_NONE,)
    raise TypeError(f"not a scalar predicate: {e!r}")  # pragma: no cover


_SCALAR_LEAVES = (Compare, Between, In, StartsWith, IsNone)


def compile_scalar(e: Expr, info: EntityInfo) -> tuple[str, KeySet] | None:
    """``(field name, key set)`` when ``e`` is a predicate on one keyable field, else None.

    Leaves on the field, and ``&`` / ``|`` / ``~`` of such predicates on the same field,
    compile; anything touching two fields, a collection field, or an unkeyable field does
    not (it stays a residual filter)."""
    if isinstance(e, _SCALAR_LEAVES):
        fi = info.field(e.field.name)
        if fi.key_type is None:
            return None
        dom = _field_domain(fi)
        return fi.name, intersect(dom, _leaf_keys(e, dom))
    if isinstance(e, Not):
        inner = compile_scalar(e.item, info)
        if inner is None:
            return None
        name, ks = inner
        return name, subtract(_field_domain(info.field(name)), ks)
    if isinstance(e, _Junction):
        parts = [compile_scalar(c, info) for c in e.items]
        first = parts[0]
        if first is None or any(p is None or p[0] != first[0] for p in parts):
            return None
        combine = union if isinstance(e, Or) else intersect
        ks = first[1]
        for p in parts[1:]:
            assert p is not None
            ks = combine(ks, p[1])
        return first[0], ks
    return None


def compile_exists(e: Expr, info: EntityInfo) -> tuple[str, KeySet] | None:
    """``(field name, key set of elements)`` when ``e`` says the collection field holds an
    element in the set: ``contains(f, v)``, a ``LinksAny`` (``quanta/_query/links.py``), or
    an ``|`` of such on one field. (``&`` of two ``contains`` is not one element set, and
    ``~`` is not an element set at all.)"""
    if isinstance(e, Contains):
        fi = info.field(e.field.name)
        if fi.element_key_type is None:
            return None
        dom = domain(fi.element_key_type, True)
        return fi.name, intersect(dom, (point(e.value),))
    if isinstance(e, LinksAny):  # a Links field holds one of several keys (what has(...) becomes)
        fi = info.field(e.field.name)
        if fi.element_key_type is None:  # pragma: no cover - a resolved link has its key type
            return None
        return fi.name, intersect(domain(fi.element_key_type, True), normalize(point(v) for v in e.values))
    if isinstance(e, Or):
        parts = [compile_exists(c, info) for c in e.items]
        first = parts[0]
        if first is None or any(p is None or p[0] != first[0] for p in parts):
            return None
        ks: KeySet = ()
        for p in parts:
            assert p is not None
            ks = union(ks, p[1])
        return first[0], ks
    return None
