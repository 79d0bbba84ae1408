"""Links at run time: referential integrity on writes, cascades on deletes, cascade updates
on a key change (``rekey``), loading several levels of links, and the first step of queries
through a link (``has(...)``).

The declarations are ``quanta/_schema/relations.py``; this module works on a transaction's
``kv`` (the collection's write path runs every function here inside one transaction, so each
is one atomic batch) and on a snapshot's or transaction's reader.

Referential integrity (:func:`check_targets`). Before a ``put``/``put_many`` writes, every
target it links to is read (one ``get_many`` for the whole batch, all entities together);
a missing one is an ``IntegrityError`` and nothing is written. A target stored by the same
batch (a record linking to another of the same ``put_many``) or earlier in the same
transaction counts. The reads enter the transaction's read set, so a concurrent delete of a
target makes the write conflict (and a retried write then fails the check).

Deletes (:func:`delete_graph`). Deleting records walks the links that point to them, level
by level, with one batched read per entity and level: ``cascade`` referrers join the
deletion (and are walked in turn), ``set_null`` referrers are rewritten without the link,
``restrict`` referrers forbid the delete. Records already on the way out are not visited
twice (cycles end). A ``restrict`` referrer that the same delete removes (through another
cascade) does not forbid it: what ``restrict`` protects is a record left with a dangling
link, and none is left (SQL's ``NO ACTION``, checked at the end of the statement). Every
check runs before anything is buffered: an ``IntegrityError`` (or a ``ValidationError`` of a
rewritten referrer) leaves the transaction as it was. Then every deletion, entry and
rewrite is buffered as one batch. Referrers are found through each link's index: one range
per deleted target (the range of its key); past ``_PER_KEY`` targets per link and level,
the sorted targets are split into ``_PER_KEY`` groups and each group's covering range is
read once, keeping the entries of the targets asked for (fewer conflict ranges and seeks,
at the price of reading the entries of other targets that sort in between).

A delete only knows the classes declared in this process: a class linking to ``X`` must be
imported where ``X`` records are deleted.

Concurrency rules: event-loop thread only, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from .._codec import decode_key, encode_key, prefix_end
from .._query import And, Expr, LinkIn, LinksAny, Not, Or, Through, plan
from .._schema import SOURCE, Link, LinkSpec, resolve_pending
from ..errors import IntegrityError, InvalidArgumentError
from .entries import entity_keys, index_entries, new_index_entries
from .executor import execute
from .records import retire_keys

if TYPE_CHECKING:
    from .._schema import EntityInfo
    from .._txn import TransactionKeyValue

__all__ = [
    "bind",
    "check_targets",
    "delete_graph",
    "explain_through",
    "load_paths",
    "materialize",
    "parse_paths",
    "referrers",
    "rekey",
]

_PER_KEY = 128
"""Targets per link and level read as one range each; more are read in this many groups."""
_SHOWN = 5  # violations an IntegrityError lists


def bind(objs: Iterable[Any], source: Any) -> None:
    """Mark ``objs`` as read or stored through ``source`` (a database or transaction), so
    that their links and backlinks load through it."""
    if source is None:
        return
    for obj in objs:
        obj.__dict__[SOURCE] = source


# ---------------------------------------------------------------------------------------------
# Referential integrity


async def check_targets(info: EntityInfo, kv: TransactionKeyValue, items: list[Any], rkeys: list[bytes]) -> None:
    """Raise IntegrityError (before anything is written) if an object of ``items`` (whose
    record keys are ``rkeys``) links to a record that exists neither in storage (as the
    transaction sees it) nor in this batch."""
    own = set(rkeys)
    need: dict[bytes, tuple[LinkSpec, Any, Link[Any]]] = {}
    pk_name = info.primary_key
    for spec in info.relations.links:
        record = entity_keys(spec.target_info).record
        name = spec.name
        first: dict[Any, tuple[Any, Link[Any]]] = {}  # distinct target keys (check() made their types exact)
        for obj in items:
            value = obj.__dict__[name]
            if value is None:
                continue
            for lk in value if spec.many else (value,):
                first.setdefault(lk._pk if lk._obj is None else lk.pk, (obj, lk))
        for pk, (obj, lk) in first.items():
            key = record(pk)
            if key not in own and key not in need:
                need[key] = (spec, obj, lk)
    if not need:
        return
    keys = list(need)
    missing = [need[k] for k, v in zip(keys, await kv._get_many(keys), strict=True) if v is None]
    if not missing:
        return
    lines = []
    for spec, obj, lk in missing[:_SHOWN]:
        target = spec.target_info
        hint = ""
        if lk._obj is not None and target.auto and not lk.pk:
            hint = f" (the {target.name} object it holds has no primary key yet: store it first)"
        lines.append(
            f"{info.name} {getattr(obj, pk_name)!r}: {spec.name} links to {target.name} {lk.pk!r}, which does "
            f"not exist{hint}"
        )
    more = f"; and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
    raise IntegrityError("; ".join(lines) + more + "; nothing was written")


# ---------------------------------------------------------------------------------------------
# Finding referrers


async def referrers(kv: Any, spec: LinkSpec, targets: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """``(target, referrer)`` encoded primary keys of the records whose link field ``spec``
    points to one of ``targets`` (encoded primary keys of the target entity), read through
    the link's index (see the module docstring for the ranges)."""
    keys = entity_keys(spec.owner_info)
    if spec.unique:  # one-to-one: a unique entry per target, holding the referrer's key
        prefix = keys.unique_prefixes[spec.index]
        found = await kv._get_many([prefix + e for e in targets])
        return [(e, v) for e, v in zip(targets, found, strict=True) if v is not None]
    prefix = keys.index_prefixes[spec.index]
    n = len(prefix)
    wanted = sorted(set(targets))
    out: list[tuple[bytes, bytes]] = []
    if len(wanted) <= _PER_KEY:
        for e in wanted:
            start = prefix + e
            async with aclosing(kv._scan_chunks(start, prefix_end(start), False, 64)) as chunks:
                async for _, values in chunks:
                    out += [(e, v) for v in values]
        return out
    asked = set(wanted)
    step = -(-len(wanted) // _PER_KEY)
    for i in range(0, len(wanted), step):
        group = wanted[i : i + step]
        start, stop = prefix + group[0], prefix_end(prefix + group[-1])
        async with aclosing(kv._scan_chunks(start, stop, False, 256)) as chunks:
            async for entry_keys, values in chunks:
                for k, v in zip(entry_keys, values, strict=True):
                    e = k[n : len(k) - len(v)]  # an entry: prefix, the target's key, the referrer's key
                    if e in asked:
                        out.append((e, v))
    return out


# ---------------------------------------------------------------------------------------------
# Deletes


async def delete_graph(info: EntityInfo, kv: TransactionKeyValue, keys: list[bytes]) -> int:
    """Delete the records of ``info`` under ``keys`` (distinct record keys) and apply the
    ``on_delete`` rules of every link to them, through the whole graph, as one batch.
    Returns how many of ``keys`` existed. Raises IntegrityError for a ``restrict`` link
    (nothing buffered)."""
    resolve_pending()  # every declared class's links count
    doomed: dict[bytes, tuple[EntityInfo, Any]] = {}
    restricted: list[tuple[LinkSpec, bytes, bytes, EntityInfo]] = []
    nulls: dict[bytes, tuple[EntityInfo, dict[LinkSpec, set[bytes]]]] = {}
    frontier: list[tuple[EntityInfo, list[bytes]]] = [(info, keys)]
    roots = -1
    while frontier:
        following: dict[str, tuple[EntityInfo, list[bytes]]] = {}
        for level_info, level_keys in frontier:
            todo = [k for k in dict.fromkeys(level_keys) if k not in doomed]
            if not todo:
                continue
            decode = level_info.decode
            prefix = entity_keys(level_info).record_prefix
            gone: list[bytes] = []
            for key, old in zip(todo, await kv._get_many(todo), strict=True):
                if old is not None:
                    doomed[key] = (level_info, decode(old))
                    gone.append(key[len(prefix) :])
            if roots < 0:
                roots = len(gone)
            if not gone:
                continue
            for spec in level_info.relations.incoming:
                refs = await referrers(kv, spec, gone)
                if not refs:
                    continue
                source = spec.owner_info
                source_prefix = entity_keys(source).record_prefix
                rule = spec.on_delete
                if rule == "cascade":
                    following.setdefault(source.name, (source, []))[1].extend(source_prefix + r for _, r in refs)
                elif rule == "restrict":
                    restricted.extend((spec, source_prefix + r, t, level_info) for t, r in refs)
                else:
                    for t, r in refs:
                        nulls.setdefault(source_prefix + r, (source, {}))[1].setdefault(spec, set()).add(t)
        frontier = list(following.values())
    for spec, key, target, target_info in restricted:
        if key not in doomed:
            source = spec.owner_info
            referrer = decode_key(key[len(entity_keys(source).record_prefix) :])
            raise IntegrityError(
                f"cannot delete {target_info.name} {decode_key(target)!r}: {source.name} {referrer!r} links to it "
                f"through {source.name}.{spec.name} (on_delete='restrict'); nothing was deleted"
            )
    out_keys: list[bytes] = []
    out_values: list[bytes | None] = []
    rewrites = {k: v for k, v in nulls.items() if k not in doomed}
    if rewrites:
        await _set_null(kv, rewrites, out_keys, out_values)
    gone_keys: list[bytes] = list(doomed)
    by_entity: dict[str, tuple[EntityInfo, list[bytes], list[Any]]] = {}
    for key, (level_info, obj) in doomed.items():
        group = by_entity.setdefault(level_info.name, (level_info, [], []))
        group[1].append(key)
        group[2].append(obj)
    for level_info, level_keys, objs in by_entity.values():
        level_keys_of = entity_keys(level_info)
        if any(idx.unique for idx in level_info.indexes):
            for obj in objs:
                gone_keys.extend(index_entries(level_info, level_keys_of, obj, getattr(obj, level_info.primary_key)))
        else:  # every entry ends with the record's encoded key: built a column at a time
            n = len(level_keys_of.record_prefix)
            gone_keys += new_index_entries(level_info, level_keys_of, objs, [k[n:] for k in level_keys])[0]
        await retire_keys(level_info, kv, [getattr(obj, level_info.primary_key) for obj in objs])
    kv._put_generated([*gone_keys, *out_keys], [*([None] * len(gone_keys)), *out_values])
    return max(roots, 0)


async def _set_null(
    kv: TransactionKeyValue,
    rewrites: dict[bytes, tuple[EntityInfo, dict[LinkSpec, set[bytes]]]],
    out_keys: list[bytes],
    out_values: list[bytes | None],
) -> None:
    """Rewrite each referrer without its links to the deleted targets (checked first)."""
    keys = list(rewrites)
    for key, data in zip(keys, await kv._get_many(keys), strict=True):
        if data is None:  # pragma: no cover - an index entry exists exactly when its record does
            continue
        source, by_spec = rewrites[key]
        obj = source.decode(data)
        d = obj.__dict__
        for spec, targets in by_spec.items():
            if spec.many:
                kept = [lk for lk in d[spec.name] if encode_key(lk.pk) not in targets]
                d[spec.name] = spec.make_many(())
                list.extend(d[spec.name], kept)
            else:
                d[spec.name] = None
        _rewrite(source, key, data, obj, out_keys, out_values)


def _rewrite(
    info: EntityInfo, key: bytes, old_data: bytes, obj: Any, out_keys: list[bytes], out_values: list[bytes | None]
) -> None:
    """Append the writes that replace the record ``old_data`` under ``key`` with ``obj``
    (same primary key): the record, and its index entries that changed. ``obj`` is checked
    first (types, constraints, validators)."""
    info.check(obj)
    keys = entity_keys(info)
    pk = getattr(obj, info.primary_key)
    before = index_entries(info, keys, info.decode(old_data), pk)
    after = index_entries(info, keys, obj, pk)
    for k in before:
        if k not in after:
            out_keys.append(k)
            out_values.append(None)
    for k, v in after.items():
        if before.get(k) != v:
            out_keys.append(k)
            out_values.append(v)
    out_keys.append(key)
    out_values.append(info.encode(obj))


# ---------------------------------------------------------------------------------------------
# Cascade update: a record under a new primary key


async def rekey(info: EntityInfo, kv: TransactionKeyValue, old_key: bytes, new_key: bytes, new_pk: Any) -> bool:
    """Move the record under ``old_key`` to ``new_key`` (primary key ``new_pk``) and point
    every link to it at the new key, as one batch. False if there is no record under
    ``old_key``; IntegrityError if ``new_key`` is taken (nothing buffered)."""
    resolve_pending()
    old_data, taken = await kv._get_many([old_key, new_key])
    if old_data is None:
        return False
    if old_key == new_key:
        return True
    if taken is not None:
        raise IntegrityError(
            f"{info.name}: cannot change the key to {new_pk!r}: another record has it; nothing was written"
        )
    keys = entity_keys(info)
    prefix = keys.record_prefix
    old_epk = old_key[len(prefix) :]
    old_pk = decode_key(old_epk)
    obj = info.decode(old_data)
    updates: dict[bytes, tuple[EntityInfo, set[LinkSpec]]] = {}
    for spec in info.relations.incoming:
        source = spec.owner_info
        source_prefix = entity_keys(source).record_prefix
        for _, r in await referrers(kv, spec, [old_epk]):
            updates.setdefault(source_prefix + r, (source, set()))[1].add(spec)
    mine = updates.pop(old_key, None)  # the record links to itself
    if mine is not None:
        _repoint(obj, mine[1], old_epk, new_pk)
    object.__setattr__(obj, info.primary_key, new_pk)
    info.check(obj)
    out_keys: list[bytes] = []
    out_values: list[bytes | None] = []
    ref_keys = list(updates)
    for key, data in zip(ref_keys, await kv._get_many(ref_keys), strict=True):
        if data is None:  # pragma: no cover - an index entry exists exactly when its record does
            continue
        source, specs = updates[key]
        referrer = source.decode(data)
        _repoint(referrer, specs, old_epk, new_pk)
        _rewrite(source, key, data, referrer, out_keys, out_values)
    before = index_entries(info, keys, info.decode(old_data), old_pk)
    after = index_entries(info, keys, obj, new_pk)
    gone = [k for k in before if k not in after]
    out_keys += [*gone, old_key, *after, new_key]
    out_values += [*([None] * (len(gone) + 1)), *after.values(), info.encode(obj)]
    await retire_keys(info, kv, [old_pk])
    kv._put_generated(out_keys, out_values)
    return True


def _repoint(obj: Any, specs: Iterable[LinkSpec], old_epk: bytes, new_pk: Any) -> None:
    d = obj.__dict__
    for spec in specs:
        value = d[spec.name]
        if spec.many:
            fresh = spec.make_many(())
            list.extend(fresh, [spec.make(new_pk) if encode_key(lk.pk) == old_epk else lk for lk in value])
            d[spec.name] = fresh
        elif value is not None and encode_key(value.pk) == old_epk:
            d[spec.name] = spec.make(new_pk)


# ---------------------------------------------------------------------------------------------
# Loading several levels


def parse_paths(info: EntityInfo, paths: Sequence[Any]) -> dict[str, Any]:
    """``("author", "author.posts", "tags")`` as a tree ``{"author": {"posts": {}}, "tags":
    {}}``, each step checked to be a link or backlink of the class it starts from
    (InvalidArgumentError otherwise)."""
    tree: dict[str, Any] = {}
    for path in paths:
        if not isinstance(path, str) or not path:
            raise InvalidArgumentError(f"link paths are strings such as 'author' or 'author.posts', got {path!r}")
        node, current = tree, info
        for step in path.split("."):
            rel = current.relations
            spec = rel.link(step) if rel is not None else None
            back = rel.backlink(step) if rel is not None and spec is None else None
            if spec is None and back is None:
                known = [s.name for s in rel.links] + [b.name for b in rel.backlinks] if rel is not None else []
                raise InvalidArgumentError(
                    f"{path!r}: {current.name} has no link or backlink {step!r} (it has: {', '.join(known) or 'none'})"
                )
            current = spec.target_info if spec is not None else back.link.owner_info  # type: ignore[union-attr]
            node = node.setdefault(step, {})
    return tree


async def load_paths(reader: Any, source: Any, info: EntityInfo, objs: Sequence[Any], tree: dict[str, Any]) -> None:
    """Load the links and backlinks of ``tree`` (see :func:`parse_paths`) for ``objs``
    (objects of ``info``), level by level: one ``get_many`` per step, after, for a backlink
    step, a scan of the link's index (one range per owner, grouped past ``_PER_KEY``; see
    :func:`referrers`). Loaded objects are shared (one object per record), bound to
    ``source``; a link whose target is gone stays unloaded."""
    rel = info.relations
    for step, sub in tree.items():
        spec = rel.link(step)
        if spec is not None:
            target = spec.target_info
            record = entity_keys(target).record
            wanted: dict[bytes, list[Link[Any]]] = {}
            for obj in objs:
                value = obj.__dict__.get(step)
                if value is None:
                    continue
                for lk in value if spec.many else (value,):
                    wanted.setdefault(record(lk.pk), []).append(lk)
            keys = list(wanted)
            decode = target.decode
            loaded: list[Any] = []
            for key, data in zip(keys, await reader._get_many(keys), strict=True):
                if data is None:
                    continue
                obj = decode(data)
                loaded.append(obj)
                for lk in wanted[key]:
                    lk._obj = obj
            bind(loaded, source)
            if sub and loaded:
                await load_paths(reader, source, target, loaded, sub)
            continue
        back = rel.backlink(step)
        assert back is not None
        link = back.link
        owner_pk = info.primary_key
        owners: dict[bytes, Any] = {}
        for obj in objs:
            owners.setdefault(encode_key(getattr(obj, owner_pk)), obj)
        source_info = link.owner_info
        pairs = await referrers(reader, link, list(owners))
        prefix = entity_keys(source_info).record_prefix
        keys = list(dict.fromkeys(prefix + r for _, r in pairs))
        decode = source_info.decode
        by_key = {k: decode(v) for k, v in zip(keys, await reader._get_many(keys), strict=True) if v is not None}
        everyone = list(by_key.values())
        bind(everyone, source)
        found: dict[bytes, list[Any]] = {e: [] for e in owners}
        for target, r in pairs:
            referrer = by_key.get(prefix + r)
            bucket = found[target]
            if referrer is not None and (not bucket or bucket[-1] is not referrer):
                bucket.append(referrer)
        for e, obj in owners.items():
            getattr(obj, step)._loaded = found[e]
        if sub and everyone:
            await load_paths(reader, source, source_info, everyone, sub)


# ---------------------------------------------------------------------------------------------
# Queries through a link: the first step


async def materialize(e: Expr, reader: Any, planning: Any) -> Expr:
    """``e`` with every ``has(...)`` replaced by the key set its condition selects now (run as
    a query on the target entity through ``reader``). ``planning(info)`` is the info to plan
    with (without indexes still being built)."""
    if isinstance(e, Through):
        spec = e.link.spec
        target = spec.target_info
        inner = await materialize(e.inner, reader, planning)
        pk_name = target.primary_key
        pks: list[Any] = []
        async with aclosing(execute(plan(planning(target), inner), target, reader)) as batches:
            async for batch in batches:
                pks += [getattr(o, pk_name) for o in batch]
        return LinksAny(e.field, tuple(pks)) if spec.many else LinkIn(e.field, tuple(pks))
    if isinstance(e, And | Or):
        return type(e)(tuple([await materialize(x, reader, planning) for x in e.items]))
    if isinstance(e, Not):
        return Not(await materialize(e.item, reader, planning))
    return e


def explain_through(query: Any, planning: Any) -> str:
    """``Query.explain()`` of a query through links: each ``has(...)`` step (a query on the
    target, for its keys), then the query itself with each ``has(...)`` standing for "the
    link is one of the keys found" (one range of the link's index per key), and the cost."""
    steps: list[str] = []
    marks: list[tuple[str, str]] = []

    def substitute(e: Expr) -> Expr:
        if isinstance(e, Through):
            spec = e.link.spec
            target = spec.target_info
            inner = substitute(e.inner)
            p = plan(planning(target), inner)
            n = len(steps) + 1
            title = f"step {n}: the {target.name} records matching {e.inner!r} (their keys)"
            steps.append(title + "\n" + _indent(p.explain()))
            dummy = _placeholder(target.pk_field.key_type)
            marks.append((repr(dummy), f"<each key from step {n}>"))
            return LinksAny(e.field, (dummy,)) if spec.many else LinkIn(e.field, (dummy,))
        if isinstance(e, And | Or):
            return type(e)(tuple(substitute(x) for x in e.items))
        if isinstance(e, Not):
            return Not(substitute(e.item))
        return e

    info = query._coll._info
    where = substitute(query._where)
    text = plan(planning(info), where, query._order, query._limit, query._offset).explain()
    for old, new in marks:
        text = text.replace(old, new)
    lines = text.splitlines()
    for i, line in enumerate(lines):  # "ranges: 1" stood for the one placeholder key
        if i and "<each key from step " in line and lines[i - 1].startswith("  ranges:"):
            step = line.split("<each key from step ", 1)[1].split(">", 1)[0]
            lines[i - 1] = f"  ranges:   one per key from step {step}"
    text = "\n".join(lines)
    n = len(steps) + 1
    head = f"query through links: {n} steps, run in order at one snapshot"
    last = f"step {n}: the {info.name} records whose link is one of the keys found\n" + _indent(text)
    cost = (
        "cost: each earlier step as its plan says (its matches are decoded for their keys); then, per key found, "
        "one range of the link's index (a read of each record it lists, unless a residual filter rejects it)"
    )
    return "\n".join([head, *steps, last, cost])


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _placeholder(key_type: Any) -> Any:
    """A value of ``key_type`` that stands for "a key from an earlier step" in explain()."""
    import datetime
    import enum
    import uuid

    if isinstance(key_type, type) and issubclass(key_type, enum.Enum):
        return next(iter(key_type))
    return {
        bool: True,
        int: -2305843009213705297,
        float: -1.2345678901234e300,
        str: "\x00<key>",
        bytes: b"\x00<key>",
        datetime.datetime: datetime.datetime(1, 2, 3, 4, 5, 6, 789012),
        datetime.date: datetime.date(1, 2, 3),
        uuid.UUID: uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF),
    }.get(key_type, -2305843009213705297)
