"""``quanta watch``: follow a query, or the raw changes, live from another process.

The database is opened read-only, so ``watch`` runs beside the application that writes it
(the reader processes of docs/operations.md): the reader follows the writer's log and its
own change bus drives the live query, as it would inside the application.

- ``quanta watch PATH ENTITY ['EXPRESSION'] [--order-by F] [--limit N]`` runs the query
  (the language of ``quanta query``) and shows its result again after each commit that
  changes it. On a terminal the result is one rich table redrawn in place (``rich.live``)
  with the commit number and the time of the last change in its title; piped, each result is
  printed as a block of plain lines after a ``# commit N: R rows`` header; ``--json`` prints
  one object per result, ``{"seq": N, "rows": [...]}``, one per line.
- ``quanta watch PATH [--prefix P]`` prints each later commit's changed keys (decoded, as
  ``scan --all`` shows them): ``#N put KEY = VALUE`` / ``#N delete KEY``; ``--json``: one
  object per commit.

``--updates N`` stops after N changes (the first result does not count), for scripts; without
it ``watch`` runs until interrupted (Ctrl-C ends it with status 0).

The query is followed with ``Query.live()`` (the newest result whenever the screen is ready
for one), so a terminal slower than the writer skips results in between and never falls
behind; the change log (``db.changes()``) shows every commit.
"""

from __future__ import annotations

import datetime
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from .. import _db
from .entities import class_for
from .expr import parse_expression, parse_order
from .keys import show_key, show_value
from .output import Output, jsonable

__all__ = ["watch"]


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(*columns, title=title, header_style="bold cyan", title_justify="left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


async def watch(
    path: str,
    entity: str | None,
    expression: str | None,
    order_by: list[str] | None,
    limit: int | None,
    prefix: str | None,
    updates: int | None,
    modules: list[str] | None,
    out: Output,
) -> None:
    async with _db.open(path, read_only=True, create_if_missing=False) as db:
        if entity is None:
            await _changes(db, None if prefix is None else prefix.encode(), updates, out)
            return
        state = await db.schema_state()
        cls, schema = class_for(entity, state.schemas, modules)
        columns = [f.name for f in schema.fields]
        q: Any = db.collection(cls).query()
        described = entity
        if expression is not None and expression.strip():
            q = q.where(parse_expression(expression, cls, entity, columns))
            described = f"{entity} where {expression.strip()}"
        if order_by:
            q = q.order_by(*(parse_order(k, cls, entity, columns) for k in order_by))
        if limit is not None:
            q = q.limit(limit)
        live = q.live()
        shown = -1  # results shown after the first one
        screen: Live | None = None
        try:
            async for objs in live:
                rows = [{c: getattr(o, c) for c in columns} for o in objs]
                seq = db.seq
                if out.as_json:
                    out.json_line({"seq": seq, "rows": rows})
                elif out.rich:
                    at = datetime.datetime.now().strftime("%H:%M:%S")
                    title = f"{described}: {len(rows)} rows at commit #{seq} ({at})"
                    table = _table(title, columns, [[_cell(r[c]) for c in columns] for r in rows])
                    if screen is None:
                        screen = Live(table, console=out.console, auto_refresh=False, transient=False)
                        screen.start(refresh=True)
                    else:
                        screen.update(table, refresh=True)
                else:
                    out.line(f"# commit {seq}: {len(rows)} rows")
                    out.table(columns, [[_cell(r[c]) for c in columns] for r in rows])
                    out.file.flush()
                shown += 1
                if updates is not None and shown >= updates:
                    return
        finally:
            await live.aclose()
            if screen is not None:
                screen.stop()


async def _changes(db: Any, prefix: bytes | None, updates: int | None, out: Output) -> None:
    seen = 0
    if updates == 0:
        return
    changes = db.changes(prefix=prefix)
    if not out.as_json:
        what = "every key" if prefix is None else f"keys starting with {prefix!r}"
        out.line(f"# following {what} from commit #{db.seq} (Ctrl-C ends)", style="dim")
        out.file.flush()
    try:
        async for cs in changes:
            if out.as_json:
                out.json_line(
                    {
                        "seq": cs.seq,
                        "changes": [
                            {"kind": c.kind, "key": show_key(c.key, c.value), "value": jsonable(c.value)}
                            for c in cs.changes
                        ],
                    }
                )
            else:
                for c in cs.changes:
                    if c.kind == "put":
                        out.line(f"#{cs.seq} put {show_key(c.key, c.value)} = {show_value(c.key, c.value)}")
                    else:
                        out.line(f"#{cs.seq} delete {show_key(c.key)}", style="red")
            out.file.flush()
            seen += 1
            if updates is not None and seen >= updates:
                return
    finally:
        await changes.aclose()
