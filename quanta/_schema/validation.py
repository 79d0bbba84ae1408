"""Validation: an entity's constraints and validators, read at decoration time and compiled
into its generated ``check``.

Declaring (``entity.py`` calls :func:`field_constraints` per field and
:func:`collect_validators` once): constraints come from ``Annotated`` metadata (see
``constraints.py`` for where they may go); validators are plain functions, registered

* in the class body with ``@quanta.validator("field", ...)`` on a ``@staticmethod`` that
  takes the field's value (``@staticmethod`` so that type checkers do not read the value as
  ``self``), or with ``@quanta.validator()`` on an ordinary method (``self`` is the object):
  an entity-level, cross-field rule;
* or on the decorator: ``@quanta.entity(validators=[fn, ...])``: a plain ``fn(obj)`` is an
  entity-level rule; a function marked with ``quanta.validator("field")`` is a field rule.

A validator accepts by returning (anything but ``False``) and rejects by raising
``ValueError`` (its message is the reason) or returning ``False``; it may raise
``ValidationError([Violation(field=..., reason=...), ...])`` to report several violations or
name a field. Any other exception is a bug in the validator: it propagates unchanged (with a
note naming the validator), and nothing is written.

Checking (the generated ``check``, after the type checks, so rules see values of their
declared types): every field's constraints; a field's validators only if its constraints
hold (they may rely on them), and never with None; entity validators only if every field
rule holds. Every violation found is listed in one ``ValidationError``.

Cost: a class with no constraints and no validators gets no extra code at all. Otherwise the
generated fast path is one ``try`` around one boolean expression over the field values: the
constraints inline (C calls for collections: ``min``/``max``, ``map``,
``frozenset.issuperset``), then a direct call per validator. Only when it is false (or
raises) does :class:`Rules` walk the rules one by one, in the order above, to name each
violation; so a validator may be called twice for one failing object, and must be pure. The
expression and the walk use the same predicate (``Constraint.expr`` is written next to
``Constraint.holds``).

Departure from pydantic-style validators, and why: validators check, they never convert or
replace values (a record is stored as the object holds it), and field validators are not
called with None (as constraints, None passes an optional field).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..errors import SchemaError, ValidationError, Violation
from .constraints import Constraint
from .info import FieldInfo, ValidatorInfo
from .typenode import TypeNode

__all__ = ["Rules", "build_rules", "collect_validators", "field_constraints", "validator"]

_V = TypeVar("_V")
_MARK = "__quanta_validator__"
_NONE = type(None)


def validator(*fields: str) -> Callable[[_V], _V]:
    """Register a function as a validator of an entity class.

    ``@quanta.validator("email")`` (on a ``@staticmethod`` in the class body, or on a function
    passed in ``@quanta.entity(validators=[...])``): called with the value of each named
    field. ``@quanta.validator()`` (on a method): called with the object, a cross-field rule.

    It returns a marked copy of the function (same code, name, signature and type), never
    marking the function itself: one function can serve different fields of different
    classes (``validators=[quanta.validator("title")(no_spaces)]`` here,
    ``quanta.validator("name")(no_spaces)`` there).
    """

    def mark(fn: _V) -> _V:
        return _marked_copy(fn, fields)  # type: ignore[no-any-return]

    return mark


def _marked_copy(fn: Any, fields: tuple[Any, ...]) -> Any:
    if isinstance(fn, (staticmethod, classmethod)):
        return type(fn)(_marked_copy(fn.__func__, fields))
    new: Any
    if isinstance(fn, types.FunctionType):
        new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        new.__kwdefaults__ = fn.__kwdefaults__
    elif callable(fn):

        def new(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    else:
        raise TypeError(f"quanta.validator(...) decorates a function, not {fn!r}")
    functools.update_wrapper(new, fn)  # name, qualname, doc, annotations, __dict__ (earlier marks)
    setattr(new, _MARK, (*getattr(fn, _MARK, ()), *fields))
    return new


# ---------------------------------------------------------------------------------------------
# Declarations


def _peel(tp: Any) -> tuple[Any, list[Any]]:
    """``tp`` without its ``Annotated`` layers and ``| None``, and the metadata on the way."""
    meta: list[Any] = []
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            args = typing.get_args(tp)
            meta.extend(args[1:])
            tp = args[0]
            continue
        if origin is typing.Union or origin is types.UnionType:
            args = typing.get_args(tp)
            rest = [a for a in args if a is not _NONE]
            if len(rest) == 1 and len(args) > 1:
                tp = rest[0]
                continue
        return tp, meta


def _constraints_in(where: str, meta: Iterable[Any]) -> list[Constraint]:
    out = []
    for m in meta:
        if isinstance(m, type) and issubclass(m, Constraint):
            raise SchemaError(f"{where}: write {m.__name__}(...) (an instance), not {m.__name__}")
        if isinstance(m, Constraint):
            out.append(m)
    return out


def _stray(tp: Any) -> str | None:
    """How a constraint anywhere inside ``tp`` (its metadata and arguments, at any depth) is
    shown, or None if there is none."""
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        for m in args[1:]:
            if isinstance(m, Constraint):
                return repr(m)
            if isinstance(m, type) and issubclass(m, Constraint):
                return m.__name__
        return _stray(args[0])
    for a in typing.get_args(tp):
        found = _stray(a)
        if found is not None:
            return found
    return None


def _dataclass_stray(node: TypeNode, seen: set[type], localns: Any) -> tuple[str, str] | None:
    """A constraint on a field of a dataclass (or entity) embedded anywhere in ``node``: those
    are not checked, so declaring one is an error rather than a rule silently ignored."""
    if node.kind == "dataclass" and node.py not in seen:
        seen.add(node.py)
        try:
            hints = typing.get_type_hints(node.py, localns=localns, include_extras=True)
        except Exception:  # pragma: no cover - parse_type resolved these same hints already
            hints = {}
        for f in dataclasses.fields(node.py):
            found = _stray(hints.get(f.name))
            if found is not None:
                return f"{node.py.__qualname__}.{f.name}", found
        children: Iterable[TypeNode] = (n for _, n in node.fields)
    else:
        children = node.args
    for child in children:
        hit = _dataclass_stray(child, seen, localns)
        if hit is not None:
            return hit
    return None


_ELEMENT_KINDS = frozenset({"list", "vtuple", "set", "frozenset"})


def field_constraints(
    where: str, tp: Any, node: TypeNode, *, auto_key: bool = False, localns: Any = None
) -> tuple[tuple[Constraint, ...], tuple[Constraint, ...]]:
    """The constraints on a field and on its elements, from its annotation ``tp`` (with
    ``Annotated`` metadata; ``node`` its parsed type; ``localns`` as for ``parse_type``).
    Raises ``SchemaError`` (naming ``where``, ``Class.field``) for a constraint that cannot
    apply, or that sits where it would not be checked."""
    base_tp, meta = _peel(tp)
    constraints = _constraints_in(where, meta)
    base = node.args[0] if node.kind == "optional" else node
    elements: list[Constraint] = []
    rest = base_tp
    if base.kind in _ELEMENT_KINDS and typing.get_args(base_tp):
        elem_tp, emeta = _peel(typing.get_args(base_tp)[0])
        elements = _constraints_in(where, emeta)
        rest = elem_tp
    stray = _stray(rest)
    if stray is not None:
        raise SchemaError(
            f"{where}: {stray} is nested where it would not be checked; a constraint goes on the field's "
            "type (also inside X | None) or on the element type of list[T], set[T], frozenset[T] or "
            "tuple[T, ...]; check anything deeper with a field validator"
        )
    hit = _dataclass_stray(node, set(), localns)
    if hit is not None:
        raise SchemaError(
            f"{where}: the embedded {hit[0]} declares {hit[1]}, which is not checked where it is embedded; "
            "check it with a field validator"
        )
    if auto_key and constraints:
        raise SchemaError(f"{where}: an auto primary key is assigned by the collection; it takes no constraints")
    for c in constraints:
        why = c.applies_to(base)
        if why is not None:
            raise SchemaError(f"{where}: {why}")
    if elements:
        elem = base.args[0]
        elem = elem.args[0] if elem.kind == "optional" else elem
        for c in elements:
            why = c.applies_to(elem)
            if why is not None:
                raise SchemaError(f"{where}: on the elements: {why}")
    return tuple(constraints), tuple(elements)


def _marked_fields(obj: Any) -> tuple[str, ...] | None:
    for candidate in (obj, getattr(obj, "__func__", None)):
        fields = getattr(candidate, _MARK, None) if candidate is not None else None
        if fields is not None:
            return tuple(fields)
    return None


def collect_validators(
    cls: type, qual: str, given: Iterable[Any], field_names: Sequence[str]
) -> tuple[ValidatorInfo, ...]:
    """The validators of ``cls``: those in ``@entity(validators=...)``, then the marked
    functions of the class body (base classes first; a name redefined in a subclass counts
    once)."""
    if isinstance(given, (str, bytes)) or not isinstance(given, Iterable) or callable(given):
        raise SchemaError(f"{qual}: validators=[...] takes a list of functions, got {given!r}")
    found: list[tuple[Any, tuple[str, ...]]] = [(fn, _marked_fields(fn) or ()) for fn in given]
    body: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            fields = _marked_fields(attr)
            if fields is not None:
                body[name] = (attr, fields)
            else:
                body.pop(name, None)
    found += body.values()
    out = []
    known = set(field_names)
    for obj, fields in found:
        if isinstance(obj, classmethod):
            raise SchemaError(
                f"{qual}: a validator is a plain function or a @staticmethod, not a classmethod ({obj!r})"
            )
        fn = obj.__func__ if isinstance(obj, staticmethod) else obj
        name = getattr(fn, "__qualname__", repr(fn))
        if not callable(fn):
            raise SchemaError(f"{qual}: validators=[...] takes functions, got {fn!r}")
        if inspect.iscoroutinefunction(fn):
            raise SchemaError(f"{qual}: validator {name} is async; validators are plain (synchronous) functions")
        for f in fields:
            if not isinstance(f, str):
                raise SchemaError(f"{qual}: quanta.validator(...) takes field names (str), got {f!r} for {name}")
            if f not in known:
                raise SchemaError(
                    f"{qual}.{f}: validator {name} names an unknown field {f!r} (fields: {', '.join(field_names)})"
                )
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            takes = "the field's value" if fields else "the object"
            raise SchemaError(f"{qual}: validator {name} must take one argument ({takes})") from None
        except ValueError:  # pragma: no cover - a callable without a signature (some builtins)
            pass
        out.append(ValidatorInfo(tuple(dict.fromkeys(fields)), name, fn))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Checking


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldRules:
    name: str
    optional: bool
    constraints: tuple[Constraint, ...]
    elements: tuple[Constraint, ...]
    element_node: TypeNode | None  # the elements' type, None-stripped
    element_optional: bool
    sequence: bool  # elements have positions (list, tuple), else a set
    validators: tuple[ValidatorInfo, ...]


class Rules:
    """The slow path of one entity's validation: every rule, one by one, each violation named."""

    __slots__ = ("entity", "entity_validators", "fields", "key_of")

    def __init__(
        self,
        entity: str,
        fields: tuple[_FieldRules, ...],
        entity_validators: tuple[ValidatorInfo, ...],
        key_of: Callable[[Any], Any],
    ) -> None:
        self.entity = entity
        self.fields = fields
        self.entity_validators = entity_validators
        self.key_of = key_of

    def violations(self, o: Any) -> list[Violation]:
        """Every violation of ``o`` (whose fields have their declared types)."""
        out: list[Violation] = []
        key = self.key_of(o)
        for fr in self.fields:
            value = getattr(o, fr.name)
            if value is None and fr.optional:
                continue
            before = len(out)
            self._constraints(fr, value, key, out)
            if len(out) == before:
                for vi in fr.validators:
                    self._run(vi, value, fr.name, key, out)
        if not out:
            for vi in self.entity_validators:
                self._run(vi, o, None, key, out)
        return out

    def _constraints(self, fr: _FieldRules, value: Any, key: Any, out: list[Violation]) -> None:
        for c in fr.constraints:
            reason = _broken(c, value)
            if reason is not None:
                out.append(Violation(self.entity, fr.name, reason, value, key))
        if fr.elements:
            for i, x in enumerate(value):
                if x is None:
                    continue
                for c in fr.elements:
                    reason = _broken(c, x)
                    if reason is not None:
                        at = f"element [{i}]" if fr.sequence else "an element"
                        out.append(Violation(self.entity, fr.name, f"{at}: {reason}", x, key))

    def _run(self, vi: ValidatorInfo, arg: Any, field: str | None, key: Any, out: list[Violation]) -> None:
        try:
            result = vi.fn(arg)
        except ValidationError as exc:
            for v in exc.violations:
                if not v.entity:
                    v = dataclasses.replace(v, entity=self.entity, key=key)
                out.append(v)
            return
        except ValueError as exc:
            reason = str(exc) or f"rejected by {vi.name}"
        except Exception as exc:
            where = self.entity if field is None else f"{self.entity}.{field}"
            exc.add_note(f"raised by the validator {vi.name} of {where} (nothing was written)")
            raise
        else:
            if result is not False:
                return
            reason = f"rejected by {vi.name}"
        out.append(Violation(self.entity, field, reason, None if field is None else arg, key))

    def raise_all(self, o: Any) -> None:
        """The slow path: raise ``ValidationError`` listing every violation of ``o``."""
        found = self.violations(o)
        if found:
            raise ValidationError(found)


def _broken(c: Constraint, value: Any) -> str | None:
    """The reason ``c`` is broken by ``value``, or None if it holds."""
    try:
        if c.holds(value):
            return None
    except TypeError as exc:  # an aware and a naive datetime, ...
        return f"{c.reason(value)} (cannot compare: {exc})"
    except ArithmeticError:  # a Decimal NaN is in no range
        pass
    return c.reason(value)


def build_rules(
    entity: str,
    fields: Sequence[FieldInfo],
    validators: Sequence[ValidatorInfo],
    primary_key: str,
    auto: bool,
) -> tuple[list[str], dict[str, Any]] | None:
    """The statements the generated ``check`` ends with (over the object ``o``, after the
    type checks) and the names they use; None when the class has no rules (its ``check``
    stays the plain type check)."""
    rules: list[_FieldRules] = []
    for f in fields:
        own = tuple(vi for vi in validators if f.name in vi.fields)
        if not (f.constraints or f.element_constraints or own):
            continue
        node: TypeNode = f.type_node
        base = node.args[0] if node.kind == "optional" else node
        elem = elem_opt = None
        if f.element_constraints:
            elem = base.args[0]
            elem_opt = elem.kind == "optional"
            if elem_opt:
                elem = elem.args[0]
        rules.append(
            _FieldRules(
                f.name,
                f.optional,
                f.constraints,
                f.element_constraints,
                elem,
                bool(elem_opt),
                base.kind in ("list", "vtuple"),
                own,
            )
        )
    entity_validators = tuple(vi for vi in validators if not vi.fields)
    if not rules and not entity_validators:
        return None

    def key_of(o: Any) -> Any:
        value = getattr(o, primary_key, None)
        return None if auto and not value else value

    slow = Rules(entity, tuple(rules), entity_validators, key_of)
    ns: dict[str, Any] = {"_q_raise_all": slow.raise_all}

    def const(value: Any) -> str:
        if type(value) is int or (type(value) is float and math.isfinite(value)):
            return repr(value)  # a literal: no global lookup
        name = f"_qc{len(ns)}"
        ns[name] = value
        return name

    loads: list[str] = []
    conds: list[str] = []

    def value_of(i: int, fr: _FieldRules, expr: str) -> str:
        """``expr`` over the placeholder ``_q<i>``: a single use reads ``o.<field>`` in place,
        more uses read it once into ``_q<i>`` (a local) first."""
        x = f"_q{i}"
        uses = len(re.findall(rf"\b{x}\b", expr))
        if uses > 1:
            loads.append(f"{x} = o.{fr.name}")
            return expr
        return re.sub(rf"\b{x}\b", f"o.{fr.name}", expr)

    for i, fr in enumerate(rules):
        x = f"_q{i}"
        parts = [c.expr(x, const) for c in fr.constraints]
        if fr.elements:
            if fr.element_optional:
                each = " and ".join(c.expr("_e", const) for c in fr.elements)
                parts.append(f"all([_e is None or ({each}) for _e in {x}])")
            else:
                parts += [c.expr(x, const, fr.element_node) for c in fr.elements]
        parts += [f"{const(vi.fn)}({x}) is not False" for vi in fr.validators]
        cond = " and ".join(f"({p})" for p in parts)
        conds.append(value_of(i, fr, f"({x} is None or {cond})" if fr.optional else cond))
    conds += [f"({const(vi.fn)}(o) is not False)" for vi in entity_validators]
    lines = ["try:", *(f"    {s}" for s in loads), f"    _qok = {' and '.join(conds)}"]
    lines += ["except Exception:", "    _qok = False", "if not _qok:", "    _q_raise_all(o)"]
    return lines, ns
