"""Query expressions: what ``User.age >= 30`` builds.

``Field(owner, name)`` is what class-level access to an entity field returns at run time
(the ``@quanta.entity`` decorator installs a descriptor per field). ``owner`` is the entity
class; its ``__quanta_entity__`` attribute is the :class:`~quanta._schema.info.EntityInfo`.

Comparing a field with a value builds an immutable expression node; ``&``, ``|`` and ``~``
combine nodes. Nodes are pure values: they hold no database, no I/O, no event loop, and are
safe to share between tasks and threads.

Invariants (the tests prove each one):

* **Checked when built.** A value of the wrong type for the field, an order comparison on a
  field that cannot be ordered, ``contains`` on a field that is not a collection, ``None``
  where the field is not optional, fields of two entity classes in one expression, and
  using an expression as a truth value (``if User.age == 3:``, ``1 < User.age < 5``) each
  raise :class:`~quanta.errors.QueryError` naming the entity and the field, before any
  query runs.
* **One meaning.** ``evaluate(obj)`` is the definition of a predicate: Python comparison on
  the decoded entity's attribute, except that a field holding ``None`` satisfies no
  comparison but ``== None`` / ``!= None`` / ``is_none()`` / ``is_not_none()`` (as in SQL,
  ``None != 3`` is False), and an order comparison Python refuses (a naive and an aware
  datetime) is False. ``~p`` is exactly ``not p``. The planner's key ranges are proved to
  select exactly what ``evaluate`` accepts.
* **Values are normalised.** An ``int`` given for a ``float`` field is converted to
  ``float`` when the node is built (and the node compares with that float), so the key the
  planner encodes and the value ``evaluate`` compares are the same; a plain value given for
  an ``Enum`` field is converted to its member. NaN is refused: it equals nothing and has
  no place in an order (nor in a key).

Departure from SQLAlchemy/SQLModel, whose expressions these look like: there is no
three-valued logic. ``~(User.age < 18)`` is true for a record whose age is None, because
``User.age < 18`` is false for it.
"""

from __future__ import annotations

import datetime
import enum
import math
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any, Final, get_args, get_origin

from .._schema import EntityInfo, FieldInfo
from ..errors import QueryError

__all__ = [
    "And",
    "Between",
    "Compare",
    "Contains",
    "Expr",
    "Field",
    "In",
    "IsNone",
    "Leaf",
    "Not",
    "Or",
    "Order",
    "StartsWith",
    "and_",
    "as_order",
    "asc",
    "between",
    "contains",
    "desc",
    "in_",
    "not_",
    "or_",
]

ORDER_OPS: Final = ("<", "<=", ">", ">=")
EQUALITY_OPS: Final = ("==", "!=")

_BOOL_HINT = (
    "a query expression has no truth value: combine conditions with & and | (not `and`/`or`), "
    "write a range as between(field, lo, hi) or (lo <= field) & (field <= hi) rather than lo <= field <= hi, "
    "and pass expressions to where() instead of testing them with `if`"
)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None`` / ``Optional[T]``, else ``(tp, False)``."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = get_args(tp)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            if len(rest) == 1:
                return rest[0], True
            return typing.Union[rest], True  # noqa: UP007 (a run-time union of several types)
    return tp, False


_COLLECTIONS: Final = (list, set, frozenset, tuple)


def _element_type(base: Any) -> tuple[Any, bool] | None:
    """The element type of a collection type (``list[T]``, ``set[T]``, ``frozenset[T]``,
    ``tuple[T, ...]``) and whether elements may be None; None when ``base`` is not one."""
    origin = get_origin(base) or base
    if origin not in _COLLECTIONS:
        return None
    args = get_args(base)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _strip_optional(args[0])
        return Any, True  # a fixed-shape tuple: elements of several types
    return _strip_optional(args[0]) if args else (Any, True)


def _coerce(tp: Any, value: Any, what: str) -> Any:
    """``value`` as a value of type ``tp`` (the declared type, Optional removed), or a
    ``QueryError`` saying ``what`` got the wrong type. Types the schema layer cannot check
    here (unions, ``Any``, ``Literal``...) accept anything."""

    def wrong() -> QueryError:
        return QueryError(f"{what}: expected a value of type {_type_name(tp)}, got {type(value).__name__} {value!r}")

    if isinstance(value, Field):
        raise QueryError(f"{what}: comparing a field with another field ({value!r}) is not supported")
    if isinstance(value, Expr):
        raise QueryError(f"{what}: expected a value, got a query expression {value!r}")
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            if isinstance(value, tp):
                return value
            try:
                return tp(value)
            except (ValueError, TypeError):
                raise QueryError(
                    f"{what}: {value!r} is not a value of {tp.__name__} (one of {', '.join(repr(m.value) for m in tp)})"
                ) from None
        if tp is float:
            if isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = float(value)
                except OverflowError:
                    raise QueryError(f"{what}: {value!r} is too large for a float field") from None
            elif not isinstance(value, float):
                raise wrong()
            if math.isnan(value):
                raise QueryError(f"{what}: NaN equals nothing and has no order; it cannot be queried")
            return value
        if tp is int and isinstance(value, bool):
            raise wrong()  # True == 1 in Python, but a bool is a different key
        if tp is datetime.date and isinstance(value, datetime.datetime):
            raise wrong()  # a datetime is a date subclass, yet never == a date
        if tp is object or isinstance(value, tp):
            return value
        raise wrong()
    origin = get_origin(tp)
    if origin in _COLLECTIONS or origin is dict:
        ok: tuple[type, ...] = (set, frozenset) if origin in (set, frozenset) else (origin,)
        if not isinstance(value, ok):
            raise wrong()
    return value


class Expr:
    """A predicate over the records of one entity class.

    ``evaluate(obj)`` says whether the decoded entity ``obj`` satisfies it; ``owner`` is the
    entity class. ``&``, ``|`` and ``~`` build conjunctions, disjunctions and negations.
    Two expressions are ``==`` when they have the same structure (fields compared by entity
    class and name), so tests and caches can compare them.
    """

    __slots__ = ()

    @property
    def owner(self) -> type:
        raise NotImplementedError

    def evaluate(self, obj: Any) -> bool:
        raise NotImplementedError

    def fields(self) -> Iterator[Field]:
        """Every field the expression reads (with repeats)."""
        raise NotImplementedError

    def _key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __and__(self, other: Expr) -> Expr:
        return and_(self, other)

    def __or__(self, other: Expr) -> Expr:
        return or_(self, other)

    def __invert__(self) -> Expr:
        return not_(self)

    def __bool__(self) -> bool:
        raise QueryError(f"{self!r}: {_BOOL_HINT}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and type(other) is type(self) and self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._key())


def _wrap(e: Expr) -> str:
    """``repr(e)``, in parentheses where ``&``, ``|`` or ``~`` would bind tighter."""
    return f"({e!r})" if isinstance(e, Compare | And | Or) else repr(e)


class Leaf(Expr):
    """A predicate on one field."""

    __slots__ = ("field",)

    def __init__(self, field: Field) -> None:
        self.field = field

    @property
    def owner(self) -> type:
        return self.field.owner

    def fields(self) -> Iterator[Field]:
        yield self.field

    def _args(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _key(self) -> tuple[Any, ...]:
        return (self.field.owner, self.field.name, *self._args())


class Compare(Leaf):
    """``field <op> value`` with ``op`` one of ``== != < <= > >=``. ``value`` is None only
    for ``==`` / ``!=`` on an optional field."""

    __slots__ = ("op", "value")

    def __init__(self, field: Field, op: str, value: Any) -> None:
        super().__init__(field)
        self.op = op
        self.value = value

    def _args(self) -> tuple[Any, ...]:
        return (self.op, self.value)

    def evaluate(self, obj: Any) -> bool:
        x = getattr(obj, self.field.name)
        v = self.value
        op = self.op
        if v is None:
            return (x is None) if op == "==" else (x is not None)
        if x is None:
            return False
        try:
            if op == "==":
                return bool(x == v)
            if op == "!=":
                return bool(x != v)
            if op == "<":
                return bool(x < v)
            if op == "<=":
                return bool(x <= v)
            if op == ">":
                return bool(x > v)
            return bool(x >= v)
        except TypeError:
            return False

    def __repr__(self) -> str:
        return f"{self.field!r} {self.op} {self.value!r}"


class Between(Leaf):
    """``lo <= field <= hi`` (both ends inclusive; empty when ``lo > hi``)."""

    __slots__ = ("hi", "lo")

    def __init__(self, field: Field, lo: Any, hi: Any) -> None:
        super().__init__(field)
        self.lo = lo
        self.hi = hi

    def _args(self) -> tuple[Any, ...]:
        return (self.lo, self.hi)

    def evaluate(self, obj: Any) -> bool:
        x = getattr(obj, self.field.name)
        if x is None:
            return False
        try:
            return bool(self.lo <= x) and bool(x <= self.hi)
        except TypeError:
            return False

    def __repr__(self) -> str:
        return f"between({self.field!r}, {self.lo!r}, {self.hi!r})"


class In(Leaf):
    """``field`` equals one of ``values`` (None among them matches a None field). No values:
    always false."""

    __slots__ = ("values",)

    def __init__(self, field: Field, values: tuple[Any, ...]) -> None:
        super().__init__(field)
        self.values = values

    def _args(self) -> tuple[Any, ...]:
        return self.values

    def evaluate(self, obj: Any) -> bool:
        x = getattr(obj, self.field.name)
        if x is None:
            return any(v is None for v in self.values)
        return any(v is not None and bool(x == v) for v in self.values)

    def __repr__(self) -> str:
        return f"in_({self.field!r}, {list(self.values)!r})"


class StartsWith(Leaf):
    """``field.startswith(prefix)`` on a str or bytes field."""

    __slots__ = ("prefix",)

    def __init__(self, field: Field, prefix: str | bytes) -> None:
        super().__init__(field)
        self.prefix = prefix

    def _args(self) -> tuple[Any, ...]:
        return (self.prefix,)

    def evaluate(self, obj: Any) -> bool:
        x = getattr(obj, self.field.name)
        if isinstance(self.prefix, str):
            return isinstance(x, str) and x.startswith(self.prefix)
        return isinstance(x, bytes) and x.startswith(self.prefix)

    def __repr__(self) -> str:
        return f"{self.field!r}.startswith({self.prefix!r})"


class IsNone(Leaf):
    """``field is None`` (``negated``: ``field is not None``) on an optional field."""

    __slots__ = ("negated",)

    def __init__(self, field: Field, negated: bool = False) -> None:
        super().__init__(field)
        self.negated = negated

    def _args(self) -> tuple[Any, ...]:
        return (self.negated,)

    def evaluate(self, obj: Any) -> bool:
        return (getattr(obj, self.field.name) is None) != self.negated

    def __repr__(self) -> str:
        return f"{self.field!r}.{'is_not_none' if self.negated else 'is_none'}()"


class Contains(Leaf):
    """A collection field (list, set, frozenset, tuple) holds ``value`` (Python ``in``)."""

    __slots__ = ("value",)

    def __init__(self, field: Field, value: Any) -> None:
        super().__init__(field)
        self.value = value

    def _args(self) -> tuple[Any, ...]:
        return (self.value,)

    def evaluate(self, obj: Any) -> bool:
        x = getattr(obj, self.field.name)
        if x is None:
            return False
        try:
            return self.value in x
        except TypeError:
            return False

    def __repr__(self) -> str:
        return f"contains({self.field!r}, {self.value!r})"


class _Junction(Expr):
    __slots__ = ("_owner", "items")
    _symbol: str = ""

    def __init__(self, items: tuple[Expr, ...]) -> None:
        self.items = items
        self._owner = items[0].owner

    @property
    def owner(self) -> type:
        return self._owner

    def fields(self) -> Iterator[Field]:
        for e in self.items:
            yield from e.fields()

    def _key(self) -> tuple[Any, ...]:
        return tuple((type(e), e._key()) for e in self.items)

    def __repr__(self) -> str:
        return f" {self._symbol} ".join(_wrap(e) for e in self.items)


class And(_Junction):
    """Every item holds (what ``where(a, b)`` and ``a & b`` build)."""

    __slots__ = ()
    _symbol = "&"

    def evaluate(self, obj: Any) -> bool:
        return all(e.evaluate(obj) for e in self.items)


class Or(_Junction):
    """At least one item holds."""

    __slots__ = ()
    _symbol = "|"

    def evaluate(self, obj: Any) -> bool:
        return any(e.evaluate(obj) for e in self.items)


class Not(Expr):
    """``item`` does not hold (exactly ``not item.evaluate(obj)``)."""

    __slots__ = ("item",)

    def __init__(self, item: Expr) -> None:
        self.item = item

    @property
    def owner(self) -> type:
        return self.item.owner

    def fields(self) -> Iterator[Field]:
        return self.item.fields()

    def _key(self) -> tuple[Any, ...]:
        return (type(self.item), self.item._key())

    def evaluate(self, obj: Any) -> bool:
        return not self.item.evaluate(obj)

    def __repr__(self) -> str:
        return f"~{_wrap(self.item)}"


class Field:
    """A reference to one field of one entity class, the leaf of query expressions.

    Comparison operators build :class:`Compare` nodes, so a ``Field`` has no truth value and
    compares with ``==`` as a query, not as a Python value; its hash is its identity (a dict
    or set of fields never calls ``__eq__``).
    """

    __slots__ = ("name", "owner")

    def __init__(self, owner: type, name: str) -> None:
        self.owner = owner
        self.name = name

    @property
    def entity(self) -> EntityInfo:
        info = getattr(self.owner, "__quanta_entity__", None)
        if not isinstance(info, EntityInfo):
            raise QueryError(
                f"{self!r}: {self.owner.__name__} is not an entity class (decorate it with @quanta.entity)"
            )
        return info

    @property
    def info(self) -> FieldInfo:
        """The field's :class:`FieldInfo`; ``QueryError`` if the entity has no such field."""
        try:
            return self.entity.field(self.name)
        except KeyError:
            raise QueryError(f"{self.owner.__name__} has no field {self.name!r}") from None

    def __repr__(self) -> str:
        return f"{self.owner.__name__}.{self.name}"

    def __bool__(self) -> bool:
        raise QueryError(f"{self!r}: a field has no truth value; {_BOOL_HINT}")

    __hash__ = object.__hash__

    # -- comparisons ------------------------------------------------------------------------

    def _compare(self, op: str, value: Any) -> Compare:
        fi = self.info
        what = f"{self!r} {op} {value!r}"
        if value is None:
            if op not in EQUALITY_OPS:
                raise QueryError(f"{what}: None has no order; use {self!r}.is_none() or .is_not_none()")
            if not fi.optional:
                raise QueryError(
                    f"{what}: {self!r} is declared {_type_name(fi.annotation)}, not optional, so it is never None"
                )
            return Compare(self, op, None)
        if op in ORDER_OPS:
            _require_orderable(self, fi, op)
        return Compare(self, op, _coerce(fi.base, value, what))

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return self._compare("==", value)

    def __invert__(self) -> Compare:
        """``~Post.draft`` on a ``bool`` field: ``Post.draft == False`` (the same node, so it
        plans and explains as an equality). ``QueryError`` on any other field, and on an
        optional bool (``bool | None``), where "not true" would be ambiguous about None."""
        fi = self.info
        if fi.base is not bool or fi.optional:
            raise QueryError(
                f"~{self!r}: ~ on a field needs a bool field (not optional); {self!r} is "
                f"{_type_name(fi.annotation)}: compare it instead ({self!r} == False, {self!r}.is_none())"
            )
        return self._compare("==", False)

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return self._compare("!=", value)

    def __lt__(self, value: Any) -> Compare:
        return self._compare("<", value)

    def __le__(self, value: Any) -> Compare:
        return self._compare("<=", value)

    def __gt__(self, value: Any) -> Compare:
        return self._compare(">", value)

    def __ge__(self, value: Any) -> Compare:
        return self._compare(">=", value)

    def _in(self, values: Iterable[Any], what: str) -> In:
        """``in_(self, values)`` (``values`` checked to be a collection); link fields override."""
        fi = self.info
        out: list[Any] = []
        for v in values:
            if v is None:
                if not fi.optional:
                    raise QueryError(
                        f"{what}: {self!r} is declared {_type_name(fi.annotation)}, not optional; None never matches"
                    )
                out.append(None)
            else:
                out.append(_coerce(fi.base, v, what))
        return In(self, tuple(out))

    def _contains(self, value: Any, what: str) -> Contains:
        """``contains(self, value)``; link fields override."""
        fi = self.info
        elem = _element_type(fi.base)
        if elem is None:
            raise QueryError(
                f"{what}: contains() needs a list, set or tuple field; {self!r} is {_type_name(fi.annotation)}"
            )
        elem_type, elem_optional = elem
        if value is None:
            if not elem_optional:
                raise QueryError(f"{what}: the elements of {self!r} ({_type_name(fi.annotation)}) are never None")
            return Contains(self, None)
        return Contains(self, _coerce(elem_type, value, what))

    def startswith(self, prefix: str | bytes) -> StartsWith:
        """Values starting with ``prefix`` (a str for a str field, bytes for a bytes field)."""
        fi = self.info
        kt = fi.key_type
        what = f"{self!r}.startswith({prefix!r})"
        if kt is None or not issubclass(kt, str | bytes) or issubclass(kt, bool):
            raise QueryError(f"{what}: startswith needs a str or bytes field; {self!r} is {_type_name(fi.annotation)}")
        want: type = str if issubclass(kt, str) else bytes
        if not isinstance(prefix, want):
            raise QueryError(f"{what}: the prefix must be {want.__name__}, got {type(prefix).__name__}")
        return StartsWith(self, want(prefix))

    def is_none(self) -> IsNone:
        """The field holds None (optional fields only)."""
        return IsNone(self._optional("is_none"), negated=False)

    def is_not_none(self) -> IsNone:
        """The field holds a value (optional fields only)."""
        return IsNone(self._optional("is_not_none"), negated=True)

    def _optional(self, method: str) -> Field:
        fi = self.info
        if not fi.optional:
            raise QueryError(
                f"{self!r}.{method}(): {self!r} is declared {_type_name(fi.annotation)}, not optional, "
                "so it is never None"
            )
        return self


def _require_orderable(field: Field, fi: FieldInfo, what: str) -> None:
    if fi.link_kind is not None:
        raise QueryError(
            f"{field!r} is a link: it has no order, so {what} does not apply to it; only ==, !=, in_, contains "
            "and has(...) do"
        )
    if fi.key_type is None:
        raise QueryError(
            f"{field!r} ({_type_name(fi.annotation)}) cannot be ordered, so {what} does not apply to it; "
            "only ==, != and in_ do"
        )


def _field(f: Any, func: str) -> Field:
    if not isinstance(f, Field):
        raise QueryError(f"{func}() takes an entity field such as User.age first, got {f!r}")
    f.info  # noqa: B018 (raises QueryError for an unknown field or a non-entity class)
    return f


def between(field: Any, lo: Any, hi: Any) -> Between:
    """``lo <= field <= hi``, both ends inclusive (empty, not an error, when ``lo > hi``)."""
    f = _field(field, "between")
    fi = f.info
    what = f"between({f!r}, {lo!r}, {hi!r})"
    _require_orderable(f, fi, "between")
    if lo is None or hi is None:
        raise QueryError(f"{what}: None has no order; use {f!r}.is_none()")
    lo = _coerce(fi.base, lo, what)
    hi = _coerce(fi.base, hi, what)
    try:
        lo <= hi  # noqa: B015 (only checks that the bounds are comparable)
    except TypeError:
        raise QueryError(f"{what}: the bounds cannot be compared with each other") from None
    return Between(f, lo, hi)


def in_(field: Any, values: Iterable[Any]) -> In:
    """``field`` equals one of ``values``. An empty collection is a valid, always-false
    predicate (a query with it returns nothing)."""
    f = _field(field, "in_")
    what = f"in_({f!r}, {values!r})"
    if isinstance(values, str | bytes | bytearray | memoryview) or not isinstance(values, Iterable):
        raise QueryError(
            f"{what}: in_() takes a collection of values (a list, tuple or set), got {type(values).__name__}"
        )
    return f._in(values, what)


def contains(field: Any, value: Any) -> Contains:
    """The collection field ``field`` (list, set, frozenset or tuple) holds ``value``."""
    f = _field(field, "contains")
    return f._contains(value, f"contains({f!r}, {value!r})")


def _combine(kind: type[_Junction], exprs: tuple[Any, ...]) -> Expr:
    name = "and_" if kind is And else "or_"
    if not exprs:
        raise QueryError(f"{name}() needs at least one expression")
    items: list[Expr] = []
    for e in exprs:
        if not isinstance(e, Expr):
            raise QueryError(
                f"{name}(): expected a query expression such as User.age > 3, got {type(e).__name__} {e!r}"
            )
        if type(e) is kind:
            items.extend(e.items)
        else:
            items.append(e)
    owner = items[0].owner
    for e in items[1:]:
        if e.owner is not owner:
            other = next(f for f in e.fields() if f.owner is not owner)
            raise QueryError(
                f"one query cannot mix entities: {other!r} is a field of {e.owner.__name__}, "
                f"the rest of the query is about {owner.__name__}"
            )
    if len(items) == 1:
        return items[0]
    return kind(tuple(items))


def and_(*exprs: Expr) -> Expr:
    """All of ``exprs`` hold (``where(a, b)`` is ``where(and_(a, b))``)."""
    return _combine(And, exprs)


def or_(*exprs: Expr) -> Expr:
    """At least one of ``exprs`` holds."""
    return _combine(Or, exprs)


def not_(expr: Expr) -> Expr:
    """``expr`` does not hold (``~expr``)."""
    if not isinstance(expr, Expr):
        raise QueryError(f"not_(): expected a query expression, got {type(expr).__name__} {expr!r}")
    return Not(expr)


class Order:
    """One ``order_by`` key: ``asc(User.age)`` / ``desc(User.age)``."""

    __slots__ = ("descending", "field")

    def __init__(self, field: Field, descending: bool = False) -> None:
        self.field = field
        self.descending = descending

    def __repr__(self) -> str:
        return f"{'desc' if self.descending else 'asc'}({self.field!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Order)
            and other.field.owner is self.field.owner
            and other.field.name == self.field.name
            and other.descending == self.descending
        )

    def __hash__(self) -> int:
        return hash((self.field.owner, self.field.name, self.descending))


def as_order(key: Any) -> Order:
    """An :class:`Order` from an ``order_by`` argument: an ``Order`` or a bare field (ascending)."""
    if isinstance(key, Order):
        return key
    f = _field(key, "order_by")
    _require_orderable(f, f.info, "order_by")
    return Order(f)


def asc(field: Any) -> Order:
    """Order by ``field``, smallest first (None first)."""
    return as_order(field)


def desc(field: Any) -> Order:
    """Order by ``field``, largest first (None last)."""
    return Order(as_order(field).field, descending=True)
