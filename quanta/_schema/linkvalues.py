"""The values entity objects hold for their links, and the class attributes that make them.

A ``Link`` field holds a :class:`Link` (None when optional and empty), a ``Links`` field a
:class:`Links`, and reading a backlink gives a :class:`Backlink` view: the declarations and
the rules are in ``relations.py``, whose module docstring explains binding (how a loaded
object reaches its database) and equality. The class attributes (:class:`LinkAttr`,
:class:`BacklinkAttr`) are installed by ``@quanta.entity`` in place of the dataclass
defaults.

Concurrency: event-loop thread only (loading reads through a database or transaction).
"""

from __future__ import annotations

import datetime
import typing
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeAlias, TypeVar, overload

from ..errors import IntegrityError, InvalidArgumentError, InvalidTypeError

if TYPE_CHECKING:
    from .._entity import Query
    from .._query.links import LinkField, LinksField
    from .relations import BacklinkSpec, LinkSpec

__all__ = [
    "SOURCE",
    "Backlink",
    "BacklinkAttr",
    "Link",
    "LinkAttr",
    "Links",
    "PKValue",
    "Source",
    "make_backlink",
    "make_getstate",
]

T = TypeVar("T")
_E = TypeVar("_E")

PKValue: TypeAlias = int | str | bytes | float | datetime.datetime | datetime.date | uuid.UUID
"""What a link field accepts besides the target object (statically): a primary key."""

SOURCE = "_quanta_source"
"""The instance-dict entry holding the database or transaction an object was read or
stored through (see "Binding" in ``relations.py``)."""

_new = object.__new__


class Source(Protocol):
    """A database or a transaction: what ``load()`` reads through."""

    def collection(self, cls: type[_E]) -> Any: ...


# ---------------------------------------------------------------------------------------------
# Values


def _bad_source(where: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{where}: the object is not bound to a database (it was not read or stored through a collection); "
        "pass one: load(db) or load(tx)"
    )


class Link(Generic[T]):
    """A to-one link: the target's primary key, and the target object once given or loaded.

    ``link.pk`` is the target's primary key; ``link.target`` the object (None until loaded);
    ``await link.load()`` returns the target, reading it through the database or
    transaction the owner came from unless the link holds it already (``refresh=True``
    reads again). Attribute access falls through to the target: ``post.author.id`` (the
    primary key) works at once, any other attribute once loaded (``AttributeError``
    before). Links compare equal to links to the same record, to that record's object and
    to its primary key (and hash like the primary key).
    """

    __slots__ = ("_obj", "_pk", "_spec", "_src")

    _spec: LinkSpec | None
    _pk: Any
    _obj: Any
    _src: Any

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "links are made by assigning a target object or its primary key to a link field: "
            "Post(author=ann) or post.author = ann.id"
        )

    if TYPE_CHECKING:
        # The static face of a Link field (dataclass_transform reads descriptor-typed fields):
        # on the class, a query field; on an instance, the Link (``Link[T] | None`` for
        # ``Link[T | None]``); assigning takes the target, its primary key or a Link.
        @overload
        def __get__(self, instance: None, owner: Any) -> LinkField[T]: ...
        @overload
        def __get__(self: Link[_E | None], instance: object, owner: Any) -> Link[_E] | None: ...
        @overload
        def __get__(self, instance: object, owner: Any) -> Link[T]: ...
        def __get__(self, instance: object, owner: Any) -> Any: ...
        def __set__(self, instance: object, value: T | Link[Any] | PKValue) -> None: ...

    @property
    def pk(self) -> Any:
        """The target's primary key."""
        obj = self._obj
        if obj is None:
            return self._pk
        spec = self._spec
        if spec is None:
            return self._pk
        return getattr(obj, spec.pk_name)

    @property
    def target(self) -> T | None:
        """The target object if the link holds it (given, loaded or preloaded), else None."""
        obj: T | None = self._obj
        return obj

    async def load(self, source: Source | None = None, *, refresh: bool = False) -> T:
        """The target object: the one the link holds, else read through ``source`` (default:
        the database or transaction the owner object came from) and kept. Raises
        ``IntegrityError`` if the target does not exist (any more)."""
        if self._obj is not None and not refresh:
            obj: T = self._obj
            return obj
        spec = self._spec
        assert spec is not None
        src = source if source is not None else self._src
        if src is None:
            raise _bad_source(spec.where)
        pk = self.pk
        found = await src.collection(spec.target).get(pk)
        if found is None:
            raise IntegrityError(f"{spec.where}: no {spec.target_info.name} with {spec.pk_name}={pk!r}")
        self._obj = found
        return found  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not the Link's own.
        if name.startswith("__") or name.startswith("_"):
            raise AttributeError(name)
        spec = self._spec
        if spec is None:
            raise AttributeError(name)
        obj = self._obj
        if obj is not None:
            return getattr(obj, name)
        if name == spec.pk_name:
            return self._pk
        raise AttributeError(
            f"{spec.where}: {spec.target_name}.{name} is not loaded: only the primary key "
            f"({spec.pk_name}={self._pk!r}) is known; await the link's load() first"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is Link:
            mine, theirs = self._spec, other._spec
            if mine is not None and theirs is not None and mine._target is not theirs._target:
                return False
            return bool(self.pk == other.pk)
        spec = self._spec
        if spec is not None and spec._target is not None and isinstance(other, spec._target):
            return bool(self.pk == getattr(other, spec.pk_name))
        return bool(self.pk == other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.pk)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        spec = self._spec
        if spec is None:
            return f"Link({self.pk!r})"
        loaded = ", loaded" if self._obj is not None else ""
        return f"Link({spec.target_name}, {self.pk!r}{loaded})"

    def __reduce__(self) -> tuple[Any, ...]:
        spec = self._spec
        if spec is None:
            return (_plain_link, (self.pk,))
        return (_restore_link, (spec.owner, spec.name, self.pk))


def _plain_link(pk: Any) -> Link[Any]:
    lk: Link[Any] = _new(Link)
    lk._spec, lk._pk, lk._obj, lk._src = None, pk, None, None
    return lk


def _restore_link(owner: type, name: str, pk: Any) -> Link[Any]:
    spec = owner.__dict__["__quanta_entity__"].relations.link(name)
    return spec.make(pk)  # type: ignore[no-any-return]


class Links(list[Link[T]]):
    """A to-many link: a list of :class:`Link` (appending or assigning accepts target
    objects and primary keys too). ``links.pks`` lists the primary keys; ``await
    links.load()`` the targets, read in one batch (those it does not hold yet)."""

    __slots__ = ("_spec", "_src")

    _spec: LinkSpec | None
    _src: Any

    def __init__(self, items: Iterable[Any] = ()) -> None:  # only copies (dataclasses.asdict) build one
        super().__init__(items)
        self._spec = None
        self._src = None

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: Any) -> LinksField[T]: ...
        @overload
        def __get__(self, instance: object, owner: Any) -> Links[T]: ...
        def __get__(self, instance: object, owner: Any) -> Any: ...
        def __set__(self, instance: object, value: Iterable[T | Link[Any] | PKValue]) -> None: ...

    def _wrap(self, value: Any) -> Any:
        spec = self._spec
        if spec is None:
            return value
        lk = spec.wrap(value)
        if lk is None:
            raise InvalidTypeError(f"{spec.where}: a Links field holds links, not None")
        return lk

    def append(self, item: T | Link[Any] | PKValue) -> None:
        list.append(self, self._wrap(item))

    def insert(self, index: typing.SupportsIndex, item: T | Link[Any] | PKValue) -> None:
        list.insert(self, index, self._wrap(item))

    def extend(self, items: Iterable[T | Link[Any] | PKValue]) -> None:
        list.extend(self, [self._wrap(x) for x in items])

    def __iadd__(self, items: Iterable[T | Link[Any] | PKValue]) -> Links[T]:  # type: ignore[override,misc]
        self.extend(items)
        return self

    @overload
    def __setitem__(self, index: typing.SupportsIndex, item: T | Link[Any] | PKValue) -> None: ...
    @overload
    def __setitem__(self, index: slice, item: Iterable[T | Link[Any] | PKValue]) -> None: ...
    def __setitem__(self, index: Any, item: Any) -> None:
        if isinstance(index, slice):
            list.__setitem__(self, index, [self._wrap(x) for x in item])
        else:
            list.__setitem__(self, index, self._wrap(item))

    @property
    def pks(self) -> list[Any]:
        """The targets' primary keys, in order."""
        return [lk.pk for lk in self]

    @property
    def targets(self) -> list[T | None]:
        """The target objects the links hold (None where not loaded)."""
        return [lk._obj for lk in self]

    async def load(self, source: Source | None = None, *, refresh: bool = False) -> list[T]:
        """Every target, in order: those held, the others read in one ``get_many``."""
        spec = self._spec
        if spec is None:
            raise InvalidArgumentError("these links belong to no entity field")
        todo = [lk for lk in self if refresh or lk._obj is None]
        if todo:
            src = source if source is not None else self._src
            if src is None:
                raise _bad_source(spec.where)
            pks = [lk.pk for lk in todo]
            found = await src.collection(spec.target).get_many(pks)
            for lk, obj, pk in zip(todo, found, pks, strict=True):
                if obj is None:
                    raise IntegrityError(f"{spec.where}: no {spec.target_info.name} with {spec.pk_name}={pk!r}")
                lk._obj = obj
        return [lk._obj for lk in self]

    def __reduce__(self) -> tuple[Any, ...]:
        spec = self._spec
        if spec is None:
            return (Links, (list(self),))
        return (_restore_links, (spec.owner, spec.name, self.pks))

    def __repr__(self) -> str:
        spec = self._spec
        if spec is None:
            return f"Links({list.__repr__(self)})"
        return f"Links({spec.target_name}, {self.pks!r})"


def _restore_links(owner: type, name: str, pks: list[Any]) -> Links[Any]:
    spec = owner.__dict__["__quanta_entity__"].relations.link(name)
    return spec.make_many(pks)  # type: ignore[no-any-return]


class Backlink(Generic[T]):
    """The referrers of one object through one link field (``author.posts``): computed from
    the link's index, never stored.

    ``await author.posts.all()`` lists them (in primary key order) and keeps the list
    (``.loaded``); ``count()`` counts them; ``query()`` is a query to refine
    (``author.posts.query().where(Post.year == 2024)``). After ``load_links`` (or a
    previous ``all()``) ``all()`` returns the kept list; ``refresh=True`` reads again.
    """

    __slots__ = ("_loaded", "_owner", "_spec")

    _spec: BacklinkSpec
    _owner: Any
    _loaded: list[T] | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("read a backlink from its object: author.posts")

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: Any) -> BacklinkSpec: ...
        @overload
        def __get__(self, instance: object, owner: Any) -> Backlink[T]: ...
        def __get__(self, instance: object, owner: Any) -> Any: ...

    @property
    def loaded(self) -> list[T] | None:
        """The referrers kept by ``load_links`` or the last ``all()``; None before."""
        return self._loaded

    def _source(self, source: Source | None) -> Source:
        src = source if source is not None else self._owner.__dict__.get(SOURCE)
        if src is None:
            raise _bad_source(self._spec.where)
        return src

    def query(self, source: Source | None = None) -> Query[T]:
        """The referrers as a query (through the owner's database or transaction, or
        ``source``)."""
        spec = self._spec.link
        coll = self._source(source).collection(spec.owner)
        return coll.where(condition(spec, self._pk()))  # type: ignore[no-any-return]

    def _pk(self) -> Any:
        owner = self._owner
        pk = getattr(owner, type(owner).__dict__["__quanta_entity__"].primary_key)
        return pk

    async def all(self, source: Source | None = None, *, refresh: bool = False) -> list[T]:
        if self._loaded is not None and not refresh:
            return list(self._loaded)
        rows = await self.query(source).all()
        self._loaded = rows
        return list(rows)

    async def count(self, source: Source | None = None) -> int:
        if self._loaded is not None and source is None:
            return len(self._loaded)
        return await self.query(source).count()

    def __repr__(self) -> str:
        n = "not loaded" if self._loaded is None else f"{len(self._loaded)} loaded"
        return f"<Backlink {self._spec.where} ({n})>"


def condition(spec: LinkSpec, pk: Any) -> Any:
    """The query condition "``spec``'s field links to ``pk``"."""
    from .._query.expr import contains  # the layer above, imported on use

    field = getattr(spec.owner, spec.name)  # the class attribute: the query field
    return contains(field, pk) if spec.many else field == pk


def make_backlink(spec: BacklinkSpec, owner: Any) -> Backlink[Any]:
    view: Backlink[Any] = _new(Backlink)
    view._spec = spec
    view._owner = owner
    view._loaded = None
    return view


# ---------------------------------------------------------------------------------------------
# The class attributes of link fields and backlinks (installed by @quanta.entity)


class LinkAttr:
    """The class attribute of a ``Link``/``Links`` field: a data descriptor, so that every
    assignment (the constructor's too) wraps the value (:meth:`LinkSpec.wrap`), and a read
    binds the link to the owner's source. On the class it is the query field
    (``quanta._query.links.LinkField``)."""

    __slots__ = ("_field", "name", "owner", "spec")

    def __init__(self, spec: LinkSpec) -> None:
        self.spec = spec
        self.owner = spec.owner
        self.name = spec.name
        self._field: Any = None

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            if owner is None or owner is self.owner:
                f = self._field
                if f is None:
                    f = self._field = _query_field(self.owner, self.name, self.spec.many)
                return f
            return _query_field(owner, self.name, self.spec.many)
        d = obj.__dict__
        try:
            value = d[self.name]
        except KeyError:
            raise AttributeError(f"{type(obj).__qualname__!r} object has no attribute {self.name!r}") from None
        if value is not None and value._src is None:
            src = d.get(SOURCE)
            if src is not None:
                value._src = src
                if type(value) is Links:
                    for lk in value:
                        if lk._src is None:
                            lk._src = src
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        spec = self.spec
        obj.__dict__[self.name] = spec.wrap_many(value) if spec.many else spec.wrap(value)

    def __delete__(self, obj: Any) -> None:
        try:
            del obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __repr__(self) -> str:
        return f"<link field {self.spec.where}>"


def _query_field(owner: type, name: str, many: bool) -> Any:
    from .._query.links import LinkField, LinksField  # the layer above, imported on use

    return (LinksField if many else LinkField)(owner, name)


class BacklinkAttr:
    """The class attribute of a backlink: on an instance, its :class:`Backlink` view (made on
    first read and kept in the instance dict); on the class, the :class:`BacklinkSpec`."""

    __slots__ = ("name", "spec")

    def __init__(self, spec: BacklinkSpec) -> None:
        self.spec = spec
        self.name = spec.name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.spec
        view = make_backlink(self.spec, obj)
        obj.__dict__[self.name] = view
        return view

    def __repr__(self) -> str:
        return f"<backlink {self.spec.where}>"


def make_getstate(backlinks: tuple[str, ...]) -> Any:
    """``__getstate__`` for an entity class with links: copies and pickles leave out the
    source binding and the backlink views."""

    def __getstate__(self: Any) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(SOURCE, None)
        for name in backlinks:
            state.pop(name, None)
        return state

    return __getstate__
