"""The static typing of entity classes, checked by running mypy (as attrs' tests/test_mypy.yml).

``tests/typing/entities_ok.py`` must pass ``mypy --strict`` cleanly; in
``tests/typing/entities_errors.py`` every bad line ends with ``# E: <code>[, <code>...]`` and
mypy must report exactly those error codes on exactly those lines, and nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy): the typing test needs it")

ROOT = Path(__file__).resolve().parent.parent.parent
TYPING = Path(__file__).resolve().parent.parent / "typing"
OK = TYPING / "entities_ok.py"
ERRORS = TYPING / "entities_errors.py"
_ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*?)\s+\[(?P<code>[a-z0-9-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    """``{file name: {(line, code), ...}}`` from one mypy run over both files."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",  # errors of the modules they import are mypy's quanta run's job
            "--show-error-codes",
            "--hide-error-context",
            "--no-pretty",
            "--no-error-summary",
            "--no-color-output",
            f"--cache-dir={cache}",
            str(OK),
            str(ERRORS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself failed
    found: dict[str, set[tuple[int, str]]] = {OK.name: set(), ERRORS.name: set()}
    for line in proc.stdout.splitlines():
        m = _ERROR_LINE.match(line)
        if m is None:
            assert ": note: " in line, f"unexpected mypy output: {line}"
            continue
        found.setdefault(Path(m["file"]).name, set()).add((int(m["line"]), m["code"]))
    return found


def expected_errors(path: Path) -> set[tuple[int, str]]:
    expected = set()
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        m = re.search(r"#\s*E:\s*([a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)\s*$", text)
        if m:
            expected |= {(number, code.strip()) for code in m[1].split(",")}
    return expected


def test_correct_entity_code_type_checks(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    assert mypy_errors[OK.name] == set()


def test_each_annotated_line_fails_with_its_code(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    expected = expected_errors(ERRORS)
    assert len(expected) >= 10
    assert mypy_errors[ERRORS.name] == expected
    assert set(mypy_errors) == {OK.name, ERRORS.name}  # and nothing reported elsewhere
