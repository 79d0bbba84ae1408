"""Entity writes: a batch of records with all their index entries, buffered in one
transaction's ``kv`` (``put_records``, ``delete_records``), with the link checks and
``on_delete`` rules of ``_relations.py`` in the same batch. A collection's ``put``/``delete``
and a query's ``delete`` come here; nothing here calls back up into them.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from .._codec import decode_key, decode_tuple, encode_keys, successor
from .._options import MAX_VALUE_BYTES
from .._schema import EntityInfo, IndexInfo, has_pending, resolve_pending
from ..errors import CorruptionError, UniqueViolationError
from . import _relations
from .entries import entity_keys, index_entries, new_index_entries
from .records import entries_pointing_to, retire_keys, too_large

if TYPE_CHECKING:
    from .._txn import TransactionKeyValue

__all__ = ["delete_records", "put_records"]


def _unique_index(info: EntityInfo, key: bytes) -> IndexInfo:
    name = decode_tuple(key[3:])[1]
    for idx in info.indexes:
        if idx.name == name:
            return idx
    raise AssertionError(name)  # pragma: no cover


async def put_records(
    info: EntityInfo, kv: TransactionKeyValue, items: list[Any], pks: list[Any], *, check_links: bool = True
) -> None:
    """Buffer ``items`` (checked objects of ``info``, primary keys ``pks``) with their index
    entries in ``kv``. ``check_links=False`` skips the link-target checks: only for a caller
    that checked every target itself (a JSON Lines import, whose targets may come in a later
    batch of the same file)."""
    keys = entity_keys(info)
    prefix = keys.record_prefix
    epks = encode_keys(pks)
    rkeys = [prefix + e for e in epks]
    if len(set(rkeys)) != len(rkeys):  # a key given twice: the later object wins
        latest = {k: (obj, pk, e) for k, obj, pk, e in zip(rkeys, items, pks, epks, strict=True)}
        rkeys = list(latest)
        items = [obj for obj, _, _ in latest.values()]
        pks = [pk for _, pk, _ in latest.values()]
        epks = [e for _, _, e in latest.values()]
    if check_links and info.relations is not None and info.relations.links:
        await _relations.check_targets(info, kv, items, rkeys)  # IntegrityError before any write
    encode, decode = info.encode, info.decode
    records = list(map(encode, items))
    if max(map(len, records)) > MAX_VALUE_BYTES:
        too_large(info, records, pks)
    if not info.indexes:
        kv._put_generated(rkeys, records)  # type: ignore[arg-type]
        return
    olds = await _old_records(kv, rkeys)
    if all(old is None for old in olds) and not any(idx.unique for idx in info.indexes):
        # Only new records and no unique index (a bulk load): index keys column by column.
        entry_keys, entry_values = new_index_entries(info, keys, items, epks)
        kv._put_generated([*entry_keys, *rkeys], [*entry_values, *records])
        return
    removed: set[bytes] = set()
    added: dict[bytes, bytes] = {}
    claims: dict[bytes, Any] = {}  # unique entry -> pk claiming it in this batch
    unique = any(idx.unique for idx in info.indexes)
    for obj, pk, old in zip(items, pks, olds, strict=True):
        new = index_entries(info, keys, obj, pk)
        if old is None:
            before: dict[bytes, bytes] = {}
        else:
            before = index_entries(info, keys, decode(old), pk)
            removed.update(k for k in before if k not in new)
        if not unique and not before:
            added.update(new)
            continue
        for k, v in new.items():
            if k in before:
                continue
            if k[2] == 0x75:  # a unique entry (kind byte b"u")
                other = claims.get(k, _NONE)
                if other is not _NONE and other != pk:
                    _violation(info, k)
                claims[k] = pk
            added[k] = v
    if claims:
        fresh = [k for k in claims if k not in removed]
        for k, existing in zip(fresh, await kv._get_many(fresh), strict=True):
            if existing is not None and decode_tuple(existing)[0] != claims[k]:
                _violation(info, k)
    out_keys = [k for k in removed if k not in added]
    out_values: list[bytes | None] = [None] * len(out_keys)
    out_keys += added
    out_values += added.values()
    out_keys += rkeys
    out_values += records
    kv._put_generated(out_keys, out_values)


_NONE = object()
_PROBE_FROM = 256  # put_many of at least this many records first probes their key range


async def _old_records(kv: TransactionKeyValue, rkeys: list[bytes]) -> list[bytes | None]:
    """The stored records under ``rkeys`` (None where new). Reading them also makes a
    concurrent change of one a conflict. A big batch first asks whether any record at all
    lies between its smallest and largest key (one seek; a bulk load into an empty
    collection, or past its last key, ends there): the range read makes any concurrent write
    in it a conflict, which covers every key of the batch."""
    if len(rkeys) >= _PROBE_FROM:
        lo, hi = min(rkeys), max(rkeys)
        async with aclosing(kv._scan_chunks(lo, successor(hi), False, 1)) as chunks:
            async for _ in chunks:
                break
            else:
                return [None] * len(rkeys)
    return await kv._get_many(rkeys)


def _violation(info: EntityInfo, key: bytes) -> None:
    idx = _unique_index(info, key)
    values = decode_tuple(key[3:])[2:]
    shown = values[0] if len(values) == 1 else values
    raise UniqueViolationError(
        f"{info.name}.{'/'.join(idx.fields)} must be unique: {shown!r} is already used by another record; "
        "nothing was written",
        entity=info.name,
        index=idx.name,
        value=shown,
    )


async def delete_records(info: EntityInfo, kv: TransactionKeyValue, keys: list[bytes]) -> int:
    rel = info.relations
    if rel is not None:
        if has_pending():
            resolve_pending()
        if rel.incoming:  # links point here: apply their on_delete rules (quanta/_entity/_relations.py)
            return await _relations.delete_graph(info, kv, keys)
    olds = await kv._get_many(keys)
    decode = info.decode
    ekeys = entity_keys(info)
    gone: list[bytes] = []
    n = 0
    deleted: list[Any] = []
    for key, old in zip(keys, olds, strict=True):
        if old is None:
            continue
        n += 1
        try:
            obj = decode(old)
        except CorruptionError:  # a record that cannot be read can still be deleted
            epk = key[len(ekeys.record_prefix) :]
            pk = decode_key(epk)
            gone.extend(await entries_pointing_to(info, kv, epk))
        else:
            pk = getattr(obj, info.primary_key)
            gone.extend(index_entries(info, ekeys, obj, pk))
        deleted.append(pk)
        gone.append(key)
    await retire_keys(info, kv, deleted)
    kv._put_generated(gone, [None] * len(gone))
    return n
