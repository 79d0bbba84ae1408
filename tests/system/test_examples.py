"""Every example in examples/ runs to completion as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent.parent / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip(), "an example prints what it shows"


# The README's and docs/' Python blocks are type-checked and run by tests/system/test_doc_blocks.py.


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_uses_only_the_public_api(example: Path) -> None:
    """An example is what users copy: no private attribute (``obj._name``) and no private
    module (``quanta._x``) in it."""
    import ast

    tree = ast.parse(example.read_text(), filename=str(example))
    private = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
    ]
    private += [
        f"line {node.lineno}: import {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and any(part.startswith("_") and not part.startswith("__") for part in (node.module or "").split("."))
    ]
    private += [
        f"line {node.lineno}: import {alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if any(part.startswith("_") and not part.startswith("__") for part in alias.name.split("."))
    ]
    assert not private, private
