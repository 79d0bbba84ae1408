"""Comparing a stored schema with a declared one: the differences, and what to do about them.

``differences(stored, declared)`` lists every difference as a :class:`Difference`, each
with the least it ``needs``:

``catalog``    nothing but a new catalog entry: the stored records read the same under the
               new class (``T`` to ``T | None``, an enum gaining members, the class moved to
               another module, ``auto`` switched, constraints or validators changed)
``index``      an index added (built over existing records) or dropped (its entries deleted)
``rewrite``    every record rewritten in the new shape, with no information lost: a new
               field with a default, a new optional field (None), fields reordered, a
               removed field that holds no data (None in every record), a version bump
``migration``  a change that loses or invents information: a type change, a removed field
               that holds data (a rename is a removal plus an addition), a new required field
               without a default, a new primary key, a lower version

``decide(...)`` turns them, and the facts only storage can tell (does the collection hold
records? which removed fields hold data? is there a migration chain?), into one
:class:`Decision`. A collection without records takes any new schema as a catalog change.

Pure functions over values: no I/O, no event loop (``catalog.py`` gathers the facts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from .format import StoredIndex, StoredSchema, compatible

__all__ = ["Action", "Decision", "Difference", "Need", "decide", "differences", "summary"]

Need = Literal["catalog", "index", "rewrite", "migration"]
Action = Literal["none", "catalog", "rewrite", "migrate", "mismatch"]
_RANK = {"catalog": 0, "index": 1, "rewrite": 2, "migration": 3}


@dataclasses.dataclass(frozen=True, slots=True)
class Difference:
    """One difference between a stored schema and a declared class. ``str()`` is the line a
    ``SchemaMismatchError`` shows: ``User.age: type changed from int to str``."""

    entity: str
    kind: str  # field_added, field_removed, field_type, field_order, primary_key, auto, version,
    #            class, index_added, index_dropped, constraints, validators
    text: str
    need: Need
    field: str | None = None
    index: str | None = None
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        where = f"{self.entity}.{self.field}" if self.field else self.entity
        return f"{where}: {self.text}"


def differences(stored: StoredSchema, declared: StoredSchema) -> list[Difference]:
    """Every difference between ``stored`` and ``declared`` (same entity name), in a stable
    order: primary key, version, fields in declared order, removed fields, order, indexes,
    then the rest."""
    e = declared.name
    out: list[Difference] = []
    if stored.primary_key != declared.primary_key:
        out.append(
            Difference(
                e,
                "primary_key",
                f"primary key changed from {stored.primary_key!r} to {declared.primary_key!r}",
                "migration",
                old=stored.primary_key,
                new=declared.primary_key,
            )
        )
    if declared.version < stored.version:
        out.append(
            Difference(
                e,
                "version",
                f"the stored records are version {stored.version}, newer than the class's version {declared.version}",
                "migration",
                old=stored.version,
                new=declared.version,
            )
        )
    elif declared.version > stored.version:
        out.append(
            Difference(
                e,
                "version",
                f"version {stored.version} -> {declared.version}",
                "rewrite",
                old=stored.version,
                new=declared.version,
            )
        )
    old_names = [f.name for f in stored.fields]
    for f in declared.fields:
        old = stored.field(f.name)
        if old is None:
            if f.default or f.optional:
                what = "with a default" if f.default else "optional, None in existing records"
                out.append(Difference(e, "field_added", f"new field ({f.type_label}, {what})", "rewrite", f.name))
            else:
                out.append(
                    Difference(
                        e,
                        "field_added",
                        f"new required field ({f.type_label}) without a default",
                        "migration",
                        f.name,
                        new=f.type,
                    )
                )
            continue
        if old.type != f.type:
            if compatible(old.type, f.type):
                out.append(
                    Difference(
                        e,
                        "field_type",
                        f"type widened from {old.type_label} to {f.type_label}",
                        "catalog",
                        f.name,
                        old=old.type,
                        new=f.type,
                    )
                )
            else:
                out.append(
                    Difference(
                        e,
                        "field_type",
                        f"type changed from {old.type_label} to {f.type_label}",
                        "migration",
                        f.name,
                        old=old.type,
                        new=f.type,
                    )
                )
        if old.constraints != f.constraints:
            out.append(Difference(e, "constraints", "constraints changed", "catalog", f.name))
    new_names = [f.name for f in declared.fields]
    for f in stored.fields:
        if f.name not in new_names:
            out.append(
                Difference(
                    e, "field_removed", f"field removed (stored as {f.type_label})", "migration", f.name, old=f.type
                )
            )
    kept_old = [n for n in old_names if n in new_names]
    kept_new = [n for n in new_names if n in old_names]
    if kept_old != kept_new:
        out.append(Difference(e, "field_order", f"fields reordered: {', '.join(new_names)}", "rewrite"))
    if stored.auto != declared.auto:
        out.append(Difference(e, "auto", f"auto keys {'on' if declared.auto else 'off'}", "catalog"))
    for idx in declared.indexes:
        old_idx = stored.index(idx.name)
        if old_idx is not None and old_idx.state == "dropping":
            old_idx = None  # being deleted: the declared one is new
        if old_idx is None:
            out.append(Difference(e, "index_added", f"new {idx.text}", "index", index=idx.name, new=idx))
        elif not old_idx.same_definition(idx):
            out.append(
                Difference(
                    e, "index_changed", f"{old_idx.text} redefined as {idx.text}", "index", index=idx.name, new=idx
                )
            )
    declared_names = {i.name for i in declared.indexes}
    for idx in stored.indexes:
        if idx.name not in declared_names and idx.state != "dropping":
            out.append(Difference(e, "index_dropped", f"{idx.text} dropped", "index", index=idx.name, old=idx))
    if stored.cls != declared.cls:
        out.append(Difference(e, "class", f"class is now {declared.cls} (was {stored.cls})", "catalog"))
    if stored.validators != declared.validators:
        out.append(Difference(e, "validators", "validators changed", "catalog"))
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What opening with the declared class does to one entity.

    ``action``: ``none`` (identical), ``catalog`` (write the new schema; index jobs as
    ``index_added``/``index_dropped`` say), ``rewrite`` (rewrite every record in the new shape,
    automatically), ``migrate`` (run the migration ``chain``), ``mismatch`` (refuse:
    ``problems`` lists why). ``differences`` are all of them, whatever the action.
    """

    action: Action
    differences: tuple[Difference, ...] = ()
    problems: tuple[Difference, ...] = ()
    hint: str = ""
    index_added: tuple[StoredIndex, ...] = ()
    index_dropped: tuple[str, ...] = ()
    chain: tuple[Any, ...] = ()


def decide(
    stored: StoredSchema,
    declared: StoredSchema,
    *,
    has_records: bool,
    removed_with_data: Sequence[str] = (),
    chain: Sequence[Any] | None = None,
    missing_step: str = "",
) -> Decision:
    """The :class:`Decision` for ``declared`` against ``stored``.

    ``removed_with_data``: the removed fields some stored record holds a non-None value in
    (only asked for when fields were removed). ``chain``: the migration steps from
    ``stored.version`` to ``declared.version`` (None: there is no complete chain;
    ``missing_step`` says what is missing). Requires: ``differences`` would be computed
    from the same two schemas.
    """
    diffs = differences(stored, declared)
    data = set(removed_with_data)
    adjusted: list[Difference] = []
    for d in diffs:
        if d.kind == "field_removed" and d.field not in data:
            d = dataclasses.replace(d, text=d.text + ", holding no data", need="rewrite")
        elif d.kind == "field_removed":
            d = dataclasses.replace(d, text=d.text + ", holding data")
        adjusted.append(d)
    diffs = adjusted
    added = tuple(d.new for d in diffs if d.kind in ("index_added", "index_changed"))
    dropped = tuple(d.index for d in diffs if d.kind in ("index_dropped", "index_changed") and d.index)
    if not diffs:
        return Decision("none")
    need = max(_RANK[d.need] for d in diffs)
    downgrade = declared.version < stored.version
    if not has_records and not downgrade:
        # Nothing to convert: the new schema simply replaces the old one.
        return Decision("catalog", tuple(diffs), index_added=added, index_dropped=dropped, chain=tuple(chain or ()))
    if downgrade:
        problems = tuple(d for d in diffs if d.kind == "version")
        hint = (
            f"open it with {declared.name} at version {stored.version} or later (a program may not read records "
            "written by a newer one)"
        )
        return Decision("mismatch", tuple(diffs), problems, hint)
    if declared.version > stored.version and chain is not None:
        return Decision("migrate", tuple(diffs), chain=tuple(chain))
    if need == _RANK["migration"]:
        problems = tuple(d for d in diffs if d.need == "migration")
        if declared.version == stored.version:
            hint = (
                f"bump the version (@quanta.entity(version={stored.version + 1})) and add "
                f"@quanta.migration({declared.name}, from_version={stored.version}, to_version={stored.version + 1}); "
                "`python -m quanta migrate PATH --autogenerate MODULE` writes a skeleton"
            )
        else:
            hint = missing_step or f"no migration leads from version {stored.version} to {declared.version}"
        return Decision("mismatch", tuple(diffs), problems, hint)
    if need == _RANK["rewrite"]:
        return Decision("rewrite", tuple(diffs))
    return Decision("catalog", tuple(diffs), index_added=added, index_dropped=dropped)


def summary(diffs: Sequence[Difference]) -> str:
    """One line for the history: ``new field nick; new index 'city'``."""
    parts = []
    for d in diffs:
        if d.kind in ("class", "validators", "constraints"):
            continue
        parts.append(f"{d.field}: {d.text}" if d.field else d.text)
    return "; ".join(parts) or "metadata changed"
