"""Field constraints: ``Range``, ``Length``, ``Pattern`` and ``OneOf``, declared in annotations.

```python
age: Annotated[int, quanta.Range(0, 150)] = 0
name: Annotated[str, quanta.Length(min=1, max=80)]
code: Annotated[str, quanta.Pattern(r"[A-Z]{3}-\\d{4}")]
size: Annotated[str, quanta.OneOf("S", "M", "L")] = "M"
tags: list[Annotated[str, quanta.Length(max=20)]]       # on each element
nick: Annotated[str, quanta.Length(max=20)] | None      # None passes
```

A constraint is a plain immutable value (its bounds, pattern or allowed values: data a
schema catalog can store, see :meth:`Constraint.as_dict`) with one predicate,
:meth:`Constraint.holds`. The generated ``check`` (``validation.py``) evaluates an inline
expression per constraint and, only when one fails, :meth:`holds` per constraint to name each
violation; the two are written side by side below (``holds`` and ``expr``), so they accept
exactly the same values.

Where a constraint may go (anything else is a ``SchemaError`` naming the class and field, at
decoration time): on the field's type, also inside ``X | None`` (either
``Annotated[int, Range(0, 9)] | None`` or ``Annotated[int | None, Range(0, 9)]``; None always
passes); and on the element type of a ``list[T]``, ``set[T]``, ``frozenset[T]`` or
``tuple[T, ...]`` (``T`` may be optional too). Not on dict keys or values, elements of fixed
tuples, nested containers or fields of embedded dataclasses: a field validator covers those.

What each applies to: ``Range`` to int, float, Decimal, str, bytes, datetime, date, time,
timedelta and int or str Enums, with bounds of a comparable type (numbers for numbers, str for
str, date for date, ...); ``Length`` to str, bytes, list, tuple, set, frozenset and dict;
``Pattern`` to str (a str pattern) and bytes (a bytes pattern), matched with ``fullmatch``;
``OneOf`` to any type, with values of the field's type.

Pure values; no I/O, nothing shared.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar

from .typenode import TypeNode, coerce, type_label

__all__ = ["Constraint", "Length", "OneOf", "Pattern", "Range", "show_value"]


class Constraint(ABC):
    """Base class of the constraint markers. ``kind`` names it in :meth:`as_dict`."""

    __slots__ = ()
    kind: ClassVar[str] = ""

    @abstractmethod
    def holds(self, value: Any) -> bool:
        """Does ``value`` (of the field's type, not None) satisfy the constraint? May raise
        for a value that cannot be compared with a bound (an aware and a naive datetime, a
        Decimal NaN); the check counts that as a violation."""

    @abstractmethod
    def reason(self, value: Any) -> str:
        """What the rule asks, as the end of a sentence that starts with the field:
        ``must be between 0 and 150``."""

    @abstractmethod
    def as_dict(self) -> dict[str, Any]:
        """The constraint as plain data (``{"kind": "range", "min": 0, "max": 150}``)."""

    @abstractmethod
    def applies_to(self, node: TypeNode) -> str | None:
        """None if the constraint can apply to values of type ``node`` (never optional), else
        why not (the decorator raises it as a SchemaError naming the class and field)."""

    @abstractmethod
    def expr(self, x: str, const: Any, element: TypeNode | None = None) -> str:
        """A Python expression, true exactly when :meth:`holds` is true for the value named
        ``x``; given ``element`` (the elements' type, never optional), true exactly when it
        holds for every element of the collection named ``x``. ``const(value)`` returns the
        name of a constant in the generated namespace."""

    @abstractmethod
    def _key(self) -> tuple[Any, ...]:
        """What equality and hashing compare."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Constraint)
        return self._key() == other._key()

    def __hash__(self) -> int:
        try:
            return hash((type(self), self._key()))
        except TypeError:  # OneOf of unhashable values
            return hash((type(self), repr(self)))


def show_value(value: Any, limit: int = 60) -> str:
    """How messages show a value: repr for str, bytes and containers, str for numbers and
    dates; cut to ``limit`` characters."""
    if isinstance(value, Enum):
        text = f"{type(value).__name__}.{value.name}"
    elif isinstance(value, (int, float, Decimal, date, time, timedelta)) and not isinstance(value, bool):
        text = str(value)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad_bound(value: Any) -> bool:
    return (type(value) is float and math.isnan(value)) or (type(value) is Decimal and value.is_nan())


# ---------------------------------------------------------------------------------------------
# Range

_NUMBERS = (int, float, Decimal)
# The field's scalar type -> the types its bounds may have (bool never: it is no number here).
_RANGE_BOUNDS: dict[type, tuple[type, ...]] = {
    int: _NUMBERS,
    float: _NUMBERS,
    Decimal: _NUMBERS,
    str: (str,),
    bytes: (bytes,),
    datetime: (datetime,),
    date: (date,),
    time: (time,),
    timedelta: (timedelta,),
}
# Element types whose values are totally ordered, so min() and max() of a collection decide
# a range over all its elements in C (float and Decimal are not: NaN).
_MIN_MAX_SAFE = frozenset({int, str, bytes, datetime, date, time, timedelta})


def _range_base(node: TypeNode) -> type | None:
    """The type whose bounds a Range on ``node`` takes (an int Enum's is int), or None."""
    if node.kind == "scalar" and node.py in _RANGE_BOUNDS:
        return node.py  # type: ignore[no-any-return]
    if node.kind == "enum":
        for base in (int, str):
            if issubclass(node.py, base):
                return base
    return None


class Range(Constraint):
    """``min <= value <= max`` (both inclusive; either may be left out): ``Range(0, 150)``,
    ``Range(min=0)``, ``Range(max=date(2030, 1, 1))``. NaN is in no range."""

    __slots__ = ("max", "min")
    kind = "range"

    def __init__(self, min: Any = None, max: Any = None) -> None:
        self.min = min
        self.max = max

    def __repr__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"Range({self.min!r}, {self.max!r})"
        return f"Range(min={self.min!r})" if self.min is not None else f"Range(max={self.max!r})"

    def _key(self) -> tuple[Any, ...]:
        return (self.min, self.max)

    def holds(self, value: Any) -> bool:
        lo, hi = self.min, self.max
        return (lo is None or lo <= value) and (hi is None or value <= hi)

    def reason(self, value: Any) -> str:
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            return f"must be between {show_value(lo)} and {show_value(hi)}"
        return f"must be >= {show_value(lo)}" if lo is not None else f"must be <= {show_value(hi)}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "min": self.min, "max": self.max}

    def applies_to(self, node: TypeNode) -> str | None:
        base = _range_base(node)
        if base is None:
            return f"Range needs an ordered type (int, float, Decimal, str, bytes, a date/time type), not {node.label}"
        if self.min is None and self.max is None:
            return "Range() bounds nothing: give min, max or both"
        allowed = _RANGE_BOUNDS[base]
        for name, bound in (("min", self.min), ("max", self.max)):
            if bound is None:
                continue
            if type(bound) is bool or not isinstance(bound, allowed) or (base is date and isinstance(bound, datetime)):
                return f"Range {name}={bound!r} cannot be compared with {node.label} values"
            if _bad_bound(bound):
                return f"Range {name} is NaN"
        if self.min is not None and self.max is not None:
            try:
                inverted = self.min > self.max
            except TypeError as exc:
                return f"the Range bounds cannot be compared: {exc}"
            if inverted:
                return f"Range min {show_value(self.min)} is greater than max {show_value(self.max)}"
        return None

    def expr(self, x: str, const: Any, element: TypeNode | None = None) -> str:
        lo = None if self.min is None else const(self.min)
        hi = None if self.max is None else const(self.max)
        if element is None:
            return _between(lo, x, hi)
        if _range_base(element) in _MIN_MAX_SAFE:
            parts = []
            if lo is not None:
                parts.append(f"{lo} <= min({x})")
            if hi is not None:
                parts.append(f"max({x}) <= {hi}")
            return f"(not {x} or ({' and '.join(parts)}))"
        return f"all([{_between(lo, '_e', hi)} for _e in {x}])"


def _between(lo: str | None, x: str, hi: str | None) -> str:
    if lo is not None and hi is not None:
        return f"({lo} <= {x} <= {hi})"
    return f"({lo} <= {x})" if lo is not None else f"({x} <= {hi})"


# ---------------------------------------------------------------------------------------------
# Length

_SIZED_KINDS = frozenset({"list", "vtuple", "tuple", "set", "frozenset", "dict"})


class Length(Constraint):
    """``min <= len(value) <= max`` (inclusive; either may be left out): ``Length(max=80)``,
    ``Length(min=1, max=80)``, ``Length(1, 80)``. For str, bytes and collections."""

    __slots__ = ("max", "min")
    kind = "length"

    def __init__(self, min: int | None = None, max: int | None = None) -> None:
        self.min = min
        self.max = max

    def __repr__(self) -> str:
        args = [f"{n}={v!r}" for n, v in (("min", self.min), ("max", self.max)) if v is not None]
        return f"Length({', '.join(args)})"

    def _key(self) -> tuple[Any, ...]:
        return (self.min, self.max)

    def holds(self, value: Any) -> bool:
        n = len(value)
        return (self.min is None or self.min <= n) and (self.max is None or n <= self.max)

    def reason(self, value: Any) -> str:
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            rule = f"length must be between {lo} and {hi}" if lo != hi else f"length must be {lo}"
        else:
            rule = f"length must be >= {lo}" if lo is not None else f"length must be <= {hi}"
        return f"{rule}, is {len(value)}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "min": self.min, "max": self.max}

    def applies_to(self, node: TypeNode) -> str | None:
        if not (node.kind in _SIZED_KINDS or (node.kind == "scalar" and node.py in (str, bytes))):
            return f"Length needs a str, bytes or collection field, not {node.label}"
        if self.min is None and self.max is None:
            return "Length() bounds nothing: give min, max or both"
        for name, bound in (("min", self.min), ("max", self.max)):
            if bound is not None and (type(bound) is not int or bound < 0):
                return f"Length {name} must be an int >= 0, got {bound!r}"
        if self.min is not None and self.max is not None and self.min > self.max:
            return f"Length min {self.min} is greater than max {self.max}"
        return None

    def expr(self, x: str, const: Any, element: TypeNode | None = None) -> str:
        lo, hi = self.min, self.max
        if element is None:
            return _between(None if lo is None else str(lo), f"len({x})", None if hi is None else str(hi))
        parts = []
        if lo is not None:
            parts.append(f"{lo} <= min(map(len, {x}))")
        if hi is not None:
            parts.append(f"max(map(len, {x})) <= {hi}")
        return f"(not {x} or ({' and '.join(parts)}))"


# ---------------------------------------------------------------------------------------------
# Pattern


class Pattern(Constraint):
    """The whole value matches the regular expression (``re.fullmatch``):
    ``Pattern(r"[a-z0-9_]{3,20}")``; ``flags`` as for ``re.compile``. A str pattern for a str
    field, a bytes pattern for a bytes field. A compiled pattern is accepted too."""

    __slots__ = ("_compiled", "flags", "pattern")
    kind = "pattern"

    def __init__(self, pattern: str | bytes | re.Pattern[str] | re.Pattern[bytes], flags: int = 0) -> None:
        if isinstance(pattern, re.Pattern):
            flags |= pattern.flags
            pattern = pattern.pattern
        self.pattern: str | bytes = pattern
        self.flags = int(flags) if isinstance(flags, int) else flags  # re.RegexFlag -> plain int
        self._compiled: re.Pattern[Any] | None = None

    def __repr__(self) -> str:
        flags = f", flags={self.flags!r}" if self.flags else ""
        return f"Pattern({self.pattern!r}{flags})"

    def _key(self) -> tuple[Any, ...]:
        return (self.pattern, self.flags)

    @property
    def compiled(self) -> re.Pattern[Any]:
        c = self._compiled
        if c is None:
            c = self._compiled = re.compile(self.pattern, self.flags)
        return c

    def holds(self, value: Any) -> bool:
        return self.compiled.fullmatch(value) is not None

    def reason(self, value: Any) -> str:
        shown = f"'{self.pattern}'" if isinstance(self.pattern, str) else repr(self.pattern)
        return f"must match the pattern {shown}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pattern": self.pattern, "flags": self.flags}

    def applies_to(self, node: TypeNode) -> str | None:
        want = str if isinstance(self.pattern, str) else bytes if isinstance(self.pattern, bytes) else None
        if want is None:
            return f"Pattern takes a str or bytes regular expression, got {self.pattern!r}"
        if node.kind != "scalar" or node.py is not want:
            return f"a {want.__name__} Pattern needs a {want.__name__} field, not {node.label}"
        if type(self.flags) is not int:
            return f"Pattern flags must be an int (re flags), got {self.flags!r}"
        try:
            self.compiled  # noqa: B018 (compiles it, once)
        except (re.error, TypeError, ValueError) as exc:
            return f"Pattern {self.pattern!r} is not a valid regular expression: {exc}"
        return None

    def expr(self, x: str, const: Any, element: TypeNode | None = None) -> str:
        match = const(self.compiled.fullmatch)
        return f"({match}({x}) is not None)" if element is None else f"all(map({match}, {x}))"


# ---------------------------------------------------------------------------------------------
# OneOf


class OneOf(Constraint):
    """The value equals one of the given values: ``OneOf("S", "M", "L")``. The values must
    have the field's type (checked when the class is decorated)."""

    __slots__ = ("_allowed", "values")
    kind = "one_of"

    def __init__(self, *values: Any) -> None:
        self.values: tuple[Any, ...] = values
        try:
            self._allowed: frozenset[Any] | tuple[Any, ...] = frozenset(values)
        except TypeError:  # unhashable values (lists, dicts): compared one by one
            self._allowed = values

    def __repr__(self) -> str:
        return f"OneOf({', '.join(map(repr, self.values))})"

    def _key(self) -> tuple[Any, ...]:
        return self.values

    def holds(self, value: Any) -> bool:
        return value in self._allowed

    def reason(self, value: Any) -> str:
        shown = ", ".join(show_value(v, 30) for v in self.values[:10])
        more = f", ... ({len(self.values)} values)" if len(self.values) > 10 else ""
        return f"must be one of {shown}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values)}

    def applies_to(self, node: TypeNode) -> str | None:
        if not self.values:
            return "OneOf() allows nothing: give the allowed values"
        for v in self.values:
            try:
                coerce(node, v, "value")
            except TypeError:
                return f"OneOf value {v!r} is not a {type_label(node)}"
        return None

    def expr(self, x: str, const: Any, element: TypeNode | None = None) -> str:
        allowed = const(self._allowed)
        if element is None:
            return f"({x} in {allowed})"
        if isinstance(self._allowed, frozenset):
            return f"{allowed}.issuperset({x})"
        return f"all([_e in {allowed} for _e in {x}])"
