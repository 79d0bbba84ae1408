"""``quanta shell PATH``: an interactive prompt on one database, with history.

Each line is a ``quanta`` command without the program name and without the path, split as a
POSIX shell splits it (``shlex``): ``query User "city == 'Oslo'" --limit 5`` runs
``quanta query PATH User "city == 'Oslo'" --limit 5``. So the shell has every command the
CLI has, with the same options, output and errors, and nothing to learn twice. ``help``
lists them, ``help COMMAND`` (or ``COMMAND --help``) shows one; ``exit``, ``quit`` or Ctrl-D
leave. Ctrl-C ends the running command (a ``watch``, a long ``scan``), not the shell.

Each command opens the database for itself (read-only for reads) and closes it, as the
command line does: the shell holds no lock between commands, runs beside the application
that writes the database, and every command sees the newest commits.

Line editing, completion of command names (Tab) and history come from the standard
library's ``readline``; the history is kept in ``$QUANTA_HISTORY`` (default
``~/.quanta_history``, the last 1,000 lines; commands piped in are not kept). Where
``readline`` is missing the prompt still works, without them.
"""

from __future__ import annotations

import cmd
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["run"]

HISTORY_LINES = 1000

# The commands that take a database path as their first argument (all but `demo`, and the
# shell itself).
_COMMANDS = (
    "backup",
    "compact",
    "count",
    "delete",
    "dump",
    "export",
    "get",
    "import",
    "migrate",
    "put",
    "query",
    "repair",
    "scan",
    "schema",
    "stats",
    "verify",
    "watch",
)


def _readline() -> Any:
    try:
        import readline
    except ImportError:  # pragma: no cover - every POSIX Python here has it
        return None
    return readline


class _Shell(cmd.Cmd):
    def __init__(self, path: str, run_command: Callable[[list[str]], int]) -> None:
        super().__init__()
        self.path = path
        self.run_command = run_command
        self.prompt = f"quanta {os.path.basename(os.path.normpath(path)) or path}> "
        self.intro = (
            f"QuantaDB shell on {path}: every `quanta` command without the path "
            "(query, get, scan, count, stats, ...). `help` lists them; `exit` or Ctrl-D leaves."
        )
        self.status = 0

    def emptyline(self) -> bool:
        return False  # an empty line does nothing (cmd's default repeats the last command)

    def default(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f'quanta shell: {exc} (quote the expression: query User "age > 30")', file=sys.stderr)
            self.status = 2
            return
        if not words:
            return
        name, args = words[0], words[1:]
        if name not in _COMMANDS:
            print(f"quanta shell: no command {name!r} (`help` lists them)", file=sys.stderr)
            self.status = 2
            return
        try:
            self.status = self.run_command([name, self.path, *args])
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            self.status = 130
        sys.stdout.flush()
        return

    def do_help(self, arg: str) -> bool | None:
        """help [COMMAND]: the commands, or one command's options."""
        if arg.strip():
            self.default(f"{arg.strip()} --help")
            return None
        print("commands (each as on the command line, without the path):")
        print("  " + " ".join(_COMMANDS))
        print("  help [COMMAND], exit")
        return None

    def do_exit(self, arg: str) -> bool:
        """exit: leave the shell."""
        return True

    do_quit = do_exit

    def do_EOF(self, arg: str) -> bool:  # cmd's name for Ctrl-D
        if self.prompt:
            print()  # end the prompt's line
        return True

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        return [c for c in (*_COMMANDS, "help", "exit", "quit") if c.startswith(text)]

    def completedefault(self, *ignored: Any) -> list[str]:
        return []


def run(path: str, history: str | None, run_command: Callable[[list[str]], int]) -> int:
    """Read commands on ``path`` until ``exit`` or end of input; returns the last status."""
    import asyncio

    from .. import _db

    async def probe() -> None:  # a missing or damaged database: the open's error, before the prompt
        async with _db.open(path, read_only=True, create_if_missing=False):
            pass

    asyncio.run(probe())
    shell = _Shell(path, run_command)
    interactive = sys.stdin.isatty()
    readline = _readline() if interactive else None  # a script piped in keeps no history
    history_file = os.path.expanduser(history or os.environ.get("QUANTA_HISTORY") or "~/.quanta_history")
    if readline is not None:
        readline.set_history_length(HISTORY_LINES)
        if os.path.exists(history_file):
            try:
                readline.read_history_file(history_file)
            except OSError as exc:
                print(f"quanta shell: history not read: {exc}", file=sys.stderr)
    if not interactive:
        shell.intro = None
        shell.prompt = ""
    try:
        while True:
            try:
                shell.cmdloop()
                break
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a new prompt, as bash does
                print("^C")
                shell.intro = None
    finally:
        if readline is not None:
            try:
                readline.write_history_file(history_file)
            except OSError as exc:
                print(f"quanta shell: history not saved: {exc}", file=sys.stderr)
    return shell.status
