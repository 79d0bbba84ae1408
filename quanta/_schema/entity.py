"""The ``@quanta.entity`` decorator: a class declaration in, an entity class out.

At decoration time, once per class, it

1. resolves the annotations (``typing.get_type_hints``, so forward references between
   entity classes work when they are resolvable then; names local to the function that
   declares the class are found too);
2. makes the class a dataclass (keyword-only fields, defaults, repr, eq);
3. reads the markers (``PrimaryKey``, ``Index``, ``Unique`` and the constraints ``Range``,
   ``Length``, ``Pattern``, ``OneOf`` in ``Annotated`` metadata, ``@entity(indexes=[...])``)
   and the validators (``validation.py``), and checks every combination, raising
   ``SchemaError`` that names the class and the field;
4. generates the record codec (``adapter.build_codec``), whose ``check`` also enforces the
   constraints and validators, and stores everything as an
   :class:`~quanta._schema.info.EntityInfo` in ``cls.__quanta_entity__``;
5. replaces each field's class attribute with a descriptor, so that ``User.age`` is a query
   field (``quanta._query.expr.Field``) at run time. Statically, thanks to
   ``dataclass_transform``, ``User.age`` keeps the field's type (``int``), which is what
   lets a type checker reject ``User.age > "x"``.

Departures from plain dataclasses, and why: instances built by ``decode`` skip
``__init__`` and ``__post_init__`` (records are data that was valid when written; running
user code per decoded record would cost more than the decode itself); an ``auto`` primary key
(``= quanta.auto()``, or ``PrimaryKey(auto=True)`` without a default) gets ``0`` (``None`` if
declared ``int | None``), the "not assigned yet" value the collection replaces on insert;
``slots=True`` is not offered (the descriptors live in the class namespace, where slot
descriptors would be).
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import functools
import inspect
import operator
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform, overload

from ..errors import SchemaError
from . import relations as _links
from .adapter import build_codec
from .constraints import Constraint
from .fields import AutoKey, Index, PrimaryKey, Unique, field
from .info import ORDERABLE_TYPES, EntityInfo, FieldInfo, IndexInfo
from .relations import (
    ON_DELETE,
    BacklinkAttr,
    BacklinkSpec,
    LinkAttr,
    LinkMarker,
    LinkSpec,
    Relations,
    backlink,
    link,
    make_getstate,
    relation_of,
)
from .typenode import TypeNode, UnsupportedType, parse_type, strip_annotated
from .validation import build_rules, collect_validators, field_constraints

if TYPE_CHECKING:
    from .._query.expr import Field

__all__ = ["entity", "entity_info"]

_C = TypeVar("_C", bound=type)


@overload
def entity(cls: _C, /) -> _C: ...


@overload
def entity(
    cls: None = None,
    /,
    *,
    indexes: Iterable[Index] = (),
    name: str | None = None,
    version: int = 1,
    validators: Iterable[Callable[[Any], object]] = (),
) -> Callable[[_C], _C]: ...


@dataclass_transform(kw_only_default=True, field_specifiers=(field, dataclasses.field, link, backlink))
def entity(
    cls: Any = None,
    /,
    *,
    indexes: Iterable[Index] = (),
    name: str | None = None,
    version: int = 1,
    validators: Iterable[Callable[[Any], object]] = (),
) -> Any:
    """Declare an entity class: ``@entity`` or ``@entity(indexes=[...], name=..., version=...,
    validators=[...])``.

    ``indexes``: composite (or single-field) indexes over the named fields, e.g.
    ``[Index("city", "age"), Unique("first", "last")]``. ``name``: the stored name (default
    the class name); renaming the class later keeps the data if ``name`` stays. ``version``:
    the schema version written into every record. ``validators``: functions checked before
    every write: ``fn(obj)`` for a rule over the whole object, or a function marked with
    ``quanta.validator("field")``, called with that field's value (see ``validation.py``).
    """
    if cls is None:
        frame = sys._getframe(1)

        def wrap(c: _C) -> _C:
            built: _C = _build(c, tuple(indexes), name, version, frame, validators)
            return built

        return wrap
    return _build(cls, tuple(indexes), name, version, sys._getframe(1), validators)


def entity_info(cls: type) -> EntityInfo:
    """The :class:`EntityInfo` of an entity class (``TypeError`` for any other class)."""
    info = getattr(cls, "__quanta_entity__", None)
    if not isinstance(info, EntityInfo):
        raise TypeError(f"{getattr(cls, '__qualname__', cls)!r} is not a @quanta.entity class")
    return info


class _FieldDescriptor:
    """Class-level access (``User.age``) returns the query field; instances keep their values
    in ``__dict__``, which wins over this non-data descriptor, so instance access reaches it
    only for a value ``__init__`` did not set: a ``field(default=..., init=False)`` (dataclasses
    leave those to the class attribute, which this replaced, so it answers the default), or
    a deleted value (``AttributeError``)."""

    __slots__ = ("_field", "default", "name", "owner")

    def __init__(self, owner: type, name: str, default: Any) -> None:
        self.owner = owner
        self.name = name
        self.default = default
        self._field: Field | None = None

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            if owner is None or owner is self.owner:
                f = self._field
                if f is None:
                    f = self._field = _query_field(self.owner, self.name)
                return f
            return _query_field(owner, self.name)  # an undecorated subclass
        if self.default is not dataclasses.MISSING:
            return self.default
        raise AttributeError(f"{type(obj).__qualname__!r} object has no attribute {self.name!r}")

    def __repr__(self) -> str:
        return f"<entity field {self.owner.__qualname__}.{self.name}>"


def _query_field(owner: type, name: str) -> Field:
    # Imported here, not at the top: the query layer imports this package (for EntityInfo),
    # so a module-level import would be circular.
    from .._query.expr import Field

    return Field(owner, name)


# ---------------------------------------------------------------------------------------------


def _build(
    cls: Any,
    indexes: tuple[Any, ...],
    name: str | None,
    version: int,
    frame: types.FrameType,
    validators: Iterable[Any] = (),
) -> Any:
    if not isinstance(cls, type):
        raise SchemaError(f"@entity decorates a class, not {cls!r}")
    qual = cls.__qualname__
    if "__dataclass_fields__" in cls.__dict__:
        raise SchemaError(f"{qual}: already a dataclass (or an entity); @entity makes it one, drop @dataclass")
    if name is None:
        name = cls.__name__
    if not isinstance(name, str) or not name:
        raise SchemaError(f"{qual}: the entity name must be a non-empty str, got {name!r}")
    if type(version) is not int or version < 1:
        raise SchemaError(f"{qual}: version must be an int >= 1, got {version!r}")
    for idx in indexes:
        if not isinstance(idx, Index):
            raise SchemaError(f"{qual}: indexes=[...] takes Index(...) and Unique(...) values, got {idx!r}")

    localns = _local_namespace(cls, frame)
    hints = _resolve_hints(cls, localns)
    own = inspect.get_annotations(cls)
    relations = _relation_fields(cls, qual, hints, own)
    namespaces = (frame.f_globals, localns, frame)
    backlinks = tuple(
        BacklinkSpec(cls, fname, extra, target, namespaces)
        for fname, (kind, target, _, extra) in relations.items()
        if kind == "back"
    )
    for back in backlinks:
        del hints[back.name]

    # The auto key's "not assigned" default goes in before the dataclass is made, in place of
    # a quanta.auto() marker or, for Annotated[int, PrimaryKey(auto=True)], of no default.
    auto_defaults: set[str] = set()
    for fname, tp in hints.items():
        pk = [m for m in _metadata(tp) if isinstance(m, PrimaryKey)]
        if isinstance(_class_attribute(cls, fname), AutoKey):
            where = f"{qual}.{fname}"
            if fname not in own:
                raise SchemaError(f"{where}: declare the quanta.auto() key on the entity class itself, not on a base")
            if fname in relations:
                raise SchemaError(f"{where}: a link cannot be the primary key; drop = quanta.auto()")
            if any(not m.auto for m in pk):
                raise SchemaError(
                    f"{where}: = quanta.auto() declares an auto key, but the annotation says PrimaryKey(); "
                    "drop the PrimaryKey() marker (or write PrimaryKey(auto=True))"
                )
            auto_defaults.add(fname)
        elif not (fname in own and fname not in cls.__dict__ and pk and pk[0].auto):
            continue
        base, _ = strip_annotated(tp)
        setattr(cls, fname, None if _is_optional(base) else 0)

    try:
        dataclasses.dataclass(cls, kw_only=True)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{qual}: {exc}") from None

    fields: list[FieldInfo] = []
    parsed: list[tuple[str, TypeNode]] = []
    pk_fields: list[tuple[str, PrimaryKey]] = []
    field_indexes: list[IndexInfo] = []
    link_specs: list[LinkSpec] = []
    for position, f in enumerate(dataclasses.fields(cls)):
        where = f"{qual}.{f.name}"
        tp = hints[f.name]
        meta = _metadata(tp)
        if f.name in auto_defaults and not any(isinstance(m, PrimaryKey) for m in meta):
            meta = (*meta, PrimaryKey(auto=True))
        nested = _nested_key_marker(tp)
        if nested is not None:
            raise SchemaError(
                f"{where}: {nested!r} inside the field's type is not applied (PrimaryKey, Index and Unique go on "
                "the field's own type); write Annotated[list[T], Index(multi=True)] to index the elements"
            )
        if f.name in relations:
            kind, target, optional, on_delete = relations[f.name]
            spec, fi = _link_field(cls, where, f, position, tp, meta, kind, target, optional, on_delete, namespaces)
            link_specs.append(spec)
            fields.append(fi)
            parsed.append((f.name, fi.type_node))
            field_indexes.append(IndexInfo(f.name, (f.name,), spec.unique, spec.many))
            continue
        for m in meta:
            if m is PrimaryKey or m is Index or m is Unique:
                raise SchemaError(f"{where}: write {m.__name__}() (an instance), not {m.__name__}")
            if isinstance(m, PrimaryKey):
                pk_fields.append((f.name, m))
            elif isinstance(m, Index):
                if m.fields:
                    raise SchemaError(
                        f"{where}: {m!r} on a field names no fields; declare a composite index as "
                        f"@entity(indexes=[Index({', '.join(map(repr, m.fields))})])"
                    )
                field_indexes.append(IndexInfo(m.name or f.name, (f.name,), m.unique, m.multi))
        annotation = _strip_all(tp)
        try:
            node = parse_type(annotation, localns)
        except UnsupportedType as exc:
            raise SchemaError(f"{where}: {exc}") from None
        auto_key = any(isinstance(m, PrimaryKey) and m.auto for m in meta)
        constraints, element_constraints = field_constraints(where, tp, node, auto_key=auto_key, localns=localns)
        optional = node.kind == "optional"
        base_node = node.args[0] if optional else node
        base = _without_none(annotation) if optional else annotation
        element_type = element_key = None
        if base_node.kind in ("list", "set", "frozenset", "vtuple"):
            element_type = _element_annotation(base)
            if base_node.args[0].kind != "optional" and _orderable(element_type):
                element_key = element_type
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        fields.append(
            FieldInfo(
                name=f.name,
                annotation=annotation,
                base=base,
                optional=optional,
                position=position,
                key_type=base if _orderable(base) else None,
                element_key_type=element_key,
                has_default=has_default,
                element_type=element_type,
                type_node=node,
                constraints=constraints,
                element_constraints=element_constraints,
            )
        )
        parsed.append((f.name, node))

    by_name = {fi.name: fi for fi in fields}
    primary_key, auto = _check_primary_key(qual, pk_fields, by_name)
    all_indexes = _check_indexes(qual, field_indexes, indexes, by_name, primary_key)

    registered = collect_validators(cls, qual, validators, [fi.name for fi in fields])
    rules = build_rules(name, fields, registered, primary_key, auto)
    codec = build_codec(cls, name, version, parsed, rules)
    info = EntityInfo(
        cls=cls,
        name=name,
        fields=tuple(fields),
        primary_key=primary_key,
        auto=auto,
        indexes=tuple(all_indexes),
        version=version,
        encode=codec.encode,
        decode=codec.decode,
        check=codec.check,
        validators=registered,
        relations=Relations(tuple(link_specs), backlinks),
    )
    setattr(cls, "__quanta_entity__", info)  # noqa: B010 (cls is a type to mypy)
    # The dataclass captured the defaults (in __init__ and in __dataclass_fields__) before
    # these replace them as class attributes.
    specs = {spec.name: spec for spec in link_specs}
    for f in dataclasses.fields(cls):
        link_spec = specs.get(f.name)
        if link_spec is not None:
            setattr(cls, f.name, LinkAttr(link_spec))
        else:
            setattr(cls, f.name, _FieldDescriptor(cls, f.name, f.default if not f.init else dataclasses.MISSING))
    for back in backlinks:
        setattr(cls, back.name, BacklinkAttr(back))
    if info.relations.bind and "__getstate__" not in cls.__dict__:
        setattr(cls, "__getstate__", make_getstate(tuple(b.name for b in backlinks)))  # noqa: B010
    _links.declared(cls, frame)
    return cls


# ---------------------------------------------------------------------------------------------
# Links (quanta/_schema/relations.py)


def _relation_fields(
    cls: type, qual: str, hints: dict[str, Any], own: dict[str, Any]
) -> dict[str, tuple[str, Any, bool, Any]]:
    """The link fields and backlinks of ``cls``: name -> ``(kind, target, optional, extra)``
    (``extra``: the ``on_delete`` rule, or a backlink's field). Checks each declaration,
    turns the ``link()``/``links()`` markers into dataclass defaults and takes the backlinks
    out of the dataclass fields (annotation and attribute): they are never stored."""
    out: dict[str, tuple[str, Any, bool, Any]] = {}
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (the class's own dict, edited below)
    for fname, tp in hints.items():
        where = f"{qual}.{fname}"
        raw = cls.__dict__.get(fname)
        marker = raw if isinstance(raw, LinkMarker) else None
        found = relation_of(tp)
        if found is None:
            if marker is not None:
                raise SchemaError(
                    f"{where}: {marker!r} declares a link; annotate the field quanta.Link[Target], "
                    "quanta.Links[Target] or quanta.Backlink[Source]"
                )
            continue
        kind, target, optional = found
        label = {"one": "Link", "many": "Links", "back": "Backlink"}[kind]
        if fname not in own:
            raise SchemaError(f"{where}: declare {label} fields on the entity class itself, not on a base class")
        if target is None:
            raise SchemaError(f"{where}: {label} needs a class: {label}[Target]")
        if marker is not None and marker.kind != kind:
            raise SchemaError(
                f"{where}: {marker!r} does not declare a {label} field; use link() for Link[...], links() for "
                "Links[...] and backlink('field') for Backlink[...]"
            )
        if kind == "back":
            if marker is None or not isinstance(marker.field, str) or not marker.field:
                raise SchemaError(
                    f"{where}: a backlink names the link field it inverts: = quanta.backlink('field_name')"
                )
            if optional:
                raise SchemaError(f"{where}: a Backlink is never None; drop the | None")
            delattr(cls, fname)
            annotations.pop(fname, None)
            out[fname] = (kind, target, False, marker.field)
            continue
        on_delete = marker.on_delete if marker is not None else "restrict"
        if on_delete not in ON_DELETE:
            raise SchemaError(f"{where}: on_delete must be 'cascade', 'set_null' or 'restrict', got {on_delete!r}")
        name = _links._name_of(target)
        if kind == "many" and optional:
            raise SchemaError(f"{where}: a Links field is never None (no links is an empty list); drop the | None")
        if kind == "one" and on_delete == "set_null" and not optional:
            raise SchemaError(
                f"{where}: on_delete='set_null' needs an optional link: declare it Link[{name} | None] "
                "(= quanta.link(default=None, on_delete='set_null'))"
            )
        default = marker.default if marker is not None else dataclasses.MISSING
        if default is not dataclasses.MISSING and default is not None:
            raise SchemaError(f"{where}: the only default a link takes is None, got {default!r}")
        if default is None and not optional:
            raise SchemaError(f"{where}: default=None needs an optional link: Link[{name} | None]")
        if kind == "many":
            setattr(cls, fname, dataclasses.field(default_factory=list))
        elif default is None:
            setattr(cls, fname, dataclasses.field(default=None))
        elif marker is not None:
            delattr(cls, fname)
        out[fname] = (kind, target, optional, on_delete)
    return out


def _link_field(
    cls: type,
    where: str,
    f: dataclasses.Field[Any],
    position: int,
    tp: Any,
    meta: tuple[Any, ...],
    kind: str,
    target: Any,
    optional: bool,
    on_delete: str,
    namespaces: tuple[dict[str, Any], dict[str, Any], Any],
) -> tuple[LinkSpec, FieldInfo]:
    unique = False
    for m in meta:
        if isinstance(m, PrimaryKey) or m is PrimaryKey:
            raise SchemaError(f"{where}: a link cannot be the primary key")
        if isinstance(m, Unique) and not m.fields and not m.multi and kind == "one":
            unique = True
            continue
        if isinstance(m, Index) or m is Index or m is Unique:
            raise SchemaError(
                f"{where}: a link is indexed automatically; drop {m!r}"
                + (" (Unique() on a Link makes it one-to-one)" if kind == "one" else "")
            )
        if isinstance(m, Constraint) or (isinstance(m, type) and issubclass(m, Constraint)):
            raise SchemaError(f"{where}: {m!r} does not apply to a link; check it with a validator")
    spec = LinkSpec(
        cls,
        f.name,
        many=kind == "many",
        optional=optional,
        on_delete=on_delete,
        unique=unique,
        target=target,
        namespaces=namespaces,
    )
    node = TypeNode("links" if spec.many else "link", spec)
    if optional:
        node = TypeNode("optional", args=(node,))
    annotation = _strip_all(tp)
    base = _without_none(annotation) if _is_optional(annotation) else annotation
    has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    fi = FieldInfo(
        name=f.name,
        annotation=annotation,
        base=base,
        optional=optional,
        position=position,
        has_default=has_default,
        type_node=node,
        link_kind=kind,
        on_delete=on_delete,
    )
    return spec, fi


def _nested_key_marker(tp: Any) -> Any:
    """A ``PrimaryKey``, ``Index`` or ``Unique`` inside the field's type (``list[Annotated[str,
    Index()]]``), where it would do nothing; None if there is none."""
    base, _ = strip_annotated(tp)
    tops = [strip_annotated(a)[0] for a in typing.get_args(base)] if _is_union(base) else [base]
    for top in tops:
        for arg in typing.get_args(top):
            found = _key_marker_in(arg)
            if found is not None:
                return found
    return None


def _key_marker_in(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        for m in args[1:]:
            if isinstance(m, (PrimaryKey, Index)) or m in (PrimaryKey, Index, Unique):
                return m
        return _key_marker_in(args[0])
    for arg in typing.get_args(tp):
        found = _key_marker_in(arg)
        if found is not None:
            return found
    return None


class _Tolerant(dict[str, Any]):
    """Evaluation locals in which an undefined name is a forward-reference placeholder."""

    def __init__(self, localns: dict[str, Any], globalns: dict[str, Any]) -> None:
        super().__init__(localns)
        self.globalns = globalns
        self.placeholders: list[type] = []

    def __missing__(self, key: str) -> Any:
        if key in self.globalns:
            return self.globalns[key]
        if hasattr(builtins, key):
            return getattr(builtins, key)
        placeholder = _links.forward(key)
        self.placeholders.append(placeholder)
        return placeholder


def _hints_with_forward_links(cls: type, localns: dict[str, Any]) -> dict[str, Any] | None:
    """The type hints of ``cls`` when some name is not defined yet: each annotation on its
    own, and one that still fails is kept with a placeholder (``links.Forward``) for the
    name only if that name is the class of a ``Link``/``Links``/``Backlink``. None when some
    other annotation cannot be resolved (the caller reports it)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        module = sys.modules.get(klass.__module__)
        globalns: dict[str, Any] = dict(getattr(module, "__dict__", {}))
        for fname, ann in inspect.get_annotations(klass).items():
            holder = type("_Hint", (), {"__annotations__": {fname: ann}, "__module__": klass.__module__})
            try:
                out[fname] = typing.get_type_hints(holder, localns=localns, include_extras=True)[fname]
                continue
            except NameError:
                pass
            tolerant = _Tolerant(localns, globalns)
            try:
                tp = _evaluate(ann, globalns, tolerant)
            except Exception:
                return None
            found = relation_of(tp)
            placeholders = set(tolerant.placeholders)
            if found is None or found[1] not in placeholders or len(placeholders) != 1:
                return None
            out[fname] = tp
    return out


def _evaluate(tp: Any, globalns: dict[str, Any], tolerant: _Tolerant) -> Any:
    """``tp`` with every string and ForwardRef in it evaluated in ``tolerant``."""
    if isinstance(tp, str):
        return _evaluate(eval(tp, globalns, tolerant), globalns, tolerant)
    if isinstance(tp, typing.ForwardRef):
        return _evaluate(tp.__forward_arg__, globalns, tolerant)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is None or not args:
        return tp
    if origin is typing.Annotated:
        return typing.Annotated[(_evaluate(args[0], globalns, tolerant), *args[1:])]
    new = tuple(a if a is Ellipsis else _evaluate(a, globalns, tolerant) for a in args)
    if origin is types.UnionType or origin is typing.Union:
        return functools.reduce(operator.or_, new)
    if isinstance(tp, types.GenericAlias):
        return types.GenericAlias(origin, new)
    try:
        return origin[new if len(new) != 1 else new[0]]
    except TypeError:
        return tp.copy_with(new)


def _local_namespace(cls: type, frame: types.FrameType) -> dict[str, Any]:
    """Names a string annotation may refer to besides its module's globals (which
    ``get_type_hints`` uses anyway): the locals of the function the class is declared in,
    if any, and the class itself (for a self-reference)."""
    ns: dict[str, Any] = {}
    if frame.f_locals is not frame.f_globals:
        ns.update(frame.f_locals)
    ns[cls.__name__] = cls
    return ns


def _resolve_hints(cls: type, localns: dict[str, Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, localns=localns, include_extras=True)
    except NameError as exc:
        hints = _hints_with_forward_links(cls, localns)
        if hints is not None:
            return hints
        missing = getattr(exc, "name", None) or ""
        field_name = _field_mentioning(cls, missing)
        where = f"{cls.__qualname__}.{field_name}" if field_name else cls.__qualname__
        raise SchemaError(
            f"{where}: cannot resolve the annotation ({exc}); define {missing or 'it'} before "
            f"{cls.__qualname__} is decorated"
        ) from None
    except Exception as exc:
        raise SchemaError(f"{cls.__qualname__}: cannot resolve the annotations: {exc}") from None


def _field_mentioning(cls: type, name: str) -> str | None:
    for klass in cls.__mro__:
        for fname, ann in inspect.get_annotations(klass).items():
            text = ann if isinstance(ann, str) else getattr(ann, "__forward_arg__", repr(ann))
            if name and re.search(rf"\b{re.escape(name)}\b", text):
                return str(fname)
    return None


def _class_attribute(cls: type, name: str) -> Any:
    """``name`` in the namespace of ``cls`` or of its nearest base that has it (no descriptor
    is invoked), or None."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _metadata(tp: Any) -> tuple[Any, ...]:
    """Annotated metadata of a field, also when written inside ``X | None``."""
    base, meta = strip_annotated(tp)
    if _is_union(base):
        for arg in typing.get_args(base):
            meta += strip_annotated(arg)[1]
    return meta


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or origin is types.UnionType


def _is_optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _without_none(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else tp


def _strip_all(tp: Any) -> Any:
    """The type with every ``Annotated`` layer removed, at any depth (``list[Annotated[str, X]]``
    becomes ``list[str]``)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _strip_all(typing.get_args(tp)[0])
    args = typing.get_args(tp)
    if origin is None or not args:
        return tp
    new = tuple(a if a is Ellipsis else _strip_all(a) for a in args)
    if all(a is b for a, b in zip(new, args, strict=True)):
        return tp
    if origin is types.UnionType:
        return functools.reduce(operator.or_, new)
    if origin is typing.Union:
        return typing.Union[new]  # noqa: UP007 (rebuilding a typing.Union of given args)
    if isinstance(tp, types.GenericAlias):
        return types.GenericAlias(origin, new)
    return tp.copy_with(new)


def _element_annotation(base: Any) -> Any:
    args = typing.get_args(base)
    return args[0] if args else Any


def _orderable(tp: Any) -> bool:
    """Can values of ``tp`` be keys (``quanta._codec`` encodes them in order)?"""
    if not isinstance(tp, type):
        return False
    if tp in ORDERABLE_TYPES:
        return True
    return issubclass(tp, enum.Enum) and issubclass(tp, (int, str))


def _check_primary_key(
    qual: str, pk_fields: list[tuple[str, PrimaryKey]], by_name: dict[str, FieldInfo]
) -> tuple[str, bool]:
    if not pk_fields:
        raise SchemaError(
            f"{qual}: no primary key; mark one field with Annotated[..., PrimaryKey()], or declare an "
            "auto-assigned one: id: int = quanta.auto()"
        )
    names = sorted({n for n, _ in pk_fields}, key=lambda n: by_name[n].position)
    if len(pk_fields) > 1:
        what = f"fields {', '.join(names)}" if len(names) > 1 else f"field {names[0]} (twice)"
        raise SchemaError(f"{qual}.{names[0]}: more than one primary key ({what}); an entity has exactly one")
    fname, pk = pk_fields[0]
    fi = by_name[fname]
    where = f"{qual}.{fname}"
    if pk.auto and fi.base is not int:
        raise SchemaError(
            f"{where}: an auto key (quanta.auto() or PrimaryKey(auto=True)) needs an int key, not {_name(fi.base)}"
        )
    if fi.optional and not pk.auto:
        raise SchemaError(f"{where}: a primary key cannot be None (only an auto key may be int | None)")
    if fi.key_type is None:
        raise SchemaError(
            f"{where}: a primary key of type {_name(fi.base)} cannot be ordered; use int, float, str, bytes, "
            "bool, datetime, date, UUID or an int/str Enum"
        )
    return fname, pk.auto


def _check_indexes(
    qual: str,
    field_indexes: list[IndexInfo],
    class_indexes: tuple[Index, ...],
    by_name: dict[str, FieldInfo],
    primary_key: str,
) -> list[IndexInfo]:
    out = list(field_indexes)
    for idx in class_indexes:
        if not idx.fields:
            raise SchemaError(f"{qual}: {idx!r} in indexes=[...] names no fields")
        for fname in idx.fields:
            if not isinstance(fname, str):
                raise SchemaError(f"{qual}: {idx!r} takes field names (str), got {fname!r}")
            if fname not in by_name:
                known = ", ".join(by_name)
                raise SchemaError(f"{qual}.{fname}: {idx!r} names an unknown field {fname!r} (fields: {known})")
        if len(set(idx.fields)) != len(idx.fields):
            raise SchemaError(f"{qual}.{idx.fields[0]}: {idx!r} names a field twice")
        out.append(IndexInfo(idx.name or "_".join(idx.fields), tuple(idx.fields), idx.unique, idx.multi))
    seen: dict[str, IndexInfo] = {}
    for ii in out:
        where = f"{qual}.{ii.fields[0]}"
        if not isinstance(ii.name, str) or not ii.name:
            raise SchemaError(f"{where}: an index name must be a non-empty str, got {ii.name!r}")
        if ii.name in seen:
            raise SchemaError(
                f"{where}: two indexes are named {ii.name!r} (on {', '.join(seen[ii.name].fields)} and on "
                f"{', '.join(ii.fields)}); give one a name=..."
            )
        seen[ii.name] = ii
        if ii.multi and ii.unique:
            raise SchemaError(
                f"{where}: a multi-entry index cannot be unique (uniqueness of elements across records "
                "is not supported); drop unique=True"
            )
        links = [by_name[f] for f in ii.fields if by_name[f].link_kind is not None]
        if links:
            own_index = ii.fields == (links[0].name,) and ii.name == links[0].name  # the automatic one
            if not own_index and (ii.multi or any(fi.link_kind == "many" for fi in links)):
                raise SchemaError(
                    f"{qual}.{links[0].name}: a Links field is indexed automatically and cannot be part of another "
                    "index (a composite index may include a Link field)"
                )
            for fname in ii.fields:
                fi = by_name[fname]
                if fi.link_kind is None and fi.key_type is None:
                    raise SchemaError(
                        f"{qual}.{fname}: cannot index a field of type {_name(fi.annotation)}: it cannot be ordered"
                    )
            continue
        if ii.multi:
            if len(ii.fields) != 1:
                raise SchemaError(f"{where}: a multi=True index covers exactly one collection field, not {ii.fields}")
            fi = by_name[ii.fields[0]]
            if fi.element_type is None:
                raise SchemaError(
                    f"{where}: multi=True needs a collection field (list[T], set[T], frozenset[T], "
                    f"tuple[T, ...]), not {_name(fi.annotation)}"
                )
            if fi.element_key_type is None:
                raise SchemaError(
                    f"{where}: multi=True indexes the elements, and elements of type "
                    f"{_name(fi.element_type)} cannot be ordered"
                )
            continue
        for fname in ii.fields:
            fi = by_name[fname]
            if fi.key_type is None:
                raise SchemaError(
                    f"{qual}.{fname}: cannot index a field of type {_name(fi.annotation)}: it cannot be ordered "
                    "(index int, float, str, bytes, bool, datetime, date, UUID or int/str Enum fields; "
                    "Index(multi=True) indexes the elements of a collection)"
                )
        if ii.fields == (primary_key,):
            raise SchemaError(f"{where}: the primary key needs no index (records are stored in key order)")
    return out


def _name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")
