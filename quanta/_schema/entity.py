"""The ``@quanta.entity`` decorator: a class declaration in, an entity class out.

At decoration time, once per class, it

1. resolves the annotations (``typing.get_type_hints``, so forward references between
   entity classes work when they are resolvable then; names local to the function that
   declares the class are found too);
2. makes the class a dataclass (keyword-only fields, defaults, repr, eq);
3. reads the markers (``PrimaryKey``, ``Index``, ``Unique`` in ``Annotated`` metadata and
   ``@entity(indexes=[...])``) and checks every combination, raising ``SchemaError`` that
   names the class and the field;
4. generates the record codec (``adapter.build_codec``) and stores everything as an
   :class:`~quanta._schema.info.EntityInfo` in ``cls.__quanta_entity__``;
5. replaces each field's class attribute with a descriptor, so that ``User.age`` is a query
   field (``quanta._query.expr.Field``) at run time. Statically, thanks to
   ``dataclass_transform``, ``User.age`` keeps the field's type (``int``), which is what
   lets a type checker reject ``User.age > "x"``.

Departures from plain dataclasses, and why: instances built by ``decode`` skip
``__init__`` and ``__post_init__`` (records are data that was valid when written; running
user code per decoded record would cost more than the decode itself); an ``auto`` primary key
without a default gets ``0`` (``None`` if declared ``int | None``), the "not assigned yet"
value the collection replaces on insert; ``slots=True`` is not offered (the descriptors live
in the class namespace, where slot descriptors would be).
"""

from __future__ import annotations

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
from .adapter import TypeNode, UnsupportedType, build_codec, parse_type, strip_annotated
from .fields import Index, PrimaryKey, Unique, field
from .info import ORDERABLE_TYPES, EntityInfo, FieldInfo, IndexInfo

if TYPE_CHECKING:
    from .._query.expr import Field

__all__ = ["entity", "entity_info"]

_C = TypeVar("_C", bound=type)


@overload
def entity(cls: _C, /) -> _C: ...


@overload
def entity(
    cls: None = None, /, *, indexes: Iterable[Index] = (), name: str | None = None, version: int = 1
) -> Callable[[_C], _C]: ...


@dataclass_transform(kw_only_default=True, field_specifiers=(field, dataclasses.field))
def entity(cls: Any = None, /, *, indexes: Iterable[Index] = (), name: str | None = None, version: int = 1) -> Any:
    """Declare an entity class: ``@entity`` or ``@entity(indexes=[...], name=..., version=...)``.

    ``indexes``: composite (or single-field) indexes over the named fields, e.g.
    ``[Index("city", "age"), Unique("first", "last")]``. ``name``: the stored name (default
    the class name); renaming the class later keeps the data if ``name`` stays. ``version``:
    the schema version written into every record.
    """
    if cls is None:
        frame = sys._getframe(1)

        def wrap(c: _C) -> _C:
            built: _C = _build(c, tuple(indexes), name, version, frame)
            return built

        return wrap
    return _build(cls, tuple(indexes), name, version, sys._getframe(1))


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


def _build(cls: Any, indexes: tuple[Any, ...], name: str | None, version: int, frame: types.FrameType) -> Any:
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

    # The auto key's "not assigned" default goes in before the dataclass is made.
    own = inspect.get_annotations(cls)
    for fname, tp in hints.items():
        if fname in own and fname not in cls.__dict__:
            pk = [m for m in _metadata(tp) if isinstance(m, PrimaryKey)]
            if pk and pk[0].auto:
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
    for position, f in enumerate(dataclasses.fields(cls)):
        where = f"{qual}.{f.name}"
        tp = hints[f.name]
        meta = _metadata(tp)
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
            )
        )
        parsed.append((f.name, node))

    by_name = {fi.name: fi for fi in fields}
    primary_key, auto = _check_primary_key(qual, pk_fields, by_name)
    all_indexes = _check_indexes(qual, field_indexes, indexes, by_name, primary_key)

    codec = build_codec(cls, name, version, parsed)
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
    )
    setattr(cls, "__quanta_entity__", info)  # noqa: B010 (cls is a type to mypy)
    # The dataclass captured the defaults (in __init__ and in __dataclass_fields__) before
    # these replace them as class attributes.
    for f in dataclasses.fields(cls):
        setattr(cls, f.name, _FieldDescriptor(cls, f.name, f.default if not f.init else dataclasses.MISSING))
    return cls


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
            f"{qual}: no primary key; mark one field with Annotated[..., PrimaryKey()], e.g. "
            "id: Annotated[int, PrimaryKey(auto=True)]"
        )
    names = sorted({n for n, _ in pk_fields}, key=lambda n: by_name[n].position)
    if len(pk_fields) > 1:
        what = f"fields {', '.join(names)}" if len(names) > 1 else f"field {names[0]} (twice)"
        raise SchemaError(f"{qual}.{names[0]}: more than one primary key ({what}); an entity has exactly one")
    fname, pk = pk_fields[0]
    fi = by_name[fname]
    where = f"{qual}.{fname}"
    if pk.auto and fi.base is not int:
        raise SchemaError(f"{where}: PrimaryKey(auto=True) needs an int key, not {_name(fi.base)}")
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
