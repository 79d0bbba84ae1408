"""Links between entities: the declarations, their rules, and the registry of incoming links
that cascades walk (the values objects hold are in ``linkvalues.py``).

Declaring (``quanta.Link``, ``Links``, ``Backlink``, ``link``, ``links``, ``backlink``)::

    @quanta.entity
    class Post:
        id: Annotated[int, PrimaryKey(auto=True)]
        author: quanta.Link[Author] = quanta.link(on_delete="cascade")        # to-one
        editor: quanta.Link[Author | None] = quanta.link(default=None)        # optional
        tags: quanta.Links[Tag] = quanta.links()                              # to-many

    @quanta.entity
    class Author:
        id: Annotated[int, PrimaryKey(auto=True)]
        posts: quanta.Backlink[Post] = quanta.backlink("author")              # never stored

A record stores a link as the target's primary key (a Links field as the list of them); the
entity layer gives every link field an index (``IndexInfo`` named after the field; multi-entry
for ``Links``, unique when the field is ``Annotated[Link[T], Unique()]``), which is how "the
posts of this author" (a backlink, a query on the link, a cascade) is an index lookup.

Values. On an object, a ``Link`` field holds a :class:`Link` (or None when optional and
empty); a ``Links`` field a :class:`Links`, a list of ``Link``. Assigning (the constructor
included) accepts the target object, its primary key, or a ``Link``: the field's descriptor
wraps it. A ``Link`` made from an object keeps that object (``link.target``) and reads its
primary key when the record is written, so an object may link to a target whose auto key is
assigned later in the same batch. ``Backlink`` fields are not dataclass fields: reading one
returns a :class:`Backlink` view of the referrers.

Binding. Loading (``await post.author.load()``, ``await author.posts.all()``) reads through
the database or transaction the object came from: a collection sets it on every object it
returns or stores (the ``_quanta_source`` entry of the instance dict; copies and pickles
drop it). An object that was never read or stored through a collection is unbound: its links
still return the targets they were given, and ``load(db)`` takes a database or transaction
explicitly.

Forward references. ``Link["Post"]`` (or any annotation under ``from __future__ import
annotations``) may name a class that is declared later: the declaration stays pending and
is resolved when a class of that name is declared in the same scope (for a backlink, also
a class of that name anywhere that links to the backlink's class), else at first use (the
declaring module's globals, then the only entity class of that name). Until then the
link's ``FieldInfo`` has no ``key_type`` / ``link_target``: they are filled in (in place)
when it resolves. A name that never resolves is a ``SchemaError`` at first use.

Registry. Each entity's ``EntityInfo.relations`` (:class:`Relations`) lists its link fields
(``links``), its backlinks, and the resolved link fields of every declared class that point
to it (``incoming``): what a delete walks. A class that links to ``X`` must be declared
(imported) in the process that deletes ``X`` records for its rule to apply.

Concurrency: declaration and resolution run at import time or on the event-loop thread;
nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

from ..errors import InvalidTypeError, SchemaError
from .linkvalues import (
    SOURCE,
    Backlink,
    BacklinkAttr,
    Link,
    LinkAttr,
    Links,
    PKValue,
    Source,
    make_backlink,
    make_getstate,
)

if TYPE_CHECKING:
    from .info import EntityInfo

__all__ = [
    "ON_DELETE",
    "SOURCE",
    "Backlink",
    "BacklinkAttr",
    "BacklinkSpec",
    "Forward",
    "Link",
    "LinkAttr",
    "LinkMarker",
    "LinkSpec",
    "Links",
    "OnDelete",
    "PKValue",
    "Relations",
    "Source",
    "backlink",
    "declared",
    "has_pending",
    "index_value",
    "link",
    "links",
    "make_backlink",
    "make_getstate",
    "relation_of",
    "resolve_pending",
]

OnDelete: TypeAlias = Literal["cascade", "set_null", "restrict"]
ON_DELETE: tuple[str, ...] = ("cascade", "set_null", "restrict")

_new = object.__new__
_MISSING: Any = dataclasses.MISSING


# ---------------------------------------------------------------------------------------------
# Declarations


class LinkMarker:
    """What ``link()``, ``links()`` and ``backlink()`` return: read (and removed) by
    ``@quanta.entity``."""

    __slots__ = ("default", "field", "kind", "on_delete")

    def __init__(self, kind: str, on_delete: Any = "restrict", default: Any = _MISSING, field: Any = None) -> None:
        self.kind = kind  # "one", "many" or "back"
        self.on_delete = on_delete
        self.default = default
        self.field = field

    def __repr__(self) -> str:
        if self.kind == "back":
            return f"backlink({self.field!r})"
        return f"{'link' if self.kind == 'one' else 'links'}(on_delete={self.on_delete!r})"


@overload
def link(*, on_delete: OnDelete = "restrict", default: None) -> Any: ...
@overload
def link(*, on_delete: OnDelete = "restrict") -> Any: ...
def link(*, on_delete: OnDelete = "restrict", default: Any = _MISSING) -> Any:
    """A to-one link: ``author: Link[Author] = link(on_delete="cascade")``.

    ``on_delete`` says what deleting the target does to this record: ``"restrict"`` (the
    default: the delete raises ``IntegrityError``), ``"cascade"`` (this record is deleted
    too) or ``"set_null"`` (the link becomes None; the link must be optional,
    ``Link[Author | None]``). ``default=None``: an optional link that constructors may leave
    out."""
    return LinkMarker("one", on_delete, default)


def links(*, on_delete: OnDelete = "restrict") -> Any:
    """A to-many link: ``tags: Links[Tag] = links()`` (default: empty). ``on_delete`` as for
    :func:`link`; ``"set_null"`` removes the deleted target from the list."""
    return LinkMarker("many", on_delete)


def backlink(field: str, *, init: Literal[False] = False) -> Any:
    """The inverse of the link ``field`` of the class in ``Backlink[...]``:
    ``posts: Backlink[Post] = backlink("author")`` lists the posts whose ``author`` is this
    object. Computed from the other side's index, never stored (not a dataclass field)."""
    return LinkMarker("back", field=field)


class Forward:
    """Base of the placeholder classes that stand for a name not defined yet in a link's
    annotation (``Link[Post]`` before ``Post`` exists); see "Forward references"."""

    __forward_name__: str = ""


def forward(name: str) -> type[Forward]:
    return type(name, (Forward,), {"__forward_name__": name, "__module__": __name__})


def relation_of(tp: Any) -> tuple[str, Any, bool] | None:
    """``(kind, target, optional)`` when the (resolved) annotation ``tp`` declares a link:
    kind ``"one"`` (``Link[T]``, ``Link[T | None]``, ``Link[T] | None``), ``"many"``
    (``Links[T]``) or ``"back"`` (``Backlink[T]``), with ``Annotated`` layers allowed
    around; ``target`` is the class, a :class:`Forward` placeholder, or None when the
    annotation gives none (``Link`` alone). None for any other annotation."""
    base, outer_optional = _peel(tp)
    origin = typing.get_origin(base) or base
    kind = {Link: "one", Links: "many", Backlink: "back"}.get(origin)
    if kind is None:
        return None
    args = typing.get_args(base)
    if not args:
        return kind, None, outer_optional
    target, inner_optional = _peel(args[0])
    return kind, target, outer_optional or inner_optional


def _peel(tp: Any) -> tuple[Any, bool]:
    """``tp`` without ``Annotated`` layers and ``| None``; whether None was allowed."""
    optional = False
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin is typing.Union or origin is types.UnionType:
            args = typing.get_args(tp)
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1 and len(rest) < len(args):
                tp, optional = rest[0], True
                continue
        return tp, optional


# ---------------------------------------------------------------------------------------------
# The specs: one per link field, one per backlink


class LinkSpec:
    """One link field (``Post.author``): what the entity layer, the codec, the query layer
    and the cascades need to know of it. ``target`` resolves a forward reference on first
    use (``SchemaError`` if it cannot)."""

    __slots__ = (
        "_frame",
        "_globals",
        "_key_type",
        "_locals",
        "_pk_name",
        "_target",
        "many",
        "name",
        "on_delete",
        "optional",
        "owner",
        "target_name",
        "unique",
    )

    def __init__(
        self,
        owner: type,
        name: str,
        *,
        many: bool,
        optional: bool,
        on_delete: str,
        unique: bool,
        target: Any,
        namespaces: tuple[dict[str, Any], dict[str, Any], Any],
    ) -> None:
        self.owner = owner
        self.name = name
        self.many = many
        self.optional = optional
        self.on_delete = on_delete
        self.unique = unique
        self._target: type | None = None
        self._pk_name: str | None = None
        self._key_type: type | None = None  # the target's key type, once resolved (the codec's fast check)
        self.target_name: str = _name_of(target)
        self._globals, self._locals, self._frame = namespaces
        if not _is_forward(target):
            self._target = target

    @property
    def where(self) -> str:
        return f"{self.owner.__qualname__}.{self.name}"

    @property
    def index(self) -> str:
        """The name of the link's automatic index (the field's name)."""
        return self.name

    @property
    def owner_info(self) -> EntityInfo:
        info: EntityInfo = self.owner.__dict__["__quanta_entity__"]
        return info

    @property
    def resolved(self) -> bool:
        return self._pk_name is not None

    @property
    def target(self) -> type:
        """The target entity class (resolving a forward reference; SchemaError if it cannot)."""
        if self._pk_name is None:
            self.require()
        assert self._target is not None
        return self._target

    @property
    def target_info(self) -> EntityInfo:
        info: EntityInfo = self.target.__dict__["__quanta_entity__"]
        return info

    @property
    def pk_name(self) -> str:
        """The target's primary key field."""
        name = self._pk_name
        if name is None:
            self.require()
            name = self._pk_name
            assert name is not None
        return name

    def label(self) -> str:
        kind = "Links" if self.many else "Link"
        return f"{kind}[{self.target_name}{' | None' if self.optional and not self.many else ''}]"

    def __repr__(self) -> str:
        return f"<link {self.where}: {self.label()}, on_delete={self.on_delete!r}>"

    # -- resolution

    def require(self) -> None:
        """Resolve now or raise SchemaError naming the field."""
        if self._pk_name is not None:
            return
        if self._target is None and not self._try_names():
            raise SchemaError(
                f"{self.where}: cannot resolve {self.target_name!r} in {self.label()}: declare the entity class "
                f"{self.target_name} (and import its module) before {self.owner.__qualname__} is used"
            )
        self._complete()

    def _try_names(self) -> bool:
        found = _lookup(self.target_name, self._globals, self._locals, self._frame)
        if found is None:
            return False
        self._target = found
        return True

    def _complete(self) -> None:
        """The target is known: check it, fill in the field's FieldInfo, register as incoming."""
        target = self._target
        info = getattr(target, "__quanta_entity__", None)
        if info is None or getattr(info, "cls", None) is not target:
            shown = getattr(target, "__qualname__", repr(target))
            raise SchemaError(
                f"{self.where}: {self.label()} links to {shown}, which is not an entity class "
                "(declare it with @quanta.entity)"
            )
        pk = info.pk_field
        fi = self.owner_info.field(self.name)
        # The FieldInfo is frozen data the catalog stores; a forward reference only becomes
        # known now, so its target-dependent parts are filled in place (see the docstring).
        object.__setattr__(fi, "link_target", info.name)
        object.__setattr__(fi, "element_key_type" if self.many else "key_type", pk.key_type)
        self._pk_name = info.primary_key
        self._key_type = pk.key_type
        self._frame = None  # the scope is not needed any more (and would be kept alive)
        rel: Relations = info.relations
        if self not in rel.incoming:
            rel.incoming.append(self)
        _forget(self)

    # -- values

    def make(self, pk: Any) -> Link[Any]:
        """The Link a decoded record holds (the generated decode calls this)."""
        lk: Link[Any] = _new(Link)
        lk._spec = self
        lk._pk = pk
        lk._obj = None
        lk._src = None
        return lk

    def make_many(self, pks: Iterable[Any]) -> Links[Any]:
        out: Links[Any] = list.__new__(Links)
        out._spec = self
        out._src = None
        make = self.make
        list.extend(out, [make(pk) for pk in pks])
        return out

    def wrap(self, value: Any) -> Link[Any] | None:
        """A value assigned to the field (a target, a primary key, a Link, None) as a Link."""
        if value is None:
            return None
        if type(value) is Link:  # copied: a Link belongs to one object (and binds to its source)
            lk = self.make(value._pk)
            lk._obj = value._obj
            if value._obj is None and value._spec is not None and self._target is not None:
                other = value._spec._target
                if other is not None and other is not self._target:
                    raise InvalidTypeError(
                        f"{self.where}: expected a link to {self.target_name}, got a link to {other.__qualname__}"
                    )
            return lk
        if type(value).__dict__.get("__quanta_entity__") is not None:
            target = self._target
            if target is not None and not isinstance(value, target):
                raise InvalidTypeError(
                    f"{self.where}: expected a {self.target_name} (or its primary key), got a "
                    f"{type(value).__qualname__}"
                )
            lk = self.make(None)
            lk._obj = value
            return lk
        if isinstance(value, (Links, list, tuple, set, frozenset, dict)):
            raise InvalidTypeError(
                f"{self.where}: a Link holds one {self.target_name} (or its primary key), got {type(value).__name__}"
            )
        return self.make(value)

    def wrap_many(self, values: Any) -> Links[Any]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise InvalidTypeError(
                f"{self.where}: a Links field takes a list of {self.target_name} objects or primary keys, "
                f"got {type(values).__name__}"
            )
        out: Links[Any] = list.__new__(Links)
        out._spec = self
        out._src = None
        wrap = self.wrap
        items = []
        for v in values:
            lk = wrap(v)
            if lk is None:
                raise InvalidTypeError(f"{self.where}: a Links field holds links, not None")
            items.append(lk)
        list.extend(out, items)
        return out

    def check(self, o: Any) -> None:
        """The generated ``check`` of the owner calls this (when its inline test of the
        common case, a Link of this field holding a key of the target's key type, fails):
        the field holds a Link (or None when optional) of the right target whose primary
        key has the target's key type. Raises InvalidTypeError."""
        d = o.__dict__
        try:
            value = d[self.name]
        except KeyError:
            raise InvalidTypeError(f"{self.owner_info.name}.{self.name}: missing") from None
        if self.many:
            if type(value) is not Links or value._spec is not self:
                value = d[self.name] = self.wrap_many(value)
            for i, lk in enumerate(value):
                self._check_one(lk, f"{self.owner_info.name}.{self.name}[{i}]")
            return
        if value is None:
            if not self.optional:
                raise InvalidTypeError(
                    f"{self.owner_info.name}.{self.name}: a link to a {self.target_name} is required, got None "
                    f"(declare Link[{self.target_name} | None] for an optional link)"
                )
            return
        if type(value) is not Link or value._spec is not self:
            value = d[self.name] = self.wrap(value)
        self._check_one(value, f"{self.owner_info.name}.{self.name}")

    def _check_one(self, lk: Link[Any], where: str) -> None:
        target = self.target
        obj = lk._obj
        if obj is not None:
            if not isinstance(obj, target):
                raise InvalidTypeError(f"{where}: expected a {target.__qualname__}, got a {type(obj).__qualname__}")
            pk = getattr(obj, self.pk_name)
        else:
            pk = lk._pk
        kt = self.target_info.pk_field.key_type
        if type(pk) is kt:
            return
        if kt is float and type(pk) is int and obj is None:
            try:
                lk._pk = float(pk)
            except OverflowError:
                raise InvalidTypeError(f"{where}: {pk} is too large for a float key") from None
            return
        if kt is None or not isinstance(pk, kt) or (kt is int and isinstance(pk, bool)):
            got = "None" if pk is None else type(pk).__name__
            raise InvalidTypeError(
                f"{where}: expected a {target.__qualname__} or its primary key ({getattr(kt, '__name__', kt)}), "
                f"got {got} {pk!r}"
            )


class BacklinkSpec:
    """One backlink (``Author.posts = backlink("author")``): the inverse of the link field
    ``field`` of ``source``."""

    __slots__ = ("_frame", "_globals", "_link", "_locals", "_source", "field", "name", "owner", "source_name")

    def __init__(
        self, owner: type, name: str, field: str, source: Any, namespaces: tuple[dict[str, Any], dict[str, Any], Any]
    ) -> None:
        self.owner = owner
        self.name = name
        self.field = field
        self.source_name: str = _name_of(source)
        self._source: type | None = None if _is_forward(source) else source
        self._link: LinkSpec | None = None
        self._globals, self._locals, self._frame = namespaces

    @property
    def where(self) -> str:
        return f"{self.owner.__qualname__}.{self.name}"

    @property
    def resolved(self) -> bool:
        return self._link is not None

    @property
    def link(self) -> LinkSpec:
        """The link field this backlink inverts (resolving; SchemaError if it cannot)."""
        if self._link is None:
            self.require()
        assert self._link is not None
        return self._link

    def __repr__(self) -> str:
        return f"<backlink {self.where}: Backlink[{self.source_name}] of {self.source_name}.{self.field}>"

    def require(self) -> None:
        if self._link is not None:
            return
        if self._source is None:
            found = _lookup(self.source_name, self._globals, self._locals, self._frame)
            if found is None:
                raise SchemaError(
                    f"{self.where}: cannot resolve {self.source_name!r} in Backlink[{self.source_name}]: declare "
                    f"the entity class {self.source_name} (and import its module) before "
                    f"{self.owner.__qualname__} is used"
                )
            self._source = found
        self._complete()

    def _complete(self) -> None:
        source = self._source
        info = getattr(source, "__quanta_entity__", None)
        shown = getattr(source, "__qualname__", repr(source))
        what = f"{self.where} = backlink({self.field!r})"
        if info is None or getattr(info, "cls", None) is not source:
            raise SchemaError(f"{what}: Backlink[{shown}]: {shown} is not an entity class")
        rel: Relations = info.relations
        spec = next((s for s in rel.links if s.name == self.field), None)
        if spec is None:
            known = ", ".join(s.name for s in rel.links) or "none"
            if any(f.name == self.field for f in info.fields):
                raise SchemaError(f"{what}: {shown}.{self.field} is not a link (its link fields: {known})")
            raise SchemaError(f"{what}: {shown} has no field {self.field!r} (its link fields: {known})")
        spec.require()
        if spec.target is not self.owner:
            raise SchemaError(
                f"{what}: {shown}.{self.field} links to {spec.target.__qualname__}, not to {self.owner.__qualname__}"
            )
        self._link = spec
        self._frame = None
        _forget(self)


class Relations:
    """The link side of one entity class (``EntityInfo.relations``).

    ``links``: its link fields (outgoing); ``backlinks``: its backlinks; ``incoming``: the
    resolved link fields of declared classes that point to it (cascades walk these);
    ``bind``: objects of this class hold links or backlinks, so collections bind them to
    their database or transaction."""

    __slots__ = ("backlinks", "bind", "incoming", "links")

    def __init__(self, links: tuple[LinkSpec, ...] = (), backlinks: tuple[BacklinkSpec, ...] = ()) -> None:
        self.links = links
        self.backlinks = backlinks
        self.incoming: list[LinkSpec] = []
        self.bind = bool(links or backlinks)

    def require(self) -> None:
        """Resolve every link and backlink of the class (SchemaError naming the first that
        cannot be)."""
        for spec in self.links:
            spec.require()
        for back in self.backlinks:
            back.require()

    def link(self, name: str) -> LinkSpec | None:
        for spec in self.links:
            if spec.name == name:
                return spec
        return None

    def backlink(self, name: str) -> BacklinkSpec | None:
        for back in self.backlinks:
            if back.name == name:
                return back
        return None


def index_value(obj: Any, name: str) -> Any:
    """The value an index holds for field ``name`` of ``obj``: a link's target primary key
    (a list of them for ``Links``), any other field's value as it is."""
    d = obj.__dict__
    v = d[name] if name in d else getattr(obj, name)  # (a link's descriptor is not needed here)
    cls = v.__class__
    if cls is Link:
        return v._pk if v._obj is None else v.pk
    if cls is Links:
        return [lk._pk if lk._obj is None else lk.pk for lk in v]
    return v


# ---------------------------------------------------------------------------------------------
# Resolution: pending forward references, entity classes by name

_pending: list[LinkSpec | BacklinkSpec] = []
_by_name: dict[str, list[weakref.ref[type]]] = {}


def _is_forward(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Forward)


def _name_of(tp: Any) -> str:
    if _is_forward(tp):
        return str(tp.__forward_name__)
    return str(getattr(tp, "__name__", None) or repr(tp).replace("typing.", ""))


def _forget(spec: LinkSpec | BacklinkSpec) -> None:
    for i, s in enumerate(_pending):
        if s is spec:
            del _pending[i]
            return


def _lookup(name: str, globals_: dict[str, Any], locals_: dict[str, Any], frame: Any) -> type | None:
    """The entity class a forward reference names: in the declaring scope (as it was, then
    as it is now), the module's globals, else the only declared entity class of that name."""
    scopes = [locals_]
    if frame is not None:
        try:
            scopes.append(frame.f_locals)
        except Exception:  # pragma: no cover - a frame always has locals
            pass
    scopes.append(globals_)
    for ns in scopes:
        found = ns.get(name)
        if isinstance(found, type) and not _is_forward(found) and "__quanta_entity__" in found.__dict__:
            return found
    alive = [c for r in _by_name.get(name, ()) if (c := r()) is not None]
    if len(alive) == 1:
        return alive[0]
    return None


def declared(cls: type, frame: Any) -> None:
    """``@quanta.entity`` calls this once ``cls`` is complete (its ``__quanta_entity__``
    set). Resolves the pending references to ``cls`` from the same scope, then ``cls``'s
    own links and backlinks where their targets are known; the rest stays pending.
    Raises SchemaError for a bad declaration found on the way (and then forgets ``cls``:
    its decoration failed)."""
    refs = [r for r in _by_name.get(cls.__name__, ()) if r() is not None]
    refs.append(weakref.ref(cls))
    _by_name[cls.__name__] = refs
    try:
        _declared(cls, frame)
    except BaseException:
        _pending[:] = [s for s in _pending if s.owner is not cls]
        _by_name[cls.__name__] = [r for r in refs if r() is not cls]
        for spec in cls.__dict__["__quanta_entity__"].relations.links:  # not an incoming link of anything
            target = spec._target
            rel = getattr(target.__dict__.get("__quanta_entity__"), "relations", None) if target else None
            if rel is not None and spec in rel.incoming:
                rel.incoming.remove(spec)
        raise


def _declared(cls: type, frame: Any) -> None:
    rel: Relations = cls.__dict__["__quanta_entity__"].relations
    targets = {spec._target for spec in rel.links}
    for spec in list(_pending):
        if isinstance(spec, LinkSpec):
            if spec._frame is frame and spec._target is None and spec.target_name == cls.__name__:
                spec._target = cls
                spec._complete()
        elif spec._source is None and spec.source_name == cls.__name__:
            # Same scope, or (another module) a class of that name that links to the
            # backlink's class: the other side of the backlink.
            if spec._frame is frame or spec.owner in targets:
                spec._source = cls
    for spec in rel.links:
        if spec._target is not None and spec._pk_name is None:
            spec._complete()
        elif spec._target is None:
            _pending.append(spec)
    for back in rel.backlinks:
        _pending.append(back)
    for spec in list(_pending):  # backlinks (of any class) whose sources are now complete
        if isinstance(spec, BacklinkSpec) and spec._source is not None:
            source_rel = getattr(spec._source.__dict__.get("__quanta_entity__"), "relations", None)
            link_spec = source_rel.link(spec.field) if source_rel is not None else None
            if source_rel is None or link_spec is None or link_spec.resolved or link_spec._target is not None:
                spec._complete()


def resolve_pending() -> None:
    """Resolve every pending forward reference that can be now; the others stay pending
    (their use raises SchemaError)."""
    for spec in list(_pending):
        try:
            spec.require()
        except SchemaError:
            continue


def has_pending() -> bool:
    return bool(_pending)
