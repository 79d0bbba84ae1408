"""What the schema layer knows about an entity class, as plain frozen values.

The ``@quanta.entity`` decorator builds one :class:`EntityInfo` per class (``entity.py``); the
query planner, the collection and the codec read it and never look at annotations themselves.
Everything here is pure data: no I/O, no event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ORDERABLE_TYPES", "EntityInfo", "FieldInfo", "IndexInfo", "ValidatorInfo"]

# Types whose values the order-preserving key codec (``quanta._codec``) encodes, so a field of
# one of them can be a primary key, be indexed, and be sorted by an index. (bool is an int
# subclass; it is listed for clarity. Enum members of int/str enums are encoded by value.)
ORDERABLE_TYPES: tuple[type, ...] = ()  # filled below, after the imports it needs


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One declared field.

    ``annotation`` is the declared type with ``Annotated[...]`` metadata removed; ``base`` is
    the type of a value with ``Optional`` removed (``int`` for ``int | None``); ``optional``
    says None is allowed. ``key_type`` is ``base`` when values can be keys (ints, floats, str,
    bytes, bool, datetime, date, UUID; int and str enums), else None. For a collection field
    (``list[T]``, ``set[T]``, ``frozenset[T]``, ``tuple[T, ...]``) ``element_key_type`` is ``T``
    when ``T`` can be a key (what a multi-entry index needs). ``position`` is the field's
    index in the stored record.

    ``element_type`` is ``T`` for a collection field (``list[T]``, ``set[T]``,
    ``frozenset[T]``, ``tuple[T, ...]``) whatever ``T`` is, else None. ``type_node`` is the
    codec's parsed type (``quanta._schema.typenode.TypeNode``);
    ``typenode.coerce(type_node, value, "User.age")`` checks a value against the field's type
    (and turns an int into a float for a float field), raising ``InvalidTypeError``.
    (The stored array is ``[version, *values]``: field ``position`` is at index
    ``position + 1``.)

    ``constraints`` are the field's declared constraints (``quanta.Range``, ``Length``,
    ``Pattern``, ``OneOf``; ``quanta._schema.constraints``), checked on a non-None value;
    ``element_constraints`` those declared on the element type of a collection field, checked
    on every non-None element. Both are plain immutable data: ``c.as_dict()`` gives
    ``{"kind": "range", "min": 0, "max": 150}`` and the like.

    Link fields (``quanta.Link[T]``, ``quanta.Links[T]``; ``quanta/_schema/relations.py``):
    ``link_kind`` is ``"one"`` or ``"many"`` (None for any other field), ``link_target`` the
    stored entity name of the target (``"Author"``) and ``on_delete`` its rule
    (``"cascade"``, ``"set_null"`` or ``"restrict"``): plain data a catalog can store. The
    stored value is the target's primary key (a list of them for ``"many"``), so
    ``key_type`` (``element_key_type`` for ``"many"``) is the target's key type. For a link
    to a class not declared yet (a forward reference) ``key_type``/``element_key_type`` and
    ``link_target`` are None until the reference resolves, and are then filled in place
    (at the target's declaration, or at first use). ``annotation`` and ``base`` are the
    declared ``Link[...]`` type; ``type_node`` has kind ``"link"`` or ``"links"``.
    """

    name: str
    annotation: Any
    base: Any
    optional: bool
    position: int
    key_type: type | None = None
    element_key_type: type | None = None
    has_default: bool = False
    element_type: Any = None
    type_node: Any = field(default=None, repr=False, compare=False)
    constraints: tuple[Any, ...] = ()
    element_constraints: tuple[Any, ...] = ()
    link_kind: str | None = None
    link_target: str | None = None
    on_delete: str | None = None


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    """A validator function registered on an entity class (``quanta.validator``,
    ``@entity(validators=[...])``). ``fields``: the fields whose values it is called with
    (once per field); empty for an entity validator, which is called with the object.
    ``name``: the function's qualified name (what a catalog can store); ``fn``: the function."""

    fields: tuple[str, ...]
    name: str
    fn: Callable[[Any], object] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """A secondary index over ``fields`` (one field, or several for a composite index).

    ``unique``: at most one record per value tuple (``UniqueViolationError`` otherwise; None
    values are not indexed by a unique index, as in SQL). ``multi``: one entry per element of
    the single collection field it indexes (``Index(multi=True)`` on ``list[str]``).
    ``name`` is stable and stored in every index key: ``"email"``, ``"city_age"``.
    """

    name: str
    fields: tuple[str, ...]
    unique: bool = False
    multi: bool = False


@dataclass(frozen=True, slots=True)
class EntityInfo:
    """Everything about one entity class.

    ``name``: the stored name (the class name unless given), part of every key.
    ``primary_key``: the field name; ``auto``: integer keys assigned on insert when the field
    is None/0. ``encode(obj) -> bytes`` / ``decode(bytes) -> obj`` are the generated record
    codec; ``check(obj)`` raises ``InvalidTypeError`` naming the entity and field for a value
    of the wrong type and then, if the types are right, ``ValidationError`` listing every
    broken constraint or validator (run before anything is written). ``validators``: the
    registered validator functions, those of ``@entity(validators=...)`` first, then those
    of the class body. ``relations``: the class's links, backlinks and the links that point
    to it (``quanta._schema.relations.Relations``; None for an EntityInfo built by hand).
    """

    cls: type
    name: str
    fields: tuple[FieldInfo, ...]
    primary_key: str
    auto: bool
    indexes: tuple[IndexInfo, ...]
    version: int = 1
    encode: Callable[[Any], bytes] = field(default=lambda obj: b"", repr=False, compare=False)
    decode: Callable[[bytes], Any] = field(default=lambda data: None, repr=False, compare=False)
    check: Callable[[Any], None] = field(default=lambda obj: None, repr=False, compare=False)
    validators: tuple[ValidatorInfo, ...] = ()
    relations: Any = field(default=None, repr=False, compare=False)

    def field(self, name: str) -> FieldInfo:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def pk_field(self) -> FieldInfo:
        return self.field(self.primary_key)


def _orderable() -> tuple[type, ...]:
    import datetime
    import uuid

    return (int, float, str, bytes, bool, datetime.datetime, datetime.date, uuid.UUID)


ORDERABLE_TYPES = _orderable()
