"""``quanta inspect PATH``: the inspector web UI (quanta/_inspector) on a database.

It opens the database read-only (so it attaches beside the application that has it open,
following its commits) unless ``--allow-writes``, which opens it for writing (only possible
when no other process holds it) and enables the UI's write route."""

from __future__ import annotations

import asyncio
import sys

from .. import _db

__all__ = ["inspect_web"]


async def inspect_web(path: str, port: int, host: str, allow_writes: bool, token: str | None = None) -> None:
    """Serve the inspector until interrupted; prints the URL (with its token) first."""
    async with _db.open(path, read_only=not allow_writes, create_if_missing=False) as db:
        server = await db.serve_inspector(port=port, host=host, token=token, allow_writes=allow_writes)
        print(f"QuantaDB inspector on {server.url}", flush=True)
        mode = "writes allowed" if allow_writes else "read-only"
        print(f"({mode}) press Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            await server.wait()
        except asyncio.CancelledError:
            pass
        finally:
            await server.close()
