"""How the commands print: rich tables and colours on a terminal, plain text when piped, JSON
with ``--json``; progress bars (rich.progress) on stderr.

Every command prints through one :class:`Output`. It decides the form once, from where
stdout goes: a terminal gets rich tables; a pipe or a file gets plain lines (the forms the
tests and scripts read, documented in docs/cli.md); ``--json`` gets one JSON document
(or, for streams of rows, one JSON object per line). Progress bars go to stderr, shown when
stderr is a terminal or when ``--progress`` asks for them, and never mixed into stdout.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

__all__ = ["LineProgress", "Output", "ProgressBar", "bytes_text", "jsonable", "plain_columns", "progress_bar"]


def bytes_text(n: float) -> str:
    """``n`` bytes for people: ``812 bytes``, ``4.1 kB``, ``12.3 MB`` (rich's formatter)."""
    from rich.filesize import decimal

    return decimal(int(n))


def jsonable(value: Any) -> Any:
    """``value`` as something ``json.dumps`` takes: bytes as text when they are UTF-8 (else
    ``{"hex": ...}``), tuples and sets as lists, enums by their value, dates and times in
    ISO 8601, durations in seconds, decimals and UUIDs as text, other objects by ``repr``."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"hex": value.hex()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (datetime.timedelta,)):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return repr(value)


def plain_columns(rows: Sequence[Sequence[str]], *, gap: int = 2) -> list[str]:
    """``rows`` as lines with aligned columns (rich renders them; trailing blanks stripped)."""
    table = Table.grid(padding=(0, gap))
    for _ in range(max((len(r) for r in rows), default=0)):
        table.add_column(no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console(width=100_000, no_color=True, color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return [line.rstrip() for line in capture.get().splitlines()]


class Output:
    """Where a command's results go (stdout unless ``file``), and in which form."""

    def __init__(self, *, as_json: bool = False, file: TextIO | None = None) -> None:
        self.file = file if file is not None else sys.stdout
        self.as_json = as_json
        self.console = Console(file=self.file, highlight=False, soft_wrap=True)
        self.rich = self.console.is_terminal and not as_json

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """One line: styled on a terminal, as it is otherwise."""
        if self.rich:
            self.console.print(Text(text, style=style or ""))
        else:
            print(text, file=self.file)

    def json(self, doc: Any, *, indent: int | None = 2) -> None:
        print(json.dumps(doc, indent=indent, default=repr), file=self.file)

    def json_line(self, doc: Any) -> None:
        print(json.dumps(jsonable(doc)), file=self.file)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        header: bool = True,
    ) -> None:
        """A rich table on a terminal; aligned plain columns otherwise (with the header row
        first when ``header``)."""
        if self.rich:
            table = Table(*columns, title=title, show_header=header, header_style="bold cyan", title_justify="left")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))
            self.console.print(table)
            return
        if title:
            print(title, file=self.file)
        body = [list(columns), *rows] if header else list(rows)
        for text in plain_columns(body):
            print(text, file=self.file)


class ProgressBar:
    """A ``progress(done, total)`` callback drawing one rich progress bar."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def __call__(self, done: int, total: int | None = None) -> None:
        self._progress.update(self._task, completed=done, total=max(total, 1) if total is not None else None)

    def describe(self, label: str) -> None:
        self._progress.update(self._task, description=label)


def _stderr_console(enabled: bool | None) -> Console:
    return Console(stderr=True, force_terminal=True if enabled else None)


@contextmanager
def progress_bar(label: str, enabled: bool | None, *, unit: str = "items") -> Iterator[ProgressBar]:
    """A progress bar on stderr for the ``with`` body: shown when stderr is a terminal, or
    when ``enabled`` is True; ``enabled=False`` hides it. ``unit="bytes"`` counts bytes."""
    console = _stderr_console(enabled)
    count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        count,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=enabled is False or not console.is_terminal,
        transient=False,
    )
    with progress:
        yield ProgressBar(progress, progress.add_task(label, total=None))


class LineProgress:
    """A ``progress(phase, lines)`` callback (export and import): a spinner with the phase
    and the line count, on stderr when it is a terminal or when ``enabled``."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, phase: str, lines: int) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(phase, total=None)
        self._progress.update(task, completed=lines)

    @staticmethod
    @contextmanager
    def shown(enabled: bool | None) -> Iterator[LineProgress]:
        console = _stderr_console(enabled)
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}: {task.completed:,} lines"),
            TimeElapsedColumn(),
            console=console,
            disable=enabled is False or not console.is_terminal,
        )
        with progress:
            yield LineProgress(progress)
