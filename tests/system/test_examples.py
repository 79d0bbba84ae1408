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


README = Path(__file__).parent.parent.parent / "README.md"
README_BLOCKS = [b.split("```", 1)[0] for b in README.read_text().split("```python\n")[1:]]


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_python_blocks_run(index: int, tmp_path: Path) -> None:
    """The README's code runs as printed (in an empty directory, as a new user would)."""
    script = tmp_path / "snippet.py"
    script.write_text(README_BLOCKS[index])
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_the_readme_has_python_blocks() -> None:
    assert len(README_BLOCKS) >= 2
