"""What a live query needs to know about its query, computed once when it is opened: the
order of its results as one byte key per record, and the equality values that route a
commit's changes to it.

Result order. With ``order_by``, a query's result order is one byte key per record,
``quanta._query.order_key`` (the ``order_by`` values' key encodings, then the primary key):
the executor sorts by it and a maintained result is a list kept sorted by it, so both
agree by construction. Without
``order_by`` the order is the access path's (unspecified by the query
API, but a live result must equal a fresh run): the storage key order of the entries the
plan scans, which is the primary key for the primary-key paths and the index entry
(values, then the primary key) for an index path; a record a multi-entry index reaches
through several elements comes at its smallest entry within the plan's ranges.

Routing. :func:`routes` finds one conjunct of the predicate that pins a field to a finite
set of values (``==``, ``in_``, ``is_none()``, an ``|`` of those on one field, or
``contains`` on a collection field). A change can only matter to the query when the old or
the new version of the record holds one of those values, so the dispatcher indexes the
query under them and looks each changed record up by its own values (a dict probe with
Python equality: exactly the equality ``Expr.evaluate`` uses, so ``-0.0`` finds ``0.0``).
Queries without such a conjunct (ranges only, ``|`` across fields, no predicate) are
evaluated for every change of their collection.

Pure and synchronous, like the planner it reads.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from .._codec import encode_key, encode_tuple
from .._query import And, Compare, Contains, Expr, In, IsNone, Or, OrderKey, Plan
from .._query import order_key as query_order_key
from .._schema import EntityInfo, index_prefix, index_value

__all__ = ["OrderKey", "Route", "order_key", "routes", "same_order"]


def order_key(plan: Plan, info: EntityInfo) -> OrderKey:
    """The result-order key of ``plan``'s records (see the module docstring)."""
    if plan.order_by:
        return query_order_key(plan.order_by)
    idx = plan.index
    if idx is None or plan.access not in ("index_range", "unique_get"):
        return _by_pk
    fields = idx.fields
    if idx.multi:
        return _multi_entry_key(plan, index_prefix(info.name, idx.name), fields[0])
    if idx.unique:
        return lambda obj, epk: encode_tuple([_unique_value(index_value(obj, f)) for f in fields]) + epk
    if len(fields) == 1:
        name = fields[0]
        return lambda obj, epk: encode_key(index_value(obj, name)) + epk
    return lambda obj, epk: encode_tuple([index_value(obj, f) for f in fields]) + epk


def same_order(a: Plan, b: Plan) -> bool:
    """Whether two plans of one query yield its matches in the same result order (so a read
    with ``a`` may stop early for a state ordered by :func:`order_key` of ``b``): with
    ``order_by``, always (the order is the query's; ``sorted_by_access`` says whether a path
    yields it); without, when both order by the same access path key (see the module
    docstring)."""
    return bool(a.order_by) or _path_order(a) == _path_order(b)


def _path_order(p: Plan) -> tuple[str, tuple[tuple[bytes, bytes | None], ...]] | None:
    idx = p.index
    if idx is None or p.access not in ("index_range", "unique_get"):
        return None  # primary key order
    return idx.name, (p.ranges if idx.multi else ())


def _by_pk(obj: Any, epk: bytes) -> bytes:
    return epk


def _unique_value(v: Any) -> Any:
    """A unique index stores -0.0 as 0.0 (they are ==, so one unique value)."""
    return 0.0 if type(v) is float and v == 0.0 else v


def _multi_entry_key(plan: Plan, prefix: bytes, name: str) -> OrderKey:
    starts = [start for start, _ in plan.ranges]
    stops = [stop for _, stop in plan.ranges]

    def in_ranges(key: bytes) -> bool:
        i = bisect_right(starts, key) - 1
        if i < 0:
            return False
        stop = stops[i]
        return stop is None or key < stop

    def key(obj: Any, epk: bytes) -> bytes:
        best: bytes | None = None
        for element in set(index_value(obj, name) or ()):
            entry = encode_key(element) + epk
            if (best is None or entry < best) and in_ranges(prefix + entry):
                best = entry
        return b"\xff" + epk if best is None else best  # (a match always has an entry in range)

    return key


@dataclass(frozen=True, slots=True)
class Route:
    """The query matches only records whose field ``name`` equals one of ``values``
    (``elements``: holds one of them as an element)."""

    name: str
    values: tuple[Any, ...]
    elements: bool = False


def _conjuncts(e: Expr | None) -> list[Expr]:
    if e is None:
        return []
    if isinstance(e, And):
        return [c for item in e.items for c in _conjuncts(item)]
    return [e]


def _pinned(e: Expr, info: EntityInfo) -> Route | None:
    """The values conjunct ``e`` pins one field to, if it does."""
    if isinstance(e, Compare) and e.op == "==":
        return _scalar(e.field.name, (e.value,), info)
    if isinstance(e, In):
        return _scalar(e.field.name, e.values, info)
    if isinstance(e, IsNone) and not e.negated:
        return _scalar(e.field.name, (None,), info)
    if isinstance(e, Contains):
        fi = info.field(e.field.name)
        if fi.element_key_type is None:
            return None
        return Route(e.field.name, (e.value,), elements=True)
    if isinstance(e, Or):
        parts = [_pinned(item, info) for item in e.items]
        first = parts[0]
        if first is None or any(p is None or p.name != first.name or p.elements != first.elements for p in parts):
            return None
        values: list[Any] = []
        for p in parts:
            values.extend(p.values)  # type: ignore[union-attr]
        return Route(first.name, tuple(values), first.elements)
    return None


def _scalar(name: str, values: tuple[Any, ...], info: EntityInfo) -> Route | None:
    if info.field(name).key_type is None:
        return None  # values of this type may be unhashable (lists, dicts): not routable
    return Route(name, values)


def routes(where: Expr | None, info: EntityInfo) -> Route | None:
    """The most selective route of the predicate (fewest values), or None: the query must
    see every change of its collection."""
    best: Route | None = None
    for c in _conjuncts(where):
        r = _pinned(c, info)
        if r is not None:
            r = Route(r.name, tuple(dict.fromkeys(r.values)), r.elements)  # (routable values are hashable)
            if best is None or len(r.values) < len(best.values):
                best = r
    return best
