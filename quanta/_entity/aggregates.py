"""Aggregates over a query's matches: one definition of ``min``, ``max``, ``sum`` and ``avg``
for ``Query.min()``/``max()``/``sum()``/``avg()`` and their live forms (``q.watch_min()``...,
which keep an :class:`Aggregate` current through each commit: ``quanta/_live/states.py``).

* ``min``/``max``: in the order ``order_by`` uses (each value's key encoding; NaN after
  every other float), over the non-None values; None when there are none. Only fields with
  a key encoding can be ordered.
* ``sum``/``avg``: over the non-None values of an int, bool or float field. Ints are exact;
  a float sum is the exact sum of the values, correctly rounded once (so the answer does
  not depend on the order of the records, or of the commits a live sum went through);
  ``+inf``, ``-inf`` and NaN follow IEEE rules; an exact sum beyond the float range is
  ``±inf``. ``sum`` of nothing is 0, ``avg`` of nothing is None.

Pure and synchronous.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any, Final

from sortedcontainers import SortedDict

from .._query import Field, sort_key
from .._schema import EntityInfo
from ..errors import QueryError

__all__ = ["AGGREGATES", "Aggregate", "check_aggregate"]

AGGREGATES: Final = ("min", "max", "sum", "avg")

_SCALE_BITS: Final = 1074  # every finite float is an integer multiple of 2**-1074


def check_aggregate(kind: str, field: Any, info: EntityInfo, what: str) -> bool:
    """Check that ``kind`` can be taken of ``field`` (a field of ``info``'s class); return
    whether the field is a float field. ``what`` names the call in the error."""
    if not isinstance(field, Field) or field.owner is not info.cls:
        raise QueryError(f"expected a field of {info.name}, got {field!r:.60}")
    fi = field.info
    if kind in ("min", "max") and fi.key_type is None:
        raise QueryError(f"{what}({field!r}): {field!r} cannot be ordered, so it has no {kind}")
    if kind in ("sum", "avg") and fi.base not in (int, float, bool):
        raise QueryError(f"{what}({field!r}): sums and averages need an int or float field")
    return fi.base is float


class Aggregate:
    """One aggregate of one field's values, kept as values arrive (``add(v, 1)``) and leave
    (``add(v, -1)``): ``min``/``max`` as a multiset ordered by sort key, ``sum``/``avg`` as an
    exact running sum (floats as an integer count of ``2**-1074``, plus counts of ``+inf``,
    ``-inf`` and NaN) and a count. See the module docstring for the definitions."""

    __slots__ = ("is_float", "kind", "n", "specials", "total", "values")

    def __init__(self, kind: str, is_float: bool) -> None:
        assert kind in AGGREGATES
        self.kind = kind
        self.is_float = is_float
        self.values: SortedDict = SortedDict()  # sort key -> [value, count] (min, max)
        self.n = 0
        self.total = 0
        self.specials = [0, 0, 0]  # +inf, -inf, nan (floats)

    @classmethod
    def of(cls, kind: str, is_float: bool, values: Iterable[Any]) -> Any:
        """The aggregate of ``values`` (None values skipped), computed in one pass: the same
        answer as adding each value to an ``Aggregate``, faster (``math.fsum`` is the exact
        sum rounded once, ``float.as_integer_ratio`` in C for an exact mean)."""
        present = [v for v in values if v is not None]
        if kind in ("min", "max"):
            if not present:
                return None
            return (min if kind == "min" else max)(present, key=sort_key)
        if not present:
            return 0 if kind == "sum" else None
        if not is_float:
            total = sum(map(int, present))
            return total if kind == "sum" else total / len(present)
        if all(map(math.isfinite, present)):
            if kind == "sum":
                try:
                    return math.fsum(present)
                except OverflowError:  # the exact sum is beyond the float range
                    pass
            scaled = sum(n << (_SCALE_BITS + 1 - d.bit_length()) for n, d in map(float.as_integer_ratio, present))
            return _rounded(scaled, len(present) if kind == "avg" else 1)
        agg = cls(kind, is_float)  # infinities or NaN among the values: the rare path
        for v in present:
            agg.add(v, 1)
        return agg.value()

    def add(self, v: Any, sign: int) -> None:
        """Count non-None value ``v`` in (``sign`` 1) or out (-1)."""
        if self.kind in ("min", "max"):
            k = sort_key(v)
            slot = self.values.get(k)
            if slot is None:
                self.values[k] = [v, 1]
            elif sign < 0 and slot[1] == 1:
                del self.values[k]
            else:
                slot[1] += sign
            return
        self.n += sign
        if not self.is_float:
            self.total += sign * int(v)
        elif math.isfinite(v):
            num, den = v.as_integer_ratio()
            self.total += sign * (num << (_SCALE_BITS + 1 - den.bit_length()))
        else:
            self.specials[0 if v == math.inf else 1 if v == -math.inf else 2] += sign

    def value(self) -> Any:
        kind = self.kind
        if kind in ("min", "max"):
            if not self.values:
                return None
            return self.values.peekitem(0 if kind == "min" else -1)[1][0]
        if kind == "avg" and self.n == 0:
            return None
        if not self.is_float:
            return self.total if kind == "sum" else self.total / self.n
        pos, neg, nan = self.specials
        if nan or (pos and neg):
            return math.nan
        if pos or neg:
            return math.inf if pos else -math.inf
        if kind == "sum" and not self.n:
            return 0
        return _rounded(self.total, self.n if kind == "avg" else 1)


def _rounded(scaled: int, n: int) -> float:
    """``scaled * 2**-1074 / n`` correctly rounded to a float (``±inf`` beyond the range)."""
    exact = Fraction(scaled, (1 << _SCALE_BITS) * n)
    try:
        return float(exact)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf
