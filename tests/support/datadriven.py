"""The data-driven golden test runner shared by the format tests (pebble's ``datadriven``).

A case file opens with ``#`` comment lines saying why the case exists, then blocks separated
by blank lines: command lines, a ``----`` line, the expected output. ``QUANTA_REWRITE=1``
regenerates the expected output from what the commands print now.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["OPS", "parse_cases", "run_case_file"]

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
"""The comparison operators case files write (``where score >= 15``), applied to query fields."""


def parse_cases(text: str) -> tuple[list[str], list[tuple[list[str], list[str]]]]:
    """Split a case file into its opening comment and (commands, expected output) blocks."""
    lines = text.rstrip("\n").split("\n")
    i = 0
    while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
        i += 1
    preamble = lines[:i]
    while preamble and not preamble[-1].strip():
        preamble.pop()
    blocks: list[tuple[list[str], list[str]]] = []
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        cmds: list[str] = []
        while i < len(lines) and lines[i] != "----":
            cmds.append(lines[i])
            i += 1
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        blocks.append((cmds, out))
    return preamble, blocks


def run_case_file(path: Path, run: Callable[[str], list[str]]) -> None:
    preamble, blocks = parse_cases(path.read_text())
    assert preamble and preamble[0].startswith("#"), f"{path.name} must open with a comment saying why it exists"
    actual: list[tuple[list[str], list[str]]] = []
    for cmds, _ in blocks:
        out: list[str] = []
        for cmd in cmds:
            out.extend(run(cmd))
        actual.append((cmds, out or ["ok"]))
    if os.environ.get("QUANTA_REWRITE") == "1":
        body = "\n\n".join("\n".join([*c, "----", *o]) for c, o in actual)
        path.write_text("\n".join(preamble) + "\n\n" + body + "\n")
        return
    for (cmds, want), (_, got) in zip(blocks, actual, strict=True):
        assert got == want, f"{path.name}: {cmds}"
