"""System events: what the background work of the engine is doing, as plain values.

The engine reports each flush and compaction twice (``*_started`` and ``*_finished``, with the
same ``job`` number), each write stall (``write_stall_started`` / ``write_stall_finished``) and a
failure that stops writes (``database_failed``) through ``Engine.on_event``. The layer above fans them
out to ``db.events()`` subscribers. Events are for stats, the CLI and the inspector: they
describe work, they carry no user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["EventKind", "SystemEvent"]

EventKind = Literal[
    "flush_started",
    "flush_finished",
    "compaction_started",
    "compaction_finished",
    "write_stall_started",
    "write_stall_finished",
    "database_failed",
]


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """One event of the engine's background work.

    ``job`` pairs a ``*_started`` event with its ``*_finished`` one. ``level`` and
    ``output_level`` are the LSM levels read and written (a flush writes level 0 from the
    memtable: ``level`` is None). ``input_files``/``output_files`` are table file numbers;
    the byte counts are file sizes. ``duration`` is in seconds (0.0 on ``*_started``);
    ``time`` is ``time.time()`` when the event was published. ``trivial`` marks a compaction
    that moved a file down a level without rewriting it. ``error`` is set on
    ``database_failed`` only.
    """

    kind: EventKind
    job: int = 0
    level: int | None = None
    output_level: int | None = None
    input_files: tuple[int, ...] = ()
    output_files: tuple[int, ...] = ()
    input_bytes: int = 0
    output_bytes: int = 0
    entries: int = 0
    duration: float = 0.0
    time: float = 0.0
    trivial: bool = False
    error: str | None = None
