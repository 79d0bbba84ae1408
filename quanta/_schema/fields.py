"""The markers an entity declaration is written with.

``PrimaryKey``, ``Index`` and ``Unique`` go in ``Annotated[...]`` metadata (``Index`` and
``Unique`` also in ``@entity(indexes=[...])`` for composite indexes); ``field`` is the
dataclass field specifier (defaults, ``default_factory``); ``auto()`` is the default that
declares an auto-assigned integer primary key (``id: int = quanta.auto()``). They are plain
immutable values:
the ``@entity`` decorator (``entity.py``) reads them once, at decoration time, and checks
every combination there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast, overload

__all__ = ["AutoKey", "Index", "PrimaryKey", "Unique", "auto", "field"]

_T = TypeVar("_T")


class PrimaryKey:
    """Marks the primary key: ``id: Annotated[int, PrimaryKey(auto=True)]``.

    One per entity. ``auto=True`` (int keys only): the collection assigns the next integer
    on insert when the field holds ``0`` or ``None``; the field defaults to ``0`` (``None``
    for ``int | None``) when the class gives it no default. A type checker cannot read
    ``Annotated`` metadata, so to it such a field has no default and every constructor call
    must pass the key: write the auto key as ``id: int = quanta.auto()`` (see :func:`auto`),
    which needs no ``PrimaryKey`` marker and which type checkers see as a default.
    """

    __slots__ = ("auto",)

    def __init__(self, auto: bool = False) -> None:
        self.auto = bool(auto)

    def __repr__(self) -> str:
        return f"PrimaryKey(auto={self.auto})"

    def __eq__(self, other: object) -> bool:
        return type(other) is PrimaryKey and other.auto == self.auto

    def __hash__(self) -> int:
        return hash((PrimaryKey, self.auto))


class AutoKey:
    """The value :func:`auto` returns: the ``@entity`` decorator replaces it by the "not
    assigned yet" default (``0``, or ``None`` for ``int | None``) before the class becomes a
    dataclass, so an instance never holds it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "quanta.auto()"


_AUTO = AutoKey()


def auto() -> int:
    """Declare the auto-assigned integer primary key: ``id: int = quanta.auto()``.

    The same as ``id: Annotated[int, PrimaryKey(auto=True)]``: the field is the primary key,
    it defaults to ``0`` (``None`` when declared ``int | None``), and the collection assigns
    the next integer on insert when it holds ``0`` or ``None``. Unlike the ``Annotated``
    form, a type checker sees the default, so ``User(name="Ann")`` type-checks (a type
    checker cannot read ``Annotated`` metadata, and a field it sees without a default is a
    required constructor argument). ``User(id=7, name="Ann")`` still sets the key.

    Statically this returns ``int``, so ``name: str = quanta.auto()`` is a type error; at
    run time it returns a marker (:class:`AutoKey`) that ``@entity`` replaces. It is
    deliberately not one of ``@entity``'s ``dataclass_transform`` field specifiers: type
    checkers count a field specifier call as a default only when it is passed
    ``default=``/``default_factory=``, while any other call is a default.
    """
    return cast(int, _AUTO)


class Index:
    """A secondary index.

    On one field, in its annotation: ``name: Annotated[str, Index()]`` (no field names).
    Over several fields, on the class: ``@entity(indexes=[Index("city", "age")])``; the
    order of the names is the order of the key, so the index serves equality on a prefix of
    them plus a range on the next one. ``unique=True``: at most one record per value (tuple);
    ``multi=True``: one entry per element of a collection field (``list[str]`` and the like);
    ``name``: the stored index name, by default the field names joined with ``_``.
    """

    __slots__ = ("fields", "multi", "name", "unique")

    def __init__(self, *fields: str, unique: bool = False, multi: bool = False, name: str | None = None) -> None:
        self.fields: tuple[str, ...] = fields
        self.unique = bool(unique)
        self.multi = bool(multi)
        self.name = name

    def __repr__(self) -> str:
        args = [repr(f) for f in self.fields]
        if self.unique and type(self) is Index:
            args.append("unique=True")
        if self.multi:
            args.append("multi=True")
        if self.name is not None:
            args.append(f"name={self.name!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Index):
            return NotImplemented
        mine = (self.fields, self.unique, self.multi, self.name)
        return mine == (other.fields, other.unique, other.multi, other.name)

    def __hash__(self) -> int:
        return hash((Index, self.fields, self.unique, self.multi, self.name))


class Unique(Index):
    """A unique index: ``email: Annotated[str, Unique()]``, or ``Unique("first", "last")``
    on the class for a unique composite. Same as ``Index(..., unique=True)``."""

    __slots__ = ()

    def __init__(self, *fields: str, multi: bool = False, name: str | None = None) -> None:
        super().__init__(*fields, unique=True, multi=multi, name=name)


# The overloads mirror typeshed's ``dataclasses.field``, so that a type checker treats
# ``field(default_factory=list)`` as a ``list[...]`` default (``field`` is one of the
# ``field_specifiers`` of ``@entity``'s ``dataclass_transform``).
@overload
def field(
    *,
    default: _T,
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
    hash: bool | None = None,
    metadata: Mapping[Any, Any] | None = None,
) -> _T: ...


@overload
def field(
    *,
    default_factory: Callable[[], _T],
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
    hash: bool | None = None,
    metadata: Mapping[Any, Any] | None = None,
) -> _T: ...


@overload
def field(
    *,
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
    hash: bool | None = None,
    metadata: Mapping[Any, Any] | None = None,
) -> Any: ...


def field(
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
    hash: bool | None = None,
    metadata: Mapping[Any, Any] | None = None,
) -> Any:
    """An entity field with a default or a default factory (``dataclasses.field``, keyword-only).

    ``tags: list[str] = quanta.field(default_factory=list)``. ``init``, ``repr``,
    ``compare``, ``hash`` and ``metadata`` mean what they mean for dataclasses; every field
    is stored, whatever they say.
    """
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        init=init,
        repr=repr,
        compare=compare,
        hash=hash,
        metadata=metadata,
    )
