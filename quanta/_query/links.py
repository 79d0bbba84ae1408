"""Query expressions on link fields: ``Post.author == ann``, ``in_(Post.author, [...])``,
``contains(Post.tags, tag)`` and ``Post.author.has(Author.name == "Ann")``.

Class-level access to a ``Link`` field returns a :class:`LinkField` (a ``Links`` field a
:class:`LinksField`); both are :class:`~quanta._query.expr.Field` s whose values are the
target's primary key. A condition accepts the target object, a ``Link`` or the primary key,
and is built as the plain node on the key (``Compare``, :class:`LinkIn`, ``Contains``), so
the planner serves it from the link's automatic index like any indexed field, and a record's
``Link`` compares equal to the key when the condition is evaluated (``Link.__eq__``).

``has(...)`` (a condition through the link, on the target's fields) builds a :class:`Through`
node. It cannot be decided from one record: a query holding one is planned when it runs, in
two steps (``quanta/_entity/_queries.py``): the condition is run as a query on the target
collection, at the same snapshot, and the ``Through`` node is replaced by "the link is one of
the keys found" (:class:`LinkIn`, or :class:`LinksAny` for a ``Links`` field), which the
planner serves with one range of the link's index per key. ``explain()`` shows both steps.
Live queries cannot hold ``has(...)`` (``evaluate`` raises ``QueryError``).

Links have no order: ``<``, ``between``, ``startswith`` and ``order_by`` on a link field are
``QueryError`` s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import QueryError
from .expr import ORDER_OPS, Compare, Contains, Expr, Field, In, Leaf, Not, _coerce, _Junction, and_

if TYPE_CHECKING:
    from .._schema import LinkSpec

__all__ = ["LinkField", "LinkIn", "LinksAny", "LinksField", "Through", "has_through"]

T = TypeVar("T")


class LinkField(Field, Generic[T]):
    """A ``Link`` field as a query field (``Post.author``)."""

    __slots__ = ()

    @property
    def spec(self) -> LinkSpec:
        spec = self.entity.relations.link(self.name)
        if spec is None:  # pragma: no cover - the entity layer makes LinkFields of links only
            raise QueryError(f"{self!r} is not a link")
        return spec  # type: ignore[no-any-return]

    def _pk(self, value: Any, what: str) -> Any:
        """``value`` (a target object, a Link or a primary key) as the target's primary key."""
        from .._schema import Link

        spec = self.spec
        target = spec.target
        if isinstance(value, Field | Expr):
            return _coerce(object, value, what)  # raises the usual QueryError
        if type(value) is Link:
            value = value.pk
        elif isinstance(value, target):
            pk = getattr(value, spec.pk_name)
            if spec.target_info.auto and not pk:
                raise QueryError(f"{what}: the {target.__qualname__} has no primary key yet (store it first)")
            value = pk
        elif type(value).__dict__.get("__quanta_entity__") is not None:
            raise QueryError(f"{what}: {self!r} links to {target.__qualname__}, not to {type(value).__qualname__}")
        return _coerce(spec.target_info.pk_field.base, value, f"{what} (the primary key of {target.__qualname__})")

    def _compare(self, op: str, value: Any) -> Compare:
        what = f"{self!r} {op} {value!r:.60}"
        if op in ORDER_OPS:
            raise QueryError(f"{what}: a link has no order; compare it with == or !=, or use in_() or has()")
        if self.spec.many:
            raise QueryError(f"{what}: {self!r} holds several links; use contains({self!r}, x) or {self!r}.has(...)")
        if value is None:
            if not self.info.optional:
                raise QueryError(f"{what}: {self!r} is a required link, never None")
            return Compare(self, op, None)
        return Compare(self, op, self._pk(value, what))

    def _in(self, values: Iterable[Any], what: str) -> In:
        if self.spec.many:
            raise QueryError(f"{what}: {self!r} holds several links; use contains() or has()")
        out: list[Any] = []
        for v in values:
            if v is None:
                if not self.info.optional:
                    raise QueryError(f"{what}: {self!r} is a required link, never None")
                out.append(None)
            else:
                out.append(self._pk(v, what))
        return LinkIn(self, tuple(out))

    def _contains(self, value: Any, what: str) -> Contains:
        if not self.spec.many:
            raise QueryError(f"{what}: {self!r} holds one link; compare it with == or use in_()")
        if value is None:
            raise QueryError(f"{what}: a Links field holds no None")
        return Contains(self, self._pk(value, what))

    def startswith(self, prefix: str | bytes) -> Any:
        raise QueryError(f"{self!r}.startswith(...): a link has no text; use has(...) for a condition on the target")

    def has(self, *conditions: Any) -> Expr:
        """Records whose target (any of them, for ``Links``) matches every condition, which
        are on the target's fields: ``Post.author.has(Author.name == "Ann")``. Run in two
        steps (see the module docstring)."""
        spec = self.spec
        target = spec.target
        what = f"{self!r}.has(...)"
        if not conditions:
            raise QueryError(f"{what} takes conditions on {target.__qualname__}'s fields")
        for c in conditions:
            if not isinstance(c, Expr):
                raise QueryError(f"{what} takes conditions such as {target.__qualname__}.name == 'x', got {c!r:.60}")
            if c.owner is not target:
                raise QueryError(
                    f"{what}: a condition through {self!r} is on {target.__qualname__}, not on {c.owner.__qualname__}"
                )
        return Through(self, and_(*conditions))


class LinksField(LinkField[T]):
    """A ``Links`` field as a query field (``Post.tags``): ``contains`` and ``has``."""

    __slots__ = ()


class LinkIn(In):
    """``in_`` on a link field: the link is one of ``values`` (keys; None for no link), with
    a set lookup per record (the key sets from a ``has`` step can be large)."""

    __slots__ = ("_set",)

    def __init__(self, field: Field, values: tuple[Any, ...]) -> None:
        super().__init__(field, values)
        self._set = frozenset(values)

    def evaluate(self, obj: Any) -> bool:
        x = getattr(obj, self.field.name)
        if x is None:
            return None in self._set
        return x.pk in self._set


class LinksAny(Leaf):
    """A ``Links`` field holds a link to one of ``values`` (what ``has`` on a ``Links``
    field becomes): the multi-entry index serves it, one range per key."""

    __slots__ = ("_set", "values")

    def __init__(self, field: Field, values: tuple[Any, ...]) -> None:
        super().__init__(field)
        self.values = values
        self._set = frozenset(values)

    def _args(self) -> tuple[Any, ...]:
        return self.values

    def evaluate(self, obj: Any) -> bool:
        s = self._set
        return any(lk.pk in s for lk in getattr(obj, self.field.name))

    def __repr__(self) -> str:
        return f"contains_any({self.field!r}, {list(self.values)!r})"


class Through(Leaf):
    """``field.has(inner)``: the link's target matches ``inner`` (an expression on the target
    class). Replaced by a key set before planning (see the module docstring)."""

    __slots__ = ("inner",)

    def __init__(self, field: LinkField[Any], inner: Expr) -> None:
        super().__init__(field)
        self.inner = inner

    @property
    def link(self) -> LinkField[Any]:
        field: LinkField[Any] = self.field  # type: ignore[assignment]
        return field

    def _args(self) -> tuple[Any, ...]:
        return (type(self.inner), self.inner._key())

    def evaluate(self, obj: Any) -> bool:
        raise QueryError(
            f"{self!r} is a condition on another collection: it is run as a query first, so it cannot be "
            "checked on one record (live queries do not support has(...))"
        )

    def __repr__(self) -> str:
        return f"{self.field!r}.has({self.inner!r})"


def has_through(e: Expr | None) -> bool:
    """Does ``e`` hold a ``has(...)`` condition anywhere?"""
    if isinstance(e, Leaf):
        return isinstance(e, Through)
    if isinstance(e, _Junction):
        return any(has_through(x) for x in e.items)
    if isinstance(e, Not):
        return has_through(e.item)
    return False
