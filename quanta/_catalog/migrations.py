"""Migration steps and the record conversions they run on.

``@quanta.migration(User, from_version=1, to_version=2)`` registers one step of one entity
class. Two forms, told apart by the function itself:

* **per record** -- an ``async def`` taking one stored record as a dict (old shape: field
  name -> value) and returning the new dict (or a ``User`` object; or None to delete the
  record)::

      @quanta.migration(User, from_version=1, to_version=2)
      async def split_name(record: dict[str, Any]) -> dict[str, Any]:
          first, _, last = record.pop("name").partition(" ")
          return {**record, "first": first, "last": last}

* **whole collection** -- an async *generator* function taking an async iterator over every
  stored record (dicts, in primary-key order) and yielding the new records, as many as it
  likes (merging, splitting, deduplicating, changing keys)::

      @quanta.migration(User, from_version=2, to_version=3)
      async def dedupe(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
          seen = set()
          async for r in records:
              if r["email"] not in seen:
                  seen.add(r["email"])
                  yield r

The registry is keyed by the class object (a redefined class starts with no steps), so the
steps of one class are found from the class ``quanta.open(entities=[...])`` is given.

Dict forms of values (what a step receives, and may return): scalars, datetimes, UUIDs,
Decimals, sets, bytes as they are; an enum as its *value*; a nested dataclass as a dict of
its fields; a tuple as a tuple. What a step returns is converted back where the declared type
says so (an enum value to its member, a dict to the dataclass, a list to a tuple), built with
the class (so defaults fill missing fields and a missing optional field is None), then checked
with the class's ``check`` (types, constraints, validators) before anything is written.

Pure code over values, no I/O; the steps themselves are awaited by ``rewrite.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from .._schema import EntityInfo, decode_value, entity_info
from ..errors import CorruptionError, InvalidTypeError, SchemaError
from .format import StoredSchema

__all__ = ["RecordBuilder", "RecordReader", "Step", "chain_for", "migration", "steps_of"]

F = TypeVar("F", bound=Callable[..., Any])

RecordFn = Callable[[dict[str, Any]], Awaitable[Any]]
CollectionFn = Callable[[AsyncIterator[dict[str, Any]]], AsyncIterator[Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One registered migration step. ``whole``: a whole-collection step (an async generator
    function); ``name``: ``module.qualname`` of the function (recorded in the history)."""

    cls: type
    from_version: int
    to_version: int
    fn: Callable[..., Any]
    whole: bool
    name: str

    @property
    def text(self) -> str:
        return f"{self.name} ({self.from_version} -> {self.to_version})"


_registry: weakref.WeakKeyDictionary[type, dict[int, Step]] = weakref.WeakKeyDictionary()


def migration(entity: type, *, from_version: int, to_version: int) -> Callable[[F], F]:
    """Register the decorated async function as the migration of ``entity``'s stored records
    from ``from_version`` to ``to_version`` (see the module docstring for the two forms).

    Migrations run when the database is opened with ``entity`` among ``entities=[...]``,
    once, in version order, only for records stored at an older version. Raises
    ``SchemaError`` for a class that is not an entity, bad versions, a step from the same
    version registered twice, or a function that is not ``async``.
    """
    try:
        info = entity_info(entity)
    except TypeError:
        raise SchemaError(f"@quanta.migration takes an entity class, got {entity!r}") from None
    for what, v in (("from_version", from_version), ("to_version", to_version)):
        if type(v) is not int or v < 1:
            raise SchemaError(f"@quanta.migration({info.name}): {what} must be an int >= 1, got {v!r}")
    if to_version <= from_version:
        raise SchemaError(
            f"@quanta.migration({info.name}): to_version ({to_version}) must be greater than "
            f"from_version ({from_version})"
        )
    if to_version > info.version:
        raise SchemaError(
            f"@quanta.migration({info.name}): to_version {to_version} is above the class's version "
            f"{info.version}; declare @quanta.entity(version={to_version}) first"
        )

    def register(fn: F) -> F:
        whole = inspect.isasyncgenfunction(fn)
        if not whole and not inspect.iscoroutinefunction(fn):
            raise SchemaError(
                f"@quanta.migration({info.name}, {from_version} -> {to_version}): {fn!r} must be an async "
                "function (one record in, one out) or an async generator function (the whole collection)"
            )
        steps = _registry.setdefault(entity, {})
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        if from_version in steps and steps[from_version].fn is not fn:
            raise SchemaError(
                f"@quanta.migration({info.name}): a migration from version {from_version} is already registered "
                f"({steps[from_version].name})"
            )
        steps[from_version] = Step(entity, from_version, to_version, fn, whole, name)
        return fn

    return register


def steps_of(cls: type) -> list[Step]:
    """The steps registered for ``cls``, by ``from_version``."""
    return sorted(_registry.get(cls, {}).values(), key=lambda s: s.from_version)


def chain_for(cls: type, start: int, end: int) -> tuple[list[Step] | None, str]:
    """The steps leading from version ``start`` to ``end`` (``(None, why)`` if there is no
    such chain; ``([], "")`` when ``start == end``)."""
    steps = _registry.get(cls, {})
    out: list[Step] = []
    v = start
    while v < end:
        step = steps.get(v)
        if step is None:
            have = ", ".join(f"{s.from_version} -> {s.to_version}" for s in steps_of(cls)) or "none"
            return None, f"no migration from version {v} is registered for {cls.__qualname__} (registered: {have})"
        if step.to_version > end:
            return None, f"the migration {step.text} goes past the class's version {end}"
        out.append(step)
        v = step.to_version
    return out, ""


# ---------------------------------------------------------------------------------- reading


class RecordReader:
    """Stored record bytes -> the dict form of their fields, per the *stored* schema (so no
    class of the old version is needed)."""

    def __init__(self, stored: StoredSchema) -> None:
        self.stored = stored
        self.names = [f.name for f in stored.fields]
        self.convert = [(i, f.type) for i, f in enumerate(stored.fields) if _needs_plain(f.type)]

    def __call__(self, data: bytes) -> dict[str, Any]:
        values = decode_value(data)
        if type(values) is not list or len(values) != len(self.names) + 1:
            raise CorruptionError(
                f"a stored {self.stored.name} record does not have the stored schema's {len(self.names)} fields",
                path="<record>",
            )
        values = values[1:]
        for i, desc in self.convert:
            values[i] = _plain(desc, values[i])
        return dict(zip(self.names, values, strict=True))


def _needs_plain(desc: Any) -> bool:
    if not isinstance(desc, list):
        return False
    kind = desc[0]
    if kind in ("dataclass", "tuple", "vtuple", "ref"):
        return True
    if kind in ("optional", "list", "set", "frozenset"):
        return _needs_plain(desc[1])
    if kind == "dict":
        return _needs_plain(desc[1]) or _needs_plain(desc[2])
    return False


def _plain(desc: Any, v: Any) -> Any:
    if v is None or not isinstance(desc, list):
        return v
    kind = desc[0]
    if kind == "optional":
        return _plain(desc[1], v)
    if kind == "dataclass" and isinstance(v, list):
        return {name: _plain(sub, x) for (name, sub), x in zip(desc[2], v, strict=False)}
    if kind == "tuple" and isinstance(v, list):
        return tuple(_plain(d, x) for d, x in zip(desc[1], v, strict=False))
    if kind == "vtuple" and isinstance(v, list):
        return tuple(_plain(desc[1], x) for x in v)
    if kind == "list" and isinstance(v, list):
        return [_plain(desc[1], x) for x in v]
    if kind in ("set", "frozenset") and isinstance(v, (set, frozenset)):
        return type(v)(_plain(desc[1], x) for x in v)
    if kind == "dict" and isinstance(v, dict):
        return {_plain(desc[1], k): _plain(desc[2], x) for k, x in v.items()}
    return v  # "ref": a recursive dataclass is left as stored (arrays)


# ---------------------------------------------------------------------------------- building


class RecordBuilder:
    """A step's output (a dict, or an object of the class) -> a checked object of the class.

    Raises ``InvalidTypeError`` (an unknown or missing field, a value that cannot be
    converted) or what ``check`` raises (``InvalidTypeError``, ``ValidationError``)."""

    def __init__(self, info: EntityInfo, *, drop_unknown: bool = False) -> None:
        self.info = info
        self.drop_unknown = drop_unknown  # an automatic rewrite drops the removed (empty) fields
        cls = info.cls
        dc_fields = {f.name: f for f in dataclasses.fields(cls)}
        self.names = [f.name for f in info.fields]
        self.known = set(self.names)
        self.init = {n for n in self.names if dc_fields[n].init}
        self.required = [
            f.name
            for f in info.fields
            if f.name in self.init
            and not f.has_default
            and f.type_node.kind not in ("optional", "any")
            and not (f.name == info.primary_key and info.auto)
        ]
        self.fill_none = [f.name for f in info.fields if not f.has_default and f.type_node.kind in ("optional", "any")]
        self.nodes = {f.name: f.type_node for f in info.fields if _needs_declared(f.type_node)}

    def __call__(self, out: Any) -> Any:
        info = self.info
        if type(out) is info.cls:
            info.check(out)
            return out
        if not isinstance(out, dict):
            raise InvalidTypeError(
                f"{info.name}: a migration step returned {type(out).__name__}; return a dict of the new fields, "
                f"a {info.cls.__qualname__}, or None to delete the record"
            )
        unknown = [k for k in out if k not in self.known]
        if unknown and self.drop_unknown:
            out = {k: v for k, v in out.items() if k in self.known}
        elif unknown:
            raise InvalidTypeError(
                f"{info.name}: the migrated record has unknown field(s) {', '.join(map(repr, unknown))} "
                f"(fields: {', '.join(self.names)})"
            )
        missing = [n for n in self.required if n not in out]
        if missing:
            raise InvalidTypeError(
                f"{info.name}: the migrated record lacks the required field(s) {', '.join(map(repr, missing))}"
            )
        values = dict(out)
        for n in self.fill_none:
            values.setdefault(n, None)
        for n, node in self.nodes.items():
            if n in values:
                values[n] = _declared(node, values[n], f"{info.name}.{n}")
        init = {k: v for k, v in values.items() if k in self.init}
        try:
            obj = info.cls(**init)
        except TypeError as exc:
            raise InvalidTypeError(f"{info.name}: cannot build the migrated record: {exc}") from exc
        for k, v in values.items():
            if k not in self.init:
                object.__setattr__(obj, k, v)
        info.check(obj)
        return obj


def _needs_declared(node: Any) -> bool:
    kind = node.kind
    if kind in ("enum", "dataclass", "tuple", "vtuple"):
        return True
    if kind in ("optional", "list", "set", "frozenset"):
        return _needs_declared(node.args[0])
    if kind == "dict":
        return _needs_declared(node.args[0]) or _needs_declared(node.args[1])
    return False


def _declared(node: Any, v: Any, path: str) -> Any:
    """The dict form ``v`` as the declared type ``node`` holds it (see the module docstring);
    values already in their declared form are returned as they are."""
    if v is None:
        return v
    kind = node.kind
    if kind == "optional":
        return _declared(node.args[0], v, path)
    if kind == "enum":
        if isinstance(v, node.py):
            return v
        try:
            return node.py(v)
        except ValueError:
            raise InvalidTypeError(f"{path}: {v!r} is not a value of {node.py.__qualname__}") from None
    if kind == "dataclass":
        if isinstance(v, node.py):
            return v
        if isinstance(v, dict):
            fields = dict(node.fields)
            return node.py(**{k: _declared(fields[k], x, f"{path}.{k}") if k in fields else x for k, x in v.items()})
        if isinstance(v, (list, tuple)):
            return node.py(
                **{name: _declared(sub, x, f"{path}.{name}") for (name, sub), x in zip(node.fields, v, strict=False)}
            )
        return v
    if kind == "tuple" and isinstance(v, (list, tuple)):
        return tuple(_declared(n, x, f"{path}[{i}]") for i, (n, x) in enumerate(zip(node.args, v, strict=False)))
    if kind == "vtuple" and isinstance(v, (list, tuple)):
        return tuple(_declared(node.args[0], x, f"{path}[{i}]") for i, x in enumerate(v))
    if kind == "list" and isinstance(v, list):
        return [_declared(node.args[0], x, f"{path}[{i}]") for i, x in enumerate(v)]
    if kind in ("set", "frozenset") and isinstance(v, (set, frozenset, list, tuple)):
        maker = set if kind == "set" else frozenset
        return maker(_declared(node.args[0], x, path) for x in v)
    if kind == "dict" and isinstance(v, dict):
        return {_declared(node.args[0], k, path): _declared(node.args[1], x, f"{path}[{k!r}]") for k, x in v.items()}
    return v
