"""The change bus as the inspector shows it: one row per subscriber (its key range, how many
change sets wait in its queue = its lag, its capacity, whether it ended and why)."""

from __future__ import annotations

from typing import Any

from .._reactive import Queue

__all__ = ["bus_state"]


def _key(value: bytes | None) -> str | None:
    return None if value is None else repr(value)


def bus_state(db: Any) -> dict[str, Any]:
    """Subscribers of ``db``'s change bus and event hub, and the bus's published count."""
    bus = db._bus
    rows: list[dict[str, Any]] = []
    for tap in list(bus._subs):
        queue = getattr(tap.send, "__self__", None)
        row: dict[str, Any] = {"lo": _key(tap.lo), "hi": _key(tap.hi), "with_old": tap.with_old}
        row["start_seq"] = tap.start_seq
        if isinstance(queue, Queue):
            row.update(
                kind="queue",
                lag=len(queue.buffer),
                capacity=queue.capacity,
                conflate=queue.conflate,
                done=queue.done,
                overflowed=queue.error is not None and "overflow" in type(queue.error).__name__.lower(),
                error=None if queue.error is None else type(queue.error).__name__,
            )
        else:
            row.update(kind="callback", lag=0, capacity=None, conflate=False, done=tap.done)
            row.update(overflowed=False, error=None)
        rows.append(row)
    return {
        "seq": db.seq,
        "published": bus.published,
        "subscribers": len(bus),
        "event_subscribers": len(db._events),
        "taps": rows,
        "max_lag": max((r["lag"] for r in rows), default=0),
        "overflowed": sum(1 for r in rows if r["overflowed"]),
    }
