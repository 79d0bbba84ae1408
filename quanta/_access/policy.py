"""Policies: principals, rules and masks, and what they grant one principal.

A :class:`Policy` is a list of rules, given to ``quanta.open(..., policy=...)``:

* ``allow(Entity, action, where=lambda me: <query expression>, roles={...})``: principals
  holding one of ``roles`` (any principal when ``roles`` is not given) may do ``action``
  (``"read"``, ``"write"`` or ``"delete"``; or several) on the rows ``where`` selects (every
  row when ``where`` is not given). ``where`` is called once per session with its
  :class:`Principal` and returns a query expression on ``Entity`` (or a bool: True for every
  row, False for none);
* ``mask(Entity.field, unless=lambda me: bool)``: the field reads as :data:`MASKED` for
  principals for whom ``unless`` is false (every principal without ``unless``);
* ``allow_kv(prefix=b"...", actions={"read", "write"})``: the ``kv`` keys starting with
  ``prefix``.

Rules add up (OR); anything no rule allows is denied. A :class:`Grants` is the policy
compiled for one principal (:meth:`Policy.grants`): per entity and action, ``True`` (every
row), ``False`` (denied) or one expression (the OR of the rules' expressions), which the
session ANDs into its queries so the planner plans it over indexes like any condition.

Pure and synchronous: no database, no I/O. Concurrency rules: values only (immutable once
built), safe to share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from .._kv import RESERVED_PREFIX
from .._query import Expr, Field, or_
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "ACTIONS",
    "KV_ACTIONS",
    "MASKED",
    "Grant",
    "Grants",
    "KvRule",
    "Mask",
    "Policy",
    "Principal",
    "Rule",
    "allow",
    "allow_kv",
    "mask",
]

ACTIONS: Final = ("read", "write", "delete")
KV_ACTIONS: Final = ("read", "write")

Grant = Expr | bool
"""What a principal may do on an entity for one action: True (every row), False (nothing),
or the expression its rows satisfy."""


class _Masked:
    """The type of :data:`MASKED` (one instance)."""

    __slots__ = ()
    _instance: _Masked | None = None

    def __new__(cls) -> _Masked:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "quanta.MASKED"

    def __reduce__(self) -> str:
        return "MASKED"


MASKED: Final = _Masked()
"""What a masked field reads as through a session (``quanta.mask``): one sentinel object,
``repr`` ``quanta.MASKED``; test with ``value is quanta.MASKED``."""


@dataclasses.dataclass(frozen=True, init=False, eq=False)
class Principal:
    """Who a session acts for: ``Principal("alice", roles={"member"}, attrs={"tenant": "acme"})``.

    ``id`` (a str or int) is what rules compare with (``Post.author == me.id``); ``roles`` a
    set of role names (``allow(..., roles=...)`` and ``mask(..., unless=...)`` test them);
    ``attrs`` any further facts rules use (``me.attrs["tenant"]``). Frozen: ``roles`` is kept
    as a frozenset and ``attrs`` as a read-only mapping copy, so a session's principal cannot
    change under it."""

    id: str | int
    roles: frozenset[str] = frozenset()
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def __init__(self, id: str | int, *, roles: Iterable[str] = (), attrs: Mapping[str, Any] | None = None) -> None:
        if isinstance(id, bool) or not isinstance(id, str | int):
            raise InvalidTypeError(f"Principal id must be a str or int, got {type(id).__name__}")
        if isinstance(roles, str) or not isinstance(roles, Iterable):
            raise InvalidTypeError("Principal roles must be a set of role names (str), not a single str")
        role_set = frozenset(roles)
        if not all(isinstance(r, str) for r in role_set):
            raise InvalidTypeError("Principal roles must be str")
        if attrs is not None and not isinstance(attrs, Mapping):
            raise InvalidTypeError(f"Principal attrs must be a mapping, got {type(attrs).__name__}")
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "roles", role_set)
        object.__setattr__(self, "attrs", MappingProxyType(dict(attrs or {})))

    def __hash__(self) -> int:
        return hash((self.id, self.roles))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Principal):
            return NotImplemented
        return (self.id, self.roles, dict(self.attrs)) == (other.id, other.roles, dict(other.attrs))


def _entity_name(cls: object, what: str) -> str:
    info = getattr(cls, "__quanta_entity__", None)
    if info is None or getattr(info, "cls", None) is not cls:
        raise InvalidTypeError(f"{what}: {getattr(cls, '__name__', cls)!r} is not an entity class (@quanta.entity)")
    return str(info.name)


def _roles(roles: object, what: str) -> frozenset[str] | None:
    if roles is None:
        return None
    if isinstance(roles, str) or not isinstance(roles, Iterable):
        raise InvalidTypeError(f"{what}: roles must be a set of role names, got {type(roles).__name__}")
    out = frozenset(roles)
    if not out or not all(isinstance(r, str) for r in out):
        raise InvalidArgumentError(f"{what}: roles must be a non-empty set of str")
    return out


@dataclasses.dataclass(frozen=True)
class Rule:
    """One ``quanta.allow(...)`` rule (see the module docstring)."""

    entity: type
    actions: frozenset[str]
    where: Callable[[Principal], Any] | None
    roles: frozenset[str] | None

    def applies(self, me: Principal) -> bool:
        return self.roles is None or bool(self.roles & me.roles)


@dataclasses.dataclass(frozen=True)
class Mask:
    """One ``quanta.mask(...)`` rule."""

    field: Field
    unless: Callable[[Principal], bool] | None


@dataclasses.dataclass(frozen=True)
class KvRule:
    """One ``quanta.allow_kv(...)`` rule."""

    prefix: bytes
    actions: frozenset[str]


def _actions(action: object, allowed: tuple[str, ...], what: str) -> frozenset[str]:
    items = [action] if isinstance(action, str) else action
    if not isinstance(items, Iterable):
        raise InvalidTypeError(f"{what}: the action must be one of {', '.join(allowed)} (or a set of them)")
    out = frozenset(items)
    bad = [a for a in out if a not in allowed]
    if bad or not out:
        raise InvalidArgumentError(f"{what}: unknown action {bad[0] if bad else '(none)'!r}; one of {allowed}")
    return out


def allow(entity: type, action: str | Iterable[str], *, where: Any = None, roles: Iterable[str] | None = None) -> Rule:
    """A rule: principals with one of ``roles`` (any principal if not given) may ``action``
    (``"read"``, ``"write"``, ``"delete"`` or a set of them) the rows of ``entity`` that
    ``where(principal)`` selects (every row if not given). See docs/access-control.md."""
    name = _entity_name(entity, "allow()")
    what = f"allow({name}, {action!r})"
    if where is not None and not callable(where):
        raise InvalidTypeError(f"{what}: where must be a function of the principal (lambda me: ...)")
    return Rule(entity, _actions(action, ACTIONS, what), where, _roles(roles, what))


def mask(field: Any, *, unless: Callable[[Principal], bool] | None = None) -> Mask:
    """A field mask: ``field`` (``User.email``) reads as ``quanta.MASKED`` through a session
    unless ``unless(principal)`` is true; queries that filter or sort on it are refused."""
    if not isinstance(field, Field):
        raise InvalidTypeError(f"mask() takes an entity field such as User.email, got {field!r:.60}")
    _entity_name(field.owner, "mask()")
    if unless is not None and not callable(unless):
        raise InvalidTypeError("mask(): unless must be a function of the principal (lambda me: ...)")
    return Mask(field, unless)


def allow_kv(*, prefix: bytes, actions: Iterable[str] = ("read",)) -> KvRule:
    """A kv rule: sessions may do ``actions`` (``"read"``, ``"write"``; a delete is a write)
    on the ``kv`` keys starting with ``prefix`` (``b""``: every key outside the reserved
    entity key space)."""
    if not isinstance(prefix, bytes):
        raise InvalidTypeError(f"allow_kv(): prefix must be bytes, got {type(prefix).__name__}")
    if prefix.startswith(RESERVED_PREFIX):
        raise InvalidArgumentError(
            f"allow_kv(prefix={prefix!r}): the reserved entity key space is never reachable through kv"
        )
    return KvRule(bytes(prefix), _actions(actions, KV_ACTIONS, f"allow_kv(prefix={prefix!r})"))


@dataclasses.dataclass(frozen=True)
class Grants:
    """A policy compiled for one principal: see :meth:`Policy.grants`."""

    principal: Principal
    rows: Mapping[tuple[type, str], Grant]  # (entity class, action) -> grant; absent: False
    masked: Mapping[type, frozenset[str]]  # entity class -> masked field names
    kv: Mapping[str, tuple[bytes, ...]]  # kv action -> allowed prefixes

    def grant(self, entity: type, action: str) -> Grant:
        return self.rows.get((entity, action), False)


class Policy:
    """The rules of a database: ``quanta.Policy(quanta.allow(...), quanta.mask(...),
    quanta.allow_kv(...), ...)``, given to ``quanta.open(..., policy=...)``. Deny by default:
    what no rule allows is refused to sessions (``db.session(principal)``); the ``db``
    handle itself is unrestricted. A policy is read at ``open``: a change takes effect at the
    next open."""

    __slots__ = ("kv_rules", "masks", "rules")

    def __init__(self, *rules: Rule | Mask | KvRule) -> None:
        self.rules: tuple[Rule, ...] = tuple(r for r in rules if isinstance(r, Rule))
        self.masks: tuple[Mask, ...] = tuple(r for r in rules if isinstance(r, Mask))
        self.kv_rules: tuple[KvRule, ...] = tuple(r for r in rules if isinstance(r, KvRule))
        for r in rules:
            if not isinstance(r, Rule | Mask | KvRule):
                raise InvalidTypeError(
                    f"Policy() takes quanta.allow(...), quanta.mask(...) and quanta.allow_kv(...) rules, got {r!r:.60}"
                )

    def __repr__(self) -> str:
        return f"<quanta.Policy rules={len(self.rules)} masks={len(self.masks)} kv={len(self.kv_rules)}>"

    def check(self, entities: Iterable[type]) -> None:
        """Raise InvalidArgumentError for a rule naming an entity not declared at open, or a
        mask on a field that is not stored (``open`` calls it before anything is done)."""
        declared = set(entities)
        for rule in self.rules:
            if rule.entity not in declared:
                raise InvalidArgumentError(
                    f"policy: a rule names {rule.entity.__name__}, which is not among the entities declared "
                    "at open (quanta.open(..., entities=[...]))"
                )
        for m in self.masks:
            if m.field.owner not in declared:
                raise InvalidArgumentError(
                    f"policy: mask({m.field!r}) names {m.field.owner.__name__}, which is not among the entities "
                    "declared at open"
                )
            info = m.field.entity
            if info.primary_key == m.field.name:
                raise InvalidArgumentError(f"policy: mask({m.field!r}): a primary key cannot be masked")
            try:
                info.field(m.field.name)
            except KeyError:
                raise InvalidArgumentError(f"policy: mask({m.field!r}): not a stored field") from None

    def grants(self, me: Principal) -> Grants:
        """What the rules grant ``me``. Each ``where`` is called once, here; one that raises,
        or returns anything but a bool or an expression on its entity, is an error here."""
        if not isinstance(me, Principal):
            raise InvalidTypeError(f"a session needs a quanta.Principal, got {type(me).__name__}")
        found: dict[tuple[type, str], list[Expr] | None] = {}  # None: every row
        for rule in self.rules:
            if not rule.applies(me):
                continue
            try:
                cond = True if rule.where is None else rule.where(me)
            except Exception as exc:  # a user callable: any failure is a bad policy for this principal
                raise InvalidArgumentError(
                    f"policy: allow({rule.entity.__name__}, ...): where(principal) raised "
                    f"{type(exc).__name__} for principal {me.id!r}: {exc}"
                ) from exc
            if cond is False:
                continue
            if cond is not True and not (isinstance(cond, Expr) and cond.owner is rule.entity):
                raise InvalidArgumentError(
                    f"policy: allow({rule.entity.__name__}, ...): where(principal) must return a query expression "
                    f"on {rule.entity.__name__} (or a bool), got {cond!r:.80}"
                )
            for action in rule.actions:
                key = (rule.entity, action)
                if cond is True:
                    found[key] = None
                elif key not in found or found[key] is not None:
                    current = found.setdefault(key, [])
                    assert current is not None
                    current.append(cond)
        rows: dict[tuple[type, str], Grant] = {}
        for key, exprs in found.items():
            rows[key] = True if exprs is None else exprs[0] if len(exprs) == 1 else or_(*exprs)
        masked: dict[type, set[str]] = {}
        for m in self.masks:
            if m.unless is None or not m.unless(me):
                masked.setdefault(m.field.owner, set()).add(m.field.name)
        kv: dict[str, tuple[bytes, ...]] = {
            action: tuple(r.prefix for r in self.kv_rules if action in r.actions) for action in KV_ACTIONS
        }
        return Grants(me, MappingProxyType(rows), MappingProxyType({k: frozenset(v) for k, v in masked.items()}), kv)
