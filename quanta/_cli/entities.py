"""Entity classes for the commands: imported from a user's module (``--module``), or rebuilt
from the schema the catalog stores, so ``get``, ``scan --entity``, ``count`` and ``query``
work on a database without the application's code.

A rebuilt class has the stored fields with their stored types, the stored primary key and
indexes, and the stored class path as its module and name, so the catalog sees the same
schema and admits it for reading (a collection of it plans queries on the real indexes).
It has no validators, defaults or methods: the commands only read with it. Field types a
stored description cannot rebuild (enums, dataclasses, links: their Python classes are not
in the catalog) make :func:`rebuilt_class` raise ``InvalidArgumentError`` naming the field
and asking for ``--module``.
"""

from __future__ import annotations

import datetime
import decimal
import importlib
import importlib.util
import os
import sys
import uuid
from types import ModuleType
from typing import Annotated, Any

from .._catalog import StoredSchema, differences, schema_of
from .._schema import EntityInfo, Index, PrimaryKey, entity
from ..errors import InvalidArgumentError, QuantaError

__all__ = ["class_for", "entity_classes", "import_module", "rebuilt_class"]

_SCALARS: dict[str, Any] = {
    t.__name__: t
    for t in (
        int,
        float,
        str,
        bytes,
        bool,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        uuid.UUID,
    )
}


class _Unbuildable(Exception):
    pass


def _python_type(desc: Any) -> Any:
    """The annotation a stored type description (quanta/_catalog/format.py) stands for."""
    if isinstance(desc, str):
        if desc in _SCALARS:
            return _SCALARS[desc]
        if desc == "Any":
            return Any
        raise _Unbuildable(desc)
    if not isinstance(desc, list) or not desc:
        raise _Unbuildable(repr(desc))
    kind = desc[0]
    if kind == "optional":
        return _python_type(desc[1]) | None
    if kind == "list":
        return list[_python_type(desc[1])]  # type: ignore[misc]
    if kind == "set":
        return set[_python_type(desc[1])]  # type: ignore[misc]
    if kind == "frozenset":
        return frozenset[_python_type(desc[1])]  # type: ignore[misc]
    if kind == "vtuple":
        return tuple[_python_type(desc[1]), ...]  # type: ignore[misc]
    if kind == "tuple":
        return tuple[tuple(_python_type(d) for d in desc[1])]  # type: ignore[misc]
    if kind == "dict":
        return dict[_python_type(desc[1]), _python_type(desc[2])]  # type: ignore[misc]
    raise _Unbuildable(kind)


def rebuilt_class(schema: StoredSchema) -> type:
    """An entity class for reading the records ``schema`` describes (module docstring)."""
    annotations: dict[str, Any] = {}
    for f in schema.fields:
        try:
            tp = _python_type(f.type)
        except _Unbuildable:
            raise InvalidArgumentError(
                f"{schema.name}.{f.name} is a {f.type_label}, which the CLI cannot rebuild from the stored "
                f"schema: pass --module MODULE (the module declaring {schema.cls})"
            ) from None
        annotations[f.name] = Annotated[tp, PrimaryKey()] if f.name == schema.primary_key else tp
    module, _, name = schema.cls.rpartition(".")
    cls = type(name or schema.name, (), {"__annotations__": annotations, "__module__": module or "__main__"})
    cls.__qualname__ = name or schema.name
    indexes = [Index(*i.fields, unique=i.unique, multi=i.multi, name=i.name) for i in schema.indexes]
    built: type = entity(name=schema.name, indexes=indexes)(cls)
    info = _info(built)
    wrong = [d for d in differences(schema, schema_of(info)) if d.need != "catalog"]
    if wrong:
        raise InvalidArgumentError(
            f"{schema.name}: the CLI cannot rebuild its class from the stored schema ({wrong[0]}): "
            f"pass --module MODULE (the module declaring {schema.cls})"
        )
    return built


def _info(cls: type) -> EntityInfo:
    info = getattr(cls, "__quanta_entity__", None)
    assert isinstance(info, EntityInfo)
    return info


def import_module(spec: str) -> ModuleType:
    """Import MODULE (a dotted name, found from the current directory too) or a .py file."""
    try:
        if spec.endswith(".py") or os.sep in spec:
            file = os.path.abspath(spec)
            name = os.path.splitext(os.path.basename(file))[0]
            sys.path.insert(0, os.path.dirname(file))
            loader_spec = importlib.util.spec_from_file_location(name, file)
            if loader_spec is None or loader_spec.loader is None:
                raise ImportError(f"not a Python file: {file}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(spec)
    except QuantaError:
        raise
    except Exception as exc:
        raise InvalidArgumentError(f"cannot import {spec}: {type(exc).__name__}: {exc}") from exc


def entity_classes(module: ModuleType) -> list[type]:
    """The ``@quanta.entity`` classes ``module`` declares, by entity name."""
    out: dict[str, type] = {}
    for value in vars(module).values():
        if not isinstance(value, type):
            continue
        info = getattr(value, "__quanta_entity__", None)
        if isinstance(info, EntityInfo) and info.cls is value:
            out.setdefault(info.name, value)
    return [out[name] for name in sorted(out)]


def class_for(name: str, schemas: dict[str, StoredSchema], modules: list[str] | None) -> tuple[type, StoredSchema]:
    """The class to read entity ``name`` with: the one ``modules`` declare, else one rebuilt
    from its stored schema; ``InvalidArgumentError`` for an entity the database does not
    store."""
    schema = schemas.get(name)
    if schema is None:
        known = ", ".join(sorted(schemas)) or "none"
        raise InvalidArgumentError(f"no entity {name!r} is stored in this database (stored: {known})")
    for m in modules or ():
        for cls in entity_classes(import_module(m)):
            if _info(cls).name == name:
                return cls, schema
    return rebuilt_class(schema), schema
