"""Stored records that need care: one that cannot be decoded (named by its key, still
deletable), one over the value limit (refused before anything is written), and the persisted
auto-key counter that a delete raises in the same batch (``keyspace.sequence_key``).

Everything here is off the hot path: the write and read paths call it only when a record
fails to decode, is too large, or belongs to an auto-key entity being deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._codec import decode_key, encode_key, prefix_end
from .._options import MAX_VALUE_BYTES
from .._schema import EntityInfo, bad_record_error, index_prefix, sequence_key, unique_prefix
from ..errors import CorruptionError, LimitExceededError

if TYPE_CHECKING:
    from .._txn import TransactionKeyValue

__all__ = [
    "bad_record",
    "entries_pointing_to",
    "first_bad",
    "retire_keys",
    "stored_next",
    "too_large",
]


def bad_record(info: EntityInfo, key: bytes, exc: CorruptionError) -> CorruptionError:
    """``exc`` (a record that cannot be decoded) as an error naming the record's key; the
    record stays deletable (``delete`` removes it without decoding it)."""
    if exc.path.startswith("<record "):
        return exc
    return bad_record_error(info.name, key, exc._message)


def first_bad(decode: Callable[[bytes], Any], keys: list[bytes], values: list[bytes | None]) -> bytes:
    """The key of the first of ``values`` that fails to decode."""
    for key, value in zip(keys, values, strict=True):
        if value is not None:
            try:
                decode(value)
            except CorruptionError:
                return key
    raise AssertionError("no record failed to decode")  # pragma: no cover


def too_large(info: EntityInfo, records: list[bytes], pks: list[Any]) -> None:
    """Raise ``LimitExceededError`` for the first record over ``MAX_VALUE_BYTES``."""
    for data, pk in zip(records, pks, strict=True):
        if len(data) > MAX_VALUE_BYTES:
            raise LimitExceededError(
                f"{info.name} {pk!r}: the record is {len(data)} bytes, over the limit of {MAX_VALUE_BYTES} bytes "
                "for one value (quanta.MAX_VALUE_BYTES); nothing was written"
            )


def stored_next(data: bytes | None) -> int:
    """The persisted counter's value (0 if none)."""
    if data is None:
        return 0
    try:
        value = decode_key(data)
    except Exception as exc:
        raise CorruptionError(f"malformed auto-key counter: {exc}", path="<record>") from exc
    return value if type(value) is int else 0


async def retire_keys(info: EntityInfo, kv: TransactionKeyValue, pks: Iterable[Any]) -> None:
    """Buffer, in the batch that deletes (or moves away) the records with primary keys
    ``pks``, a raise of ``info``'s persisted auto-key counter past them, so that a reopen
    never hands them out again (nothing for an entity without auto keys). Reads the counter
    in the transaction: two concurrent batches that both raise it conflict, and the later
    one retries with the other's value."""
    if not info.auto:
        return
    top = max((pk for pk in pks if type(pk) is int), default=0)
    if top <= 0:
        return
    key = sequence_key(info.name)
    if stored_next(await kv._get(key)) <= top:
        kv._put_generated([key], [encode_key(top + 1)])


async def entries_pointing_to(info: EntityInfo, kv: TransactionKeyValue, epk: bytes) -> list[bytes]:
    """Every index entry of ``info`` whose value is ``epk`` (the encoded primary key of a
    record that cannot be decoded, so its entries cannot be computed): a scan of each index,
    only on this rare path."""
    out: list[bytes] = []
    for idx in info.indexes:
        start = (unique_prefix if idx.unique else index_prefix)(info.name, idx.name)
        async for k, v in kv._scan(start, prefix_end(start)):
            if v == epk:
                out.append(k)
    return out
