"""The reference model the key-value tests compare against: what a scan must return, computed
from a plain dict, and a helper that drains an async iterator."""

from __future__ import annotations

from collections.abc import AsyncIterator


def model_scan(
    model: dict[bytes, bytes],
    start: bytes | None = None,
    stop: bytes | None = None,
    prefix: bytes | None = None,
    reverse: bool = False,
    limit: int | None = None,
) -> list[tuple[bytes, bytes]]:
    """What ``scan(start, stop, prefix=, reverse=, limit=)`` must return over ``model``."""
    keys = sorted(
        k
        for k in model
        if (start is None or k >= start) and (stop is None or k < stop) and (prefix is None or k.startswith(prefix))
    )
    if reverse:
        keys.reverse()
    if limit is not None:
        keys = keys[:limit]
    return [(k, model[k]) for k in keys]


async def collect(it: AsyncIterator[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [item async for item in it]
