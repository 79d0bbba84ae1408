"""The query planner: a predicate, an order and a window in; an access path over keys out.

``plan(info, where, order_by, limit, offset) -> Plan`` is a pure function of the entity's
:class:`~quanta._schema.info.EntityInfo` and the query: no I/O, no statistics, no event
loop. The executor (``quanta/_entity/executor.py``) runs the plan against a snapshot.

The plan contract (what an executor does with a :class:`Plan`)
---------------------------------------------------------------

1. **Reach candidate records.** ``ranges`` are ``(start, stop)`` pairs of storage keys
   (``quanta._schema.keyspace``): every key ``k`` with ``start <= k < stop`` (``stop`` None:
   no upper bound). They are sorted and disjoint. Visit them in order, or from last to first
   when ``reverse`` (and then each range from its highest key down). ``reverse`` applies to
   the ``*_get`` lookups too: look them up, and yield the records, from last to first.

   ``access``         ``ranges`` hold                     the record's primary key is
   ``pk_get``         ``(record_key(pk), successor(..))``  ``pk_values[i]``: get the record
   ``pk_range``       record keys                          in the key; the value is the record
   ``full_scan``      record keys (all of them)            in the key; the value is the record
   ``unique_get``     ``(unique_key(values), successor)``  ``decode_tuple(value)[0]`` of the
                                                           entry, if it exists
   ``index_range``    index entries of ``index``           non-unique and multi indexes: the
                                                           last element of the key tuple;
                                                           unique: ``decode_tuple(value)[0]``

   For the two ``*_get`` paths ``start`` is the one key to look up and ``pk_values[i]`` the
   value(s) it stands for (primary keys, or tuples of the unique index's values). A missing
   key is no match. :meth:`Plan.entry_pk` decodes the primary key of any scanned entry.
2. **Drop repeats** when ``dedupe``: a multi-entry index can reach a record once per
   matching element. Keep the first occurrence of each primary key.
3. **Filter** each decoded record with ``residual.evaluate(obj)`` (None: nothing to check).
   The ranges select exactly the records satisfying the predicate's other conjuncts, so the
   residual is all that is left; re-checking the whole predicate (``where``) is always
   correct, only slower.
4. **Order.** With ``sorted_by_access`` the records already come in the requested order:
   skip ``offset``, stop after ``limit`` (:attr:`Plan.stop_after`). Otherwise collect every
   match, sort with :meth:`Plan.sort`, then slice ``[offset:offset + limit]``.

The order of results is defined as: the ``order_by`` keys, each compared as its key
encoding (``encode_key``: None first, then values in Python order; ``desc`` reverses),
then the primary key, in the direction of the last ``order_by`` key. That is exactly an
index's order (an index entry ends with the primary key), which is what lets an index scan
(or its reverse) stand for a sort. Without ``order_by`` the order is the access path's,
unspecified (like SQL without ORDER BY), and nothing is sorted.

Planner rules
-------------

* The predicate is split into conjuncts (``&``, and ``~(a | b)`` as ``~a & ~b``). Each
  conjunct on a single keyable field (any ``&``/``|``/``~`` of comparisons, ``between``,
  ``in_``, ``startswith``, ``is_none`` on that field) compiles to an exact key set
  (``keyset.py``); the key sets of one field intersect. ``contains``, or an ``|`` of
  ``contains`` on one field, compiles to an element set for a multi-entry index.
  Everything else (an ``|`` across fields, a non-indexed collection) is residual only.
* Candidates: the primary key (a finite set of values: ``pk_get``; a range: ``pk_range``;
  nothing: ``full_scan``); each index, using equality (a finite value set, so ``in_``
  too) on its longest leading run of fields, then the key set of the next field as ranges
  (a range, ``startswith``, ``in_``, an ``|`` of ranges): one range per combination of the
  equality values times interval of the next field, at most ``MAX_RANGES``. A unique index
  with all fields bound to values is a ``unique_get``. A unique index has no entry for a
  record with a None value, so it is a candidate only when each of its optional fields has
  a condition that rejects None. A multi-entry index serves a ``contains`` (or an ``|`` of
  them). An index with no usable condition (and, if unique, no optional field) is still a
  candidate: a scan in index order can stand for a sort.
* The best candidate wins, by, in turn: it proves the result empty (no range at all);
  ``pk_get``, then ``unique_get``, then any bounded scan, then unbounded scans; more fields
  bound by equality; a range on the next field; no sort needed (so with no condition at
  all, a scan of an index in the requested order beats a full scan and a sort); a unique
  key (primary or unique index); the primary key (no second lookup); fewer ranges;
  declaration order.
* ``sorted_by_access``: the access path yields records ordered by its fields after the
  leading single-value equalities (then the primary key); the requested order matches when
  it names those fields in that order, all ascending (forward scan) or all descending
  (``reverse``), ignoring fields the predicate pins to one value.

Left out on purpose: an ``|`` across different fields or indexes is not planned as a union
of index scans (it is a residual filter on the best other path, or a full scan);
``contains`` combined with ``&`` uses one element's entries and checks the rest; a range
on a field after a range (a "skip scan") is not used. No statistics: "most selective" means
most bound fields, not fewest rows.

Assumption shared with the index layer: a non-unique, non-multi index has exactly one entry
per record (None values included); a multi-entry index one per distinct element; a unique
index one per record whose indexed values are all non-None.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .._codec import decode_key, decode_tuple, encode_key, prefix_end, successor
from .._schema import NS, EntityInfo, IndexInfo, index_prefix, record_prefix, unique_prefix
from ..errors import QueryError
from .expr import And, Expr, Not, Or, Order, as_order
from .keyset import KeySet, compile_exists, compile_scalar, describe, intersect, points

__all__ = ["MAX_RANGES", "Access", "OrderKey", "Plan", "order_key", "order_records", "plan", "sort_key"]

Access = Literal["pk_get", "pk_range", "unique_get", "index_range", "full_scan"]

MAX_RANGES: Final = 1024
"""At most this many ranges (or unique lookups) from an index: past it, fewer leading
fields are used by equality and the rest is checked as a residual filter."""

_ENTRY_OFFSET: Final = len(NS) + 1  # NS, then the kind byte, then the key tuple
_NAN_KEY: Final = encode_key(math.inf) + b"\xff"  # NaN sorts after +inf
_EXPLAIN_RANGES: Final = 20


def sort_key(value: Any) -> bytes:
    """The sort key of one ``order_by`` value: its key encoding (NaN, which has none, sorts
    after every other float)."""
    if isinstance(value, float) and math.isnan(value):
        return _NAN_KEY
    return encode_key(value)


OrderKey = Callable[[Any, bytes], bytes]
"""``key(obj, encoded_pk) -> bytes``: byte order is a query's result order."""

_FLIP: Final = bytes(range(255, -1, -1))


def _down(key: bytes) -> bytes:
    return key.translate(_FLIP)


def order_key(order_by: Sequence[Any]) -> OrderKey:
    """The result order of ``order_by`` (``Order``s or bare fields, at least one) folded
    into one byte key per record: each value's ``sort_key`` (the byte complement for
    ``desc``), then the encoded primary key in the direction of the last order. The key
    encodings are prefix-free, so the concatenation compares like the tuple, and the
    complement of a prefix-free encoding reverses its order. (NaN's sort key is +inf's plus
    ``0xff``, not prefix-free with it; complemented it is +inf's complement plus ``0x00``, and
    since every component that follows starts with a tag byte or its complement, never
    ``0x00``, NaN still sorts before +inf.) One key serves both the executor's sort
    (``order_records``) and a live result's maintained order (``quanta/_live/shape.py``)."""
    orders = [as_order(o) for o in order_by]
    parts = tuple((o.field.name, o.descending) for o in orders)
    last_down = orders[-1].descending
    if len(parts) == 1:
        name, down = parts[0]
        if down:
            return lambda obj, epk: _down(sort_key(getattr(obj, name))) + (_down(epk) if last_down else epk)
        return lambda obj, epk: sort_key(getattr(obj, name)) + epk

    def key(obj: Any, epk: bytes) -> bytes:
        out = [_down(sort_key(getattr(obj, n))) if d else sort_key(getattr(obj, n)) for n, d in parts]
        out.append(_down(epk) if last_down else epk)
        return b"".join(out)

    return key


def order_records(objs: Iterable[Any], order_by: Sequence[Any], primary_key: str) -> list[Any]:
    """``objs`` in the defined result order: the ``order_by`` keys (``Order``s or bare
    fields), then the primary key in the direction of the last of them (``order_key``).
    Without ``order_by``: as given."""
    out = list(objs)
    if not order_by:
        return out
    key = order_key(order_by)
    out.sort(key=lambda obj: key(obj, encode_key(getattr(obj, primary_key))))
    return out


@dataclass(frozen=True)
class Plan:
    """How to run one query; see the module docstring for the contract, field by field."""

    entity: str
    access: Access
    index: IndexInfo | None
    ranges: tuple[tuple[bytes, bytes | None], ...]
    pk_values: tuple[Any, ...]
    reverse: bool
    residual: Expr | None
    sorted_by_access: bool
    dedupe: bool
    where: Expr | None
    order_by: tuple[Order, ...]
    limit: int | None
    offset: int
    primary_key: str
    range_texts: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def stop_after(self) -> int | None:
        """With ``sorted_by_access`` and a limit: stop after this many matching records."""
        if self.sorted_by_access and self.limit is not None:
            return self.offset + self.limit
        return None

    def entry_pk(self, key: bytes, value: bytes) -> Any:
        """The primary key of the record a scanned ``(key, value)`` entry stands for."""
        if self.access in ("pk_get", "pk_range", "full_scan"):
            return decode_tuple(key[_ENTRY_OFFSET:])[1]
        assert self.index is not None
        if self.index.unique:
            return decode_tuple(value)[0]
        return decode_tuple(key[_ENTRY_OFFSET:])[-1]

    def sort(self, objs: Iterable[Any]) -> list[Any]:
        """``objs`` in the query's result order (see :func:`order_records`)."""
        return order_records(objs, self.order_by, self.primary_key)

    def explain(self, keys: bool = False) -> str:
        """The plan, one fact per line; ``keys`` adds each range's storage keys in hex."""
        lines = [f"plan for {self.entity}: {self.access}"]
        idx = self.index
        if self.access == "full_scan":
            lines.append(f"  index:    none (every record, in primary key order: {self.primary_key})")
        elif idx is None:
            lines.append(f"  index:    primary key ({self.primary_key})")
        else:
            kind = ", unique (the entry holds the pk)" if idx.unique else ", multi-entry" if idx.multi else ""
            lines.append(f"  index:    {idx.name} on ({', '.join(idx.fields)}){kind}")
        label = "lookups" if self.access in ("pk_get", "unique_get") else "ranges"
        direction = ", last to first" if self.reverse and len(self.ranges) > 1 else ""
        backward = ", each backwards" if self.reverse and label == "ranges" else ""
        lines.append(f"  {label}:{' ' * (9 - len(label))}{len(self.ranges)}{direction}{backward}")
        if not self.ranges:
            lines.append("    (none: the predicate cannot hold)")
        for i, (text, (start, stop)) in enumerate(zip(self.range_texts, self.ranges, strict=True)):
            if i == _EXPLAIN_RANGES:
                lines.append(f"    ... and {len(self.ranges) - i} more")
                break
            hexes = f"  [{start.hex()}, {stop.hex() if stop is not None else 'end'})" if keys else ""
            lines.append(f"    {text}{hexes}")
        if self.dedupe:
            lines.append("  dedupe:   yes (a record can be reached through several entries)")
        if self.residual is None:
            lines.append("  residual: none (the ranges select exactly the matches)")
        else:
            lines.append(f"  residual: {self.residual!r}")
        lines.append(f"  order:    {self._order_text()}")
        lines.append(f"  window:   {self._window_text()}")
        return "\n".join(lines)

    def _order_text(self) -> str:
        if not self.order_by:
            return "none requested (access order)"
        keys = [repr(o) for o in self.order_by]
        if all(o.field.name != self.primary_key for o in self.order_by):
            keys.append(f"then {self.primary_key} {'desc' if self.order_by[-1].descending else 'asc'}")
        spec = ", ".join(keys)
        if self.sorted_by_access:
            return f"{spec}: the access order{' (reversed)' if self.reverse else ''}, no sort"
        return f"{spec}: sort step"

    def _window_text(self) -> str:
        if self.limit is None and not self.offset:
            return "all"
        parts = [f"offset {self.offset}"] if self.offset else []
        parts.append(f"limit {self.limit}" if self.limit is not None else "no limit")
        stop = self.stop_after
        tail = f": stop after {stop} matches" if stop is not None else ": after the sort" if self.order_by else ""
        return ", ".join(parts) + tail


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass
class _Path:
    access: Access
    index: IndexInfo | None
    ranges: list[tuple[bytes, bytes | None]]
    texts: list[str]
    used: set[int]
    seq: tuple[str, ...] | None  # the fields records come ordered by (None: no field order)
    n_eq: int = 0
    has_range: bool = False
    unique: bool = False
    dedupe: bool = False
    pk_values: tuple[Any, ...] = ()


def _conjuncts(e: Expr | None) -> list[Expr]:
    """``e`` as a list of conjuncts: ``&`` flattened, ``~~a`` as ``a``, ``~(a | b)`` as
    ``~a``, ``~b``."""
    if e is None:
        return []
    if isinstance(e, And):
        return [c for item in e.items for c in _conjuncts(item)]
    if isinstance(e, Not):
        inner = e.item
        if isinstance(inner, Not):
            return _conjuncts(inner.item)
        if isinstance(inner, Or):
            return [c for item in inner.items for c in _conjuncts(Not(item))]
    return [e]


def _holds_none(ks: KeySet) -> bool:
    none = encode_key(None)
    return any(none in iv for iv in ks)


def _value_text(name: str, key: bytes) -> str:
    v = decode_key(key)
    return f"{name} is None" if v is None else f"{name} == {v!r}"


class _Planner:
    def __init__(self, info: EntityInfo, conjuncts: list[Expr]) -> None:
        self.info = info
        self.pk = info.primary_key
        self.scalar: dict[str, KeySet] = {}
        self.members: dict[str, set[int]] = {}
        self.exists: list[tuple[int, str, KeySet]] = []
        for i, c in enumerate(conjuncts):
            compiled = compile_scalar(c, info)
            if compiled is not None:
                name, ks = compiled
                self.scalar[name] = intersect(self.scalar[name], ks) if name in self.scalar else ks
                self.members.setdefault(name, set()).add(i)
                continue
            elements = compile_exists(c, info)
            if elements is not None:
                self.exists.append((i, *elements))
        self.constant = set()
        for name, ks in self.scalar.items():
            pts = points(ks)
            if pts is not None and len(pts) == 1:
                self.constant.add(name)

    def paths(self) -> list[_Path]:
        out = [self.pk_path()]
        for idx in self.info.indexes:
            if idx.multi:
                out.extend(self.multi_paths(idx))
            else:
                path = self.index_path(idx)
                if path is not None:
                    out.append(path)
        return out

    def pk_path(self) -> _Path:
        pk = self.pk
        start, stop = record_prefix(self.info.name)
        ks = self.scalar.get(pk)
        if ks is None:
            return _Path("full_scan", None, [(start, stop)], ["all records"], set(), (pk,), unique=True)
        used = self.members[pk]
        pts = points(ks)
        if pts is not None:
            ranges: list[tuple[bytes, bytes | None]] = [(start + k, successor(start + k)) for k in pts]
            texts = [_value_text(pk, k) for k in pts]
            values = tuple(decode_key(k) for k in pts)
            return _Path("pk_get", None, ranges, texts, used, (pk,), n_eq=1, unique=True, pk_values=values)
        ranges = [(start + iv.lo.key, start + iv.hi.key) for iv in ks]
        texts = [describe(pk, iv) for iv in ks]
        return _Path("pk_range", None, ranges, texts, used, (pk,), has_range=True, unique=True)

    def multi_paths(self, idx: IndexInfo) -> list[_Path]:
        out = []
        prefix = index_prefix(self.info.name, idx.name)
        for i, name, ks in self.exists:
            if idx.fields != (name,):
                continue
            ranges: list[tuple[bytes, bytes | None]] = [(prefix + iv.lo.key, prefix + iv.hi.key) for iv in ks]
            texts = [describe(name, iv, element=True) for iv in ks]
            pts = points(ks)
            dedupe = pts is None or len(pts) > 1  # one entry per distinct element
            out.append(_Path("index_range", idx, ranges, texts, {i}, None, n_eq=1, dedupe=dedupe))
        return out

    def index_path(self, idx: IndexInfo) -> _Path | None:
        fields = idx.fields
        if idx.unique and not all(self.never_none(f) for f in fields):
            return None  # a record with a None value here has no entry
        eq: list[list[bytes]] = []
        n = 1
        for name in fields:
            pts = points(self.scalar[name]) if name in self.scalar else None
            if pts is None or n * max(len(pts), 1) > MAX_RANGES:
                break
            eq.append(pts)
            n *= len(pts)
        k = len(eq)
        rng: KeySet | None = None
        if k < len(fields) and fields[k] in self.scalar and n * max(len(self.scalar[fields[k]]), 1) <= MAX_RANGES:
            rng = self.scalar[fields[k]]
        used = set().union(*(self.members[f] for f in fields[: k + (rng is not None)]))
        # Records come ordered by the fields after the leading single-value ones, then the pk.
        lead = next((j for j, pts in enumerate(eq) if len(pts) != 1), k)
        seq = [f for f in fields[lead:] if f not in self.constant]
        if not idx.unique:
            seq.append(self.pk)
        if idx.unique and k == len(fields):
            prefix = unique_prefix(self.info.name, idx.name)
            keys = [prefix + b"".join(combo) for combo in itertools.product(*eq)]
            texts = [
                ", ".join(_value_text(f, v) for f, v in zip(fields, combo, strict=True))
                for combo in itertools.product(*eq)
            ]
            values = tuple(decode_tuple(b"".join(combo)) for combo in itertools.product(*eq))
            ranges: list[tuple[bytes, bytes | None]] = [(key, successor(key)) for key in keys]
            return _Path("unique_get", idx, ranges, texts, used, tuple(seq), n_eq=k, unique=True, pk_values=values)
        prefix = unique_prefix(self.info.name, idx.name) if idx.unique else index_prefix(self.info.name, idx.name)
        pairs: list[tuple[tuple[bytes, bytes | None], str]] = []
        for combo in itertools.product(*eq):
            base = prefix + b"".join(combo)
            eq_text = [_value_text(f, v) for f, v in zip(fields, combo, strict=False)]
            if rng is None:
                pairs.append(((base, prefix_end(base)), ", ".join(eq_text) or f"all entries of {idx.name}"))
            else:
                for iv in rng:
                    text = ", ".join([*eq_text, describe(fields[k], iv)])
                    pairs.append(((base + iv.lo.key, base + iv.hi.key), text))
        pairs.sort(key=lambda p: p[0][0])
        return _Path(
            "index_range",
            idx,
            [r for r, _ in pairs],
            [t for _, t in pairs],
            used,
            tuple(seq),
            n_eq=k,
            has_range=rng is not None,
            unique=idx.unique,
        )

    def never_none(self, name: str) -> bool:
        """Every matching record has a value (not None) in field ``name``."""
        if not self.info.field(name).optional:
            return True
        return name in self.scalar and not _holds_none(self.scalar[name])

    def effective_order(self, order_by: Sequence[Order]) -> list[tuple[str, bool]]:
        """The order to match: ``order_by`` without pinned fields, up to the primary key
        (appended, in the last key's direction, when absent)."""
        out: list[tuple[str, bool]] = []
        seen: set[str] = set()
        for o in order_by:
            name = o.field.name
            if name in self.constant or name in seen:
                continue
            seen.add(name)
            out.append((name, o.descending))
            if name == self.pk:
                return out
        if order_by and self.pk not in self.constant:
            out.append((self.pk, order_by[-1].descending))
        return out

    def sorted_by(self, path: _Path, wanted: list[tuple[str, bool]]) -> tuple[bool, bool]:
        """``(sorted_by_access, reverse)`` for ``path`` and the effective order."""
        if not wanted or self.pk in self.constant:
            return True, False  # no order asked, or at most one record
        seq = path.seq
        if seq is None or len(wanted) < len(seq):
            return False, False
        head = wanted[: len(seq)]
        if [name for name, _ in head] != list(seq) or len({d for _, d in head}) > 1:
            return False, False
        return True, bool(head and head[0][1])


def _score(path: _Path, is_sorted: bool) -> tuple[Any, ...]:
    kind = {"pk_get": 4, "unique_get": 3}.get(path.access, 1 if path.n_eq or path.has_range else 0)
    return (
        not path.ranges,
        kind,
        path.n_eq,
        path.has_range,
        is_sorted,
        path.unique,
        path.index is None,
        -len(path.ranges),
    )


def _check(info: EntityInfo, where: Expr | None, order_by: Sequence[Any], limit: Any, offset: Any) -> tuple[Order, ...]:
    name = info.cls.__name__
    if where is not None:
        if not isinstance(where, Expr):
            raise QueryError(f"where: expected a query expression on {name}, got {type(where).__name__} {where!r}")
        if where.owner is not info.cls:
            raise QueryError(f"a query on {name} cannot use {where!r}, an expression on {where.owner.__name__}")
    orders = tuple(as_order(o) for o in order_by)
    for o in orders:
        if o.field.owner is not info.cls:
            raise QueryError(f"a query on {name} cannot order by {o.field!r}, a field of {o.field.owner.__name__}")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise QueryError(f"limit must be a non-negative int or None, got {limit!r}")
    if type(offset) is not int or offset < 0:
        raise QueryError(f"offset must be a non-negative int, got {offset!r}")
    return orders


def check(
    info: EntityInfo,
    where: Expr | None,
    order_by: Sequence[Order] = (),
    limit: int | None = None,
    offset: int = 0,
) -> None:
    """Raise the ``QueryError`` that ``plan`` would raise for this query, without planning:
    a query is checked when it is built and planned when it first runs (every error the
    planner can raise is one of these checks)."""
    _check(info, where, order_by, limit, offset)


def plan(
    info: EntityInfo,
    where: Expr | None,
    order_by: Sequence[Order] = (),
    limit: int | None = None,
    offset: int = 0,
) -> Plan:
    """The best access path for the query (see the module docstring for the rules).

    ``order_by`` may also hold bare fields (ascending). Raises ``QueryError`` for an
    expression or order key of another entity, or a negative limit or offset."""
    orders = _check(info, where, order_by, limit, offset)
    conjuncts = _conjuncts(where)
    planner = _Planner(info, conjuncts)
    wanted = planner.effective_order(orders)
    best: tuple[tuple[Any, ...], _Path, bool, bool] | None = None
    for path in planner.paths():
        is_sorted, reverse = planner.sorted_by(path, wanted)
        score = _score(path, is_sorted)
        if best is None or score > best[0]:
            best = (score, path, is_sorted, reverse)
    assert best is not None
    _, path, is_sorted, reverse = best
    rest = [c for i, c in enumerate(conjuncts) if i not in path.used]
    residual = None if not rest else rest[0] if len(rest) == 1 else And(tuple(rest))
    return Plan(
        entity=info.name,
        access=path.access,
        index=path.index,
        ranges=tuple(path.ranges),
        pk_values=path.pk_values,
        reverse=reverse,
        residual=residual,
        sorted_by_access=is_sorted,
        dedupe=path.dedupe,
        where=where,
        order_by=orders,
        limit=limit,
        offset=offset,
        primary_key=info.primary_key,
        range_texts=tuple(path.texts),
    )
