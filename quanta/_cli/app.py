"""The ``quanta`` command (typer): options, error handling and the exit status.

Every command body runs through :func:`_guard`: a ``QuantaError`` (or an ``OSError`` such as
a missing file) becomes one line on stderr, ``quanta COMMAND: ErrorType: message`` (then the
exception's PEP 678 notes, if any, one ``  note:`` line each), and exit status 1; a closed
pipe (``quanta dump x | head``) ends quietly with 0. Usage errors exit 2 (click's message).
No command prints a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from ..errors import QuantaError
from . import data, demo, files, inspect, live, shell, transfer, web
from .output import Output

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="quanta",
    help="QuantaDB command-line tools: look inside a database, query it, check, repair, back up, export.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"quanta {version()}")
        raise typer.Exit()


def version() -> str:
    """The installed distribution's version (the package facade's ``__version__`` is the
    same number, kept by the release; this layer sits below the facade and does not import it)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("quanta-db")
    except PackageNotFoundError:
        return "unknown (not installed)"


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """QuantaDB command-line tools.

    Exit status: 0 on success, 1 when a database is damaged, missing or cannot be opened (one
    line on stderr), 2 on usage errors."""


def _guard(name: str, body: Callable[[], T]) -> T:
    try:
        return body()
    except QuantaError as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        rest = str(exc)[len(message) :]
        print(f"quanta {name}: {type(exc).__name__}: {message}{rest}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):  # PEP 678 notes: what happened, how to finish
            print(f"  note: {note}", file=sys.stderr)
    except BrokenPipeError:
        sys.stderr.close()  # no second complaint from the interpreter at exit
        raise typer.Exit(0) from None
    except OSError as exc:
        print(f"quanta {name}: {exc}", file=sys.stderr)
    raise typer.Exit(1)


def _run(name: str, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return _guard(name, lambda: asyncio.run(coro()))


def _exit(failed: bool | int) -> None:
    if failed:
        raise typer.Exit(1)


Path = Annotated[str, typer.Argument(help="The database directory.", show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
Modules = Annotated[
    list[str] | None,
    typer.Option("--module", metavar="MODULE", help="A module (or .py file) declaring entity classes; repeatable."),
]
ShowProgress = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Show the progress bar (default: on a terminal).")
]


# ---------------------------------------------------------------------------- demo


@app.command("demo")
def demo_cmd(
    path: Annotated[str, typer.Argument(help="Where the demo's database goes.")] = demo.DEFAULT_DEMO_PATH,
    records: Annotated[
        int,
        typer.Option(
            min=demo.MIN_RECORDS,
            max=demo.MAX_RECORDS,
            help=f"How many kv records to load ({demo.MIN_RECORDS:,} to {demo.MAX_RECORDS:,}).",
        ),
    ] = 100_000,
) -> None:
    """Run the guided tour (kv, snapshots, transactions, entities, a live query); re-runs on the same PATH."""
    _run("demo", lambda: demo.demo(os.path.abspath(path), records))


# ---------------------------------------------------------------------------- inspection


@app.command("stats")
def stats_cmd(path: Path, as_json: Json = False) -> None:
    """Levels, files, sizes and counters of a database (opened read-only)."""
    _run("stats", lambda: inspect.stats(path, Output(as_json=as_json)))


@app.command("verify")
def verify_cmd(
    path: Path,
    deep: Annotated[
        bool,
        typer.Option(help="Also decode every entity record and check index entries against the records."),
    ] = False,
    modules: Modules = None,
    progress: ShowProgress = None,
    as_json: Json = False,
) -> None:
    """Read and check every table, the manifest and the WAL (exit 1 on any problem)."""
    _exit(_run("verify", lambda: inspect.verify(path, Output(as_json=as_json), progress, deep, modules)) > 0)


@app.command("repair")
def repair_cmd(
    path: Path,
    rebuild_indexes: Annotated[
        bool,
        typer.Option(
            "--rebuild-indexes",
            help="Delete every index and unique entry of the classes MODULE declares and build them from the records.",
        ),
    ] = False,
    modules: Modules = None,
    progress: ShowProgress = None,
    as_json: Json = False,
) -> None:
    """Rebuild index and unique entries from the records (exit 1 if an entity was skipped)."""
    if not rebuild_indexes:
        raise typer.BadParameter("repair needs --rebuild-indexes (the one there is)", param_hint="--rebuild-indexes")
    _exit(_run("repair", lambda: inspect.repair(path, modules, Output(as_json=as_json), progress)) > 0)


@app.command("dump")
def dump_cmd(
    file: Annotated[str, typer.Argument(help="A WAL segment, SSTable or MANIFEST, or a database directory.")],
    limit: Annotated[int | None, typer.Option(min=0, help="Stop after N lines.")] = None,
    as_json: Json = False,
) -> None:
    """Print a WAL, SSTable or MANIFEST file, with entity keys decoded."""
    _guard("dump", lambda: files.dump(file, Output(as_json=as_json), limit=limit))


@app.command("schema")
def schema_cmd(path: Path, as_json: Json = False) -> None:
    """The stored entity schemas, index states, unfinished jobs and version history."""
    _run("schema", lambda: inspect.schema(path, Output(as_json=as_json)))


@app.command("migrate")
def migrate_cmd(
    path: Path,
    autogenerate: Annotated[
        str, typer.Option("--autogenerate", metavar="MODULE", help="Module (or .py file) declaring the entity classes.")
    ],
    output: Annotated[
        str | None, typer.Option(metavar="FILE", help="The file to write (default: a timestamped name).")
    ] = None,
) -> None:
    """Diff MODULE's entity classes against the stored schemas; write a migration skeleton."""
    _guard("migrate", lambda: inspect.migrate(path, autogenerate, output, Output()))


# ---------------------------------------------------------------------------- copies


@app.command("backup")
def backup_cmd(
    src: Annotated[str, typer.Argument(help="The database to back up (opened read-only).")],
    dest: Annotated[str, typer.Argument(help="New, empty, or an earlier backup of SRC (then updated).")],
    progress: ShowProgress = None,
    as_json: Json = False,
) -> None:
    """A consistent copy of SRC in DEST (incremental when DEST holds a backup of SRC)."""
    _run("backup", lambda: transfer.backup(src, dest, Output(as_json=as_json), progress))


@app.command("compact")
def compact_cmd(path: Path, as_json: Json = False) -> None:
    """Flush the memtable and compact every level (opened for writing)."""
    _run("compact", lambda: transfer.compact(path, Output(as_json=as_json)))


@app.command("export")
def export_cmd(
    path: Path,
    entities: Annotated[
        list[str] | None, typer.Option("--entity", metavar="NAME", help="Export only this entity (repeatable).")
    ] = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", metavar="FILE", help="The file to write (default: stdout).")
    ] = None,
    kv: Annotated[bool, typer.Option("--kv", help="Also export the db.kv pairs.")] = False,
) -> None:
    """Write the records (and kv pairs) as JSON Lines; the report goes to stderr."""
    _run("export", lambda: transfer.export_cmd(path, output, entities, kv))


class OnConflict(Enum):
    error = "error"
    replace = "replace"
    skip = "skip"


@app.command("import")
def import_cmd(
    path: Path,
    file: Annotated[str, typer.Argument(help="A JSON Lines export.")],
    on_conflict: Annotated[
        OnConflict, typer.Option(help="What a record whose primary key exists does.")
    ] = OnConflict.error,
    modules: Modules = None,
) -> None:
    """Import a JSON Lines export (validated before the first write)."""
    _run("import", lambda: transfer.import_cmd(path, file, on_conflict.value, modules))


# ---------------------------------------------------------------------------- data

Key = Annotated[str, typer.Argument(help="A kv key (UTF-8 text; --hex for bytes).", show_default=False)]
Hex = Annotated[bool, typer.Option("--hex", help="KEY (and VALUE, --prefix) are hex-encoded bytes.")]
Entity = Annotated[
    str | None, typer.Option("--entity", "-e", metavar="NAME", help="Read entity NAME's records, not kv pairs.")
]


@app.command("get")
def get_cmd(
    path: Path, key: Key, entity: Entity = None, hex_: Hex = False, modules: Modules = None, as_json: Json = False
) -> None:
    """A kv value, or with --entity the record whose primary key is KEY (42, 'ann'); exit 1 if none."""
    _exit(_run("get", lambda: data.get(path, key, entity, hex_, modules, Output(as_json=as_json))))


@app.command("scan")
def scan_cmd(
    path: Path,
    prefix: Annotated[str | None, typer.Option(help="Only keys starting with PREFIX (kv pairs).")] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N rows.")] = None,
    entity: Entity = None,
    reserved: Annotated[
        bool, typer.Option("--all", help="Every key, the entity key space too (records, index entries), decoded.")
    ] = False,
    hex_: Hex = False,
    modules: Modules = None,
    as_json: Json = False,
) -> None:
    """kv pairs in key order; --entity NAME: its records; --all: every key, decoded."""
    _run("scan", lambda: data.scan(path, prefix, limit, entity, reserved, hex_, modules, Output(as_json=as_json)))


@app.command("count")
def count_cmd(
    path: Path,
    entity: Annotated[str | None, typer.Argument(help="An entity name (default: count the kv pairs).")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only kv keys starting with PREFIX.")] = None,
    as_json: Json = False,
) -> None:
    """How many kv pairs (or records of ENTITY) there are."""
    _run("count", lambda: data.count(path, entity, prefix, Output(as_json=as_json)))


@app.command("put")
def put_cmd(path: Path, key: Key, value: Annotated[str, typer.Argument(help="The value.")], hex_: Hex = False) -> None:
    """Write one kv pair (the entity key space is refused: use the entity API)."""
    _run("put", lambda: data.put(path, key, value, hex_, Output()))


@app.command("delete")
def delete_cmd(path: Path, key: Key, hex_: Hex = False) -> None:
    """Delete one kv pair (the entity key space is refused: use the entity API)."""
    _run("delete", lambda: data.delete(path, key, hex_, Output()))


@app.command("query")
def query_cmd(
    path: Path,
    entity: Annotated[str, typer.Argument(help="The entity to query.", show_default=False)],
    expression: Annotated[
        str | None,
        typer.Argument(help="A condition: \"city == 'Oslo' and age >= 30\" (see docs/cli.md).", show_default=False),
    ] = None,
    order_by: Annotated[
        list[str] | None, typer.Option("--order-by", metavar="FIELD", help="age, -age or 'age desc'; repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N records.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Print the plan instead of running the query.")] = False,
    modules: Modules = None,
    as_json: Json = False,
) -> None:
    """Run a typed query on ENTITY's records (indexes used as in the Python API)."""
    _run(
        "query",
        lambda: data.query(path, entity, expression, order_by, limit, explain, modules, Output(as_json=as_json)),
    )


# ---------------------------------------------------------------------------- live and interactive


@app.command("watch")
def watch_cmd(
    path: Path,
    entity: Annotated[
        str | None, typer.Argument(help="The entity to follow (none: every commit's changed keys).", show_default=False)
    ] = None,
    expression: Annotated[
        str | None, typer.Argument(help="A condition, as in `quanta query`.", show_default=False)
    ] = None,
    order_by: Annotated[
        list[str] | None, typer.Option("--order-by", metavar="FIELD", help="age, -age or 'age desc'; repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N records.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Without ENTITY: only keys with this prefix.")] = None,
    updates: Annotated[
        int | None, typer.Option(min=0, help="Stop after N changes (default: run until Ctrl-C).")
    ] = None,
    modules: Modules = None,
    as_json: Json = False,
) -> None:
    """Follow a query (or the raw changes) live, from another process than the one writing."""
    try:
        _run(
            "watch",
            lambda: live.watch(
                path, entity, expression, order_by, limit, prefix, updates, modules, Output(as_json=as_json)
            ),
        )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("shell")
def shell_cmd(
    path: Path,
    history: Annotated[
        str | None,
        typer.Option(help="The history file (default: $QUANTA_HISTORY, else ~/.quanta_history)."),
    ] = None,
) -> None:
    """An interactive prompt on one database: get, scan, count, query, explain, put, delete, ... (with history)."""
    _exit(_guard("shell", lambda: shell.run(path, history, main)))


@app.command("inspect")
def _inspect(
    path: Path,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port (0: a free one).")] = 8765,
    host: Annotated[str, typer.Option("--host", help="The address to bind.")] = "127.0.0.1",
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Open for writing and allow the UI's writes (no other writer).")
    ] = False,
) -> None:
    """Serve the inspector web UI on PATH (read-only beside a running app; needs quanta-db[inspector])."""
    _run("inspect", lambda: web.inspect_web(path, port, host, allow_writes))


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """The ``quanta`` entry point: runs the command ``argv`` names (default: ``sys.argv``)
    and returns its exit status."""
    try:
        rv = app(args=argv, prog_name="quanta", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # a usage error: click's message, exit status 2
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"quanta: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) else 0
